//! Reaping. The daemon is a child subreaper, so runsc's sandbox, gofer and
//! `runsc exec` processes, which runsc leaves behind, become its children
//! when their parent exits. Every child of the daemon is reaped here, on
//! SIGCHLD, and its status handed to whoever waits for that pid:
//!
//! - commands the daemon runs go through [`Reaper::spawn`], which registers
//!   the pid before anything can reap it (spawning and reaping take one
//!   lock), so a status is never lost or stolen;
//! - processes the daemon learns about from a pid file (the sandbox, the
//!   `runsc exec` watching an exec'd process) are awaited with
//!   [`Reaper::wait_exit`], which also finds a status reaped just before it
//!   asked; a process that is not our child is watched through a pidfd;
//! - every other child (a gofer) is reaped and remembered briefly, in a
//!   bounded table whose oldest entries go first.
//!
//! Nothing polls: a waiting process costs one map entry, not a scan of
//! `/proc`. The SIGCHLD loop starts with the first child. Only the daemon
//! reaps every child ([`Reaper::daemon`]); in-process tests share their
//! process with other tests' children, so [`Reaper::new`] reaps only the
//! pids it registered.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How many statuses of children nobody asked for are kept (oldest dropped first).
const RECENT: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The daemon: every child is ours to reap (`waitpid(-1)`).
    All,
    /// In-process tests: only the pids registered here.
    Scoped,
}

#[derive(Debug)]
pub struct Reaper {
    mode: Mode,
    inner: Arc<Mutex<Inner>>,
    /// Whether the SIGCHLD loop runs.
    looping: AtomicBool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Children someone waits for, and where their status goes (a pid may
    /// have several waiters).
    waiters: HashMap<i32, Vec<oneshot::Sender<i32>>>,
    /// Statuses of children nobody registered yet, newest last.
    recent: VecDeque<(i32, i32, Instant)>,
}

impl Default for Reaper {
    fn default() -> Self {
        Reaper::new()
    }
}

/// The exit status of one spawned child, delivered by the reaper.
#[derive(Debug)]
pub struct ExitWatch {
    pub pid: i32,
    rx: oneshot::Receiver<i32>,
}

impl ExitWatch {
    /// The child's status (`128 + signal` for a signal death).
    pub async fn status(&mut self) -> i32 {
        (&mut self.rx).await.unwrap_or(UNKNOWN)
    }
}

/// Status reported when the real one cannot be known: as if SIGKILLed.
pub const UNKNOWN: i32 = 128 + libc::SIGKILL;

fn code(ws: WaitStatus) -> Option<(i32, i32)> {
    match ws {
        WaitStatus::Exited(pid, c) => Some((pid.as_raw(), c)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reaper {
    /// The daemon's reaper: reaps every child of the process (the daemon
    /// is a subreaper: runsc's orphans are its children).
    pub fn daemon() -> Reaper {
        Reaper::with_mode(Mode::All)
    }

    /// A reaper that only reaps the pids registered with it (in-process
    /// tests, whose process has other children).
    pub fn new() -> Reaper {
        Reaper::with_mode(Mode::Scoped)
    }

    fn with_mode(mode: Mode) -> Reaper {
        Reaper {
            mode,
            inner: Arc::default(),
            looping: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Start the SIGCHLD loop, once (inside a tokio runtime).
    fn ensure_loop(&self) {
        if self.looping.swap(true, Ordering::SeqCst) {
            return;
        }
        let (inner, mode) = (self.inner.clone(), self.mode);
        tokio::spawn(async move {
            let mut sig = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child())
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGCHLD; children will not be reaped");
                    return;
                }
            };
            loop {
                // first round: a child that exited before the handler was installed
                for (pid, status) in reap(&inner, mode) {
                    tracing::debug!(pid, status, "reaped");
                }
                if sig.recv().await.is_none() {
                    return;
                }
            }
        });
    }

    /// Spawn a command; its status arrives through the returned watch. The
    /// pid is registered before the reaper can see the child exit.
    pub fn spawn(
        &self,
        cmd: &mut std::process::Command,
    ) -> std::io::Result<(std::process::Child, ExitWatch)> {
        self.ensure_loop();
        let mut g = self.lock();
        let child = cmd.spawn()?;
        let pid = child.id() as i32;
        let (tx, rx) = oneshot::channel();
        g.waiters.entry(pid).or_default().push(tx);
        Ok((child, ExitWatch { pid, rx }))
    }

    /// SIGKILL the process group led by `pid`, a child spawned here whose
    /// status was not collected yet (so neither pid nor group can have been
    /// reused). False if it was already reaped.
    pub fn kill_group(&self, pid: i32) -> bool {
        let g = self.lock();
        if !g.waiters.contains_key(&pid) || pid <= 1 {
            return false;
        }
        let _ = nix::sys::signal::killpg(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        true
    }

    /// SIGKILL `pid` if it is a child of this process that was not reaped yet
    /// (a zombie or running: its pid cannot have been reused).
    pub fn kill_child(&self, pid: i32) -> bool {
        let _g = self.lock();
        if pid <= 1 || parent_of(pid) != Some(std::process::id() as i32) {
            return false;
        }
        nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).is_ok()
    }

    /// Wait for `pid`, a process learned from a pid file written after
    /// `since`, to exit; its status, or `UNKNOWN` when it is not our child
    /// (it is then watched through a pidfd) or was gone before we asked.
    pub async fn wait_exit(&self, pid: i32, since: Instant) -> i32 {
        if pid <= 0 {
            return UNKNOWN;
        }
        self.ensure_loop();
        let rx = {
            let mut g = self.lock();
            if let Some(i) = g.recent.iter().position(|(p, _, _)| *p == pid) {
                let (_, status, at) = g.recent.remove(i).expect("index from position");
                if at >= since {
                    return status;
                }
            }
            if parent_of(pid) == Some(std::process::id() as i32) {
                let (tx, rx) = oneshot::channel();
                g.waiters.entry(pid).or_default().push(tx);
                Some(rx)
            } else {
                None
            }
        };
        match rx {
            Some(rx) => {
                // it may have exited before it was registered
                reap(&self.inner, self.mode);
                rx.await.unwrap_or(UNKNOWN)
            }
            None => {
                wait_pidfd(pid).await;
                UNKNOWN
            }
        }
    }

    /// Reap what exited and hand each status to its waiter; the statuses.
    pub fn reap(&self) -> Vec<(i32, i32)> {
        reap(&self.inner, self.mode)
    }

    /// How many pids are waited for and how many unclaimed statuses are kept.
    pub fn sizes(&self) -> (usize, usize) {
        let g = self.lock();
        (g.waiters.len(), g.recent.len())
    }

    /// Reap on every SIGCHLD, forever (the loop also starts by itself with
    /// the first child).
    pub async fn run(self: Arc<Self>) {
        self.ensure_loop();
        std::future::pending::<()>().await
    }
}

fn reap(inner: &Mutex<Inner>, mode: Mode) -> Vec<(i32, i32)> {
    let mut g = lock(inner);
    let mut reaped = Vec::new();
    match mode {
        Mode::All => loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => reaped.extend(code(ws)),
            }
        },
        Mode::Scoped => {
            let pids: Vec<i32> = g.waiters.keys().copied().collect();
            for pid in pids {
                match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    Ok(ws) => reaped.extend(code(ws)),
                    // not our child (any more): nothing will ever report it
                    Err(_) => reaped.push((pid, UNKNOWN)),
                }
            }
        }
    }
    let now = Instant::now();
    for &(pid, status) in &reaped {
        match g.waiters.remove(&pid) {
            Some(txs) => {
                for tx in txs {
                    let _ = tx.send(status);
                }
            }
            None => {
                if g.recent.len() >= RECENT {
                    g.recent.pop_front();
                }
                g.recent.push_back((pid, status, now));
            }
        }
    }
    reaped
}

