//! The pod's egress control (see DESIGN.md "Egress" and docs/network.md).
//!
//! Installed when the pod's first container with a network namespace path
//! (the CRI sandbox) is admitted, before the sandbox exists: a `netdev` table
//! in the pod's namespace whose chains hook `egress` on every interface
//! there (gVisor's netstack packets leave through packet sockets that bypass
//! the `inet` hooks; the device's egress hook sees them), written over
//! netlink in one transaction. If names are allowed, a veth pair in the same
//! namespace links the sandbox to agentbox's resolver (sockets the daemon
//! opened in the namespace), which answers allowed names only and admits
//! the answered addresses into the rules for their TTL. Denied packets come
//! back over NFLOG and are audited as `egress_denied`, rate-limited.
//!
//! The phase switch (setup → agent) replaces the table in one transaction
//! before the first agent container starts; connections the setup phase left
//! open are cut: their next packet is dropped and answered with a reset.
//!
//! Everything lives in the pod's namespace and goes with it; the daemon also
//! removes it when the pod's sandbox is deleted, and containerd's `delete`
//! after a crash does (`cleanup`).

pub mod admit;
mod cleanup;
pub mod install;
pub mod link;
pub mod netns;
pub mod nflog;
pub mod nft;
mod nl;
mod reset;
pub mod resolv_conf;
mod resolver;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agentbox_netpolicy::ratelimit::Limiter;
use agentbox_netpolicy::ruleset::Interfaces;
use agentbox_netpolicy::{Compiled, DenyReason, NetworkConfig};
use serde_json::{json, Value};

use crate::audit::{AuditLog, Subject};

pub use cleanup::{cleanup_after_crash, NetworkState, NETWORK_STATE_FILE};
pub use install::InstallRequest;

/// The sandbox side of the link to agentbox's resolver.
pub const DNS_LINK: &str = "agentbox-dns";
/// agentbox's side of it, where the resolver listens.
pub const DNS_LINK_RESOLVER: &str = "agentbox-dnsr";
/// The resolver's address, as the pod's `resolv.conf` names it.
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(169, 254, 53, 1);
/// The sandbox's address on the link.
pub const RESOLVER_PEER: Ipv4Addr = Ipv4Addr::new(169, 254, 53, 2);
/// Audit records about denied traffic, per second, after a burst.
pub const AUDIT_RATE: u32 = 20;
pub const AUDIT_BURST: u32 = 50;

/// Which policy the pod is under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetPhase {
    Setup,
    Agent,
}

impl NetPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            NetPhase::Setup => "setup",
            NetPhase::Agent => "agent",
        }
    }
}

struct State {
    phase: NetPhase,
    policy: Arc<Compiled>,
    /// Bumped by every switch: a resolver answer for an older policy is not admitted.
    generation: u64,
    nft: nft::Nft,
    limiter: Limiter,
    denied: u64,
    upstream: Vec<SocketAddr>,
    /// Index of the resolver side of the DNS link while it waits to come up.
    dns_link_pending: Option<u32>,
    /// The pod's app containers (id → name), to name the one denied traffic came from.
    apps: BTreeMap<String, String>,
}

/// One pod's egress control.
pub struct PodNetwork {
    /// The container that brought it (the sandbox).
    pub owner: String,
    pub netns: netns::NetNs,
    pub cfg: NetworkConfig,
    pub ifs: Interfaces,
    node: Vec<IpAddr>,
    audit: Arc<AuditLog>,
    subject: Subject,
    bundle: PathBuf,
    state: Mutex<State>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    injector: Option<reset::Injector>,
    /// Interfaces whose logged packets come as Ethernet frames.
    ethernet: Vec<u32>,
}

impl std::fmt::Debug for PodNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodNetwork")
            .field("owner", &self.owner)
            .field("netns", &self.netns.path)
            .finish()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn phase_summary(p: &agentbox_netpolicy::PhasePolicy) -> Value {
    json!({
        "mode": p.mode.as_str(),
        "allow": p.allow.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        "dns": p.dns,
    })
}

impl PodNetwork {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn phase(&self) -> NetPhase {
        self.lock().phase
    }

    /// The current phase's policy and its generation.
    fn policy(&self) -> (Arc<Compiled>, u64) {
        let s = self.lock();
        (s.policy.clone(), s.generation)
    }

    fn phase_config(&self, phase: NetPhase) -> &agentbox_netpolicy::PhasePolicy {
        match phase {
            NetPhase::Setup => &self.cfg.setup,
            NetPhase::Agent => &self.cfg.agent,
        }
    }

    /// Where the resolver asks, as known now.
    fn upstreams(&self) -> Vec<SocketAddr> {
        self.lock().upstream.clone()
    }

