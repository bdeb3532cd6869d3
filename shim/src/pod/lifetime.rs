//! The lifetime limit: an app container that runs longer than
//! `[lifetime] max_seconds` gets SIGTERM, then SIGKILL after the grace time.
//! A pod's sandbox (pause) container lives as long as its pod and has none.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Admitted, Pod};

impl Pod {
    /// Start the container's lifetime timer, if its config sets a limit. The
    /// backend keeps the handle and aborts it when the container is deleted.
    pub fn spawn_lifetime(&self, c: Arc<Admitted>) -> Option<tokio::task::JoinHandle<()>> {
        let max = c.cfg.lifetime.max_seconds;
        if max == 0 || c.is_cri_sandbox() {
            return None;
        }
        let grace = c.cfg.lifetime.grace();
        let control = self.control.get().cloned()?;
        Some(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(max)).await;
            for (signal, action) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGKILL, "SIGKILL")] {
                let Some(backend) = control.upgrade() else {
                    return;
                };
                if !backend.running(&c.id).await {
                    return;
                }
                let mut fields = json!({"max_seconds": max, "action": action});
                if signal == libc::SIGTERM {
                    fields["grace_seconds"] = json!(grace);
                }
                let _ = c.audit.record("lifetime", &c.subject, fields);
                tracing::warn!(container = %c.id, max, action, "lifetime exceeded; stopping the container");
                if let Err(e) = backend.kill(&c.id, signal as u32, true).await {
                    tracing::warn!(container = %c.id, error = %e, "lifetime kill failed");
                }
                drop(backend);
                if signal == libc::SIGTERM {
                    // bounded by the grace time; poll so a fast exit ends early
                    let until = tokio::time::Instant::now() + Duration::from_secs(grace);
                    while tokio::time::Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        match control.upgrade() {
                            Some(b) if b.running(&c.id).await => {}
                            _ => return,
                        }
                    }
                }
            }
        }))
    }
}
