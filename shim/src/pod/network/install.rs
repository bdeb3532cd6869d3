//! Installing a pod's egress control, fail closed: any step that fails
//! undoes the ones before and the container is refused.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use agentbox_netpolicy::ratelimit::Limiter;
use agentbox_netpolicy::ruleset::{build, DnsLink, Interfaces, TABLE};
use agentbox_netpolicy::{Compiled, NetworkConfig};
use serde_json::json;

use super::cleanup::{remove_all, NetworkState};
use super::link::{Link, Rtnl};
use super::netns::NetNs;
use super::nft::Nft;
use super::{
    nflog, reset, resolver, NetPhase, PodNetwork, State, AUDIT_BURST, AUDIT_RATE, DNS_LINK,
    DNS_LINK_RESOLVER, RESOLVER, RESOLVER_PEER,
};
use crate::audit::{AuditLog, Subject};

/// What installing needs.
pub struct InstallRequest {
    pub owner: String,
    pub netns: PathBuf,
    /// The effective config (the pod's annotation applied).
    pub cfg: NetworkConfig,
    pub phase: NetPhase,
    pub audit: Arc<AuditLog>,
    pub subject: Subject,
    /// The owner's bundle (where the crash-cleanup state goes).
    pub bundle: PathBuf,
}

/// What the namespace thread hands back.
struct Opened {
    /// Interfaces whose logged packets are Ethernet frames.
    ethernet: Vec<u32>,
    nft: Nft,
    ifs: Interfaces,
    pod_links: Vec<Link>,
    dns_pending: u32,
    dns_sockets: (std::net::UdpSocket, std::net::TcpListener),
    nflog: netlink_sys::Socket,
}

fn err<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{what}: {e}")
}

/// Inside the pod's namespace: the DNS link, the rules, the sockets.
fn open_inside(policy: &Compiled) -> Result<Opened, String> {
    let mut rt = Rtnl::open().map_err(err("cannot open rtnetlink"))?;
    // a link left by an earlier daemon of this pod
    if let Some(old) = rt.link(DNS_LINK).map_err(err("cannot list interfaces"))? {
        rt.del_link(old.index)
            .map_err(err("cannot remove a stale resolver link"))?;
    }
    let pod_links: Vec<Link> = rt
        .links()
        .map_err(err("cannot list interfaces"))?
        .into_iter()
        .filter(|l| !l.loopback && l.name != DNS_LINK_RESOLVER)
        .collect();
    let mut ethernet: Vec<u32> = pod_links
        .iter()
        .filter(|l| l.mac.is_some())
        .map(|l| l.index)
        .collect();
    // the link to agentbox's resolver, in every mode (it refuses the
    // names a phase does not allow); its resolver side stays down until
    // the sandbox started
    rt.add_veth(DNS_LINK, DNS_LINK_RESOLVER)
        .map_err(err("cannot create the resolver link"))?;
    let pod_side = rt
        .link(DNS_LINK)
        .map_err(err("cannot list interfaces"))?
        .ok_or("the resolver link vanished")?;
    let resolver_side = rt
        .link(DNS_LINK_RESOLVER)
        .map_err(err("cannot list interfaces"))?
        .ok_or("the resolver link vanished")?;
    // IPv4 only: no IPv6 autoconfiguration chatter from the node's kernel on it
    for dev in [DNS_LINK, DNS_LINK_RESOLVER] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
    }
    rt.add_address(pod_side.index, IpAddr::V4(RESOLVER_PEER), 30)
        .map_err(err("cannot address the resolver link"))?;
    rt.add_address(resolver_side.index, IpAddr::V4(RESOLVER), 30)
        .map_err(err("cannot address the resolver link"))?;
    rt.set_up(pod_side.index, true)
        .map_err(err("cannot bring up the resolver link"))?;
    ethernet.push(pod_side.index);
    let ifs = Interfaces {
        pod: pod_links.iter().map(|l| l.name.clone()).collect(),
        dns_link: Some(DnsLink {
            device: DNS_LINK.into(),
            resolver: RESOLVER,
        }),
    };
    let mut nft = Nft::open().map_err(err("cannot open nftables"))?;
    nft.apply(&build(policy, &ifs))
        .map_err(err("cannot install the rules"))?;
    let nflog = nflog::open().map_err(err("cannot listen for denied packets (NFLOG)"))?;
    let addr = SocketAddr::from((RESOLVER, 53));
    let udp = std::net::UdpSocket::bind(addr).map_err(err("cannot open the resolver (udp)"))?;
    let tcp = std::net::TcpListener::bind(addr).map_err(err("cannot open the resolver (tcp)"))?;
    Ok(Opened {
        ethernet,
        nft,
        ifs,
        pod_links,
        dns_pending: resolver_side.index,
        dns_sockets: (udp, tcp),
        nflog,
    })
}

