//! Token shapes: a small grammar for the structure of a token format, and its
//! matcher.
//!
//! A shape is literal text and character runs: `ghp_{alnum:36-}`,
//! `SG.{b64url:22}.{b64url:43}`, `{[a-zA-Z0-9_~.]:3}{digit:1}Q~{[a-zA-Z0-9_~.-]:31-34}`.
//! A run is `{CHARSET:N}` (exactly N), `{CHARSET:N-M}` or `{CHARSET:N-}` (N or
//! more). CHARSET is a name (see [`named_set`]) or a class in brackets with
//! ranges (`[a-f0-9_-]`; `\]`, `\\` and `\-` escape). Literal text may escape
//! `{`, `}` and `\` with a backslash. Everything is ASCII.
//!
//! Matching starts at an occurrence of the shape's *anchor* (its longest
//! literal, found by one Aho–Corasick automaton over every rule): the segments
//! after it are matched forwards and those before it backwards, each greedy
//! with backtracking. A match must sit at word boundaries: the byte before it
//! and the byte after it are not ASCII letters or digits.

use std::fmt;

/// A set of ASCII bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteSet([u64; 2]);

impl ByteSet {
    pub const EMPTY: ByteSet = ByteSet([0, 0]);

    pub fn contains(&self, b: u8) -> bool {
        b < 128 && self.0[(b >> 6) as usize] & (1u64 << (b & 63)) != 0
    }

    fn insert(&mut self, b: u8) {
        self.0[(b >> 6) as usize] |= 1u64 << (b & 63);
    }

    fn range(mut self, lo: u8, hi: u8) -> Self {
        for b in lo..=hi {
            self.insert(b);
        }
        self
    }

    fn bytes(mut self, s: &[u8]) -> Self {
        for &b in s {
            self.insert(b);
        }
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0u8..128).filter(|&b| self.contains(b))
    }
}

impl fmt::Debug for ByteSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s: String = self.iter().map(char::from).collect();
        write!(f, "[{s}]")
    }
}

/// The named character sets of the shape grammar.
pub(crate) fn named_set(name: &str) -> Option<ByteSet> {
    let e = ByteSet::EMPTY;
    let digit = e.range(b'0', b'9');
    let lower = e.range(b'a', b'z');
    let upper = e.range(b'A', b'Z');
    let alnum = digit.range(b'a', b'z').range(b'A', b'Z');
    Some(match name {
        "digit" => digit,
        "hex" => digit.range(b'a', b'f'),
        "HEX" => digit.range(b'A', b'F'),
        "hexi" => digit.range(b'a', b'f').range(b'A', b'F'),
        "lower" => lower,
        "upper" => upper,
        "alpha" => lower.range(b'A', b'Z'),
        "alnum" => alnum,
        "lalnum" => lower.range(b'0', b'9'),
        "ualnum" => upper.range(b'0', b'9'),
        "word" => alnum.bytes(b"_"),
        "b64" => alnum.bytes(b"+/"),
        "b64url" => alnum.bytes(b"_-"),
        "base32" => upper.range(b'2', b'7'),
        _ => return None,
    })
}

/// Names accepted by [`named_set`], for error messages and docs.
pub const SET_NAMES: &[&str] = &[
    "digit", "hex", "HEX", "hexi", "lower", "upper", "alpha", "alnum", "lalnum", "ualnum", "word",
    "b64", "b64url", "base32",
];

/// Longest run length a shape may ask for; `{x:N-}` is unbounded.
pub const MAX_RUN: u16 = 4096;
const UNBOUNDED: u16 = u16::MAX;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seg {
    Lit(Box<[u8]>),
    Run { set: ByteSet, min: u16, max: u16 },
}

/// A parsed shape.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    segs: Vec<Seg>,
    /// Index of the anchor literal in `segs`, if the shape has a literal.
    anchor: Option<usize>,
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Steps a single match attempt may take before it gives up (backtracking bound).
const BUDGET: u32 = 20_000;

