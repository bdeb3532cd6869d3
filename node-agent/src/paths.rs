//! Where things live on the node. Every path here is a *host* path (what the
//! node and containerd see); `on_host` maps one to where the agent sees it
//! (`--host-root`, e.g. `/host` in the DaemonSet, `/` when run on the node).

use std::path::{Path, PathBuf};

/// Name of the drop-in file in containerd's import folder.
pub const DROPIN_NAME: &str = "agentbox.toml";
/// The shim, as installed in `<install dir>/bin`.
pub const SHIM: &str = "containerd-shim-agentbox-v1";
/// The policy CLI, as installed in `<install dir>/bin`.
pub const POLICY_CLI: &str = "agentbox-policy";

#[derive(Debug, Clone)]
pub struct Layout {
    /// Where the host's `/` is visible to this process.
    pub host_root: PathBuf,
    /// agentbox's own folder: `bin/`, `state.json`, `backup/` (`/opt/agentbox`).
    pub install_dir: PathBuf,
    /// The handlers' agentbox TOML files (`/etc/agentbox`).
    pub config_dir: PathBuf,
    /// containerd's root config (`/etc/containerd/config.toml`).
    pub containerd_config: PathBuf,
    /// Folder for agentbox's drop-in on containerd 2.x (`/etc/containerd/conf.d`).
    pub containerd_dropin_dir: PathBuf,
    /// containerd's socket (`/run/containerd/containerd.sock`).
    pub containerd_socket: PathBuf,
    /// A folder on containerd's `PATH` (`/usr/local/bin`): containerd 1.6
    /// ignores a handler's `runtime_path`, so there the shim is linked in here.
    pub shim_link_dir: Option<PathBuf>,
}

impl Layout {
    /// The layout of a stock node, seen from `host_root`.
    pub fn standard(host_root: impl Into<PathBuf>) -> Self {
        Self {
            host_root: host_root.into(),
            install_dir: "/opt/agentbox".into(),
            config_dir: "/etc/agentbox".into(),
            containerd_config: "/etc/containerd/config.toml".into(),
            containerd_dropin_dir: "/etc/containerd/conf.d".into(),
            containerd_socket: "/run/containerd/containerd.sock".into(),
            shim_link_dir: Some("/usr/local/bin".into()),
        }
    }

    /// Every host path must be absolute and free of `..`.
    pub fn check(&self) -> Result<(), String> {
        for (what, p) in [
            ("install dir", &self.install_dir),
            ("config dir", &self.config_dir),
            ("containerd config", &self.containerd_config),
            ("containerd drop-in dir", &self.containerd_dropin_dir),
            ("containerd socket", &self.containerd_socket),
            (
                "shim link dir",
                self.shim_link_dir.as_ref().unwrap_or(&self.install_dir),
            ),
        ] {
            if !p.is_absolute()
                || p.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(format!(
                    "{what} {} must be an absolute path without `..`",
                    p.display()
                ));
            }
        }
        if !self.host_root.is_absolute() {
            return Err(format!(
                "host root {} must be an absolute path",
                self.host_root.display()
            ));
        }
        Ok(())
    }

    /// Where this process sees host path `p`.
    pub fn on_host(&self, p: &Path) -> PathBuf {
        self.host_root.join(p.strip_prefix("/").unwrap_or(p))
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.install_dir.join("bin")
    }
    pub fn shim_path(&self) -> PathBuf {
        self.bin_dir().join(SHIM)
    }
    pub fn state_path(&self) -> PathBuf {
        self.install_dir.join("state.json")
    }
    pub fn backup_dir(&self) -> PathBuf {
        self.install_dir.join("backup")
    }
    pub fn dropin_path(&self) -> PathBuf {
        self.containerd_dropin_dir.join(DROPIN_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_host_paths_under_the_host_root() {
        let l = Layout::standard("/host");
        assert_eq!(
            l.on_host(&l.containerd_config),
            Path::new("/host/etc/containerd/config.toml")
        );
        assert_eq!(
            Layout::standard("/").on_host(&l.shim_path()),
            Path::new("/opt/agentbox/bin/containerd-shim-agentbox-v1")
        );
        assert!(l.check().is_ok());
        let mut bad = l.clone();
        bad.config_dir = "etc/agentbox".into();
        assert!(bad.check().unwrap_err().contains("absolute"));
        bad.config_dir = "/etc/../agentbox".into();
        assert!(bad.check().is_err());
    }
}
