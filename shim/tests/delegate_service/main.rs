//! The delegate backend's Task service in process: agentbox's `ForwardTask`
//! served over ttrpc on a temp socket, in front of a stub delegate shim v2
//! (a Task service of this test on another temp socket, which a two-line
//! `start` script announces). Checks what is rewritten, what is forwarded
//! as-is (status codes included), what is audited, and what never reaches
//! the delegate — without root, containerd or a sandbox.

#[path = "../app_bundle/mod.rs"]
mod app_bundle;
mod env;
mod stub;

use agentbox_shim::options::{to_any, RuntimeOptions};
use agentbox_shim::pod::{BundleState, STATE_FILE};
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::ttrpc::Code;
use serde_json::{json, Value};

use env::*;

#[tokio::test]
async fn the_delegate_sees_only_rewritten_specs_and_its_own_config() {
    let e = env("").await;
    // the delegate wrote its own address over agentbox's; agentbox put its
    // own back so a restarted containerd reconnects through the policy
    let first = e.path().join("sb1");
    assert_eq!(
        std::fs::read_to_string(first.join("address")).unwrap(),
        e.ours
    );
    let tok = format!("GITHUB_TOKEN={}", secret());
    let b = e.bundle("c1", true, &["PATH=/bin", &tok]);
    let r = e
        .client
        .create(ctx(), &e.create_req("c1", &b))
        .await
        .expect("create");
    assert_eq!(r.pid, 777, "the delegate's reply is forwarded");
    let creates = e.stub.seen.lock().unwrap().creates.clone();
    assert_eq!(creates.len(), 1);
    let (spec, opts) = &creates[0];
    let env: Vec<&str> = spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        env,
        ["PATH=/bin"],
        "the delegate saw the spec before the policy"
    );
    assert_eq!(spec["process"]["noNewPrivileges"], true);
    // agentbox's own options (its policy) never reach the delegate
    let opts = opts.as_ref().expect("the delegate gets its own ConfigPath");
    assert_eq!(
        opts.config_path.as_deref(),
        Some("/etc/delegate/config.toml")
    );
    assert!(opts.config_body.is_none());
    // delete after a crash would go to the delegate
    let st = BundleState::read(&b).unwrap().unwrap();
    assert!(format!("{:?}", st.backend).contains("stub-shim"), "{st:?}");
    let audit = e.audit();
    let creates: Vec<_> = audit.iter().filter(|r| r["event"] == "create").collect();
    assert_eq!(creates.len(), 1, "{audit:#?}");
    assert_eq!(creates[0]["runtime"], "shim");
    assert_eq!(creates[0]["sandbox"], "none");
    assert!(!e.audit_text().contains(&secret()));
}

#[tokio::test]
async fn a_refused_container_never_reaches_the_delegate() {
    let e = env("").await;
    // no network namespace of its own: the host's
    let b = e.bundle("c1", false, &["PATH=/bin"]);
    let err = e
        .client
        .create(ctx(), &e.create_req("c1", &b))
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(Code::FAILED_PRECONDITION), "{err:?}");
    assert!(err.to_string().contains("network"), "{err}");
    assert!(!e.calls().iter().any(|c| c == "Create"), "{:?}", e.calls());
    assert!(!b.join(STATE_FILE).exists());
    let audit = e.audit();
    assert_eq!(
        audit.iter().filter(|r| r["event"] == "reject").count(),
        1,
        "{audit:#?}"
    );
}

