//! Shared setup of the in-process Task service tests: a runsc backend
//! served over ttrpc on a temp socket against a fake runsc (a shell script
//! that keeps its state in files), with faults chosen by container id.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentbox_policy::HostFs;
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
use containerd_shim_protos::ttrpc::{Code, Error};
use serde_json::json;

/// A fake runsc that answers the tuning probe as Debian 12's runsc does and
/// logs every other call. `create` writes a pid file and refuses
/// an id that exists; `wait` blocks until `kill` leaves an exit status;
/// `delete` forgets the container. Faults by id prefix: `slow*` creates take
/// a second, `hang*` creates never return (the pid of the hung process is in
/// `$root/hung.pid`), `garbage*` creates fail with garbage and a secret in
/// the log and on stderr, `stuck*` ignores kill. `exec` starts a background
/// `sleep` as the process's host side (its pid in the pid file) and writes an
/// internal pid unless the process file's args say `no-ipid`.
pub const FAKE_RUNSC: &str = r#"#!/bin/sh
case "$1" in
  --version) echo 'runsc version 0.0~20221219.0'; exit 0;;
  help) printf 'ptrace\nkvm\n'; exit 0;;
  flags) exit 0;;
esac
root=""; log=""; for a in "$@"; do case "$a" in --root=*) root="${a#--root=}";; --log=*) log="${a#--log=}";; esac; done
mkdir -p "$root"
echo "$*" >> "$root/calls.log"
sub=""; for a in "$@"; do case "$a" in --*) ;; *) if [ -z "$sub" ]; then sub="$a"; fi;; esac; done
last=""; for a in "$@"; do last="$a"; done
arg() { prev=""; for a in "$@"; do [ "$prev" = "$flag" ] && echo "$a"; prev="$a"; done; }
case "$sub" in
  create)
    case "$last" in
      slow*) sleep 1;;
      hang*) echo $$ > "$root/hung.pid"; exec sleep 1000;;
      garbage*)
        head -c 3000 /dev/urandom >> "$log"
        printf '\n{"msg":"GITHUB_TOKEN=ghp_Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa \033[2J boom"}\n' >> "$log"
        head -c 3000 /dev/urandom >&2; exit 1;;
    esac
    [ -f "$root/$last.created" ] && { echo "container $last already exists" >&2; exit 1; }
    flag=--pid-file; pidf=$(arg "$@")
    echo 4242 > "$pidf"; touch "$root/$last.created";;
  start) touch "$root/$last.started";;
  wait)
    i=0; while [ ! -f "$root/$last.exit" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
    [ -f "$root/$last.exit" ] || { echo "timed out" >&2; exit 1; }
    echo "{\"id\":\"$last\",\"exitStatus\":$(cat "$root/$last.exit")}";;
  kill)
    n=0; for a in "$@"; do n=$((n+1)); done
    sig="$last"; id=""; i=0; for a in "$@"; do i=$((i+1)); [ $i -eq $((n-1)) ] && id="$a"; done
    case "$id" in stuck*) exit 0;; esac
    echo $((128 + sig)) > "$root/$id.exit";;
  exec)
    flag=--pid-file; pidf=$(arg "$@"); flag=--internal-pid-file; ipidf=$(arg "$@"); flag=--process; proc=$(arg "$@")
    sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > "$pidf"
    grep -q no-ipid "$proc" || echo 7 > "$ipidf";;
  ps) echo "[1]";;
  events) echo '{"type":"stats","id":"x","data":{"pids":{"current":1}}}';;
  delete) rm -f "$root/$last".*; [ -f "$root/$last.exit" ] || echo 137 > "$root/$last.exit";;
  *) echo "unexpected $sub" >&2; exit 1;;
esac
"#;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub client: TaskClient,
    pub events: Arc<Recorder>,
    pub pod: Arc<Pod>,
    /// Extra config appended to every container's config.
    pub extra: String,
    _server: Server,
}

pub fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An Env with the default host and reaper.
pub async fn env() -> Env {
    env_with(None, Arc::new(Reaper::new())).await
}

