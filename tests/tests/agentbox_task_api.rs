//! The Task API of the runsc backend against real runsc, called directly on
//! the agentbox daemon's socket (as containerd calls it) for a container
//! that containerd created: Pause/Resume, Pids, Stats, Connect, an exec's
//! Start/Wait/Delete and Kill, Wait on a process that already exited, Exec
//! on a stopped container, a duplicate Create, and Delete while a process
//! in the sandbox still holds the container's output pipe. Needs root.

mod common;

use std::path::Path;
use std::time::Duration;

use agentbox_e2e::{skip_unless_root, Binaries, Containerd, DEFAULT_NAMESPACE};
use common::*;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim_async::TaskClient;
use containerd_shim_protos::ttrpc::context::{self, Context};
use containerd_shim_protos::ttrpc::r#async::Client;
use containerd_shim_protos::ttrpc::{self, Code};

fn ctx() -> Context {
    context::with_timeout(Duration::from_secs(60).as_nanos() as i64)
}

fn code(e: &ttrpc::Error) -> Option<Code> {
    match e {
        ttrpc::Error::RpcStatus(s) => Some(s.code()),
        _ => None,
    }
}

/// The agentbox daemon serving the container whose bundle is `bundle`.
async fn client_for(bundle: &Path) -> TaskClient {
    let address = std::fs::read_to_string(bundle.join("address")).expect("the bundle's address");
    let c = Client::connect(address.trim())
        .await
        .expect("connect to agentbox");
    TaskClient::new(c)
}

fn process(args: &[&str]) -> Any {
    let p = serde_json::json!({
        "args": args,
        "cwd": "/",
        "env": ["PATH=/bin:/usr/bin"],
        "user": {"uid": 0, "gid": 0},
    });
    Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
        value: serde_json::to_vec(&p).unwrap(),
        ..Default::default()
    }
}

fn exec_req(id: &str, exec_id: &str, args: &[&str]) -> ExecProcessRequest {
    ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        spec: Some(process(args)).into(),
        ..Default::default()
    }
}

fn req_id<T: Default>(f: impl FnOnce(&mut T)) -> T {
    let mut r = T::default();
    f(&mut r);
    r
}

fn setup() -> (ConfigDir, Containerd, std::path::PathBuf) {
    let cfg = ConfigDir::new();
    let path = write_config(cfg.path(), "agentbox", "none", "profile = \"standard\"");
    let ctd = Containerd::start(options(Binaries::system(), &path)).expect("start containerd");
    ctd.import_busybox(DEFAULT_NAMESPACE)
        .expect("import busybox");
    (cfg, ctd, path)
}

