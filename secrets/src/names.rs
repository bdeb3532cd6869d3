//! Names: which variable, flag, header or key names say "this holds a secret".
//!
//! A name is split into components on `_ - . / :` and at lower-to-upper case
//! changes (`githubToken` → `github`, `Token`); all comparisons ignore ASCII
//! case. The word lists live in `rules.toml` (`[names]` and `[[name_rule]]`).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};

use crate::spec::{NameRuleSpec, NamesSpec};
use crate::RuleError;

/// A name rule: a name matching it holds a secret whatever its value.
#[derive(Debug)]
pub(crate) struct NameRule {
    pub id: Box<str>,
    pub description: Box<str>,
    components: Vec<Box<str>>,
    component_suffixes: Vec<Box<str>>,
    before_key: Vec<Box<str>>,
    last_components: Vec<Box<str>>,
    except: Vec<Box<str>>,
}

#[derive(Debug)]
pub(crate) struct Names {
    kept: Vec<Box<str>>,
    kept_prefixes: Vec<Box<str>>,
    kept_suffixes: Vec<Box<str>>,
    kept_infixes: Vec<Box<str>>,
    reference_suffixes: Vec<Box<str>>,
    weak_words: Vec<Box<str>>,
    weak_suffixes: Vec<Box<str>>,
    not_secret_suffixes: Vec<Box<str>>,
    hash_words: Vec<Box<str>>,
    no_value_words: Vec<Box<str>>,
    pub rules: Vec<NameRule>,
    /// every rule's `contains` needles, case-insensitive; pattern → rule index
    contains: AhoCorasick,
    contains_rule: Vec<usize>,
    /// every word any name or credential check looks for: a name without
    /// one is neither a secret name nor a credential word (the fast path)
    words: AhoCorasick,
}

fn up(v: &[String]) -> Vec<Box<str>> {
    v.iter().map(|s| s.to_ascii_uppercase().into()).collect()
}

fn is_sep(b: u8) -> bool {
    matches!(b, b'_' | b'-' | b'.' | b'/' | b':' | b' ')
}

/// The components of a name (byte ranges into it).
pub(crate) fn components(name: &str) -> impl Iterator<Item = &str> + '_ {
    let b = name.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() && is_sep(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            return None;
        }
        let start = i;
        i += 1;
        while i < b.len()
            && !is_sep(b[i])
            && !(b[i].is_ascii_uppercase() && b[i - 1].is_ascii_lowercase())
        {
            i += 1;
        }
        Some(&name[start..i])
    })
}

fn any_eq(list: &[Box<str>], c: &str) -> bool {
    list.iter().any(|w| w.eq_ignore_ascii_case(c))
}

