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
    /// `[runtime] runsc_timeout_seconds` (absent: written by an earlier release).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_timeout() -> u64 {
    crate::config::DEFAULT_RUNSC_TIMEOUT_SECONDS
}

/// How often `delete` tries `runsc delete --force`: the pod's containers
/// are cleaned up at once after their daemon died, and a subcontainer's
/// delete fails while its sandbox is being destroyed next to it.
const DELETE_TRIES: u32 = 6;
const DELETE_RETRY: std::time::Duration = std::time::Duration::from_millis(500);

impl CleanupState {
    /// `runsc delete --force` (tried again while it fails, bounded) and the
    /// rootfs unmounted; an error if runsc kept failing or hung (it is then
    /// killed).
    pub fn cleanup(&self, flags: &Flags, bundle: &Path) -> Result<(), String> {
        let limit = std::time::Duration::from_secs(self.timeout_seconds.max(1));
        // A sandbox goes after its other containers: destroying it removes
        // the cgroups runsc made for the pod, which fails (runsc retries for
        // seconds, past containerd's bound on `delete`) while a container's
        // cgroup is still inside. containerd deletes the pod's containers
        // at once, in no order; this one orders them.
        let names = std::fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for sub in subcontainers(&names, &flags.id) {
            if let Err(e) = self.runsc_delete(&sub, limit) {
                // its own `delete` tries again
                tracing::warn!(container = %sub, error = %e, "runsc delete of a container before its sandbox failed");
            }
        }
        let mut result = Err(String::new());
        for attempt in 0..DELETE_TRIES {
            if attempt > 0 {
                std::thread::sleep(DELETE_RETRY);
            }
            result = self.runsc_delete(&flags.id, limit);
            match &result {
                Ok(()) => break,
                // a hung runsc is not tried again
                Err(e) if e.contains("timed out") => break,
                Err(e) => tracing::warn!(attempt, error = %e, "runsc delete failed"),
            }
        }
        if self.rootfs_mounted {
            unmount_rootfs(bundle);
        }
        if let Some(d) = &self.overlay_dir {
            super::tune::remove_overlay_folder(d);
        }
        result
    }

    /// One bounded `runsc delete --force`.
    fn runsc_delete(&self, id: &str, limit: std::time::Duration) -> Result<(), String> {
        let mut cmd = std::process::Command::new(&self.runsc);
        cmd.arg(format!("--root={}", self.root.display()));
        cmd.args(&self.global_flags);
        cmd.args(["delete", "--force", id]);
        match crate::output::run_bounded(&mut cmd, limit) {
            Ok(o) if !o.status.success() => Err(format!(
                "runsc delete failed: {}",
                super::summarize(&o.stderr)
            )),
            Err(e) => Err(format!("runsc delete: {e}")),
            Ok(_) => Ok(()),
        }
    }
}

/// The containers other than `sandbox` that runsc's root holds in the
/// sandbox `sandbox` (runsc keeps `<container>_sandbox:<sandbox>.state`).
fn subcontainers(names: &[String], sandbox: &str) -> Vec<String> {
    let suffix = format!("_sandbox:{sandbox}.state");
    let mut out: Vec<String> = names
        .iter()
        .filter_map(|n| n.strip_suffix(&suffix))
        .filter(|c| !c.is_empty() && *c != sandbox)
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

pub fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    if let Some(p) = rootfs.to_str() {
        if let Err(e) = containerd_shim::mount::umount_recursive(Some(p), libc::MNT_DETACH) {
            tracing::warn!(error = %e, "cannot unmount rootfs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crash-cleanup state running `runsc` (a fake) on `root`.
    fn fake_state(runsc: PathBuf, root: PathBuf) -> CleanupState {
        CleanupState {
            runsc,
            root,
            global_flags: vec![],
            mask_proc_sys_net: false,
            rootfs_mounted: false,
            overlay_dir: None,
            timeout_seconds: 5,
        }
    }

    #[test]
    fn a_failing_delete_is_tried_again() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let runsc = dir.path().join("runsc");
        // fails twice (the sandbox is being destroyed next to it), then works
        let script = format!(
            "#!/bin/sh\necho x >> {0}/tries\n[ $(wc -l < {0}/tries) -ge 3 ] || {{ echo 'urpc: connection reset' >&2; exit 1; }}\n",
            dir.path().display()
        );
        std::fs::write(&runsc, script).unwrap();
        std::fs::set_permissions(&runsc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let st = fake_state(runsc.clone(), dir.path().join("root"));
        let flags = Flags {
            id: "c1".into(),
            ..Default::default()
        };
        st.cleanup(&flags, dir.path()).expect("third try");
        let tries = std::fs::read_to_string(dir.path().join("tries")).unwrap();
        assert_eq!(tries.lines().count(), 3);
        // one that always fails is an error after a bounded number of tries
        std::fs::write(&runsc, "#!/bin/sh\necho 'no such sandbox' >&2\nexit 1\n").unwrap();
        let e = st.cleanup(&flags, dir.path()).unwrap_err();
        assert!(e.contains("no such sandbox"), "{e}");
    }

    #[test]
    fn subcontainers_are_the_sandboxs_other_state_files() {
        let names: Vec<String> = [
            "pod_sandbox:pod.state",
            "app_sandbox:pod.state",
            "sidecar_sandbox:pod.state",
            "other_sandbox:pod2.state",
            "pod2_sandbox:pod2.state",
            "app_sandbox:pod.lock",
            "_sandbox:pod.state",
            "stray",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(subcontainers(&names, "pod"), ["app", "sidecar"]);
        assert_eq!(subcontainers(&names, "pod2"), ["other"]);
        // a container that is not a sandbox has none
        assert!(subcontainers(&names, "app").is_empty());
    }

    #[test]
    fn a_sandbox_is_deleted_after_its_containers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        for f in ["pod_sandbox:pod.state", "app_sandbox:pod.state"] {
            std::fs::write(root.join(f), "{}").unwrap();
        }
        let runsc = dir.path().join("runsc");
        // logs the id it is asked to delete (the last argument)
        let script = format!(
            "#!/bin/sh
for a; do last=$a; done
echo $last >> {}/deleted
",
            dir.path().display()
        );
        std::fs::write(&runsc, script).unwrap();
        std::fs::set_permissions(&runsc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let st = fake_state(runsc, root);
        let flags = Flags {
            id: "pod".into(),
            ..Default::default()
        };
        st.cleanup(&flags, dir.path()).expect("deleted");
        let deleted = std::fs::read_to_string(dir.path().join("deleted")).unwrap();
        assert_eq!(deleted.lines().collect::<Vec<_>>(), ["app", "pod"]);
    }
}
