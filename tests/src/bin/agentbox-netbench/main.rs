//! `make bench-net`: the cost of agentbox's pod egress control, in one run,
//! as figures and ratios (scripted measurements, not timed tests). Uses the
//! release build of the shim. Prints a Markdown report for BENCHMARKS.md.
//!
//! - installing a pod's egress control (the daemon's `install`: resolver
//!   link, rules, NFLOG, resolver sockets) and replacing the rules (what a
//!   phase switch does), in a namespace of the bench's own;
//! - pod start through CRI with `[network]` versus without (interleaved);
//! - the chain's cost per packet, without a sandbox ([`packets`]);
//! - iperf3 throughput from a gVisor pod to an allowed host, with rules
//!   versus without (interleaved);
//! - DNS answers through agentbox's resolver versus straight from the
//!   upstream server;
//! - the daemon's memory with and without `[network]`.
//!
//! Every destination is a host of the bench's own router namespace (see
//! `agentbox_e2e::egress`), proven before use.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentbox_e2e::agentbox::{
    managed_roots, pids_matching, pod_netns, with_handlers, write_config, ConfigDir,
};
use agentbox_e2e::egress::TestNet;
use agentbox_e2e::{
    is_root, Binaries, ContainerSpec, Containerd, ContainerdOptions, BUSYBOX_IMAGE, K8S_NAMESPACE,
};
use agentbox_shim::audit::{AuditLog, Subject};
use agentbox_shim::pod::network::install::{install, InstallRequest};
use agentbox_shim::pod::network::netns::NetNs;
use agentbox_shim::pod::network::nft::Nft;
use agentbox_shim::pod::network::NetPhase;
use anyhow::{bail, Context, Result};

mod admission;
mod iperf;
mod packets;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

const NETWORK: &str = "mode = \"allowlist\"\nallow = [\"203.0.113.10:5201\", \"203.0.113.10:80\", \"allowed.mirror.test:443\", \"*.tunnel.test:443\", \"10.20.0.0/16\"]\n";

fn run() -> Result<()> {
    if !is_root() {
        bail!("the benchmarks create network namespaces, containerd and gVisor sandboxes: run them as root");
    }
    // AGENTBOX_BENCH_ONLY=install,packets,pods,iperf,dns: some sections only
    let only = std::env::var("AGENTBOX_BENCH_ONLY").ok();
    let want = |s: &str| only.as_ref().is_none_or(|o| o.split(',').any(|x| x == s));
    println!("# agentbox egress benchmarks\n");
    println!(
        "{}\n",
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| format!("loadavg {}", l.trim()))
            .unwrap_or_default()
    );
    if want("install") {
        install_cost()?;
    }
    if want("packets") {
        packets::packet_cost()?;
    }
    if !(want("pods") || want("iperf") || want("dns")) {
        return Ok(());
    }
    let release = agentbox_e2e::util::cargo_target_dir().join("release");
    if !release.join("containerd-shim-agentbox-v1").is_file() {
        bail!("build the release shim first: cargo build --release -p agentbox-shim");
    }

    let cfg = ConfigDir::new();
    let mut opts = with_handlers(
        ContainerdOptions::default().with_binaries(Binaries::system().with_shim_dir(&release)),
        cfg.path(),
        &["net", "plain"],
    );
    opts.cni_egress = true;
    let ctd = Containerd::start(opts).context("start containerd")?;
    let net = TestNet::new(&ctd).context("test network")?;
    net.prove()?;
    let extra = format!(
        "profile = \"standard\"\n[mounts]\n{}\n",
        managed_roots(&ctd)
    );
    write_config(cfg.path(), "plain", "sandbox", &extra);
    write_config(
        cfg.path(),
        "net",
        "sandbox",
        &format!("{extra}[network]\n{}\n{NETWORK}", net.upstream()),
    );
    ctd.import_busybox(K8S_NAMESPACE)?;
    let cri = ctd.cri()?;
    if want("pods") {
        pod_start(&cri, cfg.path())?;
    }
    if want("iperf") {
        let iperf = iperf::iperf_dir(&cfg)?;
        iperf::throughput(&cri, &ctd, &net, &iperf, cfg.path())?;
    }
    if want("dns") {
        dns_latency(&cri, &ctd)?;
    }
    Ok(())
}

