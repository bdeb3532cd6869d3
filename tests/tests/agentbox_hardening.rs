//! The shim's core under attack and faults, with real containerd and runsc:
//! resource updates applied to the sandbox or refused (never a silent
//! success), checkpoint restore refused, concurrent Creates of one id and
//! concurrent starts of one pod, the lifetime limit per pod through CRI, and
//! a container that SIGKILL cannot end deleted by force. Needs root.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentbox_e2e::cri::v1 as cri;
use agentbox_e2e::{
    skip_unless_root, Binaries, ContainerSpec, Containerd, BUSYBOX_IMAGE, DEFAULT_NAMESPACE,
    K8S_NAMESPACE,
};
use common::*;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim_async::TaskClient;
use containerd_shim_protos::ttrpc::context::{self, Context};
use containerd_shim_protos::ttrpc::r#async::Client;
use containerd_shim_protos::ttrpc::{self, Code};

const T: Duration = Duration::from_secs(60);

fn ctx() -> Context {
    context::with_timeout(Duration::from_secs(60).as_nanos() as i64)
}

fn code_of(e: &ttrpc::Error) -> (Option<Code>, String) {
    match e {
        ttrpc::Error::RpcStatus(s) => (Some(s.code()), s.message().to_string()),
        other => (None, format!("{other:?}")),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The agentbox daemon serving the container whose bundle is `bundle`.
async fn client_for(bundle: &Path) -> TaskClient {
    let address = std::fs::read_to_string(bundle.join("address")).expect("the bundle's address");
    TaskClient::new(
        Client::connect(address.trim())
            .await
            .expect("connect to agentbox"),
    )
}

fn resources(v: serde_json::Value) -> Any {
    Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into(),
        value: serde_json::to_vec(&v).unwrap(),
        ..Default::default()
    }
}

/// The memory limit of the cgroup `pid` is in.
fn memory_limit(pid: u32) -> u64 {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = cg
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, c, path) = (p.next()?, p.next()?, p.next()?);
            c.split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        })
        .expect("a v1 memory cgroup");
    let f = PathBuf::from("/sys/fs/cgroup/memory")
        .join(rel.trim_start_matches('/'))
        .join("memory.limit_in_bytes");
    std::fs::read_to_string(&f).unwrap().trim().parse().unwrap()
}

fn ctr_setup(extra: &str) -> (ConfigDir, Containerd, PathBuf) {
    let cfg = ConfigDir::new();
    let path = write_config(cfg.path(), "agentbox", "none", extra);
    let ctd = Containerd::start(options(Binaries::system(), &path)).expect("start containerd");
    ctd.import_busybox(DEFAULT_NAMESPACE)
        .expect("import busybox");
    (cfg, ctd, path)
}

