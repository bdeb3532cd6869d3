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
use crate::util::{
    kill_pids, list_procs, pid_alive, require_bin, run_ok, run_timeout, tail_file, try_flock,
    unmount_all_under, with_descendants,
};

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

    fn ctr_cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binaries.ctr);
        c.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(ns)
            .args(args);
        c.env("CONTAINERD_SNAPSHOTTER", &self.snapshotter);
        c
    }

    /// Runs `ctr --address <sock> --namespace <self.namespace> ARGS` (bounded: 180 s).
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_ns(&self.namespace, args)
    }

    /// `ctr` in namespace `ns` (bounded: 180 s). A time-out is reported as a
    /// failed Output with the reason in stderr.
    pub fn ctr_ns(&self, ns: &str, args: &[&str]) -> Output {
        match run_timeout(&mut self.ctr_cmd(ns, args), Duration::from_secs(180)) {
            Ok(o) => o,
            Err(e) => {
                use std::os::unix::process::ExitStatusExt;
                Output {
                    status: std::process::ExitStatus::from_raw(124 << 8),
                    stdout: vec![],
                    stderr: e.to_string().into_bytes(),
                }
            }
        }
    }

    /// `ctr` that must succeed; returns stdout, or an error with stderr and the
    /// containerd log tail.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let o = self.ctr(args);
        if !o.status.success() {
            bail!(
                "ctr {args:?} failed ({}): {}{}\n--- containerd log tail ---\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr),
                String::from_utf8_lossy(&o.stdout),
                self.log_tail(30)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `ctr run --rm --fifo-dir <dir>/fifo --runc-root <dir>/runc FLAGS IMAGE ID CMD...`
    /// in `self.namespace`. FLAGS may carry `--runtime`, `--runc-binary`,
    /// `--runc-root` (then the default root is not added), `--env`, `--mount`…
    pub fn ctr_run(&self, flags: &[&str], image: &str, id: &str, cmd: &[&str]) -> Output {
        let fifo = self.fifo_dir().display().to_string();
        let root = self.runc_root().display().to_string();
        let mut args: Vec<&str> = vec!["run", "--rm", "--fifo-dir", &fifo];
        if !flags.iter().any(|f| f.starts_with("--runc-root")) {
            args.extend(["--runc-root", &root]);
        }
        args.extend(flags);
        args.push(image);
        args.push(id);
        args.extend(cmd);
        self.ctr(&args)
    }

    /// Flags for `ctr_run` that run the container with runsc through
    /// containerd-shim-runc-v2 (the wrapper as `--runc-binary`).
    pub fn runsc_ctr_flags(&self) -> Vec<String> {
        vec![
            "--runtime".into(),
            "io.containerd.runc.v2".into(),
            "--runc-binary".into(),
            self.runsc_wrapper.display().to_string(),
            "--runc-root".into(),
            self.runsc_root().display().to_string(),
        ]
    }

    /// Imports an image tarball into namespace `ns` and checks it is listed.
    pub fn import_image(&self, img: &ImageTar, ns: &str) -> Result<()> {
        let path = img.path.display().to_string();
        let mut args = vec!["images", "import", "--base-name", img.repo.as_str()];
        if self.version.major >= 2 {
            // the classic client-side import (as in 1.x; honours CONTAINERD_SNAPSHOTTER)
            // rather than 2.x's default transfer-service import
            args.push("--local");
        }
        args.push(&path);
        let o = self.ctr_ns(ns, &args);
        if !o.status.success() {
            bail!(
                "ctr images import {} into {ns} failed: {}{}\n--- containerd log tail ---\n{}",
                img.path.display(),
                String::from_utf8_lossy(&o.stderr),
                String::from_utf8_lossy(&o.stdout),
                self.log_tail(30)
            );
        }
        let o = self.ctr_ns(ns, &["images", "ls", "-q"]);
        let list = String::from_utf8_lossy(&o.stdout);
        if !list.lines().any(|l| l.trim() == img.name) {
            bail!("image {} not listed in {ns} after import: {list}", img.name);
        }
        Ok(())
    }

    /// Builds (cached) and imports the busybox test image into `ns`.
    pub fn import_busybox(&self, ns: &str) -> Result<()> {
        self.import_image(&busybox_image()?, ns)
    }

    /// Imports the pause image into `k8s.io` (once per instance).
    pub fn import_pause(&self) -> Result<()> {
        if !self.pause_imported.load(Ordering::SeqCst) {
            self.import_image(&pause_image()?, K8S_NAMESPACE)?;
            self.pause_imported.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// A CRI client on this containerd (imports the pause image first).
    pub fn cri(&self) -> Result<crate::cri::Cri> {
        self.import_pause()?;
        self.cri_used.store(true, Ordering::SeqCst);
        crate::cri::Cri::connect(&self.address, self.pod_log_root(), self.cgroup_parent())
    }

    // ---- teardown ----

    fn our_procs(&self) -> (BTreeSet<i32>, Vec<crate::util::ProcInfo>) {
        let needle = self.dir.display().to_string();
        let procs = list_procs();
        let me = std::process::id() as i32;
        let roots: BTreeSet<i32> = procs
            .iter()
            .filter(|p| p.pid != me && p.cmdline.iter().any(|a| a.contains(&needle)))
            .map(|p| p.pid)
            .collect();
        let all = with_descendants(&procs, &roots);
        let infos = procs.into_iter().filter(|p| all.contains(&p.pid)).collect();
        (all, infos)
    }

    fn graceful_stop_workloads(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        if self.cri_used.load(Ordering::SeqCst) {
            if let Ok(cri) =
                crate::cri::Cri::connect(&self.address, self.pod_log_root(), self.cgroup_parent())
            {
                cri.remove_all_pods(Duration::from_secs(40));
            }
        }
        let quick = |ns: &str, args: &[&str]| {
            run_timeout(&mut self.ctr_cmd(ns, args), Duration::from_secs(15))
        };
        let Ok(nss) = quick(DEFAULT_NAMESPACE, &["namespaces", "ls", "-q"]) else {
            return;
        };
        for ns in String::from_utf8_lossy(&nss.stdout)
            .lines()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Ok(tasks) = quick(ns, &["tasks", "ls", "-q"]) else {
                continue;
            };
            for id in String::from_utf8_lossy(&tasks.stdout)
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                if Instant::now() >= deadline {
                    return;
                }
                let _ = quick(ns, &["tasks", "kill", "--all", "--signal", "SIGKILL", id]);
                let _ = quick(ns, &["tasks", "delete", "--force", id]);
            }
            if let Ok(cs) = quick(ns, &["containers", "ls", "-q"]) {
                for id in String::from_utf8_lossy(&cs.stdout)
                    .lines()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if Instant::now() >= deadline {
                        return;
                    }
                    let _ = quick(ns, &["containers", "delete", id]);
                }
            }
        }
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    fn kill_leftovers(&self, sockets: &[PathBuf]) {
        let (pids, infos) = self.our_procs();
        kill_pids(&pids, Duration::from_secs(10));
        // Shim sockets live in /run/containerd/s (containerd's hash-named ones,
        // agentbox's `agentbox-<pod>` ones); a killed shim cannot remove its own.
        let mut all: Vec<PathBuf> = infos.iter().filter_map(crate::leaks::shim_socket).collect();
        all.extend(sockets.iter().cloned());
        for s in all {
            let _ = fs::remove_file(s);
        }
    }

    fn remove_cgroups(&self) {
        let name = format!("agentbox-e2e-{}", self.network.index);
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(&name)];
        if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
            roots.extend(rd.flatten().map(|e| e.path().join(&name)));
        }
        for r in roots.into_iter().filter(|r| r.is_dir()) {
            rmdir_tree(&r);
        }
    }

    /// libcni's result cache (hard-coded /var/lib/cni/results) keeps entries of
    /// pods that were never torn down through CNI DEL; ours are named after our
    /// network (whose index we hold the lock of) and, for loopback, the pod id.
    fn remove_cni_cache(&self) {
        let dir = Path::new("/var/lib/cni/results");
        let prefix = format!("{}-", self.network.name);
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(&prefix) {
                if let Some(pod) = rest.strip_suffix("-eth0") {
                    let _ = fs::remove_file(dir.join(format!("cni-loopback-{pod}-lo")));
                }
                let _ = fs::remove_file(e.path());
            }
        }
    }

    fn remove_bridge(&self) {
        if Path::new("/sys/class/net")
            .join(&self.network.bridge)
            .exists()
        {
            let _ = run_timeout(
                Command::new("ip").args(["link", "del", &self.network.bridge]),
                Duration::from_secs(10),
            );
        }
    }

    /// Tears down now (also what Drop does). Safe to call twice. Workloads
    /// are removed the way the kubelet and containerd remove them; what is
    /// still there afterwards is recorded as a leak (`leaks()`, and Drop
    /// fails the test) and then force-cleaned.
    pub fn shutdown(&mut self) {
        let running = self.child.is_some();
        let sockets: Vec<PathBuf> = self
            .our_procs()
            .1
            .iter()
            .filter_map(crate::leaks::shim_socket)
            .collect();
        if running {
            self.graceful_stop_workloads();
        }
        self.stop_daemon();
        if running {
            self.leaks = crate::leaks::after_teardown(
                &self.dir,
                self.cgroup_parent().trim_start_matches('/'),
                &sockets,
                Duration::from_secs(10),
            );
        }
        self.kill_leftovers(&sockets);
        let left = unmount_all_under(&self.dir);
        if !left.is_empty() {
            eprintln!(
                "agentbox-e2e: still mounted under {}: {left:?}",
                self.dir.display()
            );
        }
        self.remove_bridge();
        self.remove_cni_cache();
        self.remove_cgroups();
        if left.is_empty() && self.dir.exists() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                eprintln!("agentbox-e2e: could not remove {}: {e}", self.dir.display());
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- agentbox-e2e: containerd {} log tail ({}) ----\n{}\n---- end of containerd log ----",
                self.version,
                self.log_path().display(),
                self.log_tail(60)
            );
        }
        self.shutdown();
        if self.check_leaks && !self.leaks.is_empty() && !std::thread::panicking() {
            panic!(
                "agentbox-e2e: the test left behind (after its pods and tasks were removed):\n  {}",
                self.leaks.join("\n  ")
            );
        }
    }
}

