//! The Task service of the runsc backend: containerd's calls mapped onto
//! runsc commands, the container table, and the pod's control of it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api::{self, *};
use containerd_shim_protos::events::task::TaskExecAdded;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext, Code};
use serde_json::json;
use tokio::sync::Mutex;

use super::container::Container;
use super::exit::finish;
use super::io::StdioPaths;
use super::process::{Phase, Process, UNKNOWN_EXIT};
use super::{internal, not_found, status};
use crate::backend::Control;
use crate::events;
use crate::pod::Pod;

/// How long a call waits for a Create of its container that is in flight.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// What the backend's work needs, cheap to clone into a task of its own.
#[derive(Clone)]
pub struct Core {
    pub(super) pod: Arc<Pod>,
    pub(super) containers: Arc<Mutex<HashMap<String, Arc<Container>>>>,
}

/// The runsc backend's Task service.
pub struct RunscTask {
    core: Core,
}

impl std::ops::Deref for RunscTask {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl RunscTask {
    pub fn new(pod: Arc<Pod>) -> RunscTask {
        RunscTask {
            core: Core {
                pod,
                containers: Arc::new(Mutex::new(HashMap::new())),
            },
        }
    }
}

/// Run a call's work in a task of its own: containerd going away mid-call
/// (ttrpc then drops the call) must not leave a Create, Start or Delete half
/// done — a mounted rootfs, a sandbox nobody tracks, a start never watched.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = ttrpc::Result<T>> + Send + 'static,
) -> ttrpc::Result<T> {
    tokio::spawn(work).await.map_err(internal)?
}

impl Core {
    pub(super) async fn get(&self, id: &str) -> Result<Arc<Container>, ttrpc::Error> {
        if let Some(c) = self.containers.lock().await.get(id) {
            return Ok(c.clone());
        }
        // a Create in flight: answer once it settled
        self.pod.settled(id, SETTLE_WAIT).await;
        self.containers
            .lock()
            .await
            .get(id)
            .cloned()
            .ok_or_else(|| not_found("container", id))
    }
}

#[async_trait]
impl Control for RunscTask {
    async fn running(&self, id: &str) -> bool {
        match self.containers.lock().await.get(id) {
            Some(c) => c.init.phase() != Phase::Stopped,
            None => false,
        }
    }

