//! The runsc backend's Task service in process, served over ttrpc on a temp
//! socket and driven by a ttrpc Task client, against a fake runsc (a shell
//! script that keeps its state in files). Checks the calls, statuses, events,
//! audit records and the shutdown rule without root, containerd or gVisor.

mod app_bundle;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentbox_shim::backend::{attach, runsc::RunscTask};
use agentbox_shim::bootstrap::task_services;
use agentbox_shim::events::Recorder;
use agentbox_shim::options::{to_any, RuntimeOptions};
use agentbox_shim::pod::Pod;
use agentbox_shim::reaper::Reaper;
use containerd_shim_protos::api::*;
use containerd_shim_protos::shim_async::TaskClient;
use containerd_shim_protos::ttrpc::context::Context;
use containerd_shim_protos::ttrpc::r#async::{Client, Server};
use containerd_shim_protos::ttrpc::Code;
use serde_json::json;

/// A fake runsc: answers the tuning probe as Debian 12's runsc does, logs
/// every other call, `create` writes a pid file, `wait` blocks until `kill`
/// leaves an exit status, `delete` forgets the container.
const FAKE_RUNSC: &str = r#"#!/bin/sh
case "$1" in
  --version) echo 'runsc version 0.0~20221219.0'; exit 0;;
  help) printf 'ptrace\nkvm\n'; exit 0;;
  flags) exit 0;;
esac
root=""; for a in "$@"; do case "$a" in --root=*) root="${a#--root=}";; esac; done
mkdir -p "$root"
echo "$*" >> "$root/calls.log"
sub=""; for a in "$@"; do case "$a" in --*) ;; *) if [ -z "$sub" ]; then sub="$a"; fi;; esac; done
last=""; for a in "$@"; do last="$a"; done
case "$sub" in
  create)
    pidf=""; prev=""; for a in "$@"; do [ "$prev" = "--pid-file" ] && pidf="$a"; prev="$a"; done
    echo 4242 > "$pidf"; touch "$root/$last.created";;
  start) touch "$root/$last.started";;
  wait)
    i=0; while [ ! -f "$root/$last.exit" ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done
    [ -f "$root/$last.exit" ] || { echo "timed out" >&2; exit 1; }
    echo "{\"id\":\"$last\",\"exitStatus\":$(cat "$root/$last.exit")}";;
  kill)
    n=0; for a in "$@"; do n=$((n+1)); done
    sig="$last"; id=""; i=0; for a in "$@"; do i=$((i+1)); [ $i -eq $((n-1)) ] && id="$a"; done
    echo $((128 + sig)) > "$root/$id.exit";;
  ps) echo "[1]";;
  events) echo '{"type":"stats","id":"x","data":{"pids":{"current":7},"memory":{"usage":{"usage":3145728}}}}';;
  delete) rm -f "$root/$last".*;;
  *) echo "unexpected $sub" >&2; exit 1;;
esac
"#;

struct Env {
    dir: tempfile::TempDir,
    client: TaskClient,
    events: Arc<Recorder>,
    pod: Arc<Pod>,
    _server: Server,
}

fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    write_exec(&dir.path().join("runsc"), FAKE_RUNSC);
    let events = Arc::new(Recorder::default());
    let pod = Arc::new(Pod::new(
        "k8s.io",
        None,
        events.clone(),
        Arc::new(Reaper::new()),
        None,
    ));
    let task = attach(&pod, Arc::new(RunscTask::new(pod.clone())));
    let sock = dir.path().join("t.sock");
    let addr = format!("unix://{}", sock.display());
    let mut server = Server::new()
        .bind(&addr)
        .unwrap()
        .register_service(task_services(task));
    server.start().await.unwrap();
    let client = TaskClient::new(Client::connect(&addr).await.unwrap());
    Env {
        dir,
        client,
        events,
        pod,
        _server: server,
    }
}

impl Env {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> String {
        format!(
            "profile = \"standard\"\n[runtime]\nrunsc = \"{}\"\nrunsc_root = \"{}\"\n[audit]\npath = \"{}\"\n",
            self.path().join("runsc").display(),
            self.path().join("root").display(),
            self.path().join("audit.jsonl").display()
        )
    }

    /// A bundle with a CRI app-container spec (a subcontainer: `runsc wait` reports its exit).
    fn bundle(&self, id: &str, extra_ns: bool, env: &[&str]) -> PathBuf {
        app_bundle::write(self.path(), id, extra_ns, env)
    }