/// The node's own addresses (the daemon runs in the node's namespace).
pub fn node_addresses() -> Result<Vec<IpAddr>, String> {
    Rtnl::open()
        .map_err(|e| e.to_string())?
        .addresses()
        .map_err(|e| e.to_string())
}

/// Install the pod's egress control. The error is for a person: the
/// container does not run.
pub fn install(req: InstallRequest) -> Result<Arc<PodNetwork>, String> {
    let started = std::time::Instant::now();
    let fail = |e: String| format!("agentbox cannot install the pod's egress rules: {e}");
    let netns = NetNs::open(&req.netns).map_err(fail)?;
    let node =
        node_addresses().map_err(|e| fail(format!("cannot read the node's addresses: {e}")))?;
    let phase_cfg = match req.phase {
        NetPhase::Setup => &req.cfg.setup,
        NetPhase::Agent => &req.cfg.agent,
    };
    let policy = Arc::new(Compiled::new(phase_cfg, &node));
    let opened = match netns.run(|| open_inside(&policy)) {
        Ok(Ok(o)) => o,
        Ok(Err(e)) | Err(e) => {
            // leave nothing half-done
            let _ = netns.run(remove_all);
            return Err(fail(e));
        }
    };
    let state = NetworkState {
        netns: req.netns.clone(),
        table: TABLE.into(),
        dns_link: Some(super::DNS_LINK.to_string()),
    };
    if let Err(e) = state.write(&req.bundle) {
        let _ = netns.run(remove_all);
        return Err(fail(format!("cannot record the network state: {e}")));
    }
    let injector = reset::Injector::for_pod(&opened.pod_links);
    let interfaces = opened.ifs.pod.clone();
    let net = Arc::new(PodNetwork {
        owner: req.owner,
        netns,
        node,
        ifs: opened.ifs,
        audit: req.audit,
        subject: req.subject,
        bundle: req.bundle,
        state: Mutex::new(State {
            phase: req.phase,
            policy,
            generation: 0,
            nft: opened.nft,
            limiter: Limiter::new(AUDIT_RATE, AUDIT_BURST),
            denied: 0,
            upstream: req.cfg.upstream.clone(),
            dns_link_pending: Some(opened.dns_pending),
            apps: Default::default(),
        }),
        tasks: Mutex::new(Vec::new()),
        injector,
        ethernet: opened.ethernet,
        cfg: req.cfg,
    });
    let mut tasks = vec![nflog::spawn(net.clone(), opened.nflog).map_err(|e| {
        let _ = net.netns.run(remove_all);
        fail(format!("cannot read denied packets: {e}"))
    })?];
    let (udp, tcp) = opened.dns_sockets;
    match resolver::spawn(net.clone(), udp, tcp) {
        Ok(t) => tasks.extend(t),
        Err(e) => {
            for t in tasks {
                t.abort();
            }
            let _ = net.netns.run(remove_all);
            return Err(fail(format!("cannot start the resolver: {e}")));
        }
    }
    *net.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
    let p = net.phase_config(req.phase);
    let _ = net.audit.record(
        "network",
        &net.subject,
        json!({
            "phase": req.phase.as_str(),
            "mode": p.mode.as_str(),
            "allow": p.allow.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            "dns": p.dns,
            "interfaces": interfaces,
            "resolver": RESOLVER.to_string(),
            "reset_denied_tcp": net.injector.is_some(),
            "install_ms": started.elapsed().as_secs_f64() * 1000.0,
        }),
    );
    tracing::info!(pod = %net.subject.sandbox_id, ms = started.elapsed().as_millis() as u64, "egress rules installed");
    Ok(net)
}
