//! The pod's phases in time. Setup-phase containers (named by the node
//! policy and the pod's annotation; the policy report says which) keep
//! secrets and the setup network; agent-phase containers get neither. So
//! the two never run side by side:
//! - no setup container is created once an agent container has been;
//! - an agent container starts only when every setup container has exited
//!   (a sidecar-style init container that keeps running cannot be setup phase);
//! - a setup container does not start once an agent container has.
//!
//! The first agent container's Create also switches the pod's network to
//! the agent phase's policy, before that container can start.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::json;

use super::{Admitted, Pod};

/// A container's place in the pod's phases: the policy decides it
/// (`Report::pod_role`), from the CRI container type and the setup names.
pub use agentbox_policy::PodRole as Kind;

#[derive(Debug)]
struct Member {
    kind: Kind,
    name: String,
    started: bool,
}

#[derive(Debug, Default)]
struct Inner {
    members: BTreeMap<String, Member>,
    agent_created: Option<String>,
    agent_started: Option<String>,
}

/// The pod's containers by phase.
#[derive(Debug, Default)]
pub struct Phases {
    inner: Mutex<Inner>,
}

impl Phases {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A container is being created. `Ok(true)`: the pod's first agent
    /// container (the network switches now). `Err`: refused, with the reason.
    pub fn on_create(&self, id: &str, kind: Kind, name: &str) -> Result<bool, String> {
        let mut s = self.lock();
        if kind == Kind::Setup {
            if let Some(agent) = &s.agent_created {
                return Err(format!(
                    "setup container {name} cannot be created after agent container {agent}: \
                     setup containers keep secrets and must run before the agent phase begins"
                ));
            }
        }
        s.members.insert(
            id.to_string(),
            Member {
                kind,
                name: name.to_string(),
                started: false,
            },
        );
        if kind == Kind::Agent && s.agent_created.is_none() {
            s.agent_created = Some(name.to_string());
            return Ok(true);
        }
        Ok(false)
    }

    pub fn kind(&self, id: &str) -> Option<Kind> {
        self.lock().members.get(id).map(|m| m.kind)
    }

    fn setup_members(&self) -> Vec<(String, String, bool)> {
        self.lock()
            .members
            .iter()
            .filter(|(_, m)| m.kind == Kind::Setup)
            .map(|(id, m)| (id.clone(), m.name.clone(), m.started))
            .collect()
    }

    fn mark_started(&self, id: &str) {
        let mut s = self.lock();
        let agent = match s.members.get_mut(id) {
            Some(m) => {
                m.started = true;
                (m.kind == Kind::Agent).then(|| m.name.clone())
            }
            None => None,
        };
        if let (Some(name), None) = (agent, &s.agent_started) {
            s.agent_started = Some(name);
        }
    }

    pub fn on_delete(&self, id: &str) {
        self.lock().members.remove(id);
    }
}

impl Pod {
    /// Before a container's init starts: the phases' rules in time. A
    /// refusal is audited and the container does not start.
    pub async fn check_start(&self, a: &Admitted) -> Result<(), String> {
        let refusal =
            match self.phases.kind(&a.id) {
                Some(Kind::Agent) => {
                    let mut refusal = None;
                    for (id, name, started) in self.phases.setup_members() {
                        let exited = match self.control() {
                            Some(c) => c.exited(&id).await,
                            None => false,
                        };
                        if !started || !exited {
                            refusal =
                                Some(format!(
                            "agent container {} cannot start while setup container {name} {}: \
                             setup containers must exit before agent containers start \
                             (a sidecar that keeps running cannot be a setup container)",
                            a.subject.container.as_deref().unwrap_or(&a.id),
                            if started { "is still running" } else { "has not run" },
                        ));
                            break;
                        }
                    }
                    refusal
                }
                Some(Kind::Setup) => self.phases.lock().agent_started.clone().map(|agent| {
                    format!(
                        "setup container {} cannot start: agent container {agent} already started",
                        a.subject.container.as_deref().unwrap_or(&a.id)
                    )
                }),
                _ => None,
            };
        if let Some(reason) = refusal {
            let _ = a.audit.record(
                "reject",
                &a.subject,
                json!({"reason": reason, "at": "start"}),
            );
            tracing::warn!(container = %a.id, %reason, "start refused");
            return Err(reason);
        }
        self.phases.mark_started(&a.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_setup_after_agent() {
        let p = Phases::default();
        assert_eq!(p.on_create("sb", Kind::Sandbox, "sb"), Ok(false));
        assert_eq!(p.on_create("i1", Kind::Setup, "fetch"), Ok(false));
        assert_eq!(p.on_create("a1", Kind::Agent, "agent"), Ok(true));
        assert_eq!(p.on_create("a2", Kind::Agent, "helper"), Ok(false));
        let e = p.on_create("i2", Kind::Setup, "late").unwrap_err();
        assert!(e.contains("late") && e.contains("agent"), "{e}");
        assert_eq!(p.kind("i2"), None, "a refused container is not tracked");
        // deleting the agent does not reopen the setup phase
        p.on_delete("a1");
        p.on_delete("a2");
        assert!(p.on_create("i3", Kind::Setup, "later").is_err());
    }
}