impl Shape {
    pub fn parse(src: &str) -> Result<Shape, String> {
        let b = src.as_bytes();
        let mut segs = Vec::new();
        let mut lit = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if !(0x20..0x7f).contains(&c) {
                return Err("only printable ASCII is allowed".into());
            }
            match c {
                b'\\' => {
                    let n = *b.get(i + 1).ok_or("a trailing backslash escapes nothing")?;
                    lit.push(n);
                    i += 2;
                }
                b'{' => {
                    let end = b[i..]
                        .iter()
                        .position(|&x| x == b'}')
                        .map(|p| i + p)
                        .ok_or("unclosed {")?;
                    // (a class cannot hold '}')
                    let inner = &src[i + 1..end];
                    let (set_src, count) = inner
                        .rsplit_once(':')
                        .ok_or_else(|| format!("{{{inner}}} needs the form {{CHARSET:N}}"))?;
                    let set = parse_set(set_src)?;
                    let (min, max) = parse_count(count)?;
                    if !lit.is_empty() {
                        segs.push(Seg::Lit(std::mem::take(&mut lit).into()));
                    }
                    segs.push(Seg::Run { set, min, max });
                    i = end + 1;
                }
                b'}' => return Err("unmatched }".into()),
                _ => {
                    lit.push(c);
                    i += 1;
                }
            }
        }
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit.into()));
        }
        if segs.is_empty() {
            return Err("the shape is empty".into());
        }
        let mut anchor: Option<usize> = None;
        for (k, s) in segs.iter().enumerate() {
            if let Seg::Lit(l) = s {
                if anchor.is_none_or(|a| matches!(&segs[a], Seg::Lit(m) if l.len() > m.len())) {
                    anchor = Some(k);
                }
            }
        }
        Ok(Shape { segs, anchor })
    }

    /// The anchor literal (the longest literal), if any.
    pub fn anchor(&self) -> Option<&[u8]> {
        match self.anchor.map(|a| &self.segs[a]) {
            Some(Seg::Lit(l)) => Some(l),
            _ => None,
        }
    }

    /// Shortest text the shape matches.
    pub fn min_len(&self) -> usize {
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Lit(l) => l.len(),
                Seg::Run { min, .. } => *min as usize,
            })
            .sum()
    }

    /// The literal the shape starts with (its prefix), if it starts with one.
    pub fn prefix(&self) -> Option<&[u8]> {
        match self.segs.first() {
            Some(Seg::Lit(l)) => Some(l),
            _ => None,
        }
    }

    #[cfg(test)]
    pub fn segs(&self) -> &[Seg] {
        &self.segs
    }

    /// A match around the anchor found at `t[pos..]`: `(start, end)`.
    pub fn match_at(&self, t: &[u8], pos: usize) -> Option<(usize, usize)> {
        let a = self.anchor?;
        let Seg::Lit(l) = &self.segs[a] else {
            return None;
        };
        if !t[pos..].starts_with(l) {
            return None;
        }
        let mut budget = BUDGET;
        let end = fwd(&self.segs[a + 1..], t, pos + l.len(), &mut budget, &|i| {
            i == t.len() || !is_word(t[i])
        })?;
        let start = bwd(&self.segs[..a], t, pos, &mut budget)?;
        Some((start, end))
    }

    /// Does the whole of `t` have this shape?
    pub fn full_match(&self, t: &[u8]) -> bool {
        let mut budget = BUDGET;
        fwd(&self.segs, t, 0, &mut budget, &|i| i == t.len()).is_some()
    }
}

fn parse_set(s: &str) -> Result<ByteSet, String> {
    if let Some(set) = named_set(s) {
        return Ok(set);
    }
    let Some(body) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) else {
        return Err(format!(
            "unknown character set {s:?} (expected one of {} or a class like [a-z0-9_-])",
            SET_NAMES.join(", ")
        ));
    };
    let b = body.as_bytes();
    let mut set = ByteSet::EMPTY;
    let mut i = 0;
    let mut items = Vec::new();
    while i < b.len() {
        if b[i] == b'\\' {
            items.push(*b.get(i + 1).ok_or("a trailing backslash in a class")?);
            i += 2;
        } else {
            items.push(b[i]);
            i += 1;
        }
        // a range a-z (an unescaped '-' between two items)
        if i + 1 < b.len() && b[i] == b'-' && b[i + 1] != b']' {
            let lo = items.pop().unwrap_or(b'-');
            let hi = if b[i + 1] == b'\\' {
                let h = *b.get(i + 2).ok_or("a trailing backslash in a class")?;
                i += 3;
                h
            } else {
                let h = b[i + 1];
                i += 2;
                h
            };
            if lo > hi {
                return Err(format!("bad range {}-{} in {s}", lo as char, hi as char));
            }
            set = set.range(lo, hi);
        }
    }
    for c in items {
        set = set.bytes(&[c]);
    }
    if set == ByteSet::EMPTY {
        return Err(format!("empty character class {s}"));
    }
    if set.iter().any(|c| c.is_ascii_whitespace()) {
        return Err(format!("a character class may not hold whitespace: {s}"));
    }
    Ok(set)
}

fn parse_count(s: &str) -> Result<(u16, u16), String> {
    let num = |x: &str| -> Result<u16, String> {
        x.parse::<u16>()
            .ok()
            .filter(|&n| n <= MAX_RUN)
            .ok_or_else(|| format!("{x:?} is not a count between 0 and {MAX_RUN}"))
    };
    let (min, max) = match s.split_once('-') {
        None => {
            let n = num(s)?;
            (n, n)
        }
        Some((a, "")) => (num(a)?, UNBOUNDED),
        Some((a, b)) => (num(a)?, num(b)?),
    };
    if max < min {
        return Err(format!("count {s}: the maximum is below the minimum"));
    }
    if max == 0 {
        return Err(format!("count {s} matches nothing"));
    }
    Ok((min, max))
}