fn ends_with_ci(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

impl Names {
    pub fn compile(spec: &NamesSpec, rules: &[NameRuleSpec]) -> Result<Names, RuleError> {
        let mut needles = Vec::new();
        let mut contains_rule = Vec::new();
        let mut compiled = Vec::new();
        for (k, r) in rules.iter().enumerate() {
            crate::spec::check_id(&r.id)?;
            for n in &r.contains {
                needles.push(n.to_ascii_uppercase());
                contains_rule.push(k);
            }
            compiled.push(NameRule {
                id: r.id.as_str().into(),
                description: r.description.as_str().into(),
                components: up(&r.components),
                component_suffixes: up(&r.component_suffixes),
                before_key: up(&r.before_key),
                last_components: up(&r.last_components),
                except: up(&r.except),
            });
        }
        let contains = AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&needles)
            .map_err(|e| RuleError::Builtin(format!("name needles: {e}")))?;
        let mut words: Vec<String> = needles.clone();
        for r in rules {
            for w in r
                .components
                .iter()
                .chain(&r.component_suffixes)
                .chain(&r.last_components)
            {
                words.push(w.to_ascii_uppercase());
            }
            if !r.before_key.is_empty() {
                words.push("KEY".into());
            }
        }
        words.extend(
            spec.weak_words
                .iter()
                .chain(&spec.weak_suffixes)
                .map(|w| w.to_ascii_uppercase()),
        );
        let words = AhoCorasickBuilder::new()
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .ascii_case_insensitive(true)
            .build(&words)
            .map_err(|e| RuleError::Builtin(format!("name words: {e}")))?;
        Ok(Names {
            kept: up(&spec.kept),
            kept_prefixes: up(&spec.kept_prefixes),
            kept_suffixes: up(&spec.kept_suffixes),
            kept_infixes: up(&spec.kept_infixes),
            reference_suffixes: up(&spec.reference_suffixes),
            weak_words: up(&spec.weak_words),
            weak_suffixes: up(&spec.weak_suffixes),
            not_secret_suffixes: up(&spec.not_secret_suffixes),
            hash_words: up(&spec.hash_words),
            no_value_words: up(&spec.no_value_words),
            rules: compiled,
            contains,
            contains_rule,
            words,
        })
    }

    /// Names programs need (exempt from the name rules; values are still checked).
    pub fn kept(&self, name: &str) -> bool {
        any_eq(&self.kept, name)
            || self.kept_prefixes.iter().any(|p| starts_with_ci(name, p))
            || self
                .kept_suffixes
                .iter()
                .any(|s| ends_with_ci(name, s) && name.len() > s.len())
            || self.kept_infixes.iter().any(|s| {
                let (n, s) = (name.as_bytes(), s.as_bytes());
                n.len() > s.len()
                    && n.windows(s.len())
                        .skip(1)
                        .any(|w| w.eq_ignore_ascii_case(s))
            })
    }

    /// The name rule `name` matches, if any (kept names are not considered here).
    /// A name whose last component is a reference (`FILE`, `PATH`, `URL`…) names
    /// where a secret is, not the secret: it matches no name rule.
    pub fn secret_rule(&self, name: &str) -> Option<&NameRule> {
        if !self.words.is_match(name) {
            return None;
        }
        let mut n = 0usize;
        let mut last = "";
        for c in components(name) {
            n += 1;
            last = c;
        }
        if n == 0 || (n > 1 && any_eq(&self.reference_suffixes, last)) {
            return None;
        }
        let mut hit = usize::MAX;
        for m in self.contains.find_overlapping_iter(name) {
            hit = hit.min(self.contains_rule[m.pattern().as_usize()]);
        }
        for (k, r) in self.rules.iter().enumerate() {
            if any_eq(&r.except, name) {
                continue;
            }
            if k == hit {
                return Some(r);
            }
            let mut prev: Option<&str> = None;
            let mut count = 0usize;
            let mut lastc = "";
            for c in components(name) {
                count += 1;
                if any_eq(&r.components, c)
                    || r.component_suffixes.iter().any(|s| ends_with_ci(c, s))
                {
                    return Some(r);
                }
                if c.eq_ignore_ascii_case("KEY") && prev.is_some_and(|p| any_eq(&r.before_key, p)) {
                    return Some(r);
                }
                prev = Some(c);
                lastc = c;
            }
            if count > 1 && any_eq(&r.last_components, lastc) {
                return Some(r);
            }
        }
        None
    }

    /// A name with a word that suggests a credential (`KEY`, `AUTH`, `PRIVATE`…,
    /// or any name rule): a high-entropy value under it is a generic secret.
    pub fn credential_word(&self, name: &str) -> bool {
        if !self.words.is_match(name) {
            return false;
        }
        components(name).any(|c| {
            any_eq(&self.weak_words, c) || self.weak_suffixes.iter().any(|s| ends_with_ci(c, s))
        }) || self.contains.is_match(name)
            || self.rules.iter().any(|r| {
                components(name).any(|c| {
                    any_eq(&r.components, c)
                        || r.component_suffixes.iter().any(|s| ends_with_ci(c, s))
                })
            })
    }

    /// Names whose values are not secrets even under a credential word: ids,
    /// paths, URLs, hosts, versions (last component), hashes and public keys
    /// named as such (any component).
    pub fn not_secret(&self, name: &str) -> bool {
        let mut last = "";
        for c in components(name) {
            if any_eq(&self.hash_words, c) {
                return true;
            }
            last = c;
        }
        !last.is_empty() && any_eq(&self.not_secret_suffixes, last)
    }

    /// Does a flag of this name take a value (`--password-stdin`, `--no-token` do not)?
    pub fn flag_takes_value(&self, name: &str) -> bool {
        let mut first = None;
        let mut last = "";
        for c in components(name) {
            first.get_or_insert(c);
            last = c;
        }
        !(first.is_some_and(|f| f.eq_ignore_ascii_case("NO")) || any_eq(&self.no_value_words, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_components() {
        let c: Vec<&str> = components("githubToken").collect();
        assert_eq!(c, ["github", "Token"]);
        let c: Vec<&str> = components("--db-password").collect();
        assert_eq!(c, ["db", "password"]);
        let c: Vec<&str> = components("//registry.npmjs.org/:_authToken").collect();
        assert_eq!(c, ["registry", "npmjs", "org", "auth", "Token"]);
        let c: Vec<&str> = components("AWS_SECRET_ACCESS_KEY").collect();
        assert_eq!(c, ["AWS", "SECRET", "ACCESS", "KEY"]);
        assert_eq!(components("__").count(), 0);
    }
}
