//! Restarting containerd. By default `systemctl restart containerd` run in
//! the namespaces of the host's PID 1 (mount, UTS, IPC, network, cgroup),
//! what `nsenter -t 1 -m -u -i -n -C` does, so the DaemonSet needs `hostPID`
//! but no tools in its image. The command and the PID are configurable.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("restart command is empty")]
    Empty,
    #[error("cannot enter the namespaces of pid {pid} ({ns}): {err} (the DaemonSet needs hostPID and privileges)")]
    Namespace {
        pid: u32,
        ns: &'static str,
        err: std::io::Error,
    },
    #[error("cannot run restart command {cmd:?}: {err}")]
    Spawn {
        cmd: Vec<String>,
        err: std::io::Error,
    },
    #[error("restart command {cmd:?} failed ({status}): {output}")]
    Failed {
        cmd: Vec<String>,
        status: String,
        output: String,
    },
    #[error("restart command {cmd:?} did not finish within {timeout:?} (killed)")]
    Timeout { cmd: Vec<String>, timeout: Duration },
}

/// Something that restarts containerd (a fake in unit tests).
pub trait Restarter {
    fn restart(&mut self) -> Result<(), RestartError>;
}

#[derive(Debug, Clone)]
pub struct RestartCommand {
    pub command: Vec<String>,
    /// Run it in this (host) process's namespaces; `None`: in ours.
    pub namespaces_of: Option<u32>,
    pub timeout: Duration,
}

/// Parses `--restart-command`: a JSON array of strings, or words split on whitespace.
pub fn parse_command(s: &str) -> Result<Vec<String>, String> {
    let s = s.trim();
    let v: Vec<String> = if s.starts_with('[') {
        serde_json::from_str(s).map_err(|e| format!("restart command {s:?}: {e}"))?
    } else {
        s.split_whitespace().map(str::to_string).collect()
    };
    if v.is_empty() || v[0].is_empty() {
        return Err("restart command is empty".into());
    }
    Ok(v)
}

const NAMESPACES: [(&str, nix::sched::CloneFlags); 5] = [
    ("cgroup", nix::sched::CloneFlags::CLONE_NEWCGROUP),
    ("ipc", nix::sched::CloneFlags::CLONE_NEWIPC),
    ("uts", nix::sched::CloneFlags::CLONE_NEWUTS),
    ("net", nix::sched::CloneFlags::CLONE_NEWNET),
    // last: it also moves our root and working directory to the host's
    ("mnt", nix::sched::CloneFlags::CLONE_NEWNS),
];

impl Restarter for RestartCommand {
    fn restart(&mut self) -> Result<(), RestartError> {
        let (prog, args) = self.command.split_first().ok_or(RestartError::Empty)?;
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        if let Some(pid) = self.namespaces_of {
            let mut fds: Vec<(OwnedFd, nix::sched::CloneFlags)> = vec![];
            for (ns, flag) in NAMESPACES {
                let f = std::fs::File::open(format!("/proc/{pid}/ns/{ns}"))
                    .map_err(|err| RestartError::Namespace { pid, ns, err })?;
                fds.push((f.into(), flag));
            }
            // SAFETY: between fork and exec only setns(2) (async-signal-safe)
            // runs, on descriptors opened before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    for (fd, flag) in &fds {
                        if libc::setns(fd.as_raw_fd(), flag.bits()) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().map_err(|err| RestartError::Spawn {
            cmd: self.command.clone(),
            err,
        })?;
        let end = Instant::now() + self.timeout;
        let status = loop {
            if let Some(st) = child.try_wait().map_err(|err| RestartError::Spawn {
                cmd: self.command.clone(),
                err,
            })? {
                break st;
            }
            if Instant::now() >= end {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RestartError::Timeout {
                    cmd: self.command.clone(),
                    timeout: self.timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if status.success() {
            return Ok(());
        }
        let mut output = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut output);
        }
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut output);
        }
        Err(RestartError::Failed {
            cmd: self.command.clone(),
            status: status.to_string(),
            output: output.trim().chars().take(2000).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_command_forms() {
        assert_eq!(
            parse_command("systemctl restart containerd").unwrap(),
            ["systemctl", "restart", "containerd"]
        );
        assert_eq!(
            parse_command(r#"["/bin/sh", "-c", "kill -HUP 1"]"#).unwrap(),
            ["/bin/sh", "-c", "kill -HUP 1"]
        );
        assert!(parse_command("  ").is_err());
        assert!(parse_command("[1]").is_err());
    }

    #[test]
    fn runs_reports_failure_and_times_out() {
        let mut ok = RestartCommand {
            command: vec!["true".into()],
            namespaces_of: None,
            timeout: Duration::from_secs(10),
        };
        ok.restart().unwrap();
        let mut bad = RestartCommand {
            command: vec![
                "sh".into(),
                "-c".into(),
                "echo unit not found >&2; exit 5".into(),
            ],
            namespaces_of: None,
            timeout: Duration::from_secs(10),
        };
        let e = bad.restart().unwrap_err().to_string();
        assert!(e.contains("unit not found") && e.contains("5"), "{e}");
        let mut slow = RestartCommand {
            command: vec!["sleep".into(), "5".into()],
            namespaces_of: None,
            timeout: Duration::from_millis(200),
        };
        assert!(matches!(slow.restart(), Err(RestartError::Timeout { .. })));
    }

    #[test]
    fn enters_the_namespaces_of_a_pid() {
        // our own namespaces: setns into them is allowed for root and a no-op
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED enters_the_namespaces_of_a_pid: needs root");
            return;
        }
        let mut c = RestartCommand {
            command: vec!["true".into()],
            namespaces_of: Some(std::process::id()),
            timeout: Duration::from_secs(10),
        };
        c.restart().unwrap();
        let mut c = RestartCommand {
            command: vec!["true".into()],
            namespaces_of: Some(u32::MAX - 1),
            timeout: Duration::from_secs(10),
        };
        assert!(c.restart().unwrap_err().to_string().contains("hostPID"));
    }
}