/// `install` (and teardown) of a pod's egress control, and a rule
/// replacement, in a namespace with a veth `eth0` like a CNI pod's.
fn install_cost() -> Result<()> {
    let runs = env_usize("AGENTBOX_BENCH_RUNS", 30);
    let name = format!("abx-nb-{}", std::process::id());
    let ip = |args: &[&str]| -> Result<()> {
        let ok = Command::new("ip").args(args).status()?.success();
        anyhow::ensure!(ok, "ip {args:?}");
        Ok(())
    };
    ip(&["netns", "add", &name])?;
    let _guard = NsGuard(name.clone());
    ip(&[
        "-n", &name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ])?;
    ip(&["-n", &name, "link", "set", "eth0", "up"])?;
    let path = std::path::PathBuf::from(format!("/var/run/netns/{name}"));
    let dir = tempfile::tempdir()?;
    let cfg = agentbox_netpolicy::NetworkConfig::from_document(&format!(
        "[network]\nupstream = [\"127.0.0.1\"]\n{NETWORK}"
    ))?
    .expect("network");
    let audit = Arc::new(AuditLog::new(dir.path().join("audit.jsonl")));
    let mut inst = Vec::new();
    let mut rm = Vec::new();
    for _ in 0..runs {
        // a runtime per pod, as each pod has its daemon: dropping it ends the
        // NFLOG reader task, which holds the group's socket
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let t = Instant::now();
        let n = rt
            .block_on(async {
                install(InstallRequest {
                    owner: "bench".into(),
                    netns: path.clone(),
                    cfg: cfg.clone(),
                    phase: NetPhase::Setup,
                    audit: audit.clone(),
                    subject: Subject::default(),
                    bundle: dir.path().to_path_buf(),
                })
            })
            .map_err(|e| anyhow::anyhow!(e))?;
        inst.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        rt.block_on(async { n.teardown("bench") });
        rm.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // the rules alone, replaced in one transaction (a phase switch)
    let policy = agentbox_netpolicy::Compiled::new(&cfg.agent, &[]);
    let rs = agentbox_netpolicy::ruleset::build(
        &policy,
        &agentbox_netpolicy::ruleset::Interfaces {
            pod: vec!["eth0".into()],
            dns_link: None,
        },
    );
    let ns = NetNs::open(&path).map_err(|e| anyhow::anyhow!(e))?;
    let mut apply = ns
        .run(|| -> Result<Vec<f64>> {
            let mut n = Nft::open()?;
            let mut v = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                n.apply(&rs).map_err(|e| anyhow::anyhow!("{e}"))?;
                v.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok(v)
        })
        .map_err(|e| anyhow::anyhow!(e))??;
    let rules: usize = rs.chains.iter().map(|c| c.rules.len()).sum();
    let elems: usize = rs.sets.iter().map(|s| s.elements.len()).sum();
    println!("## installing a pod's egress control ({runs} runs, in-process, netlink)\n");
    println!("| what | median ms | p95 ms |\n|---|---|---|");
    println!(
        "| install: resolver link, {} sets ({elems} elements), {rules} rules, NFLOG, resolver sockets | {:.2} | {:.2} |",
        rs.sets.len(),
        median(&mut inst.clone()),
        pct(&mut inst, 0.95)
    );
    println!(
        "| teardown | {:.2} | {:.2} |",
        median(&mut rm.clone()),
        pct(&mut rm, 0.95)
    );
    println!(
        "| replace the ruleset in one transaction (phase switch) | {:.2} | {:.2} |\n",
        median(&mut apply.clone()),
        pct(&mut apply, 0.95)
    );
    admission::admission_cost(&ns, &rs, runs.max(100))
}

struct NsGuard(String);
impl Drop for NsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Seconds since midnight of an RFC 3339 UTC time (`…THH:MM:SS.fffZ`).
fn seconds_of_day(t: &str) -> Option<f64> {
    let clock = t.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// A pod's audit records as `event@ms` after its first one.
fn timeline(cfgdir: &Path, pod: &str) -> String {
    let recs = agentbox_e2e::agentbox::audit(cfgdir);
    let mine: Vec<(String, f64)> = recs
        .iter()
        .filter(|r| r["sandbox_id"] == pod)
        .filter_map(|r| {
            let t = seconds_of_day(r["time"].as_str()?)?;
            Some((r["event"].as_str()?.to_string(), t))
        })
        .collect();
    let t0 = mine.first().map(|(_, t)| *t).unwrap_or_default();
    mine.iter()
        .map(|(e, t)| format!("{e}@{:.0}", (t - t0) * 1000.0))
        .collect::<Vec<_>>()
        .join(" ")
}

/// RunPodSandbox + CreateContainer + StartContainer, with and without `[network]`.
fn pod_start(cri: &agentbox_e2e::Cri, cfgdir: &Path) -> Result<()> {
    let runs = env_usize("AGENTBOX_BENCH_POD_RUNS", 8);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    let mut rss = (Vec::new(), Vec::new());
    for i in 0..runs * 2 {
        let h = if i % 2 == 0 { "net" } else { "plain" };
        let name = format!("start-{h}-{i}");
        let t = Instant::now();
        let pod = cri.run_pod(
            &name,
            "bench",
            &format!("uid-{name}"),
            &format!("agentbox-{h}"),
            &[],
        )?;
        let id = cri.create_container(
            &pod,
            &ContainerSpec::new("c", BUSYBOX_IMAGE).command(["sleep", "60"]),
        )?;
        cri.start(&id)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        std::thread::sleep(Duration::from_millis(300));
        let daemon = pids_matching(&["containerd-shim-agentbox-v1", &pod.id]);
        let kb = daemon.first().map(|p| rss_kb(*p)).unwrap_or(0);
        if h == "net" {
            with.push(ms);
            rss.0.push(kb as f64);
        } else {
            without.push(ms);
            rss.1.push(kb as f64);
        }
        // where the start went: the pod's audit records, ms after its first
        eprintln!("{h} {ms:.0} ms: {}", timeline(cfgdir, &pod.id));
        cri.stop_container(&id, Duration::from_secs(1))?;
        cri.remove_container(&id)?;
        cri.stop_pod(&pod.id)?;
        cri.remove_pod(&pod.id)?;
    }
    let (w, wo) = (median(&mut with), median(&mut without));
    println!("## pod start through CRI, gVisor (median of {runs} each, interleaved)\n");
    println!("| pod | median ms | daemon RSS median KiB |\n|---|---|---|");
    println!(
        "| with `[network]` (allowlist) | {w:.0} | {:.0} |",
        median(&mut rss.0)
    );
    println!(
        "| without `[network]` | {wo:.0} | {:.0} |",
        median(&mut rss.1)
    );
    println!(
        "\nratio with / without: **{:.3}** (target ≤ 1.05)\n",
        w / wo
    );
    Ok(())
}

/// DNS answers through agentbox's resolver (queried from inside the pod's
/// namespace) versus straight from the upstream dnsmasq.
fn dns_latency(cri: &agentbox_e2e::Cri, ctd: &Containerd) -> Result<()> {
    let n = env_usize("AGENTBOX_BENCH_DNS_QUERIES", 300);
    let pod = cri.run_pod("dns", "bench", "uid-dns", "agentbox-net", &[])?;
    let id = cri.create_container(
        &pod,
        &ContainerSpec::new("c", BUSYBOX_IMAGE).command(["sleep", "600"]),
    )?;
    cri.start(&id)?;
    let netns = std::fs::File::open(pod_netns(ctd, &pod.id)?)?;
    let ask = |server: SocketAddr, name: &str| -> Result<Vec<f64>> {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut out = Vec::with_capacity(n);
        let mut buf = [0u8; 2048];
        for i in 0..n {
            let q = agentbox_netpolicy::dns::query(i as u16, name, 1);
            let t = Instant::now();
            s.send_to(&q, server)?;
            let (len, _) = s.recv_from(&mut buf)?;
            out.push(t.elapsed().as_secs_f64() * 1e6);
            anyhow::ensure!(len > 12, "short answer");
        }
        Ok(out)
    };
    let resolver: SocketAddr = "169.254.53.1:53".parse()?;
    let (mut allowed, mut refused) = std::thread::scope(|s| {
        s.spawn(|| -> Result<(Vec<f64>, Vec<f64>)> {
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            Ok((
                ask(resolver, "allowed.mirror.test")?,
                ask(resolver, "not.allowed.example")?,
            ))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("dns thread panicked"))?
    })?;
    let upstream: SocketAddr = format!("10.233.{}.254:53", ctd.network().index).parse()?;
    let mut direct = ask(upstream, "allowed.mirror.test")?;
    let _ = cri.stop_container(&id, Duration::from_secs(1));
    let _ = cri.remove_container(&id);
    let _ = cri.stop_pod(&pod.id);
    let _ = cri.remove_pod(&pod.id);
    println!("## DNS answers ({n} sequential UDP queries each)\n");
    println!("| path | median µs | p95 µs |\n|---|---|---|");
    println!(
        "| agentbox's resolver, allowed name (asks upstream, admits the address) | {:.0} | {:.0} |",
        median(&mut allowed.clone()),
        pct(&mut allowed, 0.95)
    );
    println!(
        "| agentbox's resolver, refused name (answered at once) | {:.0} | {:.0} |",
        median(&mut refused.clone()),
        pct(&mut refused, 0.95)
    );
    println!(
        "| the upstream (dnsmasq) straight from the node | {:.0} | {:.0} |\n",
        median(&mut direct.clone()),
        pct(&mut direct, 0.95)
    );
    Ok(())
}
