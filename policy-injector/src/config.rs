//! The TOML configuration and its compilation into a [`Policy`].

use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use crate::annotations::{SetupAllowed, GVISOR_PREFIX, KATA_PREFIX};
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
    #[serde(default)]
    secret_rules: Vec<agentbox_secrets::RuleSpec>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawPhases {
    setup_containers: Option<RawSetup>,
}

/// `setup_containers`: a list of names; `false` is accepted as `[]`.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum RawSetup {
    Names(Vec<String>),
    Flag(bool),
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RawAnnotations {
    #[serde(default)]
    kata_allow: Vec<String>,
    #[serde(default)]
    gvisor_allow: Vec<String>,
}

/// Families a node may not hand to pods, whatever the config lists: runsc
/// flags and internals, and runsc's mount hints (they name host paths;
/// agentbox adds its own after the policy).
const GVISOR_NEVER: &[(&str, &str)] = &[
    ("dev.gvisor.flag.", "it would let a pod set runsc flags"),
    ("dev.gvisor.internal.", "it is runsc-internal"),
    (
        "dev.gvisor.spec.mount.",
        "runsc mount hints can name host paths",
    ),
    (
        "dev.gvisor.spec.rootfs.",
        "runsc rootfs hints can name host paths",
    ),
];

/// Kata's `config_path` outranks the ConfigPath agentbox hands the delegate.
const KATA_NEVER: &[(&str, &str)] = &[(
    "io.katacontainers.config_path",
    "it would let a pod choose Kata's configuration file",
)];

/// A Kubernetes container name (RFC 1123 label).
fn is_container_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn setup_allowed(raw: Option<RawSetup>, profile: Profile) -> Result<SetupAllowed, ConfigError> {
    let key = "phases.setup_containers";
    let names = match raw {
        None => {
            return Ok(match profile {
                Profile::Standard => SetupAllowed::Any,
                Profile::Sensitive => SetupAllowed::Names(Vec::new()),
            })
        }
        Some(RawSetup::Flag(false)) => return Ok(SetupAllowed::Names(Vec::new())),
        Some(RawSetup::Flag(true)) => {
            return Err(invalid(
                key,
                "must list the container names that may be setup phase (true is no longer accepted; [\"*\"] lets pods choose under the standard profile)",
            ))
        }
        Some(RawSetup::Names(n)) => n,
    };
    if names.iter().any(|n| n == "*") {
        if names.len() != 1 {
            return Err(invalid(key, "\"*\" must be the only entry"));
        }
        if profile == Profile::Sensitive {
            return Err(invalid(
                key,
                "\"*\" (pods choose) is not allowed under the sensitive profile: list the names",
            ));
        }
        return Ok(SetupAllowed::Any);
    }
    for n in &names {
        if !is_container_name(n) {
            return Err(invalid(key, format!("{n:?} is not a container name")));
        }
    }
    Ok(SetupAllowed::Names(names))
}

