//! The fast runsc configuration: the global flags agentbox adds for the runsc
//! it finds (`[runtime.tuning]`), chosen from what that runsc supports.
//! Pure: the capabilities come from `probe`, the per-pod overlay folder from
//! `tune`. Flags the admin sets in `runtime.runsc_flags` always win.
//!
//! Defaults (the best safe choice, see BENCHMARKS.md for the numbers):
//! - platform: systrap where runsc has it, else ptrace (KVM is never picked).
//! - root filesystem overlay: runsc's `self` medium where it has it (the
//!   upper layer is a file in the container's own writable layer: disk use the
//!   kubelet sees and containerd removes), else `memory` (the upper layer is
//!   sandbox memory, charged to the pod's memory cgroup).
//! - directfs: runsc's own default.
//! - the sandbox runs in the pod's cgroup, not the pause container's.
//! - emptyDir volumes: no hint (exact for the host and for sidecars; the
//!   `exclusive` and `memory` hints are faster and each changes what someone
//!   else reading the volume sees, see `hints`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where runsc keeps the writes to a container's root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RootfsOverlay {
    /// `self` where runsc has it, else `memory`.
    #[default]
    Auto,
    /// Sandbox memory (`--overlay2=root:memory`).
    Memory,
    /// A file in the container's own root filesystem folder (runsc 2023+).
    #[serde(rename = "self")]
    SelfBacked,
    /// An unlinked file in a per-pod folder under `overlay_dir`, which agentbox
    /// creates and removes.
    Dir,
    /// No overlay: every write goes through the gofer to the host.
    None,
}

/// How the pod's emptyDir volumes are mounted inside the sandbox (mount hints
/// agentbox adds to the pod's sandbox container).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EmptyDirMode {
    /// No hint: runsc's default (a shared bind, revalidated on every access):
    /// exact for every reader, on the host or in another container.
    #[default]
    Off,
    /// `share=container`: each container's sandbox mount caches the volume
    /// (exclusive file access); every write still reaches the host at once,
    /// but a change made from outside that container while it runs (the host,
    /// a sidecar writing the same volume) may be seen late by it.
    Exclusive,
    /// `type=tmpfs, share=pod`: a tmpfs inside the sandbox shared by the pod's
    /// containers. Fastest; nothing written reaches the host folder.
    Memory,
}

/// `[runtime.tuning]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TuningConfig {
    /// `auto` (systrap where runsc has it, else ptrace) or a platform name.
    pub platform: String,
    pub rootfs_overlay: RootfsOverlay,
    /// Parent of the per-pod folders of `rootfs_overlay = "dir"`.
    pub overlay_dir: PathBuf,
    /// `--directfs` (runsc 2023+): unset = runsc's default.
    pub directfs: Option<bool>,
    pub empty_dir: EmptyDirMode,
    /// Run the sandbox in the pod's cgroup (the kubelet's, if it exists), as
    /// gVisor's shim does, rather than in the pause container's.
    pub pod_cgroup: bool,
    /// The kubelet's pods folder (where emptyDir volumes live).
    pub kubelet_pods_dir: PathBuf,
}

impl Default for TuningConfig {
    fn default() -> Self {
        TuningConfig {
            platform: "auto".into(),
            rootfs_overlay: RootfsOverlay::Auto,
            overlay_dir: PathBuf::from("/var/lib/agentbox/overlay"),
            directfs: None,
            empty_dir: EmptyDirMode::Off,
            pod_cgroup: true,
            kubelet_pods_dir: PathBuf::from("/var/lib/kubelet/pods"),
        }
    }
}