/// An Env whose policy looks at `host` (bounded by `timeout`) and whose
/// children are reaped by `reaper`.
pub async fn env_with(host: Option<(Arc<dyn HostFs>, Duration)>, reaper: Arc<Reaper>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    write_exec(&dir.path().join("runsc"), FAKE_RUNSC);
    let events = Arc::new(Recorder::default());
    tokio::spawn(reaper.clone().run());
    let mut pod = Pod::new("k8s.io", None, events.clone(), reaper, None);
    if let Some((h, t)) = host {
        pod = pod.with_host(h, t);
    }
    let pod = Arc::new(pod);
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
        extra: String::new(),
        _server: server,
    }
}

pub fn ctx() -> Context {
    Context::default()
}

/// The gRPC status of a failed call.
pub fn code_of(e: &Error) -> (Code, String) {
    match e {
        Error::RpcStatus(s) => (s.code(), s.message().to_string()),
        other => (Code::UNKNOWN, format!("{other:?}")),
    }
}

impl Env {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> String {
        format!(
            "profile = \"standard\"\n{}\n[runtime]\nrunsc = \"{}\"\nrunsc_root = \"{}\"\nrunsc_timeout_seconds = 2\n[audit]\npath = \"{}\"\n",
            self.extra,
            self.path().join("runsc").display(),
            self.path().join("root").display(),
            self.path().join("audit.jsonl").display()
        )
    }

    /// A bundle with a CRI app-container spec (a subcontainer: `runsc wait`
    /// reports its exit), with `mounts`.
    pub fn bundle_with(&self, id: &str, kind: &str, mounts: serde_json::Value) -> PathBuf {
        let b = self.path().join(id);
        std::fs::create_dir_all(&b).unwrap();
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {"args": ["sleep", "60"], "cwd": "/", "env": ["PATH=/bin"]},
            "root": {"path": "rootfs"},
            "mounts": mounts,
            "annotations": {
                "io.kubernetes.cri.container-type": kind,
                "io.kubernetes.cri.sandbox-id": "sb1",
                "io.kubernetes.cri.container-name": id,
                "io.kubernetes.cri.sandbox-name": "pod-a"
            },
            "linux": {"namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                {"type": "network", "path": "/var/run/netns/cni-1"}
            ]}
        });
        std::fs::write(b.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
        b
    }

    pub fn bundle(&self, id: &str) -> PathBuf {
        self.bundle_with(id, "container", json!([]))
    }

    pub fn create_req(&self, id: &str, bundle: &Path) -> CreateTaskRequest {
        self.create_req_with(id, bundle, &self.config())
    }

    pub fn create_req_with(&self, id: &str, bundle: &Path, config: &str) -> CreateTaskRequest {
        CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            options: Some(to_any(&RuntimeOptions {
                config_path: None,
                config_body: Some(config.to_string()),
            }))
            .into(),
            ..Default::default()
        }
    }

    pub async fn create(&self, id: &str) -> Result<CreateTaskResponse, Error> {
        let b = self.bundle(id);
        self.client.create(ctx(), &self.create_req(id, &b)).await
    }

    pub async fn start(&self, id: &str) -> Result<StartResponse, Error> {
        self.client
            .start(
                ctx(),
                &StartRequest {
                    id: id.into(),
                    ..Default::default()
                },
            )
            .await
    }

    pub async fn state(&self, id: &str) -> Result<StateResponse, Error> {
        self.client
            .state(
                ctx(),
                &StateRequest {
                    id: id.into(),
                    ..Default::default()
                },
            )
            .await
    }

    pub async fn wait(&self, id: &str) -> Result<WaitResponse, Error> {
        self.client
            .wait(
                ctx(),
                &WaitRequest {
                    id: id.into(),
                    ..Default::default()
                },
            )
            .await
    }

    pub async fn delete(&self, id: &str) -> Result<DeleteResponse, Error> {
        self.client
            .delete(
                ctx(),
                &DeleteRequest {
                    id: id.into(),
                    ..Default::default()
                },
            )
            .await
    }

    pub fn calls(&self) -> String {
        std::fs::read_to_string(self.path().join("root/k8s.io/calls.log")).unwrap_or_default()
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Whether a process still runs (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !agentbox_shim::reaper::parse_stat(&s).is_some_and(|(st, _)| st == 'Z' || st == 'X')
        })
        .unwrap_or(false)
}
