//! The shim backend: agentbox in front of another shim v2 — Kata's
//! `containerd-shim-kata-v2`, gVisor's `containerd-shim-runsc-v1`, or
//! `containerd-shim-runc-v2` (no sandbox; how this backend is tested here).
//!
//! The daemon starts the delegate for the pod group the way containerd would
//! (its `start`, in the bundle, with containerd's addresses and the runtime
//! options), then serves containerd itself: `Create` rewrites the bundle's
//! spec under the policy before forwarding, `Exec` gets the process rules,
//! every other call is forwarded as-is with its status codes. The delegate
//! publishes its own events straight to containerd.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use async_trait::async_trait;
use containerd_shim::Flags;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{Message, MessageFull};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::{self, r#async::Client, r#async::TtrpcContext, Code};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use crate::audit::{AuditLog, Subject};
use crate::config::Config;
use crate::enforce;
use crate::options;
use crate::task::{resolve_config, status, BundleState, Daemon, STATE_FILE};

/// How long a forwarded lifecycle call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The delegate's task API: service name by protocol version.
fn service_name(version: u32) -> &'static str {
    if version >= 3 {
        "containerd.task.v3.Task"
    } else {
        "containerd.task.v2.Task"
    }
}

/// Parse what a shim's `start` printed: a bare address (task API v2) or
/// `{"version":N,"address":"..","protocol":"ttrpc"}`.
pub fn parse_start_output(out: &str) -> Result<(String, u32), String> {
    let out = out.trim();
    if out.is_empty() {
        return Err("the delegate shim printed no address".into());
    }
    if out.starts_with('{') {
        let v: Value = serde_json::from_str(out)
            .map_err(|e| format!("the delegate shim printed unreadable JSON: {e}"))?;
        let address = v
            .get("address")
            .and_then(Value::as_str)
            .ok_or("the delegate shim's reply has no address")?;
        let proto = v.get("protocol").and_then(Value::as_str).unwrap_or("ttrpc");
        if proto != "ttrpc" {
            return Err(format!(
                "the delegate shim speaks {proto}; agentbox forwards ttrpc only"
            ));
        }
        let version = v.get("version").and_then(Value::as_u64).unwrap_or(2) as u32;
        return Ok((address.to_string(), version));
    }
    Ok((out.to_string(), 2))
}

/// Resolve the delegate binary: an absolute path, or a name on PATH.
pub fn find_delegate(name: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("delegate shim {name} does not exist");
    }
    if name.contains('/') {
        bail!("delegate shim {name:?} must be a name on PATH or an absolute path");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let c = dir.join(name);
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!("delegate shim {name} is not on PATH")
}

struct Delegate {
    client: Client,
    service: &'static str,
    binary: PathBuf,
    address: String,
}

impl Delegate {
    async fn call<Req: Message, Resp: MessageFull>(
        &self,
        ctx_timeout_nano: i64,
        method: &str,
        req: &Req,
    ) -> ttrpc::Result<Resp> {
        let payload = req
            .write_to_bytes()
            .map_err(|e| status(Code::INTERNAL, format!("cannot encode {method}: {e}")))?;
        let timeout_nano = if ctx_timeout_nano > 0 {
            ctx_timeout_nano
        } else if method == "Wait" {
            0
        } else {
            CALL_TIMEOUT.as_nanos() as i64
        };
        let creq = ttrpc::Request {
            service: self.service.to_string(),
            method: method.to_string(),
            payload,
            timeout_nano,
            ..Default::default()
        };
        let res = self.client.request(creq).await?;
        Resp::parse_from_bytes(&res.payload).map_err(|e| {
            status(
                Code::INTERNAL,
                format!("cannot decode the delegate's {method} reply: {e}"),
            )
        })
    }
}

impl Delegate {
    /// Whether the delegate reports the container's init as running.
    async fn running(&self, id: &str) -> bool {
        let req = StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let state: ttrpc::Result<StateResponse> = self.call(0, "State", &req).await;
        matches!(state, Ok(s) if s.status.value() == containerd_shim_protos::api::Status::RUNNING as i32)
    }
}

struct Tracked {
    bundle: PathBuf,
    audit: Arc<AuditLog>,
    subject: Subject,
    annotations: Map<String, Value>,
    cfg: Arc<Config>,
}

