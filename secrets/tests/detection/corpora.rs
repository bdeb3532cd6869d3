//! The two corpora: ordinary environment variables (≤ 1 % may be flagged)
//! and synthetic tokens of every rule (100 % must be). The rates are printed
//! (`--nocapture`) for BENCHMARKS.md; the assertions make a rule change that
//! raises false positives or loses a format fail.

use agentbox_secrets::Detector;

use crate::gen::G;
use crate::{apps, cloud, is_keyword_rule, Case, NOTE};

/// What the env rules would do with `NAME=value`: the rule that strips it.
pub fn flagged(name: &str, value: &str) -> Option<String> {
    let d = Detector::builtin();
    if d.find(name).is_some() {
        return Some("malformed (name is a token)".into());
    }
    if !d.kept_name(name) {
        if let Some(r) = d.name_rule(name) {
            return Some(r.to_string());
        }
    }
    d.env_value(name, value).map(|f| f.rule.to_string())
}

pub fn ordinary() -> Vec<(String, String)> {
    let text = include_str!("../corpus/ordinary.env");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (n, v) = l.split_once('=').expect("NAME=value");
            (n.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn ordinary_corpus_false_positives_at_most_one_percent() {
    let corpus = ordinary();
    assert!(corpus.len() >= 300, "the corpus shrank to {}", corpus.len());
    let hits: Vec<(String, String)> = corpus
        .iter()
        .filter_map(|(n, v)| flagged(n, v).map(|r| (n.clone(), r)))
        .collect();
    let rate = 100.0 * hits.len() as f64 / corpus.len() as f64;
    println!(
        "ordinary corpus: {} of {} flagged ({rate:.2} %): {hits:?}",
        hits.len(),
        corpus.len()
    );
    assert!(
        hits.len() * 100 <= corpus.len(),
        "false positives {rate:.2} % > 1 %: {hits:?}"
    );
}

fn all_cases() -> Vec<Case> {
    cloud::all().into_iter().chain(apps::all()).collect()
}

/// Every generated token, in three settings: the whole value of a variable,
/// inside a longer value (a command line or a config blob), and as a JSON
/// member. Each must be flagged (by any rule: the variable is stripped).
#[test]
fn synthetic_corpus_fully_detected() {
    let mut total = 0usize;
    let mut missed = Vec::new();
    let mut per_rule = 0usize;
    for c in all_cases() {
        per_rule += 1;
        for k in 0..32u64 {
            let g = G::new(&format!("corpus/{}", c.id), k);
            let mut g = g;
            let tok = (c.gen)(&mut g);
            let (name, key) = if is_keyword_rule(c.id) {
                (c.name, c.name)
            } else {
                ("CONFIG", NOTE)
            };
            let settings = if c.id == "command-line-credential" {
                // a command line inside a script or a JSON string
                [
                    (name.to_string(), tok.clone()),
                    (name.to_string(), format!("cd /app && {tok}; echo done")),
                    (
                        name.to_string(),
                        format!("{{\"cmd\": \"{tok}\", \"n\": 1}}"),
                    ),
                ]
            } else {
                [
                    (name.to_string(), tok.clone()),
                    (name.to_string(), format!("--flag x {key}={tok} --other")),
                    (
                        name.to_string(),
                        format!("{{\"{key}\": \"{tok}\", \"n\": 1}}"),
                    ),
                ]
            };
            for (n, v) in settings {
                total += 1;
                if flagged(&n, &v).is_none() {
                    missed.push(format!("{} #{k} in {n}", c.id));
                }
            }
        }
    }
    let rate = 100.0 * (total - missed.len()) as f64 / total as f64;
    println!(
        "synthetic corpus: {} rules, {total} values, {rate:.2} % detected",
        per_rule
    );
    assert!(missed.is_empty(), "missed: {missed:?}");
}

/// The examples: tokens under innocuous names that passed before.
#[test]
fn innocuous_names_with_known_formats() {
    let g = G::new("issue-12", 0);
    let cases = [
        (
            "SENDGRID",
            format!(
                "SG.{}.{}",
                g.s(crate::gen::B64URL, 22),
                g.s(crate::gen::B64URL, 43)
            ),
        ),
        ("DO", format!("dop_v1_{}", g.s(crate::gen::HEX, 64))),
        (
            "PYPI",
            format!("pypi-AgEIcHlwaS5vcmc{}", g.s(crate::gen::B64URL, 70)),
        ),
        ("VAULT", format!("hvs.{}", g.s(crate::gen::B64URL, 95))),
        (
            "DOCKER",
            format!("dckr_pat_{}", g.s(crate::gen::B64URL, 27)),
        ),
        (
            "CONFIG",
            format!("{{\"token\": \"{}\"}}", g.s(crate::gen::ALNUM, 40)),
        ),
        (
            "UPSTREAM",
            format!(
                "https://deploy:{}@git.example/x.git",
                g.s(crate::gen::ALNUM, 20)
            ),
        ),
        (
            "EXTRA_ARGS",
            format!(
                "--verbose --api-key={} --retries 3",
                g.s(crate::gen::ALNUM, 32)
            ),
        ),
    ];
    for (n, v) in cases {
        assert!(flagged(n, &v).is_some(), "{n} passed");
    }
}
