//! Generic secrets: a random-looking value under a name that suggests a
//! credential. The thresholds are justified in `docs/policy.md` and checked by
//! `tests/generic.rs` against random tokens and the ordinary corpus.

/// Shortest value the generic rule considers (API keys and tokens are 16+
/// characters in every format the rules table knows).
pub const MIN_LEN: usize = 16;
/// Hex-only values must be longer: 16 hex digits carry 64 bits.
pub const MIN_HEX_LEN: usize = 20;
/// Required entropy, as a fraction of the most a string of its length and
/// alphabet can have (`log2(min(len, alphabet size))`).
pub const ENTROPY_FRACTION: f64 = 0.70;
pub const HEX_ENTROPY_FRACTION: f64 = 0.62;

/// Shannon entropy in bits per byte.
pub fn shannon(v: &[u8]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in v {
        counts[b as usize] += 1;
    }
    let n = v.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// A value that is a reference to another variable (`$X`, `${X}`, `$(X)`,
/// `%X%`) or a masked/placeholder one (`***`, `<token>`, `xxxx`): not itself a secret.
pub fn placeholder(v: &str) -> bool {
    let b = v.as_bytes();
    if b.is_empty() {
        return true;
    }
    let ident =
        |s: &[u8]| !s.is_empty() && s.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if let Some(r) = v.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        return ident(r.split([':', '-']).next().unwrap_or("").as_bytes());
    }
    if let Some(r) = v.strip_prefix("$(").and_then(|r| r.strip_suffix(')')) {
        return ident(r.as_bytes());
    }
    if let Some(r) = v.strip_prefix('$') {
        return ident(r.as_bytes());
    }
    if let Some(r) = v.strip_prefix('%').and_then(|r| r.strip_suffix('%')) {
        return ident(r.as_bytes());
    }
    if (v.starts_with('<') && v.ends_with('>'))
        || (v.starts_with("{{") && v.ends_with("}}"))
        || v.eq_ignore_ascii_case("[masked]")
        || v.eq_ignore_ascii_case("[redacted]")
        || v.eq_ignore_ascii_case("redacted")
    {
        return true;
    }
    let first = b[0];
    matches!(first, b'*' | b'x' | b'X' | b'.' | b'#') && b.iter().all(|&c| c == first)
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_number_or_version(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"v").unwrap_or(b);
    !b.is_empty()
        && b[0].is_ascii_digit()
        && b.iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'+' | b'-' | b':'))
}

/// A file path: an absolute, relative or home path that reads like one (mostly
/// lower case, or ending in a file extension); a base64 token may start with `/`.
fn is_path(b: &[u8]) -> bool {
    if !(b.starts_with(b"/")
        || b.starts_with(b"./")
        || b.starts_with(b"../")
        || b.starts_with(b"~/"))
    {
        return false;
    }
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    let upper = b.iter().filter(|c| c.is_ascii_uppercase()).count();
    let ext = b.iter().rposition(|&c| c == b'.').is_some_and(|i| {
        (2..=6).contains(&(b.len() - i))
            && b[i + 1..]
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    });
    upper * 4 <= letters || ext
}

/// Values programs need that are never secrets by themselves: paths, URLs
/// without credentials (the URL rule looks at those with), UUIDs, numbers and
/// versions, booleans, e-mail addresses and host names.
pub fn ordinary_value(v: &str) -> bool {
    let b = v.as_bytes();
    if is_path(b) {
        return true;
    }
    if let Some(i) = v.find("://") {
        if i > 0
            && v[..i]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'))
        {
            return true;
        }
    }
    if is_uuid(b) || is_number_or_version(b) {
        return true;
    }
    if matches!(
        v.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off" | "none" | "null"
    ) {
        return true;
    }
    // user@host.tld, host.example.com: letters and dots, low entropy
    let dotted = b.iter().filter(|&&c| c == b'.').count();
    dotted >= 2
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || matches!(c, b'.' | b'-' | b'@'))
}

/// A single lower-case, upper-case or capitalised word, or a number.
pub fn plain_word(v: &str) -> bool {
    !v.is_empty() && plain_part(v.as_bytes())
}

/// A lower-case word, an upper-case word, a capitalised word or a number.
fn plain_part(p: &[u8]) -> bool {
    p.iter().all(u8::is_ascii_lowercase)
        || p.iter().all(u8::is_ascii_uppercase)
        || p.iter().all(u8::is_ascii_digit)
        || (p[0].is_ascii_uppercase() && p[1..].iter().all(u8::is_ascii_lowercase))
}

/// Does `v` look like a random token (and not like anything ordinary)?
pub fn looks_random(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < MIN_LEN
        || b.iter().any(|c| !c.is_ascii_graphic())
        || placeholder(v)
        || ordinary_value(v)
    {
        return false;
    }
    // words and numbers joined by separators (`my-release-name-2024`,
    // `Build_Cache_v2`) are identifiers, not tokens: a token has a part that
    // mixes cases or letters and digits
    if b.split(|c| !c.is_ascii_alphanumeric()).all(plain_part) {
        return false;
    }
    let h = shannon(b);
    let hex = b.iter().all(u8::is_ascii_hexdigit)
        && !(b.iter().any(u8::is_ascii_lowercase) && b.iter().any(u8::is_ascii_uppercase));
    if hex {
        let max = (b.len().min(16) as f64).log2();
        return b.len() >= MIN_HEX_LEN && h >= HEX_ENTROPY_FRACTION * max;
    }
    let classes = [
        b.iter().any(u8::is_ascii_lowercase),
        b.iter().any(u8::is_ascii_uppercase),
        b.iter().any(u8::is_ascii_digit),
    ]
    .iter()
    .filter(|&&x| x)
    .count();
    let max = (b.len().min(64) as f64).log2();
    classes >= 2 && h >= ENTROPY_FRACTION * max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy() {
        assert_eq!(shannon(b""), 0.0);
        assert_eq!(shannon(b"aaaa"), 0.0);
        assert!((shannon(b"abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn placeholders() {
        for v in [
            "$DB_PASSWORD",
            "${TOKEN}",
            "${TOKEN:-x}",
            "$(SECRET)",
            "%PASS%",
            "<token>",
            "{{ .Values.x }}",
            "********",
            "xxxxxxxx",
            "[MASKED]",
            "",
        ] {
            assert!(placeholder(v), "{v}");
        }
        for v in ["$ecret-value", "hunter2", "$(cat /x)"] {
            assert!(!placeholder(v), "{v}");
        }
    }

    #[test]
    fn random_or_not() {
        for v in [
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
            "Zq3xR8vLm2NpT5wK9bYc",
            "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c",
        ] {
            assert!(looks_random(v), "{v}");
        }
        for v in [
            "/usr/share/keyrings/example.gpg",
            "https://example.com/a/b?c=d",
            "0d3c1a6e-5b1f-4a8e-9c7d-2f4e6a8b0c1d",
            "my-release-name-2024",
            "application/json+charset",
            "1.2.3-alpha.4+build.567",
            "correct-horse-battery-staple",
            "short",
            "ci-bot@users.noreply.example.com",
        ] {
            assert!(!looks_random(v), "{v}");
        }
    }
}
