//! Removing a pod's egress control: by the daemon when the sandbox goes, and
//! by containerd's `delete` when the daemon died (from the state file the
//! install wrote into the sandbox's bundle).

use std::path::{Path, PathBuf};

use agentbox_netpolicy::ruleset::TABLE;
use netlink_packet_core::NetlinkMessage;
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use serde::{Deserialize, Serialize};

use super::link::Rtnl;
use super::netns::NetNs;
use super::nft::Nft;
use super::nl::Nl;
use super::DNS_LINK;

/// Written into the sandbox's bundle at install.
pub const NETWORK_STATE_FILE: &str = "agentbox-network.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkState {
    pub netns: PathBuf,
    pub table: String,
    pub dns_link: Option<String>,
}

impl NetworkState {
    pub fn write(&self, bundle: &Path) -> std::io::Result<()> {
        let v = serde_json::to_value(self).map_err(std::io::Error::other)?;
        crate::enforce::write_atomic(&bundle.join(NETWORK_STATE_FILE), &v)
    }

    pub fn read(bundle: &Path) -> Option<NetworkState> {
        let b = std::fs::read(bundle.join(NETWORK_STATE_FILE)).ok()?;
        serde_json::from_slice(&b).ok()
    }

    pub fn remove(bundle: &Path) {
        let _ = std::fs::remove_file(bundle.join(NETWORK_STATE_FILE));
    }
}

/// Inside the pod's namespace: agentbox's table and the resolver link,
/// whichever exist.
pub fn remove_all() -> Result<(), String> {
    let mut errors = Vec::new();
    match Nft::open() {
        Ok(mut n) => match n.delete_table(TABLE) {
            Ok(()) => {}
            Err(e) if e.errno == libc::ENOENT => {}
            Err(e) => errors.push(e.to_string()),
        },
        Err(e) => errors.push(format!("cannot open nftables: {e}")),
    }
    match Rtnl::open() {
        Ok(mut r) => match r.link(DNS_LINK) {
            Ok(Some(l)) => {
                if let Err(e) = r.del_link(l.index) {
                    errors.push(e.to_string());
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(e.to_string()),
        },
        Err(e) => errors.push(format!("cannot open rtnetlink: {e}")),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Inside the pod's namespace: forget every tracked connection (the pod's
/// own kernel tracks them for runc pods; gVisor keeps its own state, which
/// the resets cut).
pub fn flush_conntrack() -> Result<(), String> {
    let mut nl = Nl::new(netlink_sys::constants::NETLINK_NETFILTER).map_err(|e| e.to_string())?;
    let mut msgs = Vec::new();
    for family in [NetfilterProtoFamily::IPv4, NetfilterProtoFamily::IPv6] {
        let m = NetlinkMessage::from(NetfilterMessage::new(
            NetfilterHeader::new(family, 0, 0),
            ConntrackMessage::Delete(vec![]),
        ));
        msgs.push((m, true));
    }
    match nl.request(msgs, |_| "flush conntrack".into()) {
        Ok(_) => Ok(()),
        // no conntrack in this namespace (or nothing to flush)
        Err(e) if e.errno == libc::ENOENT || e.errno == libc::EOPNOTSUPP => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// containerd's `delete` after the daemon died: remove the pod's rules if
/// its namespace is still there. What happened, for the audit log.
pub fn cleanup_after_crash(bundle: &Path) -> Option<Result<String, String>> {
    let st = NetworkState::read(bundle)?;
    let result = if !st.netns.exists() {
        Ok("the pod's network namespace is gone, and the rules with it".to_string())
    } else {
        NetNs::open(&st.netns)
            .and_then(|ns| ns.run(remove_all).and_then(|r| r))
            .map(|_| "removed".to_string())
    };
    NetworkState::remove(bundle);
    Some(result)
}
