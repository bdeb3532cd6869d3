//! Applying the policy where containerd hands the shim a container: the
//! bundle's `config.json` before the runtime sees it (Create), and the process
//! spec of an Exec. Fail closed: any error here means the container or process
//! does not run.

use std::io::Write;
use std::path::Path;

use agentbox_policy::{ApplyContext, Decision, Policy, RealHostFs, Report};
use serde_json::{json, Map, Value};

use crate::audit::{AuditLog, Subject};

/// Largest `config.json` agentbox reads (the policy engine has its own limit too).
const MAX_SPEC_BYTES: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    #[error("agentbox cannot read the container spec {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("agentbox cannot write the rewritten container spec {path}: {err}")]
    Write { path: String, err: std::io::Error },
    #[error("agentbox refused the container spec: {0}")]
    Input(String),
    #[error("agentbox policy refused container {container}: {reason}")]
    Rejected { container: String, reason: String },
    #[error("agentbox policy refused exec {exec} in container {container}: {reason}")]
    ExecRejected {
        container: String,
        exec: String,
        reason: String,
    },
    #[error("agentbox refused to run: {0}")]
    Audit(#[from] crate::audit::AuditError),
}

/// The result of rewriting a bundle.
#[derive(Debug, Clone)]
pub struct Enforced {
    /// The spec as written back to the bundle.
    pub spec: Value,
    pub report: Report,
}

