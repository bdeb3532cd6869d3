//! agentbox in the harness: a private containerd with
//! the agentbox runtime (the shim binary from this workspace's target folder)
//! and an agentbox config in the containerd's temp dir.

use std::path::{Path, PathBuf};

use crate::{Binaries, ContainerdOptions, RuntimeHandler};

/// CRI handler name of the agentbox runtime in these tests.
pub const AGENTBOX: &str = "agentbox";
pub const RUNTIME_TYPE: &str = "io.containerd.agentbox.v1";

/// The folder holding `containerd-shim-agentbox-v1` (built by `cargo test`),
/// or `AGENTBOX_SHIM_DIR` (`make soak`: the release shim under debug tests).
pub fn shim_dir() -> PathBuf {
    let dir = match std::env::var_os("AGENTBOX_SHIM_DIR") {
        Some(d) => PathBuf::from(d),
        None => crate::util::cargo_target_dir().join(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }),
    };
    let bin = dir.join("containerd-shim-agentbox-v1");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (`cargo build -p agentbox-shim`; `make test` does)",
        bin.display()
    );
    dir
}

/// An agentbox config for a test containerd: runsc with the default tuning
/// (ptrace on Debian 12's runsc, root overlay in memory), runsc state,
/// audit log and the rest in the containerd's temp dir. `extra` is appended.
pub fn write_config(dir: &Path, name: &str, network: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let runsc_root = runsc_root(dir);
    let audit = dir.join("audit.jsonl");
    let mask = network == "sandbox";
    let text = format!(
        "{extra}\n[runtime]\nrunsc = \"/usr/bin/runsc\"\nrunsc_root = \"{}\"\nrunsc_flags = {{ network = \"{network}\" }}\nrunsc_mask_proc_sys_net = {mask}\n[audit]\npath = \"{}\"\n",
        runsc_root.display(),
        audit.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The containerd's CRI root and state folders: what a node's
/// `/var/lib/containerd/io.containerd.grpc.v1.cri` and
/// `/run/containerd/io.containerd.grpc.v1.cri` are for the private one.
pub fn managed_roots(ctd: &crate::Containerd) -> String {
    let r = ctd.dir().join("root/io.containerd.grpc.v1.cri");
    let s = ctd.dir().join("state/io.containerd.grpc.v1.cri");
    format!(
        "managed_roots = [\"{}/\", \"{}/\", \"{}/\"]",
        r.display(),
        s.display(),
        ctd.pod_log_root().display()
    )
}

/// All audit records so far (the log `write_config` set up in `dir`).
pub fn audit(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
        .collect()
}

/// Options for a containerd whose PATH finds the agentbox shim, with an
/// `agentbox` CRI handler whose ConfigPath is written by `config` once the
/// temp dir is known. The handler passes `agentbox.dev/*` pod annotations.
pub fn options(binaries: Binaries, config_path: &Path) -> ContainerdOptions {
    ContainerdOptions::default()
        .with_binaries(binaries.with_shim_dir(shim_dir()))
        .handler(
            RuntimeHandler::new(AGENTBOX, RUNTIME_TYPE)
                .option("ConfigPath", config_path.display().to_string())
                .pod_annotations(["agentbox.dev/*"]),
        )
}

/// `opts` with one agentbox handler per name instead of its own:
/// `agentbox-<name>`, config `<name>.toml` in `cfg`, passing `agentbox.dev/*`
/// pod annotations.
pub fn with_handlers(mut opts: ContainerdOptions, cfg: &Path, names: &[&str]) -> ContainerdOptions {
    opts.handlers.clear();
    for h in names {
        opts = opts.handler(
            RuntimeHandler::new(format!("agentbox-{h}"), RUNTIME_TYPE)
                .option(
                    "ConfigPath",
                    cfg.join(format!("{h}.toml")).display().to_string(),
                )
                .pod_annotations(["agentbox.dev/*"]),
        );
    }
    opts
}

/// A place for a config before the containerd exists (the handler needs its
/// path up front): a temp dir kept for the test's duration.
pub struct ConfigDir {
    pub dir: tempfile::TempDir,
}

impl Default for ConfigDir {
    fn default() -> Self {
        Self::new()
    }
}

/// The runsc state root `write_config` gives agentbox in `dir`.
pub fn runsc_root(dir: &Path) -> PathBuf {
    dir.join("ab-runsc")
}

/// Dropped after the containerd (declare it first): agentbox's runsc state
/// lives here, and a container removed through containerd leaves none.
impl Drop for ConfigDir {
    fn drop(&mut self) {
        let left = crate::leaks::runsc_state(&runsc_root(self.path()));
        if !left.is_empty() && !std::thread::panicking() {
            panic!("agentbox-e2e: runsc state left behind: {left:?}");
        }
    }
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        ConfigDir {
            dir: tempfile::Builder::new()
                .prefix("ab-cfg")
                .tempdir_in("/tmp")
                .unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Shim and runsc processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    crate::util::list_procs()
        .into_iter()
        .filter(|p| p.cmdline.join(" ").contains(needle))
        .map(|p| format!("{} {}", p.pid, p.cmdline.join(" ")))
        .collect()
}

/// Make a config written by `write_config` run runsc through a wrapper that
/// logs every call's arguments; the log's path (one line per call).
pub fn log_runsc_calls(config: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = config.parent().unwrap();
    let log = dir.join("runsc-calls.log");
    let wrapper = dir.join("runsc-logging");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec /usr/bin/runsc \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let text = std::fs::read_to_string(config).unwrap().replace(
        "runsc = \"/usr/bin/runsc\"",
        &format!("runsc = \"{}\"", wrapper.display()),
    );
    assert!(text.contains("runsc-logging"), "not a write_config config");
    std::fs::write(config, text).unwrap();
    log
}

/// Switch a config written by `write_config` to the shim backend in front of
/// `containerd-shim-runc-v2` (no sandbox).
pub fn use_runc_delegate(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap().replace(
        "[runtime]\n",
        "[runtime]\nbackend = \"shim\"\nshim = \"containerd-shim-runc-v2\"\nsandbox = \"none\"\n",
    );
    std::fs::write(config, text).unwrap();
}

/// PIDs of processes whose command line contains every one of `all`.
pub fn pids_matching(all: &[&str]) -> Vec<i32> {
    crate::util::list_procs()
        .into_iter()
        .filter(|p| {
            let line = p.cmdline.join(" ");
            all.iter().all(|n| line.contains(n))
        })
        .map(|p| p.pid)
        .collect()
}

/// Poll `f` until it holds or `limit` passes; the last answer.
pub fn wait_until(limit: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    f()
}

/// `ctr run -d` of the busybox image through agentbox with `config` (a
/// long-running task for exec, kill or memory checks). An error carries ctr's stderr.
pub fn run_detached(
    ctd: &crate::Containerd,
    config: &Path,
    id: &str,
    cmd: &[&str],
) -> anyhow::Result<()> {
    let config = config.display().to_string();
    let mut args = vec![
        "run",
        "-d",
        "--runtime",
        RUNTIME_TYPE,
        "--runtime-config-path",
        &config,
        crate::BUSYBOX_IMAGE,
        id,
    ];
    args.extend(cmd);
    let o = ctd.ctr(&args);
    anyhow::ensure!(
        o.status.success(),
        "ctr run -d {id}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}

/// The bundle containerd made for task `id` in namespace `ns`.
pub fn bundle_of(ctd: &crate::Containerd, ns: &str, id: &str) -> PathBuf {
    ctd.dir()
        .join("state/io.containerd.runtime.v2.task")
        .join(ns)
        .join(id)
}

/// The pod's network namespace, as its agentbox daemon recorded it in the
/// sandbox's bundle (`agentbox-network.json`).
pub fn pod_netns(ctd: &crate::Containerd, sandbox_id: &str) -> std::io::Result<PathBuf> {
    let state = bundle_of(ctd, crate::K8S_NAMESPACE, sandbox_id).join("agentbox-network.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&state)?)?;
    v["netns"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| std::io::Error::other(format!("{}: no netns", state.display())))
}
