//! iperf3 throughput from gVisor pods to the router's allowed host: with
//! rules, with agentbox's table but its chain short-circuited, with the
//! previous ruleset, and without `[network]`, interleaved.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agentbox_e2e::agentbox::{pids_matching, pod_netns, ConfigDir};
use agentbox_e2e::egress::{TestNet, PUBLIC4};
use agentbox_e2e::{ContainerSpec, Containerd, BUSYBOX_IMAGE};
use anyhow::{Context, Result};

use crate::{env_usize, median};

/// iperf3 and the libraries it needs, for a read-only mount into the pods.
pub fn iperf_dir(cfg: &ConfigDir) -> Result<std::path::PathBuf> {
    let dir = cfg.path().join("iperf");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy("/usr/bin/iperf3", dir.join("iperf3"))
        .context("iperf3 (Debian package iperf3)")?;
    let ldd = Command::new("ldd").arg("/usr/bin/iperf3").output()?;
    for l in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = l
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(std::path::PathBuf::from);
        if let Some(p) = path {
            let real = std::fs::canonicalize(&p)?;
            std::fs::copy(&real, dir.join(p.file_name().unwrap()))?;
        }
    }
    Ok(dir)
}

fn iperf_server(net: &TestNet) -> Result<Child> {
    let c = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.router_ns,
            "iperf3",
            "-s",
            "-B",
            PUBLIC4,
            "-p",
            "5201",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(c)
}

/// iperf3 from a gVisor pod to the router: with rules, with the egress hook
/// alone (agentbox's table with a first `accept` in the pod's base chain),
/// and without `[network]`.
/// CPU time (user and system, ms) of the processes of the pod's sandbox.
fn sandbox_cpu_ms(pod_id: &str) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids_matching(&["runsc", pod_id])
        .into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|st| {
            // after "(comm)": state is field 3, utime 14, stime 15
            let rest = st.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        * 1000.0
        / hz
}

