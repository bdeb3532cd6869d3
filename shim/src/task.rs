//! The Task service of the runsc backend: agentbox is the gVisor shim. One
//! daemon serves a whole pod group; the pod's first container (the CRI
//! sandbox, or a lone `ctr run` container) is the runsc sandbox and every later
//! container of the group is created in it as a subcontainer (runsc reads the
//! CRI annotations of the spec to decide).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim_protos::api::{self, *};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext, Code};
use serde_json::{json, Map, Value};
use tokio::sync::{Mutex, Notify};

use crate::audit::{AuditLog, Subject};
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::enforce;
use crate::events::{self, EventSink};
use crate::io::{ConsoleSocket, ProcessIo, StdioPaths};
use crate::options;
use crate::process::{Phase, Process, UNKNOWN_EXIT};
use crate::reaper::Reaper;
use crate::runsc::{self, Runsc, RunscCli};

/// How long one runsc lifecycle command may take.
const RUNSC_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the output of an exited process may take to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// File in the bundle recording how to reach runsc, for `delete` after a crash.
pub const STATE_FILE: &str = "agentbox-state.json";

pub(crate) fn status(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn not_found(what: &str, id: &str) -> ttrpc::Error {
    status(Code::NOT_FOUND, format!("{what} {id} not found"))
}

/// What the daemon knows before any container exists.
pub struct Daemon {
    pub namespace: String,
    /// Config path learned from `start`'s runtime options, if any.
    pub default_config: Option<PathBuf>,
    pub events: Arc<dyn EventSink>,
    pub reaper: Arc<Reaper>,
    /// Notified when the daemon should exit.
    pub shutdown: Arc<Notify>,
    /// Trims the daemon's working set after bursts of work.
    pub trimmer: Option<crate::trim::Trimmer>,
}

impl Daemon {
    /// Note that work happened (the working set is trimmed once it is quiet).
    pub fn worked(&self) {
        if let Some(t) = &self.trimmer {
            t.poke();
        }
    }
}

/// Resolve the config for a Create: the request's runtime options win, then
/// what `start` was given, then the default path. Fail closed on any error.
pub fn resolve_config(options_any: Option<&Any>, default: Option<&Path>) -> Result<Config, String> {
    if let Some(any) = options_any {
        match options::from_any(any) {
            Ok(Some(o)) => {
                if let Some(body) = o.config_body.as_deref() {
                    return Config::from_toml_str(body, "runtime options ConfigBody")
                        .map_err(|e| e.to_string());
                }
                if let Some(path) = o.config_path.as_deref() {
                    return Config::load(Path::new(path)).map_err(|e| e.to_string());
                }
            }
            Ok(None) => {}
            Err(e) => return Err(format!("agentbox cannot read the runtime options: {e}")),
        }
    }
    let path = default.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    Config::load(path).map_err(|e| e.to_string())
}

/// What `delete` needs to clean up after a dead daemon.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BundleState {
    pub runsc: PathBuf,
    pub root: PathBuf,
    pub global_flags: Vec<String>,
    pub mask_proc_sys_net: bool,
    pub audit: PathBuf,
    pub rootfs_mounted: bool,
    /// The delegate shim (shim backend).
    #[serde(default)]
    pub delegate: Option<String>,
    /// The delegate daemon's pid (shim backend).
    #[serde(default)]
    pub delegate_pid: Option<i32>,
}

struct Container {
    id: String,
    bundle: PathBuf,
    cfg: Arc<Config>,
    runsc: Runsc,
    cli: RunscCli,
    log: PathBuf,
    audit: Arc<AuditLog>,
    subject: Subject,
    annotations: Map<String, Value>,
    rootfs_mounted: bool,
    init: Arc<Process>,
    execs: std::sync::Mutex<HashMap<String, Arc<Process>>>,
    lifetime: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The stdio kept between `runsc create` and `runsc start` (runsc donates a
    /// subcontainer's stdio at start).
    start_stdio: std::sync::Mutex<Option<crate::io::ChildStdio>>,
    /// The sandbox's memory cgroup and its OOM kill count at create.
    oom_baseline: std::sync::Mutex<Option<(PathBuf, u64)>>,
}

impl Container {
    /// True for the container that is the runsc sandbox itself: a CRI pod's
    /// sandbox container, or a container outside Kubernetes.
    fn is_sandbox_root(&self) -> bool {
        self.annotations
            .get("io.kubernetes.cri.container-type")
            .and_then(Value::as_str)
            .is_none_or(|t| t != "container")
    }

