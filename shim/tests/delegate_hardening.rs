//! The delegate backend in process, in front of a fake delegate shim (an
//! in-memory Task service on a temp socket): what agentbox forwards, what it
//! filters or refuses, what it remembers, and its lifetime escalation.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentbox_shim::backend::{attach, delegate::ForwardTask};
use agentbox_shim::bootstrap::task_services;
use agentbox_shim::config::Config;
use agentbox_shim::events::Recorder;
use agentbox_shim::options::{to_any, RuntimeOptions};
use agentbox_shim::pod::Pod;
use agentbox_shim::reaper::Reaper;
use async_trait::async_trait;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::shim_async::{Task, TaskClient};
use containerd_shim_protos::ttrpc::context::Context;
use containerd_shim_protos::ttrpc::r#async::{Client, Server, TtrpcContext};
use containerd_shim_protos::ttrpc::{self, Code, Error};
use serde_json::json;

fn status(code: Code, msg: &str) -> Error {
    Error::RpcStatus(ttrpc::get_status(code, msg))
}

/// A delegate shim in memory. `slow*` creates take half a second, `stuck*`
/// ignores kill, `gone*` deletes but answers NotFound (a reply lost after
/// the work was done).
#[derive(Default)]
struct Fake {
    creates: Mutex<Vec<CreateTaskRequest>>,
    updates: Mutex<Vec<UpdateTaskRequest>>,
    kills: Mutex<Vec<(String, u32, Instant)>>,
    live: Mutex<HashSet<String>>,
    running: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl Task for Fake {
    async fn create(
        &self,
        _: &TtrpcContext,
        r: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        if r.id.starts_with("slow") {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if !self.live.lock().unwrap().insert(r.id.clone()) {
            return Err(status(Code::ALREADY_EXISTS, "exists"));
        }
        self.creates.lock().unwrap().push(r);
        Ok(CreateTaskResponse {
            pid: 42,
            ..Default::default()
        })
    }
    async fn start(&self, _: &TtrpcContext, r: StartRequest) -> ttrpc::Result<StartResponse> {
        if r.exec_id.is_empty() {
            self.running.lock().unwrap().insert(r.id, 0);
        }
        Ok(StartResponse {
            pid: 42,
            ..Default::default()
        })
    }
    async fn kill(&self, _: &TtrpcContext, r: KillRequest) -> ttrpc::Result<Empty> {
        self.kills
            .lock()
            .unwrap()
            .push((r.id.clone(), r.signal, Instant::now()));
        if !r.id.starts_with("stuck") {
            self.running.lock().unwrap().remove(&r.id);
        }
        Ok(Empty::new())
    }
    async fn state(&self, _: &TtrpcContext, r: StateRequest) -> ttrpc::Result<StateResponse> {
        let running = self.running.lock().unwrap().contains_key(&r.id);
        Ok(StateResponse {
            id: r.id,
            status: if running {
                Status::RUNNING
            } else {
                Status::STOPPED
            }
            .into(),
            ..Default::default()
        })
    }
    async fn wait(&self, _: &TtrpcContext, r: WaitRequest) -> ttrpc::Result<WaitResponse> {
        if r.exec_id.is_empty() {
            while self.running.lock().unwrap().contains_key(&r.id) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(WaitResponse {
            exit_status: 137,
            ..Default::default()
        })
    }
    async fn delete(&self, _: &TtrpcContext, r: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        if r.exec_id.is_empty() {
            self.live.lock().unwrap().remove(&r.id);
            self.running.lock().unwrap().remove(&r.id);
            if r.id.starts_with("gone") {
                return Err(status(Code::NOT_FOUND, "no such task"));
            }
        }
        Ok(DeleteResponse::default())
    }
    async fn exec(&self, _: &TtrpcContext, _: ExecProcessRequest) -> ttrpc::Result<Empty> {
        Ok(Empty::new())
    }
    async fn update(&self, _: &TtrpcContext, r: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        self.updates.lock().unwrap().push(r);
        Ok(Empty::new())
    }
    async fn connect(&self, _: &TtrpcContext, _: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        Ok(ConnectResponse::default())
    }
}

struct Env {
    dir: tempfile::TempDir,
    fake: Arc<Fake>,
    client: TaskClient,
    forward: Arc<ForwardTask>,
    _servers: (Server, Server),
}

fn config(dir: &Path, extra: &str) -> String {
    format!(
        "profile = \"standard\"\n{extra}\n[runtime]\nbackend = \"shim\"\nshim = \"containerd-shim-fake-v2\"\n[audit]\npath = \"{}\"\n",
        dir.join("audit.jsonl").display()
    )
}

/// The fake delegate's own `delete` action: logs its arguments.
const DELETE_ACTION: &str = "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/delete.log\"\n";

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(Fake::default());
    let faddr = format!("unix://{}", dir.path().join("fake.sock").display());
    let mut fserver = Server::new()
        .bind(&faddr)
        .unwrap()
        .register_service(task_services(fake.clone()));
    fserver.start().await.unwrap();

    let binary = dir.path().join("containerd-shim-fake-v2");
    std::fs::write(&binary, DELETE_ACTION).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let reaper = Arc::new(Reaper::new());
    tokio::spawn(reaper.clone().run());
    let pod = Arc::new(Pod::new(
        "k8s.io",
        None,
        Arc::new(Recorder::default()),
        reaper,
        None,
    ));
    let cfg = Config::from_toml_str(&config(dir.path(), ""), "test").unwrap();
    let forward = Arc::new(
        ForwardTask::connect(pod.clone(), &cfg, binary, &faddr, 2, "/run/containerd.sock")
            .await
            .unwrap(),
    );
    let addr = format!("unix://{}", dir.path().join("agentbox.sock").display());
    let mut server = Server::new()
        .bind(&addr)
        .unwrap()
        .register_service(task_services(attach(&pod, forward.clone())));
    server.start().await.unwrap();
    let client = TaskClient::new(Client::connect(&addr).await.unwrap());
    Env {
        dir,
        fake,
        client,
        forward,
        _servers: (fserver, server),
    }
}

fn ctx() -> Context {
    Context::default()
}

fn code_of(e: &Error) -> (Code, String) {
    match e {
        Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => (Code::UNKNOWN, format!("{other:?}")),
    }
}

impl Env {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn bundle(&self, id: &str) -> PathBuf {
        let b = self.path().join(id);
        std::fs::create_dir_all(&b).unwrap();
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sleep", "60"], "cwd": "/", "env": ["PATH=/bin"]},
            "root": {"path": "rootfs"},
            "annotations": {
                "io.kubernetes.cri.container-type": "container",
                "io.kubernetes.cri.sandbox-id": "sb1",
                "io.kubernetes.cri.container-name": id
            },
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network", "path": "/var/run/netns/x"}],
                "resources": {"devices": [{"allow": true, "access": "rwm"}]}
            }
        });
        std::fs::write(b.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
        b
    }

