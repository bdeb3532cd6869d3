//! Resource updates of the runsc backend. gVisor runs a pod in one sandbox
//! whose host cgroup bounds every container in it: an update of the
//! sandbox's own container (a `ctr` container, or a pod's sandbox) is
//! written to that cgroup, as runsc writes a spec's limits at create; what
//! the cgroup cannot take, and any update of a single container inside the
//! sandbox, is refused with a status that says so. Never a silent success.

use containerd_shim_protos::api::UpdateTaskRequest;
use containerd_shim_protos::ttrpc::{self, Code};
use serde_json::json;

use super::container::Container;
use super::status;
use super::task::Core;
use crate::resources;

impl Core {
    pub(super) async fn update_resources(
        &self,
        c: &Container,
        req: &UpdateTaskRequest,
    ) -> ttrpc::Result<()> {
        let a = &c.admitted;
        let refuse = |code: Code, msg: String| {
            let _ = a.audit.record(
                "update",
                &a.subject,
                json!({"applied": false, "reason": msg}),
            );
            tracing::warn!(container = %c.id, reason = %msg, "update refused");
            Err(status(code, msg))
        };
        let Some(any) = req.resources.as_ref() else {
            if !req.annotations.is_empty() {
                return refuse(
                    Code::UNIMPLEMENTED,
                    "agentbox cannot update a container's annotations".into(),
                );
            }
            return Ok(());
        };
        let res = match resources::parse(any) {
            Ok(r) => r,
            Err(e) => return refuse(Code::INVALID_ARGUMENT, e),
        };
        if !c.is_sandbox_root() {
            return refuse(
                Code::UNIMPLEMENTED,
                format!(
                    "agentbox cannot change the resources of container {}: gVisor runs every container of a pod in one sandbox, bounded by the pod's cgroup",
                    c.id
                ),
            );
        }
        let (limits, refused) = resources::sandbox_limits(&res);
        if !refused.is_empty() {
            return refuse(
                Code::UNIMPLEMENTED,
                format!(
                    "agentbox cannot apply {} to the gVisor sandbox of {}; nothing was changed",
                    refused.join(", "),
                    c.id
                ),
            );
        }
        if limits.is_empty() {
            return Ok(());
        }
        let pid = c.init.pid();
        let applied = crate::cgroup::apply(pid, &limits);
        if let Err(e) = applied {
            return refuse(
                Code::FAILED_PRECONDITION,
                format!("agentbox cannot update the sandbox of {}: {e}", c.id),
            );
        }
        let _ = a.audit.record(
            "update",
            &a.subject,
            json!({"applied": true, "resources": limits.to_json()}),
        );
        tracing::info!(container = %c.id, "resources updated");
        Ok(())
    }
}
