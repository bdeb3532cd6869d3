//! A container of the runsc backend and its Create: the policy (through the
//! pod), the rootfs containerd prepared, `runsc create` with the container's IO.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim_protos::api::CreateTaskRequest;
use containerd_shim_protos::ttrpc;
use serde_json::{json, Value};

use super::cleanup::{unmount_rootfs, CleanupState};
use super::io::{ConsoleSocket, ProcessIo, StdioPaths};
use super::process::Process;
use super::task::Core;
use super::{not_found, Runsc};
use crate::backend::BackendState;
use crate::pod::{Admitted, BundleState, LifetimeGuard};

pub(super) struct Container {
    pub id: String,
    pub bundle: PathBuf,
    /// What the policy admitted: config, audit log, identity, rewritten spec.
    pub admitted: Arc<Admitted>,
    pub runsc: Runsc,
    pub cli: super::RunscCli,
    pub log: PathBuf,
    pub rootfs_mounted: bool,
    pub init: Arc<Process>,
    pub execs: std::sync::Mutex<HashMap<String, Arc<Process>>>,
    /// The lifetime timer, dropped (cancelled) when the init exits.
    pub lifetime: std::sync::Mutex<Option<LifetimeGuard>>,
    /// The stdio kept between `runsc create` and `runsc start` (runsc donates a
    /// subcontainer's stdio at start).
    pub start_stdio: std::sync::Mutex<Option<super::io::ChildStdio>>,
    /// The sandbox's memory cgroup and its OOM kill count at create.
    pub oom_baseline: std::sync::Mutex<Option<(PathBuf, u64)>>,
    /// The pod's root filesystem overlay folder, if this container made it.
    pub overlay_dir: Option<PathBuf>,
}

impl Container {
    /// True for the container that is the runsc sandbox itself: a CRI pod's
    /// sandbox container, or a container outside Kubernetes.
    pub fn is_sandbox_root(&self) -> bool {
        self.admitted
            .annotations
            .get("io.kubernetes.cri.container-type")
            .and_then(Value::as_str)
            .is_none_or(|t| t != "container")
    }

    pub fn process(&self, exec_id: &str) -> Result<Arc<Process>, ttrpc::Error> {
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

impl Core {
    fn runsc_for(
        &self,
        cfg: &crate::config::Config,
        bundle: &Path,
        tuning_flags: &[String],
    ) -> (Runsc, super::RunscCli, PathBuf) {
        let log = bundle.join("runsc.log");
        let cli = super::RunscCli {
            binary: cfg.runtime.runsc.clone(),
            root: cfg.runtime.runsc_root.join(&self.pod.namespace),
            global_flags: [cfg.runsc_global_flags(), tuning_flags.to_vec()].concat(),
            log: Some(log.clone()),
        };
        let runsc = Runsc {
            cli: cli.clone(),
            mask_proc_sys_net: cfg.runtime.runsc_mask_proc_sys_net,
            reaper: self.pod.reaper.clone(),
            timeout: cfg.runsc_timeout(),
        };
        (runsc, cli, log)
    }

    pub(super) async fn do_create(
        &self,
        req: &CreateTaskRequest,
    ) -> Result<Arc<Container>, String> {
        let bundle = PathBuf::from(&req.bundle);
        // 1. the policy, before anything else touches the bundle
        let admitted = Arc::new(
            self.pod
                .admit(
                    &req.id,
                    &bundle,
                    req.options.as_ref(),
                    &req.checkpoint,
                    json!({"runtime": "runsc", "sandbox": crate::config::SandboxKind::Gvisor}),
                )
                .await?,
        );
        if !req.checkpoint.is_empty() {
            // approved by the node's config, but this backend has no restore
            return Err(format!(
                "agentbox cannot restore container {} from a checkpoint: the runsc backend does not support restore",
                req.id
            ));
        }
        if admitted.enforced.terminal() != req.terminal && req.terminal {
            return Err("the request asks for a terminal but the spec has none".into());
        }
        let cfg = admitted.cfg.clone();
        // the fast runsc configuration, after the policy: flags, overlay
        // folder, emptyDir hints (removes its folder if Create fails before
        // the container holds it)
        let mut tuned = super::tune::prepare(&self.pod, &admitted, &bundle).await?;

        // 2. the rootfs containerd prepared
        let rootfs = bundle.join("rootfs");
        let mut rootfs_mounted = false;
        if !req.rootfs.is_empty() {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| format!("cannot create {}: {e}", rootfs.display()))?;
            for m in &req.rootfs {
                let r = containerd_shim::asynchronous::util::mount_rootfs(m, &rootfs).await;
                if let Err(e) = r {
                    if rootfs_mounted {
                        unmount_rootfs(&bundle);
                    }
                    return Err(format!("cannot mount the container rootfs: {e}"));
                }
                rootfs_mounted = true;
            }
        }

        let (runsc, cli, log) = self.runsc_for(&cfg, &bundle, &tuned.flags);
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
            admitted,
            runsc,
            cli,
            log,
            rootfs_mounted,
            init: init.clone(),
            execs: std::sync::Mutex::new(HashMap::new()),
            lifetime: std::sync::Mutex::new(None),
            start_stdio: std::sync::Mutex::new(None),
            oom_baseline: std::sync::Mutex::new(None),
            overlay_dir: tuned.keep(),
        });

