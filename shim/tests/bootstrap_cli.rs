//! The shim binary's `start` as containerd runs it, for both protocols:
//! legacy (runtime options on stdin, the bare address on stdout) and
//! containerd 2.3's bootstrap (`BootstrapParams` on stdin, a
//! `BootstrapResult` on stdout, the socket under `socket_dir`). Runs the
//! real binary in a temp bundle; the daemon it spawns cannot reach a
//! containerd here and exits, and is killed by its pid if it has not.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentbox_shim::options::{to_any, RuntimeOptions};
use containerd_shim_protos::bootstrap_api::{BootstrapParams, BootstrapResult, Extension};
use containerd_shim_protos::protobuf::{Message, MessageField};

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-agentbox-v1");

struct Run {
    stdout: Vec<u8>,
    stderr: String,
    ok: bool,
}

/// `containerd-shim-agentbox-v1 -namespace ns -id ID -address ADDR start`
/// in `bundle`, with `stdin`; then the daemon it spawned is ended.
fn start(bundle: &Path, address: &str, stdin: &[u8]) -> Run {
    let run = start_only(bundle, address, stdin, &bundle.join("no-containerd.ttrpc"));
    // the daemon `start` spawned (its pid is in the bundle): ours to end
    if let Some(pid) = daemon_pid(bundle) {
        end_daemon(pid, Duration::from_secs(5));
    }
    run
}

/// The daemon's pid, from the `shim.pid` `start` left in the bundle.
fn daemon_pid(bundle: &Path) -> Option<i32> {
    std::fs::read_to_string(bundle.join("shim.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Wait up to `wait` for the daemon to exit, then kill it; whether it
/// exited by itself.
fn end_daemon(pid: i32, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return true;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    false
}

/// `start` alone, with containerd's ttrpc address `ttrpc`: the daemon it
/// spawned is left running.
fn start_only(bundle: &Path, address: &str, stdin: &[u8], ttrpc: &Path) -> Run {
    let mut child = Command::new(SHIM)
        .args([
            "-namespace",
            "k8s.io",
            "-id",
            "c1",
            "-address",
            address,
            "start",
        ])
        .current_dir(bundle)
        // nothing listens there: the daemon gives up on containerd and exits
        .env("TTRPC_ADDRESS", ttrpc)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        ok: out.status.success(),
    }
}

fn bundle_with_config(dir: &Path) -> (std::path::PathBuf, String) {
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(
        bundle.join("config.json"),
        r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sb-42"}}"#,
    )
    .unwrap();
    let cfg = dir.join("agentbox.toml");
    std::fs::write(
        &cfg,
        format!(
            "profile = \"standard\"\n[audit]\npath = \"{}\"\n",
            dir.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    (bundle, cfg.display().to_string())
}

fn options(cfg: &str) -> containerd_shim_protos::protobuf::well_known_types::any::Any {
    to_any(&RuntimeOptions {
        config_path: Some(cfg.to_string()),
        config_body: None,
    })
}

#[test]
fn bootstrap_start_answers_a_bootstrap_result_in_socket_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, cfg) = bundle_with_config(dir.path());
    let sockets = dir.path().join("s");
    let params = BootstrapParams {
        instance_id: "c1".into(),
        namespace: "k8s.io".into(),
        containerd_ttrpc_address: bundle.join("no-containerd.ttrpc").display().to_string(),
        containerd_grpc_address: dir.path().join("containerd.sock").display().to_string(),
        extensions: vec![Extension {
            value: MessageField::some(options(&cfg)),
            ..Default::default()
        }],
        socket_dir: Some(sockets.display().to_string()),
        ..Default::default()
    };
    let run = start(&bundle, "", &params.write_to_bytes().unwrap());
    assert!(run.ok, "start failed: {}", run.stderr);
    let r = BootstrapResult::parse_from_bytes(&run.stdout).expect("a BootstrapResult");
    assert_eq!((r.version, r.protocol.as_str()), (3, "ttrpc"));
    let path = r
        .address
        .strip_prefix("unix://")
        .expect("a unix:// address");
    assert_eq!(
        Path::new(path).parent(),
        Some(sockets.as_path()),
        "the socket is in socket_dir: {}",
        r.address
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("address")).unwrap(),
        r.address,
        "the bundle's address file names the same socket"
    );
}

#[test]
fn legacy_start_prints_the_bare_address_named_after_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, cfg) = bundle_with_config(dir.path());
    // a grpc address of this test's own: the socket name is a hash of it,
    // so it clashes with nothing on the host
    let grpc = dir.path().join("containerd.sock").display().to_string();
    let run = start(&bundle, &grpc, &options(&cfg).write_to_bytes().unwrap());
    assert!(run.ok, "start failed: {}", run.stderr);
    let address = String::from_utf8(run.stdout).unwrap();
    assert!(address.starts_with("unix://"), "{address:?}");
    assert!(
        !address.contains('\n') && !address.starts_with('{'),
        "{address:?}"
    );
    // agentbox's socket for the pod group, not the one a delegate shim
    // would compute for the sandbox id itself
    assert_eq!(
        address,
        containerd_shim::socket_address(&grpc, "k8s.io", "agentbox-sb-42")
    );
    assert_ne!(
        address,
        containerd_shim::socket_address(&grpc, "k8s.io", "sb-42")
    );
    let _ = std::fs::remove_file(address.trim_start_matches("unix://"));
}

