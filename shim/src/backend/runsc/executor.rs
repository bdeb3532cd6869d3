//! Running runsc: the executor that spawns a command line (`cli`) with the
//! right stdio, optional `/proc/sys/net` mask and bounded output.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;

pub use super::cli::{Argv, RunscCli};

use super::io::ChildStdio;
use crate::reaper::Reaper;

pub use crate::output::summarize;

#[derive(Debug, thiserror::Error)]
pub enum RunscError {
    #[error("cannot run {program}: {err}")]
    Spawn {
        program: String,
        err: std::io::Error,
    },
    #[error("runsc {sub} failed ({status}): {message}")]
    Failed {
        sub: String,
        status: String,
        message: String,
    },
    #[error("runsc {sub} timed out after {secs}s")]
    Timeout { sub: String, secs: u64 },
    #[error("runsc {sub} printed output agentbox cannot read: {message}")]
    BadOutput { sub: String, message: String },
}

/// Spawns runsc commands.
#[derive(Debug, Clone)]
pub struct Runsc {
    pub cli: RunscCli,
    pub mask_proc_sys_net: bool,
    pub reaper: Arc<Reaper>,
}

/// The subcommand of a runsc command line (the first non-flag argument).
fn subcommand(argv: &Argv) -> String {
    argv.args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_default()
}

fn spawn_error(argv: &Argv, err: std::io::Error) -> RunscError {
    RunscError::Spawn {
        program: argv.program.display().to_string(),
        err,
    }
}

struct MaskArgs {
    root: CString,
    target: CString,
    fstype: CString,
    data: CString,
}

impl Runsc {
    fn command(&self, argv: &Argv) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&argv.program);
        cmd.args(&argv.args);
        cmd.kill_on_drop(false);
        if self.mask_proc_sys_net {
            let m = MaskArgs {
                root: CString::new("/").unwrap(),
                target: CString::new("/proc/sys/net").unwrap(),
                fstype: CString::new("tmpfs").unwrap(),
                data: CString::new("size=4k,mode=555").unwrap(),
            };
            // SAFETY: only async-signal-safe syscalls run between fork and exec;
            // every string was allocated before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::unshare(libc::CLONE_NEWNS) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::mount(
                        std::ptr::null(),
                        m.root.as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_SLAVE,
                        std::ptr::null(),
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::mount(
                        m.fstype.as_ptr(),
                        m.target.as_ptr(),
                        m.fstype.as_ptr(),
                        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        m.data.as_ptr().cast(),
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd
    }

    /// Run a command and return its stdout; stderr goes into the error on failure.
    pub async fn output(&self, argv: &Argv, timeout: Duration) -> Result<Vec<u8>, RunscError> {
        self.output_bounded(argv, Some(timeout)).await
    }

    async fn output_bounded(
        &self,
        argv: &Argv,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, RunscError> {
        let sub = subcommand(argv);
        let mut cmd = self.command(argv);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self
            .reaper
            .spawn(&mut cmd)
            .map_err(|err| spawn_error(argv, err))?;
        let pid = child.id();
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            let _ = (a, b);
            let status = child.wait().await;
            (out, err, status)
        };
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, work).await,
            None => Ok(work.await),
        };
        let (out, err, status) = match result {
            Ok(r) => r,
            Err(_) => {
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                self.reaper.untrack(pid);
                return Err(RunscError::Timeout {
                    sub,
                    secs: timeout.map(|t| t.as_secs()).unwrap_or(0),
                });
            }
        };
        self.reaper.untrack(pid);
        let status = status.map_err(|err| spawn_error(argv, err))?;
        if !status.success() {
            let mut both = err;
            if both.is_empty() {
                both = out;
            }
            return Err(RunscError::Failed {
                sub,
                status: status.to_string(),
                message: summarize(&both),
            });
        }
        Ok(out)
    }

    /// Run a command whose stdio is the container's (create, start, exec).
    /// runsc's own errors then go to its `--log` file, which is read for the
    /// error message.
    pub async fn run_with_stdio(
        &self,
        argv: &Argv,
        stdio: ChildStdio,
        log: Option<&Path>,
        timeout: Duration,
    ) -> Result<(), RunscError> {
        let sub = subcommand(argv);
        let mut cmd = self.command(argv);
        let to = |fd: Option<OwnedFd>| fd.map(Stdio::from).unwrap_or_else(Stdio::null);
        let log_start = log
            .and_then(|l| std::fs::metadata(l).ok())
            .map(|m| m.len())
            .unwrap_or(0);
        cmd.stdin(to(stdio.stdin))
            .stdout(to(stdio.stdout))
            .stderr(to(stdio.stderr));
        let mut child = self
            .reaper
            .spawn(&mut cmd)
            .map_err(|err| spawn_error(argv, err))?;
        // drop our copies of the container's ends now that the child has them
        drop(cmd);
        let pid = child.id();
        let status = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                self.reaper.untrack(pid);
                return Err(RunscError::Timeout {
                    sub,
                    secs: timeout.as_secs(),
                });
            }
        };
        self.reaper.untrack(pid);
        let status = status.map_err(|err| spawn_error(argv, err))?;
        if !status.success() {
            let message = log
                .and_then(|l| std::fs::read(l).ok())
                .map(|b| summarize(b.get(log_start as usize..).unwrap_or(&b)))
                .unwrap_or_else(|| "no log".to_string());
            return Err(RunscError::Failed {
                sub,
                status: status.to_string(),
                message,
            });
        }
        Ok(())
    }

    /// `runsc wait`: block until the container (or one of its processes) exits
    /// and return its exit status.
    pub async fn wait(&self, argv: &Argv) -> Result<i32, RunscError> {
        // waits last as long as the workload: no timeout
        let out = self.output_bounded(argv, None).await?;
        parse_wait(&out).ok_or_else(|| RunscError::BadOutput {
            sub: "wait".into(),
            message: summarize(&out),
        })
    }
}

