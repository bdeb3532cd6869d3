//! A private containerd: its own root, state, socket, config, CNI network and
//! log in a temp dir; torn down (processes, mounts, bridge, cgroups, dir) on drop.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::binaries::{Binaries, ContainerdVersion};
use crate::config::{render_config, CniNetwork, ConfigInputs, RuntimeHandler};
use crate::images::{busybox_image, pause_image, ImageTar, PAUSE_IMAGE};
mod client;
mod support;
mod teardown;

use crate::util::{
    kill_pids, list_procs, pid_alive, require_bin, run_ok, run_timeout, tail_file, try_flock,
    unmount_all_under, with_descendants,
};
pub use support::no_process_mentions;
use support::{alloc_network, overlay_works, rmdir_tree, sh_quote, substitute_dir};

/// Namespace ctr uses by default.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Namespace of the CRI plugin (images for pods must be imported here).
pub const K8S_NAMESPACE: &str = "k8s.io";

/// Name of the handler that runs runsc through containerd-shim-runc-v2.
pub const RUNSC_RUNC_SHIM: &str = "runsc-runc-shim";
/// Name of the plain runc handler.
pub const RUNC: &str = "runc";

/// How to start a private containerd.
#[derive(Debug, Clone)]
pub struct ContainerdOptions {
    pub binaries: Binaries,
    /// Extra CRI runtime handlers; one named like a default one replaces it.
    /// `{dir}` in their string options becomes the instance's temp dir
    /// (e.g. `ConfigPath = "{dir}/agentbox.toml"`, written after `start`).
    pub handlers: Vec<RuntimeHandler>,
    /// Include the default handlers `runc` and `runsc-runc-shim`.
    pub default_handlers: bool,
    /// `default_runtime_name` of the CRI plugin.
    pub default_handler: String,
    /// containerd log level (`info`, `debug`, …).
    pub log_level: String,
    /// Bound on waiting for the socket to answer.
    pub start_timeout: Duration,
    /// Extra TOML merged over the generated config (tables merge recursively).
    pub extra_config: toml::Table,
    /// Extra environment for the containerd process (inherited by shims).
    pub env: Vec<(String, String)>,
    /// runsc binary the wrapper script execs.
    pub runsc: PathBuf,
    /// Extra flags the runsc wrapper passes before the OCI command.
    pub runsc_flags: Vec<String>,
    /// CNI for egress tests (IPv6 too, default routes via the test's router):
    /// see [`CniNetwork::egress`].
    pub cni_egress: bool,
    /// Lay the instance out like a node: the socket in `<dir>/run/containerd/`
    /// and the config in `<dir>/etc/containerd/` (each folder mountable on its
    /// own, as the node agent's DaemonSet mounts them).
    pub node_layout: bool,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        Self {
            binaries: Binaries::system(),
            handlers: vec![],
            default_handlers: true,
            default_handler: RUNC.into(),
            log_level: "info".into(),
            start_timeout: Duration::from_secs(30),
            extra_config: toml::Table::new(),
            env: vec![],
            runsc: PathBuf::from("/usr/bin/runsc"),
            runsc_flags: vec!["--platform=ptrace".into(), "--network=none".into()],
            cni_egress: false,
            node_layout: false,
        }
    }
}

impl ContainerdOptions {
    pub fn with_binaries(mut self, b: Binaries) -> Self {
        self.binaries = b;
        self
    }
    pub fn handler(mut self, h: RuntimeHandler) -> Self {
        self.handlers.push(h);
        self
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);
static ID_SEQ: AtomicU32 = AtomicU32::new(0);

/// A running private containerd. Dropping it tears everything down, also when a
/// test panics (then the tail of containerd's log is printed first).
pub struct Containerd {
    dir: PathBuf,
    child: Option<Child>,
    version: ContainerdVersion,
    binaries: Binaries,
    address: PathBuf,
    config_path: PathBuf,
    snapshotter: String,
    network: CniNetwork,
    _net_lock: fs::File,
    handlers: Vec<RuntimeHandler>,
    runsc_wrapper: PathBuf,
    cri_used: AtomicBool,
    pause_imported: AtomicBool,
    /// What teardown found left behind (see `leaks`); Drop fails the test on it.
    leaks: Vec<String>,
    check_leaks: bool,
    /// Namespace `ctr()` uses.
    pub namespace: String,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("dir", &self.dir)
            .field("version", &self.version)
            .field("address", &self.address)
            .field("network", &self.network)
            .finish()
    }
}

impl Containerd {
    /// Starts a private containerd with the system binaries and default handlers.
    pub fn start_default() -> Result<Self> {
        Self::start(ContainerdOptions::default())
    }