    fn create_req(&self, id: &str, extra: &str) -> CreateTaskRequest {
        CreateTaskRequest {
            id: id.into(),
            bundle: self.bundle(id).display().to_string(),
            options: Some(to_any(&RuntimeOptions {
                config_path: None,
                config_body: Some(config(self.path(), extra)),
            }))
            .into(),
            ..Default::default()
        }
    }

    async fn run(&self, id: &str, extra: &str) {
        self.client
            .create(ctx(), &self.create_req(id, extra))
            .await
            .unwrap();
        self.client
            .start(
                ctx(),
                &StartRequest {
                    id: id.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// An update cannot re-open the devices the policy closed at create.
#[tokio::test]
async fn updates_go_through_the_policys_device_rule() {
    let e = env().await;
    e.run("c1", "").await;
    let upd = UpdateTaskRequest {
        id: "c1".into(),
        resources: Some(Any {
            type_url: agentbox_shim::resources::LINUX_RESOURCES.into(),
            value: serde_json::to_vec(&json!({
                "memory": {"limit": 1 << 28},
                "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "access": "rwm"}]
            }))
            .unwrap(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    e.client.update(ctx(), &upd).await.expect("update");
    let got = e.fake.updates.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let res: serde_json::Value = serde_json::from_slice(&got[0].resources.value).unwrap();
    assert_eq!(res["memory"]["limit"], 1 << 28, "the rest passes");
    assert_eq!(
        res["devices"][1],
        json!({"allow": false, "access": "rwm"}),
        "allow-all re-opened the devices: {res}"
    );
    let rec = e
        .audit()
        .into_iter()
        .find(|r| r["event"] == "update")
        .expect("audited");
    assert_eq!(rec["changes"][0]["rule"], "linux.device-cgroup");
    // garbage is refused, never forwarded
    let mut bad = upd.clone();
    bad.resources.as_mut().unwrap().value = b"{not json".to_vec();
    let (code, _) = code_of(&e.client.update(ctx(), &bad).await.unwrap_err());
    assert_eq!(code, Code::INVALID_ARGUMENT);
    assert_eq!(e.fake.updates.lock().unwrap().len(), 1);
}

/// A restore from a checkpoint is refused unless the node approved restores.
#[tokio::test]
async fn checkpoint_restore_is_refused_unless_approved() {
    let e = env().await;
    let mut req = e.create_req("cp1", "");
    req.checkpoint = "/var/lib/checkpoints/cp1".into();
    let (code, msg) = code_of(&e.client.create(ctx(), &req).await.unwrap_err());
    assert_eq!(code, Code::FAILED_PRECONDITION);
    assert!(msg.contains("refused to restore container cp1"), "{msg}");
    assert!(e.fake.creates.lock().unwrap().is_empty(), "forwarded");
    let cfg = config(e.path(), "").replace("[runtime]\n", "[runtime]\nallow_restore = true\n");
    req.options = Some(to_any(&RuntimeOptions {
        config_path: None,
        config_body: Some(cfg),
    }))
    .into();
    e.client
        .create(ctx(), &req)
        .await
        .expect("approved restore");
    assert_eq!(
        e.fake.creates.lock().unwrap()[0].checkpoint,
        "/var/lib/checkpoints/cp1"
    );
}

/// Two Creates for one id at once: the second is refused, only one reaches
/// the delegate.
#[tokio::test]
async fn a_second_create_for_an_id_being_created_is_refused() {
    let e = env().await;
    let req = e.create_req("slow1", "");
    let (a, b) = tokio::join!(e.client.create(ctx(), &req), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        e.client.create(ctx(), &req).await
    });
    a.expect("first");
    assert_eq!(code_of(&b.unwrap_err()).0, Code::ALREADY_EXISTS);
    assert_eq!(e.fake.creates.lock().unwrap().len(), 1);
}

/// Exec probes do not grow the daemon: what is remembered of an exec's exit
/// goes with the exec.
#[tokio::test]
async fn finished_execs_are_not_remembered_after_delete() {
    let e = env().await;
    e.run("c1", "").await;
    for i in 0..50 {
        let exec_id = format!("probe-{i}");
        let spec = json!({"args": ["true"], "cwd": "/", "env": []});
        e.client
            .exec(
                ctx(),
                &ExecProcessRequest {
                    id: "c1".into(),
                    exec_id: exec_id.clone(),
                    spec: Some(Any {
                        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process"
                            .into(),
                        value: serde_json::to_vec(&spec).unwrap(),
                        ..Default::default()
                    })
                    .into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        for method in ["start", "wait", "delete"] {
            match method {
                "start" => drop(
                    e.client
                        .start(
                            ctx(),
                            &StartRequest {
                                id: "c1".into(),
                                exec_id: exec_id.clone(),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap(),
                ),
                "wait" => drop(
                    e.client
                        .wait(
                            ctx(),
                            &WaitRequest {
                                id: "c1".into(),
                                exec_id: exec_id.clone(),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap(),
                ),
                _ => drop(
                    e.client
                        .delete(
                            ctx(),
                            &DeleteRequest {
                                id: "c1".into(),
                                exec_id: exec_id.clone(),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap(),
                ),
            }
        }
    }
    assert_eq!(e.forward.remembered_exits(), 0);
    let exits = e
        .audit()
        .into_iter()
        .filter(|r| r["event"] == "exit")
        .count();
    assert_eq!(exits, 50, "one exit record per exec");
}

fn lifetime(max: u64, grace: u64) -> String {
    format!("[lifetime]\nmax_seconds = {max}\ngrace_seconds = {grace}\n")
}

/// A container the delegate cannot kill is removed with the delegate's own
/// `delete` when the pod's lifetime is over.
#[tokio::test]
async fn a_stuck_container_is_deleted_by_the_delegates_own_delete() {
    let e = env().await;
    e.run("stuck1", &lifetime(1, 1)).await;
    let log = e.path().join("delete.log");
    let end = Instant::now() + Duration::from_secs(15);
    while !log.exists() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let args = std::fs::read_to_string(&log).expect("the delegate's delete ran");
    assert!(
        args.contains("-id stuck1") && args.contains("-address /run/containerd.sock"),
        "{args}"
    );
    assert!(args.trim_end().ends_with("delete"), "{args}");
    let signals: Vec<u32> = e.fake.kills.lock().unwrap().iter().map(|k| k.1).collect();
    assert_eq!(signals, [15, 9]);
}

/// A container's timer ends with it: an id reused after the delegate lost
/// the reply to a Delete is not killed at the old container's deadline.
#[tokio::test]
async fn a_reused_id_is_not_killed_by_an_old_deadline() {
    let e = env().await;
    e.run("gone1", &lifetime(2, 1)).await;
    e.client
        .kill(
            ctx(),
            &KillRequest {
                id: "gone1".into(),
                signal: 9,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    e.client
        .wait(
            ctx(),
            &WaitRequest {
                id: "gone1".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // the delegate deleted it but the reply says NotFound
    let _ = e
        .client
        .delete(
            ctx(),
            &DeleteRequest {
                id: "gone1".into(),
                ..Default::default()
            },
        )
        .await;
    let reused_at = Instant::now();
    e.run("gone1", &lifetime(60, 1)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late: Vec<_> = e
        .fake
        .kills
        .lock()
        .unwrap()
        .iter()
        .filter(|k| k.2 > reused_at)
        .map(|k| k.1)
        .collect();
    assert!(late.is_empty(), "the new container got {late:?}");
}
