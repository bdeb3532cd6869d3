//! The rules table's schema (`rules.toml`, and the node config's
//! `[[env.secret_rules]]`), and its validation into compiled rules.

use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use crate::checksum::Checksum;
use crate::shape::Shape;
use crate::RuleError;

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct Table {
    pub names: NamesSpec,
    pub name_rule: Vec<NameRuleSpec>,
    pub rule: Vec<RuleSpec>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamesSpec {
    #[serde(default)]
    pub kept: Vec<String>,
    #[serde(default)]
    pub kept_prefixes: Vec<String>,
    #[serde(default)]
    pub kept_suffixes: Vec<String>,
    #[serde(default)]
    pub kept_infixes: Vec<String>,
    #[serde(default)]
    pub reference_suffixes: Vec<String>,
    #[serde(default)]
    pub weak_words: Vec<String>,
    #[serde(default)]
    pub weak_suffixes: Vec<String>,
    #[serde(default)]
    pub not_secret_suffixes: Vec<String>,
    #[serde(default)]
    pub hash_words: Vec<String>,
    #[serde(default)]
    pub no_value_words: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub(crate) struct NameRuleSpec {
    pub id: String,
    pub description: String,
    #[serde(default)]
    pub contains: Vec<String>,
    #[serde(default)]
    pub components: Vec<String>,
    #[serde(default)]
    pub component_suffixes: Vec<String>,
    #[serde(default)]
    pub before_key: Vec<String>,
    #[serde(default)]
    pub last_components: Vec<String>,
    #[serde(default)]
    pub except: Vec<String>,
}

/// A run length: `32`, `"32"`, `"20-40"` or `"20-"`.
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum Length {
    Exact(u16),
    Text(String),
}

/// One value rule, as written in `rules.toml` (`[[rule]]`) or in a node
/// config (`[[env.secret_rules]]`). Exactly one of `shape`/`shapes`,
/// `prefix` (+ `charset`, `length`) or `pattern` says what a secret looks like.
#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable id: lower case letters, digits and `-` (reported, never the value).
    pub id: String,
    /// What the rule finds, for people.
    #[serde(default)]
    pub description: String,
    /// A shape (see the crate docs), e.g. `"acme_{alnum:32}"`.
    pub shape: Option<String>,
    /// Several shapes for one rule.
    #[serde(default)]
    pub shapes: Vec<String>,
    /// Shorthand for a shape: a literal prefix…
    pub prefix: Option<String>,
    /// …followed by a run of this character set (default `alnum`)…
    pub charset: Option<String>,
    /// …of this length (`32`, `"20-40"`, `"20-"`).
    pub length: Option<Length>,
    /// A regular expression (Rust `regex` syntax), for formats a shape cannot say.
    pub pattern: Option<String>,
    /// When set, the rule applies only to a value under a name (variable, flag,
    /// key) containing one of these words, and the whole value must match.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Minimum Shannon entropy (bits per byte) of the matched text.
    pub entropy: Option<f64>,
    /// The matched text must hold both a letter and a digit.
    #[serde(default)]
    pub mixed: bool,
    /// A checksum the format carries (`crc32-base62`).
    pub checksum: Option<String>,
    /// Built-in only: a detector implemented in code (`private-key`,
    /// `url-credentials`, `http-authorization`, `generic-secret`, `command-line`).
    pub structural: Option<String>,
}

/// Detectors implemented in code rather than as shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Structural {
    PrivateKey,
    UrlCredentials,
    HttpAuthorization,
    GenericSecret,
    CommandLine,
}

#[derive(Debug)]
pub(crate) enum Matcher {
    Shapes(Vec<Shape>),
    Pattern(Regex),
    Structural(Structural),
}

/// A compiled value rule.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: Box<str>,
    pub description: Box<str>,
    pub matcher: Matcher,
    /// lower case
    pub keywords: Vec<Box<str>>,
    pub entropy: Option<f64>,
    pub mixed: bool,
    pub checksum: Option<Checksum>,
    pub builtin: bool,
}

pub(crate) fn check_id(id: &str) -> Result<(), RuleError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RuleError::Invalid {
            id: id.to_string(),
            message: "an id is 1 to 64 lower-case letters, digits and '-', starting with a letter or digit".into(),
        })
    }
}

fn escape_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Patterns may compile to at most this much memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
const MAX_SHAPES: usize = 16;
const MAX_KEYWORDS: usize = 32;