    /// Starts a private containerd and waits (bounded) until its socket answers.
    pub fn start(opts: ContainerdOptions) -> Result<Self> {
        opts.binaries.require();
        let version = opts.binaries.version()?;
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("agentbox-e2e-{}-{n}", std::process::id()));
        if dir.exists() {
            let _ = unmount_all_under(&dir);
            let _ = fs::remove_dir_all(&dir);
        }
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let (network, lock) = match alloc_network() {
            Ok((mut n, l)) => {
                n.egress = opts.cni_egress;
                (n, l)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let (address, config_path) = if opts.node_layout {
            (
                dir.join("run/containerd/containerd.sock"),
                dir.join("etc/containerd/config.toml"),
            )
        } else {
            (dir.join("containerd.sock"), dir.join("config.toml"))
        };
        let mut me = Self {
            dir: dir.clone(),
            child: None,
            version,
            binaries: opts.binaries.clone(),
            address: address.clone(),
            config_path,
            snapshotter: String::new(),
            network,
            _net_lock: lock,
            handlers: vec![],
            runsc_wrapper: dir.join("bin/runsc-wrapper"),
            cri_used: AtomicBool::new(false),
            pause_imported: AtomicBool::new(false),
            leaks: vec![],
            check_leaks: true,
            namespace: DEFAULT_NAMESPACE.into(),
        };
        // From here on, errors drop `me`, which cleans up.
        me.prepare(&opts)?;
        me.spawn(&opts)?;
        Ok(me)
    }

    fn prepare(&mut self, opts: &ContainerdOptions) -> Result<()> {
        let d = &self.dir;
        for sub in [
            "root",
            "state",
            "bin",
            "fifo",
            "runc",
            "runsc",
            "cni/net.d",
            "cni/ipam",
            "pod-logs",
            "opt",
        ] {
            fs::create_dir_all(d.join(sub))?;
        }
        for p in [&self.address, &self.config_path] {
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent)?;
            }
        }
        self.snapshotter = if overlay_works(d) {
            "overlayfs".into()
        } else {
            "native".into()
        };

