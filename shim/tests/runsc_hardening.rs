//! The runsc backend under races, hung and broken runtimes, a hung host,
//! and requests that would bypass the policy (Update, checkpoint restore),
//! in process against a fake runsc (see `common`).

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use agentbox_policy::HostFs;
use agentbox_shim::reaper::Reaper;
use common::*;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::ttrpc::Code;
use serde_json::json;

/// A second Create for an id that is being created is refused, and never
/// deletes the first one's sandbox.
#[tokio::test]
async fn a_second_create_for_an_id_being_created_is_refused() {
    let e = env().await;
    let b = e.bundle("slow1");
    let req = e.create_req("slow1", &b);
    let (first, second) = tokio::join!(e.client.create(ctx(), &req), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        e.client.create(ctx(), &req).await
    });
    first.expect("the first create succeeds");
    let (code, msg) = code_of(&second.unwrap_err());
    assert_eq!(code, Code::ALREADY_EXISTS, "{msg}");
    assert!(msg.contains("slow1"), "{msg}");
    assert!(
        !e.calls().contains("delete --force slow1"),
        "the first container's sandbox was deleted: {}",
        e.calls()
    );
    assert_eq!(
        e.calls().matches(" create ").count(),
        1,
        "runsc create ran twice: {}",
        e.calls()
    );
    assert_eq!(
        e.state("slow1").await.unwrap().status.value(),
        Status::CREATED as i32
    );
    // once created, the id is taken until it is deleted
    let (code, _) = code_of(&e.client.create(ctx(), &req).await.unwrap_err());
    assert_eq!(code, Code::ALREADY_EXISTS);
    e.delete("slow1").await.unwrap();
    e.client.create(ctx(), &req).await.expect("re-created");
}

/// containerd going away in the middle of a Create (ttrpc then drops the
/// call) does not leave it half done: the container is created and tracked,
/// and a restarted containerd asking for its state is answered once the
/// Create settled, so it can delete it.
#[tokio::test]
async fn a_create_whose_caller_went_away_completes_and_is_tracked() {
    let e = env().await;
    let sock = format!("unix://{}", e.path().join("t.sock").display());
    let b = e.bundle("slow2");
    let req = e.create_req("slow2", &b);
    {
        let gone = containerd_shim_protos::shim_async::TaskClient::new(
            containerd_shim_protos::ttrpc::r#async::Client::connect(&sock)
                .await
                .unwrap(),
        );
        let call = gone.create(ctx(), &req);
        // containerd dies a moment into the Create
        let _ = tokio::time::timeout(Duration::from_millis(300), call).await;
    }
    let st = e
        .state("slow2")
        .await
        .expect("the Create settled and is tracked");
    assert_eq!(st.status.value(), Status::CREATED as i32);
    e.delete("slow2").await.expect("and can be deleted");
    assert!(e.calls().contains("delete --force slow2"));
}