impl TuningConfig {
    /// A config error, or None.
    pub fn validate(&self) -> Option<String> {
        if self.platform.is_empty() || !self.platform.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Some(format!(
                "runtime.tuning.platform: {:?} is not a platform name",
                self.platform
            ));
        }
        for (key, p) in [
            ("overlay_dir", &self.overlay_dir),
            ("kubelet_pods_dir", &self.kubelet_pods_dir),
        ] {
            if !p.is_absolute() {
                return Some(format!("runtime.tuning.{key} must be an absolute path"));
            }
            // runsc splits --overlay2 on ':' and its flags on ','
            if p.to_str().is_none_or(|s| s.contains([':', ',', '='])) {
                return Some(format!(
                    "runtime.tuning.{key} must be UTF-8 without ':', ',' or '='"
                ));
            }
        }
        None
    }

    /// True if the root filesystem overlay for `caps` needs a per-pod folder.
    pub fn wants_overlay_dir(&self, explicit: &BTreeMap<String, toml::Value>) -> bool {
        self.rootfs_overlay == RootfsOverlay::Dir && !overlay_is_explicit(explicit)
    }
}

fn overlay_is_explicit(explicit: &BTreeMap<String, toml::Value>) -> bool {
    explicit.contains_key("overlay2") || explicit.contains_key("overlay")
}

/// What a runsc binary supports, from its own output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Capabilities {
    /// `runsc --version`'s first line.
    pub version: String,
    /// `runsc help platforms`.
    pub platforms: Vec<String>,
    /// `--directfs` exists.
    pub directfs: bool,
    /// `--overlay2` knows the `self` medium (and `dir=` for a folder).
    pub overlay_self: bool,
}

impl Capabilities {
    /// From `runsc --version`, `runsc help platforms` and `runsc flags`.
    pub fn parse(version: &str, platforms: &str, flags: &str) -> Capabilities {
        let overlay_help = flag_help(flags, "overlay2");
        Capabilities {
            version: version.lines().next().unwrap_or("").trim().to_string(),
            platforms: platforms
                .split_whitespace()
                .filter(|p| p.chars().all(|c| c.is_ascii_alphanumeric()))
                .map(str::to_string)
                .collect(),
            directfs: !flag_help(flags, "directfs").is_empty(),
            overlay_self: overlay_help.contains("'self'") || overlay_help.contains("dir="),
        }
    }
}

/// The help text of one flag in `runsc flags` output (empty if absent).
fn flag_help(flags: &str, name: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in flags.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix('-') {
            let flag = rest.split_whitespace().next().unwrap_or("");
            inside = flag == name;
        }
        if inside {
            out.push_str(t);
            out.push('\n');
        }
    }
    out
}