        // 3. the runsc root and the crash-cleanup state, the activity sink
        // (the sandbox reports what its processes do to it; fail closed: no
        // sink, no sandbox), then runsc create with the container's IO;
        // nothing half-made stays
        let pid_file = bundle.join("init.pid");
        let mut pod_init = None;
        let mut result = prepare(&container);
        if result.is_ok() && container.is_sandbox_root() {
            match self
                .pod
                .start_activity(&container.admitted, &bundle, &container.cli.root)
            {
                Ok(p) => pod_init = p,
                Err(e) => result = Err(e),
            }
        }
        if result.is_ok() {
            result = runsc_create(&container, &stdio, &pid_file, pod_init.as_deref()).await;
        }
        if result.is_ok() && pod_init.is_some() {
            result = self.pod.activity_connected();
        }
        if let Err(e) = result {
            cleanup_failed_create(&container).await;
            if pod_init.is_some() {
                self.pod.close_activity();
            }
            return Err(e);
        }
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .unwrap_or(0);
        init.set_pid(pid);
        *container.oom_baseline.lock().unwrap() = super::oom::baseline(pid);
        Ok(container)
    }
}

/// The runsc root and the crash-cleanup state.
fn prepare(c: &Container) -> Result<(), String> {
    std::fs::create_dir_all(&c.cli.root)
        .map_err(|e| format!("cannot create runsc root {}: {e}", c.cli.root.display()))?;
    let state = BundleState {
        audit: c.admitted.cfg.audit.path.clone(),
        backend: BackendState::Runsc(CleanupState {
            runsc: c.cli.binary.clone(),
            root: c.cli.root.clone(),
            global_flags: c.cli.global_flags.clone(),
            mask_proc_sys_net: c.runsc.mask_proc_sys_net,
            rootfs_mounted: c.rootfs_mounted,
            overlay_dir: c.overlay_dir.clone(),
            timeout_seconds: c.runsc.timeout.as_secs(),
        }),
    };
    state
        .write(&c.bundle)
        .map_err(|e| format!("cannot write {}: {e}", crate::pod::STATE_FILE))
}

async fn runsc_create(
    c: &Container,
    stdio: &StdioPaths,
    pid_file: &Path,
    pod_init: Option<&Path>,
) -> Result<(), String> {
    let create = |console: Option<&Path>| {
        let argv = c.cli.create(&c.id, &c.bundle, pid_file, console);
        match pod_init {
            Some(f) => argv.with_global_flag(format!("--pod-init-config={}", f.display())),
            None => argv,
        }
    };
    let (argv, io, child) = if stdio.terminal {
        let sock_path = console_socket_path(&c.cli.root, &c.id);
        let sock = ConsoleSocket::bind(&sock_path)
            .map_err(|e| format!("cannot create console socket: {e}"))?;
        let argv = create(Some(sock.path()));
        let wait = c.runsc.timeout;
        let recv = tokio::task::spawn_blocking(move || sock.receive_master(wait));
        c.runsc
            .run_with_stdio(&argv, Default::default(), Some(&c.log))
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
        (create(None), io, child)
    };
    // runsc donates a subcontainer's stdio at `start`; keep a copy for it.
    let for_start = child
        .try_clone()
        .map_err(|e| format!("cannot duplicate container io: {e}"))?;
    c.init.set_io(io);
    c.runsc
        .run_with_stdio(&argv, child, Some(&c.log))
        .await
        .map_err(|e| e.to_string())?;
    *c.start_stdio.lock().unwrap() = Some(for_start);
    Ok(())
}

/// A short console socket path (unix socket paths are limited to 107 bytes).
pub(super) fn console_socket_path(root: &Path, id: &str) -> PathBuf {
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

async fn cleanup_failed_create(c: &Container) {
    let _ = c.runsc.output(&c.cli.delete(&c.id, true)).await;
    if let Some(io) = c.init.take_io() {
        io.shutdown();
    }
    c.start_stdio.lock().unwrap().take();
    if c.rootfs_mounted {
        unmount_rootfs(&c.bundle);
    }
    if let Some(d) = &c.overlay_dir {
        super::tune::remove_overlay_folder(d);
    }
    // cleaned up: containerd's `delete` has nothing left to do
    BundleState::remove(&c.bundle);
}