pub struct ForwardTask {
    daemon: Arc<Daemon>,
    delegate: Arc<Delegate>,
    shim_config: Option<PathBuf>,
    sandbox: crate::config::SandboxKind,
    /// The delegate daemon's pid, for cleanup after agentbox dies.
    delegate_pid: Option<i32>,
    containers: Mutex<std::collections::HashMap<String, Arc<Tracked>>>,
    exited: std::sync::Mutex<HashSet<(String, String)>>,
}

impl ForwardTask {
    /// Start the delegate shim for this pod group (cwd is the first container's bundle).
    pub async fn new(
        daemon: Arc<Daemon>,
        cfg: &Config,
        flags: &Flags,
    ) -> anyhow::Result<ForwardTask> {
        let name = cfg
            .runtime
            .shim
            .clone()
            .ok_or_else(|| anyhow!("runtime.shim is not set"))?;
        let binary = find_delegate(&name)?;
        let bundle = std::env::current_dir()?;
        let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let grpc_address = if flags.address.is_empty() {
            std::env::var("GRPC_ADDRESS").unwrap_or_default()
        } else {
            flags.address.clone()
        };
        let mut cmd = tokio::process::Command::new(&binary);
        cmd.args([
            "-namespace",
            &flags.namespace,
            "-address",
            &grpc_address,
            "-id",
            &flags.id,
        ]);
        if flags.debug {
            cmd.arg("-debug");
        }
        cmd.arg("start");
        cmd.current_dir(&bundle);
        cmd.env("TTRPC_ADDRESS", &ttrpc_address)
            .env("GRPC_ADDRESS", &grpc_address)
            .env("NAMESPACE", &flags.namespace);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = daemon
            .reaper
            .spawn(&mut cmd)
            .context("cannot start the delegate shim")?;
        let pid = child.id();
        if let Some(p) = &cfg.runtime.shim_config {
            let any = options::to_any(&options::RuntimeOptions {
                config_path: Some(p.display().to_string()),
                config_body: None,
            });
            if let Some(mut stdin) = child.stdin.take() {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(&any.write_to_bytes()?).await;
            }
        } else {
            drop(child.stdin.take());
        }
        let out = tokio::time::timeout(CALL_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("the delegate shim's start timed out"))??;
        daemon.reaper.untrack(pid);
        if !out.status.success() {
            bail!(
                "the delegate shim {} failed to start ({}): {}",
                binary.display(),
                out.status,
                crate::runsc::summarize(&out.stderr)
            );
        }
        let (address, version) =
            parse_start_output(&String::from_utf8_lossy(&out.stdout)).map_err(|e| anyhow!(e))?;
        if flags.socket.trim_start_matches("unix://") == address.trim_start_matches("unix://") {
            bail!("the delegate shim answered with agentbox's own socket {address}");
        }
        // The delegate's `start` wrote its own address into the bundle; put
        // agentbox's back, or a restarted containerd would reconnect straight
        // to the delegate and bypass the policy.
        let ours = if flags.socket.starts_with("unix://") {
            flags.socket.clone()
        } else {
            format!("unix://{}", flags.socket)
        };
        std::fs::write(bundle.join("address"), &ours).context("cannot restore the address file")?;
        // the delegate may have written its pid over ours
        let _ = std::fs::write(bundle.join("shim.pid"), std::process::id().to_string());
        let client = Client::connect(&address)
            .await
            .map_err(|e| anyhow!("cannot connect to the delegate shim at {address}: {e}"))?;
        let delegate = Delegate {
            client,
            service: service_name(version),
            binary: binary.clone(),
            address: address.clone(),
        };
        // its pid, for cleanup should agentbox die first
        let connect: ttrpc::Result<ConnectResponse> = delegate
            .call(
                0,
                "Connect",
                &ConnectRequest {
                    id: flags.id.clone(),
                    ..Default::default()
                },
            )
            .await;
        let delegate_pid = connect.ok().map(|c| c.shim_pid as i32).filter(|p| *p > 1);
        tracing::info!(delegate = %binary.display(), %address, version, pid = ?delegate_pid, "delegate shim started");
        Ok(ForwardTask {
            daemon,
            delegate: Arc::new(delegate),
            shim_config: cfg.runtime.shim_config.clone(),
            sandbox: cfg.sandbox_kind(),
            delegate_pid,
            containers: Mutex::new(Default::default()),
            exited: Default::default(),
        })
    }

    async fn tracked(&self, id: &str) -> Option<Arc<Tracked>> {
        self.containers.lock().await.get(id).cloned()
    }

