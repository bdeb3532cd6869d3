//! The lifetime limit, per pod: `[lifetime] max_seconds` counts from the
//! pod's first app container (its Create; the sandbox container does not
//! start the clock: image pulls after it are not the agent's time), so a container the kubelet restarts (or a new one
//! in the same pod) inherits what is left of it rather than starting over.
//! When it runs out, each app container gets SIGTERM, SIGKILL after the
//! grace time, and if even that does not end it, the backend deletes it by
//! force (`runsc delete --force`; a delegate's own `delete`). A container
//! started after the pod's lifetime ended is refused. A pod's sandbox
//! (pause) container lives as long as its pod and has no timer.
//!
//! A container's timer is a [`LifetimeGuard`]: the backend drops it when the
//! container exits or is deleted, which cancels the timer, so a later
//! container reusing the id is never hit by an old deadline.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::{Admitted, Pod};
use crate::backend::Control;

/// How long a SIGKILLed container may take to be reported gone before it is
/// deleted by force.
pub const KILL_WAIT: Duration = Duration::from_secs(5);

/// A running lifetime timer; cancelled when dropped.
#[derive(Debug)]
pub struct LifetimeGuard(tokio::task::JoinHandle<()>);

impl Drop for LifetimeGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Pod {
    /// When the pod's lifetime ends under `c`'s config, if it has one.
    pub fn deadline(&self, c: &Admitted) -> Option<Instant> {
        let max = c.cfg.lifetime.max_seconds;
        if max == 0 || c.is_cri_sandbox() {
            return None;
        }
        let start = *self.started.get_or_init(Instant::now);
        Some(start + Duration::from_secs(max))
    }

    /// A container starts now: its lifetime timer (until the pod's
    /// deadline), or an error if the pod's lifetime is already over (the
    /// container must not start).
    pub fn start_lifetime(&self, c: Arc<Admitted>) -> Result<Option<LifetimeGuard>, String> {
        let Some(deadline) = self.deadline(&c) else {
            return Ok(None);
        };
        let max = c.cfg.lifetime.max_seconds;
        if Instant::now() >= deadline {
            let _ = c.audit.record(
                "lifetime",
                &c.subject,
                json!({"max_seconds": max, "action": "refused"}),
            );
            return Err(format!(
                "agentbox refused to start container {}: its pod's lifetime of {max}s is over",
                c.id
            ));
        }
        let Some(control) = self.control.get().cloned() else {
            return Ok(None);
        };
        Ok(Some(LifetimeGuard(tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            let grace = Duration::from_secs(c.cfg.lifetime.grace());
            let running = |b: &Arc<dyn Control>| {
                let b = b.clone();
                let id = c.id.clone();
                async move { b.running(&id).await }
            };
            for (signal, action, wait) in [
                (libc::SIGTERM, "SIGTERM", grace),
                (libc::SIGKILL, "SIGKILL", KILL_WAIT),
            ] {
                let Some(backend) = control.upgrade() else {
                    return;
                };
                if !running(&backend).await {
                    return;
                }
                let mut fields = json!({"max_seconds": max, "action": action});
                if signal == libc::SIGTERM {
                    fields["grace_seconds"] = json!(grace.as_secs());
                }
                let _ = c.audit.record("lifetime", &c.subject, fields);
                tracing::warn!(container = %c.id, max, action, "pod lifetime exceeded; stopping the container");
                if let Err(e) = backend.kill(&c.id, signal as u32, true).await {
                    tracing::warn!(container = %c.id, error = %e, "lifetime kill failed");
                }
                drop(backend);
                // bounded; poll so a fast exit ends early
                let until = Instant::now() + wait;
                while Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match control.upgrade() {
                        Some(b) if running(&b).await => {}
                        _ => return,
                    }
                }
            }
            // SIGKILL did not end it: the sandbox is hung or runsc cannot reach it
            let Some(backend) = control.upgrade() else {
                return;
            };
            if !running(&backend).await {
                return;
            }
            // recorded first: deleting the container cancels this timer
            let _ = c.audit.record(
                "lifetime",
                &c.subject,
                json!({"max_seconds": max, "action": "force_delete"}),
            );
            tracing::error!(container = %c.id, "SIGKILL did not end the container; deleting it by force");
            if let Err(e) = backend.force_delete(&c.id).await {
                tracing::error!(container = %c.id, error = %e, "lifetime force delete failed");
            }
        }))))
    }
}
