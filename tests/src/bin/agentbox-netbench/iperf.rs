//! iperf3 throughput from gVisor pods to the router's allowed host: with
//! rules, with agentbox's table but its chain short-circuited, with the
//! previous ruleset, and without `[network]`, interleaved.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agentbox_e2e::agentbox::ConfigDir;
use agentbox_e2e::egress::{TestNet, PUBLIC4};
use agentbox_e2e::{ContainerSpec, Containerd, BUSYBOX_IMAGE};
use anyhow::{Context, Result};

use crate::{env_usize, median, pod_netns};

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
                .arg(format!("--net={ns}"))
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
                .arg(format!("--net={ns}"))
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
    for _ in 0..runs {
        for (i, (_, _, id)) in pods.iter().enumerate() {
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
    Ok(())
}