/// The pod's eth0 transmit counters: packets, bytes (`/proc/net/dev` is
/// the reading process's namespace's; `/sys` would be the node's).
fn tx_counters(path: &std::path::Path) -> Result<(u64, u64)> {
    let netns = path.display();
    let o = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args(["cat", "/proc/net/dev"])
        .output()?;
    let text = String::from_utf8_lossy(&o.stdout);
    // "eth0: rx_bytes rx_packets errs drop fifo frame compressed multicast tx_bytes tx_packets ..."
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("eth0:"))
        .with_context(|| format!("no eth0 in the namespace of {netns}"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    anyhow::ensure!(v.len() >= 10, "eth0 counters of {netns}: {line:?}");
    Ok((v[9], v[8]))
}

pub fn throughput(
    cri: &agentbox_e2e::Cri,
    ctd: &Containerd,
    net: &TestNet,
    iperf: &std::path::Path,
    cfg_dir: &std::path::Path,
) -> Result<()> {
    let runs = env_usize("AGENTBOX_BENCH_IPERF_RUNS", 5);
    let secs = env_usize("AGENTBOX_BENCH_IPERF_SECONDS", 5);
    let mut server = iperf_server(net)?;
    let kinds = ["net", "hook", "before", "plain"];
    let before = cfg_dir.join("ruleset-71c0439.nft");
    std::fs::write(&before, crate::packets::BEFORE)?;
    let mut pods = Vec::new();
    for h in kinds {
        let name = format!("iperf-{h}");
        let handler = if h == "plain" { "plain" } else { "net" };
        let pod = cri.run_pod(
            &name,
            "bench",
            &format!("uid-{name}"),
            &format!("agentbox-{handler}"),
            &[],
        )?;
        let c = ContainerSpec::new("c", BUSYBOX_IMAGE)
            .command(["sleep", "600"])
            .mount(iperf, "/opt/iperf", true);
        let id = cri.create_container(&pod, &c)?;
        cri.start(&id)?;
        if h == "hook" {
            let ns = pod_netns(ctd, &pod.id)?;
            let ok = Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .args([
                    "nft", "insert", "rule", "netdev", "agentbox", "egress0", "accept",
                ])
                .status()?
                .success();
            anyhow::ensure!(ok, "cannot short-circuit the hook pod's chain");
        }
        if h == "before" {
            // the previous ruleset in place of agentbox's (eth0 only: iperf needs no DNS)
            let ns = pod_netns(ctd, &pod.id)?;
            let ok = Command::new("nsenter")
                .arg(format!("--net={}", ns.display()))
                .arg("sh")
                .arg("-c")
                .arg(format!(
                    "nft delete table netdev agentbox && nft -f '{}'",
                    before.display()
                ))
                .status()?
                .success();
            anyhow::ensure!(ok, "cannot load the previous ruleset into the pod");
        }
        pods.push((h, pod, id));
    }
    let mut mbits: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    // the sandbox's CPU (sentry, gofer, ptrace stubs: the sentry's sends run
    // the chain) per GB sent: less at the mercy of the load than Mbit/s
    let mut cpu_per_gb: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    // what leaves the rules pod's eth0 during its runs: packets, bytes
    let net_ns = pod_netns(ctd, &pods[0].1.id)?;
    let (mut pkts, mut bytes) = (0u64, 0u64);
    for _ in 0..runs {
        for (i, (_, pod, id)) in pods.iter().enumerate() {
            let before = (i == 0).then(|| tx_counters(&net_ns)).transpose()?;
            let cpu0 = sandbox_cpu_ms(&pod.id);
            let cmd = format!(
                "/opt/iperf/ld-linux-x86-64.so.2 --library-path /opt/iperf /opt/iperf/iperf3 -c {PUBLIC4} -p 5201 -t {secs} -J"
            );
            let r = cri.exec_sync(
                id,
                &["sh", "-c", &cmd],
                Duration::from_secs(secs as u64 + 60),
            )?;
            let v: serde_json::Value = serde_json::from_str(&r.stdout)
                .with_context(|| format!("iperf3 output: {} {}", r.stdout, r.stderr))?;
            let bps = v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .with_context(|| format!("iperf3 result: {}", r.stdout))?;
            mbits[i].push(bps / 1e6);
            let sent = v["end"]["sum_sent"]["bytes"].as_f64().unwrap_or(0.0);
            if sent > 0.0 {
                cpu_per_gb[i].push((sandbox_cpu_ms(&pod.id) - cpu0) / (sent / 1e9));
            }
            if let Some((p0, b0)) = before {
                let (p1, b1) = tx_counters(&net_ns)?;
                pkts += p1 - p0;
                bytes += b1 - b0;
            }
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    for (_, pod, id) in pods {
        let _ = cri.stop_container(&id, Duration::from_secs(1));
        let _ = cri.remove_container(&id);
        let _ = cri.stop_pod(&pod.id);
        let _ = cri.remove_pod(&pod.id);
    }
    let runs_of = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let med: Vec<f64> = mbits.iter().map(|v| median(&mut v.clone())).collect();
    // each round's runs are seconds apart: their ratio drifts less with the load
    let mut paired: Vec<Vec<f64>> = (0..3)
        .map(|k| (0..runs).map(|r| mbits[k][r] / mbits[3][r]).collect())
        .collect();
    println!("## throughput, gVisor pod → allowed host (iperf3 TCP, {secs} s, median of {runs}, interleaved)\n");
    println!("| pod | Mbit/s median | runs |\n|---|---|---|");
    println!(
        "| with rules (allowlist, `203.0.113.10:5201` allowed) | {:.0} | {} |",
        med[0],
        runs_of(&mbits[0])
    );
    println!(
        "| with `[network]`, the chain short-circuited by a first `accept` | {:.0} | {} |",
        med[1],
        runs_of(&mbits[1])
    );
    println!(
        "| with `[network]`, the previous ruleset (71c0439) | {:.0} | {} |",
        med[2],
        runs_of(&mbits[2])
    );
    println!(
        "| without `[network]` | {:.0} | {} |",
        med[3],
        runs_of(&mbits[3])
    );
    println!(
        "\nratio with rules / without: **{:.3}** (target ≥ 0.95); hook alone / without: {:.3}; previous ruleset / without: {:.3}\n",
        med[0] / med[3],
        med[1] / med[3],
        med[2] / med[3]
    );
    println!(
        "median of the rounds' ratios (runs seconds apart): with rules {:.3}, hook alone {:.3}, previous ruleset {:.3}\n",
        median(&mut paired[0]),
        median(&mut paired[1]),
        median(&mut paired[2])
    );
    let cpu: Vec<f64> = cpu_per_gb.iter().map(|v| median(&mut v.clone())).collect();
    println!(
        "sandbox CPU per GB sent (median ms): with rules {:.0}, hook alone {:.0}, previous ruleset {:.0}, without {:.0}; ratio without / with rules **{:.3}**, without / previous ruleset {:.3}\n",
        cpu[0],
        cpu[1],
        cpu[2],
        cpu[3],
        cpu[3] / cpu[0],
        cpu[3] / cpu[2]
    );
    let run_s = (runs * secs) as f64;
    println!(
        "the rules pod sent {:.0} packets/s of {:.0} bytes on average through the chain\n",
        pkts as f64 / run_s,
        bytes as f64 / pkts.max(1) as f64
    );
    Ok(())
}