/// A host that hangs on one path (a dead network filesystem).
struct HangingHost {
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl HostFs for HangingHost {
    fn read_link(&self, path: &str) -> std::io::Result<Option<String>> {
        if path.starts_with("/hang") {
            let (m, cv) = &*self.released;
            let mut g = m.lock().unwrap();
            while !*g {
                g = cv.wait(g).unwrap();
            }
        }
        Ok(None)
    }
    fn is_socket(&self, _: &str) -> bool {
        false
    }
    fn file_id(&self, _: &str) -> Option<agentbox_policy::FileId> {
        None
    }
}

/// A Create whose mount source hangs on the host fails closed after the
/// timeout, while the pod's other containers are served meanwhile.
#[tokio::test]
async fn a_hung_host_lookup_fails_closed_and_blocks_nothing_else() {
    let released = Arc::new((Mutex::new(false), Condvar::new()));
    let host: Arc<dyn HostFs> = Arc::new(HangingHost {
        released: released.clone(),
    });
    let e = env_with(
        Some((host, Duration::from_secs(3))),
        Arc::new(Reaper::new()),
    )
    .await;
    let hung = e.bundle_with(
        "nfs1",
        "container",
        json!([{"destination": "/data", "type": "bind", "source": "/hang/data", "options": ["rbind", "ro"]}]),
    );
    let hung_req = e.create_req("nfs1", &hung);
    let t0 = Instant::now();
    let (hung_result, others) = tokio::join!(e.client.create(ctx(), &hung_req), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        e.create("ok1")
            .await
            .expect("another container is created meanwhile");
        e.start("ok1").await.expect("and started");
        t.elapsed()
    });
    assert!(
        others < Duration::from_secs(2),
        "the other container waited {others:?} for the hung lookup"
    );
    let (code, msg) = code_of(&hung_result.unwrap_err());
    assert_eq!(code, Code::FAILED_PRECONDITION, "{msg}");
    assert!(
        msg.contains("nfs1") && msg.contains("longer than 3s"),
        "{msg}"
    );
    assert!(t0.elapsed() < Duration::from_secs(6), "{:?}", t0.elapsed());
    assert!(!e.calls().contains("nfs1"), "runsc saw it: {}", e.calls());
    // the lookup ends after agentbox gave up: nothing is written then
    *released.0.lock().unwrap() = true;
    released.1.notify_all();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recs = e.audit();
    assert!(
        !recs
            .iter()
            .any(|r| r["event"] == "create" && r["container_id"] == "nfs1"),
        "{recs:#?}"
    );
    let spec = std::fs::read_to_string(hung.join("config.json")).unwrap();
    assert!(
        !spec.contains("noNewPrivileges"),
        "the spec was rewritten after the timeout"
    );
}

/// A `runsc create` that never returns: the call fails with a clear error
/// after `runsc_timeout_seconds`, the hung process is killed (not left
/// orphaned), and the daemon serves its other containers meanwhile.
#[tokio::test]
async fn a_hung_runsc_is_killed_and_the_call_fails_clearly() {
    let e = env().await;
    e.create("other").await.unwrap();
    let t0 = Instant::now();
    let (hung, meanwhile) = tokio::join!(e.create("hang1"), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        e.state("other").await.expect("state meanwhile");
        e.start("other").await.expect("start meanwhile");
        t.elapsed()
    });
    assert!(meanwhile < Duration::from_secs(1), "{meanwhile:?}");
    let (code, msg) = code_of(&hung.unwrap_err());
    assert_eq!(code, Code::FAILED_PRECONDITION);
    assert!(msg.contains("runsc create timed out after 2s"), "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    let pid: i32 = std::fs::read_to_string(e.path().join("root/k8s.io/hung.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!alive(pid), "the hung runsc {pid} was left running");
    // its half-made state is gone, and the other container is unaffected
    assert!(e.calls().contains("delete --force hang1"), "{}", e.calls());
    let b = e.path().join("hang1");
    assert!(!b.join("agentbox-state.json").exists());
    assert_eq!(
        e.state("other").await.unwrap().status.value(),
        Status::RUNNING as i32
    );
}

/// A runsc that fails with garbage and a secret in its output: the error
/// that reaches containerd (and `kubectl describe`) is bounded, printable
/// and holds no secret.
#[tokio::test]
async fn garbage_from_runsc_reaches_containerd_without_secrets() {
    let e = env().await;
    let (code, msg) = code_of(&e.create("garbage1").await.unwrap_err());
    assert_eq!(code, Code::FAILED_PRECONDITION);
    assert!(
        msg.starts_with("runsc create failed (exit status 1)"),
        "{msg}"
    );
    assert!(msg.contains("GITHUB_TOKEN=[redacted]"), "{msg}");
    assert!(
        !msg.contains("ghp_Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"),
        "{msg}"
    );
    assert!(!msg.chars().any(char::is_control), "{msg:?}");
    assert!(msg.len() <= 2200, "{}", msg.len());
    assert!(e.calls().contains("delete --force garbage1"));
}

