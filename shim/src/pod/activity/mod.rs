//! The pod's activity sink: what the sandbox's processes did, from gVisor's
//! runtime monitoring, into the audit log.
//!
//! The pod daemon listens on its own `SOCK_SEQPACKET` socket and hands runsc a
//! pod-init config naming it when the backend creates the sandbox, so every
//! container of the pod is covered from its first instruction. Two threads,
//! none of them on the async runtime: the reader takes the sentry's points
//! as fast as they come (decoding, following the process tree, aggregating
//! files, rate limiting: `agentbox-activity`) and hands records to the
//! writer through a bounded queue; when the queue is full a record is
//! dropped and counted, so a slow disk never slows the sandbox (the sentry
//! itself drops, and counts, when our socket is full; it never blocks).

mod socket;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use agentbox_activity::{ActivityConfig, Pipeline, Record};

use crate::audit::{AuditLog, Subject};

/// Name of the pod-init config agentbox writes into the sandbox's bundle.
pub const POD_INIT_FILE: &str = "agentbox-activity.json";

/// The pod's containers by id, as the audit log names them.
#[derive(Default)]
pub struct Containers(Mutex<HashMap<String, Subject>>);

impl Containers {
    pub fn insert(&self, id: &str, subject: &Subject) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), subject.clone());
    }

    fn get(&self, id: &str) -> Option<Subject> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
}

#[derive(Default)]
struct State {
    connected: bool,
    /// Ends the stream at shutdown.
    conn: Option<std::os::fd::OwnedFd>,
}

