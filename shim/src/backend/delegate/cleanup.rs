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
    /// The delegate daemon's socket, removed once it is gone.
    #[serde(default)]
    pub delegate_address: Option<String>,
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
            if kill_if_exe(pid, Path::new(delegate)) {
                // a killed daemon cannot remove its socket
                let _ = wait_gone(pid, std::time::Duration::from_secs(2));
                if let Some(a) = &self.delegate_address {
                    crate::bootstrap::remove_stale_socket(a.trim_start_matches("unix://"));
                }
            }
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

/// SIGKILL `pid` if it still runs `exe` (never a recycled pid's new owner);
/// whether it was signalled.
fn kill_if_exe(pid: i32, exe: &Path) -> bool {
    let running = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let want = std::fs::canonicalize(exe).unwrap_or_else(|_| exe.to_path_buf());
    pid > 1
        && running.as_deref() == Some(want.as_path())
        && nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .is_ok()
}

/// Wait (bounded) until `pid` no longer runs; whether it is gone.
fn wait_gone(pid: i32, limit: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    loop {
        // a zombie still has /proc/PID, but its exe link is gone
        if std::fs::read_link(format!("/proc/{pid}/exe")).is_err() {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