/// Replaces `{dir}` in every string of a handler's options with the instance's
/// temp dir (so a ConfigPath can point into it before the dir exists).
fn substitute_dir(t: &mut toml::Table, dir: &str) {
    for (_, v) in t.iter_mut() {
        match v {
            toml::Value::String(s) => *s = s.replace("{dir}", dir),
            toml::Value::Table(t) => substitute_dir(t, dir),
            toml::Value::Array(a) => {
                for x in a.iter_mut() {
                    if let toml::Value::String(s) = x {
                        *s = s.replace("{dir}", dir);
                    }
                }
            }
            _ => {}
        }
    }
}

fn rmdir_tree(p: &Path) {
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(p);
}

fn sh_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=./,:".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Does an overlay mount work under `dir`? (Decides overlayfs vs native.)
fn overlay_works(dir: &Path) -> bool {
    let base = dir.join("overlay-probe");
    let (l, u, w, m) = (
        base.join("l"),
        base.join("u"),
        base.join("w"),
        base.join("m"),
    );
    for d in [&l, &u, &w, &m] {
        if fs::create_dir_all(d).is_err() {
            return false;
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        l.display(),
        u.display(),
        w.display()
    );
    let c = |s: &str| CString::new(s).unwrap();
    let (src, tgt, fst, data) = (
        c("overlay"),
        c(&m.display().to_string()),
        c("overlay"),
        c(&opts),
    );
    // SAFETY: valid C strings; the mount is undone right after.
    let ok = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fst.as_ptr(),
            0,
            data.as_ptr() as *const _,
        )
    } == 0;
    if ok {
        // SAFETY: as above.
        unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = fs::remove_dir_all(&base);
    ok
}

