//! The Task service of the runsc backend: containerd's calls mapped onto
//! runsc commands, the container table, and the pod's control of it.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api::{self, *};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskIO, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext, Code};
use serde_json::json;
use tokio::sync::Mutex;

use super::cleanup::unmount_rootfs;
use super::container::Container;
use super::exit::finish;
use super::io::StdioPaths;
use super::process::{Phase, Process, UNKNOWN_EXIT};
use super::{internal, not_found, status, RUNSC_TIMEOUT};
use crate::backend::Control;
use crate::events;
use crate::pod::{BundleState, Pod};

pub struct RunscTask {
    pub(super) pod: Arc<Pod>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

impl RunscTask {
    pub fn new(pod: Arc<Pod>) -> RunscTask {
        RunscTask {
            pod,
            containers: Mutex::new(HashMap::new()),
        }
    }

    async fn get(&self, id: &str) -> Result<Arc<Container>, ttrpc::Error> {
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
            .output(&c.cli.kill(&c.id, signal, all, None), RUNSC_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Task for RunscTask {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        if self.containers.lock().await.contains_key(&req.id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("container {} already exists", req.id),
            ));
        }
        let c = match self.do_create(&req).await {
            Ok(c) => c,
            Err(msg) => {
                tracing::error!(container = %req.id, error = %msg, "create failed");
                return Err(status(Code::FAILED_PRECONDITION, msg));
            }
        };
        let pid = c.init.pid();
        self.containers.lock().await.insert(c.id.clone(), c.clone());
        self.pod.worked();
        events::send(
            self.pod.events.as_ref(),
            TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                checkpoint: req.checkpoint.clone(),
                pid,
                ..Default::default()
            },
        )
        .await;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let c = self.get(&req.id).await?;
        let p = c.process(&req.exec_id)?;
        if p.phase() != Phase::Created {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("process {} is not in the created state", req.id),
            ));
        }
        if req.exec_id.is_empty() {
            let stdio = c.start_stdio.lock().unwrap().take().unwrap_or_default();
            c.runsc
                .run_with_stdio(&c.cli.start(&c.id), stdio, Some(&c.log), RUNSC_TIMEOUT)
                .await
                .map_err(internal)?;
            p.set_phase(Phase::Running);
            self.spawn_waiter(c.clone(), p.clone());
            *c.lifetime.lock().unwrap() = self.pod.spawn_lifetime(c.admitted.clone());
            events::send(
                self.pod.events.as_ref(),
                TaskStart {
                    container_id: c.id.clone(),
                    pid: p.pid(),
                    ..Default::default()
                },
            )
            .await;
        } else {
            self.start_exec(&c, &p).await?;
            events::send(
                self.pod.events.as_ref(),
                TaskExecStarted {
                    container_id: c.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid: p.pid(),
                    ..Default::default()
                },
            )
            .await;
        }
        self.pod.worked();
        Ok(StartResponse {
            pid: p.pid(),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: DeleteRequest,
    ) -> ttrpc::Result<DeleteResponse> {
        let c = self.get(&req.id).await?;
        if !req.exec_id.is_empty() {
            let p = c.process(&req.exec_id)?;
            if p.phase() != Phase::Stopped && p.phase() != Phase::Created {
                return Err(status(
                    Code::FAILED_PRECONDITION,
                    format!("exec {} is still running", req.exec_id),
                ));
            }
            c.execs.lock().unwrap().remove(&req.exec_id);
            if let Some(io) = p.take_io() {
                io.shutdown();
            }
            let exit = p.exit();
            return Ok(DeleteResponse {
                pid: p.pid(),
                exit_status: exit.as_ref().map(|e| e.status).unwrap_or(0),
                exited_at: MessageField::from_option(exit.map(|e| e.at)),
                ..Default::default()
            });
        }
        let p = c.init.clone();
        // force: also tears down a sandbox whose init is gone
        if let Err(e) = c
            .runsc
            .output(&c.cli.delete(&c.id, true), RUNSC_TIMEOUT)
            .await
        {
            tracing::warn!(container = %c.id, error = %e, "runsc delete failed");
        }
        if p.phase() != Phase::Stopped {
            // created but never started, or the waiter has not reported yet
            finish(&c, &p, UNKNOWN_EXIT, self.pod.events.as_ref()).await;
        }
        if let Some(io) = p.take_io() {
            io.shutdown();
        }
        for (_, e) in c.execs.lock().unwrap().drain() {
            if let Some(io) = e.take_io() {
                io.shutdown();
            }
        }
        if let Some(h) = c.lifetime.lock().unwrap().take() {
            h.abort();
        }
        c.start_stdio.lock().unwrap().take();
        if c.rootfs_mounted {
            unmount_rootfs(&c.bundle);
        }
        if let Some(d) = &c.overlay_dir {
            super::tune::remove_overlay_folder(d);
        }
        // cleaned up: containerd's `delete` action has nothing left to do
        BundleState::remove(&c.bundle);
        self.containers.lock().await.remove(&c.id);
        let exit = p.exit();
        let exit_status = exit.as_ref().map(|e| e.status).unwrap_or(UNKNOWN_EXIT);
        let exited_at = exit.map(|e| e.at).unwrap_or_else(super::process::now);
        events::send(
            self.pod.events.as_ref(),
            TaskDelete {
                container_id: c.id.clone(),
                pid: p.pid(),
                exit_status,
                exited_at: MessageField::some(exited_at.clone()),
                ..Default::default()
            },
        )
        .await;
        Ok(DeleteResponse {
            pid: p.pid(),
            exit_status,
            exited_at: MessageField::some(exited_at),
            ..Default::default()
        })
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
                    .output(&c.cli.delete(&c.id, true), RUNSC_TIMEOUT)
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
        match c.runsc.output(&argv, RUNSC_TIMEOUT).await {
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
        let out = c
            .runsc
            .output(&c.cli.ps(&c.id), RUNSC_TIMEOUT)
            .await
            .map_err(internal)?;
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
            .output(&c.cli.pause(&c.id, true), RUNSC_TIMEOUT)
            .await
            .map_err(internal)?;
        c.init.set_phase(Phase::Paused);
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> ttrpc::Result<Empty> {
        let c = self.get(&req.id).await?;
        c.runsc
            .output(&c.cli.pause(&c.id, false), RUNSC_TIMEOUT)
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
        // gVisor applies cgroup limits to the whole sandbox from outside; the
        // runsc of Debian 12 has no `update`. Accept and record, so kubelet's
        // resource updates do not fail the pod.
        let a = &c.admitted;
        let _ = a
            .audit
            .record("update", &a.subject, json!({"applied": false}));
        Ok(Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let c = self.get(&req.id).await?;
        let out = c
            .runsc
            .output(&c.cli.stats(&c.id), RUNSC_TIMEOUT)
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
        let task_pid = self.get(&req.id).await.map(|c| c.init.pid()).unwrap_or(0);
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
