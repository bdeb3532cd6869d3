//! The container lifecycle of the runsc backend: Create, Start and Delete,
//! each run by the Task service in a task of its own (see `task::detached`).

use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecStarted, TaskIO, TaskStart,
};
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::ttrpc::{self, Code};

use super::cleanup::unmount_rootfs;
use super::exit::finish;
use super::process::{Phase, UNKNOWN_EXIT};
use super::task::Core;
use super::{internal, status};
use crate::events;
use crate::pod::BundleState;

impl Core {
    pub(super) async fn create(&self, req: CreateTaskRequest) -> ttrpc::Result<CreateTaskResponse> {
        // one Create per id at a time: a second one must not touch the first's sandbox
        let _reserved = self
            .pod
            .reserve(&req.id)
            .map_err(|e| status(Code::ALREADY_EXISTS, e))?;
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
                self.pod.container_deleted(&req.id);
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

    pub(super) async fn start(&self, req: StartRequest) -> ttrpc::Result<StartResponse> {
        let c = self.get(&req.id).await?;
        let p = c.process(&req.exec_id)?;
        if p.phase() != Phase::Created {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("process {} is not in the created state", req.id),
            ));
        }
        if req.exec_id.is_empty() {
            // the phases in time: an agent container waits for setup to end
            self.pod
                .check_start(&c.admitted)
                .await
                .map_err(|e| status(Code::FAILED_PRECONDITION, e))?;
            // the pod's lifetime: refused once it is over
            let lifetime = self
                .pod
                .start_lifetime(c.admitted.clone())
                .map_err(|e| status(Code::FAILED_PRECONDITION, e))?;
            let stdio = c.start_stdio.lock().unwrap().take().unwrap_or_default();
            c.runsc
                .run_with_stdio(&c.cli.start(&c.id), stdio, Some(&c.log))
                .await
                .map_err(internal)?;
            p.set_phase(Phase::Running);
            self.pod.container_started(&c.id);
            *c.lifetime.lock().unwrap() = lifetime;
            self.spawn_waiter(c.clone(), p.clone());
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

    pub(super) async fn delete(&self, req: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
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
        if let Err(e) = c.runsc.output(&c.cli.delete(&c.id, true)).await {
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
        drop(c.lifetime.lock().unwrap().take());
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
        self.pod.container_deleted(&c.id);
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
}
