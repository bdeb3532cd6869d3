//! The network around an egress test's pods. Every destination lives in a
//! "router" network namespace the test creates and attaches to its own CNI
//! bridge; the pods' default routes (IPv4 and IPv6) point at that router
//! (see [`crate::CniNetwork::egress`]), never at the node. Before any pod
//! sends a packet, [`TestNet::prove`] shows each destination is an address
//! of the router, and a guard table in the node's namespace drops anything
//! from the pods' subnets that would leave through any other interface.
//!
//! Destinations (all in the router namespace):
//! - "public" hosts 203.0.113.10–13, 2001:db8:ff::10–11 (documentation ranges),
//!   TCP echo on 80/443/8443, a download on 8080, UDP echo on 80/443;
//! - the metadata endpoints 169.254.169.254 and fd00:ec2::254, a private host
//!   172.31.255.10 (TCP 80 too);
//! - dnsmasq on the router's bridge address (`upstream` for agentbox's
//!   resolver), answering the names in [`NAMES`], logging every query.
//!
//! Everything (namespace, veth, guard table, dnsmasq, server threads) is
//! removed on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::{run_ok, run_timeout};
use crate::Containerd;

pub const PUBLIC4: &str = "203.0.113.10";
pub const PUBLIC4_OTHER: &str = "203.0.113.11";
/// One address behind two names (a shared CDN address).
pub const PUBLIC4_SHARED: &str = "203.0.113.12";
pub const PUBLIC4_TUNNEL: &str = "203.0.113.13";
pub const PUBLIC6: &str = "2001:db8:ff::10";
pub const PUBLIC6_OTHER: &str = "2001:db8:ff::11";
pub const METADATA4: &str = "169.254.169.254";
pub const METADATA6: &str = "fd00:ec2::254";
pub const PRIVATE4: &str = "172.31.255.10";
/// TCP echo ports, UDP echo ports, the download port.
pub const TCP_PORTS: &[u16] = &[80, 443, 8443];
pub const UDP_PORTS: &[u16] = &[80, 443];
const UDP_ADDRS: &[&str] = &[
    PUBLIC4,
    PUBLIC4_OTHER,
    PUBLIC4_SHARED,
    METADATA4,
    PRIVATE4,
    PUBLIC6,
    PUBLIC6_OTHER,
    METADATA6,
];
pub const DOWNLOAD_PORT: u16 = 8080;
pub const DOWNLOAD_BYTES: usize = 1 << 20;

/// What dnsmasq answers: name, IPv4, IPv6 (empty: none).
pub const NAMES: &[(&str, &str, &str)] = &[
    ("allowed.mirror.test", PUBLIC4, PUBLIC6),
    ("other.mirror.test", PUBLIC4_OTHER, PUBLIC6_OTHER),
    ("v6only.mirror.test", "", PUBLIC6),
    ("rebind.mirror.test", METADATA4, METADATA6),
    ("private.mirror.test", PRIVATE4, ""),
    ("shared.cdn.test", PUBLIC4_SHARED, ""),
    ("hidden.cdn.test", PUBLIC4_SHARED, ""),
];
/// Every name below this answers PUBLIC4_TUNNEL.
pub const TUNNEL_ZONE: &str = "tunnel.test";

fn ip(args: &[&str]) -> Result<String> {
    run_ok(Command::new("ip").args(args), Duration::from_secs(10))
        .with_context(|| format!("ip {args:?}"))
}

