//! An exec that `runsc exec --detach` started but agentbox could not set up
//! is killed, inside the sandbox and on the host, not left running. The
//! test process is a subreaper, as the daemon is, so the detached process
//! becomes its child: one test in this binary, reaped like the daemon reaps.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentbox_shim::reaper::Reaper;
use common::*;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::ttrpc::Code;
use serde_json::json;

fn exec_req(id: &str, exec_id: &str, args: &[&str], terminal: bool) -> ExecProcessRequest {
    let process = json!({"args": args, "cwd": "/", "env": ["PATH=/bin"], "terminal": terminal});
    ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        terminal,
        spec: Some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: serde_json::to_vec(&process).unwrap(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

async fn gone(pid: i32) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

fn exec_pid(e: &Env, exec_id: &str) -> i32 {
    std::fs::read_to_string(e.path().join(format!("c1/execs/{exec_id}.pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_started_exec_that_fails_later_is_killed() {
    agentbox_shim::reaper_setup().expect("subreaper");
    let e = env_with(None, Arc::new(Reaper::daemon())).await;
    e.create("c1").await.unwrap();
    e.start("c1").await.unwrap();

    // runsc exec started the process but wrote no pid inside the sandbox
    e.client
        .exec(ctx(), &exec_req("c1", "e1", &["no-ipid"], false))
        .await
        .unwrap();
    let r = e
        .client
        .start(
            ctx(),
            &StartRequest {
                id: "c1".into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let (code, msg) = code_of(&r);
    assert_eq!(code, Code::INTERNAL, "{msg}");
    assert!(msg.contains("no internal pid"), "{msg}");
    let pid = exec_pid(&e, "e1");
    assert!(gone(pid).await, "the started exec {pid} was left running");

    // a terminal exec whose terminal never arrives: killed inside the
    // sandbox by its pid there, and on the host
    e.client
        .exec(ctx(), &exec_req("c1", "e2", &["sh"], true))
        .await
        .unwrap();
    let r = e
        .client
        .start(
            ctx(),
            &StartRequest {
                id: "c1".into(),
                exec_id: "e2".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    let (_, msg) = code_of(&r);
    assert!(msg.contains("terminal"), "{msg}");
    assert!(
        e.calls().contains("kill --pid 7 c1 9"),
        "not killed inside the sandbox: {}",
        e.calls()
    );
    let pid = exec_pid(&e, "e2");
    assert!(gone(pid).await, "the started exec {pid} was left running");
    // neither exec is reported running
    for x in ["e1", "e2"] {
        let st = e
            .client
            .state(
                ctx(),
                &StateRequest {
                    id: "c1".into(),
                    exec_id: x.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_ne!(st.status.value(), Status::RUNNING as i32, "{x}");
    }
    // the reaper holds nothing for them
    let (waiting, _) = e.pod.reaper.sizes();
    assert!(waiting <= 1, "{waiting} pids waited for");
}
