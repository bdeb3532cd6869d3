//! agentbox's secret detector: one detector for every place agentbox looks
//! for secrets (environment names and values, exec and activity argv, any
//! line that could carry a value).
//!
//! What a secret looks like is data, in `rules.toml` (embedded at build time,
//! compiled once into a [`Detector`]):
//!
//! - **name rules** (`[[name_rule]]`): variable, flag, header or key names that
//!   hold a secret whatever the value (`*PASSWORD*`, `*_TOKEN`, `API_KEY`…);
//! - **format rules** (`[[rule]]` with `shapes`): token formats by structure —
//!   a literal prefix or infix and character runs, e.g. `ghp_{alnum:36-}`
//!   ([shape grammar](#shapes)), plus per-rule entropy, letter/digit mix and
//!   checksum checks. One Aho–Corasick automaton over every shape's anchor
//!   finds candidates in a single pass;
//! - **keyword rules** (`keywords = [...]`): formats without a prefix (a 32
//!   character key of some service) that count only under a name mentioning
//!   the service;
//! - **structural detectors**: private keys, credentials in URLs, HTTP
//!   credential headers, and the generic rule (a random-looking value under a
//!   name with a credential word);
//! - node admins add rules with the same schema ([`RuleSpec`], the node
//!   config's `[[env.secret_rules]]`), including regular expressions.
//!
//! Findings carry rule ids and byte ranges, never copies of the value.
//!
//! # Shapes
//! Literal text and runs: `{CHARSET:N}`, `{CHARSET:N-M}`, `{CHARSET:N-}`, with
//! CHARSET one of `digit hex HEX hexi lower upper alpha alnum lalnum ualnum
//! word b64 b64url base32` or a class such as `[a-z0-9_-]`. A match sits
//! between word boundaries (no ASCII letter or digit just before or after).
//!
//! # Redaction
//! [`redact_argv`] rewrites a command line for a log: values of secret-looking
//! assignments anywhere in a shell line, the argument after a secret-looking
//! flag, attached values of known credential flags (`mysql -pX`, `sshpass -p`,
//! `docker login -p`, `curl -u user:X`…), HTTP credential headers, passwords
//! in URLs and every known token format become [`REDACTED`]. Shell scripts
//! given as arguments (`sh -c '…'`) are parsed and redacted the same way.
//!
//! ```
//! let argv = ["sh", "-c", "export DB_PASSWORD=hunter2 && ./run"];
//! assert_eq!(
//!     agentbox_secrets::redact_argv(&argv),
//!     ["sh", "-c", "export DB_PASSWORD=[redacted] && ./run"]
//! );
//! ```

use std::ops::ControlFlow;
use std::sync::OnceLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

mod argv;
mod checksum;
mod generic;
mod lex;
mod names;
mod programs;
mod scan;
mod shape;
mod spec;

pub use spec::{Length, RuleSpec};

use names::Names;
use spec::{Matcher, Rule, Structural, Table};

/// The text a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The built-in rules table.
pub const RULES_TOML: &str = include_str!("../rules.toml");

/// A rules table that cannot be compiled. Messages name the rule, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("secret rule {id:?}: {message}")]
    Invalid { id: String, message: String },
    #[error("secret rule id {0:?} is used twice")]
    Duplicate(String),
    #[error("the built-in secret rules do not compile: {0}")]
    Builtin(String),
}

/// Where a secret was found: the rule and the byte range in the text
/// searched. Never holds the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding<'d> {
    /// The rule id (`github-pat`, `name-password`, `generic-secret`…).
    pub rule: &'d str,
    pub start: usize,
    pub end: usize,
    /// The format's checksum holds (only rules with a `checksum`).
    pub verified: bool,
}

/// What kind of rule an id names (see [`Detector::rules`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    /// A name that holds a secret whatever its value.
    Name,
    /// A token format found anywhere in text.
    Format,
    /// A format that counts only under a name containing a keyword.
    Keyword,
    /// An admin's regular expression.
    Pattern,
    /// A detector implemented in code.
    Structural,
}

/// One rule, for listings and docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleInfo<'d> {
    pub id: &'d str,
    pub description: &'d str,
    pub kind: RuleKind,
    /// From `rules.toml` (not an admin extension).
    pub builtin: bool,
    /// Keywords of a keyword rule (lower case).
    pub keywords: &'d [Box<str>],
}

