//! The egress chain's cost per packet, without a sandbox: UDP datagrams
//! sent out of a veth `eth0` whose peer sits in the same namespace of the
//! bench's own (nothing leaves it: the peer has no address and the
//! namespace no other link), through no table, a chain of one `accept`
//! (the hook alone), and the pod's ruleset for an address allowed by an
//! entry and for one admitted by the resolver — as agentbox writes it now
//! and as it did before (`ruleset-71c0439.nft`, loaded with `nft -f`). The
//! sending thread's CPU time per packet is what each costs; interleaved
//! rounds, medians.

use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use agentbox_netpolicy::policy::{TCP, UDP};
use agentbox_netpolicy::ruleset::{self, dns_element, Interfaces, Rule, Ruleset, Verdict};
use agentbox_shim::pod::network::admit::Element;
use agentbox_shim::pod::network::nft::Nft;
use anyhow::{Context, Result};

use crate::{env_usize, median, NsGuard, NETWORK};

/// Allowed by the entry `203.0.113.10:5201`.
const ENTRY_DST: &str = "203.0.113.10:5201";
/// Admitted as if the resolver had answered it for `allowed.mirror.test:443`.
const RESOLVED_DST: &str = "203.0.113.50:443";

/// The previous ruleset's listing.
pub const BEFORE: &str = include_str!("ruleset-71c0439.nft");

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    None,
    Hook,
    Entry,
    Resolved,
    BeforeEntry,
    BeforeResolved,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::None => "no table",
            Variant::Hook => "egress hook, a chain of one `accept`",
            Variant::Entry => "pod ruleset, destination allowed by an entry",
            Variant::Resolved => "pod ruleset, destination admitted by the resolver",
            Variant::BeforeEntry => "previous ruleset (71c0439), destination allowed by an entry",
            Variant::BeforeResolved => {
                "previous ruleset (71c0439), destination admitted by the resolver"
            }
        }
    }
}

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a timespec we own.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(r, 0, "thread cpu clock");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Send `n` datagrams of `len` bytes to `dst`; CPU ns per datagram.
fn send(dst: &str, n: usize, len: usize) -> Result<f64> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.connect(dst)?;
    let buf = vec![0x5au8; len];
    let t = thread_cpu_ns();
    let mut failed = 0usize;
    for _ in 0..n {
        if s.send(&buf).is_err() {
            failed += 1;
        }
    }
    let ns = (thread_cpu_ns() - t) as f64 / n as f64;
    anyhow::ensure!(
        failed * 100 < n,
        "{failed} of {n} datagrams to {dst} not sent"
    );
    Ok(ns)
}

struct RmFile(std::path::PathBuf);
impl Drop for RmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn hook_only(rs: &Ruleset) -> Ruleset {
    let mut r = rs.clone();
    for c in r.chains.iter_mut().filter(|c| c.device.is_some()) {
        c.rules = vec![Rule {
            exprs: vec![],
            verdict: Some(Verdict::Accept),
        }];
    }
    r
}

fn ip(args: &[&str]) -> Result<()> {
    let ok = Command::new("ip").args(args).status()?.success();
    anyhow::ensure!(ok, "ip {args:?}");
    Ok(())
}

