//! Host namespaces and the working directory: refusals only.
//!
//! A namespace path is refused when it is lexically one of the host's own
//! (`/proc/1/ns/*`, `/proc/self/ns/*`, a path through `/proc/<pid>/root`…),
//! when its symlinks lead to such a path, or when the namespace it leads to
//! (device and inode) is the host's: that of PID 1 or of this process.

use serde_json::{Map, Value};

use crate::host::HostFs;
use crate::paths::{normalize, normalize_cow};
use crate::report::Refusal;
use crate::resolve::resolve;

/// Namespaces a container must have of its own (or join by path), with the name
/// used in messages.
const REQUIRED: &[(&str, &str)] = &[
    ("pid", "PID"),
    ("ipc", "IPC"),
    ("uts", "UTS"),
    ("mount", "mount"),
    ("network", "network"),
];

/// OCI namespace types and their names under `/proc/<pid>/ns/`.
const PROC_NS: &[(&str, &str)] = &[
    ("pid", "pid"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("mount", "mnt"),
    ("network", "net"),
    ("user", "user"),
    ("cgroup", "cgroup"),
    ("time", "time"),
];

const RULE: &str = "namespaces.host-path";

/// Refuse a spec that shares a host namespace: a required type missing, or a
/// namespace joined through a path that leads to one of the host's.
pub(crate) fn check(
    root: &Map<String, Value>,
    host: &dyn HostFs,
    sandbox_pid: Option<u32>,
) -> Result<(), Refusal> {
    let ns = root
        .get("linux")
        .and_then(|l| l.get("namespaces"))
        .and_then(Value::as_array);
    let empty = Vec::new();
    let ns = ns.unwrap_or(&empty);
    for (ty, label) in REQUIRED {
        if !ns
            .iter()
            .any(|n| n.get("type").and_then(Value::as_str) == Some(ty))
        {
            return Err(Refusal::new(
                "namespaces.host",
                *ty,
                format!(
                    "host {label} namespace is not allowed (spec has no \"{ty}\" namespace entry)"
                ),
            ));
        }
    }
    for n in ns {
        let ty = n.get("type").and_then(Value::as_str).unwrap_or("");
        if let Some(path) = n.get("path").and_then(Value::as_str) {
            check_path(ty, path, host, sandbox_pid)?;
        }
    }
    Ok(())
}

fn refuse(ty: &str, path: &str, why: &str) -> Refusal {
    Refusal::new(
        RULE,
        ty,
        format!("joining a host namespace is not allowed (\"{ty}\" namespace path {path:?} {why})"),
    )
}

/// `/proc/<pid>/ns/<name>` for the pod's sandbox pid, exactly.
fn is_sandbox_ns(path: &str, sandbox_pid: Option<u32>) -> bool {
    let Some(pid) = sandbox_pid else {
        return false;
    };
    let Some(norm) = normalize_cow(path) else {
        return false;
    };
    let mut c = norm.split('/').skip(1);
    let want = pid.to_string();
    c.next() == Some("proc")
        && c.next() == Some(want.as_str())
        && c.next() == Some("ns")
        && c.next().is_some()
        && c.next().is_none()
}

fn check_path(
    ty: &str,
    path: &str,
    host: &dyn HostFs,
    sandbox_pid: Option<u32>,
) -> Result<(), Refusal> {
    if !path.starts_with('/') {
        return Err(Refusal::new(
            RULE,
            ty,
            format!("namespace path must be absolute (\"{ty}\" namespace path {path:?})"),
        ));
    }
    if lexically_host(path) {
        return Err(refuse(ty, path, "is the host's"));
    }
    let resolved = resolve(path, host).map_err(|e| {
        Refusal::new(
            RULE,
            ty,
            format!("cannot check the \"{ty}\" namespace path {path:?}: {e}"),
        )
    })?;
    // (without links the end is the path itself, checked above)
    if !resolved.steps.is_empty()
        && resolved
            .steps
            .iter()
            .chain(std::iter::once(&resolved.path))
            .any(|p| lexically_host(p))
    {
        return Err(refuse(ty, path, "leads to the host's"));
    }
    // Where the host answers: the namespace itself, by device and inode
    // (the pod sandbox's own namespaces excepted, see `ApplyContext`).
    if is_sandbox_ns(path, sandbox_pid) {
        return Ok(());
    }
    if let Some(id) = host.file_id(path) {
        let names: Vec<&str> = match PROC_NS.iter().find(|(t, _)| *t == ty) {
            Some((_, n)) => vec![n],
            None => PROC_NS.iter().map(|(_, n)| *n).collect(),
        };
        for n in names {
            for pid in ["1", "self"] {
                if host.file_id(&format!("/proc/{pid}/ns/{n}")) == Some(id) {
                    return Err(refuse(ty, path, "leads to the host's"));
                }
            }
        }
    }
    Ok(())
}

/// Lexically a host namespace: under `/proc`, anything but
/// `/proc/<pid>/ns/<name>` or `/proc/<pid>/task/<tid>/ns/<name>` with a pid
/// other than 1 (`self`, `thread-self`, `/proc/<pid>/root/…`, `/proc/1/…`).
fn lexically_host(path: &str) -> bool {
    let Some(norm) = normalize_cow(path) else {
        return true;
    };
    let mut it = norm.split('/').skip(1);
    if it.next() != Some("proc") {
        return false;
    }
    let mut c = [""; 5];
    let mut n = 0;
    for comp in it {
        if n == c.len() {
            return true;
        }
        c[n] = comp;
        n += 1;
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let pid_ok = |s: &str| digits(s) && s.trim_start_matches('0') != "1";
    let ok = match &c[..n] {
        [pid, "ns", _] => pid_ok(pid),
        [pid, "task", tid, "ns", _] => pid_ok(pid) && digits(tid),
        _ => false,
    };
    !ok
}

/// Refuse a process whose working directory is under `/proc`.
pub(crate) fn check_cwd(process: &Map<String, Value>) -> Result<(), Refusal> {
    if let Some(cwd) = process.get("cwd").and_then(Value::as_str) {
        let n = normalize(cwd).unwrap_or_else(|| cwd.to_string());
        if n == "/proc" || n.starts_with("/proc/") {
            return Err(Refusal::new(
                "process.cwd-proc",
                n,
                format!("a working directory under /proc is not allowed (process.cwd {cwd:?})"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_paths() {
        assert!(is_sandbox_ns("/proc/42/ns/pid", Some(42)));
        assert!(is_sandbox_ns("//proc/42/./ns/net", Some(42)));
        assert!(!is_sandbox_ns("/proc/42/ns/pid", None));
        assert!(!is_sandbox_ns("/proc/420/ns/pid", Some(42)));
        assert!(!is_sandbox_ns("/proc/042/ns/pid", Some(42)));
        assert!(!is_sandbox_ns("/proc/42/root/proc/1/ns/pid", Some(42)));
        assert!(!is_sandbox_ns("/run/netns/x", Some(42)));
    }

    #[test]
    fn lexical() {
        for p in [
            "/proc/1/ns/net",
            "/proc/01/ns/net",
            "/proc/self/ns/net",
            "/proc/thread-self/ns/net",
            "/proc/self/root/proc/1/ns/net",
            "/proc/4242/root/proc/4242/ns/net",
            "/proc/4242/ns",
            "/proc/4242/ns/net/x",
            "/proc/1/task/1/ns/net",
            "/proc",
        ] {
            assert!(lexically_host(p), "{p}");
        }
        for p in [
            "/proc/4242/ns/net",
            "/proc/4242/task/4243/ns/ipc",
            "/var/run/netns/cni-1",
            "/run/netns/x",
        ] {
            assert!(!lexically_host(p), "{p}");
        }
    }
}
