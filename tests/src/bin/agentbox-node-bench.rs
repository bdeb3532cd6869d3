//! `make bench-node`: the node agent and the handler it installs, on a
//! private containerd 1.6 laid out like a node (see `agentbox_e2e::node`).
//!
//! 1. install time: the chart's agent pod from start to ready — a first
//!    install (containerd restart included), an install with nothing to do,
//!    and an uninstall; `ROUNDS` rounds, median and spread.
//! 2. pod overhead (what `overhead.podFixed` is set from): an idle gVisor pod
//!    under agentbox — PSS and RSS of the pod's agentbox daemon and runsc
//!    processes (sandbox, gofer), and their CPU over its first 10 s.
//! 3. 20 pods started at once on the installed handler: none may fail; after
//!    they are removed no process, mount, network namespace or runsc state of
//!    theirs may be left.

use std::time::{Duration, Instant};

use agentbox_e2e::node::{gvisor_policy, Agent, Node};
use agentbox_e2e::{ContainerSpec, BUSYBOX_IMAGE};

const ROUNDS: usize = 3;
const PODS: usize = 20;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn rollup(pid: i32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (get("Rss:"), get("Pss:"))
}

fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime, stime are fields 14, 15 (1-based); after ')' the 3rd field is index 0
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

/// PIDs of the agentbox daemon and runsc processes of pod `id`, plus descendants.
fn pod_pids(id: &str) -> Vec<i32> {
    let procs = agentbox_e2e::util::list_procs();
    let roots: std::collections::BTreeSet<i32> = procs
        .iter()
        .filter(|p| p.cmdline.join(" ").contains(id))
        .map(|p| p.pid)
        .collect();
    agentbox_e2e::util::with_descendants(&procs, &roots)
        .into_iter()
        .collect()
}