    fn process(&self, exec_id: &str) -> Result<Arc<Process>, ttrpc::Error> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.execs
            .lock()
            .unwrap()
            .get(exec_id)
            .cloned()
            .ok_or_else(|| not_found("exec", exec_id))
    }
}

pub struct RunscTask {
    daemon: Arc<Daemon>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

impl RunscTask {
    pub fn new(daemon: Arc<Daemon>) -> RunscTask {
        RunscTask {
            daemon,
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

    fn runsc_for(&self, cfg: &Config, bundle: &Path) -> (Runsc, RunscCli, PathBuf) {
        let log = bundle.join("runsc.log");
        let cli = RunscCli {
            binary: cfg.runtime.runsc.clone(),
            root: cfg.runtime.runsc_root.join(&self.daemon.namespace),
            global_flags: cfg.runsc_global_flags(),
            log: Some(log.clone()),
        };
        let runsc = Runsc {
            cli: cli.clone(),
            mask_proc_sys_net: cfg.runtime.runsc_mask_proc_sys_net,
            reaper: self.daemon.reaper.clone(),
        };
        (runsc, cli, log)
    }

    async fn do_create(&self, req: &CreateTaskRequest) -> Result<Arc<Container>, String> {
        let bundle = PathBuf::from(&req.bundle);
        if req.id.is_empty() || req.bundle.is_empty() {
            return Err("create needs an id and a bundle".into());
        }
        let cfg = Arc::new(resolve_config(
            req.options.as_ref(),
            self.daemon.default_config.as_deref(),
        )?);
        let audit = Arc::new(AuditLog::new(&cfg.audit.path));
        // 1. the policy, before anything else touches the bundle
        let enforced = enforce::enforce_bundle(
            &cfg.policy,
            &audit,
            &bundle,
            &self.daemon.namespace,
            &req.id,
            json!({"runtime": "runsc", "sandbox": cfg.sandbox_kind(), "config": cfg.origin}),
        )
        .map_err(|e| e.to_string())?;
        let annotations = enforced.annotations();
        let subject =
            Subject::from_annotations(&self.daemon.namespace, &req.id, Some(&annotations));
        if enforced.terminal() != req.terminal && req.terminal {
            return Err("the request asks for a terminal but the spec has none".into());
        }

        // 2. the rootfs containerd prepared
        let rootfs = bundle.join("rootfs");
        let mut rootfs_mounted = false;
        if !req.rootfs.is_empty() {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| format!("cannot create {}: {e}", rootfs.display()))?;
            for m in &req.rootfs {
                containerd_shim::asynchronous::util::mount_rootfs(m, &rootfs)
                    .await
                    .map_err(|e| format!("cannot mount the container rootfs: {e}"))?;
                rootfs_mounted = true;
            }
        }

        let (runsc, cli, log) = self.runsc_for(&cfg, &bundle);
        std::fs::create_dir_all(&cli.root)
            .map_err(|e| format!("cannot create runsc root {}: {e}", cli.root.display()))?;
        let state = BundleState {
            runsc: cli.binary.clone(),
            root: cli.root.clone(),
            global_flags: cli.global_flags.clone(),
            mask_proc_sys_net: runsc.mask_proc_sys_net,
            audit: cfg.audit.path.clone(),
            rootfs_mounted,
            delegate: None,
            delegate_pid: None,
        };
        enforce::write_atomic(
            &bundle.join(STATE_FILE),
            &serde_json::to_value(&state).unwrap_or_default(),
        )
        .map_err(|e| format!("cannot write {STATE_FILE}: {e}"))?;

        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let init = Arc::new(Process::new("", stdio.clone(), None));
        let container = Arc::new(Container {
            id: req.id.clone(),
            bundle: bundle.clone(),
            cfg: cfg.clone(),
            runsc,
            cli,
            log,
            audit,
            subject,
            annotations,
            rootfs_mounted,
            init: init.clone(),
            execs: std::sync::Mutex::new(HashMap::new()),
            lifetime: std::sync::Mutex::new(None),
            start_stdio: std::sync::Mutex::new(None),
            oom_baseline: std::sync::Mutex::new(None),
        });

        // 3. runsc create, with the container's IO
        let pid_file = bundle.join("init.pid");
        let result = self.runsc_create(&container, &stdio, &pid_file).await;
        if let Err(e) = result {
            cleanup_failed_create(&container).await;
            return Err(e);
        }
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        init.set_pid(pid);
        *container.oom_baseline.lock().unwrap() = crate::oom::baseline(pid);
        Ok(container)
    }

    async fn runsc_create(
        &self,
        c: &Container,
        stdio: &StdioPaths,
        pid_file: &Path,
    ) -> Result<(), String> {
        let (argv, io, child) = if stdio.terminal {
            let sock_path = console_socket_path(&c.cli.root, &c.id);
            let sock = ConsoleSocket::bind(&sock_path)
                .map_err(|e| format!("cannot create console socket: {e}"))?;
            let argv = c.cli.create(&c.id, &c.bundle, pid_file, Some(sock.path()));
            let recv = tokio::task::spawn_blocking(move || sock.receive_master(RUNSC_TIMEOUT));
            c.runsc
                .run_with_stdio(&argv, Default::default(), Some(&c.log), RUNSC_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            let master = recv
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("cannot receive the container's terminal: {e}"))?;
            let io = ProcessIo::console(stdio, master)
                .map_err(|e| format!("cannot open container io: {e}"))?;
            c.init.set_io(io);
            return Ok(());
        } else {
            let (io, child) =
                ProcessIo::pipes(stdio).map_err(|e| format!("cannot open container io: {e}"))?;
            (c.cli.create(&c.id, &c.bundle, pid_file, None), io, child)
        };
        // runsc donates a subcontainer's stdio at `start`; keep a copy for it.
        let for_start = child
            .try_clone()
            .map_err(|e| format!("cannot duplicate container io: {e}"))?;
        c.init.set_io(io);
        c.runsc
            .run_with_stdio(&argv, child, Some(&c.log), RUNSC_TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        *c.start_stdio.lock().unwrap() = Some(for_start);
        Ok(())
    }

    /// Watch a process until it exits: `runsc wait`, then record, drain, publish.
    fn spawn_waiter(&self, c: Arc<Container>, p: Arc<Process>) {
        let events = self.daemon.events.clone();
        let reaper = self.daemon.reaper.clone();
        tokio::spawn(async move {
            let pid = p.pid() as i32;
            // Who knows the exit status: the root container's init is the
            // sandbox process and an exec'd process is watched by the
            // `runsc exec` that --detach leaves behind; both are our children
            // (we are a subreaper) once their parent exited. A subcontainer's
            // init is only known to the sandbox: ask `runsc wait`.
            let from_reaper = pid > 0 && (!p.exec_id.is_empty() || c.is_sandbox_root());
            let status = if from_reaper {
                match reaper.wait_exit(pid, None).await {
                    Some(s) => s as u32,
                    None => UNKNOWN_EXIT,
                }
            } else {
                match c.runsc.wait(&c.cli.wait(&c.id, None)).await {
                    Ok(s) => s as u32,
                    Err(e) => {
                        tracing::warn!(container = %c.id, error = %e, "runsc wait failed; reporting the process as killed");
                        UNKNOWN_EXIT
                    }
                }
            };
            finish(&c, &p, status, events.as_ref()).await;
        });
    }

    fn spawn_lifetime(&self, c: Arc<Container>) {
        let max = c.cfg.lifetime.max_seconds;
        // the limit is for workloads: a pod's sandbox (pause) container lives
        // as long as its pod
        if max == 0 || is_cri_sandbox(&c.annotations) {
            return;
        }
        let grace = c.cfg.lifetime.grace();
        let c2 = c.clone();
        let h = tokio::spawn(async move {
            let c = c2;
            tokio::time::sleep(Duration::from_secs(max)).await;
            if c.init.phase() == Phase::Stopped {
                return;
            }
            let _ = c.audit.record(
                "lifetime",
                &c.subject,
                json!({"max_seconds": max, "action": "SIGTERM", "grace_seconds": grace}),
            );
            tracing::warn!(container = %c.id, max, "lifetime exceeded; stopping the container");
            let _ = c
                .runsc
                .output(
                    &c.cli.kill(&c.id, libc::SIGTERM as u32, true, None),
                    RUNSC_TIMEOUT,
                )
                .await;
            if tokio::time::timeout(Duration::from_secs(grace), c.init.wait())
                .await
                .is_err()
            {
                let _ = c.audit.record(
                    "lifetime",
                    &c.subject,
                    json!({"max_seconds": max, "action": "SIGKILL"}),
                );
                let _ = c
                    .runsc
                    .output(
                        &c.cli.kill(&c.id, libc::SIGKILL as u32, true, None),
                        RUNSC_TIMEOUT,
                    )
                    .await;
            }
        });
        *c.lifetime.lock().unwrap() = Some(h);
    }
}

/// True for a CRI pod sandbox (pause) container.
pub fn is_cri_sandbox(annotations: &Map<String, Value>) -> bool {
    annotations
        .get("io.kubernetes.cri.container-type")
        .and_then(Value::as_str)
        == Some("sandbox")
}

/// A short console socket path (unix socket paths are limited to 107 bytes).
fn console_socket_path(root: &Path, id: &str) -> PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let short: String = id.chars().take(12).collect();
    let p = root.join(format!("c-{short}-{n:x}.sock"));
    if p.as_os_str().len() < 100 {
        p
    } else {
        std::env::temp_dir().join(format!("agentbox-{short}-{n:x}.sock"))
    }
}

async fn finish(c: &Container, p: &Process, status: u32, events: &dyn EventSink) {
    if let Some(io) = p.take_io() {
        io.drain(DRAIN_TIMEOUT).await;
        p.set_io(io);
    }
    if !p.set_exited(status) {
        return;
    }
    tracing::info!(container = %c.id, exec = %p.exec_id, status, "process exited");
    // an OOM kill of the sandbox: TaskOOM first, so CRI says OOMKilled
    let oom = p.exec_id.is_empty()
        && c.oom_baseline
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(crate::oom::killed_since);
    if oom {
        tracing::warn!(container = %c.id, "the sandbox was killed for running out of memory");
        let _ = c
            .audit
            .record("oom", &c.subject, json!({"exit_status": status}));
        events::send(
            events,
            containerd_shim_protos::events::task::TaskOOM {
                container_id: c.id.clone(),
                ..Default::default()
            },
        )
        .await;
    }
    let fields = if p.exec_id.is_empty() {
        json!({"exit_status": status})
    } else {
        json!({"exec_id": p.exec_id, "exit_status": status})
    };
    if let Err(e) = c.audit.record("exit", &c.subject, fields) {
        tracing::error!(error = %e, "cannot audit exit");
    }
    let exit = p.exit().expect("just set");
    events::send(
        events,
        TaskExit {
            container_id: c.id.clone(),
            id: if p.exec_id.is_empty() {
                c.id.clone()
            } else {
                p.exec_id.clone()
            },
            pid: p.pid(),
            exit_status: status,
            exited_at: MessageField::some(exit.at),
            ..Default::default()
        },
    )
    .await;
}

async fn cleanup_failed_create(c: &Container) {
    let _ = c
        .runsc
        .output(&c.cli.delete(&c.id, true), RUNSC_TIMEOUT)
        .await;
    if let Some(io) = c.init.take_io() {
        io.shutdown();
    }
    c.start_stdio.lock().unwrap().take();
    if c.rootfs_mounted {
        unmount_rootfs(&c.bundle);
    }
}

pub fn unmount_rootfs(bundle: &Path) {
    let rootfs = bundle.join("rootfs");
    if let Some(p) = rootfs.to_str() {
        if let Err(e) = containerd_shim::mount::umount_recursive(Some(p), libc::MNT_DETACH) {
            tracing::warn!(error = %e, "cannot unmount rootfs");
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ttrpc::Error {
    status(Code::INTERNAL, e.to_string())
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
        self.daemon.worked();
        events::send(
            self.daemon.events.as_ref(),
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
            self.spawn_lifetime(c.clone());
            events::send(
                self.daemon.events.as_ref(),
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
                self.daemon.events.as_ref(),
                TaskExecStarted {
                    container_id: c.id.clone(),
                    exec_id: req.exec_id.clone(),
                    pid: p.pid(),
                    ..Default::default()
                },
            )
            .await;
        }
        self.daemon.worked();
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
            finish(&c, &p, UNKNOWN_EXIT, self.daemon.events.as_ref()).await;
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
        // cleaned up: containerd's `delete` action has nothing left to do
        let _ = std::fs::remove_file(c.bundle.join(STATE_FILE));
        self.containers.lock().await.remove(&c.id);
        let exit = p.exit();
        let exit_status = exit.as_ref().map(|e| e.status).unwrap_or(UNKNOWN_EXIT);
        let exited_at = exit.map(|e| e.at).unwrap_or_else(crate::process::now);
        events::send(
            self.daemon.events.as_ref(),
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
        let enforced = enforce::enforce_exec(
            &c.cfg.policy,
            &c.audit,
            &c.subject,
            &c.annotations,
            &req.exec_id,
            &spec,
        )
        .map_err(|e| status(Code::FAILED_PRECONDITION, e.to_string()))?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let p = Arc::new(Process::new(&req.exec_id, stdio, Some(enforced.process)));
        c.execs.lock().unwrap().insert(req.exec_id.clone(), p);
        events::send(
            self.daemon.events.as_ref(),
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
            let _ = c.audit.record(
                "kill",
                &c.subject,
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
                finish(&c, &p, 128 + req.signal, self.daemon.events.as_ref()).await;
                return Ok(Empty::new());
            }
            Phase::Created => {
                finish(&c, &p, 128 + req.signal, self.daemon.events.as_ref()).await;
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
            runsc::parse_ps(&out).ok_or_else(|| internal("runsc ps printed unreadable output"))?;
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
        let _ = c
            .audit
            .record("update", &c.subject, json!({"applied": false}));
        Ok(Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> ttrpc::Result<StatsResponse> {
        let c = self.get(&req.id).await?;
        let out = c
            .runsc
            .output(&c.cli.stats(&c.id), RUNSC_TIMEOUT)
            .await
            .map_err(internal)?;
        let metrics = crate::stats::metrics_from_runsc(&out).map_err(internal)?;
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
        self.daemon.shutdown.notify_one();
        Ok(Empty::new())
    }
}

impl RunscTask {
    async fn start_exec(&self, c: &Arc<Container>, p: &Arc<Process>) -> ttrpc::Result<()> {
        let dir = c.bundle.join("execs");
        std::fs::create_dir_all(&dir).map_err(internal)?;
        let safe: String = p
            .exec_id
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' {
                    ch
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
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
            let recv = tokio::task::spawn_blocking(move || sock.receive_master(RUNSC_TIMEOUT));
            let r = c
                .runsc
                .run_with_stdio(&argv, Default::default(), Some(&c.log), RUNSC_TIMEOUT)
                .await;
            if r.is_ok() {
                let master = recv.await.map_err(internal)?.map_err(internal)?;
                p.set_io(ProcessIo::console(&p.stdio, master).map_err(internal)?);
            }
            r
        } else {
            let (io, child) = ProcessIo::pipes(&p.stdio).map_err(internal)?;
            p.set_io(io);
            let argv = c
                .cli
                .exec(&c.id, &process_file, &pid_file, &internal_pid_file, None);
            c.runsc
                .run_with_stdio(&argv, child, Some(&c.log), RUNSC_TIMEOUT)
                .await
        };
        let _ = std::fs::remove_file(&process_file);
        if let Err(e) = result {
            if let Some(io) = p.take_io() {
                io.shutdown();
            }
            return Err(status(Code::FAILED_PRECONDITION, e.to_string()));
        }
        let read = |f: &Path| {
            std::fs::read_to_string(f)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
        };
        let internal_pid =
            read(&internal_pid_file).ok_or_else(|| internal("runsc exec wrote no internal pid"))?;
        p.set_internal_pid(internal_pid);
        p.set_pid(read(&pid_file).unwrap_or(internal_pid));
        p.set_phase(Phase::Running);
        self.spawn_waiter(c.clone(), p.clone());
        Ok(())
    }
}