    fn create_req(&self, id: &str, bundle: &Path) -> CreateTaskRequest {
        CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            options: Some(to_any(&RuntimeOptions {
                config_path: None,
                config_body: Some(self.config()),
            }))
            .into(),
            ..Default::default()
        }
    }

    fn calls(&self) -> String {
        std::fs::read_to_string(self.path().join("root/k8s.io/calls.log")).unwrap_or_default()
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn ctx() -> Context {
    Context::default()
}

#[tokio::test]
async fn lifecycle_through_the_task_api() {
    let e = env().await;
    let secret = format!("ghp_{}", "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5");
    let tok = format!("GITHUB_TOKEN={secret}");
    let b = e.bundle("c1", true, &["PATH=/bin", &tok]);
    let r = e
        .client
        .create(ctx(), &e.create_req("c1", &b))
        .await
        .expect("create");
    assert_eq!(r.pid, 4242);
    // the policy rewrote the bundle before runsc saw it
    let spec = std::fs::read_to_string(b.join("config.json")).unwrap();
    assert!(!spec.contains(&secret) && spec.contains("PATH=/bin"));
    assert!(
        e.calls()
            .contains(&format!("create --bundle {} --pid-file", b.display())),
        "{}",
        e.calls()
    );

    e.client
        .start(
            ctx(),
            &StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("start");
    let st = e
        .client
        .state(
            ctx(),
            &StateRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(st.status.value(), Status::RUNNING as i32);
    assert_eq!(st.pid, 4242);

    let pids = e
        .client
        .pids(
            ctx(),
            &PidsRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(pids.processes.len(), 1);
    let stats = e
        .client
        .stats(
            ctx(),
            &StatsRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stats.stats.type_url, "io.containerd.cgroups.v1.Metrics");
    // the figures runsc reported (the fake's 7 pids, 3 MiB) reach containerd
    let m: containerd_shim_protos::cgroups::metrics::Metrics =
        containerd_shim_protos::protobuf::Message::parse_from_bytes(&stats.stats.value).unwrap();
    assert_eq!(m.pids.current, 7);
    assert_eq!(m.memory.usage.usage, 3 << 20);

    // Shutdown while a container is left keeps the daemon up
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
    let notified = e.pod.shutdown.notified();
    tokio::pin!(notified);
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(100), &mut notified)
            .await
            .is_err(),
        "shut down with a container left"
    );

    e.client
        .kill(
            ctx(),
            &KillRequest {
                id: "c1".into(),
                signal: 15,
                ..Default::default()
            },
        )
        .await
        .expect("kill");
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
    assert_eq!(w.exit_status, 143);
    let st = e
        .client
        .state(
            ctx(),
            &StateRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (st.status.value(), st.exit_status),
        (Status::STOPPED as i32, 143)
    );
    // a finished process cannot be signalled: containerd's NotFound
    let k = e
        .client
        .kill(
            ctx(),
            &KillRequest {
                id: "c1".into(),
                signal: 9,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(k, containerd_shim_protos::ttrpc::Error::RpcStatus(ref s) if s.code() == Code::NOT_FOUND),
        "{k:?}"
    );

    let d = e
        .client
        .delete(
            ctx(),
            &DeleteRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(d.exit_status, 143);
    assert!(e.calls().contains("delete --force c1"));
    let missing = e
        .client
        .state(
            ctx(),
            &StateRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(missing, containerd_shim_protos::ttrpc::Error::RpcStatus(ref s) if s.code() == Code::NOT_FOUND)
    );

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
        .expect("shutdown after the last container");

    let topics = e.events.topics.lock().unwrap().clone();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    let recs = e.audit();
    let events: Vec<_> = recs
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["create", "kill", "exit"]);
    assert_eq!(recs[0]["pod"], "pod-a");
    assert!(recs[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["target"] == "GITHUB_TOKEN"));
    assert!(!std::fs::read_to_string(e.path().join("audit.jsonl"))
        .unwrap()
        .contains(&secret));
}

#[tokio::test]
async fn refused_container_never_reaches_runsc() {
    let e = env().await;
    // no network namespace entry: the host's
    let b = e.bundle("c2", false, &["PATH=/bin"]);
    let err = e
        .client
        .create(ctx(), &e.create_req("c2", &b))
        .await
        .unwrap_err();
    let containerd_shim_protos::ttrpc::Error::RpcStatus(s) = err else {
        panic!("{err:?}")
    };
    assert_eq!(s.code(), Code::FAILED_PRECONDITION);
    assert!(
        s.message().contains("agentbox policy refused container c2")
            && s.message().contains("host network namespace"),
        "{}",
        s.message()
    );
    assert!(
        !e.calls().contains("create"),
        "runsc was called: {}",
        e.calls()
    );
    assert_eq!(e.audit()[0]["event"], "reject");
    assert!(e.events.topics.lock().unwrap().is_empty());
}

#[tokio::test]
async fn unreadable_config_fails_closed() {
    let e = env().await;
    let b = e.bundle("c3", true, &["PATH=/bin"]);
    let mut req = e.create_req("c3", &b);
    req.options = Some(to_any(&RuntimeOptions {
        config_path: Some(e.path().join("missing.toml").display().to_string()),
        config_body: None,
    }))
    .into();
    let err = e.client.create(ctx(), &req).await.unwrap_err();
    let containerd_shim_protos::ttrpc::Error::RpcStatus(s) = err else {
        panic!("{err:?}")
    };
    assert!(s.message().contains("missing.toml"), "{}", s.message());
    assert!(!e.calls().contains("create"));
    // a typo in the config is refused by name
    let mut req = e.create_req("c3", &b);
    req.options = Some(to_any(&RuntimeOptions {
        config_path: None,
        config_body: Some(format!("{}\n[lifetime]\nmax_secnds = 5\n", e.config())),
    }))
    .into();
    let err = e.client.create(ctx(), &req).await.unwrap_err();
    assert!(format!("{err:?}").contains("max_secnds"), "{err:?}");
}

#[tokio::test]
async fn exec_gets_the_env_rules_and_is_audited() {
    let e = env().await;
    let b = e.bundle("c4", true, &["PATH=/bin"]);
    e.client
        .create(ctx(), &e.create_req("c4", &b))
        .await
        .unwrap();
    e.client
        .start(
            ctx(),
            &StartRequest {
                id: "c4".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let secret = format!("sk-ant-api03-{}", "x".repeat(40));
    let process = json!({"args": ["sh", "-c", "env"], "cwd": "/", "env": ["PATH=/bin", format!("ANTHROPIC_API_KEY={secret}")]});
    let req = ExecProcessRequest {
        id: "c4".into(),
        exec_id: "e1".into(),
        spec: Some(
            containerd_shim_protos::protobuf::well_known_types::any::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: serde_json::to_vec(&process).unwrap(),
                ..Default::default()
            },
        )
        .into(),
        ..Default::default()
    };
    e.client.exec(ctx(), &req).await.expect("exec");
    let recs = e.audit();
    let ex = recs
        .iter()
        .find(|r| r["event"] == "exec")
        .expect("exec audited");
    assert_eq!(ex["argv"], json!(["sh", "-c", "env"]));
    assert_eq!(ex["env"], json!(["PATH"]));
    assert!(!std::fs::read_to_string(e.path().join("audit.jsonl"))
        .unwrap()
        .contains(&secret));
    // exec in a /proc cwd is refused
    let bad = json!({"args": ["ls"], "cwd": "/proc/1", "env": []});
    let mut req2 = req.clone();
    req2.exec_id = "e2".into();
    req2.spec.as_mut().unwrap().value = serde_json::to_vec(&bad).unwrap();
    let err = e.client.exec(ctx(), &req2).await.unwrap_err();
    assert!(format!("{err:?}").contains("refused exec e2"), "{err:?}");
    assert!(e
        .events
        .topics
        .lock()
        .unwrap()
        .contains(&"/tasks/exec-added".to_string()));
}

/// Kill's `all` reaches runsc (`--all`: every process of the container), and
/// the audit record carries the signal and `all` as asked.
#[tokio::test]
async fn kill_all_reaches_runsc_and_the_audit_log() {
    let e = env().await;
    let b = e.bundle("c1", true, &["PATH=/bin"]);
    e.client
        .create(ctx(), &e.create_req("c1", &b))
        .await
        .expect("create");
    e.client
        .start(
            ctx(),
            &StartRequest {
                id: "c1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("start");
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
        .expect("kill");
    assert!(e.calls().contains("kill --all c1 15"), "{}", e.calls());
    let kills: Vec<_> = e
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "kill")
        .collect();
    assert_eq!(kills.len(), 1);
    assert_eq!(kills[0]["signal"], 15);
    assert_eq!(kills[0]["all"], true);
    assert_eq!(kills[0]["container"], "agent");
}
