//! A child program's output made fit for an error message that reaches
//! containerd (and `kubectl describe`): the last distinct lines, bounded,
//! printable, and with secrets redacted (runsc and delegates may echo a
//! process's argv).

/// The most of a program's output kept in an error message.
pub const MAX_MESSAGE: usize = 2048;

/// Make a program's output (runsc's, a delegate shim's) fit an error message: the last lines, bounded, and the
/// `msg` of JSON log lines when it logs JSON. Secret values (the built-in
/// rules of `agentbox-secrets`) are redacted before anything is cut, so a
/// cut cannot leave half a token unrecognised.
pub fn summarize(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) => v
                .get("msg")
                .and_then(|m| m.as_str())
                .unwrap_or(l)
                .to_string(),
            Err(_) => l.to_string(),
        })
        .map(|l| redact_line(&l))
        .collect();
    // runsc repeats its fatal error; keep the last distinct few lines
    lines.dedup();
    let start = lines.len().saturating_sub(3);
    let mut s = lines[start..]
        .iter()
        .map(|l| agentbox_secrets::redact_text(l))
        .collect::<Vec<_>>()
        .join("; ");
    if s.len() > MAX_MESSAGE {
        let mut cut = s.len() - MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut += 1;
        }
        s = format!("…{}", &s[cut..]);
    }
    if s.is_empty() {
        "no output".to_string()
    } else {
        s
    }
}

/// What a command captured by [`capture`] did.
#[derive(Debug)]
pub struct Captured {
    /// Exit status (`128 + signal` for a signal death).
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why [`capture`] has no result.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot run it: {0}")]
    Spawn(std::io::Error),
    #[error("timed out after {0}s and was killed")]
    Timeout(u64),
}

/// Run a command inside the daemon, through the reaper (which owns every
/// child's status), with `stdin` written to it and its output captured. A
/// command that outlives `timeout` is killed with its process group.
pub async fn capture(
    reaper: &crate::reaper::Reaper,
    mut cmd: std::process::Command,
    stdin: Option<Vec<u8>>,
    timeout: Option<std::time::Duration>,
) -> Result<Captured, CaptureError> {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    cmd.process_group(0)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, mut exit) = reaper.spawn(&mut cmd).map_err(CaptureError::Spawn)?;
    drop(cmd);
    let reader = |fd: Option<std::os::fd::OwnedFd>| {
        fd.and_then(|fd| tokio::net::unix::pipe::Receiver::from_owned_fd(fd).ok())
    };
    let out = reader(child.stdout.take().map(Into::into));
    let err = reader(child.stderr.take().map(Into::into));
    let input = child
        .stdin
        .take()
        .and_then(|fd| tokio::net::unix::pipe::Sender::from_owned_fd(fd.into()).ok());
    let read_all = |r: Option<tokio::net::unix::pipe::Receiver>| async move {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf).await;
        }
        buf
    };
    let work = async {
        let write = async {
            if let (Some(mut w), Some(data)) = (input, stdin) {
                let _ = w.write_all(&data).await;
            }
        };
        let ((), stdout, stderr, status) =
            tokio::join!(write, read_all(out), read_all(err), exit.status());
        Captured {
            status,
            stdout,
            stderr,
        }
    };
    match timeout {
        None => Ok(work.await),
        Some(t) => {
            let r = tokio::time::timeout(t, work).await;
            match r {
                Ok(c) => Ok(c),
                Err(_) => {
                    reaper.kill_group(exit.pid);
                    // the call fails once the killed command is gone (reaped)
                    let _ = tokio::time::timeout(KILL_WAIT, exit.status()).await;
                    Err(CaptureError::Timeout(t.as_secs()))
                }
            }
        }
    }
}

