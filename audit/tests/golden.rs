//! agentbox-audit against a recorded log: text and JSON compared with the
//! expected files (`UPDATE_GOLDEN=1` rewrites them after a deliberate change).

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn audit(args: &[&str]) -> (String, String, bool) {
    let out = Command::new(env!("CARGO_BIN_EXE_agentbox-audit"))
        .arg(dir().join("run.jsonl"))
        .args(args)
        .output()
        .expect("run agentbox-audit");
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.success(),
    )
}

fn golden(name: &str, got: &str) {
    let path = dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "{name} differs (UPDATE_GOLDEN=1 to accept)");
}

#[test]
fn text_of_every_pod() {
    let (out, err, ok) = audit(&[]);
    assert!(ok, "{err}");
    assert!(err.contains("1 lines"), "{err}");
    golden("all.txt", &out);
}

#[test]
fn one_pod_as_json() {
    let (out, err, ok) = audit(&["--pod", "team-a/agent-pod", "--json"]);
    assert!(ok, "{err}");
    golden("agent-pod.json", &out);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let sh = &runs[0]["processes"][0];
    assert_eq!(sh["exit_code"], 3);
    assert_eq!(sh["children"][1]["children"][0]["argv"][0], "wget");
}

#[test]
fn filters_by_container_time_and_read_path() {
    let (out, _, ok) = audit(&[
        "--pod",
        "agent-pod",
        "--container",
        "agent",
        "--read-under",
        "/workspace",
        "--since",
        "2025-03-01T10:00:05Z",
    ]);
    assert!(ok);
    golden("filtered.txt", &out);
    assert!(!out.contains("/etc/passwd"));
    assert!(!out.contains("builder"));
}

#[test]
fn bad_input_is_a_clear_error() {
    let (_, err, ok) = audit(&["--since", "yesterday"]);
    assert!(!ok);
    assert!(err.contains("RFC 3339"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_agentbox-audit"))
        .arg("/nonexistent/audit.jsonl")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot open audit log /nonexistent/audit.jsonl"));
}
