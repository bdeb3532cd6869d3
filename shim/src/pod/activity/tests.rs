//! The sink against a client playing the sentry's side of the protocol.

use std::os::fd::AsRawFd;

use agentbox_activity::proto::{self, kind, ContextData};
use agentbox_activity::wire;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use prost::Message;

use super::*;
use serde_json::Value;

/// The sentry's execve message with the environment it always sends.
#[derive(Clone, PartialEq, prost::Message)]
struct FullExecve {
    #[prost(message, optional, tag = "1")]
    context_data: Option<ContextData>,
    #[prost(string, tag = "2")]
    binary_path: String,
    #[prost(string, repeated, tag = "3")]
    argv: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    env: Vec<String>,
}

fn cd(tgid: i32, container: &str) -> Option<ContextData> {
    Some(ContextData {
        thread_group_id: tgid,
        thread_id: tgid,
        container_id: container.into(),
        cwd: "/workspace".into(),
        ..Default::default()
    })
}

fn sentry(path: &Path, frames: Vec<Vec<u8>>) -> std::thread::JoinHandle<u32> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        socket::connect(fd.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        let hs = proto::Handshake { version: 1 }.encode_to_vec();
        socket::send(fd.as_raw_fd(), &hs, MsgFlags::empty()).unwrap();
        let mut buf = [0u8; 64];
        let n = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        let version = wire::read_handshake(&buf[..n]).unwrap();
        for f in frames {
            socket::send(fd.as_raw_fd(), &f, MsgFlags::empty()).unwrap();
        }
        version
    })
}

#[test]
fn records_reach_the_audit_log_about_their_container_without_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("ghp_{}", "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8");
    let audit = Arc::new(AuditLog::new(dir.path().join("audit.jsonl")));
    let containers = Arc::new(Containers::default());
    let pod = Subject {
        namespace: "k8s.io".into(),
        sandbox_id: "sb1".into(),
        pod: Some("agent-pod".into()),
        ..Subject::default()
    };
    containers.insert(
        "ctr-agent",
        &Subject {
            container_id: "ctr-agent".into(),
            container: Some("agent".into()),
            ..pod.clone()
        },
    );
    let sink = ActivitySink::start(
        &ActivityConfig::default(),
        dir.path(),
        dir.path(),
        "sb1",
        audit.clone(),
        containers,
        pod,
        Box::new(SecretsRedactor::Builtin),
    )
    .unwrap();
    // the pod-init config runsc reads names the socket
    let init: Value = serde_json::from_slice(&std::fs::read(&sink.pod_init).unwrap()).unwrap();
    let endpoint = init["trace_session"]["sinks"][0]["config"]["endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(Path::new(&endpoint).exists());

    let exec = FullExecve {
        context_data: cd(7, "ctr-agent"),
        binary_path: "/usr/bin/git".into(),
        argv: vec!["git".into(), "push".into(), format!("--token={secret}")],
        env: vec![format!("GITHUB_TOKEN={secret}")],
    };
    let open = proto::Open {
        context_data: cd(7, "ctr-agent"),
        exit: Some(proto::Exit {
            result: 3,
            errorno: 0,
        }),
        fd: -100,
        pathname: "notes.md".into(),
        ..Default::default()
    };
    let exit = proto::TaskExit {
        context_data: cd(7, "ctr-agent"),
        exit_status: 1 << 8,
    };
    let frames = vec![
        wire::frame(kind::SENTRY_EXEC, 0, &exec.encode_to_vec()),
        wire::frame(kind::SYSCALL_OPEN, 0, &open.encode_to_vec()),
        wire::frame(kind::SENTRY_TASK_EXIT, 4, &exit.encode_to_vec()),
    ];
    assert_eq!(sentry(Path::new(&endpoint), frames).join().unwrap(), 1);
    sink.wait_connected(Duration::from_secs(5)).unwrap();
    // only one sandbox: the socket is gone once it connected
    assert!(!Path::new(&endpoint).exists());
    sink.close(Duration::from_secs(5));

    let text = std::fs::read_to_string(audit.path()).unwrap();
    assert!(!text.contains(&secret), "{text}");
    assert!(!text.contains("GITHUB_TOKEN"), "{text}");
    let recs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
    // the sentry's drop count comes with the exit: reported before its records
    assert_eq!(
        events,
        ["process", "dropped", "file", "process_exit"],
        "{text}"
    );
    assert_eq!(recs[0]["container"], "agent");
    assert_eq!(recs[0]["pod"], "agent-pod");
    assert_eq!(recs[0]["argv"][2], "--token=[redacted]");
    assert_eq!(recs[1]["gvisor_dropped"], 4);
    assert!(recs[1].get("container").is_none());
    assert_eq!(recs[2]["path"], "/workspace/notes.md");
    assert_eq!(recs[3]["exit_code"], 1);
    assert!(recs
        .iter()
        .all(|r| r["source"] == "gvisor" && r["time"].is_string()));
}

#[test]
fn a_sandbox_that_never_connects_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let sink = ActivitySink::start(
        &ActivityConfig::default(),
        dir.path(),
        dir.path(),
        "sb2",
        Arc::new(AuditLog::new(dir.path().join("a.jsonl"))),
        Arc::default(),
        Subject::default(),
        Box::new(SecretsRedactor::Builtin),
    )
    .unwrap();
    let e = sink.wait_connected(Duration::from_millis(100)).unwrap_err();
    assert!(e.contains("did not connect"), "{e}");
    sink.close(Duration::from_secs(2));
}

#[test]
fn an_unusable_socket_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let e = ActivitySink::start(
        &ActivityConfig::default(),
        &file,
        dir.path(),
        "sb3",
        Arc::new(AuditLog::new(dir.path().join("a.jsonl"))),
        Arc::default(),
        Subject::default(),
        Box::new(SecretsRedactor::Builtin),
    )
    .err()
    .unwrap();
    assert!(e.contains("cannot listen"), "{e}");
}
