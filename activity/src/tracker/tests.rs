use super::*;
use crate::event::Ctx;
use serde_json::json;

fn ctx(tgid: i32) -> Ctx {
    Ctx {
        tgid,
        tid: tgid,
        container: "c1".into(),
        cwd: "/workspace".into(),
        name: "sh".into(),
        uid: Some(1000),
        gid: Some(1000),
    }
}

/// Stands in for the shim's detector: anything with `ghp_` is a secret.
struct Ghp;

impl crate::Redact for Ghp {
    fn argv(&self, argv: &[String]) -> Vec<String> {
        argv.iter().map(|s| self.text(s)).collect()
    }
    fn text(&self, s: &str) -> String {
        if s.contains("ghp_") {
            "[redacted]".into()
        } else {
            s.to_string()
        }
    }
}

fn tracker(cfg: ActivityConfig) -> Tracker {
    Tracker::new(cfg, Box::new(Ghp))
}

fn open(tgid: i32, path: &str, flags: u32, result: i64) -> Event {
    Event::Open {
        ctx: ctx(tgid),
        dirfd: AT_FDCWD,
        dir_path: String::new(),
        pathname: path.into(),
        flags,
        result,
    }
}

fn run(t: &mut Tracker, evs: Vec<Event>) -> Vec<Record> {
    let mut out = Vec::new();
    for e in evs {
        t.handle(e, &mut out);
    }
    out
}

fn exit(tgid: i32, status: i32) -> Event {
    Event::TaskExit {
        ctx: ctx(tgid),
        status,
    }
}

#[test]
fn the_process_tree_with_argv_files_and_statuses() {
    let mut t = tracker(ActivityConfig::default());
    let out = run(
        &mut t,
        vec![
            Event::ContainerStart {
                ctx: ctx(1),
                id: "c1".into(),
                cwd: "/workspace".into(),
                args: vec!["sh".into(), "-c".into(), "agent.sh".into()],
            },
            open(1, "plan.txt", 0, 3),
            open(1, "/tmp/out", 0o1101, 4),
            open(1, "/tmp/out", 0o2001, 4),
            Event::Clone {
                ctx: ctx(1),
                child_tgid: 2,
            },
            // a thread of the shell: not a process
            Event::Clone {
                ctx: ctx(1),
                child_tgid: 1,
            },
            Event::Exec {
                ctx: ctx(2),
                binary: "/bin/busybox".into(),
                argv: vec!["cat".into(), "/workspace/plan.txt".into()],
            },
            open(2, "/workspace/plan.txt", 0, 3),
            open(2, "/workspace/missing", 0, -2),
            open(2, "/lib/x86_64-linux-gnu/libc.so.6", 0o2000000, 3),
            open(2, "/proc/self/status", 0, 3),
            exit(2, 0),
            exit(1, 3 << 8),
        ],
    );
    let ev: Vec<&str> = out.iter().map(|r| r.event).collect();
    assert_eq!(
        ev,
        [
            "process",
            "process",
            "file",
            "file",
            "process_exit",
            "file",
            "file",
            "process_exit"
        ]
    );
    assert_eq!(out[0].fields["argv"], json!(["sh", "-c", "agent.sh"]));
    assert_eq!(out[0].fields["ppid"], 0);
    assert_eq!(out[1].fields["pid"], 2);
    assert_eq!(out[1].fields["ppid"], 1);
    assert_eq!(out[1].fields["binary"], "/bin/busybox");
    assert_eq!(out[1].fields["uid"], 1000);
    // cat's files, sorted by path: the failed open counted, the loader's
    // read and /proc left out
    assert_eq!(out[2].fields["path"], "/workspace/missing");
    assert_eq!(out[2].fields["failed"], 1);
    assert_eq!(out[3].fields["path"], "/workspace/plan.txt");
    assert_eq!(out[3].fields["intent"], json!(["read"]));
    assert_eq!(out[4].fields["exit_code"], 0);
    // the shell: relative path resolved in its cwd, two opens of /tmp/out merged
    assert_eq!(out[5].fields["path"], "/tmp/out");
    assert_eq!(out[5].fields["intent"], json!(["write", "create"]));
    assert_eq!(out[5].fields["opens"], 2);
    assert_eq!(out[6].fields["path"], "/workspace/plan.txt");
    assert_eq!(out[7].fields["exit_code"], 3);
    assert!(out.iter().all(|r| r.container_id == "c1"));
    assert_eq!(t.processes(), 0);
}

#[test]
fn argv_is_redacted() {
    let mut t = tracker(ActivityConfig::default());
    let out = run(
        &mut t,
        vec![Event::Exec {
            ctx: ctx(5),
            binary: "/usr/bin/git".into(),
            argv: vec!["git".into(), "ghp_abc".into()],
        }],
    );
    assert_eq!(out[0].fields["argv"], json!(["git", "[redacted]"]));
}

/// Every string a process chose goes through the redactor, not only argv:
/// the binary, the working directory, file paths and unix socket addresses.
#[test]
fn paths_binary_cwd_and_socket_addresses_are_redacted() {
    let mut t = tracker(ActivityConfig::default());
    let mut c = ctx(6);
    c.cwd = "/tmp/ghp_cwd".into();
    let out = run(
        &mut t,
        vec![
            Event::Exec {
                ctx: c.clone(),
                binary: "/tmp/ghp_bin".into(),
                argv: vec!["x".into()],
            },
            open(6, "/tmp/ghp_file", 0o101, 3),
            Event::Net {
                ctx: c,
                call: NetCall::Connect,
                addr: Some(SockAddr::Unix("/run/ghp_sock".into())),
                result: 0,
            },
            exit(6, 0),
        ],
    );
    let text = serde_json::to_string(&out.iter().map(|r| &r.fields).collect::<Vec<_>>()).unwrap();
    assert!(!text.contains("ghp_"), "{text}");
    let by = |ev: &str| out.iter().find(|r| r.event == ev).unwrap();
    assert_eq!(by("process").fields["binary"], "[redacted]");
    assert_eq!(by("process").fields["cwd"], "[redacted]");
    assert_eq!(by("file").fields["path"], "[redacted]");
    assert_eq!(by("connect").fields["address"], "[redacted]");
}

