//! The delegate backend: agentbox in front of another shim v2 — Kata's
//! `containerd-shim-kata-v2`, gVisor's `containerd-shim-runsc-v1`, or
//! `containerd-shim-runc-v2` (no sandbox; how this backend is tested here).
//!
//! The daemon starts the delegate for the pod group the way containerd would
//! (`client`: its `start`, in the bundle, with containerd's addresses and the
//! runtime options), then serves containerd itself: `Create` rewrites the
//! bundle's spec under the policy before forwarding, `Exec` gets the process
//! rules, every other call is forwarded as-is with its status codes. The
//! delegate publishes its own events straight to containerd. An `Update`'s
//! resources go through the policy's device rule first, and a Create that
//! restores a checkpoint needs the node's approval. `cleanup` is
//! containerd's `delete` after agentbox died.

pub mod cleanup;
mod client;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::Flags;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext, Code};
use serde_json::json;
use tokio::sync::Mutex;

pub use cleanup::CleanupState;
pub use client::{find_delegate, parse_start_output};

use crate::backend::{BackendState, Control};
use crate::config::Config;
use crate::options;
use crate::pod::{Admitted, BundleState, LifetimeGuard, Pod};
use client::{Delegate, CALL_TIMEOUT};

pub(crate) fn status(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

struct Tracked {
    bundle: PathBuf,
    admitted: Arc<Admitted>,
    /// The lifetime timer, dropped (cancelled) when the init exits.
    lifetime: std::sync::Mutex<Option<LifetimeGuard>>,
}

pub struct ForwardTask {
    pod: Arc<Pod>,
    delegate: Arc<Delegate>,
    shim_config: Option<PathBuf>,
    sandbox: crate::config::SandboxKind,
    /// containerd's namespace and address, for the delegate's own `delete`.
    namespace: String,
    containerd: String,
    containers: Mutex<std::collections::HashMap<String, Arc<Tracked>>>,
    /// Processes whose exit was audited, until they are deleted.
    exited: std::sync::Mutex<HashSet<(String, String)>>,
}

impl ForwardTask {
    /// Start the delegate shim for this pod group in `bundle` (the first
    /// container's bundle) and serve in front of it.
    pub async fn new(
        pod: Arc<Pod>,
        cfg: &Config,
        flags: &Flags,
        bundle: &std::path::Path,
    ) -> anyhow::Result<ForwardTask> {
        let delegate = Delegate::start(&pod, cfg, flags, bundle).await?;
        Ok(Self::over(
            pod,
            cfg,
            delegate,
            &flags.namespace,
            &flags.address,
        ))
    }

    /// In front of a delegate already serving at `address` (task API
    /// `version`); `binary` is its shim binary, for its `delete` action.
    pub async fn connect(
        pod: Arc<Pod>,
        cfg: &Config,
        binary: PathBuf,
        address: &str,
        version: u32,
        containerd: &str,
    ) -> anyhow::Result<ForwardTask> {
        let delegate = Delegate::connect(binary, address, version, "").await?;
        let namespace = pod.namespace.clone();
        Ok(Self::over(pod, cfg, delegate, &namespace, containerd))
    }

    fn over(
        pod: Arc<Pod>,
        cfg: &Config,
        delegate: Delegate,
        namespace: &str,
        containerd: &str,
    ) -> ForwardTask {
        ForwardTask {
            pod,
            delegate: Arc::new(delegate),
            shim_config: cfg.runtime.shim_config.clone(),
            sandbox: cfg.sandbox_kind(),
            namespace: namespace.to_string(),
            containerd: containerd.to_string(),
            containers: Mutex::new(Default::default()),
            exited: Default::default(),
        }
    }

    async fn tracked(&self, id: &str) -> Option<Arc<Tracked>> {
        self.containers.lock().await.get(id).cloned()
    }

    /// How many exits are remembered (one per process not yet deleted).
    pub fn remembered_exits(&self) -> usize {
        self.exited.lock().unwrap().len()
    }

    /// The update's resources through the policy (its device rule), audited.
    fn filter_update(&self, t: &Tracked, req: &mut UpdateTaskRequest) -> ttrpc::Result<()> {
        let Some(any) = req.resources.as_mut() else {
            return Ok(());
        };
        let a = &t.admitted;
        let refuse = |msg: String| {
            let _ = a.audit.record(
                "update",
                &a.subject,
                json!({"applied": false, "reason": msg}),
            );
            Err(status(Code::INVALID_ARGUMENT, msg))
        };
        let res = match crate::resources::parse(any) {
            Ok(r) => r,
            Err(e) => return refuse(e),
        };
        let bytes = serde_json::to_vec(&res).map_err(|e| status(Code::INTERNAL, e.to_string()))?;
        match agentbox_policy::apply_resources(&a.cfg.policy, &bytes) {
            Err(e) => refuse(format!("agentbox refused the resource update: {e}")),
            Ok(agentbox_policy::Decision::Rejected { reason, .. }) => {
                refuse(format!("agentbox refused the resource update: {reason}"))
            }
            Ok(agentbox_policy::Decision::Allowed { spec, report }) => {
                any.value =
                    serde_json::to_vec(&spec).map_err(|e| status(Code::INTERNAL, e.to_string()))?;
                let changes = serde_json::to_value(&report.changes).unwrap_or(json!([]));
                let _ = a.audit.record(
                    "update",
                    &a.subject,
                    json!({"forwarded": true, "changes": changes}),
                );
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Control for ForwardTask {
    async fn running(&self, id: &str) -> bool {
        self.delegate.running(id).await
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), String> {
        let kill = KillRequest {
            id: id.to_string(),
            signal,
            all,
            ..Default::default()
        };
        let r: ttrpc::Result<Empty> = self.delegate.call(0, "Kill", &kill).await;
        r.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn force_delete(&self, id: &str) -> Result<(), String> {
        let t = self
            .tracked(id)
            .await
            .ok_or_else(|| format!("container {id} not found"))?;
        // the delegate's own `delete` action, as containerd runs it after a
        // crash: it removes the container by force; the delegate's daemon
        // then reports the exit
        let cmd = cleanup::delete_command(
            &self.delegate.binary,
            &self.namespace,
            &self.containerd,
            id,
            &t.bundle,
        );
        let out = crate::output::capture(&self.pod.reaper, cmd, None, Some(CALL_TIMEOUT))
            .await
            .map_err(|e| format!("{} delete: {e}", self.delegate.binary.display()))?;
        if out.status != 0 {
            return Err(format!(
                "{} delete failed: {}",
                self.delegate.binary.display(),
                crate::output::summarize(&out.stderr)
            ));
        }
        Ok(())
    }

    async fn exited(&self, id: &str) -> bool {
        self.delegate.stopped(id).await
    }
}

#[async_trait]
impl Task for ForwardTask {
    async fn create(
        &self,
        ctx: &TtrpcContext,
        mut req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let bundle = PathBuf::from(&req.bundle);
        // one Create per id at a time
        let _reserved = self
            .pod
            .reserve(&req.id)
            .map_err(|e| status(Code::ALREADY_EXISTS, e))?;
        if self.tracked(&req.id).await.is_some() {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("container {} already exists", req.id),
            ));
        }
        let admitted = Arc::new(
            self.pod
                .admit(
                    &req.id,
                    &bundle,
                    req.options.as_ref(),
                    &req.checkpoint,
                    json!({"runtime": "shim", "delegate": self.delegate.binary.display().to_string(), "sandbox": self.sandbox}),
                )
                .await
                .map_err(|e| status(Code::FAILED_PRECONDITION, e))?,
        );
        let state = BundleState {
            audit: admitted.cfg.audit.path.clone(),
            backend: BackendState::Delegate(CleanupState {
                delegate: self.delegate.binary.display().to_string(),
                delegate_pid: self.delegate.pid,
                delegate_address: Some(self.delegate.address.clone()),
            }),
        };
        state.write(&bundle).map_err(|e| {
            status(
                Code::INTERNAL,
                format!("cannot write {}: {e}", crate::pod::STATE_FILE),
            )
        })?;
        // the delegate gets its own config, never agentbox's
        req.options = match &self.shim_config {
            Some(p) => Some(options::to_any(&options::RuntimeOptions {
                config_path: Some(p.display().to_string()),
                config_body: None,
            }))
            .into(),
            None => None.into(),
        };
        let resp: CreateTaskResponse =
            match self.delegate.call(ctx.timeout_nano, "Create", &req).await {
                Ok(r) => r,
                Err(e) => {
                    self.pod.container_deleted(&req.id);
                    return Err(e);
                }
            };
        self.pod.worked();
        self.containers.lock().await.insert(
            req.id.clone(),
            Arc::new(Tracked {
                bundle,
                admitted,
                lifetime: std::sync::Mutex::new(None),
            }),
        );
        Ok(resp)
    }

    async fn start(&self, ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let tracked = match req.exec_id.is_empty() {
            true => self.tracked(&req.id).await,
            false => None,
        };
        if let Some(t) = &tracked {
            // the phases in time: an agent container waits for setup to end
            self.pod
                .check_start(&t.admitted)
                .await
                .map_err(|e| status(Code::FAILED_PRECONDITION, e))?;
        }
        // the pod's lifetime: refused once it is over
        let lifetime = match &tracked {
            Some(t) => self
                .pod
                .start_lifetime(t.admitted.clone())
                .map_err(|e| status(Code::FAILED_PRECONDITION, e))?,
            None => None,
        };
        let resp: StartResponse = self.delegate.call(ctx.timeout_nano, "Start", &req).await?;
        self.pod.worked();
        if let Some(t) = tracked {
            self.pod.container_started(&req.id);
            *t.lifetime.lock().unwrap() = lifetime;
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
        let process = t
            .admitted
            .admit_exec(&req.exec_id, &spec)
            .map_err(|e| status(Code::FAILED_PRECONDITION, e.to_string()))?;
        let type_url = req
            .spec
            .as_ref()
            .map(|a| a.type_url.clone())
            .unwrap_or_default();
        req.spec = Some(Any {
            type_url,
            value: serde_json::to_vec(&process)
                .map_err(|e| status(Code::INTERNAL, e.to_string()))?,
            ..Default::default()
        })
        .into();
        self.delegate.call(ctx.timeout_nano, "Exec", &req).await
    }

    async fn kill(&self, ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        if let Some(t) = self.tracked(&req.id).await {
            let a = &t.admitted;
            let _ = a.audit.record(
                "kill",
                &a.subject,
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
        let t = self.tracked(&req.id).await;
        if req.exec_id.is_empty() {
            // the container ended: its lifetime timer with it
            if let Some(t) = &t {
                drop(t.lifetime.lock().unwrap().take());
            }
        }
        if first {
            if let Some(t) = t {
                let fields = if req.exec_id.is_empty() {
                    json!({"exit_status": resp.exit_status})
                } else {
                    json!({"exec_id": req.exec_id, "exit_status": resp.exit_status})
                };
                let a = &t.admitted;
                let _ = a.audit.record("exit", &a.subject, fields);
            }
        }
        Ok(resp)
    }

    async fn delete(
        &self,
        ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        if req.exec_id.is_empty() {
            // whatever the delegate answers, this container's timer is over
            if let Some(t) = self.tracked(&req.id).await {
                drop(t.lifetime.lock().unwrap().take());
            }
        }
        let resp: ttrpc::Result<DeleteResponse> =
            self.delegate.call(ctx.timeout_nano, "Delete", &req).await;
        // NotFound: the delegate has no such task (any more); neither has agentbox
        let gone = match &resp {
            Ok(_) => true,
            Err(ttrpc::Error::RpcStatus(s)) => s.code() == Code::NOT_FOUND,
            Err(_) => false,
        };
        if !gone {
            return resp;
        }
        if req.exec_id.is_empty() {
            if let Some(t) = self.containers.lock().await.remove(&req.id) {
                // cleaned up: containerd's `delete` action has nothing left to do
                BundleState::remove(&t.bundle);
            }
            self.pod.container_deleted(&req.id);
            self.exited.lock().unwrap().retain(|(id, _)| id != &req.id);
        } else {
            // a deleted exec is never waited for again
            self.exited
                .lock()
                .unwrap()
                .remove(&(req.id.clone(), req.exec_id.clone()));
        }
        resp
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
        // runc-v2 removes the socket its bundle's `address` file names when
        // it exits — for a CRI pod that is agentbox's, not its own: remove the
        // delegate's once nobody serves it (bounded)
        let path = self
            .delegate
            .address
            .trim_start_matches("unix://")
            .to_string();
        for _ in 0..40 {
            crate::bootstrap::remove_stale_socket(&path);
            if !std::path::Path::new(&path).exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        self.pod.shutdown.notify_one();
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
    async fn update(&self, ctx: &TtrpcContext, mut req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let t = self
            .tracked(&req.id)
            .await
            .ok_or_else(|| status(Code::NOT_FOUND, format!("container {} not found", req.id)))?;
        self.filter_update(&t, &mut req)?;
        self.delegate.call(ctx.timeout_nano, "Update", &req).await
    }
    async fn stats(&self, ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        self.delegate.call(ctx.timeout_nano, "Stats", &req).await
    }
}
