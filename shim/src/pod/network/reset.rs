//! Resets for denied TCP segments (and ICMP "prohibited" for the rest), sent into the sandbox from the host side
//! of the pod's interface, so a denied connect fails at once and a
//! connection cut by a phase switch ends inside the sandbox too (gVisor
//! keeps its own connection state, which no conntrack flush reaches).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use agentbox_netpolicy::packet::{icmp_prohibited_frame, tcp_reset_frame, Denied};
use agentbox_netpolicy::ratelimit::Limiter;

use super::link::{Link, Rtnl};

/// Resets sent per second at most.
const RATE: u32 = 200;

pub struct Injector {
    sock: OwnedFd,
    pod_mac: [u8; 6],
    peer_mac: [u8; 6],
    limiter: Mutex<Limiter>,
}

impl Injector {
    /// Find the node's side of the pod's (veth) interface, in the daemon's
    /// namespace, and open a packet socket on it. None when the pod's
    /// interface has no peer there (then denied connections time out).
    pub fn for_pod(pod_links: &[Link]) -> Option<Injector> {
        let host = Rtnl::open().ok()?.links().ok()?;
        for p in pod_links.iter().filter(|l| l.veth) {
            let Some(peer) = host
                .iter()
                .find(|h| h.veth && Some(h.index) == p.peer && h.peer == Some(p.index))
            else {
                continue;
            };
            let (Some(pod_mac), Some(peer_mac)) = (p.mac, peer.mac) else {
                continue;
            };
            // SAFETY: plain socket(2); the descriptor is owned right away.
            let fd = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    0,
                )
            };
            if fd < 0 {
                return None;
            }
            // SAFETY: fd was just returned by socket(2) and nothing else owns it.
            let sock = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = peer.index as i32;
            // SAFETY: binding our socket to a sockaddr_ll of the right size.
            let rc = unsafe {
                libc::bind(
                    sock.as_raw_fd(),
                    &sll as *const _ as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc != 0 {
                return None;
            }
            return Some(Injector {
                sock,
                pod_mac,
                peer_mac,
                limiter: Mutex::new(Limiter::new(RATE, RATE)),
            });
        }
        None
    }

    /// Refuse `d` inside the sandbox: a TCP reset, or an ICMP
    /// "administratively prohibited" (rate-limited). The frame sent, to send
    /// again a little later: gVisor can take a refusal that arrives within
    /// microseconds of its SYN as coming too early.
    pub fn reset(&self, d: &Denied) -> Option<Vec<u8>> {
        let (pod, peer) = d.macs.unwrap_or((self.pod_mac, self.peer_mac));
        let frame =
            tcp_reset_frame(d, pod, peer).or_else(|| icmp_prohibited_frame(d, pod, peer))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|x| x.as_millis() as u64)
            .unwrap_or(0);
        self.limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(now)?;
        self.send(&frame);
        Some(frame)
    }

    pub fn send(&self, frame: &[u8]) {
        // SAFETY: sending a buffer we own on our socket.
        let _ = unsafe {
            libc::send(
                self.sock.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
            )
        };
    }
}