#[test]
fn start_with_an_unusable_config_fails_before_any_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = bundle_with_config(dir.path());
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "profile = \"lenient\"\n").unwrap();
    let grpc = dir.path().join("containerd.sock").display().to_string();
    let run = start(
        &bundle,
        &grpc,
        &options(&bad.display().to_string())
            .write_to_bytes()
            .unwrap(),
    );
    assert!(!run.ok, "start accepted an unusable config");
    assert!(run.stderr.contains("bad.toml"), "{}", run.stderr);
    assert!(!bundle.join("shim.pid").exists(), "a daemon was spawned");
    assert!(!bundle.join("address").exists());
}

/// Ends a daemon this test made start spawn, whatever the test's outcome.
struct Daemon(i32);

impl Drop for Daemon {
    fn drop(&mut self) {
        end_daemon(self.0, Duration::ZERO);
    }
}

/// The daemon `start` spawns is handed the socket `start` printed and serves
/// the Task API on it (under containerd's v2 name), and a Shutdown with no
/// container left ends it and removes its socket.
#[tokio::test]
async fn the_daemon_start_spawned_serves_the_printed_socket_until_shutdown() {
    use containerd_shim_protos::api::{ConnectRequest, ShutdownRequest};
    use containerd_shim_protos::shim_async::TaskClient;
    use containerd_shim_protos::ttrpc::context::Context;
    use containerd_shim_protos::ttrpc::r#async::Client;

    let dir = tempfile::tempdir().unwrap();
    let (bundle, cfg) = bundle_with_config(dir.path());
    // containerd's ttrpc events service: a listener is all the daemon needs
    // to connect its event publisher (no event is sent here)
    let ttrpc = dir.path().join("containerd.sock.ttrpc");
    let _events = std::os::unix::net::UnixListener::bind(&ttrpc).unwrap();
    let grpc = dir.path().join("containerd.sock").display().to_string();
    let run = start_only(
        &bundle,
        &grpc,
        &options(&cfg).write_to_bytes().unwrap(),
        &ttrpc,
    );
    assert!(run.ok, "start failed: {}", run.stderr);
    let daemon = Daemon(daemon_pid(&bundle).expect("start spawned a daemon"));
    let address = String::from_utf8(run.stdout).unwrap();
    let socket = address.trim_start_matches("unix://").to_string();

    let client = TaskClient::new(Client::connect(&address).await.unwrap());
    let within = |d| Context {
        timeout_nano: Duration::from_secs(d).as_nanos() as i64,
        ..Default::default()
    };
    let r = client
        .connect(within(10), &ConnectRequest::default())
        .await
        .expect("the daemon answers on the printed socket");
    assert_eq!(
        r.shim_pid, daemon.0 as u32,
        "answered by the spawned daemon"
    );
    // ... on the very listener `start` bound and handed it as descriptor 3:
    // a daemon that bound the path again would drop the connections queued
    // on the first listener before it was up. One listening socket has the
    // path (the kernel lists a socket's bound name even once unlinked).
    let listening = std::fs::read_to_string("/proc/net/unix")
        .unwrap()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Num RefCount Protocol Flags(00010000: listening) Type St Inode Path
            f.len() >= 8 && f[3] == "00010000" && f[7] == socket
        })
        .count();
    assert_eq!(
        listening, 1,
        "sockets listening on {socket}: the daemon must serve the one `start` bound"
    );
    client
        .shutdown(within(10), &ShutdownRequest::default())
        .await
        .unwrap();
    assert!(
        end_daemon(daemon.0, Duration::from_secs(10)),
        "the daemon did not exit after Shutdown"
    );
    assert!(
        !Path::new(&socket).exists(),
        "the daemon left its socket {socket}"
    );
}

