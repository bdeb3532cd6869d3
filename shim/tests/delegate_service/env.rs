//! The test's setup: agentbox's `ForwardTask` served over ttrpc on a temp
//! socket in front of the stub delegate, a bundle writer, the audit log.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentbox_shim::backend::{attach, delegate::ForwardTask};
use agentbox_shim::bootstrap::task_services;
use agentbox_shim::config::Config;
use agentbox_shim::events::Recorder;
use agentbox_shim::options::{to_any, RuntimeOptions};
use agentbox_shim::pod::Pod;
use agentbox_shim::reaper::Reaper;
use containerd_shim_protos::api::*;
use containerd_shim_protos::shim_async::TaskClient;
use containerd_shim_protos::ttrpc::context::Context;
use containerd_shim_protos::ttrpc::r#async::{Client, Server};
use containerd_shim_protos::ttrpc::{self, Code};
use serde_json::Value;

use super::stub::Stub;

pub struct Env {
    pub dir: tempfile::TempDir,
    pub client: TaskClient,
    pub stub: Stub,
    pub pod: Arc<Pod>,
    /// agentbox's own socket (what the bundle's `address` must name).
    pub ours: String,
    pub _servers: (Server, Server),
}

pub fn write_exec(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn config_text(dir: &Path, lifetime: &str) -> String {
    format!(
        "profile = \"standard\"\n[runtime]\nbackend = \"shim\"\nshim = \"{}\"\nshim_config = \"/etc/delegate/config.toml\"\nsandbox = \"none\"\n[audit]\npath = \"{}\"\n{lifetime}",
        dir.join("stub-shim").display(),
        dir.join("audit.jsonl").display()
    )
}

pub async fn env(lifetime: &str) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let stub = Stub::default();
    let stub_addr = format!("unix://{}", dir.path().join("stub.sock").display());
    let mut stub_server = Server::new()
        .bind(&stub_addr)
        .unwrap()
        .register_service(task_services(Arc::new(stub.clone())));
    stub_server.start().await.unwrap();
    // the delegate's `start`: write its own address into the bundle (as real
    // shims do) and announce it
    write_exec(
        &dir.path().join("stub-shim"),
        &format!(
            "#!/bin/sh\ncat >/dev/null\nprintf '{stub_addr}' > address\nprintf '{stub_addr}'\n"
        ),
    );
    let first = dir.path().join("sb1");
    std::fs::create_dir_all(&first).unwrap();
    let cfg = Config::from_toml_str(&config_text(dir.path(), lifetime), "test").unwrap();
    let pod = Arc::new(Pod::new(
        "k8s.io",
        None,
        Arc::new(Recorder::default()),
        Arc::new(Reaper::new()),
        None,
    ));
    let ours = format!("unix://{}", dir.path().join("agentbox.sock").display());
    std::env::set_var("TTRPC_ADDRESS", "/run/containerd/containerd.sock.ttrpc");
    let flags = containerd_shim::Flags {
        namespace: "k8s.io".into(),
        id: "sb1".into(),
        socket: ours.clone(),
        ..Default::default()
    };
    // A script this test just wrote can be "text file busy" for a moment: a
    // child another test thread forked meanwhile holds the write descriptor
    // until it execs. Only the stub has this problem; retry it, bounded.
    let mut tries = 0;
    let fwd = loop {
        match ForwardTask::new(pod.clone(), &cfg, &flags, &first).await {
            Ok(f) => break f,
            Err(e) if tries < 20 && format!("{e:#}").contains("busy") => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the delegate starts: {e:#}"),
        }
    };
    let task = attach(&pod, Arc::new(fwd));
    let mut server = Server::new()
        .bind(&ours)
        .unwrap()
        .register_service(task_services(task));
    server.start().await.unwrap();
    let client = TaskClient::new(Client::connect(&ours).await.unwrap());
    Env {
        dir,
        client,
        stub,
        pod,
        ours,
        _servers: (stub_server, server),
    }
}

impl Env {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn bundle(&self, id: &str, net: bool, env: &[&str]) -> PathBuf {
        crate::app_bundle::write(self.path(), id, net, env)
    }

    pub fn create_req(&self, id: &str, bundle: &Path) -> CreateTaskRequest {
        CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            options: Some(to_any(&RuntimeOptions {
                config_path: None,
                config_body: Some(config_text(self.path(), "")),
            }))
            .into(),
            ..Default::default()
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.stub.seen.lock().unwrap().calls.clone()
    }

    pub fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path().join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(self.path().join("audit.jsonl")).unwrap_or_default()
    }
}

pub fn ctx() -> Context {
    Context::default()
}

pub fn code_of(e: &ttrpc::Error) -> Option<Code> {
    match e {
        ttrpc::Error::RpcStatus(s) => Some(s.code()),
        _ => None,
    }
}

pub fn secret() -> String {
    format!("ghp_{}", "aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5")
}
