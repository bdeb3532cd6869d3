//! Running runsc: the executor that spawns a command line (`cli`) with the
//! right stdio, optional `/proc/sys/net` mask and bounded output.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

pub use super::cli::{Argv, RunscCli};

use super::io::ChildStdio;
use crate::reaper::Reaper;

pub use crate::output::summarize;
use crate::output::{capture, CaptureError};

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
    /// How long one runsc command may take (`[runtime] runsc_timeout_seconds`).
    pub timeout: Duration,
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
    /// A runsc command in its own process group, so a timeout kills
    /// whatever it started with it, and killed if the daemon dies (a
    /// `runsc create` must not finish a sandbox nobody will ever delete).
    fn command(&self, argv: &Argv) -> std::process::Command {
        let mut cmd = std::process::Command::new(&argv.program);
        cmd.args(&argv.args);
        cmd.process_group(0);
        // SAFETY: prctl with integer arguments is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
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

    /// Run a command and return its stdout; stderr goes into the error on
    /// failure. Bounded by the runsc timeout: a command that outlives it is
    /// killed with its process group.
    pub async fn output(&self, argv: &Argv) -> Result<Vec<u8>, RunscError> {
        self.output_bounded(argv, Some(self.timeout)).await
    }

    async fn output_bounded(
        &self,
        argv: &Argv,
        timeout: Option<Duration>,
    ) -> Result<Vec<u8>, RunscError> {
        let sub = subcommand(argv);
        let c = capture(&self.reaper, self.command(argv), None, timeout)
            .await
            .map_err(|e| match e {
                CaptureError::Spawn(err) => spawn_error(argv, err),
                CaptureError::Timeout(secs) => RunscError::Timeout {
                    sub: sub.clone(),
                    secs,
                },
            })?;
        if c.status != 0 {
            let both = if c.stderr.is_empty() {
                c.stdout
            } else {
                c.stderr
            };
            return Err(RunscError::Failed {
                sub,
                status: describe(c.status),
                message: summarize(&both),
            });
        }
        Ok(c.stdout)
    }

    /// Run a command whose stdio is the container's (create, start, exec).
    /// runsc's own errors then go to its `--log` file, which is read for the
    /// error message. A command that outlives the runsc timeout is killed
    /// with its process group.
    pub async fn run_with_stdio(
        &self,
        argv: &Argv,
        stdio: ChildStdio,
        log: Option<&Path>,
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
        let (_child, mut exit) = self
            .reaper
            .spawn(&mut cmd)
            .map_err(|err| spawn_error(argv, err))?;
        // drop our copies of the container's ends now that the child has them
        drop(cmd);
        let waited = tokio::time::timeout(self.timeout, exit.status()).await;
        let Ok(status) = waited else {
            self.reaper.kill_group(exit.pid);
            // the call fails once the killed runsc is gone (reaped)
            let _ = tokio::time::timeout(crate::output::KILL_WAIT, exit.status()).await;
            return Err(RunscError::Timeout {
                sub,
                secs: self.timeout.as_secs(),
            });
        };
        if status != 0 {
            let message = log
                .and_then(|l| std::fs::read(l).ok())
                .map(|b| summarize(b.get(log_start as usize..).unwrap_or(&b)))
                .unwrap_or_else(|| "no log".to_string());
            return Err(RunscError::Failed {
                sub,
                status: describe(status),
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

/// An exit status as a person reads it.
fn describe(status: i32) -> String {
    format!("exit status {status}")
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
            timeout: Duration::from_secs(5),
        };
        tokio::spawn(r.reaper.clone().run());
        (dir, r)
    }

    #[tokio::test]
    async fn failure_carries_stderr() {
        let (_d, r) = fake("echo 'creating container: boom' >&2; exit 3");
        let e = r.output(&r.cli.state("c")).await.unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("runsc state failed") && s.contains("boom"),
            "{s}"
        );
    }

    #[tokio::test]
    async fn timeout_is_reported() {
        let (d, mut r) = fake("sleep 300 & echo $! > \"$(dirname \"$0\")/bg.pid\"; exec sleep 301");
        r.timeout = Duration::from_millis(500);
        let e = r.output(&r.cli.state("c")).await.unwrap_err();
        assert!(matches!(e, RunscError::Timeout { .. }), "{e}");
        // the hung command and what it started are killed, not orphaned
        let bg: i32 = std::fs::read_to_string(d.path().join("bg.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = async {
            while std::fs::read_to_string(format!("/proc/{bg}/stat"))
                .is_ok_and(|s| crate::reaper::parse_stat(&s).is_none_or(|(st, _)| st != 'Z'))
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), gone)
            .await
            .expect("the hung runsc's child was killed");
        assert_eq!(r.reaper.sizes().0, 0, "the hung runsc was reaped");
    }

    #[tokio::test]
    async fn hung_run_with_stdio_is_killed() {
        let (_d, mut r) = fake("exec sleep 300");
        r.timeout = Duration::from_millis(300);
        let e = r
            .run_with_stdio(&r.cli.start("c"), ChildStdio::default(), None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        tokio::time::timeout(Duration::from_secs(5), async {
            while r.reaper.sizes().0 > 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("reaped");
    }

    #[tokio::test]
    async fn garbage_on_stderr_becomes_a_bounded_message_without_secrets() {
        let secret = format!("ghp_{}", "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa");
        let (_d, r) = fake(&format!(
            "head -c 20000 /dev/urandom >&2; printf '\\nGITHUB_TOKEN={secret} failed\\n' >&2; exit 2"
        ));
        let e = r.output(&r.cli.state("c")).await.unwrap_err().to_string();
        assert!(e.starts_with("runsc state failed (exit status 2)"), "{e}");
        assert!(!e.contains(&secret), "{e}");
        assert!(e.len() < 2 * crate::output::MAX_MESSAGE, "{}", e.len());
        assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
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
            .run_with_stdio(&argv, ChildStdio::default(), Some(&log))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("gofer: permission denied"), "{e}");
    }
}
