//! containerd's `delete` after agentbox died: the delegate cleans up its own
//! task and answers for it; its daemon, which served only this pod's
//! agentbox, is ended.

use std::path::Path;

use anyhow::{bail, Context as _};
use containerd_shim::Flags;
use serde::{Deserialize, Serialize};

/// What the delegate backend records in the bundle for a cleanup after a crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleanupState {
    /// The delegate shim binary.
    pub delegate: String,
    /// The delegate daemon's pid.
    #[serde(default)]
    pub delegate_pid: Option<i32>,
}

impl CleanupState {
    /// Run the delegate's own `delete`; its stdout (a `DeleteResponse`).
    pub fn cleanup(&self, flags: &Flags, bundle: &Path) -> anyhow::Result<Vec<u8>> {
        let delegate = &self.delegate;
        let mut cmd = delete_command(
            Path::new(delegate),
            &flags.namespace,
            &flags.address,
            &flags.id,
            bundle,
        );
        let out = crate::output::run_bounded(&mut cmd, super::CALL_TIMEOUT)
            .with_context(|| format!("{delegate} delete"))?;
        if let Some(pid) = self.delegate_pid {
            kill_if_exe(pid, Path::new(delegate));
        }
        if !out.status.success() {
            bail!(
                "{delegate} delete failed: {}",
                crate::output::summarize(&out.stderr)
            );
        }
        Ok(out.stdout)
    }
}

/// The delegate shim's own `delete` action for container `id`.
pub fn delete_command(
    binary: &Path,
    namespace: &str,
    containerd: &str,
    id: &str,
    bundle: &Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(binary);
    cmd.args(["-namespace", namespace, "-address", containerd, "-id", id])
        .args(["-bundle", &bundle.display().to_string(), "delete"])
        .current_dir(bundle);
    cmd
}

/// SIGKILL `pid` if it still runs `exe` (never a recycled pid's new owner).
fn kill_if_exe(pid: i32, exe: &Path) {
    let running = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let want = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    if pid > 1 && running.as_deref() == Some(want.as_path()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}
