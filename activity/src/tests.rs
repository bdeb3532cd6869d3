//! The pipeline over frames as the sentry encodes them.

use prost::Message;

use super::*;
use crate::proto::{kind, ContextData};

/// The sentry's execve message including the environment it always sends.
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

fn cd(tgid: i32) -> Option<ContextData> {
    Some(ContextData {
        thread_group_id: tgid,
        thread_id: tgid,
        container_id: "c1".into(),
        cwd: "/".into(),
        ..Default::default()
    })
}

fn exec_frame(tgid: i32, secret: &str) -> Vec<u8> {
    let m = FullExecve {
        context_data: cd(tgid),
        binary_path: "/bin/env".into(),
        argv: vec!["env".into()],
        env: vec![format!("GITHUB_TOKEN={secret}")],
    };
    wire::frame(kind::SENTRY_EXEC, 0, &m.encode_to_vec())
}

fn open_frame(tgid: i32, path: &str, dropped: u32) -> Vec<u8> {
    let m = proto::Open {
        context_data: cd(tgid),
        exit: Some(proto::Exit {
            result: 3,
            errorno: 0,
        }),
        fd: -100,
        pathname: path.into(),
        flags: 0o101,
        ..Default::default()
    };
    wire::frame(kind::SYSCALL_OPEN, dropped, &m.encode_to_vec())
}

fn pipeline(cfg: &str) -> Pipeline {
    Pipeline::new(serde_json::from_str(cfg).unwrap(), Box::new(AsIs))
}

struct AsIs;

impl crate::Redact for AsIs {
    fn argv(&self, argv: &[String]) -> Vec<String> {
        argv.to_vec()
    }
    fn text(&self, text: &str) -> String {
        text.to_string()
    }
}

#[test]
fn the_environment_never_reaches_a_record() {
    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let mut p = pipeline("{}");
    let mut out = Vec::new();
    p.ingest(&exec_frame(2, secret), 0.0, &mut out);
    p.finish(0.0, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].fields["argv"], serde_json::json!(["env"]));
    let all = format!("{out:?}");
    assert!(!all.contains(secret) && !all.contains("GITHUB_TOKEN"));
}

#[test]
fn a_flood_is_cut_to_the_rate_with_a_dropped_record() {
    // 100,000 files opened in one second by one process
    let mut p = pipeline(r#"{"rate_per_second": 100, "burst": 200, "max_tracked_files": 1000}"#);
    let mut out = Vec::new();
    for i in 0..100_000u32 {
        p.ingest(
            &open_frame(1, &format!("/tmp/f{i}"), 0),
            i as f64 / 100_000.0,
            &mut out,
        );
    }
    // the sentry reports two points it could not send
    p.ingest(&open_frame(1, "/tmp/last", 2), 1.0, &mut out);
    p.finish(1.0, &mut out);
    let files = out.iter().filter(|r| r.event == "file").count();
    assert!((200..=301).contains(&files), "{files} file records");
    let dropped: Vec<&Record> = out.iter().filter(|r| r.event == "dropped").collect();
    assert!(!dropped.is_empty());
    let total: u64 = dropped
        .iter()
        .map(|r| {
            r.fields
                .get("rate_limited")
                .and_then(|v| v.as_u64())
                .unwrap_or(0)
        })
        .sum();
    let written = out.iter().filter(|r| r.event != "dropped").count();
    // 100,001 file records and the process that opened them
    assert_eq!(
        total as usize + written,
        100_002,
        "every record written or counted"
    );
    assert_eq!(
        dropped
            .iter()
            .filter_map(|r| r.fields.get("gvisor_dropped"))
            .count(),
        1
    );
}

#[test]
fn malformed_frames_are_counted_not_fatal() {
    let mut p = pipeline("{}");
    let mut out = Vec::new();
    p.ingest(&[1, 2], 0.0, &mut out);
    p.ingest(
        &wire::frame(kind::SYSCALL_OPEN, 0, &[0xff, 0xff]),
        0.0,
        &mut out,
    );
    p.ingest(&wire::frame(200, 0, &[1, 2, 3]), 0.0, &mut out);
    assert_eq!(p.malformed, 2);
    assert!(out.is_empty());
}

/// Processes whose exit the sentry never sent (dropped points) cannot pile up:
/// past `max_tracked_processes` the longest-followed one is written out and
/// forgotten, and the `dropped` record counts it.
#[test]
fn followed_processes_stay_bounded() {
    let mut p = pipeline(r#"{"max_tracked_processes": 50}"#);
    let mut out = Vec::new();
    // 1,000 processes that open a file each and never exit
    for tgid in 1..=1000 {
        p.ingest(
            &open_frame(tgid, &format!("/work/f{tgid}"), 0),
            0.0,
            &mut out,
        );
        assert!(p.processes() <= 50, "{} processes followed", p.processes());
    }
    // the forgotten ones' files were written, not lost
    let files = out.iter().filter(|r| r.event == "file").count();
    assert!(files >= 950, "{files} file records");
    p.finish(0.0, &mut out);
    let evicted: u64 = out
        .iter()
        .filter(|r| r.event == "dropped")
        .filter_map(|r| r.fields.get("processes_evicted").and_then(|v| v.as_u64()))
        .sum();
    assert_eq!(evicted, 950);
    assert_eq!(out.iter().filter(|r| r.event == "file").count(), 1000);
}
