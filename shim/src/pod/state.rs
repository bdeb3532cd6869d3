//! What `delete` needs to clean up after a daemon that died: written into the
//! bundle at Create, removed once the container is cleanly deleted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::BackendState;

/// File in the bundle recording how to clean up after a crash.
pub const STATE_FILE: &str = "agentbox-state.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleState {
    /// The audit log the `cleanup` record goes to.
    pub audit: PathBuf,
    /// How the backend cleans up.
    #[serde(flatten)]
    pub backend: BackendState,
}

impl BundleState {
    pub fn write(&self, bundle: &Path) -> std::io::Result<()> {
        let v = serde_json::to_value(self).map_err(std::io::Error::other)?;
        crate::enforce::write_atomic(&bundle.join(STATE_FILE), &v)
    }

    /// The state of a bundle, if agentbox wrote one.
    pub fn read(bundle: &Path) -> Option<Result<BundleState, String>> {
        let bytes = std::fs::read(bundle.join(STATE_FILE)).ok()?;
        Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("cannot read agentbox state {STATE_FILE}: {e}")),
        )
    }

    /// The container was cleaned up: containerd's `delete` has nothing left to do.
    pub fn remove(bundle: &Path) {
        let _ = std::fs::remove_file(bundle.join(STATE_FILE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{delegate, runsc};

    #[test]
    fn both_backends_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for st in [
            BundleState {
                audit: "/var/log/a.jsonl".into(),
                backend: BackendState::Delegate(delegate::CleanupState {
                    delegate: "/usr/bin/containerd-shim-runc-v2".into(),
                    delegate_pid: Some(42),
                    delegate_address: Some("unix:///run/containerd/s/d".into()),
                }),
            },
            BundleState {
                audit: "/var/log/a.jsonl".into(),
                backend: BackendState::Runsc(runsc::CleanupState {
                    runsc: "/usr/bin/runsc".into(),
                    root: "/run/agentbox/runsc/k8s.io".into(),
                    global_flags: vec!["--platform=ptrace".into()],
                    mask_proc_sys_net: true,
                    rootfs_mounted: true,
                    overlay_dir: Some("/var/lib/agentbox/overlay/k8s.io/sb".into()),
                    timeout_seconds: 7,
                }),
            },
        ] {
            st.write(dir.path()).unwrap();
            assert_eq!(BundleState::read(dir.path()).unwrap().unwrap(), st);
            BundleState::remove(dir.path());
            assert!(BundleState::read(dir.path()).is_none());
        }
    }

    #[test]
    fn reads_the_flat_format_of_earlier_releases() {
        // a daemon of the previous release may still run when a new shim's
        // `delete` cleans up after it
        let old_runsc = r#"{"runsc":"/usr/bin/runsc","root":"/run/r","global_flags":[],"mask_proc_sys_net":false,"audit":"/a","rootfs_mounted":true,"delegate":null,"delegate_pid":null}"#;
        let st: BundleState = serde_json::from_str(old_runsc).unwrap();
        assert!(
            matches!(st.backend, BackendState::Runsc(ref r) if r.rootfs_mounted && r.root == Path::new("/run/r"))
        );
        let old_delegate = r#"{"runsc":"","root":"","global_flags":[],"mask_proc_sys_net":false,"audit":"/a","rootfs_mounted":false,"delegate":"/bin/shim","delegate_pid":7}"#;
        let st: BundleState = serde_json::from_str(old_delegate).unwrap();
        assert!(
            matches!(st.backend, BackendState::Delegate(ref d) if d.delegate == "/bin/shim" && d.delegate_pid == Some(7))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        assert!(BundleState::read(dir.path()).unwrap().is_err());
    }
}