/// A bundle on a read-only filesystem: a clear error, runsc never called,
/// and the audit log says why nothing ran. Needs root (a tmpfs mount).
#[tokio::test]
async fn a_read_only_bundle_fails_clearly_and_leaves_nothing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED a_read_only_bundle_fails_clearly_and_leaves_nothing: needs root");
        return;
    }
    let e = env().await;
    let b = e.bundle("ro1");
    let spec = std::fs::read(b.join("config.json")).unwrap();
    let mount = |args: &[&str]| {
        let o = std::process::Command::new("mount")
            .args(args)
            .arg(&b)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    mount(&["-t", "tmpfs", "-o", "size=64k", "agentbox-test"]);
    std::fs::write(b.join("config.json"), &spec).unwrap();
    mount(&["-o", "remount,ro"]);
    let r = e.client.create(ctx(), &e.create_req("ro1", &b)).await;
    let _ = std::process::Command::new("umount").arg(&b).status();
    let (code, msg) = code_of(&r.unwrap_err());
    assert_eq!(code, Code::FAILED_PRECONDITION);
    assert!(
        msg.contains("cannot write the rewritten container spec") && msg.contains("Read-only"),
        "{msg}"
    );
    assert!(
        !e.calls().contains("ro1"),
        "runsc was called: {}",
        e.calls()
    );
    let events: Vec<String> = e
        .audit()
        .iter()
        .filter(|r| r["container_id"] == "ro1")
        .map(|r| r["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["create", "reject"]);
}

fn resources(v: serde_json::Value) -> Any {
    Any {
        type_url: agentbox_shim::resources::LINUX_RESOURCES.into(),
        value: serde_json::to_vec(&v).unwrap(),
        ..Default::default()
    }
}

/// Update never succeeds silently: a container inside the sandbox cannot
/// change its resources alone, and what the sandbox cannot take is refused
/// by name; both are audited.
#[tokio::test]
async fn updates_are_applied_or_refused_never_silently_accepted() {
    let e = env().await;
    e.create("app1").await.unwrap();
    let upd = UpdateTaskRequest {
        id: "app1".into(),
        resources: Some(resources(json!({"memory": {"limit": 1 << 28}}))).into(),
        ..Default::default()
    };
    let (code, msg) = code_of(&e.client.update(ctx(), &upd).await.unwrap_err());
    assert_eq!(code, Code::UNIMPLEMENTED, "{msg}");
    assert!(msg.contains("app1") && msg.contains("one sandbox"), "{msg}");

    // the sandbox's own container: device rules that open devices are refused
    let b = e.bundle_with("root1", "sandbox", json!([]));
    e.client
        .create(ctx(), &e.create_req("root1", &b))
        .await
        .unwrap();
    let upd = UpdateTaskRequest {
        id: "root1".into(),
        resources: Some(resources(json!({
            "memory": {"limit": 1 << 28},
            "devices": [{"allow": true, "access": "rwm"}]
        })))
        .into(),
        ..Default::default()
    };
    let (code, msg) = code_of(&e.client.update(ctx(), &upd).await.unwrap_err());
    assert_eq!(code, Code::UNIMPLEMENTED, "{msg}");
    assert!(
        msg.contains("devices") && msg.contains("nothing was changed"),
        "{msg}"
    );
    let mut bad = upd.clone();
    bad.resources.as_mut().unwrap().type_url =
        "types.containerd.io/opencontainers/runtime-spec/1/WindowsResources".into();
    let (code, _) = code_of(&e.client.update(ctx(), &bad).await.unwrap_err());
    assert_eq!(code, Code::INVALID_ARGUMENT);
    let recs: Vec<_> = e
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "update")
        .collect();
    assert_eq!(recs.len(), 3, "{recs:#?}");
    assert!(recs.iter().all(|r| r["applied"] == false));
}

/// A Create that restores a checkpoint is refused unless the node approved
/// restores, and the runsc backend, which cannot restore, says so.
#[tokio::test]
async fn checkpoint_restore_needs_the_nodes_approval() {
    let mut e = env().await;
    let b = e.bundle("cp1");
    let mut req = e.create_req("cp1", &b);
    req.checkpoint = e.path().join("checkpoint").display().to_string();
    let (code, msg) = code_of(&e.client.create(ctx(), &req).await.unwrap_err());
    assert_eq!(code, Code::FAILED_PRECONDITION);
    assert!(msg.contains("refused to restore container cp1"), "{msg}");
    assert!(!e.calls().contains("cp1"), "{}", e.calls());
    assert!(e
        .audit()
        .iter()
        .any(|r| r["event"] == "reject" && r["container_id"] == "cp1"));

    e.extra = String::new();
    let approved = e
        .config()
        .replace("[runtime]\n", "[runtime]\nallow_restore = true\n");
    let mut req = e.create_req_with("cp1", &b, &approved);
    req.checkpoint = e.path().join("checkpoint").display().to_string();
    let (code, msg) = code_of(&e.client.create(ctx(), &req).await.unwrap_err());
    assert_eq!(code, Code::FAILED_PRECONDITION);
    assert!(msg.contains("does not support restore"), "{msg}");
    assert!(!e.calls().contains("create"), "{}", e.calls());
}

fn lifetime(max: u64, grace: u64) -> String {
    format!("[lifetime]\nmax_seconds = {max}\ngrace_seconds = {grace}\n")
}

/// The lifetime counts from the pod's first container: a container started
/// later in the same pod gets what is left, and none starts once it is over.
#[tokio::test]
async fn the_lifetime_is_per_pod() {
    let mut e = env().await;
    e.extra = lifetime(3, 1);
    let b = e.bundle_with("pause", "sandbox", json!([]));
    e.client
        .create(ctx(), &e.create_req("pause", &b))
        .await
        .unwrap();
    let t0 = Instant::now();
    e.create("first").await.unwrap();
    e.start("first").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // the kubelet restarts the container
    e.client
        .kill(
            ctx(),
            &KillRequest {
                id: "first".into(),
                signal: 9,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    e.wait("first").await.unwrap();
    e.delete("first").await.unwrap();
    e.create("second").await.unwrap();
    e.start("second").await.unwrap();
    let started = t0.elapsed();
    let w = tokio::time::timeout(Duration::from_secs(10), e.wait("second"))
        .await
        .expect("the second container was stopped")
        .unwrap();
    let ended = t0.elapsed();
    assert_eq!(w.exit_status, 143, "SIGTERM at the pod's deadline");
    assert!(
        ended < Duration::from_millis(4200) && ended - started < Duration::from_millis(2500),
        "stopped {ended:?} after the pod's first container (started at {started:?}): the lifetime restarted with the container"
    );
    let lifetime: Vec<_> = e
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "lifetime")
        .collect();
    assert_eq!(lifetime.len(), 1, "{lifetime:#?}");
    assert_eq!(lifetime[0]["container_id"], "second");
    // once over, nothing starts in the pod
    e.create("third").await.unwrap();
    let (code, msg) = code_of(&e.start("third").await.unwrap_err());
    assert_eq!(code, Code::FAILED_PRECONDITION);
    assert!(msg.contains("lifetime of 3s is over"), "{msg}");
    assert!(!e.calls().contains("start third"));
    // the pod's sandbox has no lifetime of its own
    assert!(!e.calls().contains("kill pause") && !e.calls().contains("kill --all pause"));
}

/// A container that SIGKILL does not end is deleted by force when the
/// pod's lifetime is over, and reported exited.
#[tokio::test]
async fn a_kill_that_does_not_end_the_container_escalates_to_force_delete() {
    let mut e = env().await;
    e.extra = lifetime(1, 1);
    e.create("stuck1").await.unwrap();
    e.start("stuck1").await.unwrap();
    let w = tokio::time::timeout(Duration::from_secs(15), e.wait("stuck1"))
        .await
        .expect("the stuck container was ended")
        .unwrap();
    assert_eq!(w.exit_status, 137);
    let calls = e.calls();
    let term = calls.find("kill --all stuck1 15").expect("SIGTERM");
    let kill = calls.find("kill --all stuck1 9").expect("SIGKILL");
    let force = calls.find("delete --force stuck1").expect("force delete");
    assert!(term < kill && kill < force, "{calls}");
    let actions: Vec<_> = e
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "lifetime")
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["SIGTERM", "SIGKILL", "force_delete"]);
    assert!(e
        .events
        .topics
        .lock()
        .unwrap()
        .contains(&"/tasks/exit".to_string()));
}
