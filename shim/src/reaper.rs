//! Reaping. The daemon is a child subreaper, so runsc's sandbox and gofer
//! processes, which `runsc create` leaves behind, become its children when
//! their parent exits. tokio reaps the commands it spawned; this reaper reaps
//! every other child (the orphans) and remembers their exit statuses.
//!
//! To never steal a status tokio is waiting for, spawns and reaping take the
//! same lock and the reaper only touches zombies whose pid it does not track.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

#[derive(Debug, Default)]
pub struct Reaper {
    inner: Mutex<Inner>,
    reaped: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    tracked: HashSet<i32>,
    /// Exit statuses of reaped orphans (`128 + signal` for a signal death).
    exits: HashMap<i32, i32>,
}

impl Reaper {
    pub fn new() -> Reaper {
        Reaper::default()
    }

    /// Spawn a command whose status tokio will collect.
    pub fn spawn(
        &self,
        cmd: &mut tokio::process::Command,
    ) -> std::io::Result<tokio::process::Child> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd.spawn()?;
        if let Some(pid) = child.id() {
            g.tracked.insert(pid as i32);
        }
        Ok(child)
    }

    /// Forget a tokio child once its status was collected.
    pub fn untrack(&self, pid: Option<u32>) {
        if let Some(pid) = pid {
            self.inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .tracked
                .remove(&(pid as i32));
        }
    }

    /// Exit status of an orphan the reaper collected, if any.
    pub fn exit_status(&self, pid: i32) -> Option<i32> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .exits
            .get(&pid)
            .copied()
    }

    /// Wait for the reaper to collect `pid`'s exit status (bounded by `limit`
    /// if given). The pid must be a child of this process that tokio does not own.
    pub async fn wait_exit(&self, pid: i32, limit: Option<std::time::Duration>) -> Option<i32> {
        let deadline = limit.map(|l| tokio::time::Instant::now() + l);
        loop {
            let notified = self.reaped.notified();
            self.reap_orphans();
            if let Some(s) = self.take_exit(pid) {
                return Some(s);
            }
            let tick = std::time::Duration::from_millis(250);
            match deadline {
                Some(d) if tokio::time::Instant::now() >= d => return None,
                Some(d) => {
                    let _ = tokio::time::timeout_at(
                        d.min(tokio::time::Instant::now() + tick),
                        notified,
                    )
                    .await;
                }
                None => {
                    let _ = tokio::time::timeout(tick, notified).await;
                }
            }
        }
    }

    fn take_exit(&self, pid: i32) -> Option<i32> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .exits
            .remove(&pid)
    }

    /// Reap every zombie child that tokio does not own. Returns the reaped pids.
    pub fn reap_orphans(&self) -> Vec<(i32, i32)> {
        let me = std::process::id() as i32;
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut reaped = Vec::new();
        for (pid, ppid, state) in children_of(me) {
            debug_assert_eq!(ppid, me);
            if state != 'Z' || g.tracked.contains(&pid) {
                continue;
            }
            match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, code)) => reaped.push((pid, code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => reaped.push((pid, 128 + sig as i32)),
                _ => {}
            }
        }
        for &(pid, code) in &reaped {
            g.exits.insert(pid, code);
        }
        if !reaped.is_empty() {
            self.reaped.notify_waiters();
        }
        // keep the table bounded
        if g.exits.len() > 4096 {
            g.exits.clear();
        }
        reaped
    }

    /// Run forever: reap on every SIGCHLD (and every few seconds, in case a
    /// signal was coalesced while tokio handled it).
    pub async fn run(self: std::sync::Arc<Self>) {
        let mut sig = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGCHLD; orphans will not be reaped");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = sig.recv() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
            for (pid, status) in self.reap_orphans() {
                tracing::debug!(pid, status, "reaped orphan");
            }
        }
    }
}

/// (pid, ppid, state) of the children of `parent`, from /proc.
fn children_of(parent: i32) -> Vec<(i32, i32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, ppid)) = parse_stat(&stat) {
            if ppid == parent {
                out.push((pid, ppid, state));
            }
        }
    }
    out
}

/// Parse state and ppid from /proc/PID/stat (the command name may hold spaces
/// and parentheses, so split after the last ')').
pub fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        assert_eq!(parse_stat("12 (runsc-sandbox) S 1 12 12 0"), Some(('S', 1)));
        assert_eq!(parse_stat("12 (a) b) (c) Z 77 1"), Some(('Z', 77)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[tokio::test]
    async fn tracked_children_are_left_to_tokio() {
        let r = Reaper::new();
        let mut child = r
            .spawn(tokio::process::Command::new("true").kill_on_drop(true))
            .unwrap();
        let pid = child.id();
        // give it time to exit and become a zombie
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let reaped = r.reap_orphans();
        assert!(reaped.iter().all(|(p, _)| Some(*p as u32) != pid));
        let st = child.wait().await.unwrap();
        assert!(st.success());
        r.untrack(pid);
    }
}