/// A second `start` for a pod whose daemon already serves the socket reuses
/// it: same address, no new daemon, the serving socket left alone.
#[test]
fn start_reuses_a_live_daemon_of_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, cfg) = bundle_with_config(dir.path());
    let grpc = dir.path().join("containerd.sock").display().to_string();
    let address = containerd_shim::socket_address(&grpc, "k8s.io", "agentbox-sb-42");
    let path = address.trim_start_matches("unix://").to_string();
    std::fs::create_dir_all(Path::new(&path).parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    let live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let run = start(&bundle, &grpc, &options(&cfg).write_to_bytes().unwrap());
    let kept = Path::new(&path).exists();
    let _ = std::fs::remove_file(&path);
    assert!(run.ok, "start failed: {}", run.stderr);
    assert_eq!(String::from_utf8(run.stdout).unwrap(), address);
    assert!(
        !bundle.join("shim.pid").exists(),
        "a second daemon was spawned"
    );
    assert!(kept, "the live daemon's socket was removed");
    live.set_nonblocking(true).unwrap();
    assert!(
        live.accept().is_ok(),
        "start did not check the socket is served"
    );
}

/// Runtime options that are not valid protobuf fail `start` with an error
/// that says so, rather than falling back to the default config.
#[test]
fn malformed_runtime_options_fail_start() {
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = bundle_with_config(dir.path());
    let any = containerd_shim_protos::protobuf::well_known_types::any::Any {
        type_url: "runtimeoptions.v1.Options".into(),
        value: vec![0x12, 0x05, b'a'],
        ..Default::default()
    };
    let grpc = dir.path().join("containerd.sock").display().to_string();
    let run = start(&bundle, &grpc, &any.write_to_bytes().unwrap());
    assert!(!run.ok, "start accepted malformed runtime options");
    assert!(
        run.stderr.contains("cannot read the runtime options"),
        "{}",
        run.stderr
    );
    assert!(!bundle.join("shim.pid").exists(), "a daemon was spawned");
}

/// `-info` describes the runtime by its id.
#[test]
fn info_names_the_runtime() {
    use containerd_shim_protos::types::introspection::RuntimeInfo;
    let out = Command::new(SHIM)
        .arg("-info")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success());
    let info = RuntimeInfo::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!(info.name, "io.containerd.agentbox.v1");
}

/// containerd's `delete` for a container that never reached the runtime (no
/// state in its bundle) answers as for a killed process: exit status 137
/// and an exit time.
#[test]
fn delete_without_state_answers_killed() {
    use containerd_shim_protos::api::DeleteResponse;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(SHIM)
        .args(["-namespace", "k8s.io", "-id", "c1", "-bundle"])
        .arg(dir.path())
        .arg("delete")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = DeleteResponse::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!((r.pid, r.exit_status), (0, 137));
    assert!(r.exited_at.seconds > 0, "no exit time");
}
