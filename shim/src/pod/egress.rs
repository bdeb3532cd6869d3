//! The pod daemon's hooks into the pod's egress control: install it with
//! the sandbox, switch it with the first agent container, point each app
//! container's `resolv.conf` at the resolver, remove it with the sandbox.

use std::path::Path;
use std::sync::Arc;

use agentbox_netpolicy::ANNOTATION;
use serde_json::{json, Value};

use super::network::{self, InstallRequest, NetPhase, PodNetwork};
use super::phase::Kind;
use super::{Admitted, Pod};

/// The network namespace path of a spec (CRI sets it for the sandbox and
/// every container of the pod).
pub fn netns_path(spec: &Value) -> Option<String> {
    spec.pointer("/linux/namespaces")?
        .as_array()?
        .iter()
        .find(|n| n.get("type").and_then(Value::as_str) == Some("network"))?
        .get("path")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
}

impl Pod {
    fn network(&self) -> Option<Arc<PodNetwork>> {
        self.network
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The network part of admitting a container; fail closed.
    pub(super) fn egress_on_admit(
        &self,
        a: &mut Admitted,
        bundle: &Path,
        kind: Kind,
        first_agent: bool,
    ) -> Result<(), String> {
        let Some(netcfg) = a.cfg.network.clone() else {
            return Ok(());
        };
        let mut slot = self.network.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            let Some(path) = netns_path(&a.enforced.spec) else {
                // no namespace to join: the runtime makes an empty one (loopback only)
                let _ = a.audit.record(
                    "network",
                    &a.subject,
                    json!({"enforced": "isolated", "why": "the container has no pod network namespace: it gets an empty one, without interfaces"}),
                );
                return Ok(());
            };
            let ann = a.annotations.get(ANNOTATION).and_then(Value::as_str);
            let eff = netcfg
                .with_annotation(ann)
                .map_err(|e| format!("agentbox refused the pod's network annotation: {e}"))?;
            let phase = match kind {
                Kind::Sandbox | Kind::Setup => NetPhase::Setup,
                Kind::Agent => NetPhase::Agent,
            };
            let net = network::install::install(InstallRequest {
                owner: a.id.clone(),
                netns: path.into(),
                cfg: eff,
                phase,
                audit: a.audit.clone(),
                subject: a.subject.clone(),
                bundle: bundle.to_path_buf(),
            })?;
            *slot = Some(net);
        }
        let net = slot.clone().expect("installed above");
        drop(slot);
        if kind == Kind::Sandbox {
            return Ok(());
        }
        if first_agent {
            net.switch_to_agent()?;
        }
        // names resolve through agentbox's resolver, whatever the mode
        let servers = network::resolv_conf::rewrite(&mut a.enforced.spec, bundle)?;
        crate::enforce::write_atomic(&bundle.join("config.json"), &a.enforced.spec)
            .map_err(|e| format!("agentbox cannot write the container spec: {e}"))?;
        net.learn_upstream(servers);
        net.app_added(&a.id, a.subject.container.as_deref().unwrap_or(&a.id));
        Ok(())
    }

    /// Container `id` started. For the sandbox: it has taken the pod's
    /// interfaces now (runsc configures its network at start), so the
    /// resolver's side of the DNS link can come up without the sandbox
    /// taking it too.
    pub fn container_started(&self, id: &str) {
        if let Some(net) = self.network().filter(|n| n.owner == id) {
            if let Err(e) = net.sandbox_started() {
                // DNS fails closed: the pod simply has no resolver
                tracing::error!(error = %e, "agentbox's resolver link did not come up");
            }
        }
    }

    /// Container `id` is gone (deleted, or its Create failed).
    pub fn container_deleted(&self, id: &str) {
        self.phases.on_delete(id);
        let mut slot = self.network.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(net) if net.owner == id => {
                let net = slot.take().expect("checked");
                drop(slot);
                net.teardown("the pod's sandbox was deleted");
            }
            Some(net) => net.app_removed(id),
            None => {}
        }
    }
}