/// Match `segs` forwards from `i`; `done` says whether a position is an acceptable end.
fn fwd(
    segs: &[Seg],
    t: &[u8],
    i: usize,
    budget: &mut u32,
    done: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    *budget = budget.checked_sub(1)?;
    let Some((first, rest)) = segs.split_first() else {
        return done(i).then_some(i);
    };
    match first {
        Seg::Lit(l) => {
            if t.get(i..)?.starts_with(l) {
                fwd(rest, t, i + l.len(), budget, done)
            } else {
                None
            }
        }
        Seg::Run { set, min, max } => {
            let avail = t[i.min(t.len())..]
                .iter()
                .take(*max as usize)
                .take_while(|&&c| set.contains(c))
                .count();
            let min = *min as usize;
            if avail < min {
                return None;
            }
            // a bounded run must not continue: the text is longer than the format
            if rest.is_empty()
                && *max != UNBOUNDED
                && t.get(i + avail).is_some_and(|&c| set.contains(c))
            {
                return None;
            }
            (min..=avail)
                .rev()
                .find_map(|n| fwd(rest, t, i + n, budget, done))
        }
    }
}

/// Match `segs` backwards, ending at `i` (exclusive); returns the start.
fn bwd(segs: &[Seg], t: &[u8], i: usize, budget: &mut u32) -> Option<usize> {
    *budget = budget.checked_sub(1)?;
    let Some((last, rest)) = segs.split_last() else {
        return (i == 0 || !is_word(t[i - 1])).then_some(i);
    };
    match last {
        Seg::Lit(l) => {
            if i >= l.len() && t[i - l.len()..i] == l[..] {
                bwd(rest, t, i - l.len(), budget)
            } else {
                None
            }
        }
        Seg::Run { set, min, max } => {
            let avail = t[..i]
                .iter()
                .rev()
                .take(*max as usize)
                .take_while(|&&c| set.contains(c))
                .count();
            let min = *min as usize;
            if avail < min {
                return None;
            }
            if rest.is_empty() && *max != UNBOUNDED && i > avail && set.contains(t[i - avail - 1]) {
                return None;
            }
            (min..=avail)
                .rev()
                .find_map(|n| bwd(rest, t, i - n, budget))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(shape: &str, text: &str) -> Option<(usize, usize)> {
        let s = Shape::parse(shape).unwrap();
        let a = s.anchor().unwrap().to_vec();
        let t = text.as_bytes();
        (0..t.len())
            .filter(|&i| t[i..].starts_with(&a))
            .find_map(|i| s.match_at(t, i))
    }

    #[test]
    fn parses_and_anchors() {
        let s = Shape::parse("SG.{b64url:22}.{b64url:43}").unwrap();
        assert_eq!(s.anchor(), Some(&b"SG."[..]));
        assert_eq!(s.min_len(), 3 + 22 + 1 + 43);
        let s = Shape::parse("{alnum:6}_{alnum:29}_mmk").unwrap();
        assert_eq!(s.anchor(), Some(&b"_mmk"[..]));
        let s = Shape::parse(r"a\{b{[a-c\]-]:2}").unwrap();
        assert_eq!(s.prefix(), Some(&b"a{b"[..]));
        match &s.segs()[1] {
            Seg::Run { set, .. } => assert_eq!(format!("{set:?}"), "[-]abc]"),
            other => panic!("{other:?}"),
        }
        for bad in [
            "",
            "{alnum}",
            "{nope:3}",
            "{alnum:0}",
            "{alnum:5-3}",
            "x{alnum:3",
            "x}",
            "{[]:3}",
            "{[ ]:3}",
            "{alnum:99999}",
            "é",
        ] {
            assert!(Shape::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matches_with_boundaries() {
        assert_eq!(find("ab_{digit:3}", "x ab_123 y"), Some((2, 8)));
        assert_eq!(find("ab_{digit:3}", "xab_123"), None, "no boundary before");
        assert_eq!(
            find("ab_{digit:3}", "ab_1234"),
            None,
            "bounded run too long"
        );
        assert_eq!(find("ab_{digit:3}", "ab_123x"), None, "no boundary after");
        assert_eq!(find("ab_{digit:3}", "ab_123-x"), Some((0, 6)));
        assert_eq!(find("ab_{digit:3-}", "ab_1234567"), Some((0, 10)));
        assert_eq!(find("ab_{digit:3-5}", "ab_12"), None);
        // backtracking into a run to find the next literal
        assert_eq!(
            find("k-{b64url:3-9}.{digit:2}", "k-ab-cd.12"),
            Some((0, 10))
        );
        // backwards segments
        assert_eq!(
            find("{alnum:3}{digit:1}Q~{alnum:4}", "=abc1Q~wxyz"),
            Some((1, 11))
        );
        assert_eq!(find("{alnum:3}{digit:1}Q~{alnum:4}", "zabc1Q~wxyz"), None);
        assert_eq!(
            find("{alnum:2}_{alnum:3}_mmk", "(ab_cde_mmk)"),
            Some((1, 11))
        );
    }

    #[test]
    fn full_match() {
        let s = Shape::parse("{hex:8}-{hex:4}").unwrap();
        assert!(s.full_match(b"deadbeef-0a1b"));
        assert!(!s.full_match(b"deadbeef-0a1b "));
        assert!(!s.full_match(b"deadbeef-0a1"));
    }
}