    /// Learn the pod's nameservers (from its first app container's
    /// `resolv.conf`) when the config names none.
    pub fn learn_upstream(&self, servers: Vec<SocketAddr>) {
        let mut s = self.lock();
        if s.upstream.is_empty() {
            s.upstream = servers;
        }
    }

    pub fn app_added(&self, id: &str, name: &str) {
        self.lock().apps.insert(id.into(), name.into());
    }

    pub fn app_removed(&self, id: &str) {
        self.lock().apps.remove(id);
    }

    /// The container traffic came from, when the pod has only one app container.
    fn container(&self) -> Option<String> {
        let s = self.lock();
        (s.apps.len() == 1)
            .then(|| s.apps.values().next().cloned())
            .flatten()
    }

    /// Audit a denied attempt (rate-limited); `fields` carries the destination.
    fn audit_denied(&self, mut fields: Value, reason: &DenyReason) {
        let suppressed = {
            let mut s = self.lock();
            s.denied += 1;
            match s.limiter.admit(now_ms()) {
                Some(n) => n,
                None => return,
            }
        };
        fields["reason"] = json!(reason.describe());
        fields["phase"] = json!(self.phase().as_str());
        if suppressed > 0 {
            fields["suppressed"] = json!(suppressed);
        }
        let mut subject = self.subject.clone();
        if let Some(name) = self.container() {
            subject.container = Some(name);
        }
        if let Err(e) = self.audit.record("egress_denied", &subject, fields) {
            tracing::warn!(error = %e, "cannot audit a denied connection");
        }
    }

    /// The sandbox started: bring up the resolver's side of the DNS link
    /// (kept down until now: a sandbox takes every interface that is up
    /// when it starts, and this one must stay agentbox's).
    pub fn sandbox_started(&self) -> Result<(), String> {
        let Some(index) = self.lock().dns_link_pending.take() else {
            return Ok(());
        };
        self.netns
            .run(|| {
                link::Rtnl::open()
                    .map_err(|e| e.to_string())?
                    .set_up(index, true)
                    .map_err(|e| e.to_string())
            })?
            .map_err(|e| format!("cannot bring up agentbox's resolver link: {e}"))
    }

    /// Switch to the agent phase's policy (before the first agent container
    /// starts). One transaction replaces the rules; resolved addresses of the
    /// setup phase are gone with them.
    pub fn switch_to_agent(&self) -> Result<(), String> {
        let started = std::time::Instant::now();
        let from = self.phase();
        if from == NetPhase::Agent {
            return Ok(());
        }
        let policy = Arc::new(Compiled::new(&self.cfg.agent, &self.node));
        let rs = agentbox_netpolicy::ruleset::build(&policy, &self.ifs);
        {
            let mut s = self.lock();
            s.nft.apply(&rs).map_err(|e| {
                format!("cannot switch the pod's egress rules to the agent phase: {e}")
            })?;
            s.phase = NetPhase::Agent;
            s.policy = policy;
            s.generation += 1;
        }
        // the pod's own kernel tracked connections (runc pods): forget them
        let flushed = self
            .netns
            .run(cleanup::flush_conntrack)
            .ok()
            .and_then(|r| r.ok());
        let _ = self.audit.record(
            "network_switch",
            &self.subject,
            json!({
                "from": {"phase": from.as_str(), "policy": phase_summary(&self.cfg.setup)},
                "to": {"phase": "agent", "policy": phase_summary(&self.cfg.agent)},
                "switch_ms": started.elapsed().as_secs_f64() * 1000.0,
                "conntrack_flushed": flushed.is_some(),
                "cut": "packets of connections opened before are dropped and answered with a reset",
            }),
        );
        tracing::info!(pod = %self.subject.sandbox_id, "egress switched to the agent phase");
        Ok(())
    }

    /// Remove everything from the pod's namespace (the pod is going).
    pub fn teardown(&self, reason: &str) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        let result = self
            .netns
            .run(cleanup::remove_all)
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let (denied, suppressed) = {
            let mut s = self.lock();
            (s.denied, s.limiter.take_pending())
        };
        let mut fields = json!({
            "reason": reason,
            "denied": denied,
            "result": if result.is_ok() { "removed" } else { "failed" },
        });
        if suppressed > 0 {
            fields["suppressed"] = json!(suppressed);
        }
        if let Err(e) = &result {
            fields["error"] = json!(e);
            tracing::warn!(error = %e, "cannot remove the pod's egress rules");
        }
        let _ = self.audit.record("network_teardown", &self.subject, fields);
        NetworkState::remove(&self.bundle);
    }
}

#[cfg(test)]
mod tests;