/// A running sink.
pub struct ActivitySink {
    pub pod_init: PathBuf,
    listener: Arc<socket::Listener>,
    state: Arc<(Mutex<State>, Condvar)>,
    reader: Mutex<Option<std::thread::JoinHandle<()>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Small stacks: these threads hold little, and the daemon's memory counts.
const THREAD_STACK: usize = 256 * 1024;
/// Largest datagram read; a larger point is counted as malformed.
const MAX_FRAME: usize = agentbox_activity::wire::MAX_FRAME;

impl ActivitySink {
    /// Listen for the sandbox `sandbox_id` in `socket_dir`, write the
    /// pod-init config into `bundle`, and start the threads. Records go to
    /// `audit`, about the containers in `containers` (`pod` for the rest);
    /// argv goes through `redact` first.
    // (each argument is a separate piece of the daemon's state the threads need)
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        cfg: &ActivityConfig,
        socket_dir: &Path,
        bundle: &Path,
        sandbox_id: &str,
        audit: Arc<AuditLog>,
        containers: Arc<Containers>,
        pod: Subject,
        redact: agentbox_activity::Redactor,
    ) -> Result<ActivitySink, String> {
        let listener = Arc::new(
            socket::Listener::bind(socket_dir, sandbox_id)
                .map_err(|e| format!("cannot listen for gVisor's runtime monitoring: {e}"))?,
        );
        let pod_init = bundle.join(POD_INIT_FILE);
        crate::enforce::write_atomic(&pod_init, &cfg.pod_init_config(&listener.path))
            .map_err(|e| format!("cannot write {}: {e}", pod_init.display()))?;

        let (tx, rx) = sync_channel::<(SystemTime, Record)>(cfg.queue);
        let writer = std::thread::Builder::new()
            .name("activity-writer".into())
            .stack_size(THREAD_STACK)
            .spawn(move || writer::run(rx, &audit, &containers, &pod))
            .map_err(|e| format!("cannot start the activity writer: {e}"))?;

        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let pipeline = Pipeline::new(cfg.clone(), redact);
        let (l, st) = (listener.clone(), state.clone());
        let reader = std::thread::Builder::new()
            .name("activity-reader".into())
            .stack_size(THREAD_STACK)
            .spawn(move || read_loop(&l, &st, pipeline, tx))
            .map_err(|e| format!("cannot start the activity reader: {e}"))?;
        Ok(ActivitySink {
            pod_init,
            listener,
            state,
            reader: Mutex::new(Some(reader)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Wait until the sandbox connected (runsc connects during `create`).
    pub fn wait_connected(&self, limit: Duration) -> Result<(), String> {
        let (lock, cv) = &*self.state;
        let guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = cv
            .wait_timeout_while(guard, limit, |s| !s.connected)
            .unwrap_or_else(|p| p.into_inner());
        if guard.connected {
            Ok(())
        } else {
            Err(format!(
                "the sandbox did not connect to agentbox's activity sink {} (does this runsc support --pod-init-config?)",
                self.listener.path.display()
            ))
        }
    }

    /// End the stream (the sandbox is gone or the daemon exits) and wait up
    /// to `limit` for the last records to reach the audit log.
    pub fn close(&self, limit: Duration) {
        self.listener.shutdown();
        if let Some(c) = self
            .state
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .conn
            .as_ref()
        {
            // the sandbox is gone by now; this ends a stream it left open
            let _ = nix::sys::socket::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(c),
                nix::sys::socket::Shutdown::Read,
            );
        }
        let end = Instant::now() + limit;
        for h in [&self.reader, &self.writer] {
            let Some(h) = h.lock().unwrap_or_else(|p| p.into_inner()).take() else {
                continue;
            };
            while !h.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::warn!("activity records still pending at shutdown were not written");
            }
        }
    }
}

/// The activity audit's redactor: the secret detector (`agentbox-secrets`,
/// the redactor of exec argv too) on argv and on every path, working
/// directory and socket address. The daemon passes the node policy's
/// detector, so `[env] secret_rules` apply.
pub enum SecretsRedactor {
    /// The built-in rules.
    Builtin,
    /// The node config's policy: built-in rules plus `[env] secret_rules`.
    Node(Arc<crate::config::Config>),
}

impl SecretsRedactor {
    fn detector(&self) -> &agentbox_secrets::Detector {
        match self {
            SecretsRedactor::Builtin => agentbox_secrets::Detector::builtin(),
            SecretsRedactor::Node(cfg) => cfg.policy.secrets(),
        }
    }
}

impl agentbox_activity::Redact for SecretsRedactor {
    fn argv(&self, argv: &[String]) -> Vec<String> {
        self.detector().redact_argv(argv)
    }
    fn text(&self, text: &str) -> String {
        self.detector().redact_text(text)
    }
}

fn read_loop(
    listener: &socket::Listener,
    state: &(Mutex<State>, Condvar),
    mut pipeline: Pipeline,
    tx: SyncSender<(SystemTime, Record)>,
) {
    let conn = match listener.accept() {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "activity sink: no sandbox connection");
            return;
        }
    };
    {
        let mut s = state.0.lock().unwrap_or_else(|p| p.into_inner());
        s.connected = true;
        s.conn = conn.shutdown_handle().ok();
        state.1.notify_all();
    }
    // nothing else may connect
    let _ = std::fs::remove_file(&listener.path);
    let started = Instant::now();
    let mut buf = vec![0u8; MAX_FRAME];
    let mut out = Vec::new();
    loop {
        let n = match conn.recv(&mut buf) {
            Ok(0) => break,
            Ok(n) if n > buf.len() => {
                pipeline.malformed += 1;
                continue;
            }
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "activity sink: reading the sandbox's points failed");
                break;
            }
        };
        pipeline.ingest(&buf[..n], started.elapsed().as_secs_f64(), &mut out);
        send(&tx, &mut pipeline, &mut out);
    }
    pipeline.finish(started.elapsed().as_secs_f64(), &mut out);
    send(&tx, &mut pipeline, &mut out);
    if pipeline.malformed > 0 {
        tracing::warn!(
            count = pipeline.malformed,
            "activity sink: points that could not be read"
        );
    }
    // a drop counted at the very end still gets its record, waiting if need be
    if let Some(r) = pipeline.drops.take_record() {
        let _ = tx.send((SystemTime::now(), r));
    }
}

/// Hand records to the writer without ever waiting on it.
fn send(tx: &SyncSender<(SystemTime, Record)>, p: &mut Pipeline, out: &mut Vec<Record>) {
    let now = SystemTime::now();
    for r in out.drain(..) {
        match tx.try_send((now, r)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => p.drops.queue += 1,
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

#[cfg(test)]
mod tests;
