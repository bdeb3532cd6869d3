//! agentbox through CRI, as the kubelet calls it: pods under one gVisor
//! sandbox, the policy applied to every container, setup and agent phases,
//! exit statuses and the lifetime limit. Needs root.

mod common;

use std::time::Duration;

use agentbox_e2e::cri::v1::ContainerState;
use agentbox_e2e::{
    skip, skip_unless_root, Binaries, ContainerSpec, Containerd, BUSYBOX_IMAGE, K8S_NAMESPACE,
};
use common::*;

const T: Duration = Duration::from_secs(60);

/// Start a containerd whose `agentbox` handler reads `cfg/agentbox.toml`,
/// written once the containerd's folders are known. `top` goes at the top of
/// the file, `mounts` into its `[mounts]` table (with the managed roots).
fn start(cfg: &ConfigDir, top: &str, mounts: &str) -> Containerd {
    let path = cfg.path().join("agentbox.toml");
    let ctd = Containerd::start(options(Binaries::system(), &path)).expect("start containerd");
    let extra = format!("{top}\n[mounts]\n{}\n{mounts}\n", managed_roots(&ctd));
    write_config(cfg.path(), "agentbox", "sandbox", &extra);
    ctd.import_busybox(K8S_NAMESPACE).expect("import busybox");
    ctd
}

