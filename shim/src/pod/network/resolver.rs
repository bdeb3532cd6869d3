//! agentbox's resolver for one pod: UDP and TCP on 169.254.53.1:53 (sockets
//! opened in the pod's namespace), asking the upstream servers from the
//! node's namespace. The decisions are `agentbox_netpolicy::dns`; here is the
//! I/O and the admission of answered addresses into the rules before the
//! answer reaches the pod.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use agentbox_netpolicy::dns::{self, Finished, Query, QueryDecision};
use agentbox_netpolicy::policy::{TCP, UDP};
use agentbox_netpolicy::ruleset::{dns_element, TABLE};
use agentbox_netpolicy::Ports;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::admit::Element;
use super::PodNetwork;

/// Queries in flight at most (more are dropped: the client retries).
const MAX_INFLIGHT: usize = 64;
/// TCP clients at once at most.
const MAX_TCP: usize = 16;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_IDLE: Duration = Duration::from_secs(10);

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom(2) into a buffer we own.
    let n = unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, 2, 0) };
    if n == 2 {
        u16::from_ne_bytes(b)
    } else {
        (std::process::id() as u16) ^ (super::now_ms() as u16)
    }
}

async fn ask_udp(server: SocketAddr, q: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let s = tokio::net::UdpSocket::bind(bind).await?;
    s.connect(server).await?;
    s.send(q).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(UPSTREAM_TIMEOUT, s.recv(&mut buf))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    buf.truncate(n);
    Ok(buf)
}

async fn ask_tcp(server: SocketAddr, q: &[u8]) -> std::io::Result<Vec<u8>> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect(server).await?;
        let mut msg = (q.len() as u16).to_be_bytes().to_vec();
        msg.extend_from_slice(q);
        s.write_all(&msg).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    tokio::time::timeout(UPSTREAM_TIMEOUT, work)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

fn truncated(answer: &[u8]) -> bool {
    answer.len() > 2 && answer[2] & 0x02 != 0
}

/// Admit what the answer allows, for the name's ports, unless the policy
/// changed since the query was decided: every element in one transaction.
fn admit(net: &PodNetwork, q: &Query, f: &Finished, generation: u64) -> Result<(), String> {
    if f.admit.is_empty() {
        return Ok(());
    }
    let mut elems = Vec::new();
    for a in &f.admit {
        let timeout_ms = u64::from(a.ttl) * 1000;
        let mut push = |port| {
            let (set, fields, key) = dns_element(a.addr, port);
            elems.push(Element {
                set,
                fields,
                key,
                timeout_ms,
            });
        };
        match &q.ports {
            Ports::Any => push(None),
            Ports::Only(ports) => {
                for port in ports {
                    for proto in [TCP, UDP] {
                        push(Some((proto, *port)));
                    }
                }
            }
        }
    }
    let mut s = net.lock();
    if s.generation != generation {
        return Err("the pod's policy changed while the name was being resolved".into());
    }
    s.nft.admit(TABLE, &elems).map_err(|e| e.to_string())
}

/// The answer for one query from the pod (None: no answer at all).
pub async fn answer(net: &PodNetwork, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
    let (policy, generation) = net.policy();
    let q = match dns::decide_query(&policy, query, tcp) {
        QueryDecision::Ignore => return None,
        QueryDecision::Reply { bytes, denied } => {
            if let Some((name, reason)) = denied {
                net.audit_denied(json!({"protocol": "dns", "name": name}), &reason);
            }
            return Some(bytes);
        }
        QueryDecision::Forward(q) => q,
    };
    let servers = net.upstreams();
    if servers.is_empty() {
        tracing::warn!("agentbox's resolver has no upstream server");
    }
    for server in servers {
        let id = random_id();
        let Ok(up) = dns::upstream_query(&q, id) else {
            break;
        };
        let mut resp = match ask_udp(server, &up).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%server, error = %e, "upstream did not answer");
                continue;
            }
        };
        if truncated(&resp) {
            match ask_tcp(server, &up).await {
                Ok(r) => resp = r,
                Err(e) => {
                    tracing::debug!(%server, error = %e, "upstream over tcp did not answer");
                    continue;
                }
            }
        }
        let f = match dns::finish(&policy, &q, id, &resp, net.cfg.ttl) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%server, error = %e, "upstream answer refused");
                continue;
            }
        };
        for (addr, reason) in &f.stripped {
            net.audit_denied(
                json!({"protocol": "dns", "name": q.name, "address": addr.to_string(), "answer_removed": true}),
                reason,
            );
        }
        if let Err(e) = admit(net, &q, &f, generation) {
            tracing::warn!(name = %q.name, error = %e, "cannot admit resolved addresses");
            return Some(dns::servfail(&q));
        }
        return Some(f.reply);
    }
    Some(dns::servfail(&q))
}

async fn serve_udp(net: Arc<PodNetwork>, sock: tokio::net::UdpSocket) {
    let sock = Arc::new(sock);
    let inflight = Arc::new(Semaphore::new(MAX_INFLIGHT));
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = inflight.clone().try_acquire_owned() else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (net, sock) = (net.clone(), sock.clone());
        tokio::spawn(async move {
            if let Some(a) = answer(&net, &query, false).await {
                let _ = sock.send_to(&a, from).await;
            }
            drop(permit);
        });
    }
}

async fn serve_conn(net: Arc<PodNetwork>, mut s: tokio::net::TcpStream) {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        if tokio::time::timeout(TCP_IDLE, s.read_exact(&mut q))
            .await
            .is_err()
        {
            return;
        }
        let Some(a) = answer(&net, &q, true).await else {
            return;
        };
        let mut out = (a.len() as u16).to_be_bytes().to_vec();
        out.extend(a);
        if s.write_all(&out).await.is_err() {
            return;
        }
    }
}

async fn serve_tcp(net: Arc<PodNetwork>, l: tokio::net::TcpListener) {
    let clients = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let Ok((s, _)) = l.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = clients.clone().try_acquire_owned() else {
            continue;
        };
        let net = net.clone();
        tokio::spawn(async move {
            serve_conn(net, s).await;
            drop(permit);
        });
    }
}

/// Serve the pod's queries until the pod goes.
pub fn spawn(
    net: Arc<PodNetwork>,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
) -> std::io::Result<Vec<tokio::task::JoinHandle<()>>> {
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    let udp = tokio::net::UdpSocket::from_std(udp)?;
    let tcp = tokio::net::TcpListener::from_std(tcp)?;
    Ok(vec![
        tokio::spawn(serve_udp(net.clone(), udp)),
        tokio::spawn(serve_tcp(net, tcp)),
    ])
}

/// The nameservers of a `resolv.conf` (port 53).
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        })
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}