/// Seconds of the day of a tracing line's RFC 3339 timestamp.
fn stamp(line: &str) -> Option<f64> {
    let t = line
        .split_whitespace()
        .next()?
        .split_once('T')?
        .1
        .trim_end_matches('Z');
    let mut it = t.split(':');
    let (h, m, s) = (it.next()?, it.next()?, it.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// (pod start to ready as the kubelet sees it, the agent's own run from its log)
fn timed_agent(n: &mut Node, ds: &str) -> (f64, f64) {
    let t = Instant::now();
    let (pod, out) = n.run_agent(ds);
    let secs = t.elapsed().as_secs_f64();
    let log = n.log(&pod);
    assert_eq!(out, Agent::Ready, "{log}");
    let first = log.lines().find_map(stamp).unwrap_or(0.0);
    let done = log
        .lines()
        .filter(|l| l.contains("done; staying up"))
        .find_map(stamp)
        .unwrap_or(first);
    n.remove(&pod);
    (secs, done - first)
}

fn main() {
    if !agentbox_e2e::is_root() {
        eprintln!("agentbox-node-bench needs root");
        std::process::exit(1);
    }
    let mut n = Node::start("bookworm", false);
    let policy = gvisor_policy(&n.dir, &n.ctd, "");
    n.render(&n.values(&policy, ""));
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;

    // 1. install time
    let (mut first, mut noop, mut un) = (vec![], vec![], vec![]);
    let (mut first_a, mut noop_a, mut un_a) = (vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let (k, a) = timed_agent(&mut n, "agentbox");
        first.push(k);
        first_a.push(a);
        let (k, a) = timed_agent(&mut n, "agentbox");
        noop.push(k);
        noop_a.push(a);
        let (k, a) = timed_agent(&mut n, "agentbox-uninstall");
        un.push(k);
        un_a.push(a);
    }
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), x| (l.min(*x), h.max(*x)));
        format!("{lo:.1}–{hi:.1}")
    };
    println!("## install time ({ROUNDS} rounds; the agent's own run from its log | its pod from RunPodSandbox to ready, through CRI)");
    for (what, a, k) in [
        ("first install (with containerd restart)", &first_a, &first),
        ("install again (nothing to do)          ", &noop_a, &noop),
        ("uninstall (with containerd restart)    ", &un_a, &un),
    ] {
        println!(
            "{what}: agent median {:.2} s (range {} s) | pod median {:.1} s (range {} s)",
            median(&mut a.clone()),
            spread(a),
            median(&mut k.clone()),
            spread(k)
        );
    }
    let agent = n.run_agent("agentbox");
    assert_eq!(agent.1, Agent::Ready);

    // 2. overhead of one idle gVisor pod
    let cri = n.ctd.cri().unwrap();
    let mut samples = vec![];
    for i in 0..3 {
        let pod = cri
            .run_pod(
                &format!("idle-{i}"),
                "bench",
                &format!("uid-idle-{i}"),
                "agentbox-gvisor",
                &[],
            )
            .unwrap();
        let t0 = Instant::now();
        let pids0 = pod_pids(&pod.id);
        let c0: u64 = pids0.iter().map(|p| cpu_ticks(*p)).sum();
        let id = cri
            .create_container(
                &pod,
                &ContainerSpec::new("idle", BUSYBOX_IMAGE).command(["sleep", "600"]),
            )
            .unwrap();
        cri.start(&id).unwrap();
        std::thread::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed()));
        let pids = pod_pids(&pod.id);
        let cpu: u64 = pids
            .iter()
            .map(|p| cpu_ticks(*p))
            .sum::<u64>()
            .saturating_sub(c0);
        let (rss, pss) = pids
            .iter()
            .map(|p| rollup(*p))
            .fold((0, 0), |(a, b), (r, p)| (a + r, b + p));
        let millicores = cpu as f64 / ticks / t0.elapsed().as_secs_f64() * 1000.0;
        samples.push((pss, rss, millicores, pids.len()));
        cri.stop_container(&id, Duration::from_secs(5)).unwrap();
        cri.remove_container(&id).unwrap();
        cri.stop_pod(&pod.id).unwrap();
        cri.remove_pod(&pod.id).unwrap();
    }
    println!("\n## overhead of an idle gVisor pod under agentbox (daemon + runsc sandbox + gofer)");
    for (pss, rss, mc, np) in &samples {
        println!(
            "PSS {:.1} MiB, RSS {:.1} MiB, CPU over the first 10 s {mc:.0}m ({np} processes)",
            *pss as f64 / 1024.0,
            *rss as f64 / 1024.0
        );
    }

    // 3. 20 pods at once
    let start = Instant::now();
    let results: Vec<Result<(String, String, f64), String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..PODS)
            .map(|i| {
                let ctd = &n.ctd;
                s.spawn(move || {
                    let cri = ctd.cri().map_err(|e| e.to_string())?;
                    let t = Instant::now();
                    let pod = cri
                        .run_pod(
                            &format!("burst-{i}"),
                            "bench",
                            &format!("uid-burst-{i}"),
                            "agentbox-gvisor",
                            &[],
                        )
                        .map_err(|e| format!("pod {i}: {e:#}"))?;
                    let id = cri
                        .create_container(
                            &pod,
                            &ContainerSpec::new("c", BUSYBOX_IMAGE).command(["sleep", "600"]),
                        )
                        .map_err(|e| format!("create {i}: {e:#}"))?;
                    cri.start(&id).map_err(|e| format!("start {i}: {e:#}"))?;
                    let r = cri
                        .exec_sync(&id, &["echo", "ok"], Duration::from_secs(60))
                        .map_err(|e| format!("exec {i}: {e:#}"))?;
                    if r.stdout.trim() != "ok" {
                        return Err(format!("pod {i}: exec said {r:?}"));
                    }
                    Ok((pod.id, id, t.elapsed().as_secs_f64()))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all = start.elapsed().as_secs_f64();
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let ok: Vec<&(String, String, f64)> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let mut lat: Vec<f64> = ok.iter().map(|x| x.2).collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("\n## {PODS} pods started at once on agentbox-gvisor");
    println!(
        "{} ok, {} failed; all running and answering exec after {all:.1} s; per pod: median {:.1} s, slowest {:.1} s",
        ok.len(),
        failed.len(),
        lat.get(lat.len() / 2).copied().unwrap_or(0.0),
        lat.last().copied().unwrap_or(0.0)
    );
    for f in &failed {
        println!("FAILED: {f}");
    }
    for (pod, id, _) in &ok {
        cri.stop_container(id, Duration::from_secs(5)).unwrap();
        cri.remove_container(id).unwrap();
        cri.stop_pod(pod).unwrap();
        cri.remove_pod(pod).unwrap();
    }
    // leaks: processes, mounts, netns, runsc state of those pods
    std::thread::sleep(Duration::from_secs(2));
    let mut leaks = vec![];
    for (pod, _, _) in &ok {
        let left = pod_pids(pod);
        if !left.is_empty() {
            leaks.push(format!("processes of {pod}: {left:?}"));
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for (pod, cid, _) in &ok {
        for l in mounts
            .lines()
            .filter(|l| l.contains(pod.as_str()) || l.contains(cid.as_str()))
        {
            leaks.push(format!("mount: {l}"));
        }
    }
    let netns = n.dir.join("state/io.containerd.grpc.v1.cri/netns");
    let ns_left = std::fs::read_dir(&netns).map(|d| d.count()).unwrap_or(0);
    // the agent's own runc pod has no netns file from gVisor; only sandbox pods' are counted
    let runsc_state = n.dir.join("ab-runsc/k8s.io");
    let runsc_left: Vec<String> = std::fs::read_dir(&runsc_state)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    println!(
        "after removal: {} leaked processes/mounts, {ns_left} network namespace file(s) left (the agent pod's), runsc state entries {:?}",
        leaks.len(),
        runsc_left
    );
    for l in &leaks {
        println!("LEAK: {l}");
    }
    n.remove(&agent.0);
    if !failed.is_empty() || !leaks.is_empty() || !runsc_left.is_empty() || ns_left > 1 {
        std::process::exit(1);
    }
}