pub struct TestNet {
    pub router_ns: String,
    bridge: String,
    guard: String,
    index: u8,
    dnsmasq: Option<Child>,
    pub dnsmasq_log: PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl TestNet {
    /// Build the router and the guard for `ctd` (started with `cni_egress`).
    pub fn new(ctd: &Containerd) -> Result<TestNet> {
        let n = ctd.network();
        anyhow::ensure!(n.egress, "start the containerd with cni_egress");
        let index = n.index;
        let mut t = TestNet {
            router_ns: format!("abx-rt-{index}"),
            bridge: n.bridge.clone(),
            guard: format!("agentbox-e2e-guard-{index}"),
            index,
            dnsmasq: None,
            dnsmasq_log: ctd.dir().join("dnsmasq.log"),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        // from here on, errors drop `t`, which cleans up
        t.build(ctd)?;
        Ok(t)
    }

    fn build(&mut self, ctd: &Containerd) -> Result<()> {
        let n = ctd.network();
        let (r4, r6) = n.router();
        let (rt, br) = (self.router_ns.clone(), self.bridge.clone());
        let _ = ip(&["netns", "del", &rt]);
        ip(&["netns", "add", &rt])?;
        // the bridge the CNI plugin will use (it keeps an existing one)
        if !std::path::Path::new("/sys/class/net").join(&br).exists() {
            ip(&["link", "add", &br, "type", "bridge"])?;
        }
        ip(&["link", "set", &br, "up"])?;
        let host_end = format!("abx-rt{}", self.index);
        let _ = ip(&["link", "del", &host_end]);
        // the router's end gets a unique name until it is in the router's namespace
        let inner = format!("abx-ri{}", self.index);
        ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", &inner,
        ])?;
        ip(&["link", "set", &inner, "netns", &rt])?;
        ip(&["link", "set", &host_end, "master", &br, "up"])?;
        ip(&["-n", &rt, "link", "set", &inner, "name", "eth0"])?;
        ip(&["-n", &rt, "addr", "add", &format!("{r4}/24"), "dev", "eth0"])?;
        ip(&[
            "-n",
            &rt,
            "addr",
            "add",
            &format!("{r6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ip(&["-n", &rt, "link", "set", "eth0", "up"])?;
        ip(&["-n", &rt, "link", "set", "lo", "up"])?;
        for a in [
            PUBLIC4,
            PUBLIC4_OTHER,
            PUBLIC4_SHARED,
            PUBLIC4_TUNNEL,
            METADATA4,
            PRIVATE4,
        ] {
            ip(&["-n", &rt, "addr", "add", &format!("{a}/32"), "dev", "lo"])?;
        }
        for a in [PUBLIC6, PUBLIC6_OTHER, METADATA6] {
            ip(&["-n", &rt, "addr", "add", &format!("{a}/128"), "dev", "lo"])?;
        }
        self.install_guard(ctd)?;
        self.start_servers()?;
        self.start_dnsmasq(&r4)?;
        Ok(())
    }

    fn install_guard(&self, ctd: &Containerd) -> Result<()> {
        let n = ctd.network();
        let rules = format!(
            "table inet {g} {{\n\
             \tchain guard_forward {{ type filter hook forward priority -300; policy accept;\n\
             \t\tip saddr {s4} oifname != \"{br}\" drop\n\
             \t\tip6 saddr {s6} oifname != \"{br}\" drop\n\t}}\n\
             \tchain guard_post {{ type filter hook postrouting priority -300; policy accept;\n\
             \t\tip saddr {s4} oifname != \"{br}\" drop\n\
             \t\tip6 saddr {s6} oifname != \"{br}\" drop\n\t}}\n}}\n",
            g = self.guard,
            s4 = n.subnet(),
            s6 = n.subnet6(),
            br = self.bridge,
        );
        let mut child = Command::new("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("nft")?;
        child.stdin.take().unwrap().write_all(rules.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("guard table: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    /// Run `f` on a thread inside the router namespace.
    fn in_router<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = format!("/var/run/netns/{}", self.router_ns);
        let file = std::fs::File::open(&path).with_context(|| path.clone())?;
        std::thread::spawn(move || {
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("enter the router namespace");
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("router thread panicked"))
    }

    fn start_servers(&mut self) -> Result<()> {
        for v6 in [false, true] {
            for &port in TCP_PORTS.iter().chain(std::iter::once(&DOWNLOAD_PORT)) {
                let addr: SocketAddr = if v6 {
                    format!("[::]:{port}").parse()?
                } else {
                    format!("0.0.0.0:{port}").parse()?
                };
                let l = self.in_router(move || listener(addr))??;
                l.set_nonblocking(true)?;
                let stop = self.stop.clone();
                let download = port == DOWNLOAD_PORT;
                self.threads
                    .push(std::thread::spawn(move || tcp_server(l, stop, download)));
            }
        }
        // UDP answers must come from the address asked: one socket per address and port
        for a in UDP_ADDRS {
            for &port in UDP_PORTS {
                let addr = SocketAddr::new(a.parse()?, port);
                let s = self.in_router(move || UdpSocket::bind(addr))??;
                s.set_read_timeout(Some(Duration::from_millis(200)))?;
                let stop = self.stop.clone();
                self.threads
                    .push(std::thread::spawn(move || udp_server(s, stop)));
            }
        }
        Ok(())
    }

    fn start_dnsmasq(&mut self, listen: &str) -> Result<()> {
        let mut args: Vec<String> = vec![
            "netns".into(),
            "exec".into(),
            self.router_ns.clone(),
            "dnsmasq".into(),
            "--keep-in-foreground".into(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--user=root".into(),
            "--pid-file".into(),
            "--bind-interfaces".into(),
            format!("--listen-address={listen}"),
            "--local-ttl=30".into(),
            "--log-queries".into(),
            format!("--log-facility={}", self.dnsmasq_log.display()),
            format!("--address=/{TUNNEL_ZONE}/{PUBLIC4_TUNNEL}"),
        ];
        for (name, a4, a6) in NAMES {
            let mut rec = format!("--host-record={name}");
            for a in [a4, a6] {
                if !a.is_empty() {
                    rec.push(',');
                    rec.push_str(a);
                }
            }
            args.push(rec);
        }
        let child = Command::new("ip")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start dnsmasq (Debian package dnsmasq-base)")?;
        self.dnsmasq = Some(child);
        // wait (bounded) until it answers
        let server: SocketAddr = format!("{listen}:53").parse()?;
        for _ in 0..50 {
            if dns_query(server, "allowed.mirror.test", 1).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("dnsmasq did not answer on {server}")
    }

    /// Prove every destination is an address of the router (`ip route get`
    /// there says "local"), that the router hangs off this test's bridge, and
    /// that the guard table is in place. Call before pods send anything.
    pub fn prove(&self) -> Result<()> {
        let mut all: Vec<&str> = vec![
            PUBLIC4,
            PUBLIC4_OTHER,
            PUBLIC4_SHARED,
            PUBLIC4_TUNNEL,
            PUBLIC6,
            PUBLIC6_OTHER,
            METADATA4,
            METADATA6,
            PRIVATE4,
        ];
        for (_, a4, a6) in NAMES {
            all.extend([*a4, *a6].iter().filter(|a| !a.is_empty()));
        }
        for d in all {
            let r = ip(&["-n", &self.router_ns, "route", "get", d])?;
            if !r.trim_start().starts_with("local ") {
                bail!("{d} is not an address of the test router: {r}");
            }
        }
        let host_end = format!("abx-rt{}", self.index);
        let l = ip(&["-o", "link", "show", &host_end])?;
        if !l.contains(&format!("master {}", self.bridge)) {
            bail!("the router is not on the test's bridge: {l}");
        }
        let g = run_ok(
            Command::new("nft").args(["list", "table", "inet", &self.guard]),
            Duration::from_secs(10),
        )?;
        if !g.contains("drop") {
            bail!("guard table missing: {g}");
        }
        Ok(())
    }

    /// Lines of dnsmasq's log that show a query for `name` (any case).
    pub fn queries_for(&self, name: &str) -> usize {
        let name = name.to_ascii_lowercase();
        std::fs::read_to_string(&self.dnsmasq_log)
            .unwrap_or_default()
            .to_ascii_lowercase()
            .lines()
            .filter(|l| l.contains("query[") && l.contains(&name))
            .count()
    }

    /// A TCP echo server of the test on the node's own address on the test's
    /// bridge (10.233.X.1, there once a pod exists): the "node" destination.
    pub fn serve_on_node(&mut self, port: u16) -> Result<String> {
        let addr = format!("10.233.{}.1", self.index);
        let l = TcpListener::bind(format!("{addr}:{port}"))
            .with_context(|| format!("listen on the node's bridge address {addr}:{port}"))?;
        l.set_nonblocking(true)?;
        let stop = self.stop.clone();
        self.threads
            .push(std::thread::spawn(move || tcp_server(l, stop, false)));
        Ok(addr)
    }

    /// The agentbox `[network]` line naming this router's dnsmasq as upstream.
    pub fn upstream(&self) -> String {
        format!("upstream = [\"10.233.{}.254\"]", self.index)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = run_timeout(
            Command::new("nft").args(["delete", "table", "inet", &self.guard]),
            Duration::from_secs(10),
        );
        let _ = ip(&["netns", "del", &self.router_ns]);
        let _ = ip(&["link", "del", &format!("abx-rt{}", self.index)]);
    }
}

fn listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    // v6 listeners only for v6, so v4 and v6 can share a port
    if addr.is_ipv6() {
        let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // SAFETY: plain setsockopt/bind/listen on the descriptor we just made.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                &one as *const _ as *const _,
                4,
            );
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                &one as *const _ as *const _,
                4,
            );
            let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_port = addr.port().to_be();
            if libc::bind(
                fd,
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of_val(&sa) as u32,
            ) != 0
                || libc::listen(fd, 64) != 0
            {
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                return Err(e);
            }
            use std::os::fd::FromRawFd;
            return Ok(TcpListener::from_raw_fd(fd));
        }
    }
    TcpListener::bind(addr)
}

fn tcp_server(l: TcpListener, stop: Arc<AtomicBool>, download: bool) {
    let mut conns = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((mut s, _)) => {
                let stop = stop.clone();
                conns.push(std::thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = [0u8; 4096];
                    if download {
                        // wait for the request line, then send and close
                        for _ in 0..50 {
                            match s.read(&mut buf) {
                                Ok(n) if n > 0 => break,
                                _ if stop.load(Ordering::SeqCst) => return,
                                _ => {}
                            }
                        }
                        let chunk = vec![b'x'; 65536];
                        for _ in 0..DOWNLOAD_BYTES / chunk.len() {
                            if s.write_all(&chunk).is_err() {
                                return;
                            }
                        }
                        return;
                    }
                    while !stop.load(Ordering::SeqCst) {
                        match s.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut => {}
                            Err(_) => return,
                        }
                    }
                }));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn udp_server(s: UdpSocket, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        if let Ok((_, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(b"pong\n", from);
        }
    }
}

/// One DNS query (type 1 = A, 28 = AAAA) to `server`; the answer's rcode and addresses.
pub fn dns_query(
    server: SocketAddr,
    name: &str,
    qtype: u16,
) -> Result<(u8, Vec<std::net::IpAddr>)> {
    let s = UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.send_to(&agentbox_netpolicy::dns::query(0x4242, name, qtype), server)?;
    let mut buf = [0u8; 4096];
    let (n, _) = s.recv_from(&mut buf)?;
    agentbox_netpolicy::dns::answer_addresses(&buf[..n]).map_err(|e| anyhow::anyhow!(e))
}