/// The compiled rules. Cheap to share (`Send + Sync`); build once.
#[derive(Debug)]
pub struct Detector {
    rules: Vec<Rule>,
    anchors: Option<AhoCorasick>,
    /// per anchor pattern: (rule index, shape index)
    anchor_targets: Vec<Vec<(u32, u32)>>,
    /// every keyword rule's keywords (ASCII case-insensitive); pattern → rule
    keywords_ac: Option<AhoCorasick>,
    keyword_of: Vec<u32>,
    pattern_rules: Vec<u32>,
    structural_ids: [Option<u32>; 5],
    names: Names,
    /// `-----BEGIN`, searched once per text
    pem_begin: memchr::memmem::Finder<'static>,
}

fn structural_index(s: Structural) -> usize {
    match s {
        Structural::PrivateKey => 0,
        Structural::UrlCredentials => 1,
        Structural::HttpAuthorization => 2,
        Structural::GenericSecret => 3,
        Structural::CommandLine => 4,
    }
}

impl Detector {
    /// The built-in rules (compiled on first use).
    pub fn builtin() -> &'static Detector {
        static BUILTIN: OnceLock<Detector> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The table is part of the binary and `builtin_rules_compile`
            // proves it compiles: this cannot fail at run time.
            Detector::with_rules(&[]).expect("the built-in secret rules compile (tested)")
        })
    }

    /// The built-in rules plus `extra` (a node admin's `[[env.secret_rules]]`).
    pub fn with_rules(extra: &[RuleSpec]) -> Result<Detector, RuleError> {
        let table: Table =
            toml::from_str(RULES_TOML).map_err(|e| RuleError::Builtin(e.to_string()))?;
        let names = Names::compile(&table.names, &table.name_rule)?;
        let mut rules = Vec::with_capacity(table.rule.len() + extra.len());
        for r in &table.rule {
            rules.push(r.compile(true)?);
        }
        for r in extra {
            rules.push(r.compile(false)?);
        }
        let mut seen = std::collections::HashSet::new();
        for id in names
            .rules
            .iter()
            .map(|r| &r.id)
            .chain(rules.iter().map(|r| &r.id))
        {
            if !seen.insert(id.clone()) {
                return Err(RuleError::Duplicate(id.to_string()));
            }
        }
        let mut anchor_index: std::collections::HashMap<Vec<u8>, usize> = Default::default();
        let mut anchor_pats: Vec<Vec<u8>> = Vec::new();
        let mut anchor_targets: Vec<Vec<(u32, u32)>> = Vec::new();
        let mut keyword_rules = Vec::new();
        let mut pattern_rules = Vec::new();
        let mut structural_ids = [None; 5];
        for (ri, r) in rules.iter().enumerate() {
            let ri32 = ri as u32;
            if !r.keywords.is_empty() {
                keyword_rules.push(ri32);
                continue;
            }
            match &r.matcher {
                Matcher::Shapes(shapes) => {
                    for (si, s) in shapes.iter().enumerate() {
                        let Some(a) = s.anchor() else { continue };
                        let k = *anchor_index.entry(a.to_vec()).or_insert_with(|| {
                            anchor_pats.push(a.to_vec());
                            anchor_targets.push(Vec::new());
                            anchor_pats.len() - 1
                        });
                        anchor_targets[k].push((ri32, si as u32));
                    }
                }
                Matcher::Pattern(_) => pattern_rules.push(ri32),
                Matcher::Structural(s) => structural_ids[structural_index(*s)] = Some(ri32),
            }
        }
        let anchors = if anchor_pats.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .match_kind(MatchKind::Standard)
                    .build(&anchor_pats)
                    .map_err(|e| RuleError::Builtin(format!("anchor automaton: {e}")))?,
            )
        };
        let mut kw_pats = Vec::new();
        let mut keyword_of = Vec::new();
        for &r in &keyword_rules {
            for k in &rules[r as usize].keywords {
                kw_pats.push(k.to_string());
                keyword_of.push(r);
            }
        }
        let keywords_ac = if kw_pats.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .kind(Some(AhoCorasickKind::ContiguousNFA))
                    .ascii_case_insensitive(true)
                    .build(&kw_pats)
                    .map_err(|e| RuleError::Builtin(format!("keyword automaton: {e}")))?,
            )
        };
        Ok(Detector {
            rules,
            anchors,
            anchor_targets,
            keywords_ac,
            keyword_of,
            pattern_rules,
            structural_ids,
            names,
            pem_begin: memchr::memmem::Finder::new(b"-----BEGIN").into_owned(),
        })
    }

    pub(crate) fn structural_id(&self, s: Structural) -> Option<&str> {
        self.structural_ids[structural_index(s)].map(|i| &*self.rules[i as usize].id)
    }

    /// Every rule: name rules first, then value rules in table order.
    pub fn rules(&self) -> Vec<RuleInfo<'_>> {
        let mut out: Vec<RuleInfo<'_>> = self
            .names
            .rules
            .iter()
            .map(|r| RuleInfo {
                id: &r.id,
                description: &r.description,
                kind: RuleKind::Name,
                builtin: true,
                keywords: &[],
            })
            .collect();
        out.extend(self.rules.iter().map(|r| RuleInfo {
            id: &r.id,
            description: &r.description,
            kind: if !r.keywords.is_empty() {
                RuleKind::Keyword
            } else {
                match r.matcher {
                    Matcher::Shapes(_) => RuleKind::Format,
                    Matcher::Pattern(_) => RuleKind::Pattern,
                    Matcher::Structural(_) => RuleKind::Structural,
                }
            },
            builtin: r.builtin,
            keywords: &r.keywords,
        }));
        out
    }

    /// The name rule a variable/flag/key name matches (the name alone says it
    /// holds a secret), ignoring [`Detector::kept_name`].
    pub fn name_rule(&self, name: &str) -> Option<&str> {
        self.names.secret_rule(name).map(|r| &*r.id)
    }

    /// Names programs need (`PATH`, `HOME`, `LC_*`, Kubernetes service
    /// variables…): exempt from the name rules; their values are still checked.
    pub fn kept_name(&self, name: &str) -> bool {
        self.names.kept(name)
    }

    /// The first secret in free text (no name context), if any: the one that
    /// starts first, then the longest, then the most specific rule (an
    /// Anthropic key is reported as such, not as the `sk-` OpenAI form).
    pub fn find<'d>(&'d self, text: &str) -> Option<Finding<'d>> {
        self.find_all(text).into_iter().next()
    }

    /// Every secret in free text, ordered as [`Detector::find`] ranks them.
    pub fn find_all<'d>(&'d self, text: &str) -> Vec<Finding<'d>> {
        let mut out = Vec::new();
        let _ = self.scan(text, &mut |f, spec| {
            out.push((f, spec));
            ControlFlow::Continue(())
        });
        out.sort_by_key(|(f, spec)| (f.start, std::cmp::Reverse(f.end), std::cmp::Reverse(*spec)));
        out.into_iter().map(|(f, _)| f).collect()
    }

    /// A secret in the value of variable `name` (the name rules are not
    /// applied here; see [`Detector::name_rule`]): a keyword rule for the
    /// name, anything [`Detector::find`] finds in the value, a credential in
    /// a command line it holds (`--api-key X`, `mysql -pX`), or the generic rule.
    pub fn env_value<'d>(&'d self, name: &str, value: &str) -> Option<Finding<'d>> {
        let whole = |rule| Finding {
            rule,
            start: 0,
            end: value.len(),
            verified: false,
        };
        // a service's format under its name is the most precise answer
        if let Some(rule) = self.keyword_rule(name, value) {
            return Some(whole(rule));
        }
        if let Some(f) = self.find(value) {
            return Some(f);
        }
        argv::command_line_rule(self, value, 0)
            .or_else(|| self.generic_rule(name, value))
            .map(whole)
    }

    /// `text` with every finding replaced by [`REDACTED`].
    pub fn redact_text(&self, text: &str) -> String {
        let spans: Vec<(usize, usize)> = self
            .find_all(text)
            .iter()
            .map(|f| (f.start, f.end))
            .collect();
        argv::apply_spans(text, spans)
    }

    /// A command line as it may be logged (see the crate docs).
    pub fn redact_argv<S: AsRef<str>>(&self, argv: &[S]) -> Vec<String> {
        argv::redact_argv(self, argv)
    }
}

/// [`Detector::redact_argv`] with the built-in rules.
pub fn redact_argv<S: AsRef<str>>(argv: &[S]) -> Vec<String> {
    Detector::builtin().redact_argv(argv)
}

/// [`Detector::redact_text`] with the built-in rules.
pub fn redact_text(text: &str) -> String {
    Detector::builtin().redact_text(text)
}

/// [`Detector::find`] with the built-in rules.
pub fn find(text: &str) -> Option<Finding<'static>> {
    Detector::builtin().find(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_compile() {
        let d = Detector::with_rules(&[]).unwrap();
        assert!(d.rules().len() > 150);
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Detector>();
    }
}