#[test]
fn a_fork_that_does_nothing_is_not_recorded_but_one_that_writes_is() {
    let mut t = tracker(ActivityConfig::default());
    let out = run(
        &mut t,
        vec![
            Event::Clone {
                ctx: ctx(1),
                child_tgid: 7,
            },
            exit(7, 0),
            Event::Clone {
                ctx: ctx(1),
                child_tgid: 8,
            },
            open(8, "/tmp/x", 0o101, 3),
            exit(8, 0),
        ],
    );
    let ev: Vec<&str> = out.iter().map(|r| r.event).collect();
    assert_eq!(ev, ["process", "file", "process_exit"]);
    assert_eq!(out[0].fields["pid"], 8);
    assert_eq!(out[0].fields["ppid"], 1);
    assert_eq!(
        out[0].fields["binary"], "sh",
        "a fork keeps its parent's image"
    );
}

#[test]
fn exec_writes_the_previous_images_files_first() {
    let mut t = tracker(ActivityConfig::default());
    let out = run(
        &mut t,
        vec![
            Event::Clone {
                ctx: ctx(1),
                child_tgid: 4,
            },
            open(4, "/etc/resolv.conf", 0, 3),
            Event::Exec {
                ctx: ctx(4),
                binary: "/bin/wget".into(),
                argv: vec!["wget".into()],
            },
        ],
    );
    let ev: Vec<(&str, String)> = out
        .iter()
        .map(|r| {
            (
                r.event,
                r.fields
                    .get("binary")
                    .map(|b| b.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(ev[0], ("process", "\"sh\"".into()));
    assert_eq!(ev[1].0, "file");
    assert_eq!(ev[2], ("process", "\"/bin/wget\"".into()));
}

#[test]
fn connections_with_destination_and_result() {
    let mut t = tracker(ActivityConfig::default());
    let out = run(
        &mut t,
        vec![
            Event::Net {
                ctx: ctx(3),
                call: NetCall::Connect,
                addr: Some(SockAddr::Inet {
                    v6: false,
                    address: "10.9.0.2".into(),
                    port: 8080,
                }),
                result: -111,
            },
            Event::Net {
                ctx: ctx(3),
                call: NetCall::Bind,
                addr: Some(SockAddr::Unix("/tmp/s".into())),
                result: 0,
            },
            Event::Net {
                ctx: ctx(3),
                call: NetCall::Connect,
                addr: Some(SockAddr::Other(16)),
                result: 0,
            },
        ],
    );
    let ev: Vec<&str> = out.iter().map(|r| r.event).collect();
    assert_eq!(ev, ["process", "connect", "bind"]);
    assert_eq!(out[1].fields["address"], "10.9.0.2");
    assert_eq!(out[1].fields["port"], 8080);
    assert_eq!(out[1].fields["family"], "inet");
    assert_eq!(out[1].fields["result"], "ECONNREFUSED");
    assert_eq!(out[2].fields["family"], "unix");
    // a process seen first through a syscall is named by its process name
    assert_eq!(out[0].fields["binary"], "sh");
}

#[test]
fn kinds_limit_what_is_recorded() {
    let cfg: ActivityConfig = serde_json::from_str(r#"{"kinds": ["network"]}"#).unwrap();
    let mut t = tracker(cfg);
    let out = run(
        &mut t,
        vec![
            Event::Exec {
                ctx: ctx(2),
                binary: "/bin/x".into(),
                argv: vec![],
            },
            open(2, "/tmp/x", 1, 3),
            exit(2, 0),
        ],
    );
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn memory_is_bounded_by_writing_files_early() {
    let cfg: ActivityConfig = serde_json::from_str(r#"{"max_tracked_files": 10}"#).unwrap();
    let mut t = tracker(cfg);
    let evs = (0..25)
        .map(|i| open(1, &format!("/tmp/f{i}"), 0o101, 3))
        .collect();
    let out = run(&mut t, evs);
    assert_eq!(out.iter().filter(|r| r.event == "file").count(), 22);
    assert!(t.tracked_files <= 10);
    let mut rest = Vec::new();
    t.finish(&mut rest);
    assert_eq!(rest.iter().filter(|r| r.event == "file").count(), 3);
}

#[test]
fn paths_resolve() {
    assert_eq!(
        resolve("/w", AT_FDCWD, "", "a/../b/./c"),
        Some("/w/b/c".into())
    );
    assert_eq!(resolve("/w", 5, "/etc", "hosts"), Some("/etc/hosts".into()));
    assert_eq!(resolve("", AT_FDCWD, "", "x"), None);
    assert_eq!(resolve("/w", 5, "[err: FD not found]", "x"), None);
    assert!(under("/proc/1/status", "/proc"));
    assert!(under("/proc", "/proc/"));
    assert!(!under("/process", "/proc"));
    assert!(loader_read("/usr/lib/libz.so.1.2"));
    assert!(!loader_read("/workspace/notes.txt"));
}

#[test]
fn wait_statuses() {
    assert_eq!(decode_wait_status(3 << 8), (Some(3), None));
    assert_eq!(decode_wait_status(9), (None, Some(9)));
    assert_eq!(result_text(-115), "EINPROGRESS");
    assert_eq!(result_text(-999), "errno 999");
}