pub fn packet_cost() -> Result<()> {
    let n = env_usize("AGENTBOX_BENCH_PACKETS", 100_000);
    let rounds = env_usize("AGENTBOX_BENCH_PACKET_ROUNDS", 7);
    let len = 1400;
    let name = format!("abx-np-{}", std::process::id());
    ip(&["netns", "add", &name])?;
    let _guard = NsGuard(name.clone());
    let path = Path::new("/var/run/netns").join(&name);
    ip(&[
        "-n", &name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])?;
    ip(&["-n", &name, "link", "set", "eth0p", "up"])?;
    ip(&["-n", &name, "link", "set", "eth0", "up"])?;
    ip(&["-n", &name, "addr", "add", "192.0.2.1/24", "dev", "eth0"])?;
    ip(&["-n", &name, "route", "add", "203.0.113.0/24", "dev", "eth0"])?;
    for dst in [ENTRY_DST, RESOLVED_DST] {
        let addr = dst.split(':').next().unwrap_or_default();
        ip(&[
            "-n",
            &name,
            "neigh",
            "add",
            addr,
            "lladdr",
            "02:00:00:00:00:01",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])?;
    }
    // nothing but lo and the veth pair: what is sent stays in the namespace
    let links = Command::new("ip")
        .args(["-n", &name, "-o", "link", "show"])
        .output()?;
    let links = String::from_utf8_lossy(&links.stdout);
    anyhow::ensure!(
        links.lines().count() == 3,
        "unexpected links in the bench namespace: {links}"
    );

    let cfg = agentbox_netpolicy::NetworkConfig::from_document(&format!(
        "[network]\nupstream = [\"127.0.0.1\"]\n{NETWORK}"
    ))?
    .context("network")?;
    let policy = agentbox_netpolicy::Compiled::new(&cfg.agent, &[]);
    let rs = ruleset::build(
        &policy,
        &Interfaces {
            pod: vec!["eth0".into()],
            dns_link: None,
        },
    );
    let hook = hook_only(&rs);
    let resolved: IpAddr = RESOLVED_DST.split(':').next().unwrap_or_default().parse()?;
    let admitted: Vec<Element> = [TCP, UDP]
        .iter()
        .map(|p| {
            let (set, fields, key) = dns_element(resolved, Some((*p, 443)));
            Element {
                set,
                fields,
                key,
                timeout_ms: 600_000,
            }
        })
        .collect();

    for dst in [ENTRY_DST, RESOLVED_DST] {
        let addr = dst.split(':').next().unwrap_or_default();
        let r = Command::new("ip")
            .args(["-n", &name, "route", "get", addr])
            .output()?;
        let r = String::from_utf8_lossy(&r.stdout);
        anyhow::ensure!(r.contains("dev eth0 "), "{addr} is not routed to eth0: {r}");
    }
    let fd = std::fs::File::open(&path)?;
    let variants = [
        Variant::None,
        Variant::Hook,
        Variant::Entry,
        Variant::Resolved,
        Variant::BeforeEntry,
        Variant::BeforeResolved,
    ];
    let before = std::env::temp_dir().join(format!("{name}.nft"));
    std::fs::write(&before, BEFORE)?;
    let _rm = RmFile(before.clone());
    let mut cost: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            let mut nft = Nft::open()?;
            let err = |e| anyhow::anyhow!("{e}");
            for _ in 0..rounds {
                for (i, v) in variants.iter().enumerate() {
                    let dst = match v {
                        Variant::None => {
                            let _ = nft.delete_table(ruleset::TABLE);
                            ENTRY_DST
                        }
                        Variant::Hook => {
                            nft.apply(&hook).map_err(err)?;
                            ENTRY_DST
                        }
                        Variant::Entry => {
                            nft.apply(&rs).map_err(err)?;
                            ENTRY_DST
                        }
                        Variant::Resolved => {
                            nft.apply(&rs).map_err(err)?;
                            nft.admit(ruleset::TABLE, &admitted).map_err(err)?;
                            RESOLVED_DST
                        }
                        Variant::BeforeEntry | Variant::BeforeResolved => {
                            let _ = nft.delete_table(ruleset::TABLE);
                            // the thread is in the bench's namespace: so is nft
                            let ok = Command::new("nft").arg("-f").arg(&before).status()?;
                            anyhow::ensure!(ok.success(), "nft -f {}", before.display());
                            if *v == Variant::BeforeEntry {
                                ENTRY_DST
                            } else {
                                RESOLVED_DST
                            }
                        }
                    };
                    send(dst, 1000, len)?; // warm up (and the flow's first packet)
                    cost[i].push(send(dst, n, len)?);
                }
            }
            let _ = nft.delete_table(ruleset::TABLE);
            Ok(())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("packet thread panicked"))?
    })?;
    let base = median(&mut cost[0].clone());
    println!(
        "## the chain's cost per packet (UDP, {len} bytes, {n} per run, median of {rounds}, interleaved, sender's CPU time)\n"
    );
    println!("| path | ns per packet | over no table |\n|---|---|---|");
    for (i, v) in variants.iter().enumerate() {
        let m = median(&mut cost[i]);
        println!("| {} | {m:.0} | {:+.0} |", v.label(), m - base);
    }
    println!();
    Ok(())
}