/// How long a call that timed out waits for the command it killed to be
/// reaped (SIGKILL: at once, unless the host is stalled).
pub const KILL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Run a command to completion outside the daemon (containerd's `delete`
/// action), bounded: one that outlives `limit` is killed with its process
/// group and is an error.
pub fn run_bounded(
    cmd: &mut std::process::Command,
    limit: std::time::Duration,
) -> std::io::Result<std::process::Output> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(r) = r {
                let _ = r.take(1 << 20).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if std::time::Instant::now() >= deadline {
            let pg = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("timed out after {}s and was killed", limit.as_secs()),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// One line made printable (control characters and undecodable bytes
/// become `?`) with secret-looking words replaced: a known token format, or
/// the value of a `NAME=value` whose name or value looks secret.
fn redact_line(line: &str) -> String {
    let printable: String = line
        .chars()
        .map(|c| {
            if c.is_control() || c == char::REPLACEMENT_CHARACTER {
                '?'
            } else {
                c
            }
        })
        .collect();
    let mut out = String::with_capacity(printable.len());
    for (i, word) in printable.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let bare = word.trim_matches(|c: char| "'\"`,;()[]{}".contains(c));
        let secret = agentbox_policy::secret_value_kind(bare).is_some()
            || bare.split_once('=').is_some_and(|(k, v)| {
                !v.is_empty()
                    && (agentbox_policy::secret_name(k.trim_start_matches('-'))
                        || agentbox_policy::secret_value_kind(v).is_some())
            });
        if !secret {
            out.push_str(word);
        } else if let Some((k, _)) = bare.split_once('=') {
            out.push_str(&format!("{k}=[redacted]"));
        } else {
            out.push_str("[redacted]");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_keeps_last_json_messages_bounded() {
        let log = b"{\"msg\":\"starting\",\"level\":\"info\"}\n{\"msg\":\"FATAL ERROR: cannot run with network enabled in root network namespace\"}\n{\"msg\":\"FATAL ERROR: cannot run with network enabled in root network namespace\"}\n";
        let s = summarize(log);
        assert!(
            s.ends_with("cannot run with network enabled in root network namespace"),
            "{s}"
        );
        assert_eq!(s.matches("FATAL").count(), 1);
        let big = vec![b'x'; 10_000];
        assert!(summarize(&big).len() <= MAX_MESSAGE + 4);
        assert_eq!(summarize(b""), "no output");
    }

    #[test]
    fn bounded_runs_kill_what_hangs() {
        let o = run_bounded(
            std::process::Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            (o.status.code(), &o.stdout[..], &o.stderr[..]),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );
        let t = std::time::Instant::now();
        let e = run_bounded(
            std::process::Command::new("sh").args(["-c", "sleep 30 & sleep 31"]),
            std::time::Duration::from_millis(300),
        )
        .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "the pipes' readers did not hang"
        );
    }

    #[test]
    fn garbage_and_secrets_do_not_reach_the_message() {
        let tok = format!("ghp_{}", "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8");
        let mut out = vec![0u8, 0xff, 0x1b, b'[', b'2', b'J', b'\n'];
        out.extend(format!("error: GITHUB_TOKEN={tok} DB_PASSWORD=hunter2 and '{tok}'\n").bytes());
        let s = summarize(&out);
        assert!(!s.contains(&tok) && !s.contains("hunter2"), "{s}");
        assert!(s.contains("GITHUB_TOKEN=[redacted]"), "{s}");
        assert!(s.contains("DB_PASSWORD=[redacted]"), "{s}");
        assert!(!s.chars().any(char::is_control), "{s:?}");
        assert_eq!(summarize(b"plain failure: exit"), "plain failure: exit");
    }

    #[test]
    fn summary_never_carries_a_secret() {
        let tok = format!("ghp_{}", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8");
        let log = format!(
            "{{\"msg\":\"exec failed: curl -H 'Authorization: Bearer {tok}' https://u:pw1234567@h.example/\"}}\n{}\n",
            "x".repeat(10)
        );
        let s = summarize(log.as_bytes());
        assert!(
            !s.contains(&tok) && !s.contains("pw1234567"),
            "a secret is in the summary"
        );
        assert!(
            s.contains("exec failed: curl -H") && s.contains("[redacted]"),
            "{s}"
        );
        let s = summarize(format!("exec failed: {tok}").as_bytes());
        assert_eq!(s, "exec failed: [redacted]");
    }
}
