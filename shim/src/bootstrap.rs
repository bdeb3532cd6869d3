//! The shim binary's entry: containerd's `start`, `delete` and `-info`
//! actions, and the long-running daemon that serves the Task API.
//!
//! Compatibility (see the README's version table):
//! - containerd 1.6/1.7/2.0–2.2 ("legacy" start): flags, `TTRPC_ADDRESS`/
//!   `GRPC_ADDRESS` in the environment, runtime options on stdin; the reply is
//!   the plain socket address, which every version reads as task API v2.
//! - containerd 2.3+ ("bootstrap" start): `BootstrapParams` on stdin, a
//!   `BootstrapResult` on stdout.
//!   The daemon registers the Task service under both `containerd.task.v2.Task`
//!   and `containerd.task.v3.Task` (the messages are identical).

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _, Result};
use containerd_shim::Flags;
use containerd_shim_protos::bootstrap_api::{BootstrapParams, BootstrapResult};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim_async::{create_task, Task};
use containerd_shim_protos::ttrpc::r#async::transport::Listener;
use containerd_shim_protos::ttrpc::r#async::Server;

use crate::backend::BackendState;
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::options;
use crate::pod::{BundleState, Pod};
use crate::reaper::Reaper;

/// Environment variable carrying the config path from `start` to the daemon.
pub const CONFIG_ENV: &str = "AGENTBOX_CONFIG";
/// The listener is handed from `start` to the daemon as this descriptor.
const LISTEN_FD: i32 = 3;
const MAX_STDIN: u64 = 10 << 20;
pub const RUNTIME_ID: &str = "io.containerd.agentbox.v1";

/// How containerd called `start`.
#[derive(Debug, Clone, PartialEq)]
pub enum StartInput {
    Legacy { options: Option<Any> },
    Bootstrap(Box<BootstrapParams>),
}

/// Tell the two start protocols apart. A legacy runtime-options `Any` also
/// decodes as `BootstrapParams` (type URL and value land in the first two
/// fields), so only params naming this very instance count as bootstrap.
pub fn classify_start_input(input: &[u8], flags: &Flags) -> StartInput {
    if input.is_empty() {
        return StartInput::Legacy { options: None };
    }
    if let Ok(p) = BootstrapParams::parse_from_bytes(input) {
        if !p.instance_id.is_empty() && p.instance_id == flags.id && p.namespace == flags.namespace
        {
            return StartInput::Bootstrap(Box::new(p));
        }
    }
    let options = Any::parse_from_bytes(input)
        .ok()
        .filter(|a| !a.type_url.is_empty());
    StartInput::Legacy { options }
}

/// The pod group a container belongs to: its CRI sandbox, or itself.
pub fn grouping(spec: &serde_json::Value, id: &str) -> String {
    spec.pointer("/annotations/io.kubernetes.cri.sandbox-id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or(id)
        .to_string()
}

fn read_stdin() -> Vec<u8> {
    let mut buf = Vec::new();
    if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        return buf;
    }
    let _ = std::io::stdin()
        .lock()
        .take(MAX_STDIN)
        .read_to_end(&mut buf);
    buf
}

fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// containerd's `start`: find or spawn the daemon for the pod group and print its address.
pub fn start(flags: &Flags) -> Result<()> {
    let input = read_stdin();
    let start_input = classify_start_input(&input, flags);
    let (options_any, grpc_address, ttrpc_address, socket_dir, bootstrap) = match &start_input {
        StartInput::Legacy { options } => (
            options.clone(),
            if flags.address.is_empty() {
                std::env::var("GRPC_ADDRESS").unwrap_or_default()
            } else {
                flags.address.clone()
            },
            std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
            None,
            false,
        ),
        StartInput::Bootstrap(p) => (
            p.extensions
                .iter()
                .filter_map(|e| e.value.as_ref().cloned())
                .find(options::is_runtime_options),
            p.containerd_grpc_address.clone(),
            p.containerd_ttrpc_address.clone(),
            p.socket_dir.clone().filter(|d| !d.is_empty()),
            true,
        ),
    };
    if ttrpc_address.is_empty() {
        bail!("containerd passed no TTRPC address; cannot publish events");
    }
    let config_path = match options_any.as_ref().map(options::from_any) {
        Some(Ok(Some(o))) => o.config_path.map(PathBuf::from),
        Some(Err(e)) => bail!("agentbox cannot read the runtime options: {e}"),
        _ => None,
    };
    // Fail early and clearly if the config is unusable: nothing will run under it.
    let cfg_path = config_path
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let cfg = Config::load(&cfg_path)?;

    let bundle = std::env::current_dir().context("cannot read the bundle folder")?;
    let spec: serde_json::Value = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    // agentbox's own socket name, distinct from the one a delegate shim
    // computes for the same group (which would otherwise find agentbox there
    // and forward to itself)
    let group = format!("agentbox-{}", grouping(&spec, &flags.id));
    let address = match &socket_dir {
        Some(dir) => format!(
            "unix://{}/{}",
            dir.trim_end_matches('/'),
            containerd_shim::socket_address(&grpc_address, &flags.namespace, &group)
                .rsplit('/')
                .next()
                .unwrap_or_default()
        ),
        None => containerd_shim::socket_address(&grpc_address, &flags.namespace, &group),
    };
    let path = socket_path(&address).to_string();

    if let Some(dir) = Path::new(&path).parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Who owns the socket is decided under a lock: two `start`s for one pod
    // at once must not both spawn a daemon (the loser's would be orphaned).
    let _owner = lock_socket_dir(&path)?;
    let reused = std::os::unix::net::UnixStream::connect(&path).is_ok();
    if !reused {
        let _ = std::fs::remove_file(&path);
        let listener =
            UnixListener::bind(&path).with_context(|| format!("cannot listen on {path}"))?;
        spawn_daemon(
            flags,
            &grpc_address,
            &ttrpc_address,
            &path,
            config_path.as_deref(),
            listener,
        )?;
    }
    std::fs::write(bundle.join("address"), &address).context("cannot write the address file")?;
    tracing::debug!(%address, reused, backend = ?cfg.runtime.backend, "start");

    let mut out = std::io::stdout().lock();
    if bootstrap {
        let r = BootstrapResult {
            version: 3,
            address: address.clone(),
            protocol: "ttrpc".into(),
            ..Default::default()
        };
        out.write_all(&r.write_to_bytes()?)?;
    } else {
        out.write_all(address.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// How long `start` waits for another `start` to decide a socket's owner.
const OWNER_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An exclusive lock on the folder of `socket` (a lock on the folder itself:
/// no lock file is left behind), held while the socket's owner is decided.
pub fn lock_socket_dir(socket: &str) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let dir = Path::new(socket).parent().unwrap_or(Path::new("/"));
    let f = std::fs::File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    let deadline = std::time::Instant::now() + OWNER_LOCK_WAIT;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).with_context(|| format!("cannot lock {}", dir.display()));
        }
        if std::time::Instant::now() >= deadline {
            bail!("timed out waiting for the lock on {}", dir.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn spawn_daemon(
    flags: &Flags,
    grpc_address: &str,
    ttrpc_address: &str,
    socket: &str,
    config: Option<&Path>,
    listener: UnixListener,
) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the shim binary")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "-namespace",
        &flags.namespace,
        "-id",
        &flags.id,
        "-address",
        grpc_address,
        "-socket",
        socket,
    ]);
    if flags.debug {
        cmd.arg("-debug");
    }
    cmd.env("TTRPC_ADDRESS", ttrpc_address);
    cmd.env("GRPC_ADDRESS", grpc_address);
    match config {
        Some(p) => cmd.env(CONFIG_ENV, p),
        None => cmd.env_remove(CONFIG_ENV),
    };
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let fd = listener.into_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls: setsid and dup2.
    unsafe {
        cmd.pre_exec(move || {
            nix::libc::setsid();
            if fd == LISTEN_FD {
                // dup2 onto itself keeps close-on-exec: clear it instead
                if nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if nix::libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().context("cannot start the agentbox daemon")?;
    // SAFETY: we own `fd` (from into_raw_fd) and the child has its own copy.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    std::fs::write("shim.pid", child.id().to_string()).ok();
    Ok(())
}

/// containerd's `delete`: clean up after a daemon that is gone.
pub fn delete(flags: &Flags) -> Result<()> {
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir()?
    } else {
        PathBuf::from(&flags.bundle)
    };
    let mut reply = None;
    // no state file: the container never got as far as the runtime
    if let Some(st) = BundleState::read(&bundle) {
        let st = st.map_err(|e| anyhow!(e))?;
        let result = st.backend.cleanup(flags, &bundle);
        let audit = crate::audit::AuditLog::new(&st.audit);
        let subject = crate::audit::Subject::from_annotations(&flags.namespace, &flags.id, None);
        let mut fields = serde_json::json!({
            "reason": "containerd deleted the task after its shim went away",
        });
        match &result {
            Ok(_) => fields["result"] = "cleaned".into(),
            Err(e) => {
                fields["result"] = "failed".into();
                fields["error"] = format!("{e:#}").into();
            }
        }
        if let BackendState::Delegate(d) = &st.backend {
            fields["delegate"] = d.delegate.clone().into();
        }
        let _ = audit.record("cleanup", &subject, fields);
        if let Some(r) = crate::pod::network::cleanup_after_crash(&bundle) {
            let fields = match r {
                Ok(result) => serde_json::json!({"result": result}),
                Err(e) => serde_json::json!({"result": "failed", "error": e}),
            };
            let _ = audit.record("network_cleanup", &subject, fields);
        }
        reply = result?;
        // the dead daemon's socket (the bundle names it) would stay in
        // /run/containerd/s forever
        if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
            remove_stale_socket(socket_path(address.trim()));
        }
    }
    let reply = match reply {
        Some(bytes) => bytes,
        None => containerd_shim_protos::api::DeleteResponse {
            pid: 0,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: containerd_shim_protos::protobuf::MessageField::some(crate::events::now()),
            ..Default::default()
        }
        .write_to_bytes()?,
    };
    std::io::stdout().write_all(&reply)?;
    Ok(())
}

/// Remove a unix socket nobody serves any more (connecting is refused); a
/// socket a live daemon still serves is left alone.
pub fn remove_stale_socket(path: &str) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return;
    }
    if let Err(e) = std::os::unix::net::UnixStream::connect(path) {
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `-info`: describe the runtime.
pub fn info() -> Result<()> {
    let _ = read_stdin();
    let info = containerd_shim_protos::types::introspection::RuntimeInfo {
        name: RUNTIME_ID.to_string(),
        ..Default::default()
    };
    std::io::stdout().write_all(&info.write_to_bytes()?)?;
    Ok(())
}

/// Register the Task service under both protocol names.
pub fn task_services(
    task: Arc<dyn Task + Send + Sync>,
) -> std::collections::HashMap<String, containerd_shim_protos::ttrpc::r#async::Service> {
    let mut services = create_task(task.clone());
    for (name, svc) in create_task(task) {
        let v2 = name.replace(".v3.", ".v2.");
        if v2 != name {
            services.insert(v2, svc);
        }
    }
    services
}

/// The daemon: serve the Task API until the last container is gone.
pub async fn serve(flags: &Flags) -> Result<()> {
    crate::reaper_setup()?;
    let listener = take_listener(&flags.socket)?;
    let ttrpc_address =
        std::env::var("TTRPC_ADDRESS").map_err(|_| anyhow!("TTRPC_ADDRESS is not set"))?;
    let publisher = containerd_shim::publisher::RemotePublisher::new(&ttrpc_address)
        .await
        .map_err(|e| {
            anyhow!("cannot connect to containerd's events service at {ttrpc_address}: {e}")
        })?;
    let config_path = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
    let cfg_path = config_path
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    let cfg = Config::load(&cfg_path)?;
    let reaper = Arc::new(Reaper::daemon());
    tokio::spawn(reaper.clone().run());
    let pod = Arc::new(Pod::new(
        flags.namespace.clone(),
        config_path,
        Arc::new(crate::events::Containerd {
            publisher,
            namespace: flags.namespace.clone(),
        }),
        reaper,
        Some(crate::trim::Trimmer::spawn(std::time::Duration::from_secs(
            1,
        ))),
    ));
    let task = crate::backend::build(pod.clone(), &cfg, flags).await?;
    let listener = Listener::try_from(listener).context("cannot serve on the shim socket")?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(task_services(task));
    server
        .start()
        .await
        .map_err(|e| anyhow!("cannot start the ttrpc server: {e}"))?;
    tracing::info!(namespace = %flags.namespace, id = %flags.id, backend = ?cfg.runtime.backend, "agentbox daemon serving");
    pod.worked();
    pod.shutdown.notified().await;
    // the sandbox is gone: the last activity records reach the audit log
    let p = pod.clone();
    let _ = tokio::task::spawn_blocking(move || p.close_activity()).await;
    // let the last reply reach containerd
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    {
        // a `start` for this pod now finds no socket and spawns a new daemon
        let path = socket_path(&flags.socket);
        let _owner = lock_socket_dir(path);
        let _ = std::fs::remove_file(path);
    }
    // containerd may keep its end open; do not wait on it forever
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server.shutdown()).await;
    Ok(())
}

fn take_listener(socket: &str) -> Result<UnixListener> {
    // from `start`: descriptor 3 is the bound socket
    let st = nix::sys::stat::fstat(unsafe { std::os::fd::BorrowedFd::borrow_raw(LISTEN_FD) });
    if st.is_ok_and(|s| (s.st_mode & libc::S_IFMT) == libc::S_IFSOCK) {
        // SAFETY: fd 3 was set up by `start` for this process and nothing else owns it.
        let l = unsafe { UnixListener::from_raw_fd(LISTEN_FD) };
        nix::fcntl::fcntl(
            &l,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        return Ok(l);
    }
    if socket.is_empty() {
        bail!("no -socket given and no listener inherited");
    }
    let path = socket_path(socket);
    let _ = std::fs::remove_file(path);
    UnixListener::bind(path).with_context(|| format!("cannot listen on {path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(id: &str, ns: &str) -> Flags {
        Flags {
            id: id.into(),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    #[test]
    fn empty_stdin_is_legacy_without_options() {
        assert_eq!(
            classify_start_input(b"", &flags("a", "b")),
            StartInput::Legacy { options: None }
        );
    }

    #[test]
    fn runtime_options_on_stdin_are_legacy() {
        let any = options::to_any(&options::RuntimeOptions {
            config_path: Some("/etc/agentbox/gvisor.toml".into()),
            config_body: None,
        });
        let bytes = any.write_to_bytes().unwrap();
        match classify_start_input(&bytes, &flags("c1", "k8s.io")) {
            StartInput::Legacy { options: Some(o) } => {
                assert_eq!(
                    options::from_any(&o)
                        .unwrap()
                        .unwrap()
                        .config_path
                        .as_deref(),
                    Some("/etc/agentbox/gvisor.toml")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bootstrap_params_for_this_instance_are_recognised() {
        let p = BootstrapParams {
            instance_id: "c1".into(),
            namespace: "k8s.io".into(),
            containerd_ttrpc_address: "/run/containerd/containerd.sock.ttrpc".into(),
            ..Default::default()
        };
        let bytes = p.write_to_bytes().unwrap();
        assert!(matches!(
            classify_start_input(&bytes, &flags("c1", "k8s.io")),
            StartInput::Bootstrap(_)
        ));
        // params for another instance are not taken as ours
        assert!(matches!(
            classify_start_input(&bytes, &flags("c2", "k8s.io")),
            StartInput::Legacy { .. }
        ));
    }

    #[test]
    fn grouping_follows_the_cri_sandbox() {
        let spec = serde_json::json!({"annotations": {"io.kubernetes.cri.sandbox-id": "sb"}});
        assert_eq!(grouping(&spec, "c1"), "sb");
        assert_eq!(grouping(&serde_json::json!({}), "c1"), "c1");
        assert_eq!(
            grouping(
                &serde_json::json!({"annotations": {"io.kubernetes.cri.sandbox-id": ""}}),
                "c1"
            ),
            "c1"
        );
    }

    #[test]
    fn only_sockets_nobody_serves_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live.sock");
        let _listener = UnixListener::bind(&live).unwrap();
        let dead = dir.path().join("dead.sock");
        drop(UnixListener::bind(&dead).unwrap());
        let plain = dir.path().join("file");
        std::fs::write(&plain, "x").unwrap();
        for p in [&live, &dead, &plain] {
            remove_stale_socket(p.to_str().unwrap());
        }
        assert!(live.exists(), "a served socket was removed");
        assert!(!dead.exists(), "a stale socket was kept");
        assert!(plain.exists(), "a file that is no socket was removed");
        remove_stale_socket("");
    }

    #[test]
    fn task_service_is_registered_under_v2_and_v3() {
        struct Nop;
        #[async_trait::async_trait]
        impl Task for Nop {}
        let s = task_services(Arc::new(Nop));
        assert!(s.contains_key("containerd.task.v2.Task"));
        assert!(s.contains_key("containerd.task.v3.Task"));
    }
}