/// The parent of `pid` from `/proc/PID/stat`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, ppid)| ppid)
}

/// Wait until `pid` (not our child) ends, through a pidfd; returns at once
/// if it is already gone.
async fn wait_pidfd(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return;
    }
    // SAFETY: the descriptor was just returned to us and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the pidfd is owned by the AsyncFd and lives as long as it.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    };
    let Ok(afd) = registered else {
        // cannot watch it: poll slowly rather than never learn of the end
        while parent_of(pid).is_some() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        return;
    };
    let _ = afd.readable().await;
    debug_assert!(afd.get_ref().as_raw_fd() >= 0);
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
    async fn spawned_children_get_their_status() {
        let r = Arc::new(Reaper::new());
        let (_c, mut w) = r
            .spawn(std::process::Command::new("sh").args(["-c", "exit 7"]))
            .unwrap();
        let s = tokio::time::timeout(Duration::from_secs(10), w.status())
            .await
            .expect("status delivered");
        assert_eq!(s, 7);
        let (_c, mut w) = r
            .spawn(std::process::Command::new("sleep").arg("30"))
            .unwrap();
        assert!(r.kill_group(w.pid));
        assert_eq!(w.status().await, 128 + libc::SIGKILL);
        assert_eq!(r.sizes(), (0, 0), "nothing left behind");
        assert!(!r.kill_group(w.pid), "a reaped pid is never signalled");
    }

    #[tokio::test]
    async fn every_waiter_of_a_pid_gets_its_status() {
        // a sandbox's pid is waited for by its container and may be by others
        let r = Arc::new(Reaper::new());
        // reaped by the reaper, not by std
        #[allow(clippy::zombie_processes)]
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let since = Instant::now();
        let (a, b) = (r.clone(), r.clone());
        let wa = tokio::spawn(async move { a.wait_exit(pid, since).await });
        let wb = tokio::spawn(async move { b.wait_exit(pid, since).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !wa.is_finished() && !wb.is_finished(),
            "no status before the exit"
        );
        nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
        let (sa, sb) = tokio::join!(wa, wb);
        assert_eq!((sa.unwrap(), sb.unwrap()), (128 + 15, 128 + 15));
    }

    #[tokio::test]
    async fn a_pid_that_is_not_our_child_is_watched_through_a_pidfd() {
        let r = Reaper::new();
        // pid 1 is nobody's child here; a pid that does not exist ends at once
        let s = tokio::time::timeout(
            Duration::from_secs(5),
            r.wait_exit(i32::MAX - 1, Instant::now()),
        )
        .await
        .expect("a missing pid does not hang");
        assert_eq!(s, UNKNOWN);
    }
}
