//! Reliability: churn, density, a long-lived pod, faults, storage faults and
//! config faults, through CRI on private containerds with real runsc, with a
//! leak check (processes, mounts, network namespaces, cgroups, runsc state,
//! sockets, bundles) after every batch and every fault cycle. `make test`
//! runs the short scale; `make soak` (`AGENTBOX_SOAK=full`) the full one and
//! prints the figures RELIABILITY.md records. Needs root.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentbox_e2e::cri::v1::{ContainerState, PodSandboxState};
use agentbox_e2e::soak::{
    alive, audit_counts, fd_count, memory_kib, Fault, FaultRunsc, Scale, Scope, GARBAGE_SECRET,
};
use agentbox_e2e::{
    skip_unless_root, Binaries, ContainerSpec, Containerd, Cri, BUSYBOX_IMAGE, K8S_NAMESPACE,
    RUNSC_RUNC_SHIM,
};
use common::*;

const T: Duration = Duration::from_secs(60);
/// `[runtime] runsc_timeout_seconds` in these runs: short, so a hung runsc
/// fault costs seconds.
const RUNSC_TIMEOUT: u64 = 5;

struct Setup {
    // dropped after the containerd: it holds agentbox's runsc state
    cfg: ConfigDir,
    ctd: Containerd,
    config: PathBuf,
    opts: agentbox_e2e::ContainerdOptions,
}

fn setup(top: &str) -> Setup {
    let cfg = ConfigDir::new();
    let config = cfg.path().join("agentbox.toml");
    let opts = options(Binaries::system(), &config);
    let ctd = Containerd::start(opts.clone()).expect("start containerd");
    let extra = format!("{top}\n[mounts]\n{}\n", managed_roots(&ctd));
    write_config(cfg.path(), "agentbox", "sandbox", &extra);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[runtime]\n",
        &format!("[runtime]\nrunsc_timeout_seconds = {RUNSC_TIMEOUT}\n"),
    );
    std::fs::write(&config, text).unwrap();
    ctd.import_busybox(K8S_NAMESPACE).expect("import busybox");
    ctd.import_pause().expect("import pause");
    Setup {
        ctd,
        cfg,
        config,
        opts,
    }
}

fn agent() -> ContainerSpec {
    ContainerSpec::new("agent", BUSYBOX_IMAGE).command(["sleep", "600"])
}

/// A pod with one running app container.
fn pod_with_agent(cri: &Cri, name: &str) -> (agentbox_e2e::Pod, String) {
    let pod = cri
        .run_pod(name, "soak", &format!("uid-{name}"), AGENTBOX, &[])
        .expect("RunPodSandbox");
    let cid = cri
        .create_container(&pod, &agent())
        .expect("CreateContainer");
    cri.start(&cid).expect("StartContainer");
    (pod, cid)
}

fn remove_pod(cri: &Cri, pod: &agentbox_e2e::Pod) {
    if let Ok(cs) = cri.list_containers(Some(&pod.id)) {
        for c in cs {
            let _ = cri.stop_container(&c.id, Duration::ZERO);
            cri.remove_container(&c.id).expect("RemoveContainer");
        }
    }
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
}