/// Picks a free 10.233.X.0/24 + bridge, holding a flock for the instance's life
/// (so parallel harnesses, also in other processes, never share one). A stale
/// bridge left by a crashed run under a lock we now hold is deleted.
fn alloc_network() -> Result<(CniNetwork, fs::File)> {
    let lock_dir = std::env::temp_dir().join("agentbox-e2e-locks");
    fs::create_dir_all(&lock_dir)?;
    let used = {
        let a = run_ok(
            Command::new("ip").args(["-o", "-4", "addr", "show"]),
            Duration::from_secs(10),
        )
        .unwrap_or_default();
        let r = run_ok(
            Command::new("ip").args(["-4", "route", "show", "table", "all"]),
            Duration::from_secs(10),
        )
        .unwrap_or_default();
        a + &r
    };
    let start =
        (std::process::id() as usize * 7 + COUNTER.load(Ordering::SeqCst) as usize * 13) % 250;
    for k in 0..250 {
        let index = (1 + (start + k) % 250) as u8;
        let Some(lock) = try_flock(&lock_dir.join(format!("net-{index}.lock")))? else {
            continue;
        };
        let net = CniNetwork {
            name: format!("agentbox-e2e-{index}"),
            bridge: format!("abx-e2e-{index}"),
            index,
            egress: false,
        };
        let stale = Path::new("/sys/class/net").join(&net.bridge).exists();
        if stale {
            let _ = run_timeout(
                Command::new("ip").args(["link", "del", &net.bridge]),
                Duration::from_secs(10),
            );
        }
        if !stale && used.contains(&format!("10.233.{index}.")) {
            continue;
        }
        return Ok((net, lock));
    }
    Err(anyhow!("no free 10.233.X.0/24 subnet for the harness"))
}

/// True when no process of the harness with this dir is left (for tests of the harness).
pub fn no_process_mentions(dir: &Path) -> bool {
    let needle = dir.display().to_string();
    list_procs()
        .iter()
        .all(|p| !p.cmdline.iter().any(|a| a.contains(&needle)) || !pid_alive(p.pid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dir_placeholder() {
        let mut t = toml::Table::new();
        t.insert("ConfigPath".into(), "{dir}/agentbox.toml".into());
        t.insert("n".into(), 3.into());
        super::substitute_dir(&mut t, "/tmp/x");
        assert_eq!(t["ConfigPath"].as_str(), Some("/tmp/x/agentbox.toml"));
    }
}
