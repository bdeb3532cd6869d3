//! The `[network]` table of the agentbox config, validated; and the
//! `agentbox.dev/network` pod annotation, which may only tighten it.
//!
//! ```toml
//! [network]
//! mode = "allowlist"        # offline | allowlist | open (default: offline)
//! allow = ["10.20.0.0/16", "203.0.113.7:443", "pypi.mirror.internal:443"]
//! dns = true                # resolve names through agentbox's resolver
//! upstream = ["10.96.0.10"] # where that resolver asks (default: the pod's own nameservers)
//! [network.setup]           # while only setup containers have been created
//! mode = "allowlist"
//! allow = ["pypi.mirror.internal:443"]
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::entry::{Entry, Target};

/// The pod annotation that tightens the network policy.
pub const ANNOTATION: &str = "agentbox.dev/network";

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// How much of the network a phase gets. Ordered from strictest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// No egress at all, DNS included.
    Offline,
    /// Only what `allow` lists (and names through the resolver).
    Allowlist,
    /// Anything public.
    Open,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Offline => "offline",
            Mode::Allowlist => "allowlist",
            Mode::Open => "open",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "offline" => Some(Mode::Offline),
            "allowlist" => Some(Mode::Allowlist),
            "open" => Some(Mode::Open),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    mode: Option<Mode>,
    #[serde(default)]
    allow: Vec<String>,
    dns: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    mode: Option<Mode>,
    #[serde(default)]
    allow: Vec<String>,
    dns: Option<bool>,
    #[serde(default)]
    upstream: Vec<String>,
    dns_min_ttl: Option<u32>,
    dns_max_ttl: Option<u32>,
    setup: Option<RawPhase>,
}

/// The policy of one phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhasePolicy {
    pub mode: Mode,
    pub allow: Vec<Entry>,
    /// Names resolve through agentbox's resolver.
    pub dns: bool,
}

impl PhasePolicy {
    pub fn offline() -> PhasePolicy {
        PhasePolicy {
            mode: Mode::Offline,
            allow: Vec::new(),
            dns: false,
        }
    }

    fn from_raw(key: &str, raw: RawPhase) -> Result<PhasePolicy, ConfigError> {
        let mode = raw.mode.unwrap_or(Mode::Offline);
        let mut allow = Vec::new();
        for (i, s) in raw.allow.iter().enumerate() {
            let e = Entry::parse(s).map_err(|m| err(format!("{key}.allow[{i}]"), m))?;
            if !allow.contains(&e) {
                allow.push(e);
            }
        }
        if mode == Mode::Offline && !allow.is_empty() {
            return Err(err(
                format!("{key}.allow"),
                "an offline phase allows nothing: remove the list or choose mode = \"allowlist\"",
            ));
        }
        let dns =
            match (raw.dns, mode) {
                (Some(true), Mode::Offline) => return Err(err(
                    format!("{key}.dns"),
                    "an offline phase has no DNS either: choose mode = \"allowlist\" or \"open\"",
                )),
                (Some(d), _) => d,
                (None, Mode::Offline) => false,
                (None, _) => true,
            };
        let names = allow
            .iter()
            .any(|e: &Entry| matches!(e.target, Target::Name(_)));
        if names && !dns {
            return Err(err(
                format!("{key}.allow"),
                "lists host names, which need dns = true (names are enforced through agentbox's resolver)",
            ));
        }
        Ok(PhasePolicy { mode, allow, dns })
    }

    /// The stricter of this and `mode` (offline clears the list and DNS).
    fn tightened(&self, mode: Mode) -> PhasePolicy {
        match mode {
            Mode::Offline => PhasePolicy::offline(),
            m if m < self.mode => PhasePolicy {
                mode: m,
                ..self.clone()
            },
            _ => self.clone(),
        }
    }
}

/// Bounds on how long a resolved address stays admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlBounds {
    pub min: u32,
    pub max: u32,
}

impl Default for TtlBounds {
    fn default() -> Self {
        TtlBounds { min: 10, max: 3600 }
    }
}

impl TtlBounds {
    pub fn clamp(&self, ttl: u32) -> u32 {
        ttl.clamp(self.min, self.max)
    }
}

/// A validated `[network]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The policy once an agent-phase container has been created.
    pub agent: PhasePolicy,
    /// The policy while only setup containers have been created
    /// (`[network.setup]`, else the same as `agent`).
    pub setup: PhasePolicy,
    /// Where agentbox's resolver asks; empty: the pod's own nameservers.
    pub upstream: Vec<SocketAddr>,
    pub ttl: TtlBounds,
}

