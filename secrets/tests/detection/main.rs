//! Detection tests: one test per rule (synthetic tokens with the format's
//! structure must be found under that rule id; near-misses must not be), the
//! two corpora (ordinary environment variables, synthetic tokens) with their
//! rates, the name rules, and the generic rule's thresholds.

mod apps;
mod cloud;
mod corpora;
mod gen;
mod generic;
mod names;

use agentbox_secrets::Detector;

/// A rule's test: the variable name its tokens are tried under, a generator,
/// and near-misses (values under the same name that this rule must not find).
pub struct Case {
    pub id: &'static str,
    pub name: &'static str,
    pub gen: fn(&mut gen::G) -> String,
    pub near: fn(&mut gen::G) -> Vec<String>,
}

/// A name without credential words or service keywords.
pub const NOTE: &str = "NOTE";

/// Every rule id a (name, value) pair hits, in the value as text and in the pair.
pub fn hits(name: &str, value: &str) -> Vec<String> {
    let d = Detector::builtin();
    let mut ids: Vec<String> = d
        .find_all(value)
        .iter()
        .map(|f| f.rule.to_string())
        .collect();
    ids.extend(d.env_value(name, value).map(|f| f.rule.to_string()));
    ids
}

/// Rules that need a name: keyword rules and the generic rule.
pub fn is_keyword_rule(id: &str) -> bool {
    id == "generic-secret"
        || Detector::builtin()
            .rules()
            .iter()
            .any(|r| r.id == id && r.kind == agentbox_secrets::RuleKind::Keyword)
}

pub const SAMPLES: u64 = 16;

pub fn check(c: &Case) {
    let d = Detector::builtin();
    assert!(d.rules().iter().any(|r| r.id == c.id), "no rule {}", c.id);
    for k in 0..SAMPLES {
        let mut g = gen::G::new(c.id, k);
        for n in (c.near)(&mut g) {
            let h = hits(c.name, &n);
            assert!(
                !h.iter().any(|r| r == c.id),
                "{}: near-miss {n:?} matched",
                c.id
            );
        }
        let tok = (c.gen)(&mut g);
        // the value alone, under the case's name
        let top = d.env_value(c.name, &tok).map(|f| f.rule);
        assert_eq!(
            top,
            Some(c.id),
            "{}: sample {k} (len {}) not found as such",
            c.id,
            tok.len()
        );
        // a keyword rule needs its keyword
        if is_keyword_rule(c.id) {
            assert!(
                !hits(NOTE, &tok).iter().any(|r| r == c.id),
                "{}: found without its keyword",
                c.id
            );
        }
        // a command line: the redactor takes the credential out
        if c.id == "command-line-credential" {
            let out = agentbox_secrets::redact_argv(&["sh", "-c", tok.as_str()]);
            assert_ne!(out[2], tok, "{}: sample {k} not redacted", c.id);
            continue;
        }
        // the same value inside a line of text
        let line = if is_keyword_rule(c.id) {
            format!("export {}=\"{tok}\"; run", c.name)
        } else {
            format!("see ({tok}), then run")
        };
        assert!(
            d.find_all(&line).iter().any(|f| f.rule == c.id),
            "{}: sample {k} not found in a line",
            c.id
        );
    }
}

/// Every built-in value rule has a case here, and every case a rule.
#[test]
fn every_rule_has_a_test() {
    let mut covered: Vec<&str> = cloud::IDS.iter().chain(apps::IDS).copied().collect();
    covered.sort_unstable();
    let before = covered.len();
    covered.dedup();
    assert_eq!(before, covered.len(), "a rule is tested twice");
    let mut rules: Vec<&str> = Detector::builtin()
        .rules()
        .iter()
        .filter(|r| r.kind != agentbox_secrets::RuleKind::Name)
        .map(|r| r.id)
        .collect();
    rules.sort_unstable();
    assert_eq!(covered, rules);
}

macro_rules! cases {
    ($( $f:ident: $id:literal, $name:expr, $gen:expr, $near:expr; )*) => {
        #[allow(dead_code)]
        pub const IDS: &[&str] = &[$($id),*];
        #[allow(dead_code)]
        pub fn all() -> Vec<crate::Case> {
            vec![$(crate::Case { id: $id, name: $name, gen: $gen, near: $near }),*]
        }
        $(
            #[test]
            fn $f() {
                crate::check(&crate::Case { id: $id, name: $name, gen: $gen, near: $near });
            }
        )*
    };
}
pub(crate) use cases;
