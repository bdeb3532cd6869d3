//! Exec'd processes: `runsc exec --detach` with the policy-rewritten process
//! spec, their IO, and their pids inside and outside the sandbox.

use std::path::Path;
use std::sync::Arc;

use containerd_shim_protos::ttrpc::{self, Code};
use serde_json::Value;

use super::container::{console_socket_path, Container};
use super::io::{ConsoleSocket, ProcessIo};
use super::process::{Phase, Process};
use super::task::Core;
use super::{internal, status};
use crate::enforce;

/// An exec id as a file name: safe characters only, bounded.
fn file_safe(exec_id: &str) -> String {
    exec_id
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' {
                ch
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

impl Core {
    pub(super) async fn start_exec(
        &self,
        c: &Arc<Container>,
        p: &Arc<Process>,
    ) -> ttrpc::Result<()> {
        let dir = c.bundle.join("execs");
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let safe = file_safe(&p.exec_id);
        let process_file = dir.join(format!("{safe}.json"));
        let pid_file = dir.join(format!("{safe}.pid"));
        let internal_pid_file = dir.join(format!("{safe}.ipid"));
        let spec = p.spec.clone().unwrap_or(Value::Null);
        enforce::write_atomic(&process_file, &spec).map_err(internal)?;
        let result = if p.stdio.terminal {
            let sock_path = console_socket_path(&c.cli.root, &p.exec_id);
            let sock = ConsoleSocket::bind(&sock_path).map_err(internal)?;
            let argv = c.cli.exec(
                &c.id,
                &process_file,
                &pid_file,
                &internal_pid_file,
                Some(sock.path()),
            );
            let wait = c.runsc.timeout;
            let recv = tokio::task::spawn_blocking(move || sock.receive_master(wait));
            c.runsc
                .run_with_stdio(&argv, Default::default(), Some(&c.log))
                .await
                .map(|()| Some(recv))
        } else {
            let (io, child) = ProcessIo::pipes(&p.stdio).map_err(internal)?;
            p.set_io(io);
            let argv = c
                .cli
                .exec(&c.id, &process_file, &pid_file, &internal_pid_file, None);
            c.runsc
                .run_with_stdio(&argv, child, Some(&c.log))
                .await
                .map(|()| None)
        };
        let _ = std::fs::remove_file(&process_file);
        let recv = match result {
            Ok(r) => r,
            Err(e) => {
                if let Some(io) = p.take_io() {
                    io.shutdown();
                }
                return Err(status(Code::FAILED_PRECONDITION, e.to_string()));
            }
        };
        // The process runs from here on: any later error must end it.
        let read = |f: &Path| {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
        };
        let host_pid = read(&pid_file);
        let internal_pid = read(&internal_pid_file);
        let finished = async {
            if let Some(recv) = recv {
                let master = recv
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("cannot receive the exec's terminal: {e}"))?;
                p.set_io(ProcessIo::console(&p.stdio, master).map_err(|e| e.to_string())?);
            }
            internal_pid.ok_or_else(|| "runsc exec wrote no internal pid".to_string())
        };
        match finished.await {
            Ok(internal_pid) => {
                p.set_internal_pid(internal_pid);
                p.set_pid(host_pid.unwrap_or(internal_pid));
                p.set_phase(Phase::Running);
                self.spawn_waiter(c.clone(), p.clone());
                Ok(())
            }
            Err(e) => {
                tracing::warn!(container = %c.id, exec = %p.exec_id, error = %e, "exec started but failed; killing it");
                self.kill_started_exec(c, host_pid, internal_pid).await;
                if let Some(io) = p.take_io() {
                    io.shutdown();
                }
                Err(internal(e))
            }
        }
    }

    /// End an exec'd process that started but could not be set up: inside
    /// the sandbox by its pid there, and the `runsc exec` watching it.
    async fn kill_started_exec(
        &self,
        c: &Container,
        host_pid: Option<u32>,
        internal_pid: Option<u32>,
    ) {
        if let Some(ipid) = internal_pid {
            let kill = c.cli.kill(&c.id, libc::SIGKILL as u32, false, Some(ipid));
            if let Err(e) = c.runsc.output(&kill).await {
                tracing::warn!(container = %c.id, error = %e, "cannot kill the failed exec");
            }
        }
        if let Some(pid) = host_pid {
            self.pod.reaper.kill_child(pid as i32);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exec_ids_become_safe_file_names() {
        assert_eq!(super::file_safe("exec-1_a"), "exec-1_a");
        assert_eq!(super::file_safe("../x y"), "___x_y");
        assert_eq!(super::file_safe(&"a".repeat(100)).len(), 64);
    }
}