    async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), String> {
        let c = self.get(id).await.map_err(|e| e.to_string())?;
        c.runsc
            .output(&c.cli.kill(&c.id, signal, all, None))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn force_delete(&self, id: &str) -> Result<(), String> {
        let c = self.get(id).await.map_err(|e| e.to_string())?;
        let delete = |c: Arc<Container>| async move {
            c.runsc
                .output(&c.cli.delete(&c.id, true))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let mut result = delete(c.clone()).await;
        if result.is_err() {
            // runsc cannot reach the sandbox (hung, stopped): end the sandbox
            // process on the host, which ends every container in it
            let root = match c.is_sandbox_root() {
                true => Some(c.clone()),
                false => self.sandbox_root().await,
            };
            let pid = root.map(|r| r.init.pid() as i32).unwrap_or(0);
            if pid > 1 && self.pod.reaper.kill_child(pid) {
                tracing::error!(container = %c.id, pid, "runsc cannot delete the container; killed its sandbox");
                // runsc's own state goes now that nothing in it answers
                if let Err(e) = delete(c.clone()).await {
                    tracing::warn!(container = %c.id, error = %e, "runsc delete after the kill");
                }
                result = Ok(());
            }
        }
        if result.is_ok() {
            finish(&c, &c.init, UNKNOWN_EXIT, self.pod.events.as_ref()).await;
        }
        result
    }
}

impl Core {
    /// The container that is the pod's runsc sandbox.
    async fn sandbox_root(&self) -> Option<Arc<Container>> {
        self.containers
            .lock()
            .await
            .values()
            .find(|c| c.is_sandbox_root())
            .cloned()
    }
}

#[async_trait]
impl Task for RunscTask {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        let core = self.core.clone();
        detached(async move { core.create(req).await }).await
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let core = self.core.clone();
        detached(async move { core.start(req).await }).await
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        let core = self.core.clone();
        detached(async move { core.delete(req).await }).await
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        let c = self.get(&req.id).await?;
        if c.init.phase() == Phase::Stopped {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("container {} is not running", req.id),
            ));
        }
        if c.execs.lock().unwrap().contains_key(&req.exec_id) || req.exec_id.is_empty() {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("exec {} already exists", req.exec_id),
            ));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let process = c
            .admitted
            .admit_exec(&req.exec_id, &spec)
            .map_err(|e| status(Code::FAILED_PRECONDITION, e.to_string()))?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let p = Arc::new(Process::new(&req.exec_id, stdio, Some(process)));
        c.execs.lock().unwrap().insert(req.exec_id.clone(), p);
        events::send(
            self.pod.events.as_ref(),
            TaskExecAdded {
                container_id: c.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        )
        .await;
        Ok(Empty::new())
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        let c = self.get(&req.id).await?;
        let p = c.process(&req.exec_id)?;
        let exit = p.exit();
        Ok(StateResponse {
            id: if req.exec_id.is_empty() {
                c.id.clone()
            } else {
                req.exec_id.clone()
            },
            bundle: c.bundle.display().to_string(),
            pid: p.pid(),
            status: p.status().into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: exit.as_ref().map(|e| e.status).unwrap_or(0),
            exited_at: MessageField::from_option(exit.map(|e| e.at)),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> ttrpc::Result<WaitResponse> {
        let c = self.get(&req.id).await?;
        let p = c.process(&req.exec_id)?;
        let exit = p.wait().await;
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        let c = self.get(&req.id).await?;
        let p = c.process(&req.exec_id)?;
        if p.phase() != Phase::Stopped {
            let a = &c.admitted;
            let _ = a.audit.record(
                "kill",
                &a.subject,
                json!({"exec_id": req.exec_id, "signal": req.signal, "all": req.all}),
            );
        }
        match p.phase() {
            Phase::Stopped => {
                return Err(status(
                    Code::NOT_FOUND,
                    format!("process {} already finished", req.id),
                ))
            }
            Phase::Created if req.exec_id.is_empty() => {
                // never started: tear it down; the exit is reported by delete
                c.runsc
                    .output(&c.cli.delete(&c.id, true))
                    .await
                    .map_err(internal)?;
                finish(&c, &p, 128 + req.signal, self.pod.events.as_ref()).await;
                return Ok(Empty::new());
            }
            Phase::Created => {
                finish(&c, &p, 128 + req.signal, self.pod.events.as_ref()).await;
                return Ok(Empty::new());
            }
            _ => {}
        }
        let argv = if req.exec_id.is_empty() {
            c.cli.kill(&c.id, req.signal, req.all, None)
        } else {
            let pid = p
                .internal_pid()
                .ok_or_else(|| status(Code::FAILED_PRECONDITION, "exec has no pid yet"))?;
            c.cli.kill(&c.id, req.signal, false, Some(pid))
        };
        match c.runsc.output(&argv).await {
            Ok(_) => Ok(Empty::new()),
            Err(e) if p.phase() == Phase::Stopped => Err(status(
                Code::NOT_FOUND,
                format!("process already finished: {e}"),
            )),
            Err(e) => Err(internal(e)),
        }
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> ttrpc::Result<PidsResponse> {
        let c = self.get(&req.id).await?;
        let out = c.runsc.output(&c.cli.ps(&c.id)).await.map_err(internal)?;
        let pids =
            super::parse_ps(&out).ok_or_else(|| internal("runsc ps printed unreadable output"))?;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| api::ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> ttrpc::Result<Empty> {
        let c = self.get(&req.id).await?;
        c.runsc
            .output(&c.cli.pause(&c.id, true))
            .await
            .map_err(internal)?;
        c.init.set_phase(Phase::Paused);
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        let c = self.get(&req.id).await?;
        c.runsc
            .output(&c.cli.pause(&c.id, false))
            .await
            .map_err(internal)?;
        c.init.set_phase(Phase::Running);
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> ttrpc::Result<Empty> {
        let c = self.get(&req.id).await?;
        let p = c.process(&req.exec_id)?;
        if req.stdin {
            p.with_io(|io| io.close_stdin());
        }
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> ttrpc::Result<Empty> {
        let c = self.get(&req.id).await?;
        let p = c.process(&req.exec_id)?;
        match p.with_io(|io| io.resize(req.width, req.height)) {
            Some(Ok(())) => Ok(Empty::new()),
            Some(Err(e)) => Err(status(
                Code::FAILED_PRECONDITION,
                format!("cannot resize terminal: {e}"),
            )),
            None => Err(status(Code::FAILED_PRECONDITION, "process has no terminal")),
        }
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> ttrpc::Result<Empty> {
        let c = self.get(&req.id).await?;
        self.update_resources(&c, &req).await?;
        Ok(Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let c = self.get(&req.id).await?;
        let out = c
            .runsc
            .output(&c.cli.stats(&c.id))
            .await
            .map_err(internal)?;
        let metrics = super::stats::metrics_from_runsc(&out).map_err(internal)?;
        Ok(StatsResponse {
            stats: MessageField::some(metrics),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> ttrpc::Result<ConnectResponse> {
        // never waits for a Create in flight: containerd connects with a deadline
        let task_pid = self
            .containers
            .lock()
            .await
            .get(&req.id)
            .map(|c| c.init.pid())
            .unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> ttrpc::Result<Empty> {
        let left = self.containers.lock().await.len();
        if left > 0 && !req.now {
            tracing::debug!(
                left,
                "shutdown requested while containers remain; staying up"
            );
            return Ok(Empty::new());
        }
        tracing::info!(now = req.now, "no container left; shutting down");
        self.pod.shutdown.notify_one();
        Ok(Empty::new())
    }
}
