//! Exits: watching a process until it ends, then recording, draining its
//! output and publishing `TaskOOM` / `TaskExit`.

use std::sync::Arc;

use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use containerd_shim_protos::protobuf::MessageField;
use serde_json::json;

use super::container::Container;
use super::process::{Process, UNKNOWN_EXIT};
use super::task::Core;
use super::DRAIN_TIMEOUT;
use crate::events::{self, EventSink};

impl Core {
    /// Watch a process until it exits: `runsc wait` or the reaper, then `finish`.
    pub(super) fn spawn_waiter(&self, c: Arc<Container>, p: Arc<Process>) {
        let events = self.pod.events.clone();
        let reaper = self.pod.reaper.clone();
        tokio::spawn(async move {
            let pid = p.pid() as i32;
            // Who knows the exit status: the root container's init is the
            // sandbox process and an exec'd process is watched by the
            // `runsc exec` that --detach leaves behind; both are our children
            // (we are a subreaper) once their parent exited. A subcontainer's
            // init is only known to the sandbox: ask `runsc wait`.
            let from_reaper = pid > 0 && (!p.exec_id.is_empty() || c.is_sandbox_root());
            let status = if from_reaper {
                reaper.wait_exit(pid, p.since).await as u32
            } else {
                match c.runsc.wait(&c.cli.wait(&c.id, None)).await {
                    Ok(s) => s as u32,
                    Err(e) => {
                        tracing::warn!(container = %c.id, error = %e, "runsc wait failed; reporting the process as killed");
                        UNKNOWN_EXIT
                    }
                }
            };
            finish(&c, &p, status, events.as_ref()).await;
        });
    }
}

/// A process ended with `status`: record it once, audit, publish. The end
/// of a container's init cancels its lifetime timer (last: the timer itself
/// may be what is finishing the container).
pub(super) async fn finish(c: &Container, p: &Process, status: u32, events: &dyn EventSink) {
    if let Some(io) = p.take_io() {
        io.drain(DRAIN_TIMEOUT).await;
        p.set_io(io);
    }
    if !p.set_exited(status) {
        return;
    }
    report(c, p, status, events).await;
    if p.exec_id.is_empty() {
        drop(c.lifetime.lock().unwrap().take());
    }
}

async fn report(c: &Container, p: &Process, status: u32, events: &dyn EventSink) {
    tracing::info!(container = %c.id, exec = %p.exec_id, status, "process exited");
    let a = &c.admitted;
    // an OOM kill of the sandbox: TaskOOM first, so CRI says OOMKilled
    let oom = p.exec_id.is_empty()
        && c.oom_baseline
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(super::oom::killed_since);
    if oom {
        tracing::warn!(container = %c.id, "the sandbox was killed for running out of memory");
        let _ = a
            .audit
            .record("oom", &a.subject, json!({"exit_status": status}));
        events::send(
            events,
            TaskOOM {
                container_id: c.id.clone(),
                ..Default::default()
            },
        )
        .await;
    }
    let fields = if p.exec_id.is_empty() {
        json!({"exit_status": status})
    } else {
        json!({"exec_id": p.exec_id, "exit_status": status})
    };
    if let Err(e) = a.audit.record("exit", &a.subject, fields) {
        tracing::error!(error = %e, "cannot audit exit");
    }
    let exit = p.exit().expect("just set");
    events::send(
        events,
        TaskExit {
            container_id: c.id.clone(),
            id: if p.exec_id.is_empty() {
                c.id.clone()
            } else {
                p.exec_id.clone()
            },
            pid: p.pid(),
            exit_status: status,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        },
    )
    .await;
}