fn remove_task(ctd: &Containerd, id: &str) {
    let _ = ctd.ctr(&["task", "kill", "-s", "KILL", id]);
    wait_until(Duration::from_secs(20), || {
        !String::from_utf8_lossy(&ctd.ctr(&["task", "ls"]).stdout)
            .lines()
            .any(|l| l.starts_with(id) && l.contains("RUNNING"))
    });
    let _ = ctd.ctr(&["task", "rm", "-f", id]);
    let o = ctd.ctr(&["containers", "rm", id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Update, called on agentbox as containerd calls it, for the sandbox's own
/// container: what the sandbox's cgroup takes is written there; a rule that
/// opens a device is refused by name and changes nothing. A restore from a
/// checkpoint is refused before runsc is called.
#[test]
fn updates_reach_the_sandbox_cgroup_or_are_refused_and_restores_are_refused() {
    if skip_unless_root("updates_reach_the_sandbox_cgroup_or_are_refused") {
        return;
    }
    let (cfg, ctd, path) = ctr_setup("profile = \"standard\"");
    let calls = log_runsc_calls(&path);
    let id = ctd.unique_id("ab-upd");
    run_detached(&ctd, &path, &id, &["sleep", "600"]).expect("ctr run -d");
    let bundle = bundle_of(&ctd, DEFAULT_NAMESPACE, &id);
    rt().block_on(async {
        let t = client_for(&bundle).await;
        let st = t
            .state(
                ctx(),
                &StateRequest {
                    id: id.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let sandbox = st.pid;
        let before = memory_limit(sandbox);
        let want: u64 = 256 << 20;
        assert_ne!(before, want);
        let upd = UpdateTaskRequest {
            id: id.clone(),
            resources: Some(resources(serde_json::json!({
                "memory": {"limit": want},
                "cpu": {"shares": 512},
                "devices": [{"allow": false, "access": "rwm"}]
            })))
            .into(),
            ..Default::default()
        };
        t.update(ctx(), &upd).await.expect("update applied");
        assert_eq!(
            memory_limit(sandbox),
            want,
            "the limit reached the sandbox's cgroup"
        );

        let open = UpdateTaskRequest {
            id: id.clone(),
            resources: Some(resources(serde_json::json!({
                "memory": {"limit": 128 << 20},
                "devices": [{"allow": true, "access": "rwm"}]
            })))
            .into(),
            ..Default::default()
        };
        let (code, msg) = code_of(&t.update(ctx(), &open).await.unwrap_err());
        assert_eq!(code, Some(Code::UNIMPLEMENTED), "{msg}");
        assert!(
            msg.contains("devices") && msg.contains("nothing was changed"),
            "{msg}"
        );
        assert_eq!(
            memory_limit(sandbox),
            want,
            "a refused update changed the cgroup"
        );

        // a restore from a checkpoint, for a new container: refused
        let other = ctd.unique_id("ab-restore");
        let nb = cfg.path().join(&other);
        std::fs::create_dir_all(nb.join("rootfs")).unwrap();
        std::fs::copy(bundle.join("config.json"), nb.join("config.json")).unwrap();
        let create = CreateTaskRequest {
            id: other.clone(),
            bundle: nb.display().to_string(),
            checkpoint: cfg.path().join("checkpoint").display().to_string(),
            options: Some(agentbox_shim::options::to_any(
                &agentbox_shim::options::RuntimeOptions {
                    config_path: Some(path.display().to_string()),
                    config_body: None,
                },
            ))
            .into(),
            ..Default::default()
        };
        let (code, msg) = code_of(&t.create(ctx(), &create).await.unwrap_err());
        assert_eq!(code, Some(Code::FAILED_PRECONDITION), "{msg}");
        assert!(msg.contains("refused to restore"), "{msg}");
        let log = std::fs::read_to_string(&calls).unwrap_or_default();
        assert!(!log.contains(&other), "runsc saw the restore: {log}");
    });
    let recs = audit(cfg.path());
    let updates: Vec<_> = recs.iter().filter(|r| r["event"] == "update").collect();
    assert_eq!(updates.len(), 2, "{updates:#?}");
    assert_eq!(updates[0]["applied"], true);
    assert_eq!(updates[1]["applied"], false);
    remove_task(&ctd, &id);
}

/// Two Creates for one new id at once, on the daemon's socket with real
/// runsc: one is refused, the other's sandbox survives it.
#[test]
fn concurrent_creates_of_one_id_leave_the_first_sandbox_alone() {
    if skip_unless_root("concurrent_creates_of_one_id_leave_the_first_sandbox_alone") {
        return;
    }
    let (cfg, ctd, path) = ctr_setup("profile = \"standard\"");
    let id = ctd.unique_id("ab-race-host");
    run_detached(&ctd, &path, &id, &["sleep", "600"]).expect("ctr run -d");
    let bundle = bundle_of(&ctd, DEFAULT_NAMESPACE, &id);
    // a bundle of our own: the same spec over a copy of the rootfs
    let twin = ctd.unique_id("ab-twin");
    let tb = cfg.path().join(&twin);
    std::fs::create_dir_all(&tb).unwrap();
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(bundle.join("rootfs"))
        .arg(tb.join("rootfs"))
        .status()
        .unwrap();
    assert!(cp.success());
    std::fs::copy(bundle.join("config.json"), tb.join("config.json")).unwrap();
    let runsc_root = runsc_root(cfg.path()).join(DEFAULT_NAMESPACE);
    rt().block_on(async {
        let t = client_for(&bundle).await;
        let create = CreateTaskRequest {
            id: twin.clone(),
            bundle: tb.display().to_string(),
            options: Some(agentbox_shim::options::to_any(
                &agentbox_shim::options::RuntimeOptions {
                    config_path: Some(path.display().to_string()),
                    config_body: None,
                },
            ))
            .into(),
            ..Default::default()
        };
        let (a, b) = tokio::join!(t.create(ctx(), &create), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            t.create(ctx(), &create).await
        });
        let ok = [&a, &b].iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{a:?} {b:?}");
        let err = a.as_ref().err().or(b.as_ref().err()).unwrap();
        let (code, msg) = code_of(err);
        assert_eq!(code, Some(Code::ALREADY_EXISTS), "{msg}");
        // the created sandbox is still there, runsc still knows it
        let st = t
            .state(
                ctx(),
                &StateRequest {
                    id: twin.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(st.status.value(), Status::CREATED as i32);
        let list = std::process::Command::new("runsc")
            .arg(format!("--root={}", runsc_root.display()))
            .args(["list", "-quiet"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&list.stdout)
                .lines()
                .any(|l| l.trim() == twin),
            "the first Create's sandbox was deleted by the second"
        );
        t.delete(
            ctx(),
            &DeleteRequest {
                id: twin.clone(),
                ..Default::default()
            },
        )
        .await
        .expect("delete the twin");
    });
    let _ = std::fs::remove_dir_all(&tb);
    remove_task(&ctd, &id);
}

/// Several containers of one pod group started at once (containerd runs
/// the shim's `start` for each): one daemon serves them all.
#[test]
fn concurrent_starts_of_one_group_share_one_daemon() {
    if skip_unless_root("concurrent_starts_of_one_group_share_one_daemon") {
        return;
    }
    let (_cfg, ctd, path) = ctr_setup("profile = \"standard\"");
    let group = ctd.unique_id("ab-group");
    let ids: Vec<String> = (0..4).map(|i| ctd.unique_id(&format!("ab-g{i}"))).collect();
    let annotation = format!("io.kubernetes.cri.sandbox-id={group}");
    std::thread::scope(|s| {
        for id in &ids {
            let (ctd, path, annotation) = (&ctd, &path, &annotation);
            s.spawn(move || {
                let config = path.display().to_string();
                let o = ctd.ctr(&[
                    "run",
                    "-d",
                    "--annotation",
                    annotation,
                    "--runtime",
                    RUNTIME_TYPE,
                    "--runtime-config-path",
                    &config,
                    BUSYBOX_IMAGE,
                    id,
                    "sleep",
                    "600",
                ]);
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            });
        }
    });
    let address = ctd.address().display().to_string();
    let daemons = pids_matching(&["containerd-shim-agentbox-v1", &address]);
    assert_eq!(daemons.len(), 1, "one daemon for the group: {daemons:?}");
    for id in &ids {
        remove_task(&ctd, id);
    }
}

fn cri_setup(cfg: &ConfigDir, top: &str) -> Containerd {
    let path = cfg.path().join("agentbox.toml");
    let ctd = Containerd::start(options(Binaries::system(), &path)).expect("start containerd");
    let extra = format!("{top}\n[mounts]\n{}\n", managed_roots(&ctd));
    write_config(cfg.path(), "agentbox", "sandbox", &extra);
    ctd.import_busybox(K8S_NAMESPACE).expect("import busybox");
    ctd
}

fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// The lifetime limit counts from the pod's first container: a container
/// the kubelet (re)creates later in the pod is stopped at the pod's
/// deadline, and none starts after it. A resource update of a container in
/// the pod's gVisor sandbox is refused with a reason CRI shows.
#[test]
fn the_lifetime_is_per_pod_through_cri() {
    if skip_unless_root("the_lifetime_is_per_pod_through_cri") {
        return;
    }
    let cfg = ConfigDir::new();
    let max = 12;
    let ctd = cri_setup(
        &cfg,
        &format!("profile = \"standard\"\n[lifetime]\nmax_seconds = {max}\ngrace_seconds = 1"),
    );
    let cri = ctd.cri().expect("CRI client");
    let pod_started = Instant::now();
    let pod = cri
        .run_pod("lifetime", "team", "uid-lifetime", AGENTBOX, &[])
        .expect("RunPodSandbox");
    let spec = ContainerSpec::new("agent", BUSYBOX_IMAGE).command(["sleep", "600"]);
    let first = cri.create_container(&pod, &spec).expect("CreateContainer");
    cri.start(&first).expect("StartContainer");

    // an in-place resize: refused, and CRI says why
    let mut c = cri.runtime_client();
    let upd = cri.block_on(
        c.update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: first.clone(),
            linux: Some(cri::LinuxContainerResources {
                memory_limit_in_bytes: 256 << 20,
                ..Default::default()
            }),
            ..Default::default()
        }),
    );
    let e = upd.expect_err("the update is refused");
    assert!(e.message().contains("one sandbox"), "{e:?}");

    // the kubelet replaces the container half way through the pod's lifetime
    std::thread::sleep(Duration::from_secs(max / 2));
    cri.stop_container(&first, Duration::from_secs(2))
        .expect("StopContainer");
    cri.remove_container(&first).expect("RemoveContainer");
    let spec = ContainerSpec::new("agent-2", BUSYBOX_IMAGE).command(["sleep", "600"]);
    let second = cri.create_container(&pod, &spec).expect("CreateContainer");
    cri.start(&second).expect("StartContainer");
    cri.wait_container_exit(&second, T)
        .expect("the pod's lifetime stops the second container");
    let ended = pod_started.elapsed();
    let st = cri.container_status(&second).unwrap();
    let ran = seconds(st.finished_at - st.started_at);
    assert!(
        ran < (max as f64) * 0.75,
        "the second container ran {ran:.1}s of its own: the lifetime restarted with it"
    );
    assert!(
        ended < Duration::from_secs(max + 8),
        "stopped {ended:?} after the pod started"
    );
    // over: a new container does not start
    let spec = ContainerSpec::new("agent-3", BUSYBOX_IMAGE).command(["sleep", "600"]);
    let third = cri.create_container(&pod, &spec).expect("CreateContainer");
    let e = cri.start(&third).unwrap_err().to_string();
    assert!(e.contains("lifetime") && e.contains("is over"), "{e}");
    let recs = audit(cfg.path());
    assert!(
        recs.iter()
            .any(|r| r["event"] == "lifetime" && r["container_id"] == second.as_str()),
        "{recs:#?}"
    );
    for id in [&second, &third] {
        let _ = cri.stop_container(id, Duration::from_secs(2));
        cri.remove_container(id).expect("RemoveContainer");
    }
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
}

/// A sandbox that no signal can reach (stopped on the host, so runsc's
/// calls to it hang until their timeout) is deleted by force when its
/// lifetime is over, and containerd learns that it exited.
#[test]
fn a_container_sigkill_cannot_end_is_deleted_by_force() {
    if skip_unless_root("a_container_sigkill_cannot_end_is_deleted_by_force") {
        return;
    }
    let (cfg, ctd, path) =
        ctr_setup("profile = \"standard\"\n[lifetime]\nmax_seconds = 3\ngrace_seconds = 1");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("[runtime]\n", "[runtime]\nrunsc_timeout_seconds = 3\n");
    std::fs::write(&path, text).unwrap();
    let calls = log_runsc_calls(&path);
    let id = ctd.unique_id("ab-stuck");
    run_detached(&ctd, &path, &id, &["sleep", "600"]).expect("ctr run -d");
    let bundle = bundle_of(&ctd, DEFAULT_NAMESPACE, &id);
    let sandbox: i32 = std::fs::read_to_string(bundle.join("init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SIGSTOP the sandbox this test started: runsc kill can no longer reach it
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sandbox),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let stopped = wait_until(Duration::from_secs(60), || {
        String::from_utf8_lossy(&ctd.ctr(&["task", "ls"]).stdout)
            .lines()
            .any(|l| l.starts_with(id.as_str()) && l.contains("STOPPED"))
    });
    assert!(
        stopped,
        "the stuck container still runs\n{}\n{:#?}",
        std::fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .map(|l| l
                .split(" --platform=ptrace ")
                .nth(1)
                .unwrap_or_default()
                .to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        audit(cfg.path())
            .iter()
            .map(|r| format!(
                "{} {} {} {}",
                r["time"], r["event"], r["action"], r["error"]
            ))
            .collect::<Vec<_>>()
    );
    let actions: Vec<String> = audit(cfg.path())
        .iter()
        .filter(|r| r["event"] == "lifetime")
        .map(|r| r["action"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(actions, ["SIGTERM", "SIGKILL", "force_delete"]);
    assert!(
        !std::path::Path::new(&format!("/proc/{sandbox}")).exists()
            || std::fs::read_to_string(format!("/proc/{sandbox}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the sandbox process survived"
    );
    let _ = ctd.ctr(&["task", "rm", "-f", &id]);
    let o = ctd.ctr(&["containers", "rm", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
