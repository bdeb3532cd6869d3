//! Reliability under faults: the agentbox daemon, the runsc sandbox and the
//! gofer killed, containerd restarted mid-start, a hung and a broken runsc,
//! storage and config faults, through CRI on private containerds with real
//! runsc, each cycle followed by the leak check. Scale as in
//! `agentbox_soak.rs` (`AGENTBOX_SOAK`). Needs root.

mod common;
mod soak_common;

use std::path::Path;
use std::time::{Duration, Instant};

use agentbox_e2e::cri::v1::{ContainerState, PodSandboxState};
use agentbox_e2e::soak::{alive, audit_counts, Fault, FaultRunsc, Scale, Scope, GARBAGE_SECRET};
use agentbox_e2e::{skip_unless_root, ContainerSpec, BUSYBOX_IMAGE};
use common::*;
use soak_common::*;

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