/// Two app containers in one pod share one runsc sandbox; the pod's address is
/// inside; ExecSync, logs, stop and remove work; the policy was applied.
#[test]
fn pod_with_two_containers_under_one_gvisor_sandbox() {
    if skip_unless_root("pod_with_two_containers_under_one_gvisor_sandbox") {
        return;
    }
    let cfg = ConfigDir::new();
    let ctd = start(&cfg, "profile = \"sensitive\"", "");
    let cri = ctd.cri().expect("CRI client");
    let pod = cri
        .run_pod("agent-pod", "team-a", "uid-agent-1", AGENTBOX, &[])
        .expect("RunPodSandbox");
    let ip = cri.pod_ip(&pod.id).expect("pod ip");
    assert!(
        ctd.network().contains(&ip),
        "pod IP {ip:?} not in {}",
        ctd.network().subnet()
    );

    let secret = format!("ghp_{}", "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2");
    let a = ContainerSpec::new("agent", BUSYBOX_IMAGE)
        .command(["sh", "-c"])
        .args(["echo agent-started; exec sleep 300"])
        .env("GITHUB_TOKEN", &secret)
        .env("EDITOR", "vi");
    let b = ContainerSpec::new("helper", BUSYBOX_IMAGE).command(["sleep", "300"]);
    let ida = cri
        .create_container(&pod, &a)
        .expect("CreateContainer agent");
    cri.start(&ida).expect("StartContainer agent");
    let idb = cri
        .create_container(&pod, &b)
        .expect("CreateContainer helper");
    cri.start(&idb).expect("StartContainer helper");
    for id in [&ida, &idb] {
        let st = cri.container_status(id).unwrap();
        assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
    }

    // one gVisor kernel for the whole pod: both containers see the same boot log
    let da = cri.exec_sync(&ida, &["dmesg"], T).expect("exec dmesg");
    assert!(da.stdout.contains("Starting gVisor"), "{da:?}");
    let db = cri.exec_sync(&idb, &["dmesg"], T).expect("exec dmesg");
    assert_eq!(da.stdout.lines().next(), db.stdout.lines().next());
    // ...and one runsc sandbox process tree: the subcontainers are in runsc's list
    let list = std::process::Command::new("runsc")
        .arg(format!(
            "--root={}",
            cfg.path().join("ab-runsc").join(K8S_NAMESPACE).display()
        ))
        .args(["list", "-quiet"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    for id in [&pod.id, &ida, &idb] {
        assert!(
            list.lines().any(|l| l.trim() == id),
            "{id} not in runsc list: {list}"
        );
    }

    // the pod's network address is on the sandbox's interface
    let r = cri
        .exec_sync(&ida, &["ip", "-4", "addr"], T)
        .expect("exec ip");
    assert!(r.stdout.contains(&ip), "{ip} not in {r:?}");

    // the secret is gone, ordinary env stays
    let env = cri.exec_sync(&ida, &["env"], T).expect("exec env");
    assert!(!env.stdout.contains("GITHUB_TOKEN"), "{}", env.stdout.len());
    assert!(!env.stdout.contains(&secret));
    assert!(env.stdout.contains("EDITOR=vi"), "{env:?}");

    // exit statuses of exec'd processes
    let r = cri
        .exec_sync(&idb, &["sh", "-c", "echo out; exit 3"], T)
        .expect("exec");
    assert_eq!((r.exit_code, r.stdout.as_str()), (3, "out\n"));

    // logs
    let logs = cri.container_log_text(&pod, "agent", None).expect("logs");
    assert!(logs.contains("agent-started"), "{logs:?}");

    // the audit log has the pod's containers and no secret value
    let text = std::fs::read_to_string(cfg.path().join("audit.jsonl")).unwrap();
    assert!(!text.contains(&secret));
    let recs = audit(cfg.path());
    let created: Vec<_> = recs.iter().filter(|r| r["event"] == "create").collect();
    assert_eq!(created.len(), 3, "{recs:#?}");
    assert!(created.iter().any(|r| r["container"] == "agent"
        && r["pod"] == "agent-pod"
        && r["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["target"] == "GITHUB_TOKEN")));
    // every record of the pod names it fully: namespace, pod, sandbox, profile
    for r in &created {
        assert_eq!(r["pod_namespace"], "team-a", "{r:#}");
        assert_eq!(r["sandbox_id"], pod.id.as_str(), "{r:#}");
        assert_eq!(r["profile"], "sensitive", "{r:#}");
        assert_eq!(r["namespace"], K8S_NAMESPACE, "{r:#}");
    }

    // Stopping the agent first also kills the helper at that instant (runsc
    // 2022-12-19 puts the helper's processes in the agent's PID namespace):
    // the helper's exit must still be recorded (`remove_container` waits, as
    // the kubelet does, while containerd 1.6 finishes it).
    for id in [&ida, &idb] {
        cri.stop_container(id, Duration::from_secs(5))
            .expect("StopContainer");
        cri.remove_container(id).expect("RemoveContainer");
    }
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
    assert!(cri.list_pods().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let left = processes_mentioning(&pod.id);
    assert!(left.is_empty(), "processes left: {left:#?}");
}

/// A setup-phase container keeps its token; the agent container beside it,
/// in the same pod, does not. A container exiting non-zero reports its status.
#[test]
fn setup_phase_keeps_secrets_agent_phase_does_not() {
    if skip_unless_root("setup_phase_keeps_secrets_agent_phase_does_not") {
        return;
    }
    let cfg = ConfigDir::new();
    // an admin's extra format (issue 12): the node's rules apply in the shim
    let top = "profile = \"standard\"\n\
               [[env.secret_rules]]\n\
               id = \"acme-api-token\"\n\
               prefix = \"acme_\"\n\
               length = 32\n";
    let ctd = start(&cfg, top, "");
    let cri = ctd.cri().expect("CRI client");
    let pod = cri
        .run_pod(
            "phases",
            "team-b",
            "uid-phases",
            AGENTBOX,
            &[("agentbox.dev/setup-containers", "setup")],
        )
        .expect("RunPodSandbox");
    let token = format!("glpat-{}", "AbCdEfGhIjKlMnOpQrSt");
    // under innocuous names: a built-in format from the examples and
    // the node's own rule
    let docker = format!("dckr_pat_{}", "Q7rT2yU9iO4pA6sD1fG8hJ3kL5z");
    let acme = format!("acme_{}", "Zx4Cv7Bn2Mq9Wk3Er6Ty1Ui8Op5As0Df");
    let mk = |name: &str| {
        ContainerSpec::new(name, BUSYBOX_IMAGE)
            .command(["sh", "-c"])
            .args(
                ["for v in REPO_TOKEN DOCKER UPSTREAM; do eval \"x=\\$$v\"; \
                 if [ -n \"$x\" ]; then echo has-$v; else echo no-$v; fi; done; exit 4"],
            )
            .env("REPO_TOKEN", &token)
            .env("DOCKER", &docker)
            .env("UPSTREAM", &acme)
    };
    let setup = cri
        .create_container(&pod, &mk("setup"))
        .expect("create setup");
    cri.start(&setup).expect("start setup");
    assert_eq!(
        cri.wait_container_exit(&setup, T).expect("setup exits"),
        4,
        "non-zero exit reported"
    );
    let agent = cri
        .create_container(&pod, &mk("agent"))
        .expect("create agent");
    cri.start(&agent).expect("start agent");
    assert_eq!(cri.wait_container_exit(&agent, T).expect("agent exits"), 4);
    let s = cri.container_log_text(&pod, "setup", None).unwrap();
    let a = cri.container_log_text(&pod, "agent", None).unwrap();
    for v in ["REPO_TOKEN", "DOCKER", "UPSTREAM"] {
        assert!(s.contains(&format!("has-{v}")), "setup container: {s:?}");
        assert!(a.contains(&format!("no-{v}")), "agent container: {a:?}");
    }

    let recs = audit(cfg.path());
    let phase = |name: &str| {
        recs.iter()
            .find(|r| r["event"] == "create" && r["container"] == name)
            .map(|r| r["phase"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(phase("setup").as_deref(), Some("setup"));
    assert_eq!(phase("agent").as_deref(), Some("agent"));
    assert!(recs
        .iter()
        .any(|r| r["event"] == "exit" && r["exit_status"] == 4));
    // the agent's record names the detector rules, never a value
    let rules: Vec<String> = recs
        .iter()
        .find(|r| r["event"] == "create" && r["container"] == "agent")
        .and_then(|r| r["changes"].as_array())
        .map(|c| {
            c.iter()
                .filter_map(|c| c["detail"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for rule in ["name-token", "docker-hub-token", "acme-api-token"] {
        assert!(rules.iter().any(|r| r == rule), "{rule} not in {rules:?}");
    }
    let text = std::fs::read_to_string(cfg.path().join("audit.jsonl")).unwrap();
    for value in [&token, &docker, &acme] {
        assert!(
            !text.contains(value.as_str()),
            "a value is in the audit log"
        );
    }
    for id in [&setup, &agent] {
        cri.remove_container(id).expect("RemoveContainer");
    }
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
}

/// The lifetime limit stops a container that runs too long (TERM, then KILL),
/// and the audit log says so.
#[test]
fn lifetime_limit_stops_the_container() {
    if skip_unless_root("lifetime_limit_stops_the_container") {
        return;
    }
    let cfg = ConfigDir::new();
    let ctd = start(
        &cfg,
        "profile = \"standard\"\n[lifetime]\nmax_seconds = 2\ngrace_seconds = 1",
        "",
    );
    let cri = ctd.cri().expect("CRI client");
    let pod = cri
        .run_pod("short", "team-c", "uid-short", AGENTBOX, &[])
        .expect("RunPodSandbox");
    let spec = ContainerSpec::new("agent", BUSYBOX_IMAGE).command(["sleep", "600"]);
    // the pod's lifetime counts from its first app container's Create
    let t0 = std::time::Instant::now();
    let id = cri.create_container(&pod, &spec).expect("create");
    cri.start(&id).expect("start");
    let code = cri
        .wait_container_exit(&id, T)
        .expect("the lifetime limit ends the container");
    let took = t0.elapsed();
    assert!(code == 143 || code == 137, "exit {code}");
    assert!(
        took >= Duration::from_secs(2),
        "stopped after {took:?}, before its lifetime"
    );
    let recs = audit(cfg.path());
    assert!(
        recs.iter().any(|r| r["event"] == "lifetime"
            && r["container"] == "agent"
            && r["max_seconds"] == 2),
        "{recs:#?}"
    );
    cri.remove_container(&id).expect("RemoveContainer");
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
}

/// A pod whose policy refuses it never runs: RunPodSandbox fails with the
/// policy's reason and no runsc process exists for it.
#[test]
fn refused_container_never_runs() {
    if skip_unless_root("refused_container_never_runs") {
        return;
    }
    let cfg = ConfigDir::new();
    let ctd = start(&cfg, "profile = \"sensitive\"", "");
    let cri = ctd.cri().expect("CRI client");
    let pod = cri
        .run_pod("refuse", "team-d", "uid-refuse", AGENTBOX, &[])
        .expect("RunPodSandbox");
    let host = cfg.path().join("host-data");
    std::fs::create_dir_all(&host).unwrap();
    let spec = ContainerSpec::new("agent", BUSYBOX_IMAGE)
        .command(["true"])
        .mount(&host, "/data", false);
    let id = cri
        .create_container(&pod, &spec)
        .expect("CreateContainer (the spec is only checked at task create)");
    let err = cri
        .start(&id)
        .expect_err("the policy refuses a writable host mount under sensitive");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("agentbox policy refused") && msg.contains("/data"),
        "{msg}"
    );
    assert!(
        processes_mentioning(&id).is_empty(),
        "a process runs for the refused container"
    );
    let recs = audit(cfg.path());
    let rejects: Vec<_> = recs
        .iter()
        .filter(|r| r["event"] == "reject" && r["container"] == "agent")
        .collect();
    assert_eq!(rejects.len(), 1, "{recs:#?}");
    // the record says why, as the error did
    let reason = rejects[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("/data"), "{:#}", rejects[0]);
    assert_eq!(rejects[0]["pod_namespace"], "team-d");
    let _ = cri.remove_container(&id);
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
}

/// The shim backend through CRI (agentbox in front of runc-v2): a pod with a
/// setup container that keeps its token, an agent container that does not,
/// and the lifetime limit enforced by forwarding Kill.
#[test]
fn shim_backend_pod_phases_and_lifetime() {
    if skip_unless_root("shim_backend_pod_phases_and_lifetime") {
        return;
    }
    let cfg = ConfigDir::new();
    let ctd = start(
        &cfg,
        "profile = \"standard\"\n[lifetime]\nmax_seconds = 2\ngrace_seconds = 1",
        "",
    );
    let path = cfg.path().join("agentbox.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[runtime]\n", "[runtime]\nbackend = \"shim\"\nshim = \"containerd-shim-runc-v2\"\nsandbox = \"none\"\n")
        .replace("network = \"sandbox\"", "network = \"none\"");
    std::fs::write(&path, text).unwrap();
    let cri = ctd.cri().expect("CRI client");
    let pod = cri
        .run_pod(
            "fwd",
            "team-f",
            "uid-fwd",
            AGENTBOX,
            &[("agentbox.dev/setup-containers", "setup")],
        )
        .expect("RunPodSandbox");
    let token = format!("npm_{}", "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789");
    let mk = |name: &str, cmd: &str| {
        ContainerSpec::new(name, BUSYBOX_IMAGE)
            .command(["sh", "-c"])
            .args([cmd.to_string()])
            .env("NPM_TOKEN", &token)
    };
    // the pod's lifetime counts from its first app container's Create
    let t0 = std::time::Instant::now();
    let setup = cri
        .create_container(
            &pod,
            &mk(
                "setup",
                "[ -n \"$NPM_TOKEN\" ] && echo has-token || echo no-token",
            ),
        )
        .unwrap();
    cri.start(&setup).unwrap();
    assert_eq!(cri.wait_container_exit(&setup, T).unwrap(), 0);
    let agent = cri
        .create_container(
            &pod,
            &mk(
                "agent",
                "[ -n \"$NPM_TOKEN\" ] && echo has-token || echo no-token; exec sleep 600",
            ),
        )
        .unwrap();
    cri.start(&agent).unwrap();
    let code = cri
        .wait_container_exit(&agent, T)
        .expect("lifetime ends the agent");
    assert!(code == 143 || code == 137, "exit {code}");
    assert!(t0.elapsed() >= Duration::from_secs(2));
    assert!(cri
        .container_log_text(&pod, "setup", None)
        .unwrap()
        .contains("has-token"));
    assert!(cri
        .container_log_text(&pod, "agent", None)
        .unwrap()
        .contains("no-token"));
    let recs = audit(cfg.path());
    assert!(
        recs.iter()
            .any(|r| r["event"] == "lifetime" && r["container"] == "agent"),
        "{recs:#?}"
    );
    // the pod sandbox, the setup and the agent container: each went through
    // the delegate, with no sandbox of its own
    let creates: Vec<_> = recs.iter().filter(|r| r["event"] == "create").collect();
    assert_eq!(creates.len(), 3, "{recs:#?}");
    assert!(creates
        .iter()
        .all(|r| r["sandbox"] == "none" && r["runtime"] == "shim"));
    for id in [&setup, &agent] {
        cri.remove_container(id).unwrap();
    }
    cri.stop_pod(&pod.id).unwrap();
    cri.remove_pod(&pod.id).unwrap();
}

/// A pod whose memory runs out (a limit on the pod's cgroup, as the kubelet
/// sets it) is OOM-killed by the host: the container's CRI status says
/// `OOMKilled`, with exit code 137.
#[test]
fn oom_killed_pod_is_reported_through_cri() {
    if skip_unless_root("oom_killed_pod_is_reported_through_cri") {
        return;
    }
    let cfg = ConfigDir::new();
    let ctd = start(&cfg, "profile = \"standard\"", "");
    let cri = ctd.cri().expect("CRI client");
    let uid = "uid-oom";
    let pod = cri
        .run_pod("oom", "team-o", uid, AGENTBOX, &[])
        .expect("RunPodSandbox");
    // the kubelet's pod-level limit: on the pod cgroup the sandbox lives
    // under, in the v1 memory hierarchy or the unified (v2) one
    let rel =
        std::path::Path::new(ctd.cgroup_parent().trim_start_matches('/')).join(format!("pod{uid}"));
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").join(&rel);
    let v2 = std::path::Path::new("/sys/fs/cgroup").join(&rel);
    let limit = if v1.join("memory.limit_in_bytes").exists() {
        v1.join("memory.limit_in_bytes")
    } else if v2.join("memory.max").exists() {
        v2.join("memory.max")
    } else {
        let why = format!(
            "no memory controller at {} (v1) or {} (v2)",
            v1.display(),
            v2.display()
        );
        if skip("oom_killed_pod_is_reported_through_cri", &why) {
            return;
        }
        unreachable!("skip returns true or panics");
    };
    std::fs::write(&limit, "262144000").expect("set the pod memory limit");
    let spec = ContainerSpec::new("hog", BUSYBOX_IMAGE).command([
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=400M count=4; echo survived",
    ]);
    let id = cri.create_container(&pod, &spec).expect("create");
    cri.start(&id).expect("start");
    let code = cri.wait_container_exit(&id, T).expect("the hog exits");
    let st = cri.container_status(&id).unwrap();
    assert_eq!((code, st.reason.as_str()), (137, "OOMKilled"), "{st:?}");
    let recs = audit(cfg.path());
    assert!(
        recs.iter()
            .any(|r| r["event"] == "oom" && r["container"] == "hog"),
        "{recs:#?}"
    );
    let _ = cri.remove_container(&id);
    let _ = cri.stop_pod(&pod.id);
    let _ = cri.remove_pod(&pod.id);
}
