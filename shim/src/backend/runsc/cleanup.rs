//! containerd's `delete` after the daemon died: `runsc delete --force` and
//! the rootfs unmounted, from what Create recorded in the bundle.

use std::path::{Path, PathBuf};

use containerd_shim::Flags;
use serde::{Deserialize, Serialize};

/// What the runsc backend records in the bundle for a cleanup after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanupState {
    pub runsc: PathBuf,
    pub root: PathBuf,
    pub global_flags: Vec<String>,
    pub mask_proc_sys_net: bool,
    pub rootfs_mounted: bool,
    /// The pod's root filesystem overlay folder (its sandbox container only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_dir: Option<PathBuf>,
}

impl CleanupState {
    /// `runsc delete --force` and the rootfs unmounted; an error if runsc failed.
    pub fn cleanup(&self, flags: &Flags, bundle: &Path) -> Result<(), String> {
        let mut cmd = std::process::Command::new(&self.runsc);
        cmd.arg(format!("--root={}", self.root.display()));
        cmd.args(&self.global_flags);
        cmd.args(["delete", "--force", &flags.id]);
        let result = match cmd.output() {
            Ok(o) if !o.status.success() => Err(format!(
                "runsc delete failed: {}",
                super::summarize(&o.stderr)
            )),
            Err(e) => Err(format!("cannot run runsc delete: {e}")),
            Ok(_) => Ok(()),
        };
        if self.rootfs_mounted {
            unmount_rootfs(bundle);
        }
        if let Some(d) = &self.overlay_dir {
            super::tune::remove_overlay_folder(d);
        }
        result
    }
}

pub fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    if let Some(p) = rootfs.to_str() {
        if let Err(e) = containerd_shim::mount::umount_recursive(Some(p), libc::MNT_DETACH) {
            tracing::warn!(error = %e, "cannot unmount rootfs");
        }
    }
}
