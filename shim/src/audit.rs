//! The audit log: one JSON object per line, appended. Never a secret value:
//! records carry env variable names, mount destinations and rule ids only.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
#[error("cannot write audit log {path}: {err}")]
pub struct AuditError {
    pub path: PathBuf,
    pub err: std::io::Error,
}

/// Who a record is about.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Subject {
    /// containerd namespace (`k8s.io` for Kubernetes).
    pub namespace: String,
    /// The pod group (CRI sandbox id), or the container id outside Kubernetes.
    pub sandbox_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The container (task) id.
    pub container_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

impl Subject {
    /// Fill pod and container names from a spec's CRI annotations.
    pub fn from_annotations(
        namespace: &str,
        id: &str,
        annotations: Option<&Map<String, Value>>,
    ) -> Subject {
        let get = |k: &str| {
            annotations
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Subject {
            namespace: namespace.to_string(),
            sandbox_id: get("io.kubernetes.cri.sandbox-id").unwrap_or_else(|| id.to_string()),
            pod: get("io.kubernetes.cri.sandbox-name"),
            pod_namespace: get("io.kubernetes.cri.sandbox-namespace"),
            container_id: id.to_string(),
            container: get("io.kubernetes.cri.container-name"),
        }
    }
}

/// An append-only JSON-lines log shared by every task of the daemon.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    lock: Mutex<()>,
}

impl AuditLog {
    pub fn new(path: impl Into<PathBuf>) -> AuditLog {
        AuditLog {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record: `{"time", "event", ...subject, ...fields}`.
    pub fn record(&self, event: &str, subject: &Subject, fields: Value) -> Result<(), AuditError> {
        self.append(&Self::line(event, subject, fields))
    }

    /// Append several lines made by [`AuditLog::line`] in one write.
    pub fn append_lines(&self, lines: &[u8]) -> Result<(), AuditError> {
        self.append(lines)
    }

    /// One record as a line: `{"time", "event", ...subject, ...fields}\n`.
    pub fn line(event: &str, subject: &Subject, fields: Value) -> Vec<u8> {
        let mut obj = Map::new();
        obj.insert("time".into(), Value::String(now_rfc3339()));
        obj.insert("event".into(), Value::String(event.to_string()));
        if let Ok(Value::Object(s)) = serde_json::to_value(subject) {
            obj.extend(s);
        }
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        let mut line = serde_json::to_vec(&Value::Object(obj)).expect("json values serialize");
        line.push(b'\n');
        line
    }

    fn append(&self, line: &[u8]) -> Result<(), AuditError> {
        let err = |source| AuditError {
            path: self.path.clone(),
            err: source,
        };
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(err)?;
        // One write call per line: O_APPEND keeps lines from several daemons whole.
        f.write_all(line).map_err(err)?;
        f.flush().map_err(err)
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn appends_one_json_object_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("sub/audit.jsonl"));
        let ann = json!({"io.kubernetes.cri.sandbox-id": "sb1", "io.kubernetes.cri.container-name": "agent",
                         "io.kubernetes.cri.sandbox-name": "pod-a", "io.kubernetes.cri.sandbox-namespace": "team"});
        let s = Subject::from_annotations("k8s.io", "c1", ann.as_object());
        log.record("create", &s, json!({"changes": [{"rule": "env.secret-name", "target": "GITHUB_TOKEN", "action": "removed"}]})).unwrap();
        log.record("exit", &s, json!({"exit_status": 3})).unwrap();
        let text = std::fs::read_to_string(log.path()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "create");
        assert_eq!(lines[0]["sandbox_id"], "sb1");
        assert_eq!(lines[0]["pod"], "pod-a");
        assert_eq!(lines[0]["container"], "agent");
        assert_eq!(lines[1]["exit_status"], 3);
        assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn subject_without_annotations_uses_the_id() {
        let s = Subject::from_annotations("default", "c9", None);
        assert_eq!(s.sandbox_id, "c9");
        assert_eq!(s.pod, None);
    }

    #[test]
    fn unwritable_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        // a regular file where a directory is needed
        let log = AuditLog::new(file.join("audit.jsonl"));
        let e = log
            .record("create", &Subject::default(), json!({}))
            .unwrap_err();
        assert!(e.to_string().contains("cannot write audit log"), "{e}");
    }
}