    fn spawn_lifetime(&self, id: String, t: Arc<Tracked>) {
        let max = t.cfg.lifetime.max_seconds;
        if max == 0 || crate::task::is_cri_sandbox(&t.annotations) {
            return;
        }
        let grace = t.cfg.lifetime.grace();
        let d = self.delegate.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(max)).await;
            for (sig, wait) in [(libc::SIGTERM, grace), (libc::SIGKILL, 0)] {
                if !d.running(&id).await {
                    return;
                }
                let action = if sig == libc::SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGKILL"
                };
                let _ = t.audit.record(
                    "lifetime",
                    &t.subject,
                    json!({"max_seconds": max, "action": action}),
                );
                let kill = KillRequest {
                    id: id.clone(),
                    signal: sig as u32,
                    all: true,
                    ..Default::default()
                };
                let _: ttrpc::Result<Empty> = d.call(0, "Kill", &kill).await;
                tokio::time::sleep(Duration::from_secs(wait)).await;
            }
        });
    }
}

#[async_trait]
impl Task for ForwardTask {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        mut req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let cfg = Arc::new(
            resolve_config(req.options.as_ref(), self.daemon.default_config.as_deref())
                .map_err(|e| status(Code::FAILED_PRECONDITION, e))?,
        );
        let audit = Arc::new(AuditLog::new(&cfg.audit.path));
        let bundle = PathBuf::from(&req.bundle);
        let enforced = enforce::enforce_bundle(
            &cfg.policy,
            &audit,
            &bundle,
            &self.daemon.namespace,
            &req.id,
            json!({"runtime": "shim", "delegate": self.delegate.binary.display().to_string(), "sandbox": self.sandbox, "config": cfg.origin}),
        )
        .map_err(|e| status(Code::FAILED_PRECONDITION, e.to_string()))?;
        let state = BundleState {
            runsc: PathBuf::new(),
            root: PathBuf::new(),
            global_flags: vec![],
            mask_proc_sys_net: false,
            audit: cfg.audit.path.clone(),
            rootfs_mounted: false,
            delegate: Some(self.delegate.binary.display().to_string()),
            delegate_pid: self.delegate_pid,
        };
        enforce::write_atomic(
            &bundle.join(STATE_FILE),
            &serde_json::to_value(&state).unwrap_or_default(),
        )
        .map_err(|e| status(Code::INTERNAL, format!("cannot write {STATE_FILE}: {e}")))?;
        // the delegate gets its own config, never agentbox's
        req.options = match &self.shim_config {
            Some(p) => Some(options::to_any(&options::RuntimeOptions {
                config_path: Some(p.display().to_string()),
                config_body: None,
            }))
            .into(),
            None => None.into(),
        };
        let annotations = enforced.annotations();
        let subject =
            Subject::from_annotations(&self.daemon.namespace, &req.id, Some(&annotations));
        let resp: CreateTaskResponse = self.delegate.call(ctx.timeout_nano, "Create", &req).await?;
        self.daemon.worked();
        self.containers.lock().await.insert(
            req.id.clone(),
            Arc::new(Tracked {
                bundle: bundle.clone(),
                audit,
                subject,
                annotations,
                cfg,
            }),
        );
        Ok(resp)
    }

    async fn start(&self, ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let resp: StartResponse = self.delegate.call(ctx.timeout_nano, "Start", &req).await?;
        self.daemon.worked();
        if req.exec_id.is_empty() {
            if let Some(t) = self.tracked(&req.id).await {
                self.spawn_lifetime(req.id.clone(), t);
            }
        }
        Ok(resp)
    }

    async fn exec(&self, ctx: &TtrpcContext, mut req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let t = self
            .tracked(&req.id)
            .await
            .ok_or_else(|| status(Code::NOT_FOUND, format!("container {} not found", req.id)))?;
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let enforced = enforce::enforce_exec(
            &t.cfg.policy,
            &t.audit,
            &t.subject,
            &t.annotations,
            &req.exec_id,
            &spec,
        )
        .map_err(|e| status(Code::FAILED_PRECONDITION, e.to_string()))?;
        let type_url = req
            .spec
            .as_ref()
            .map(|a| a.type_url.clone())
            .unwrap_or_default();
        req.spec = Some(Any {
            type_url,
            value: serde_json::to_vec(&enforced.process)
                .map_err(|e| status(Code::INTERNAL, e.to_string()))?,
            ..Default::default()
        })
        .into();
        self.delegate.call(ctx.timeout_nano, "Exec", &req).await
    }

    async fn kill(&self, ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        if let Some(t) = self.tracked(&req.id).await {
            let _ = t.audit.record(
                "kill",
                &t.subject,
                json!({"exec_id": req.exec_id, "signal": req.signal, "all": req.all}),
            );
        }
        self.delegate.call(ctx.timeout_nano, "Kill", &req).await
    }

    async fn wait(&self, ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let resp: WaitResponse = self.delegate.call(ctx.timeout_nano, "Wait", &req).await?;
        let first = self
            .exited
            .lock()
            .unwrap()
            .insert((req.id.clone(), req.exec_id.clone()));
        if first {
            if let Some(t) = self.tracked(&req.id).await {
                let fields = if req.exec_id.is_empty() {
                    json!({"exit_status": resp.exit_status})
                } else {
                    json!({"exec_id": req.exec_id, "exit_status": resp.exit_status})
                };
                let _ = t.audit.record("exit", &t.subject, fields);
            }
        }
        Ok(resp)
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        let resp: DeleteResponse = self.delegate.call(ctx.timeout_nano, "Delete", &req).await?;
        if req.exec_id.is_empty() {
            if let Some(t) = self.containers.lock().await.remove(&req.id) {
                // cleaned up: containerd's `delete` action has nothing left to do
                let _ = std::fs::remove_file(t.bundle.join(STATE_FILE));
            }
            self.exited.lock().unwrap().retain(|(id, _)| id != &req.id);
        }
        Ok(resp)
    }

    async fn connect(
        &self,
        ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        let mut resp: ConnectResponse = self
            .delegate
            .call(ctx.timeout_nano, "Connect", &req)
            .await?;
        resp.shim_pid = std::process::id();
        Ok(resp)
    }

    async fn shutdown(&self, ctx: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        let left = self.containers.lock().await.len();
        if left > 0 && !req.now {
            return Ok(Empty::new());
        }
        // the delegate exits when it has no task left; agentbox follows
        let r: ttrpc::Result<Empty> = self.delegate.call(ctx.timeout_nano, "Shutdown", &req).await;
        if let Err(e) = r {
            tracing::debug!(error = %e, address = %self.delegate.address, "delegate shutdown");
        }
        self.daemon.shutdown.notify_one();
        Ok(Empty::new())
    }

    async fn state(&self, ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        self.delegate.call(ctx.timeout_nano, "State", &req).await
    }
    async fn pids(&self, ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        self.delegate.call(ctx.timeout_nano, "Pids", &req).await
    }
    async fn pause(&self, ctx: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        self.delegate.call(ctx.timeout_nano, "Pause", &req).await
    }
    async fn resume(&self, ctx: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        self.delegate.call(ctx.timeout_nano, "Resume", &req).await
    }
    async fn checkpoint(
        &self,
        ctx: &TtrpcContext,
        req: CheckpointTaskRequest,
    ) -> ttrpc::Result<Empty> {
        self.delegate
            .call(ctx.timeout_nano, "Checkpoint", &req)
            .await
    }
    async fn resize_pty(&self, ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        self.delegate
            .call(ctx.timeout_nano, "ResizePty", &req)
            .await
    }
    async fn close_io(&self, ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        self.delegate.call(ctx.timeout_nano, "CloseIO", &req).await
    }
    async fn update(&self, ctx: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        self.delegate.call(ctx.timeout_nano, "Update", &req).await
    }
    async fn stats(&self, ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        self.delegate.call(ctx.timeout_nano, "Stats", &req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_output_forms() {
        assert_eq!(
            parse_start_output("unix:///run/containerd/s/abc\n").unwrap(),
            ("unix:///run/containerd/s/abc".into(), 2)
        );
        assert_eq!(
            parse_start_output(r#"{"version":3,"address":"unix:///x","protocol":"ttrpc"}"#)
                .unwrap(),
            ("unix:///x".into(), 3)
        );
        assert!(parse_start_output("").is_err());
        assert!(
            parse_start_output(r#"{"version":3,"address":"unix:///x","protocol":"grpc"}"#).is_err()
        );
        assert!(parse_start_output("{bad").is_err());
        assert_eq!(service_name(2), "containerd.task.v2.Task");
        assert_eq!(service_name(3), "containerd.task.v3.Task");
    }

    #[test]
    fn delegate_lookup() {
        assert!(find_delegate("/nonexistent/shim").is_err());
        assert!(find_delegate("a/b").is_err());
        assert_eq!(find_delegate("/bin/sh").unwrap(), PathBuf::from("/bin/sh"));
        assert!(find_delegate("sh").unwrap().is_absolute());
    }
}
