//! The backends, one folder each behind one seam:
//! - `runsc`: agentbox is the gVisor shim and drives runsc's command line;
//! - `delegate`: agentbox forwards every Task call to another shim v2 (Kata's,
//!   gVisor's own, runc-v2) after the policy.
//!
//! The seam: a backend is the containerd Task service, built over the
//! [`Pod`] it serves; it admits containers and execs through the pod
//! (`Pod::admit`, `Admitted::admit_exec`) and answers the pod through
//! [`Control`]. After a crash, containerd's `delete` reaches the backend
//! through [`BackendState::cleanup`].

pub mod delegate;
pub mod runsc;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::Flags;
use containerd_shim_protos::shim_async::Task;
use serde::{Deserialize, Serialize};

use crate::config::{Backend, Config};
use crate::pod::Pod;

/// What the pod daemon asks of its backend.
#[async_trait]
pub trait Control: Send + Sync {
    /// Whether the container's init process still runs.
    async fn running(&self, id: &str) -> bool;
    /// Signal the container's init (every process of it with `all`).
    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), String>;
    /// End a container that signals did not end: the runtime deletes it by
    /// force (`runsc delete --force`; a delegate's own `delete`), and its
    /// exit is reported.
    async fn force_delete(&self, id: &str) -> Result<(), String>;

    /// Whether the container's init has exited (not merely never started).
    async fn exited(&self, id: &str) -> bool {
        !self.running(id).await
    }
}

/// A backend: the Task service and the pod's control of it.
pub trait Service: Task + Control + Send + Sync {}
impl<T: Task + Control + Send + Sync> Service for T {}

/// Build the backend the config names and attach it to the pod.
pub async fn build(
    pod: Arc<Pod>,
    cfg: &Config,
    flags: &Flags,
) -> anyhow::Result<Arc<dyn Task + Send + Sync>> {
    match cfg.runtime.backend {
        Backend::Runsc => Ok(attach(&pod, Arc::new(runsc::RunscTask::new(pod.clone())))),
        Backend::Shim => {
            // the daemon runs in the first container's bundle, as `start` did
            let bundle = std::env::current_dir()?;
            let t = delegate::ForwardTask::new(pod.clone(), cfg, flags, &bundle).await?;
            Ok(attach(&pod, Arc::new(t)))
        }
    }
}

/// Attach a backend to its pod; the Task service to register.
pub fn attach<T: Service + 'static>(pod: &Pod, t: Arc<T>) -> Arc<dyn Task + Send + Sync> {
    let control: Arc<dyn Control> = t.clone();
    pod.attach(Arc::downgrade(&control));
    t
}

/// How each backend cleans up after its daemon died (in the bundle's state file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BackendState {
    Delegate(delegate::CleanupState),
    Runsc(runsc::CleanupState),
}

impl BackendState {
    /// containerd's `delete` after the daemon is gone: clean up the
    /// container; what to print on stdout (a `DeleteResponse`), if the
    /// backend has an answer of its own.
    pub fn cleanup(&self, flags: &Flags, bundle: &Path) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            BackendState::Delegate(d) => d.cleanup(flags, bundle).map(Some),
            BackendState::Runsc(r) => {
                r.cleanup(flags, bundle).map_err(|e| anyhow::anyhow!(e))?;
                Ok(None)
            }
        }
    }
}
