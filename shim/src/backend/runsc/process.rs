//! A process the shim tracks: a container's init or an exec'd process.

use std::sync::Mutex;

use containerd_shim_protos::api::Status;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use tokio::sync::watch;

use super::io::{ProcessIo, StdioPaths};

/// Exit status reported when agentbox cannot learn the real one (the sandbox
/// went away under the process): as if killed by SIGKILL.
pub const UNKNOWN_EXIT: u32 = 137;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Created,
    Running,
    Paused,
    Stopped,
}

#[derive(Debug, Clone)]
pub struct Exit {
    pub status: u32,
    pub at: Timestamp,
}

#[derive(Debug)]
pub struct Process {
    pub exec_id: String,
    pub stdio: StdioPaths,
    inner: Mutex<Inner>,
    exited_tx: watch::Sender<Option<Exit>>,
    /// The process spec (exec only), already rewritten by the policy.
    pub spec: Option<serde_json::Value>,
    /// Made before runsc started it: a status reaped earlier is not its own.
    pub since: tokio::time::Instant,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    pid: u32,
    /// The pid inside the sandbox (exec'd processes), for `runsc kill/wait --pid`.
    internal_pid: Option<u32>,
    io: Option<ProcessIo>,
}

pub use crate::events::now;

impl Process {
    pub fn new(exec_id: &str, stdio: StdioPaths, spec: Option<serde_json::Value>) -> Process {
        let (exited_tx, _) = watch::channel(None);
        Process {
            exec_id: exec_id.to_string(),
            stdio,
            inner: Mutex::new(Inner {
                phase: Phase::Created,
                pid: 0,
                internal_pid: None,
                io: None,
            }),
            exited_tx,
            spec,
            since: tokio::time::Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pid(&self) -> u32 {
        self.lock().pid
    }

    pub fn set_pid(&self, pid: u32) {
        self.lock().pid = pid;
    }

    pub fn internal_pid(&self) -> Option<u32> {
        self.lock().internal_pid
    }

    pub fn set_internal_pid(&self, pid: u32) {
        self.lock().internal_pid = Some(pid);
    }

    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    pub fn set_phase(&self, p: Phase) {
        let mut g = self.lock();
        if g.phase != Phase::Stopped {
            g.phase = p;
        }
    }

    pub fn set_io(&self, io: ProcessIo) {
        self.lock().io = Some(io);
    }

    pub fn with_io<T>(&self, f: impl FnOnce(&ProcessIo) -> T) -> Option<T> {
        self.lock().io.as_ref().map(f)
    }

    /// Take the IO out (to drain it without holding the lock).
    pub fn take_io(&self) -> Option<ProcessIo> {
        self.lock().io.take()
    }

    pub fn exit(&self) -> Option<Exit> {
        self.exited_tx.borrow().clone()
    }

    /// Record the exit once; later calls are ignored. Returns true the first time.
    pub fn set_exited(&self, status: u32) -> bool {
        {
            let mut g = self.lock();
            if g.phase == Phase::Stopped {
                return false;
            }
            g.phase = Phase::Stopped;
        }
        self.exited_tx
            .send_replace(Some(Exit { status, at: now() }));
        true
    }

    /// Wait until the process exited.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exited_tx.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                return Exit {
                    status: UNKNOWN_EXIT,
                    at: now(),
                };
            }
        }
    }

    pub fn status(&self) -> Status {
        match self.phase() {
            Phase::Created => Status::CREATED,
            Phase::Running => Status::RUNNING,
            Phase::Paused => Status::PAUSED,
            Phase::Stopped => Status::STOPPED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_is_recorded_once_and_wakes_waiters() {
        let p = std::sync::Arc::new(Process::new("", StdioPaths::default(), None));
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.wait().await.status });
        p.set_phase(Phase::Running);
        assert_eq!(p.status(), Status::RUNNING);
        assert!(p.set_exited(3));
        assert!(!p.set_exited(9));
        assert_eq!(waiter.await.unwrap(), 3);
        assert_eq!(p.exit().unwrap().status, 3);
        p.set_phase(Phase::Running);
        assert_eq!(
            p.status(),
            Status::STOPPED,
            "a stopped process stays stopped"
        );
    }
}
