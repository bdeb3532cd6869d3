//! The shim's own configuration: the `[runtime]`, `[audit]`, `[lifetime]`,
//! `[activity]` and `[network]` tables of the agentbox TOML file. The policy tables of the same
//! file are parsed by `agentbox-policy`; both parsers see the whole file and
//! each ignores the other's tables, but within its own tables an unknown key is
//! an error (a typo must not silently weaken a setting).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use agentbox_activity::ActivityConfig;
use agentbox_netpolicy::NetworkConfig;
use agentbox_policy::{Policy, Profile};
use serde::Deserialize;

/// Default location of the config when containerd passes no `ConfigPath`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/agentbox/agentbox.toml";

/// Largest config file accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read agentbox config {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("agentbox config {path} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("agentbox config {origin} is not valid: {message}")]
    Parse { origin: String, message: String },
    #[error("agentbox config {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("agentbox config {origin}: {err}")]
    Policy {
        origin: String,
        err: agentbox_policy::ConfigError,
    },
}

/// Which way agentbox runs the (rewritten) container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// agentbox drives `runsc` itself (it is the gVisor shim).
    #[default]
    Runsc,
    /// agentbox forwards every Task call to another shim v2 (Kata, gVisor's own, runc-v2).
    Shim,
}

/// What the delegate shim isolates with; reported in audit and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxKind {
    #[default]
    Gvisor,
    Kata,
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub backend: Backend,
    /// The runsc binary (runsc backend).
    pub runsc: PathBuf,
    /// Global flags for every runsc call, as `--key=value`.
    pub runsc_flags: BTreeMap<String, toml::Value>,
    /// runsc's state root.
    pub runsc_root: PathBuf,
    /// Run runsc in a private mount namespace with an empty read-only tmpfs over
    /// `/proc/sys/net` (old runsc misdetects the root network namespace).
    pub runsc_mask_proc_sys_net: bool,
    /// The delegate shim v2 binary (shim backend).
    pub shim: Option<String>,
    /// `ConfigPath` handed on to the delegate.
    pub shim_config: Option<PathBuf>,
    /// What the delegate isolates with.
    pub sandbox: Option<SandboxKind>,
    /// The fast runsc configuration (`[runtime.tuning]`, runsc backend).
    pub tuning: crate::backend::runsc::tuning::TuningConfig,
    /// How long one runsc command (create, start, kill, delete…) may take
    /// before it is killed and the call fails. `runsc wait` has no limit.
    pub runsc_timeout_seconds: u64,
    /// Whether a container may be restored from a checkpoint (a Create with
    /// `checkpoint` set). The policy rewrites the restored container's spec
    /// but cannot see the process state inside the checkpoint, so only a
    /// node admin who trusts where checkpoints come from turns this on.
    pub allow_restore: bool,
}

/// Default for `[runtime] runsc_timeout_seconds`: far above the slowest
/// `runsc create` measured here under load (RELIABILITY.md), and below the
/// kubelet's 2-minute CRI request timeout, so a hung runsc fails the call
/// with agentbox's error rather than the kubelet's deadline.
pub const DEFAULT_RUNSC_TIMEOUT_SECONDS: u64 = 60;

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Runsc,
            runsc: PathBuf::from("/usr/bin/runsc"),
            runsc_flags: BTreeMap::new(),
            runsc_root: PathBuf::from("/run/agentbox/runsc"),
            runsc_mask_proc_sys_net: false,
            shim: None,
            shim_config: None,
            sandbox: None,
            tuning: Default::default(),
            runsc_timeout_seconds: DEFAULT_RUNSC_TIMEOUT_SECONDS,
            allow_restore: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    pub path: PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/log/agentbox/audit.jsonl"),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LifetimeConfig {
    /// 0 = no limit; else the container is stopped (TERM, then KILL) when it runs out.
    pub max_seconds: u64,
    /// Seconds between TERM and KILL when the lifetime runs out.
    pub grace_seconds: Option<u64>,
}

