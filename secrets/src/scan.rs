//! Finding secrets in free text: token formats (one Aho–Corasick pass over
//! every shape's anchor), admin patterns, private keys, credentials in URLs,
//! HTTP credential headers, and `name=value` / `name: value` assignments whose
//! name or value gives the secret away.

use std::ops::ControlFlow;

use crate::generic;
use crate::spec::{Matcher, Rule, Structural};
use crate::{Detector, Finding};

/// Receives each finding and its specificity (the length of the literal that
/// anchored it; 0 for structural and name-based findings).
type Sink<'a, 'd> = dyn FnMut(Finding<'d>, usize) -> ControlFlow<()> + 'a;

fn word(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Extra checks a rule puts on a matched span.
pub(crate) fn rule_accepts(rule: &Rule, m: &[u8]) -> bool {
    if let Some(e) = rule.entropy {
        if generic::shannon(m) < e {
            return false;
        }
    }
    if rule.mixed && !(m.iter().any(u8::is_ascii_digit) && m.iter().any(u8::is_ascii_alphabetic)) {
        return false;
    }
    true
}

impl Detector {
    /// Every finding in `text`, through `sink`, which may stop the scan.
    pub(crate) fn scan<'d>(&'d self, text: &str, sink: &mut Sink<'_, 'd>) -> ControlFlow<()> {
        let t = text.as_bytes();
        if let Some(ac) = &self.anchors {
            for m in ac.find_overlapping_iter(t) {
                for &(r, s) in &self.anchor_targets[m.pattern().as_usize()] {
                    let rule = &self.rules[r as usize];
                    let Matcher::Shapes(shapes) = &rule.matcher else {
                        continue;
                    };
                    let shape = &shapes[s as usize];
                    let Some((a, b)) = shape.match_at(t, m.start()) else {
                        continue;
                    };
                    if !rule_accepts(rule, &t[a..b]) {
                        continue;
                    }
                    let verified = rule.checksum.is_some_and(|c| {
                        let body = &t[a + shape.prefix().map_or(0, <[u8]>::len)..b];
                        c.verify(body)
                    });
                    sink(
                        Finding {
                            rule: &rule.id,
                            start: a,
                            end: b,
                            verified,
                        },
                        m.len(),
                    )?;
                }
            }
        }
        for &r in &self.pattern_rules {
            let rule = &self.rules[r as usize];
            if let Matcher::Pattern(re) = &rule.matcher {
                for m in re.find_iter(t) {
                    if rule_accepts(rule, m.as_bytes()) {
                        sink(
                            Finding {
                                rule: &rule.id,
                                start: m.start(),
                                end: m.end(),
                                verified: false,
                            },
                            0,
                        )?;
                    }
                }
            }
        }
        // private keys, URL passwords, credential headers (memchr-fast:
        // most values hold no `-----BEGIN`, `://` or `:`)
        let mut found: Vec<(Structural, (usize, usize))> = Vec::new();
        for s in self.pem_begin.find_iter(t) {
            found.extend(private_key(t, s).map(|span| (Structural::PrivateKey, span)));
        }
        for s in memchr::memchr_iter(b':', t) {
            if t[s..].starts_with(b"://") {
                found.extend(url_password(t, s).map(|span| (Structural::UrlCredentials, span)));
            } else if let Some(h) = header_name_before(t, s) {
                found.extend(
                    header_value(t, h, s).map(|span| (Structural::HttpAuthorization, span)),
                );
            }
        }
        for (kind, (a, b)) in found {
            if let Some(id) = self.structural_id(kind) {
                sink(
                    Finding {
                        rule: id,
                        start: a,
                        end: b,
                        verified: false,
                    },
                    0,
                )?;
            }
        }
        self.assignments(text, sink)
    }

    /// `name=value`, `name: value`, `"name": "value"`, `name => value` pairs.
    fn assignments<'d>(&'d self, text: &str, sink: &mut Sink<'_, 'd>) -> ControlFlow<()> {
        let t = text.as_bytes();
        for i in 0..t.len() {
            let op = t[i];
            if op != b'=' && op != b':' {
                continue;
            }
            let next = t.get(i + 1).copied();
            let prev = if i > 0 { Some(t[i - 1]) } else { None };
            let colon_style;
            let mut vstart = i + 1;
            if op == b'=' {
                if matches!(prev, Some(b'=' | b'!' | b'<' | b'>' | b':')) {
                    continue;
                }
                if next == Some(b'>') {
                    vstart += 1;
                }
                colon_style = false;
            } else {
                if next == Some(b'=') {
                    vstart += 1;
                    colon_style = false;
                } else if matches!(next, Some(b' ' | b'\t' | b'"' | b'\''))
                    || matches!(prev, Some(b'"' | b'\''))
                {
                    if t[i + 1..].starts_with(b"//") {
                        continue;
                    }
                    colon_style = true;
                } else {
                    continue;
                }
            }
            let Some(name) = key_before(text, i) else {
                continue;
            };
            let Some((a, b)) = value_after(t, vstart, colon_style) else {
                continue;
            };
            let value = &text[a..b];
            // `word: plain words` is prose as often as YAML ("secrets: rules
            // as data"): an unquoted key before a colon counts by its name only
            // when it reads like an HTTP header or the value is not a plain word
            let quoted_key = matches!(prev, Some(b'"' | b'\''));
            let by_name = !colon_style
                || quoted_key
                || header_like(name)
                || !generic::plain_word(trim_value(value));
            if let Some(id) = self.pair_rule(name, value, by_name) {
                sink(
                    Finding {
                        rule: id,
                        start: a,
                        end: b,
                        verified: false,
                    },
                    0,
                )?;
            }
        }
        ControlFlow::Continue(())
    }

    /// The rule a `name`/`value` pair breaks: the name rules (when `by_name`),
    /// keyword rules, then the generic rule.
    pub(crate) fn pair_rule<'d>(
        &'d self,
        name: &str,
        value: &str,
        by_name: bool,
    ) -> Option<&'d str> {
        if by_name && !generic::placeholder(trim_value(value)) {
            if let Some(r) = self.names.secret_rule(name) {
                return Some(&r.id);
            }
        }
        self.keyword_rule(name, value)
            .or_else(|| self.generic_rule(name, value))
    }

    /// A keyword rule: `name` mentions the service and the whole value has its shape.
    pub(crate) fn keyword_rule<'d>(&'d self, name: &str, value: &str) -> Option<&'d str> {
        let v = trim_value(value);
        let ac = self.keywords_ac.as_ref()?;
        // the keyword rules `name` mentions, in table order
        let mut candidates: Vec<u32> = ac
            .find_overlapping_iter(name)
            .map(|m| self.keyword_of[m.pattern().as_usize()])
            .collect();
        if candidates.is_empty() || generic::placeholder(v) || self.names.not_secret(name) {
            return None;
        }
        candidates.sort_unstable();
        candidates.dedup();
        for r in candidates {
            let rule = &self.rules[r as usize];
            let hit = match &rule.matcher {
                Matcher::Shapes(shapes) => shapes.iter().any(|s| s.full_match(v.as_bytes())),
                Matcher::Pattern(re) => re
                    .find(v.as_bytes())
                    .is_some_and(|m| m.start() == 0 && m.end() == v.len()),
                Matcher::Structural(_) => false,
            };
            if hit && rule_accepts(rule, v.as_bytes()) {
                return Some(&rule.id);
            }
        }
        None
    }

    /// The generic rule: a random-looking value under a credential word.
    pub(crate) fn generic_rule<'d>(&'d self, name: &str, value: &str) -> Option<&'d str> {
        let v = trim_value(value);
        if !self.names.credential_word(name)
            || generic::placeholder(v)
            || self.names.not_secret(name)
        {
            return None;
        }
        if generic::looks_random(v) {
            return self.structural_id(Structural::GenericSecret);
        }
        None
    }
}

