//! Reliability under load: churn, density and a long-lived pod, through CRI
//! on private containerds with real runsc, with a leak check (processes,
//! mounts, network namespaces, cgroups, runsc state, sockets, bundles) after
//! every batch. The faults are in `agentbox_soak_faults.rs`. `make test`
//! runs the short scale; `make soak` (`AGENTBOX_SOAK=full`) the full one and
//! prints the figures RELIABILITY.md records. Needs root.

mod common;
mod soak_common;

use std::time::{Duration, Instant};

use agentbox_e2e::soak::{audit_counts, fd_count, memory_kib, Scale, Scope};
use agentbox_e2e::{skip_unless_root, RUNSC_RUNC_SHIM};
use common::*;
use soak_common::*;

/// Churn: pods created, exec'd and removed through CRI, several at a time;
/// nothing left after each batch; one create and one exit record per
/// container.
#[test]
fn churn() {
    if skip_unless_root("churn") {
        return;
    }
    let scale = Scale::from_env();
    let s = setup("profile = \"standard\"");
    let scope = Scope::new(&s.ctd, s.cfg.path());
    let t0 = Instant::now();
    let mut ids: Vec<String> = vec![];
    let mut n = 0;
    while n < scale.churn {
        let batch = scale.concurrency.min(scale.churn - n);
        let got: Vec<(String, String)> = std::thread::scope(|t| {
            let hs: Vec<_> = (0..batch)
                .map(|i| {
                    let (ctd, scope) = (&s.ctd, &scope);
                    t.spawn(move || {
                        let cri = ctd.cri().expect("CRI client");
                        let (pod, cid) = pod_with_agent(&cri, &format!("churn-{}", n + i));
                        scope.note_sockets();
                        let r = cri
                            .exec_sync(&cid, &["sh", "-c", "echo churned"], T)
                            .expect("ExecSync");
                        assert_eq!(r.stdout, "churned\n");
                        remove_pod(&cri, &pod);
                        (pod.id, cid)
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (p, c) in got {
            ids.push(p);
            ids.push(c);
        }
        n += batch;
        scope.assert_clean(&format!("churn after {n} pods"));
    }
    let took = t0.elapsed();
    assert!(scope.daemons().is_empty());
    let counts = audit_counts(&audit(s.cfg.path()));
    for id in &ids {
        assert_eq!(
            counts.get(id),
            Some(&(1, 1)),
            "container {id}: (create, exit) records"
        );
    }
    assert_eq!(counts.len(), ids.len(), "records of unknown containers");
    report(format!(
        "churn: {} pods ({} containers), {} at a time, {:.1}s, {:.1} pods/min, no leak, {} create and {} exit records",
        scale.churn,
        ids.len(),
        scale.concurrency,
        took.as_secs_f64(),
        scale.churn as f64 * 60.0 / took.as_secs_f64(),
        ids.len(),
        ids.len()
    ));
}

/// Processes of a kind (first argument contains `name`) among `procs`.
fn of_kind<'a>(
    procs: &'a [agentbox_e2e::soak::Proc],
    name: &'a str,
) -> impl Iterator<Item = i32> + 'a {
    procs
        .iter()
        .filter(move |p| p.cmd.first().is_some_and(|c| c.contains(name)))
        .map(|p| p.pid)
}

/// Mean RSS and PSS (KiB) over `pids`.
fn mean_memory(pids: &[i32]) -> (u64, u64) {
    let m: Vec<(u64, u64)> = pids.iter().filter_map(|p| memory_kib(*p)).collect();
    let n = m.len().max(1) as u64;
    (
        m.iter().map(|x| x.0).sum::<u64>() / n,
        m.iter().map(|x| x.1).sum::<u64>() / n,
    )
}

/// Summed RSS and PSS (KiB) over `pids`.
fn total_memory(pids: &[i32]) -> (u64, u64) {
    pids.iter()
        .filter_map(|p| memory_kib(*p))
        .fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1))
}

/// Density: as many idle agent pods as asked for at once; none fails; memory
/// per pod by part, against containerd-shim-runc-v2 in front of the same
/// runsc for a pod sandbox.
#[test]
fn density() {
    if skip_unless_root("density") {
        return;
    }
    let scale = Scale::from_env();
    let s = setup("profile = \"standard\"");
    let scope = Scope::new(&s.ctd, s.cfg.path());
    let t0 = Instant::now();
    let per = scale.density.div_ceil(scale.concurrency);
    let pods: Vec<agentbox_e2e::Pod> = std::thread::scope(|t| {
        let hs: Vec<_> = (0..scale.concurrency)
            .map(|w| {
                let ctd = &s.ctd;
                t.spawn(move || {
                    let cri = ctd.cri().expect("CRI client");
                    (0..per)
                        .map(|i| w * per + i)
                        .filter(|i| *i < scale.density)
                        .map(|i| pod_with_agent(&cri, &format!("dense-{i}")).0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let took = t0.elapsed();
    assert_eq!(pods.len(), scale.density, "pods that failed to start");
    scope.note_sockets();
    std::thread::sleep(Duration::from_secs(3)); // idle: the daemons trim
    let procs = scope.processes();
    let daemons: Vec<i32> = of_kind(&procs, "containerd-shim-agentbox-v1").collect();
    let sandboxes: Vec<i32> = of_kind(&procs, "runsc-sandbox").collect();
    let gofers: Vec<i32> = of_kind(&procs, "runsc-gofer").collect();
    assert_eq!(daemons.len(), scale.density, "one daemon per pod");
    assert_eq!(sandboxes.len(), scale.density, "one sandbox per pod");
    let (d, sb) = (mean_memory(&daemons), mean_memory(&sandboxes));
    let g = total_memory(&gofers);
    let per_pod = |x: u64| x / scale.density as u64;
    let host = <procfs::Meminfo as procfs::Current>::current().unwrap();
    report(format!(
        "density: {} idle pods (sandbox + app container) started in {:.1}s ({} at a time), 0 failures; host MemAvailable {} MiB",
        scale.density,
        took.as_secs_f64(),
        scale.concurrency,
        host.mem_available.unwrap_or(0) >> 20
    ));
    report(format!(
        "density: per pod RSS/PSS KiB: agentbox daemon {}/{}, runsc sandbox {}/{}, gofers ({} per pod) {}/{}",
        d.0,
        d.1,
        sb.0,
        sb.1,
        gofers.len() / scale.density,
        per_pod(g.0),
        per_pod(g.1)
    ));
    // the same runsc behind containerd-shim-runc-v2, for the pod sandbox alone
    let cri = s.ctd.cri().expect("CRI client");
    let baseline_pods: Vec<_> = (0..scale.density.clamp(1, 5))
        .map(|i| {
            cri.run_pod(
                &format!("runc-shim-{i}"),
                "soak",
                &format!("uid-runc-shim-{i}"),
                RUNSC_RUNC_SHIM,
                &[],
            )
            .expect("RunPodSandbox with runc-v2 + runsc")
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let runc_shims: Vec<i32> = agentbox_e2e::util::list_procs()
        .into_iter()
        .filter(|p| {
            p.cmdline
                .first()
                .is_some_and(|c| c.contains("containerd-shim-runc-v2"))
                && p.cmdline
                    .iter()
                    .any(|a| a.contains(&s.ctd.dir().display().to_string()))
        })
        .map(|p| p.pid)
        .collect();
    let r = mean_memory(&runc_shims);
    report(format!(
        "density: containerd-shim-runc-v2 in front of runsc, per pod sandbox ({} pods) RSS/PSS KiB {}/{}; agentbox daemon/runc-v2 PSS {:.2}",
        runc_shims.len(),
        r.0,
        r.1,
        d.1 as f64 / r.1.max(1) as f64
    ));
    for p in baseline_pods {
        cri.stop_pod(&p.id).expect("StopPodSandbox");
        cri.remove_pod(&p.id).expect("RemovePodSandbox");
    }
    let t1 = Instant::now();
    std::thread::scope(|t| {
        for chunk in pods.chunks(per.max(1)) {
            let ctd = &s.ctd;
            t.spawn(move || {
                let cri = ctd.cri().expect("CRI client");
                for p in chunk {
                    remove_pod(&cri, p);
                }
            });
        }
    });
    report(format!(
        "density: {} pods removed in {:.1}s",
        scale.density,
        t1.elapsed().as_secs_f64()
    ));
    scope.assert_clean("density");
}

/// A long-lived pod: many ExecSync calls and container restarts; the
/// daemon's memory and descriptors stay bounded.
#[test]
fn long_lived_pod() {
    if skip_unless_root("long_lived_pod") {
        return;
    }
    let scale = Scale::from_env();
    let s = setup("profile = \"standard\"");
    let scope = Scope::new(&s.ctd, s.cfg.path());
    let cri = s.ctd.cri().expect("CRI client");
    let (pod, mut cid) = pod_with_agent(&cri, "long-lived");
    scope.note_sockets();
    let daemon = scope.daemons();
    assert_eq!(daemon.len(), 1);
    let daemon = daemon[0];
    let restart = |cid: &str| -> String {
        cri.stop_container(cid, Duration::ZERO)
            .expect("StopContainer");
        cri.remove_container(cid).expect("RemoveContainer");
        let c = cri
            .create_container(&pod, &agent())
            .expect("CreateContainer");
        cri.start(&c).expect("StartContainer");
        c
    };
    // warm up: every path has run once
    for _ in 0..20 {
        cri.exec_sync(&cid, &["true"], T).expect("ExecSync");
    }
    cid = restart(&cid);
    std::thread::sleep(Duration::from_secs(2));
    let (rss0, _) = memory_kib(daemon).unwrap();
    let fds0 = fd_count(daemon).unwrap();
    let t0 = Instant::now();
    let every = (scale.execs / scale.restarts.max(1)).max(1);
    let (mut execs, mut restarts) = (0, 0);
    let mut peak = rss0;
    while execs < scale.execs || restarts < scale.restarts {
        if execs < scale.execs {
            let r = cri
                .exec_sync(&cid, &["sh", "-c", "echo $$"], T)
                .expect("ExecSync");
            assert_eq!(r.exit_code, 0);
            execs += 1;
        }
        if restarts < scale.restarts && (execs % every == 0 || execs >= scale.execs) {
            cid = restart(&cid);
            restarts += 1;
            peak = peak.max(memory_kib(daemon).map(|m| m.0).unwrap_or(0));
        }
    }
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, pss1) = memory_kib(daemon).unwrap();
    let fds1 = fd_count(daemon).unwrap();
    report(format!(
        "long-lived pod: {execs} ExecSync and {restarts} container restarts in {:.0}s; daemon RSS {rss0} -> {rss1} KiB (peak {peak}, PSS {pss1}), fds {fds0} -> {fds1}",
        took.as_secs_f64()
    ));
    assert!(fds1 <= fds0 + 2, "descriptors grew: {fds0} -> {fds1}");
    assert!(
        rss1 <= rss0 + 1024,
        "the daemon grew from {rss0} to {rss1} KiB"
    );
    remove_pod(&cri, &pod);
    scope.assert_clean("long-lived pod");
    let counts = audit_counts(&audit(s.cfg.path()));
    assert!(counts.values().all(|c| *c == (1, 1)), "{counts:?}");
    // the pod's sandbox, its first container, the warm-up restart, the restarts
    assert_eq!(counts.len(), 3 + restarts);
}