        require_bin(&opts.runsc, "runsc (gVisor)");
        let mut runsc = sh_quote(&opts.runsc.display().to_string());
        for f in &opts.runsc_flags {
            runsc.push(' ');
            runsc.push_str(&sh_quote(f));
        }
        // containerd-shim-runc-v2 treats a failed `kill` as "already exited" only
        // when the runtime says "container not running" (runc's wording); runsc
        // says "sandbox is not running", which otherwise wedges StopPodSandbox.
        let script = format!(
            "#!/bin/sh\n# generated by agentbox-e2e: runsc for containerd-shim-runc-v2\n\
             case \" $* \" in\n\
             *\" kill \"*)\n\
             \x20 out=$({runsc} \"$@\" 2>&1); rc=$?\n\
             \x20 if [ $rc -ne 0 ]; then\n\
             \x20   case \"$out\" in *\"is not running\"*) echo \"container not running ($out)\" >&2 ;; *) printf '%s\\n' \"$out\" >&2 ;; esac\n\
             \x20 fi\n\
             \x20 exit $rc ;;\n\
             esac\n\
             exec {runsc} \"$@\"\n"
        );
        fs::write(&self.runsc_wrapper, script)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&self.runsc_wrapper, fs::Permissions::from_mode(0o755))?;

        fs::write(
            d.join("cni/net.d/10-agentbox-e2e.conflist"),
            self.network.conflist(&d.join("cni/ipam")),
        )?;

        let mut handlers = vec![];
        if opts.default_handlers {
            handlers.push(RuntimeHandler::runc(&d.join("runc")));
            handlers.push(RuntimeHandler::runsc_runc_shim(
                &self.runsc_wrapper,
                &d.join("runsc"),
            ));
        }
        let dir_str = d.display().to_string();
        for h in &opts.handlers {
            handlers.retain(|x| x.name != h.name);
            let mut h = h.clone();
            substitute_dir(&mut h.options, &dir_str);
            handlers.push(h);
        }
        self.handlers = handlers;

        let cfg = render_config(&ConfigInputs {
            version: self.version,
            dir: d.clone(),
            address: self.address.clone(),
            snapshotter: self.snapshotter.clone(),
            sandbox_image: PAUSE_IMAGE.into(),
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            cni_conf_dir: d.join("cni/net.d"),
            handlers: self.handlers.clone(),
            default_handler: opts.default_handler.clone(),
            log_level: opts.log_level.clone(),
            extra: opts.extra_config.clone(),
        });
        fs::write(self.config_path(), cfg)?;
        Ok(())
    }

    fn spawn(&mut self, opts: &ContainerdOptions) -> Result<()> {
        let mut path: Vec<PathBuf> = opts.binaries.shim_dirs.clone();
        path.extend(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        );
        let path = std::env::join_paths(path)?;
        let log = fs::File::create(self.log_path())?;
        let mut cmd = Command::new(&opts.binaries.containerd);
        cmd.arg("--config")
            .arg(self.config_path())
            .env("PATH", path)
            .env("TMPDIR", self.dir.join("tmp"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        fs::create_dir_all(self.dir.join("tmp"))?;
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        self.child = Some(
            cmd.spawn()
                .with_context(|| format!("spawn {}", opts.binaries.containerd.display()))?,
        );

        let deadline = Instant::now() + opts.start_timeout;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait()? {
                bail!(
                    "containerd exited early ({st}); log:\n{}",
                    self.log_tail(40)
                );
            }
            if self.address.exists() {
                let out = run_timeout(
                    Command::new(&self.binaries.ctr)
                        .arg("--address")
                        .arg(&self.address)
                        .arg("version"),
                    Duration::from_secs(5),
                );
                if matches!(&out, Ok(o) if o.status.success()) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "containerd socket did not answer within {:?}; log:\n{}",
                    opts.start_timeout,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kill containerd itself (SIGKILL, as a crash or an upgrade would) and
    /// start it again on the same root, state and config: shims and their
    /// workloads keep running and containerd must reconnect to them.
    /// `opts` must be what the instance was started with.
    pub fn restart(&mut self, opts: &ContainerdOptions) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::rename(self.log_path(), self.dir.join("containerd.log.1"));
        self.spawn(opts)
    }

    /// PID of the running containerd.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The temp dir everything lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// containerd's gRPC socket (`<dir>/containerd.sock`).
    pub fn address(&self) -> &Path {
        &self.address
    }
    pub fn config_path(&self) -> PathBuf {
        self.config_path.clone()
    }
    /// containerd's stdout+stderr.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }
    /// Last `n` lines of containerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        tail_file(&self.log_path(), n)
    }
    pub fn version(&self) -> ContainerdVersion {
        self.version
    }
    pub fn binaries(&self) -> &Binaries {
        &self.binaries
    }
    /// `overlayfs`, or `native` when overlay mounts fail here.
    pub fn snapshotter(&self) -> &str {
        &self.snapshotter
    }
    pub fn network(&self) -> &CniNetwork {
        &self.network
    }
    pub fn handlers(&self) -> &[RuntimeHandler] {
        &self.handlers
    }
    /// The generated `runsc --platform=ptrace --network=none "$@"` wrapper.
    pub fn runsc_wrapper(&self) -> &Path {
        &self.runsc_wrapper
    }
    /// runc state root used by the `runc` handler and `ctr_run`.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }
    /// runsc state root used by the `runsc-runc-shim` handler and `runsc_ctr_flags`.
    pub fn runsc_root(&self) -> PathBuf {
        self.dir.join("runsc")
    }
    /// ctr's FIFO dir (instead of /run/containerd/fifo).
    pub fn fifo_dir(&self) -> PathBuf {
        self.dir.join("fifo")
    }
    /// Where CRI pod logs go (`Cri::run_pod` puts each pod's log_directory below).
    pub fn pod_log_root(&self) -> PathBuf {
        self.dir.join("pod-logs")
    }
    /// `<prefix>-<n>` with `n` unique to this instance among live harnesses.
    /// Use it for ctr container ids: runsc names its control socket after the
    /// sandbox id in the *abstract* unix namespace, shared by the whole host
    /// network namespace, so two concurrent runsc sandboxes with the same id
    /// collide ("creating control server socket …: address already in use").
    /// The pid and a counter make it unique across runs too, so a sandbox a
    /// killed run leaked cannot collide with the next run's.
    pub fn unique_id(&self, prefix: &str) -> String {
        let n = ID_SEQ.fetch_add(1, Ordering::SeqCst);
        format!(
            "{prefix}-{}-{:x}{n:x}",
            self.network.index,
            std::process::id()
        )
    }

    /// What teardown found left behind so far (empty while running).
    pub fn leaks(&self) -> &[String] {
        &self.leaks
    }

    /// For a test that leaves things behind on purpose and checks them itself:
    /// teardown still cleans up, but leftovers do not fail the test.
    pub fn allow_leaks(&mut self) {
        self.check_leaks = false;
    }

    /// cgroup parent for CRI pods of this instance (removed on drop).
    pub fn cgroup_parent(&self) -> String {
        format!("/agentbox-e2e-{}", self.network.index)
    }
}