#[test]
fn task_api_against_real_runsc() {
    if skip_unless_root("task_api_against_real_runsc") {
        return;
    }
    let (cfg, ctd, path) = setup();
    let id = ctd.unique_id("ab-api");
    run_detached(&ctd, &path, &id, &["sleep", "600"]).expect("ctr run -d");
    let bundle = bundle_of(&ctd, DEFAULT_NAMESPACE, &id);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = client_for(&bundle).await;
        let state = |exec: &str| {
            let req = req_id(|r: &mut StateRequest| {
                r.id = id.clone();
                r.exec_id = exec.into();
            });
            let t = &t;
            async move { t.state(ctx(), &req).await }
        };
        let st = state("").await.unwrap();
        assert_eq!(st.status.value(), Status::RUNNING as i32);
        let init_pid = st.pid;

        // Connect: the daemon's pid and the container's
        let c = t
            .connect(ctx(), &req_id(|r: &mut ConnectRequest| r.id = id.clone()))
            .await
            .unwrap();
        let daemon = pids_matching(&["containerd-shim-agentbox-v1", &format!("-id {id}")]);
        assert_eq!(daemon, [c.shim_pid as i32]);
        assert_eq!(c.task_pid, init_pid);

        // Pids: the sleep runs in the sandbox
        let pids = t
            .pids(ctx(), &req_id(|r: &mut PidsRequest| r.id = id.clone()))
            .await
            .unwrap();
        assert!(!pids.processes.is_empty(), "{pids:?}");

        // Stats: real figures from the sandbox's cgroup
        let s = t
            .stats(ctx(), &req_id(|r: &mut StatsRequest| r.id = id.clone()))
            .await
            .unwrap();
        let m: containerd_shim_protos::cgroups::metrics::Metrics =
            containerd_shim_protos::protobuf::Message::parse_from_bytes(&s.stats.value).unwrap();
        assert!(m.memory.usage.usage > 0, "{m:?}");

        // Pause and Resume
        t.pause(ctx(), &req_id(|r: &mut PauseRequest| r.id = id.clone()))
            .await
            .expect("pause");
        assert_eq!(
            state("").await.unwrap().status.value(),
            Status::PAUSED as i32
        );
        t.resume(ctx(), &req_id(|r: &mut ResumeRequest| r.id = id.clone()))
            .await
            .expect("resume");
        assert_eq!(
            state("").await.unwrap().status.value(),
            Status::RUNNING as i32
        );

        // an exec: created, started, exits 7, Wait (twice: the second on an
        // exited process answers at once), Delete, gone
        t.exec(ctx(), &exec_req(&id, "e7", &["sh", "-c", "exit 7"]))
            .await
            .expect("exec");
        assert_eq!(
            state("e7").await.unwrap().status.value(),
            Status::CREATED as i32
        );
        t.start(
            ctx(),
            &req_id(|r: &mut StartRequest| {
                r.id = id.clone();
                r.exec_id = "e7".into();
            }),
        )
        .await
        .expect("start exec");
        for _ in 0..2 {
            let w = tokio::time::timeout(
                Duration::from_secs(30),
                t.wait(
                    ctx(),
                    &req_id(|r: &mut WaitRequest| {
                        r.id = id.clone();
                        r.exec_id = "e7".into();
                    }),
                ),
            )
            .await
            .expect("wait answers")
            .unwrap();
            assert_eq!(w.exit_status, 7);
        }
        let d = t
            .delete(
                ctx(),
                &req_id(|r: &mut DeleteRequest| {
                    r.id = id.clone();
                    r.exec_id = "e7".into();
                }),
            )
            .await
            .unwrap();
        assert_eq!(d.exit_status, 7);
        assert_eq!(code(&state("e7").await.unwrap_err()), Some(Code::NOT_FOUND));

        // Kill of an exec: only that process ends, with its signal
        t.exec(ctx(), &exec_req(&id, "eS", &["sleep", "600"]))
            .await
            .unwrap();
        t.start(
            ctx(),
            &req_id(|r: &mut StartRequest| {
                r.id = id.clone();
                r.exec_id = "eS".into();
            }),
        )
        .await
        .unwrap();
        t.kill(
            ctx(),
            &req_id(|r: &mut KillRequest| {
                r.id = id.clone();
                r.exec_id = "eS".into();
                r.signal = 9;
            }),
        )
        .await
        .expect("kill exec");
        let w = t
            .wait(
                ctx(),
                &req_id(|r: &mut WaitRequest| {
                    r.id = id.clone();
                    r.exec_id = "eS".into();
                }),
            )
            .await
            .unwrap();
        assert_eq!(w.exit_status, 137);
        assert_eq!(
            state("").await.unwrap().status.value(),
            Status::RUNNING as i32
        );

        // a duplicate Create for a live id is refused, and harms nothing
        let dup = t
            .create(
                ctx(),
                &req_id(|r: &mut CreateTaskRequest| {
                    r.id = id.clone();
                    r.bundle = bundle.display().to_string();
                }),
            )
            .await
            .unwrap_err();
        assert_eq!(code(&dup), Some(Code::ALREADY_EXISTS), "{dup:?}");
        assert_eq!(
            state("").await.unwrap().status.value(),
            Status::RUNNING as i32
        );

        // the container stopped: Exec on it is refused
        t.kill(
            ctx(),
            &req_id(|r: &mut KillRequest| {
                r.id = id.clone();
                r.signal = 9;
                r.all = true;
            }),
        )
        .await
        .unwrap();
        let w = t
            .wait(ctx(), &req_id(|r: &mut WaitRequest| r.id = id.clone()))
            .await
            .unwrap();
        assert_eq!(w.exit_status, 137);
        let e = t
            .exec(ctx(), &exec_req(&id, "late", &["true"]))
            .await
            .unwrap_err();
        assert_eq!(code(&e), Some(Code::FAILED_PRECONDITION), "{e:?}");
    });
    // the audit log: the kills with their signals, the exits with statuses
    let recs = audit(cfg.path());
    let mine: Vec<_> = recs
        .iter()
        .filter(|r| r["container_id"] == id.as_str())
        .collect();
    let kills: Vec<_> = mine.iter().filter(|r| r["event"] == "kill").collect();
    assert!(
        kills
            .iter()
            .any(|r| r["exec_id"] == "eS" && r["signal"] == 9 && r["all"] == false),
        "{mine:#?}"
    );
    assert!(
        kills
            .iter()
            .any(|r| r["exec_id"] == "" && r["signal"] == 9 && r["all"] == true),
        "{mine:#?}"
    );
    let exits: Vec<_> = mine.iter().filter(|r| r["event"] == "exit").collect();
    assert!(exits
        .iter()
        .any(|r| r["exec_id"] == "e7" && r["exit_status"] == 7));
    assert_eq!(
        exits.iter().filter(|r| r["exec_id"] == "e7").count(),
        1,
        "one exit record per process: {mine:#?}"
    );
    let _ = ctd.ctr(&["task", "rm", "-f", &id]);
    let _ = ctd.ctr(&["containers", "rm", &id]);
}

/// A container whose init exited while a process it started still holds the
/// output pipe: the exit is reported and Delete completes (the shim owns the
/// pipes and does not wait for every writer to close).
#[test]
fn delete_while_the_sandbox_holds_the_output_pipe() {
    if skip_unless_root("delete_while_the_sandbox_holds_the_output_pipe") {
        return;
    }
    let (_cfg, ctd, path) = setup();
    let id = ctd.unique_id("ab-held");
    run_detached(
        &ctd,
        &path,
        &id,
        &["sh", "-c", "sleep 600 & echo started; exit 4"],
    )
    .expect("ctr run -d");
    let exited = wait_until(Duration::from_secs(30), || {
        let o = ctd.ctr(&["task", "ls"]);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("STOPPED"))
    });
    assert!(
        exited,
        "the init's exit was not reported\n{}",
        ctd.log_tail(30)
    );
    let start = std::time::Instant::now();
    let o = agentbox_e2e::util::run_timeout(
        std::process::Command::new(&ctd.binaries().ctr)
            .args(["--address", &ctd.address().display().to_string()])
            .args(["--namespace", DEFAULT_NAMESPACE, "task", "delete", &id]),
        Duration::from_secs(30),
    )
    .expect("ctr task delete ran");
    assert!(
        o.status.success(),
        "task delete: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(25));
    let _ = ctd.ctr(&["containers", "rm", &id]);
}