impl NetworkConfig {
    /// Parse the `[network]` table (a TOML value). Unknown keys are errors.
    pub fn from_toml(v: &toml::Value) -> Result<NetworkConfig, ConfigError> {
        let raw: RawNetwork = v
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| err("network", e.message().to_string()))?;
        Self::from_raw(raw)
    }

    /// Parse a TOML document's `[network]` table, if it has one.
    pub fn from_document(text: &str) -> Result<Option<NetworkConfig>, ConfigError> {
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| err("config", e.message().to_string()))?;
        doc.get("network").map(Self::from_toml).transpose()
    }

    fn from_raw(raw: RawNetwork) -> Result<NetworkConfig, ConfigError> {
        let agent = PhasePolicy::from_raw(
            "network",
            RawPhase {
                mode: raw.mode,
                allow: raw.allow,
                dns: raw.dns,
            },
        )?;
        let setup = match raw.setup {
            Some(s) => PhasePolicy::from_raw("network.setup", s)?,
            None => agent.clone(),
        };
        let mut upstream = Vec::new();
        for (i, s) in raw.upstream.iter().enumerate() {
            let a = parse_upstream(s).ok_or_else(|| {
                err(
                    format!("network.upstream[{i}]"),
                    format!("{s:?} is not an IP address or IP:port"),
                )
            })?;
            upstream.push(a);
        }
        let d = TtlBounds::default();
        let ttl = TtlBounds {
            min: raw.dns_min_ttl.unwrap_or(d.min),
            max: raw.dns_max_ttl.unwrap_or(d.max),
        };
        if ttl.min == 0 || ttl.min > ttl.max || ttl.max > 86_400 {
            return Err(err(
                "network.dns_min_ttl",
                "need 1 <= dns_min_ttl <= dns_max_ttl <= 86400 (seconds)",
            ));
        }
        Ok(NetworkConfig {
            agent,
            setup,
            upstream,
            ttl,
        })
    }

    /// Does any phase use agentbox's resolver?
    pub fn uses_dns(&self) -> bool {
        self.agent.dns || self.setup.dns
    }

    /// Apply the pod's `agentbox.dev/network` annotation: it may only tighten
    /// (`offline` turns every phase offline); a mode looser than a phase's is
    /// refused.
    pub fn with_annotation(&self, value: Option<&str>) -> Result<NetworkConfig, ConfigError> {
        let Some(v) = value else {
            return Ok(self.clone());
        };
        let mode = Mode::parse(v).ok_or_else(|| {
            err(
                ANNOTATION,
                format!("{v:?} is not offline, allowlist or open"),
            )
        })?;
        for (name, p) in [("agent", &self.agent), ("setup", &self.setup)] {
            if mode > p.mode {
                return Err(err(
                    ANNOTATION,
                    format!(
                        "{mode} would loosen the node policy ({name} phase is {})",
                        p.mode
                    ),
                ));
            }
        }
        Ok(NetworkConfig {
            agent: self.agent.tightened(mode),
            setup: self.setup.tightened(mode),
            ..self.clone()
        })
    }
}

fn parse_upstream(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return (a.port() != 0).then_some(a);
    }
    s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NetworkConfig, ConfigError> {
        NetworkConfig::from_document(text).map(|c| c.expect("has [network]"))
    }

    #[test]
    fn the_issue_example() {
        let c = parse(
            r#"
[network]
mode = "offline"
[network.setup]
mode = "allowlist"
allow = ["10.20.0.0/16", "203.0.113.7:443", "pypi.mirror.internal:443", "*.mirror.internal:443"]
dns = true
"#,
        )
        .unwrap();
        assert_eq!(c.agent, PhasePolicy::offline());
        assert_eq!(c.setup.mode, Mode::Allowlist);
        assert_eq!(c.setup.allow.len(), 4);
        assert!(c.setup.dns && c.uses_dns());
    }

    #[test]
    fn defaults() {
        let c = parse("[network]\n").unwrap();
        assert_eq!(c.agent, PhasePolicy::offline());
        assert_eq!(c.setup, c.agent);
        assert_eq!(c.ttl, TtlBounds::default());
        let c = parse("[network]\nmode = \"allowlist\"\nallow = [\"203.0.113.7\"]\n").unwrap();
        assert!(c.agent.dns, "allowlist resolves names by default");
        let c =
            parse("[network]\nmode = \"open\"\nupstream = [\"10.96.0.10\", \"[fd00::a]:5353\"]\n")
                .unwrap();
        assert_eq!(c.upstream[0].to_string(), "10.96.0.10:53");
        assert_eq!(c.upstream[1].to_string(), "[fd00::a]:5353");
        assert!(NetworkConfig::from_document("profile = \"standard\"\n")
            .unwrap()
            .is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("[network]\nmod = \"offline\"\n", "mod"),
            ("[network]\nmode = \"closed\"\n", "closed"),
            (
                "[network]\nmode = \"allowlist\"\nallow = [\"10.0.0.1/8\"]\n",
                "network.allow[0]",
            ),
            ("[network]\nallow = [\"203.0.113.7\"]\n", "network.allow"),
            ("[network]\ndns = true\n", "network.dns"),
            (
                "[network]\nmode = \"allowlist\"\ndns = false\nallow = [\"pypi.org:443\"]\n",
                "dns = true",
            ),
            (
                "[network]\n[network.setup]\nmode = \"open\"\nallow = [\"x\"]\nfoo = 1\n",
                "foo",
            ),
            (
                "[network]\nupstream = [\"resolver\"]\n",
                "network.upstream[0]",
            ),
            ("[network]\ndns_min_ttl = 0\n", "dns_min_ttl"),
        ];
        for (text, needle) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn annotation_only_tightens() {
        let c = parse(
            "[network]\nmode = \"allowlist\"\nallow = [\"203.0.113.7:443\"]\n[network.setup]\nmode = \"open\"\n",
        )
        .unwrap();
        let off = c.with_annotation(Some("offline")).unwrap();
        assert_eq!(off.agent, PhasePolicy::offline());
        assert_eq!(off.setup, PhasePolicy::offline());
        let e = c.with_annotation(Some("open")).unwrap_err().to_string();
        assert!(e.contains("loosen") && e.contains("agent"), "{e}");
        let same = c.with_annotation(Some("allowlist")).unwrap();
        assert_eq!(same.agent, c.agent);
        assert_eq!(same.setup.mode, Mode::Allowlist);
        assert!(c.with_annotation(Some("wide-open")).is_err());
        assert_eq!(c.with_annotation(None).unwrap(), c);
    }
}
