//! Applying the policy where containerd hands the shim a container: the
//! bundle's `config.json` before the runtime sees it (Create), and the process
//! spec of an Exec. Fail closed: any error here means the container or process
//! does not run.

use std::io::Write;
use std::path::Path;

use agentbox_policy::{ApplyContext, Decision, HostFs, Policy, Report};
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
/// nothing runs unaudited. `host` answers the policy's questions about
/// mount sources; `proceed` is asked once they are answered, before anything
/// is recorded or written (false: the caller gave up waiting).
#[allow(clippy::too_many_arguments)]
pub fn enforce_bundle(
    policy: &Policy,
    audit: &AuditLog,
    bundle: &Path,
    namespace: &str,
    id: &str,
    extra: Value,
    host: &dyn HostFs,
    proceed: &dyn Fn() -> bool,
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
    let decision = agentbox_policy::apply_with(policy, &bytes, host, &ctx);
    if !proceed() {
        return Err(EnforceError::Input(
            "the host answered after agentbox gave up waiting".into(),
        ));
    }
    let decision = match decision {
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
            if let Err(source) = write_atomic(&path, &spec) {
                let e = EnforceError::Write {
                    path: shown.clone(),
                    err: source,
                };
                // the create record above is followed by why nothing ran
                let _ = audit.record("reject", &subject, json!({"reason": e.to_string()}));
                return Err(e);
            }
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
            let args: Vec<&str> = spec
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // one redactor for every argv agentbox records (agentbox-secrets,
            // with the node's [env] secret_rules)
            let argv = policy.secrets().redact_argv(&args);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn audited_argv(args: &[&str]) -> (Vec<String>, String) {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::new(tmp.path().join("audit.jsonl"));
        let policy = Policy::from_profile(agentbox_policy::Profile::Sensitive);
        let subject = Subject::from_annotations("default", "c1", None);
        let process = json!({"args": args, "cwd": "/", "env": ["PATH=/bin"]});
        enforce_exec(
            &policy,
            &log,
            &subject,
            &Map::new(),
            "e1",
            &serde_json::to_vec(&process).unwrap(),
        )
        .unwrap();
        let text = std::fs::read_to_string(tmp.path().join("audit.jsonl")).unwrap();
        let rec: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        let argv = rec["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        (argv, text)
    }

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

    /// The command lines that leaked before (issue 7, item 6): the audit
    /// log has neither the planted value nor a changed ordinary argument.
    #[test]
    fn exec_argv_is_redacted_in_the_audit_log() {
        let pw = "hunter2hunter2";
        let tok = format!("ghp_{}", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8");
        let cases: Vec<Vec<String>> = vec![
            vec![
                "sh".into(),
                "-c".into(),
                format!("export DB_PASSWORD={pw} && ./run"),
            ],
            vec!["mysql".into(), "--password".into(), pw.into(), "db".into()],
            vec![
                "mysql".into(),
                "-uroot".into(),
                format!("-p{pw}"),
                "db".into(),
            ],
            vec![
                "curl".into(),
                "-H".into(),
                format!("Authorization: Bearer {pw}"),
                "https://x.example".into(),
            ],
            vec![
                "curl".into(),
                "-u".into(),
                format!("user:{pw}"),
                "https://x.example".into(),
            ],
            vec![
                "git".into(),
                "clone".into(),
                format!("https://user:{pw}@git.example/x.git"),
            ],
            vec!["echo".into(), tok.clone()],
        ];
        for c in cases {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            let (argv, text) = audited_argv(&args);
            assert_eq!(argv.len(), args.len());
            assert!(
                !text.contains(pw) && !text.contains(&tok),
                "leaked: {argv:?}"
            );
            assert!(argv.iter().any(|a| a.contains("[redacted]")), "{argv:?}");
            assert_eq!(argv[0], args[0]);
        }
        let (argv, _) = audited_argv(&["ls", "-la", "--color=auto", "/tmp"]);
        assert_eq!(argv, ["ls", "-la", "--color=auto", "/tmp"]);
    }
}