/// The flags the tuning adds, in a stable order, or why it cannot apply
/// (fail closed: the container does not run with a configuration the admin
/// did not ask for).
pub fn flags(
    cfg: &TuningConfig,
    caps: &Capabilities,
    explicit: &BTreeMap<String, toml::Value>,
    overlay_folder: Option<&Path>,
) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let runsc = if caps.version.is_empty() {
        "this runsc".to_string()
    } else {
        format!("runsc ({})", caps.version)
    };
    if !explicit.contains_key("platform") {
        let platform = if cfg.platform == "auto" {
            if caps.platforms.iter().any(|p| p == "systrap") {
                "systrap"
            } else {
                "ptrace"
            }
        } else if caps.platforms.contains(&cfg.platform) {
            cfg.platform.as_str()
        } else {
            return Err(format!(
                "runtime.tuning.platform = {:?}, but {runsc} has only {}",
                cfg.platform,
                caps.platforms.join(", ")
            ));
        };
        out.push(format!("--platform={platform}"));
    }
    if !overlay_is_explicit(explicit) {
        let medium = match cfg.rootfs_overlay {
            RootfsOverlay::Auto if caps.overlay_self => "self".to_string(),
            RootfsOverlay::Auto | RootfsOverlay::Memory => "memory".to_string(),
            RootfsOverlay::SelfBacked if caps.overlay_self => "self".to_string(),
            RootfsOverlay::SelfBacked => {
                return Err(format!(
                    "runtime.tuning.rootfs_overlay = \"self\", but {runsc} has no self-backed overlay (use \"memory\" or \"dir\")"
                ))
            }
            RootfsOverlay::Dir => {
                let dir = overlay_folder
                    .ok_or("runtime.tuning.rootfs_overlay = \"dir\" needs the pod's overlay folder")?;
                if caps.overlay_self {
                    format!("dir={}", dir.display())
                } else {
                    dir.display().to_string()
                }
            }
            RootfsOverlay::None => "none".to_string(),
        };
        out.push(if medium == "none" {
            "--overlay2=none".to_string()
        } else {
            format!("--overlay2=root:{medium}")
        });
    }
    if let (Some(on), false) = (cfg.directfs, explicit.contains_key("directfs")) {
        match (on, caps.directfs) {
            (_, true) => out.push(format!("--directfs={on}")),
            // no directfs in this runsc: off is what it does anyway
            (false, false) => {}
            (true, false) => {
                return Err(format!(
                    "runtime.tuning.directfs = true, but {runsc} has no --directfs"
                ))
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS_2022: &str = "  -overlay\n    \tDEPRECATED: use --overlay2=all:memory\n  -overlay2 value\n    \twrap mounts with overlayfs. Format is {mount}:{medium}, where 'mount' can be 'root' or 'all' and medium can be 'memory' or existing directory path in which filestore will be created. 'none' will turn overlay mode off.\n  -panic-log string\n    \tfile path\n  -platform string\n    \tspecifies which platform to use: ptrace (default), kvm. (default \"ptrace\")\n";
    const FLAGS_2024: &str = "  -directfs\n    \tdirectly access the container filesystems from the sentry. (default true)\n  -overlay2 value\n    \twrap mounts with overlayfs. Format is {mount}:{medium}, where 'mount' can be 'root' or 'all' and medium can be 'memory', 'self' or 'dir=/abs/dir/path' in which filestore will be created. 'none' will turn overlay mode off. (default root:self)\n  -platform string\n    \tspecifies which platform to use: systrap (default), ptrace, kvm. (default \"systrap\")\n";

    fn caps_2022() -> Capabilities {
        Capabilities::parse(
            "runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n",
            "kvm\nptrace\n",
            FLAGS_2022,
        )
    }
    fn caps_2024() -> Capabilities {
        Capabilities::parse(
            "runsc version 0.0~20240729.0\n",
            "kvm\nsystrap\nptrace\n",
            FLAGS_2024,
        )
    }
    fn none() -> BTreeMap<String, toml::Value> {
        BTreeMap::new()
    }

    #[test]
    fn parses_what_each_runsc_supports() {
        let old = caps_2022();
        assert_eq!(old.version, "runsc version 0.0~20221219.0");
        assert_eq!(old.platforms, ["kvm", "ptrace"]);
        assert!(!old.directfs && !old.overlay_self);
        let new = caps_2024();
        assert_eq!(new.platforms, ["kvm", "systrap", "ptrace"]);
        assert!(new.directfs && new.overlay_self);
        // the deprecated -overlay flag's help does not count as -overlay2's
        assert!(flag_help(FLAGS_2022, "overlay").contains("DEPRECATED"));
        assert!(!flag_help(FLAGS_2022, "overlay2").contains("DEPRECATED"));
    }

    #[test]
    fn defaults_per_runsc_version() {
        let d = TuningConfig::default();
        assert_eq!(
            flags(&d, &caps_2022(), &none(), None).unwrap(),
            ["--platform=ptrace", "--overlay2=root:memory"]
        );
        assert_eq!(
            flags(&d, &caps_2024(), &none(), None).unwrap(),
            ["--platform=systrap", "--overlay2=root:self"]
        );
    }

    #[test]
    fn explicit_runsc_flags_win() {
        let mut explicit = none();
        explicit.insert("platform".into(), "kvm".into());
        explicit.insert("overlay2".into(), "none".into());
        explicit.insert("directfs".into(), false.into());
        let cfg = TuningConfig {
            directfs: Some(true),
            ..Default::default()
        };
        assert!(flags(&cfg, &caps_2024(), &explicit, None)
            .unwrap()
            .is_empty());
        let mut old = none();
        old.insert("overlay".into(), true.into());
        assert_eq!(
            flags(&cfg, &caps_2024(), &old, None).unwrap(),
            ["--platform=systrap", "--directfs=true"]
        );
    }

    #[test]
    fn dir_medium_spelling_follows_the_runsc() {
        let cfg = TuningConfig {
            rootfs_overlay: RootfsOverlay::Dir,
            ..Default::default()
        };
        let dir = Path::new("/var/lib/agentbox/overlay/k8s.io/abc");
        assert_eq!(
            flags(&cfg, &caps_2022(), &none(), Some(dir)).unwrap()[1],
            "--overlay2=root:/var/lib/agentbox/overlay/k8s.io/abc"
        );
        assert_eq!(
            flags(&cfg, &caps_2024(), &none(), Some(dir)).unwrap()[1],
            "--overlay2=root:dir=/var/lib/agentbox/overlay/k8s.io/abc"
        );
        assert!(flags(&cfg, &caps_2022(), &none(), None).is_err());
        assert!(cfg.wants_overlay_dir(&none()));
    }

    #[test]
    fn what_a_runsc_lacks_is_an_error_not_a_silent_fallback() {
        let systrap = TuningConfig {
            platform: "systrap".into(),
            ..Default::default()
        };
        let e = flags(&systrap, &caps_2022(), &none(), None).unwrap_err();
        assert!(e.contains("systrap") && e.contains("20221219"), "{e}");
        let selfb = TuningConfig {
            rootfs_overlay: RootfsOverlay::SelfBacked,
            ..Default::default()
        };
        assert!(flags(&selfb, &caps_2022(), &none(), None).is_err());
        let dfs = TuningConfig {
            directfs: Some(true),
            ..Default::default()
        };
        assert!(flags(&dfs, &caps_2022(), &none(), None).is_err());
        // asking for what an old runsc does anyway is fine
        let off = TuningConfig {
            directfs: Some(false),
            rootfs_overlay: RootfsOverlay::None,
            platform: "ptrace".into(),
            ..Default::default()
        };
        assert_eq!(
            flags(&off, &caps_2022(), &none(), None).unwrap(),
            ["--platform=ptrace", "--overlay2=none"]
        );
    }

    #[test]
    fn config_validation() {
        assert!(TuningConfig::default().validate().is_none());
        for bad in [
            TuningConfig {
                platform: "--debug".into(),
                ..Default::default()
            },
            TuningConfig {
                overlay_dir: "rel/dir".into(),
                ..Default::default()
            },
            TuningConfig {
                overlay_dir: "/a:b".into(),
                ..Default::default()
            },
            TuningConfig {
                kubelet_pods_dir: "pods".into(),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_some(), "{bad:?}");
        }
    }

    #[test]
    fn parses_from_toml() {
        let t: TuningConfig = toml::from_str(
            "platform = \"ptrace\"\nrootfs_overlay = \"self\"\nempty_dir = \"memory\"\ndirectfs = false\n",
        )
        .unwrap();
        assert_eq!(t.rootfs_overlay, RootfsOverlay::SelfBacked);
        assert_eq!(t.empty_dir, EmptyDirMode::Memory);
        assert_eq!(t.directfs, Some(false));
        assert!(toml::from_str::<TuningConfig>("overlay = \"memory\"\n").is_err());
    }

    #[test]
    fn is_a_table_of_the_agentbox_config() {
        let c = crate::config::Config::from_toml_str(
            "profile = \"standard\"\n[runtime.tuning]\nrootfs_overlay = \"dir\"\noverlay_dir = \"/srv/ov\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.runtime.tuning.rootfs_overlay, RootfsOverlay::Dir);
        assert_eq!(c.runtime.tuning.overlay_dir, Path::new("/srv/ov"));
        let d = crate::config::Config::from_toml_str("profile = \"standard\"\n", "t").unwrap();
        assert_eq!(d.runtime.tuning, TuningConfig::default());
        let e = crate::config::Config::from_toml_str(
            "[runtime.tuning]\noverlay_dir = \"relative\"\n",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("overlay_dir"), "{e}");
        let e = crate::config::Config::from_toml_str("[runtime.tuning]\nplatfrom = \"x\"\n", "t")
            .unwrap_err();
        assert!(e.to_string().contains("platfrom"), "{e}");
    }
}
