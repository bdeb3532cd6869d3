//! Host namespaces and the working directory: refusals only.

use serde_json::{Map, Value};

use crate::paths::normalize;
use crate::report::Refusal;

/// Namespaces a container must have of its own (or join by path), with the name
/// used in messages.
const REQUIRED: &[(&str, &str)] = &[
    ("pid", "PID"),
    ("ipc", "IPC"),
    ("uts", "UTS"),
    ("mount", "mount"),
    ("network", "network"),
];

/// Refuse a spec that shares a host namespace: a required type missing, or a
/// namespace joined through the host's own `/proc/1/ns/*` or `/proc/self/ns/*`.
pub(crate) fn check(root: &Map<String, Value>) -> Result<(), Refusal> {
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
            let norm = normalize(path).unwrap_or_default();
            let mut comps = norm.split('/').skip(1);
            let is_host = comps.next() == Some("proc")
                && matches!(comps.next(), Some("1" | "self" | "thread-self"))
                && comps.next() == Some("ns");
            if is_host {
                return Err(Refusal::new(
                    "namespaces.host-path",
                    ty,
                    format!(
                        "joining a host namespace is not allowed (\"{ty}\" namespace path {path:?})"
                    ),
                ));
            }
            if !path.starts_with('/') {
                return Err(Refusal::new(
                    "namespaces.host-path",
                    ty,
                    format!("namespace path must be absolute (\"{ty}\" namespace path {path:?})"),
                ));
            }
        }
    }
    Ok(())
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