/// Parse `{"id":"..","exitStatus":N}`.
pub fn parse_wait(out: &[u8]) -> Option<i32> {
    let v: serde_json::Value = serde_json::from_slice(out).ok()?;
    v.get("exitStatus")?.as_i64().map(|n| n as i32)
}

/// The parts of `runsc state` agentbox reads.
#[derive(Debug, Clone, serde::Deserialize, PartialEq, Eq)]
pub struct RunscState {
    pub id: String,
    #[serde(default)]
    pub pid: i64,
    #[serde(default)]
    pub status: String,
}

pub fn parse_state(out: &[u8]) -> Option<RunscState> {
    serde_json::from_slice(out).ok()
}

/// `runsc ps --format json` prints a JSON array of pids (or `null`).
pub fn parse_ps(out: &[u8]) -> Option<Vec<u32>> {
    let v: serde_json::Value = serde_json::from_slice(out).ok()?;
    match v {
        serde_json::Value::Null => Some(Vec::new()),
        serde_json::Value::Array(a) => a.iter().map(|p| p.as_u64().map(|n| n as u32)).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wait_state_ps() {
        assert_eq!(parse_wait(br#"{"id":"c","exitStatus":137}"#), Some(137));
        assert_eq!(parse_wait(b"nope"), None);
        let s = parse_state(
            br#"{"ociVersion":"1.0.2","id":"c","status":"running","pid":42,"bundle":"/b"}"#,
        )
        .unwrap();
        assert_eq!((s.pid, s.status.as_str()), (42, "running"));
        assert_eq!(parse_ps(b"[1,5,9]"), Some(vec![1, 5, 9]));
        assert_eq!(parse_ps(b"null"), Some(vec![]));
        assert_eq!(parse_ps(b"{}"), None);
    }

    fn fake(script: &str) -> (tempfile::TempDir, Runsc) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("runsc");
        std::fs::write(&bin, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = Runsc {
            cli: RunscCli {
                binary: bin,
                root: dir.path().join("root"),
                global_flags: vec![],
                log: None,
            },
            mask_proc_sys_net: false,
            reaper: Arc::new(Reaper::new()),
        };
        (dir, r)
    }

    #[tokio::test]
    async fn failure_carries_stderr() {
        let (_d, r) = fake("echo 'creating container: boom' >&2; exit 3");
        let e = r
            .output(&r.cli.state("c"), Duration::from_secs(5))
            .await
            .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("runsc state failed") && s.contains("boom"),
            "{s}"
        );
    }

    #[tokio::test]
    async fn timeout_is_reported() {
        let (_d, r) = fake("sleep 5");
        let e = r
            .output(&r.cli.state("c"), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(e, RunscError::Timeout { .. }), "{e}");
    }

    #[tokio::test]
    async fn wait_parses_exit_status() {
        let (_d, r) = fake(r#"echo '{"id":"c","exitStatus":7}'"#);
        assert_eq!(r.wait(&r.cli.wait("c", None)).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn run_with_stdio_reads_the_log_on_failure() {
        let (d, r) = fake(
            r#"for a in "$@"; do case "$a" in --log=*) echo '{"msg":"gofer: permission denied"}' >> "${a#--log=}";; esac; done; exit 1"#,
        );
        let log = d.path().join("runsc.log");
        let mut cli = r.cli.clone();
        cli.log = Some(log.clone());
        let argv = cli.start("c");
        let e = r
            .run_with_stdio(
                &argv,
                ChildStdio::default(),
                Some(&log),
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("gofer: permission denied"), "{e}");
    }
}
