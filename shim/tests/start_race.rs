//! containerd's `start` run for several containers of one pod at once (the
//! shim binary, as containerd runs it): exactly one daemon serves the pod,
//! none is orphaned. Needs root (the socket goes where containerd's go).

use std::io::Write;
use std::process::{Command, Stdio};

use agentbox_shim::options::{to_any, RuntimeOptions};
use containerd_shim_protos::protobuf::Message;

const STARTS: usize = 24;

fn daemons_with(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains("containerd-shim-agentbox-v1") && cmd.contains(needle) {
            v.push(pid);
        }
    }
    v
}

/// Rounds of the race. Without the lock on socket ownership a round of 24
/// starts leaves more than one daemon about one time in ten here; ten
/// rounds catch it most of the time.
const ROUNDS: usize = 10;

#[test]
fn concurrent_starts_for_one_pod_spawn_one_daemon() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED concurrent_starts_for_one_pod_spawn_one_daemon: needs root");
        return;
    }
    for round in 0..ROUNDS {
        race(round);
    }
}

/// Every daemon whose command line names `needle` (this round's private
/// containerd address, in a fresh temp dir) is killed when the round ends,
/// also when it ends in a panic: the daemons are `setsid` and idle forever
/// otherwise (no containerd will ever ask them to shut down).
struct KillDaemons(String);

impl Drop for KillDaemons {
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let left = daemons_with(&self.0);
            if left.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            for pid in left {
                // SAFETY: plain kill(2) of daemons this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

fn race(round: usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agentbox.toml");
    std::fs::write(
        &config,
        format!(
            "profile = \"standard\"\n[runtime]\nrunsc_root = \"{}\"\n[audit]\npath = \"{}\"\n",
            dir.path().join("runsc").display(),
            dir.path().join("audit.jsonl").display()
        ),
    )
    .unwrap();
    // containerd's event service: the daemons connect to it
    let ttrpc = dir.path().join("ttrpc.sock");
    let _events = std::os::unix::net::UnixListener::bind(&ttrpc).unwrap();
    let grpc = dir.path().join("containerd.sock").display().to_string();
    let _reap = KillDaemons(format!("-address {grpc} "));
    let options = to_any(&RuntimeOptions {
        config_path: Some(config.display().to_string()),
        config_body: None,
    })
    .write_to_bytes()
    .unwrap();
    let sandbox = format!("race-{}-{round}", std::process::id());

    let mut children: Vec<_> = (0..STARTS)
        .map(|i| {
            let bundle = dir.path().join(format!("c{i}"));
            std::fs::create_dir_all(&bundle).unwrap();
            let spec =
                serde_json::json!({"annotations": {"io.kubernetes.cri.sandbox-id": sandbox}});
            std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
            let mut c = Command::new(env!("CARGO_BIN_EXE_containerd-shim-agentbox-v1"))
                .args(["-namespace", "k8s.io", "-address", &grpc, "-id"])
                .arg(format!("c{i}"))
                .arg("start")
                .current_dir(&bundle)
                .env("TTRPC_ADDRESS", &ttrpc)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // each waits for its options on stdin: released all at once below
            c.stdin.as_mut().unwrap().write_all(&options).unwrap();
            c
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    for c in &mut children {
        drop(c.stdin.take());
    }
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let addresses: std::collections::BTreeSet<String> = outputs
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).to_string()
        })
        .collect();
    assert_eq!(addresses.len(), 1, "{addresses:?}");
    let socket = addresses
        .first()
        .unwrap()
        .trim_start_matches("unix://")
        .to_string();
    // give a losing daemon time to show up
    std::thread::sleep(std::time::Duration::from_millis(500));
    let daemons = daemons_with(&format!("-address {grpc} "));
    drop(_reap);
    assert!(
        daemons_with(&format!("-address {grpc} ")).is_empty(),
        "daemons survived SIGKILL"
    );
    let _ = std::fs::remove_file(&socket);
    assert_eq!(
        daemons.len(),
        1,
        "round {round}: {STARTS} concurrent starts left {} daemons for one pod",
        daemons.len()
    );
}