/// `X-Api-Key`, `Private-Token`: capitalised parts joined by `-`.
fn header_like(name: &str) -> bool {
    name.contains('-')
        && name
            .split('-')
            .all(|p| p.as_bytes().first().is_some_and(u8::is_ascii_uppercase))
}

/// A value without surrounding whitespace and quotes.
pub(crate) fn trim_value(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\'', '`'] {
        if let Some(x) = v.strip_prefix(q).and_then(|x| x.strip_suffix(q)) {
            return x.trim();
        }
    }
    v
}

fn key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/')
}

/// The key ending just before the operator at `i` (spaces and a closing quote skipped).
fn key_before(text: &str, i: usize) -> Option<&str> {
    let t = text.as_bytes();
    let mut e = i;
    while e > 0 && matches!(t[e - 1], b' ' | b'\t') {
        e -= 1;
    }
    if e > 0 && matches!(t[e - 1], b'"' | b'\'') {
        e -= 1;
    }
    let mut s = e;
    while s > 0 && key_char(t[s - 1]) && e - s < 128 {
        s -= 1;
    }
    (s < e && t[s..e].iter().any(u8::is_ascii_alphabetic)).then(|| &text[s..e])
}

/// The value starting at `i` (after spaces): a quoted string or a bare word.
fn value_after(t: &[u8], mut i: usize, colon_style: bool) -> Option<(usize, usize)> {
    while i < t.len() && matches!(t[i], b' ' | b'\t') {
        i += 1;
    }
    let q = *t.get(i)?;
    if q == b'"' || q == b'\'' {
        let mut j = i + 1;
        while j < t.len() && t[j] != q {
            if q == b'"' && t[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        let end = j.min(t.len());
        return (end > i + 1).then_some((i + 1, end));
    }
    let mut j = i;
    while j < t.len() {
        let c = t[j];
        let stop = c.is_ascii_whitespace()
            || matches!(
                c,
                b';' | b'&' | b'<' | b'>' | b'(' | b')' | b'`' | b'"' | b'\''
            )
            || (colon_style && matches!(c, b',' | b'}' | b']'));
        if stop {
            break;
        }
        j += 1;
    }
    (j > i).then_some((i, j))
}

/// `-----BEGIN … PRIVATE KEY-----` through its END line (or the end of the text).
fn private_key(t: &[u8], s: usize) -> Option<(usize, usize)> {
    let label_start = s + b"-----BEGIN".len();
    let rest = t.get(label_start..)?;
    let close = find(rest, b"-----")?;
    let label = &rest[..close];
    if label.len() > 64 || !contains_bytes_ci(label, b"PRIVATE KEY") {
        return None;
    }
    let after = label_start + close + 5;
    let end = match find(&t[after..], b"-----END") {
        Some(p) => {
            let e = after + p + 8;
            find(&t[e..], b"-----").map_or(t.len(), |q| e + q + 5)
        }
        None => t.len(),
    };
    Some((s, end))
}

/// The password of `scheme://user:password@host` at the `://` found at `s`.
fn url_password(t: &[u8], s: usize) -> Option<(usize, usize)> {
    if s == 0 || !t[s - 1].is_ascii_alphanumeric() {
        return None;
    }
    let a = s + 3;
    let end = t[a..]
        .iter()
        .position(|&c| {
            matches!(
                c,
                b'/' | b'?'
                    | b'#'
                    | b'"'
                    | b'\''
                    | b'<'
                    | b'>'
                    | b'\\'
                    | b'`'
                    | b'('
                    | b')'
                    | b'['
                    | b']'
                    | b'{'
                    | b'}'
            ) || c.is_ascii_whitespace()
        })
        .map_or(t.len(), |p| a + p);
    let auth = &t[a..end];
    let at = auth.iter().rposition(|&c| c == b'@')?;
    let colon = auth[..at].iter().position(|&c| c == b':')?;
    let (pa, pb) = (a + colon + 1, a + at);
    let pw = std::str::from_utf8(&t[pa..pb]).ok()?;
    (!generic::placeholder(pw)).then_some((pa, pb))
}

/// Where a credential header's name (`Authorization`, `Proxy-Authorization`,
/// `Cookie`, `Set-Cookie`; any case) starts, if one ends just before the
/// colon at `colon` (spaces allowed between).
fn header_name_before(t: &[u8], colon: usize) -> Option<usize> {
    let mut e = colon;
    while e > 0 && matches!(t[e - 1], b' ' | b'\t') {
        e -= 1;
    }
    for name in [&b"authorization"[..], b"cookie"] {
        if e >= name.len() && t[e - name.len()..e].eq_ignore_ascii_case(name) {
            return Some(e - name.len());
        }
    }
    None
}

/// The value of an `Authorization:` / `Cookie:` header whose name was found at `s..e`.
fn header_value(t: &[u8], s: usize, e: usize) -> Option<(usize, usize)> {
    if s > 0 && word(t[s - 1]) {
        return None;
    }
    let mut i = e;
    while i < t.len() && matches!(t[i], b' ' | b'\t') {
        i += 1;
    }
    if t.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while i < t.len() && matches!(t[i], b' ' | b'\t') {
        i += 1;
    }
    let end = t[i..]
        .iter()
        .position(|&c| matches!(c, b'\n' | b'\r' | b'"' | b'\''))
        .map_or(t.len(), |p| i + p);
    let mut b = end;
    while b > i && t[b - 1].is_ascii_whitespace() {
        b -= 1;
    }
    let v = std::str::from_utf8(&t[i..b]).ok()?;
    let cred = v.rsplit([' ', '\t']).next().unwrap_or(v);
    (b > i && !generic::placeholder(cred)).then_some((i, b))
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn contains_bytes_ci(h: &[u8], n: &[u8]) -> bool {
    h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values() {
        let s = "export DB_PASSWORD='hunter 2' && x";
        let i = s.find('=').unwrap();
        assert_eq!(key_before(s, i), Some("DB_PASSWORD"));
        let (a, b) = value_after(s.as_bytes(), i + 1, false).unwrap();
        assert_eq!(&s[a..b], "hunter 2");
        let s = r#"{"api_key": "abc\"def", "x": 1}"#;
        let i = s.find(':').unwrap();
        assert_eq!(key_before(s, i), Some("api_key"));
        let (a, b) = value_after(s.as_bytes(), i + 1, true).unwrap();
        assert_eq!(&s[a..b], r#"abc\"def"#);
        assert_eq!(key_before("=x", 0), None);
        assert_eq!(key_before("123=x", 3), None);
    }

    #[test]
    fn urls() {
        let t = b"git clone https://me:s3cret@example.com/x.git";
        let s = find(t, b"://").unwrap();
        let (a, b) = url_password(t, s).unwrap();
        assert_eq!(&t[a..b], b"s3cret");
        for u in [
            &b"https://example.com/a@b"[..],
            b"ssh://git@host/x",
            b"https://u:@h/",
            b"https://u:$PASS@h/",
        ] {
            assert_eq!(
                url_password(u, find(u, b"://").unwrap()),
                None,
                "{}",
                String::from_utf8_lossy(u)
            );
        }
    }

    #[test]
    fn headers_and_keys() {
        let t = b"curl -H 'Authorization: Bearer abc.def' x";
        let s = find(t, b"Authorization").unwrap();
        let (a, b) = header_value(t, s, s + 13).unwrap();
        assert_eq!(&t[a..b], b"Bearer abc.def");
        let t = b"Authorization: Bearer $TOKEN";
        assert_eq!(header_value(t, 0, 13), None);
        let t = b"-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\nrest";
        let (a, b) = private_key(t, 0).unwrap();
        assert_eq!((a, &t[b..]), (0, &b"\nrest"[..]));
        assert_eq!(private_key(b"-----BEGIN CERTIFICATE-----", 0), None);
    }
}
