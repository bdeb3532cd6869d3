//! Denied packets, as the rules log them to NFLOG in the pod's namespace:
//! each becomes an `egress_denied` audit record (rate-limited) and, for TCP,
//! a reset into the sandbox so the connection fails at once.

use std::sync::Arc;

use agentbox_netpolicy::packet::parse_denied;
use agentbox_netpolicy::ruleset::{LOG_GROUP, SNAPLEN};
use agentbox_netpolicy::DenyReason;
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    config_request, ConfigCmd, ConfigMode, ConfigNla, PacketNla, Timeout, ULogMessage,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::constants::NETLINK_NETFILTER;
use netlink_sys::Socket;
use serde_json::json;
use tokio::io::unix::AsyncFd;

use super::nl::Nl;
use super::{PodNetwork, DNS_LINK, RESOLVER};

/// In the pod's namespace: a socket bound to agentbox's NFLOG group.
pub fn open() -> Result<Socket, String> {
    let mut nl = Nl::new(NETLINK_NETFILTER).map_err(|e| e.to_string())?;
    let m = config_request(
        NetfilterProtoFamily::Unspec,
        LOG_GROUP,
        vec![
            ConfigCmd::Bind.into(),
            ConfigMode::new_packet(SNAPLEN + 64).into(),
            // hand each packet over at once (the kernel would otherwise batch
            // them for up to a second, and the refusal would wait with them)
            ConfigNla::QThresh(1),
            Timeout::new(1).into(),
        ],
    );
    nl.request(vec![(m, true)], |_| format!("bind NFLOG group {LOG_GROUP}"))
        .map_err(|e| e.to_string())?;
    let sock = nl.into_socket();
    sock.set_non_blocking(true).map_err(|e| e.to_string())?;
    Ok(sock)
}

/// The payload of each packet message and the interface it left by.
fn payloads(buf: &[u8]) -> Vec<(Vec<u8>, Option<u32>)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let Ok(m) = NetlinkMessage::<NetfilterMessage>::deserialize(&buf[off..]) else {
            break;
        };
        let len = m.header.length as usize;
        if let NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
            ..
        }) = m.payload
        {
            let dev = nlas.iter().find_map(|n| match n {
                PacketNla::IfIndexOutDev(i) => Some(*i),
                _ => None,
            });
            for n in nlas {
                if let PacketNla::Payload(p) = n {
                    out.push((p, dev));
                }
            }
        }
        if len == 0 {
            break;
        }
        off += len.div_ceil(4) * 4;
    }
    out
}

/// Audit (and refuse inside the sandbox) one denied packet.
fn handle(net: &Arc<PodNetwork>, payload: &[u8], dev: Option<u32>) {
    let ethernet = dev.is_some_and(|i| net.ethernet.contains(&i));
    let Some(d) = parse_denied(payload, ethernet) else {
        return;
    };
    if let Some(frame) = net.injector.as_ref().and_then(|inj| inj.reset(&d)) {
        let net = net.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if let Some(inj) = &net.injector {
                inj.send(&frame);
            }
        });
    }
    let (policy, _) = net.policy();
    let reason = if d.dst == std::net::IpAddr::V4(RESOLVER) {
        // the resolver link, while the phase resolves nothing
        if policy.mode == agentbox_netpolicy::Mode::Offline {
            DenyReason::Offline
        } else {
            DenyReason::NotAllowed
        }
    } else {
        policy
            .decide(d.dst, d.proto, d.dport, false)
            .err()
            .unwrap_or(DenyReason::NotAllowed)
    };
    let mut fields = json!({
        "protocol": d.protocol_name(),
        "address": d.dst.to_string(),
    });
    if let Some(p) = d.dport {
        fields["port"] = json!(p);
    }
    if let Some(t) = d.icmp_type {
        fields["icmp_type"] = json!(t);
    }
    if d.dst == std::net::IpAddr::V4(RESOLVER) {
        fields["interface"] = json!(DNS_LINK);
    }
    net.audit_denied(fields, &reason);
}

/// Read denied packets until the pod goes.
pub fn spawn(net: Arc<PodNetwork>, sock: Socket) -> std::io::Result<tokio::task::JoinHandle<()>> {
    // SAFETY: the AsyncFd owns the socket, so its descriptor stays open
    // for as long as it is registered.
    let fd = unsafe { AsyncFd::register(sock) }.map_err(std::io::Error::from)?;
    Ok(tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return;
            };
            match ready.try_io(|s| s.get_ref().recv(&mut &mut buf[..], 0)) {
                Ok(Ok(n)) => {
                    for (p, dev) in payloads(&buf[..n]) {
                        handle(&net, &p, dev);
                    }
                }
                // the kernel dropped log messages (a flood): count on
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::debug!("NFLOG overrun");
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "reading denied packets failed");
                    return;
                }
                Err(_would_block) => {}
            }
        }
    }))
}
