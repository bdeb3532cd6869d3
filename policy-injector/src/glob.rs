//! A tiny glob matcher: `*` matches any run of characters (including none), `?`
//! matches exactly one. No character classes, no escapes. Used for env name
//! patterns (case-insensitive) and for single path components (case-sensitive).

/// A compiled, case-insensitive name pattern such as `ACME_*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameGlob {
    upper: Vec<u8>,
}

impl NameGlob {
    pub fn new(pattern: &str) -> NameGlob {
        NameGlob {
            upper: pattern.bytes().map(|b| b.to_ascii_uppercase()).collect(),
        }
    }

    /// Case-insensitive (ASCII) match of the whole `name`.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(&self.upper, name.as_bytes(), true)
    }
}

/// Match `text` against `pat` in full. With `fold`, `text` is compared upper-cased
/// (ASCII) and `pat` must already be upper-case.
pub fn glob_match(pat: &[u8], text: &[u8], fold: bool) -> bool {
    let norm = |b: u8| if fold { b.to_ascii_uppercase() } else { b };
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || (pat[p] != b'*' && pat[p] == norm(text[t]))) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(NameGlob::new("acme_*").matches("ACME_KEY"));
        assert!(NameGlob::new("ACME_*").matches("acme_"));
        assert!(!NameGlob::new("ACME_*").matches("XACME_KEY"));
        assert!(NameGlob::new("*_API_KEY").matches("openai_api_key"));
        assert!(NameGlob::new("A?C").matches("abc"));
        assert!(!NameGlob::new("A?C").matches("ac"));
        assert!(NameGlob::new("*").matches(""));
        assert!(NameGlob::new("**x**").matches("aaxbb"));
        assert!(glob_match(b"*.sock", b"docker.sock", false));
        assert!(!glob_match(b"*.SOCK", b"docker.sock", false));
    }
}