fn allow_list(
    key: &str,
    entries: &[String],
    prefix: &str,
    never: &[(&str, &str)],
) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::with_capacity(entries.len());
    for k in entries {
        if !k.starts_with(prefix) || k.len() == prefix.len() {
            return Err(invalid(key, format!("{k:?} is not a {prefix}* annotation")));
        }
        if k.contains(['*', '?']) {
            return Err(invalid(key, format!("{k:?}: list exact annotation names")));
        }
        if let Some((_, why)) = never.iter().find(|(p, _)| k.starts_with(p)) {
            return Err(invalid(key, format!("{k:?} cannot be allowed: {why}")));
        }
        out.push(k.clone());
    }
    Ok(out)
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

    if !raw.env.secret_rules.is_empty() {
        let d = agentbox_secrets::Detector::with_rules(&raw.env.secret_rules)
            .map_err(|e| invalid("env.secret_rules", e.to_string()))?;
        policy.secrets = crate::Secrets::Extended(std::sync::Arc::new(d));
    }

    policy.setup_containers = setup_allowed(raw.phases.setup_containers, policy.profile)?;
    policy.kata_allow = allow_list(
        "annotations.kata_allow",
        &raw.annotations.kata_allow,
        KATA_PREFIX,
        KATA_NEVER,
    )?;
    policy.gvisor_allow = allow_list(
        "annotations.gvisor_allow",
        &raw.annotations.gvisor_allow,
        GVISOR_PREFIX,
        GVISOR_NEVER,
    )?;

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
setup_containers = ["clone", "fetch-deps"]
[annotations]
kata_allow = ["io.katacontainers.config.hypervisor.default_memory"]
gvisor_allow = ["dev.gvisor.spec.cgroup-parent"]
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
        assert_eq!(
            p.setup_containers,
            SetupAllowed::Names(vec!["clone".into(), "fetch-deps".into()])
        );
        assert_eq!(p.gvisor_allow, ["dev.gvisor.spec.cgroup-parent"]);
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
    fn secret_rules_extend_the_detector() {
        let p = from_toml_str(
            r#"
[[env.secret_rules]]
id = "acme-token"
description = "ACME internal API token"
prefix = "acme_"
charset = "alnum"
length = 32

[[env.secret_rules]]
id = "acme-legacy"
pattern = "ACME-[0-9]{6}-[A-Z]{8}"

[[env.secret_rules]]
id = "acme-short"
shape = "{hex:24}"
keywords = ["acme"]
"#,
        )
        .unwrap();
        let d = p.secrets();
        let body = "Zq3xR8vLm2NpT5wK9bYc4Zq3xR8vLm2N";
        assert_eq!(
            d.find(&format!("x acme_{body} y")).map(|f| f.rule),
            Some("acme-token")
        );
        assert_eq!(
            d.find("ACME-123456-ABCDEFGH").map(|f| f.rule),
            Some("acme-legacy")
        );
        assert_eq!(
            d.env_value("ACME_UPSTREAM", "0123456789abcdef01234567")
                .map(|f| f.rule),
            Some("acme-short")
        );
        // the built-in rules are still there, and the default policy lacks ACME's
        assert!(d.rules().iter().any(|r| r.id == "github-pat"));
        let plain = Policy::from_profile(Profile::Sensitive);
        assert!(plain.secrets().find(&format!("acme_{body}")).is_none());
    }

    #[test]
    fn bad_secret_rules_are_named() {
        for (rule, needle) in [
            (
                r#"id = "x-1"
prefix = "ab"
length = 20"#,
                "at least 3",
            ),
            (
                r#"id = "Bad Id"
prefix = "abcd_"
length = 20"#,
                "id is",
            ),
            (
                r#"id = "x-2"
prefix = "abcd_"
charset = "nope"
length = 20"#,
                "unknown character set",
            ),
            (
                r#"id = "x-3"
pattern = "(""#,
                "does not compile",
            ),
            (
                r#"id = "x-4"
pattern = "a*""#,
                "empty string",
            ),
            (
                r#"id = "github-pat"
prefix = "abcd_"
length = 20"#,
                "used twice",
            ),
            (
                r#"id = "x-5"
prefix = "abcd_""#,
                "needs a length",
            ),
            (
                r#"id = "x-6"
prefix = "abcd_"
length = 20
pattern = "x""#,
                "exactly one",
            ),
            (
                r#"id = "x-7"
structural = "private-key""#,
                "built in",
            ),
            (
                r#"id = "x-9"
shape = "abc{alnum:2}""#,
                "shorter than 8",
            ),
        ] {
            let e = from_toml_str(&format!("[[env.secret_rules]]\n{rule}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{rule}: {e}");
            assert!(e.contains("env.secret_rules"), "{e}");
        }
        // an unknown key inside a rule is named
        let e = from_toml_str(
            "[[env.secret_rules]]\nid = \"x-8\"\nprefix = \"abcd_\"\nlength = 20\nfoo = 1",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("foo"), "{e}");
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
        assert!(from_toml_str("[env]\nstrip = [\"\"]").is_err());
    }

    #[test]
    fn annotation_allowlists() {
        let ok = from_toml_str(
            "[annotations]\nkata_allow = [\"io.katacontainers.pkg.x\"]\ngvisor_allow = [\"dev.gvisor.spec.cgroup-parent\"]",
        )
        .unwrap();
        assert_eq!(ok.kata_allow, ["io.katacontainers.pkg.x"]);
        for (list, k, want) in [
            (
                "kata_allow",
                "io.katacontainers.config_path",
                "choose Kata's configuration",
            ),
            ("kata_allow", "io.katacontainers.", "is not a"),
            ("kata_allow", "dev.gvisor.flag.x", "is not a"),
            ("kata_allow", "io.katacontainers.config.*", "exact"),
            ("gvisor_allow", "dev.gvisor.flag.network", "runsc flags"),
            (
                "gvisor_allow",
                "dev.gvisor.internal.nvproxy",
                "runsc-internal",
            ),
            (
                "gvisor_allow",
                "dev.gvisor.spec.mount.ws.source",
                "host paths",
            ),
            (
                "gvisor_allow",
                "dev.gvisor.spec.rootfs.overlay",
                "host paths",
            ),
            ("gvisor_allow", "DEV.GVISOR.spec.x", "is not a"),
        ] {
            let e = from_toml_str(&format!("[annotations]\n{list} = [{k:?}]"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(list) && e.contains(want), "{k}: {e}");
        }
    }

    #[test]
    fn setup_container_defaults_and_lists() {
        let std_ = |extra: &str| from_toml_str(&format!("profile = \"standard\"\n{extra}"));
        let sen = |extra: &str| from_toml_str(&format!("profile = \"sensitive\"\n{extra}"));
        assert_eq!(std_("").unwrap().setup_containers, SetupAllowed::Any);
        assert_eq!(
            sen("").unwrap().setup_containers,
            SetupAllowed::Names(vec![])
        );
        assert_eq!(
            from_toml_str("").unwrap().setup_containers,
            SetupAllowed::Names(vec![])
        );
        assert_eq!(
            std_("[phases]\nsetup_containers = false")
                .unwrap()
                .setup_containers,
            SetupAllowed::Names(vec![])
        );
        assert_eq!(
            std_("[phases]\nsetup_containers = [\"*\"]")
                .unwrap()
                .setup_containers,
            SetupAllowed::Any
        );
        for bad in [
            "true",
            "[\"*\", \"clone\"]",
            "[\"Clone\"]",
            "[\"\"]",
            "[\"-x\"]",
            "[\"a b\"]",
            "\"clone\"",
        ] {
            let e = std_(&format!("[phases]\nsetup_containers = {bad}"));
            assert!(e.is_err(), "{bad}");
        }
        let e = sen("[phases]\nsetup_containers = [\"*\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("sensitive"), "{e}");
        assert!(std_("[phases]\nsetup_containers = true")
            .unwrap_err()
            .to_string()
            .contains("phases.setup_containers"));
    }
}