impl RuleSpec {
    pub(crate) fn compile(&self, builtin: bool) -> Result<Rule, RuleError> {
        check_id(&self.id)?;
        let err = |message: String| RuleError::Invalid {
            id: self.id.clone(),
            message,
        };
        if builtin && self.description.trim().is_empty() {
            return Err(err("a built-in rule needs a description".into()));
        }
        if self.description.len() > 200 || self.description.contains('\n') {
            return Err(err(
                "the description is one line of at most 200 bytes".into()
            ));
        }
        let mut shapes_src: Vec<String> = self.shapes.clone();
        if let Some(s) = &self.shape {
            shapes_src.push(s.clone());
        }
        if let Some(p) = &self.prefix {
            if p.is_empty() {
                return Err(err("prefix is empty".into()));
            }
            let cs = self.charset.as_deref().unwrap_or("alnum");
            let len = match &self.length {
                Some(Length::Exact(n)) => n.to_string(),
                Some(Length::Text(t)) => t.clone(),
                None => {
                    return Err(err(
                        "prefix needs a length (32, \"20-40\" or \"20-\")".into()
                    ))
                }
            };
            shapes_src.push(format!("{}{{{cs}:{len}}}", escape_literal(p)));
        } else if self.charset.is_some() || self.length.is_some() {
            return Err(err("charset and length go with prefix".into()));
        }
        let kinds = [
            !shapes_src.is_empty(),
            self.pattern.is_some(),
            self.structural.is_some(),
        ];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            return Err(err(
                "give exactly one of shape/shapes, prefix (with charset and length), or pattern"
                    .into(),
            ));
        }
        if shapes_src.len() > MAX_SHAPES {
            return Err(err(format!("at most {MAX_SHAPES} shapes")));
        }
        if self.keywords.len() > MAX_KEYWORDS {
            return Err(err(format!("at most {MAX_KEYWORDS} keywords")));
        }
        let mut keywords = Vec::new();
        for k in &self.keywords {
            if k.len() < 3 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(err(format!(
                    "keyword {k:?}: at least 3 printable ASCII characters without spaces"
                )));
            }
            keywords.push(k.to_ascii_lowercase().into_boxed_str());
        }
        if let Some(e) = self.entropy {
            if !(0.0..=8.0).contains(&e) {
                return Err(err("entropy is in bits per byte, between 0 and 8".into()));
            }
        }
        let checksum = match &self.checksum {
            None => None,
            Some(c) => Some(
                Checksum::parse(c)
                    .ok_or_else(|| err(format!("unknown checksum {c:?} (known: crc32-base62)")))?,
            ),
        };
        let matcher = if let Some(s) = &self.structural {
            if !builtin {
                return Err(err(
                    "structural detectors are built in; use shape or pattern".into(),
                ));
            }
            Matcher::Structural(match s.as_str() {
                "private-key" => Structural::PrivateKey,
                "url-credentials" => Structural::UrlCredentials,
                "http-authorization" => Structural::HttpAuthorization,
                "generic-secret" => Structural::GenericSecret,
                "command-line" => Structural::CommandLine,
                other => return Err(err(format!("unknown structural detector {other:?}"))),
            })
        } else if let Some(p) = &self.pattern {
            let re = RegexBuilder::new(p)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
                .map_err(|e| err(format!("pattern does not compile: {e}")))?;
            if re.is_match(b"") {
                return Err(err("pattern matches the empty string".into()));
            }
            Matcher::Pattern(re)
        } else {
            let mut shapes = Vec::new();
            for src in &shapes_src {
                let sh = Shape::parse(src).map_err(|m| err(format!("shape {src:?}: {m}")))?;
                if keywords.is_empty() {
                    let need = if builtin { 2 } else { 3 };
                    if sh.anchor().map_or(0, <[u8]>::len) < need {
                        return Err(err(format!(
                            "shape {src:?} needs a literal of at least {need} characters to anchor it, or keywords"
                        )));
                    }
                }
                if !builtin && sh.min_len() < 8 {
                    return Err(err(format!(
                        "shape {src:?} matches text shorter than 8 characters"
                    )));
                }
                shapes.push(sh);
            }
            Matcher::Shapes(shapes)
        };
        Ok(Rule {
            id: self.id.as_str().into(),
            description: self.description.as_str().into(),
            matcher,
            keywords,
            entropy: self.entropy,
            mixed: self.mixed,
            checksum,
            builtin,
        })
    }
}
