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
        .env("TTRPC_ADDRESS", bundle.join("no-containerd.ttrpc"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    // the daemon `start` spawned (its pid is in the bundle): ours to end
    if let Ok(pid) = std::fs::read_to_string(bundle.join("shim.pid")) {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
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
