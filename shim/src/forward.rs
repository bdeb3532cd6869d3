//! The shim backend: agentbox in front of another shim v2 (Kata, gVisor's own
//! shim, runc-v2). Filled in by the delegate-backend issue.

use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::Flags;
use containerd_shim_protos::shim_async::Task;

use crate::config::Config;
use crate::task::Daemon;

pub struct ForwardTask {
    _daemon: Arc<Daemon>,
}

impl ForwardTask {
    pub async fn new(_daemon: Arc<Daemon>, _cfg: &Config, _flags: &Flags) -> anyhow::Result<ForwardTask> {
        anyhow::bail!("runtime.backend = \"shim\" is not available in this build")
    }
}

#[async_trait]
impl Task for ForwardTask {}
