//! The TOML configuration and its compilation into a [`Policy`].

use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::glob::NameGlob;
use crate::paths::{alias, normalize, PathPattern, BUILTIN_SOCKETS};
use crate::{Inject, Policy, Profile};

/// A configuration that cannot be loaded. Messages name the offending key.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config key {key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    profile: Option<Profile>,
    #[serde(default)]
    mounts: RawMounts,
    #[serde(default)]
    env: RawEnv,
    #[serde(default)]
    phases: RawPhases,
    #[serde(default)]
    annotations: RawAnnotations,
    #[serde(default)]
    serviceaccount: RawServiceAccount,
    // Tables owned by the shim: accepted and ignored here.
    #[allow(dead_code)]
    runtime: Option<toml::Value>,
    #[allow(dead_code)]
    audit: Option<toml::Value>,
    #[allow(dead_code)]
    network: Option<toml::Value>,
    #[allow(dead_code)]
    lifetime: Option<toml::Value>,
    #[allow(dead_code)]
    activity: Option<toml::Value>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawMounts {
    #[serde(default)]
    readonly: Vec<String>,
    #[serde(default)]
    inject: Vec<RawInject>,
    #[serde(default)]
    deny_sockets: Vec<String>,
    #[serde(default)]
    managed_roots: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawInject {
    source: String,
    destination: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawEnv {
    #[serde(default)]
    strip: Vec<String>,
    #[serde(default)]
    allow: Vec<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct RawPhases {
    #[serde(default = "yes")]
    setup_containers: bool,
}

impl Default for RawPhases {
    fn default() -> Self {
        RawPhases {
            setup_containers: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawAnnotations {
    #[serde(default)]
    kata_allow: Vec<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawServiceAccount {
    allow_agent: Option<bool>,
}

fn abs_norm(key: &str, p: &str) -> Result<String, ConfigError> {
    normalize(p).ok_or_else(|| invalid(key, format!("{p:?} is not an absolute path")))
}

pub(crate) fn builtin_sockets() -> Vec<PathPattern> {
    BUILTIN_SOCKETS
        .iter()
        .filter_map(|s| PathPattern::new(s))
        .collect()
}

pub(crate) fn from_toml_str(s: &str) -> Result<Policy, ConfigError> {
    let raw: RawConfig = toml::from_str(s).map_err(|e| ConfigError::Parse(e.to_string()))?;
    compile(raw)
}

pub(crate) fn from_file(path: &Path) -> Result<Policy, ConfigError> {
    let s = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.display().to_string(),
        source,
    })?;
    from_toml_str(&s)
}

fn compile(raw: RawConfig) -> Result<Policy, ConfigError> {
    let mut policy = Policy::from_profile(raw.profile.unwrap_or(Profile::Sensitive));

    for p in &raw.mounts.deny_sockets {
        let key = "mounts.deny_sockets";
        if abs_norm(key, p)? == "/" {
            return Err(invalid(key, "\"/\" is not a socket"));
        }
        let pat = PathPattern::new(p).ok_or_else(|| invalid(key, "not an absolute path"))?;
        policy.sockets.push(pat);
    }

    for p in &raw.mounts.readonly {
        policy.readonly.push(abs_norm("mounts.readonly", p)?);
    }

    for r in &raw.mounts.managed_roots {
        let key = "mounts.managed_roots";
        let n = alias(&abs_norm(key, r)?);
        if n == "/" || n == "/proc" || n.starts_with("/proc/") {
            return Err(invalid(key, format!("{r:?} cannot be a managed root")));
        }
        if let Some(s) = policy.sockets.iter().find(|s| s.reaches(&n)) {
            return Err(invalid(
                key,
                format!("{r:?} would reach the runtime socket {}", s.as_str()),
            ));
        }
        policy.managed_roots.push(n);
    }

    for i in &raw.mounts.inject {
        let key = "mounts.inject";
        let src = abs_norm(key, &i.source)?;
        let dst = abs_norm(key, &i.destination)?;
        let asrc = alias(&src);
        if asrc == "/" || asrc == "/proc" || asrc.starts_with("/proc/") {
            return Err(invalid(
                key,
                format!("source {:?} is not allowed", i.source),
            ));
        }
        if let Some(s) = policy.sockets.iter().find(|s| s.reaches(&asrc)) {
            return Err(invalid(
                key,
                format!(
                    "source {:?} would reach the runtime socket {}",
                    i.source,
                    s.as_str()
                ),
            ));
        }
        if policy.inject.iter().any(|x| x.dest_norm == dst) {
            return Err(invalid(key, format!("destination {dst:?} is listed twice")));
        }
        policy.inject.push(Inject {
            source: i.source.clone(),
            destination: i.destination.clone(),
            source_norm: asrc,
            dest_norm: dst,
        });
    }

    for (key, list, out) in [
        ("env.strip", &raw.env.strip, &mut policy.env_strip),
        ("env.allow", &raw.env.allow, &mut policy.env_allow),
    ] {
        for p in list {
            if p.trim().is_empty() || p.contains('=') {
                return Err(invalid(key, format!("{p:?} is not a name pattern")));
            }
            out.push(NameGlob::new(p));
        }
    }

    policy.setup_containers = raw.phases.setup_containers;

    for k in &raw.annotations.kata_allow {
        if !k.starts_with("io.katacontainers.config.") {
            return Err(invalid(
                "annotations.kata_allow",
                format!("{k:?} is not an io.katacontainers.config.* annotation"),
            ));
        }
        policy.kata_allow.push(k.clone());
    }

    policy.sa_allow_agent = raw.serviceaccount.allow_agent;
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_example() {
        let p = from_toml_str(
            r#"
profile = "standard"
[mounts]
readonly = ["/workspace"]
inject = [{ source = "/etc/agentbox/ca.pem", destination = "/etc/ssl/certs/agentbox-ca.pem" }]
deny_sockets = ["/run/custom/engine.sock"]
managed_roots = ["/var/lib/rancher/k3s/agent/containerd/"]
[env]
strip = ["ACME_*"]
allow = ["AWS_REGION"]
[phases]
setup_containers = false
[annotations]
kata_allow = ["io.katacontainers.config.hypervisor.default_memory"]
[serviceaccount]
allow_agent = true
[runtime]
backend = "runsc"
[audit]
path = "/x"
[network]
egress = []
[lifetime]
max_seconds = 3
"#,
        )
        .unwrap();
        assert_eq!(p.profile(), Profile::Standard);
        assert!(!p.setup_containers);
        assert_eq!(p.sa_allow_agent, Some(true));
        assert_eq!(p.inject.len(), 1);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = from_toml_str("profle = \"standard\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("profle"), "{e}");
        let e = from_toml_str("[mounts]\nreadonyl = []")
            .unwrap_err()
            .to_string();
        assert!(e.contains("readonyl"), "{e}");
        let e = from_toml_str("[envv]\n").unwrap_err().to_string();
        assert!(e.contains("envv"), "{e}");
        let e = from_toml_str("profile = \"lax\"").unwrap_err().to_string();
        assert!(e.contains("lax"), "{e}");
    }

    #[test]
    fn dangerous_values_refused() {
        assert!(from_toml_str("[mounts]\nmanaged_roots = [\"/run\"]").is_err());
        assert!(from_toml_str("[mounts]\nmanaged_roots = [\"/\"]").is_err());
        assert!(from_toml_str("[mounts]\nmanaged_roots = [\"rel\"]").is_err());
        assert!(from_toml_str(
            "[mounts]\ninject = [{source=\"/var/run/docker.sock\", destination=\"/x\"}]"
        )
        .is_err());
        assert!(from_toml_str("[annotations]\nkata_allow = [\"io.katacontainers.pkg\"]").is_err());
        assert!(from_toml_str("[env]\nstrip = [\"\"]").is_err());
    }
}