impl Enforced {
    pub fn annotations(&self) -> Map<String, Value> {
        self.spec
            .get("annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    pub fn terminal(&self) -> bool {
        self.spec
            .pointer("/process/terminal")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

fn report_json(report: &Report) -> Value {
    serde_json::to_value(report).unwrap_or_else(|_| json!({}))
}

/// Rewrite `<bundle>/config.json` under `policy`, record the decision, and
/// return the rewritten spec. The audit record is written before the spec so
/// nothing runs unaudited.
pub fn enforce_bundle(
    policy: &Policy,
    audit: &AuditLog,
    bundle: &Path,
    namespace: &str,
    id: &str,
    extra: Value,
) -> Result<Enforced, EnforceError> {
    let path = bundle.join("config.json");
    let shown = path.display().to_string();
    let read_err = |source| EnforceError::Read {
        path: shown.clone(),
        err: source,
    };
    let meta = std::fs::metadata(&path).map_err(read_err)?;
    if meta.len() > MAX_SPEC_BYTES {
        let subject = Subject::from_annotations(namespace, id, None);
        let reason = format!("config.json is larger than {MAX_SPEC_BYTES} bytes");
        audit.record("reject", &subject, json!({"reason": reason}))?;
        return Err(EnforceError::Input(reason));
    }
    let bytes = std::fs::read(&path).map_err(read_err)?;
    let raw_annotations = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("annotations").and_then(Value::as_object).cloned());
    let subject = Subject::from_annotations(namespace, id, raw_annotations.as_ref());

    // The bundle lets the policy check that root.path is the bundle's rootfs;
    // the sandbox pid, that an app container's /proc/<pid>/ns/* are the pod's.
    let ctx = ApplyContext::with_bundle(bundle)
        .sandbox_pid(sandbox_pid(bundle, raw_annotations.as_ref()));
    let decision = match agentbox_policy::apply_with(policy, &bytes, &RealHostFs, &ctx) {
        Ok(d) => d,
        Err(e) => {
            let reason = e.to_string();
            audit.record("reject", &subject, json!({"reason": reason}))?;
            return Err(EnforceError::Input(reason));
        }
    };
    match decision {
        Decision::Rejected { reason, report } => {
            let mut fields = json!({"reason": reason, "report": report_json(&report)});
            merge(&mut fields, &extra);
            audit.record("reject", &subject, fields)?;
            tracing::warn!(container = id, %reason, "policy refused container");
            Err(EnforceError::Rejected {
                container: id.to_string(),
                reason,
            })
        }
        Decision::Allowed { spec, report } => {
            let mut fields = json!({
                "profile": report.profile,
                "phase": report.phase,
                "changes": report_json(&report).get("changes").cloned().unwrap_or(json!([])),
            });
            merge(&mut fields, &extra);
            audit.record("create", &subject, fields)?;
            write_atomic(&path, &spec).map_err(|source| EnforceError::Write {
                path: shown.clone(),
                err: source,
            })?;
            tracing::info!(container = id, changes = report.changes.len(), phase = %report.phase, "policy applied");
            Ok(Enforced { spec, report })
        }
    }
}

/// For an app container of a CRI pod: the host pid the runtime reported for
/// the pod's sandbox container, from `init.pid` in the sandbox's bundle (a
/// sibling of this one; runsc's `--pid-file` and the runc shim write it).
/// containerd derives the app container's shared namespace paths from it.
fn sandbox_pid(bundle: &Path, annotations: Option<&Map<String, Value>>) -> Option<u32> {
    let ann = annotations?;
    if ann.get("io.kubernetes.cri.container-type")?.as_str()? != "container" {
        return None;
    }
    let sid = ann.get("io.kubernetes.cri.sandbox-id")?.as_str()?;
    if sid.is_empty() || sid == "." || sid == ".." || sid.contains('/') {
        return None;
    }
    let file = bundle.parent()?.join(sid).join("init.pid");
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn merge(into: &mut Value, extra: &Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), extra.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
}

/// Write a JSON file atomically (temp file + rename in the same folder): a
/// reader sees the old spec or the new one, never half of one. No fsync: a
/// bundle does not outlive a reboot.
pub fn write_atomic(path: &Path, value: &Value) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    let data = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    tmp.1.write_all(&data)?;
    tmp.1.flush()?;
    std::fs::rename(&tmp.0, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt;
    for i in 0..100u32 {
        let p = dir.join(format!(".agentbox-{}-{i}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&p)
        {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot create a temporary file"))
}

/// The process of an Exec after the policy: its JSON, and what to audit.
#[derive(Debug, Clone)]
pub struct EnforcedExec {
    pub process: Value,
    pub report: Report,
}

/// Apply the process rules to an Exec's process spec and audit it: argv (with
/// secret-looking arguments redacted) and the names of its environment.
pub fn enforce_exec(
    policy: &Policy,
    audit: &AuditLog,
    subject: &Subject,
    container_annotations: &Map<String, Value>,
    exec_id: &str,
    process: &[u8],
) -> Result<EnforcedExec, EnforceError> {
    let decision = match agentbox_policy::apply_process(policy, process, container_annotations) {
        Ok(d) => d,
        Err(e) => {
            let reason = e.to_string();
            audit.record(
                "reject",
                subject,
                json!({"exec_id": exec_id, "reason": reason}),
            )?;
            return Err(EnforceError::Input(reason));
        }
    };
    match decision {
        Decision::Rejected { reason, report } => {
            audit.record(
                "reject",
                subject,
                json!({"exec_id": exec_id, "reason": reason, "report": report_json(&report)}),
            )?;
            Err(EnforceError::ExecRejected {
                container: subject.container_id.clone(),
                exec: exec_id.to_string(),
                reason,
            })
        }
        Decision::Allowed { spec, report } => {
            let argv: Vec<String> = spec
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(redact_arg).collect())
                .unwrap_or_default();
            let env_names: Vec<String> = spec
                .get("env")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(|e| e.split('=').next().unwrap_or_default().to_string())
                        .collect()
                })
                .unwrap_or_default();
            audit.record(
                "exec",
                subject,
                json!({
                    "exec_id": exec_id,
                    "argv": argv,
                    "env": env_names,
                    "phase": report.phase,
                    "changes": report_json(&report).get("changes").cloned().unwrap_or(json!([])),
                }),
            )?;
            Ok(EnforcedExec {
                process: spec,
                report,
            })
        }
    }
}

fn looks_like_secret(v: &str) -> bool {
    agentbox_policy::secret_value_kind(v).is_some()
}

/// An exec argument as it may appear in the audit log: a secret-looking
/// argument (or the value part of `--flag=value`) is replaced.
pub fn redact_arg(arg: &str) -> String {
    if let Some((k, v)) = arg.split_once('=') {
        if !k.contains(char::is_whitespace)
            && (looks_like_secret(v) || agentbox_policy::secret_name(k.trim_start_matches('-')))
        {
            return format!("{k}=[redacted]");
        }
    }
    if looks_like_secret(arg) {
        return "[redacted]".to_string();
    }
    // a secret embedded in a shell command line
    if arg
        .split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .any(|w| {
            looks_like_secret(w) || w.split_once('=').is_some_and(|(_, v)| looks_like_secret(v))
        })
    {
        return "[redacted]".to_string();
    }
    arg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_pid_from_the_sibling_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let app = tmp.path().join("app");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::create_dir_all(tmp.path().join("sb")).unwrap();
        std::fs::write(tmp.path().join("sb/init.pid"), "4242\n").unwrap();
        let ann = |ty: &str, sid: &str| {
            json!({"io.kubernetes.cri.container-type": ty, "io.kubernetes.cri.sandbox-id": sid})
                .as_object()
                .unwrap()
                .clone()
        };
        assert_eq!(sandbox_pid(&app, Some(&ann("container", "sb"))), Some(4242));
        assert_eq!(sandbox_pid(&app, Some(&ann("sandbox", "sb"))), None);
        assert_eq!(sandbox_pid(&app, Some(&ann("container", "../sb"))), None);
        assert_eq!(sandbox_pid(&app, Some(&ann("container", "other"))), None);
        assert_eq!(sandbox_pid(&app, None), None);
    }

    #[test]
    fn redacts_secret_arguments() {
        let tok = format!("ghp_{}", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8");
        assert_eq!(redact_arg(&tok), "[redacted]");
        assert_eq!(redact_arg(&format!("--token={tok}")), "--token=[redacted]");
        assert_eq!(redact_arg("--password=hunter2"), "--password=[redacted]");
        let shell = format!("curl -H 'Authorization: token {tok}' https://example.invalid");
        assert_eq!(redact_arg(&shell), "[redacted]");
        assert_eq!(redact_arg("ls"), "ls");
        assert_eq!(redact_arg("--color=auto"), "--color=auto");
    }
}