#[tokio::test]
async fn exec_process_is_rewritten_and_audited_without_values() {
    let e = env("").await;
    let b = e.bundle("c1", true, &["PATH=/bin"]);
    e.client
        .create(ctx(), &e.create_req("c1", &b))
        .await
        .unwrap();
    let process = json!({
        "args": ["sh", "-c", format!("echo {}", secret())],
        "cwd": "/",
        "env": ["PATH=/bin", format!("GH_TOKEN={}", secret())],
    });
    e.client
        .exec(
            ctx(),
            &ExecProcessRequest {
                id: "c1".into(),
                exec_id: "e1".into(),
                spec: Some(Any {
                    type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                    value: serde_json::to_vec(&process).unwrap(),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            },
        )
        .await
        .expect("exec");
    let execs = e.stub.seen.lock().unwrap().execs.clone();
    assert_eq!(execs.len(), 1);
    let env = execs[0]["env"].as_array().unwrap();
    assert_eq!(env.len(), 1, "{env:?}");
    assert_eq!(env[0], "PATH=/bin");
    let audit = e.audit();
    let exec: Vec<_> = audit.iter().filter(|r| r["event"] == "exec").collect();
    assert_eq!(exec.len(), 1, "{audit:#?}");
    assert_eq!(exec[0]["exec_id"], "e1");
    assert!(
        !e.audit_text().contains(&secret()),
        "a secret value was audited"
    );
    // an exec for a container agentbox never admitted is not forwarded
    let err = e
        .client
        .exec(
            ctx(),
            &ExecProcessRequest {
                id: "nope".into(),
                exec_id: "e2".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(Code::NOT_FOUND));
    assert_eq!(
        e.calls().iter().filter(|c| *c == "Exec").count(),
        1,
        "{:?}",
        e.calls()
    );
}

#[tokio::test]
async fn calls_are_forwarded_with_status_codes_and_audited() {
    let e = env("").await;
    let b = e.bundle("c1", true, &["PATH=/bin"]);
    e.client
        .create(ctx(), &e.create_req("c1", &b))
        .await
        .unwrap();
    e.client
        .start(
            ctx(),
            &StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // the delegate's status codes pass through unchanged
    let err = e
        .client
        .state(
            ctx(),
            &StateRequest {
                id: "missing".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code_of(&err), Some(Code::NOT_FOUND), "{err:?}");
    // Connect answers with agentbox's pid, so containerd's cleanup ends agentbox
    let c = e
        .client
        .connect(
            ctx(),
            &ConnectRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.shim_pid, std::process::id());
    assert_eq!(c.task_pid, 777);
    e.client
        .kill(
            ctx(),
            &KillRequest {
                id: "c1".into(),
                signal: 15,
                all: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        e.stub.seen.lock().unwrap().kills,
        [("c1".to_string(), 15, true)],
        "kill's signal and `all` reach the delegate unchanged"
    );
    for _ in 0..2 {
        let w = e
            .client
            .wait(
                ctx(),
                &WaitRequest {
                    id: "c1".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(w.exit_status, 3);
    }
    e.client
        .delete(
            ctx(),
            &DeleteRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        !b.join(STATE_FILE).exists(),
        "a clean delete leaves no state"
    );
    let audit = e.audit();
    let kills: Vec<_> = audit.iter().filter(|r| r["event"] == "kill").collect();
    assert_eq!(kills.len(), 1, "{audit:#?}");
    assert_eq!(
        (kills[0]["signal"].as_u64(), kills[0]["all"].as_bool()),
        (Some(15), Some(true))
    );
    let exits: Vec<_> = audit.iter().filter(|r| r["event"] == "exit").collect();
    assert_eq!(
        exits.len(),
        1,
        "one exit record however often Wait is called: {audit:#?}"
    );
    assert_eq!(exits[0]["exit_status"], 3);
    assert_eq!(exits[0]["container"], "agent");
    assert_eq!(exits[0]["pod"], "pod-a");

    // the last container is gone: Shutdown reaches the delegate, agentbox follows
    let notified = e.pod.shutdown.notified();
    e.client
        .shutdown(
            ctx(),
            &ShutdownRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), notified)
        .await
        .expect("agentbox shuts down with its delegate");
    assert!(e.calls().iter().any(|c| c == "Shutdown"));
}

#[tokio::test]
async fn shutdown_while_a_container_is_left_keeps_both_up() {
    let e = env("").await;
    let b = e.bundle("c1", true, &["PATH=/bin"]);
    e.client
        .create(ctx(), &e.create_req("c1", &b))
        .await
        .unwrap();
    let notified = e.pod.shutdown.notified();
    tokio::pin!(notified);
    e.client
        .shutdown(
            ctx(),
            &ShutdownRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), &mut notified)
            .await
            .is_err(),
        "shut down with a container left"
    );
    assert!(
        !e.calls().iter().any(|c| c == "Shutdown"),
        "{:?}",
        e.calls()
    );
}

#[tokio::test]
async fn lifetime_limit_signals_through_the_delegate() {
    let e = env("").await;
    let b = e.bundle("c1", true, &["PATH=/bin"]);
    let mut req = e.create_req("c1", &b);
    req.options = Some(to_any(&RuntimeOptions {
        config_path: None,
        config_body: Some(config_text(
            e.path(),
            "[lifetime]\nmax_seconds = 1\ngrace_seconds = 1\n",
        )),
    }))
    .into();
    e.client.create(ctx(), &req).await.unwrap();
    e.client
        .start(
            ctx(),
            &StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // TERM after 1 s (the stub keeps running), KILL after the 1 s grace
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while e.stub.seen.lock().unwrap().kills.len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kills = e.stub.seen.lock().unwrap().kills.clone();
    assert_eq!(
        kills,
        [("c1".to_string(), 15, true), ("c1".to_string(), 9, true)]
    );
    let actions: Vec<_> = e
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "lifetime")
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["SIGTERM", "SIGKILL"]);
}

/// Nothing runs unaudited: when the audit log cannot be written, Create
/// fails and the delegate never sees the container.
#[tokio::test]
async fn an_unwritable_audit_log_fails_create() {
    let e = env("").await;
    let b = e.bundle("c1", true, &["PATH=/bin"]);
    let blocker = e.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let body = config_text(e.path(), "").replace(
        &e.path().join("audit.jsonl").display().to_string(),
        &blocker.join("audit.jsonl").display().to_string(),
    );
    let mut req = e.create_req("c1", &b);
    req.options = Some(to_any(&RuntimeOptions {
        config_path: None,
        config_body: Some(body),
    }))
    .into();
    let err = e.client.create(ctx(), &req).await.unwrap_err();
    assert_eq!(code_of(&err), Some(Code::FAILED_PRECONDITION), "{err:?}");
    assert!(err.to_string().contains("audit"), "{err}");
    assert!(!e.calls().iter().any(|c| c == "Create"), "{:?}", e.calls());
    // the spec was not rewritten either: the audit record comes first
    let spec = std::fs::read_to_string(b.join("config.json")).unwrap();
    assert!(!spec.contains("noNewPrivileges"), "{spec}");
}
