//! Allow-list entries: `10.20.0.0/16`, `203.0.113.7:443`, `[2001:db8::7]:443`,
//! `pypi.mirror.internal:443`, `*.mirror.internal:443`.

use std::fmt;

use crate::addr::Cidr;

/// A host name or a `*.` wildcard, lowercase, without the trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NamePattern {
    /// `*.suffix`: any name below `suffix` (not `suffix` itself).
    pub wildcard: bool,
    pub suffix: String,
}

impl NamePattern {
    pub fn parse(s: &str) -> Result<NamePattern, String> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, suffix) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, lower),
        };
        if !is_host_name(&suffix) {
            return Err(format!("{s:?} is not a host name"));
        }
        if wildcard && !suffix.contains('.') {
            return Err(format!(
                "{s:?} is too wide: a wildcard needs at least two labels after \"*.\""
            ));
        }
        Ok(NamePattern { wildcard, suffix })
    }

    /// Does `name` (any case, trailing dot or not) match?
    pub fn matches(&self, name: &str) -> bool {
        let name = normalize_name(name);
        if self.wildcard {
            name.len() > self.suffix.len() + 1
                && name.ends_with(&self.suffix)
                && name.as_bytes()[name.len() - self.suffix.len() - 1] == b'.'
        } else {
            name == self.suffix
        }
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.suffix)
        } else {
            f.write_str(&self.suffix)
        }
    }
}

/// Lowercase, no trailing dot.
pub fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// LDH labels (underscore allowed, as in service names), 1–63 bytes each,
/// at most 253 bytes, and not all-numeric at the top (that is an address).
pub fn is_host_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok && !labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// What an entry allows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    Net(Cidr),
    Name(NamePattern),
}

/// One `allow` entry: a prefix or a name, with an optional port (then TCP
/// and UDP to that port only; without one, every protocol and port).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    pub target: Target,
    pub port: Option<u16>,
}

impl Entry {
    pub fn parse(s: &str) -> Result<Entry, String> {
        let s = s.trim();
        let bad = || {
            format!(
                "{s:?} is not an IP address or prefix, a host name, or either with \":port\" \
                 (IPv6 with a port: \"[2001:db8::1]:443\")"
            )
        };
        if s.is_empty() {
            return Err(bad());
        }
        // [v6]:port or [v6/len]:port
        if let Some(rest) = s.strip_prefix('[') {
            let (inner, port) = rest.split_once("]:").ok_or_else(bad)?;
            return Ok(Entry {
                target: Target::Net(Cidr::parse(inner)?),
                port: Some(parse_port(port, s)?),
            });
        }
        // a bare IPv6 address or prefix (several colons)
        if s.matches(':').count() > 1 {
            return Ok(Entry {
                target: Target::Net(Cidr::parse(s)?),
                port: None,
            });
        }
        let (host, port) = match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(parse_port(p, s)?)),
            None => (s, None),
        };
        let looks_like_address = host
            .split('/')
            .next()
            .is_some_and(|a| a.parse::<std::net::Ipv4Addr>().is_ok());
        if looks_like_address {
            return Ok(Entry {
                target: Target::Net(Cidr::parse(host)?),
                port,
            });
        }
        if host.contains('/') {
            return Err(bad());
        }
        let name = NamePattern::parse(host).map_err(|_| bad())?;
        Ok(Entry {
            target: Target::Name(name),
            port,
        })
    }
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{whole:?}: {p:?} is not a port (1-65535)"))
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.target, self.port) {
            (Target::Net(c), Some(p)) if !c.is_v4() => write!(f, "[{c}]:{p}"),
            (Target::Net(c), Some(p)) => write!(f, "{c}:{p}"),
            (Target::Net(c), None) => write!(f, "{c}"),
            (Target::Name(n), Some(p)) => write!(f, "{n}:{p}"),
            (Target::Name(n), None) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str, port: Option<u16>) -> Entry {
        Entry {
            target: Target::Net(Cidr::parse(s).unwrap()),
            port,
        }
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(
            Entry::parse("10.20.0.0/16").unwrap(),
            net("10.20.0.0/16", None)
        );
        assert_eq!(
            Entry::parse("203.0.113.7:443").unwrap(),
            net("203.0.113.7", Some(443))
        );
        assert_eq!(
            Entry::parse("10.0.0.0/8:53").unwrap(),
            net("10.0.0.0/8", Some(53))
        );
        assert_eq!(
            Entry::parse("2001:db8::/32").unwrap(),
            net("2001:db8::/32", None)
        );
        assert_eq!(
            Entry::parse("[2001:db8::7]:443").unwrap(),
            net("2001:db8::7", Some(443))
        );
        let e = Entry::parse("*.Mirror.Internal.:443").unwrap();
        assert_eq!(e.to_string(), "*.mirror.internal:443");
        assert_eq!(
            Entry::parse("pypi.mirror.internal").unwrap().to_string(),
            "pypi.mirror.internal"
        );
        for s in ["[2001:db8::7]:443", "10.0.0.0/8:53", "203.0.113.7"] {
            assert_eq!(Entry::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn refuses_nonsense() {
        for s in [
            "",
            "10.0.0.1/8",
            "host:0",
            "host:99999",
            "*.com",
            "*",
            "a..b",
            "-a.b",
            "1.2.3.4.5",
            "ex ample.com",
            "foo/24",
            "[2001:db8::1]",
            "*.*.example.com",
        ] {
            assert!(Entry::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn wildcards_match_below_not_at_the_apex() {
        let p = NamePattern::parse("*.mirror.internal").unwrap();
        assert!(p.matches("pypi.mirror.internal"));
        assert!(p.matches("A.B.Mirror.Internal."));
        assert!(!p.matches("mirror.internal"));
        assert!(!p.matches("evilmirror.internal"));
        assert!(!p.matches("mirror.internal.evil.com"));
        let e = NamePattern::parse("pypi.mirror.internal").unwrap();
        assert!(e.matches("PYPI.mirror.internal."));
        assert!(!e.matches("x.pypi.mirror.internal"));
    }
}