impl LifetimeConfig {
    pub fn grace(&self) -> u64 {
        self.grace_seconds.unwrap_or(10)
    }
}

/// The shim's view of the whole file. Policy keys live at the top level and in
/// their own tables; they are accepted here as opaque values and validated by
/// `agentbox-policy`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
struct ShimTables {
    runtime: RuntimeConfig,
    audit: AuditConfig,
    lifetime: LifetimeConfig,
    activity: ActivityConfig,
    /// Egress settings, validated by `agentbox-netpolicy`.
    network: Option<toml::Value>,
}

/// A loaded, validated configuration: the shim settings and the compiled policy.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path or `inline`), for messages and the audit log.
    pub origin: String,
    pub runtime: RuntimeConfig,
    pub audit: AuditConfig,
    pub lifetime: LifetimeConfig,
    /// What the sandbox's processes did (gVisor runtime monitoring).
    pub activity: ActivityConfig,
    /// The pod's egress policy; `None`: agentbox leaves the pod network alone.
    pub network: Option<NetworkConfig>,
    pub policy: Policy,
}

impl Config {
    /// Parse a config from TOML text.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let tables: ShimTables = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: match e.span() {
                Some(span) => format!("line {}: {}", line_of(text, span.start), e.message()),
                None => e.message().to_string(),
            },
        })?;
        let policy = Policy::from_toml_str(text).map_err(|source| ConfigError::Policy {
            origin: origin.to_string(),
            err: source,
        })?;
        let network = tables
            .network
            .as_ref()
            .map(NetworkConfig::from_toml)
            .transpose()
            .map_err(|e| ConfigError::Invalid {
                origin: origin.to_string(),
                message: e.to_string(),
            })?;
        let cfg = Config {
            origin: origin.to_string(),
            runtime: tables.runtime,
            audit: tables.audit,
            lifetime: tables.lifetime,
            activity: tables.activity,
            network,
            policy,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read and parse a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|err| ConfigError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    fn invalid(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.clone(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (k, v) in &self.runtime.runsc_flags {
            if k.is_empty()
                || k.starts_with('-')
                || k.contains('=')
                || k.contains(char::is_whitespace)
            {
                return Err(self.invalid(format!("runtime.runsc_flags: invalid flag name {k:?}")));
            }
            if matches!(
                k.as_str(),
                "root" | "bundle" | "pid-file" | "console-socket"
            ) {
                return Err(self.invalid(format!(
                    "runtime.runsc_flags: {k:?} is managed by agentbox and cannot be set"
                )));
            }
            match v {
                toml::Value::String(_) | toml::Value::Boolean(_) | toml::Value::Integer(_) => {}
                _ => {
                    return Err(self.invalid(format!(
                        "runtime.runsc_flags.{k}: value must be a string, boolean or integer"
                    )))
                }
            }
        }
        if self.runtime.backend == Backend::Shim
            && self.runtime.shim.as_deref().unwrap_or("").is_empty()
        {
            return Err(self.invalid(
                "runtime.backend = \"shim\" needs runtime.shim (the delegate shim binary)",
            ));
        }
        if self.runtime.runsc_timeout_seconds == 0 {
            return Err(self.invalid("runtime.runsc_timeout_seconds must be at least 1"));
        }
        if !self.runtime.runsc_root.is_absolute() {
            return Err(self.invalid("runtime.runsc_root must be an absolute path"));
        }
        if let Some(e) = self.runtime.tuning.validate() {
            return Err(self.invalid(e));
        }
        if !self.audit.path.is_absolute() {
            return Err(self.invalid("audit.path must be an absolute path"));
        }
        self.activity.validate().map_err(|m| self.invalid(m))?;
        Ok(())
    }

    /// Whether the activity audit is on: `[activity] enabled`, else on under
    /// the `sensitive` profile and off under `standard`.
    pub fn activity_enabled(&self) -> bool {
        self.activity
            .is_enabled(self.policy.profile() == Profile::Sensitive)
    }

    /// Fail closed: the activity audit is on but this backend cannot provide it.
    pub fn check_activity_backend(&self) -> Result<(), String> {
        if self.runtime.backend == Backend::Shim && self.activity_enabled() {
            let why = match self.sandbox_kind() {
                SandboxKind::Kata => "Kata Containers have no equivalent of gVisor's runtime monitoring",
                SandboxKind::Gvisor => "gVisor's own shim is configured by its runsc.toml, not by agentbox (see docs/activity.md)",
                SandboxKind::None => "the delegate runs no sandbox agentbox can observe",
            };
            return Err(format!(
                "agentbox config {}: the activity audit ([activity], on by default under the sensitive profile) needs runtime.backend = \"runsc\": {why}; set [activity] enabled = false to run this pod without it",
                self.origin
            ));
        }
        Ok(())
    }

    /// Global runsc flags as `--key=value` arguments, in a stable order.
    pub fn runsc_global_flags(&self) -> Vec<String> {
        self.runtime
            .runsc_flags
            .iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => format!("--{k}={s}"),
                other => format!("--{k}={other}"),
            })
            .collect()
    }

    /// How long one runsc command may take.
    pub fn runsc_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.runtime.runsc_timeout_seconds)
    }

    /// What the workload is isolated with, as reported in audit records.
    pub fn sandbox_kind(&self) -> SandboxKind {
        match self.runtime.backend {
            Backend::Runsc => SandboxKind::Gvisor,
            Backend::Shim => self.runtime.sandbox.unwrap_or(SandboxKind::None),
        }
    }
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_tables() {
        let c = Config::from_toml_str("profile = \"standard\"\n", "t").unwrap();
        assert_eq!(c.runtime.backend, Backend::Runsc);
        assert_eq!(c.runtime.runsc, PathBuf::from("/usr/bin/runsc"));
        assert_eq!(c.audit.path, PathBuf::from("/var/log/agentbox/audit.jsonl"));
        assert_eq!(c.lifetime.max_seconds, 0);
        assert_eq!(c.sandbox_kind(), SandboxKind::Gvisor);
    }

    #[test]
    fn runsc_flags_render_stably() {
        let c = Config::from_toml_str(
            "[runtime]\nrunsc_flags = { network = \"none\", platform = \"ptrace\", debug = true }\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            c.runsc_global_flags(),
            vec!["--debug=true", "--network=none", "--platform=ptrace"]
        );
    }

    #[test]
    fn unknown_runtime_key_is_an_error_naming_it() {
        let e = Config::from_toml_str("[runtime]\nrunsc_flagz = {}\n", "t").unwrap_err();
        assert!(e.to_string().contains("runsc_flagz"), "{e}");
    }

    #[test]
    fn managed_runsc_flags_are_refused() {
        let e =
            Config::from_toml_str("[runtime]\nrunsc_flags = { root = \"/x\" }\n", "t").unwrap_err();
        assert!(e.to_string().contains("managed by agentbox"), "{e}");
    }

    #[test]
    fn shim_backend_needs_a_delegate() {
        let e = Config::from_toml_str("[runtime]\nbackend = \"shim\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("runtime.shim"), "{e}");
        let c = Config::from_toml_str(
            "[runtime]\nbackend = \"shim\"\nshim = \"containerd-shim-runc-v2\"\nsandbox = \"none\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.sandbox_kind(), SandboxKind::None);
    }

    #[test]
    fn unknown_backend_is_refused() {
        let e = Config::from_toml_str("[runtime]\nbackend = \"docker\"\n", "t").unwrap_err();
        assert!(
            e.to_string().contains("docker") || e.to_string().contains("variant"),
            "{e}"
        );
    }

    #[test]
    fn garbage_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agentbox.toml");
        std::fs::write(&p, "profile = \"standard\"\n[runtime]\n\u{1}garbage ]] =\n").unwrap();
        let e = Config::load(&p).unwrap_err().to_string();
        assert!(
            e.contains(&p.display().to_string()) && e.contains("line 3"),
            "{e}"
        );
    }

    #[test]
    fn runsc_timeout_has_a_default_and_is_bounded() {
        let c = Config::from_toml_str("", "t").unwrap();
        assert_eq!(c.runsc_timeout().as_secs(), DEFAULT_RUNSC_TIMEOUT_SECONDS);
        let c = Config::from_toml_str("[runtime]\nrunsc_timeout_seconds = 5\n", "t").unwrap();
        assert_eq!(c.runsc_timeout().as_secs(), 5);
        assert!(Config::from_toml_str("[runtime]\nrunsc_timeout_seconds = 0\n", "t").is_err());
    }

    #[test]
    fn network_table_is_validated() {
        let c = Config::from_toml_str(
            "[network]\nmode = \"allowlist\"\nallow = [\"203.0.113.7:443\"]\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            c.network.unwrap().agent.mode,
            agentbox_netpolicy::Mode::Allowlist
        );
        assert!(Config::from_toml_str("profile = \"standard\"\n", "t")
            .unwrap()
            .network
            .is_none());
        for (text, needle) in [
            ("[network]\nmodes = \"offline\"\n", "modes"),
            (
                "[network]\nmode = \"allowlist\"\nallow = [\"10.0.0.1/8\"]\n",
                "network.allow[0]",
            ),
            ("[network]\ndns = true\n", "network.dns"),
        ] {
            let e = Config::from_toml_str(text, "cfg.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("cfg.toml"), "{text}: {e}");
        }
    }

    #[test]
    fn activity_follows_the_profile_unless_set() {
        let c = Config::from_toml_str("profile = \"sensitive\"\n", "t").unwrap();
        assert!(c.activity_enabled());
        let c = Config::from_toml_str("profile = \"standard\"\n", "t").unwrap();
        assert!(!c.activity_enabled());
        let c = Config::from_toml_str(
            "profile = \"standard\"\n[activity]\nenabled = true\nkinds = [\"processes\"]\nignore_paths = [\"/proc\", \"/var/cache\"]\n",
            "t",
        )
        .unwrap();
        assert!(c.activity_enabled());
        assert_eq!(c.activity.ignore_paths, ["/proc", "/var/cache"]);
        let e = Config::from_toml_str("[activity]\nenabeld = true\n", "t").unwrap_err();
        assert!(e.to_string().contains("enabeld"), "{e}");
        let e = Config::from_toml_str("[activity]\nrate_per_second = 0\n", "t").unwrap_err();
        assert!(e.to_string().contains("rate_per_second"), "{e}");
    }

    #[test]
    fn the_delegate_fails_closed_when_activity_is_on() {
        let kata = "[runtime]\nbackend = \"shim\"\nshim = \"containerd-shim-kata-v2\"\nsandbox = \"kata\"\n";
        let c = Config::from_toml_str(&format!("profile = \"sensitive\"\n{kata}"), "t").unwrap();
        let e = c.check_activity_backend().unwrap_err();
        assert!(e.contains("Kata") && e.contains("enabled = false"), "{e}");
        let c = Config::from_toml_str(
            &format!("profile = \"sensitive\"\n{kata}[activity]\nenabled = false\n"),
            "t",
        )
        .unwrap();
        c.check_activity_backend().unwrap();
        let c = Config::from_toml_str(&format!("profile = \"standard\"\n{kata}"), "t").unwrap();
        c.check_activity_backend().unwrap();
        let c = Config::from_toml_str("profile = \"sensitive\"\n", "t").unwrap();
        c.check_activity_backend().unwrap();
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let e = Config::load(Path::new("/nonexistent/agentbox.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/agentbox.toml"), "{e}");
    }
}