fn kill9(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

fn report(line: String) {
    println!("RELIABILITY {line}");
}

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

/// `kill -9` of the agentbox daemon during Create, during Start and while
/// idle: containerd's cleanup leaves nothing behind.
#[test]
fn faults_daemon_killed() {
    if skip_unless_root("faults_daemon_killed") {
        return;
    }
    let scale = Scale::from_env();
    let s = setup("profile = \"standard\"");
    let fault = FaultRunsc::install(s.cfg.path(), &s.config);
    let scope = Scope::new(&s.ctd, s.cfg.path());
    let cri = s.ctd.cri().expect("CRI client");
    for cycle in 0..scale.cycles {
        for sub in ["create", "start"] {
            fault.arm(Fault::Pause, sub);
            let name = format!("kill-{sub}-{cycle}");
            let run = std::thread::scope(|t| {
                let h = t.spawn(|| {
                    let cri = s.ctd.cri().expect("CRI client");
                    cri.run_pod(&name, "soak", &format!("uid-{name}"), AGENTBOX, &[])
                });
                assert!(fault.reached(T), "runsc {sub} was not reached");
                scope.note_sockets();
                let d = scope.daemons();
                assert_eq!(d.len(), 1, "{d:?}");
                kill9(d[0]);
                fault.release();
                h.join().unwrap()
            });
            assert!(
                run.is_err(),
                "the pod ran with its daemon killed during {sub}"
            );
            cri.remove_all_pods(T);
            scope.assert_clean(&format!("daemon killed during {sub}, cycle {cycle}"));
        }
        // idle
        let (pod, cid) = pod_with_agent(&cri, &format!("kill-idle-{cycle}"));
        scope.note_sockets();
        let d = scope.daemons();
        assert_eq!(d.len(), 1);
        kill9(d[0]);
        cri.wait_container_exit(&cid, T)
            .expect("containerd learns the container is gone");
        remove_pod(&cri, &pod);
        scope.assert_clean(&format!("daemon killed while idle, cycle {cycle}"));
    }
    let cleanups = audit(s.cfg.path())
        .iter()
        .filter(|r| r["event"] == "cleanup")
        .count();
    assert!(cleanups >= scale.cycles, "{cleanups} cleanup records");
    report(format!(
        "faults: agentbox daemon kill -9 during create, during start, idle: {} cycles each, no leak",
        scale.cycles
    ));
}

/// The pod's runsc process of a kind (`runsc-sandbox`, `runsc-gofer`).
fn runsc_process(scope: &Scope, kind: &str, pod: &str) -> i32 {
    let procs = scope.processes();
    let found: Vec<i32> = procs
        .iter()
        .filter(|p| {
            p.cmd.first().is_some_and(|c| c.contains(kind)) && p.cmd.iter().any(|a| a.contains(pod))
        })
        .map(|p| p.pid)
        .collect();
    assert_eq!(found.len(), 1, "{kind} of {pod}: {procs:#?}");
    found[0]
}

/// `kill -9` of the runsc sandbox (containerd is told the containers
/// exited; the pod can be removed) and of the gofer.
#[test]
fn faults_sandbox_and_gofer_killed() {
    if skip_unless_root("faults_sandbox_and_gofer_killed") {
        return;
    }
    let scale = Scale::from_env();
    let s = setup("profile = \"standard\"");
    let scope = Scope::new(&s.ctd, s.cfg.path());
    let cri = s.ctd.cri().expect("CRI client");
    for cycle in 0..scale.cycles {
        for kind in ["runsc-sandbox", "runsc-gofer"] {
            let (pod, cid) = pod_with_agent(&cri, &format!("kill-{kind}-{cycle}"));
            scope.note_sockets();
            let victim = runsc_process(&scope, kind, &pod.id);
            kill9(victim);
            if kind == "runsc-sandbox" {
                let code = cri
                    .wait_container_exit(&cid, T)
                    .expect("TaskExit reaches CRI");
                assert_eq!(code, 137, "exit status of a killed sandbox");
                let ready = cri.pod_status(&pod.id).unwrap().state;
                assert_eq!(ready, PodSandboxState::SandboxNotready as i32);
            }
            remove_pod(&cri, &pod);
            scope.assert_clean(&format!("{kind} killed, cycle {cycle}"));
            let counts = audit_counts(&audit(s.cfg.path()));
            assert_eq!(counts.get(&cid), Some(&(1, 1)), "{kind}: records of {cid}");
        }
    }
    report(format!(
        "faults: runsc sandbox kill -9 and gofer kill -9: {} cycles each, TaskExit reached CRI (137), no leak",
        scale.cycles
    ));
}

/// containerd restarted while a pod starts: the pod can be removed and
/// nothing is left.
#[test]
fn fault_containerd_restarted_during_pod_start() {
    if skip_unless_root("fault_containerd_restarted_during_pod_start") {
        return;
    }
    let scale = Scale::from_env();
    let mut s = setup("profile = \"standard\"");
    let fault = FaultRunsc::install(s.cfg.path(), &s.config);
    let mut scope = Scope::new(&s.ctd, s.cfg.path());
    for cycle in 0..scale.cycles {
        fault.arm(Fault::Pause, "create");
        let name = format!("restart-{cycle}");
        let h = {
            let cri = s.ctd.cri().expect("CRI client");
            std::thread::spawn(move || {
                let r = cri.run_pod(&name, "soak", &format!("uid-{name}"), AGENTBOX, &[]);
                drop(cri);
                r
            })
        };
        assert!(fault.reached(T), "runsc create was not reached");
        scope.note_sockets();
        s.ctd.restart(&s.opts).expect("restart containerd");
        scope.restarted(&s.ctd);
        fault.release();
        let _ = h.join().unwrap();
        let cri = s.ctd.cri().expect("CRI client after restart");
        // CRI answers once it recovered its pods
        assert!(
            wait_until(T, || cri.list_pods().is_ok()),
            "CRI did not come back"
        );
        cri.remove_all_pods(T);
        scope.assert_clean(&format!(
            "containerd restarted during a pod start, cycle {cycle}"
        ));
        // and the node still runs pods
        let (pod, _) = pod_with_agent(&cri, &format!("after-restart-{cycle}"));
        remove_pod(&cri, &pod);
        scope.assert_clean(&format!("after the restart, cycle {cycle}"));
    }
    report(format!(
        "faults: containerd restarted during a pod start: {} cycles, no leak",
        scale.cycles
    ));
}

/// A runsc that hangs (killed at the timeout, the call fails clearly, the
/// daemon serves the pod's other containers meanwhile) and one that exits
/// with garbage on stderr (the error reaches CRI without the secret).
#[test]
fn faults_hung_and_broken_runsc() {
    if skip_unless_root("faults_hung_and_broken_runsc") {
        return;
    }
    let scale = Scale::from_env();
    let s = setup("profile = \"standard\"");
    let fault = FaultRunsc::install(s.cfg.path(), &s.config);
    let scope = Scope::new(&s.ctd, s.cfg.path());
    let cri = s.ctd.cri().expect("CRI client");
    let late = |name: &str| ContainerSpec::new(name, BUSYBOX_IMAGE).command(["sleep", "600"]);
    for cycle in 0..scale.cycles {
        let (pod, cid) = pod_with_agent(&cri, &format!("hang-{cycle}"));
        scope.note_sockets();
        // CRI runs `runsc create` at StartContainer
        let hung_c = cri
            .create_container(&pod, &late("hung"))
            .expect("CreateContainer");
        fault.arm(Fault::Hang, "create");
        let t0 = Instant::now();
        let started = std::thread::scope(|t| {
            let h = t.spawn(|| {
                let cri = s.ctd.cri().expect("CRI client");
                cri.start(&hung_c)
            });
            let end = Instant::now() + T;
            while fault.hung_pid().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            assert!(fault.hung_pid().is_some(), "runsc create did not hang");
            // the daemon serves the pod meanwhile
            let t1 = Instant::now();
            let r = cri
                .exec_sync(&cid, &["echo", "served"], T)
                .expect("ExecSync while runsc hangs");
            assert_eq!(r.stdout, "served\n");
            assert!(t1.elapsed() < Duration::from_secs(RUNSC_TIMEOUT));
            h.join().unwrap()
        });
        let e = started.expect_err("a hung runsc create fails").to_string();
        assert!(
            e.contains(&format!("runsc create timed out after {RUNSC_TIMEOUT}s")),
            "{e}"
        );
        assert!(t0.elapsed() < Duration::from_secs(RUNSC_TIMEOUT + 30));
        let hung = fault.hung_pid().unwrap();
        assert!(!alive(hung), "the hung runsc {hung} was left running");

        let broken = cri
            .create_container(&pod, &late("broken"))
            .expect("CreateContainer");
        fault.arm(Fault::Garbage, "create");
        let e = cri
            .start(&broken)
            .expect_err("a broken runsc fails the start")
            .to_string();
        assert!(e.contains("runsc create failed (exit status 3)"), "{e}");
        assert!(!e.contains(GARBAGE_SECRET), "the secret reached CRI: {e}");
        assert!(e.contains("GITHUB_TOKEN=[redacted]"), "{e}");
        assert!(!e.chars().any(|c| c.is_control() && c != '\n'), "{e:?}");
        remove_pod(&cri, &pod);
        scope.assert_clean(&format!("hung and broken runsc, cycle {cycle}"));
    }
    let log = std::fs::read_to_string(s.cfg.path().join("audit.jsonl")).unwrap();
    assert!(!log.contains(GARBAGE_SECRET));
    report(format!(
        "faults: hung runsc create (killed after {RUNSC_TIMEOUT}s, pod served meanwhile) and runsc exiting 3 with garbage and a secret on stderr: {} cycles each, no leak, no secret in CRI errors",
        scale.cycles
    ));
}

fn mount_tmpfs(at: &Path, opts: &str) {
    std::fs::create_dir_all(at).unwrap();
    let o = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", opts, "agentbox-soak"])
        .arg(at)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn umount(at: &Path) {
    let _ = std::process::Command::new("umount").arg(at).status();
}

fn set_audit_path(config: &Path, path: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let mut out: Vec<String> = text.lines().map(str::to_string).collect();
    let i = out.iter().position(|l| l == "[audit]").unwrap();
    out[i + 1] = format!("path = \"{}\"", path.display());
    std::fs::write(config, out.join("\n") + "\n").unwrap();
}

/// Storage faults: the audit log on a full filesystem (Create refused,
/// nothing runs); the log rotated away under a running pod (agentbox writes
/// to the new file, no record lost); runsc's state root read-only (a clear
/// error, nothing half-made).
#[test]
fn storage_faults() {
    if skip_unless_root("storage_faults") {
        return;
    }
    let scale = Scale::from_env();
    let s = setup("profile = \"standard\"");
    let scope = Scope::new(&s.ctd, s.cfg.path());
    let cri = s.ctd.cri().expect("CRI client");
    let cycles = scale.cycles;

    // (the test's own mounts live outside the folders the leak check watches)
    let fs = tempfile::Builder::new()
        .prefix("ab-soakfs")
        .tempdir_in("/tmp")
        .unwrap();
    // 1. a full filesystem under the audit log
    let full = fs.path().join("full");
    mount_tmpfs(&full, "size=16k");
    let _ = std::fs::write(full.join("filler"), vec![0u8; 64 << 10]);
    set_audit_path(&s.config, &full.join("audit.jsonl"));
    for cycle in 0..cycles {
        let e = cri
            .run_pod(&format!("full-{cycle}"), "soak", "uid-full", AGENTBOX, &[])
            .expect_err("a pod runs without its audit record")
            .to_string();
        assert!(
            e.contains("cannot write audit log") && e.contains("No space left"),
            "{e}"
        );
        cri.remove_all_pods(T);
        scope.assert_clean(&format!("full audit filesystem, cycle {cycle}"));
    }
    umount(&full);
    set_audit_path(&s.config, &s.cfg.path().join("audit.jsonl"));

    // 2. rotation under a running pod, as logrotate does it
    for cycle in 0..cycles {
        let log = s.cfg.path().join("audit.jsonl");
        let (pod, cid) = pod_with_agent(&cri, &format!("rotate-{cycle}"));
        scope.note_sockets();
        let rotated = s.cfg.path().join(format!("audit.jsonl.{cycle}"));
        std::fs::rename(&log, &rotated).unwrap();
        std::fs::write(&log, "").unwrap();
        for _ in 0..5 {
            cri.exec_sync(&cid, &["true"], T).expect("ExecSync");
        }
        remove_pod(&cri, &pod);
        scope.assert_clean(&format!("rotated audit log, cycle {cycle}"));
        let read = |p: &Path| -> Vec<serde_json::Value> {
            std::fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let (old, new) = (read(&rotated), read(&log));
        let execs = new
            .iter()
            .filter(|r| r["event"] == "exec" && r["container_id"] == cid.as_str())
            .count();
        assert_eq!(execs, 5, "exec records after the rotation");
        let mut all = old.clone();
        all.extend(new);
        let counts = audit_counts(&all);
        assert_eq!(counts.get(&cid), Some(&(1, 1)));
        assert_eq!(counts.get(&pod.id), Some(&(1, 1)));
    }

    // 3. runsc's state root on a read-only filesystem
    let ro = fs.path().join("ro");
    mount_tmpfs(&ro, "size=16k,ro");
    let text = std::fs::read_to_string(&s.config).unwrap();
    let moved = text
        .lines()
        .map(|l| {
            if l.starts_with("runsc_root = ") {
                format!("runsc_root = \"{}\"", ro.display())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&s.config, moved + "\n").unwrap();
    for cycle in 0..cycles {
        let e = cri
            .run_pod(&format!("ro-{cycle}"), "soak", "uid-ro", AGENTBOX, &[])
            .expect_err("a pod runs without its runsc state")
            .to_string();
        assert!(
            e.contains("cannot create runsc root") && e.contains("Read-only file system"),
            "{e}"
        );
        cri.remove_all_pods(T);
        scope.assert_clean(&format!("read-only runsc root, cycle {cycle}"));
    }
    umount(&ro);
    std::fs::write(&s.config, text).unwrap();
    report(format!(
        "storage: full audit filesystem (Create refused), audit log rotated under a running pod (no record lost), read-only runsc root (clear error): {cycles} cycles each, no leak"
    ));
}

/// The config replaced with garbage while pods run: running pods are
/// unaffected, new pods and containers are refused with the parse error
/// naming the file and line.
#[test]
fn config_faults() {
    if skip_unless_root("config_faults") {
        return;
    }
    let scale = Scale::from_env();
    let s = setup("profile = \"standard\"");
    let scope = Scope::new(&s.ctd, s.cfg.path());
    let cri = s.ctd.cri().expect("CRI client");
    let good = std::fs::read_to_string(&s.config).unwrap();
    for cycle in 0..scale.cycles {
        let (pod, cid) = pod_with_agent(&cri, &format!("config-{cycle}"));
        scope.note_sockets();
        std::fs::write(
            &s.config,
            "profile = \"standard\"\n[runtime\n\u{1}garbage = = 3\n",
        )
        .unwrap();
        let r = cri
            .exec_sync(&cid, &["echo", "unaffected"], T)
            .expect("the running pod is unaffected");
        assert_eq!(r.stdout, "unaffected\n");
        let shown = s.config.display().to_string();
        let e = cri
            .run_pod(
                &format!("refused-{cycle}"),
                "soak",
                "uid-refused",
                AGENTBOX,
                &[],
            )
            .expect_err("a new pod under a broken config")
            .to_string();
        assert!(e.contains(&shown) && e.contains("line 2"), "{e}");
        let late = cri
            .create_container(
                &pod,
                &ContainerSpec::new("late", BUSYBOX_IMAGE).command(["true"]),
            )
            .expect("CreateContainer (CRI runs the shim at start)");
        let e = cri
            .start(&late)
            .expect_err("a new container under a broken config")
            .to_string();
        assert!(e.contains(&shown) && e.contains("line 2"), "{e}");
        std::fs::write(&s.config, &good).unwrap();
        cri.remove_all_pods(T);
        let st = cri.list_containers(Some(&pod.id)).unwrap_or_default();
        assert!(
            st.is_empty()
                || st
                    .iter()
                    .all(|c| c.state != ContainerState::ContainerRunning as i32)
        );
        scope.assert_clean(&format!("garbage config, cycle {cycle}"));
        let counts = audit_counts(&audit(s.cfg.path()));
        assert_eq!(counts.get(&cid), Some(&(1, 1)), "the running pod's records");
    }
    report(format!(
        "config: replaced with garbage under a running pod: {} cycles, pod unaffected, new pods and containers refused naming file and line, no leak",
        scale.cycles
    ));
}
