//! Admission: what both backends do before a container or an exec may run —
//! resolve the config, rewrite the spec under the policy, audit the decision.
//! Fail closed: an error here means nothing runs.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use serde_json::{json, Map, Value};

use super::Pod;
use crate::audit::{AuditLog, Subject};
use crate::config::Config;
use crate::enforce::{self, EnforceError, Enforced};

/// A container the policy admitted: its config, audit log, identity and
/// rewritten spec. Both backends keep one per container.
#[derive(Debug)]
pub struct Admitted {
    pub id: String,
    pub cfg: Arc<Config>,
    pub audit: Arc<AuditLog>,
    pub subject: Subject,
    /// The annotations of the rewritten spec.
    pub annotations: Map<String, Value>,
    pub enforced: Enforced,
}

impl Admitted {
    /// True for a CRI pod sandbox (pause) container.
    pub fn is_cri_sandbox(&self) -> bool {
        super::is_cri_sandbox(&self.annotations)
    }

    /// Apply the process rules to an Exec's process spec and audit it; the
    /// rewritten process JSON.
    pub fn admit_exec(&self, exec_id: &str, process: &[u8]) -> Result<Value, EnforceError> {
        enforce::enforce_exec(
            &self.cfg.policy,
            &self.audit,
            &self.subject,
            &self.annotations,
            exec_id,
            process,
        )
        .map(|e| e.process)
    }
}

impl Pod {
    /// Admit a container: load its config (the request's runtime options, then
    /// `start`'s, then the default path), rewrite `<bundle>/config.json` under
    /// the policy and audit the decision with `runtime` (and the config's
    /// origin) merged into the record. A Create that restores a
    /// `checkpoint` is refused unless the node's config approves restores
    /// (`[runtime] allow_restore`): the policy rewrote the spec, but never saw
    /// the process state inside the checkpoint.
    ///
    /// Everything that touches the host (the config file, the bundle, the
    /// mount sources the policy resolves) runs off the daemon's one thread,
    /// bounded by `host_timeout`: a hung filesystem fails this Create closed
    /// and never stalls the pod's other containers.
    pub async fn admit(
        &self,
        id: &str,
        bundle: &Path,
        options: Option<&Any>,
        checkpoint: &str,
        mut runtime: Value,
    ) -> Result<Admitted, String> {
        if id.is_empty() || bundle.as_os_str().is_empty() {
            return Err("create needs an id and a bundle".into());
        }
        let cancelled = Arc::new(AtomicBool::new(false));
        let job = {
            let (id, bundle, options) = (id.to_string(), bundle.to_path_buf(), options.cloned());
            let (namespace, default) = (self.namespace.clone(), self.default_config.clone());
            let host = self.host.clone();
            let cancelled = cancelled.clone();
            let checkpoint = checkpoint.to_string();
            tokio::task::spawn_blocking(move || {
                let cfg = Arc::new(super::resolve_config(options.as_ref(), default.as_deref())?);
                if !checkpoint.is_empty() && !cfg.runtime.allow_restore {
                    let audit = AuditLog::new(&cfg.audit.path);
                    let reason = format!(
                        "agentbox refused to restore container {id} from a checkpoint: the policy never saw the state inside it (allow it with [runtime] allow_restore)"
                    );
                    let subject = Subject::from_annotations(&namespace, &id, None);
                    audit
                        .record(
                            "reject",
                            &subject,
                            serde_json::json!({"reason": reason, "checkpoint": checkpoint}),
                        )
                        .map_err(|e| e.to_string())?;
                    return Err(reason);
                }
                if let Some(o) = runtime.as_object_mut() {
                    o.insert("config".into(), Value::String(cfg.origin.clone()));
                }
                cfg.check_activity_backend()?;
                let audit = Arc::new(AuditLog::new(&cfg.audit.path));
                let proceed = || !cancelled.load(Ordering::SeqCst);
                let enforced = enforce::enforce_bundle(
                    &cfg.policy,
                    &audit,
                    &bundle,
                    &namespace,
                    &id,
                    runtime,
                    host.as_ref(),
                    &proceed,
                )
                .map_err(|e| e.to_string())?;
                Ok::<_, String>((cfg, audit, enforced))
            })
        };
        let (cfg, audit, enforced) = match tokio::time::timeout(self.host_timeout, job).await {
            Ok(Ok(r)) => r?,
            Ok(Err(e)) => return Err(format!("agentbox admission of {id} failed: {e}")),
            Err(_) => {
                cancelled.store(true, Ordering::SeqCst);
                tracing::error!(container = id, "admission timed out on the host");
                return Err(format!(
                    "agentbox refused container {id}: reading the host (config, bundle or mount sources) took longer than {}s; a hung filesystem?",
                    self.host_timeout.as_secs()
                ));
            }
        };
        let annotations = enforced.annotations();
        let subject = Subject::from_annotations(&self.namespace, id, Some(&annotations));
        let mut admitted = Admitted {
            id: id.to_string(),
            cfg,
            audit,
            subject,
            annotations,
            enforced,
        };
        // the phases in time, then the pod's network: fail closed
        let kind = admitted.enforced.report.pod_role();
        let name = admitted
            .subject
            .container
            .clone()
            .unwrap_or_else(|| id.to_string());
        let refuse = |a: &Admitted, reason: String| {
            let _ = a
                .audit
                .record("reject", &a.subject, json!({"reason": reason}));
            tracing::warn!(container = %a.id, %reason, "create refused");
            reason
        };
        let first_agent = self
            .phases
            .on_create(id, kind, &name)
            .map_err(|r| refuse(&admitted, r))?;
        if let Err(e) = self.egress_on_admit(&mut admitted, bundle, kind, first_agent) {
            self.phases.on_delete(id);
            return Err(refuse(&admitted, e));
        }
        // the pod's lifetime counts from its first admitted app container
        // (not the sandbox: image pulls after it are not the agent's time)
        if !admitted.is_cri_sandbox() {
            let _ = self.started.set(tokio::time::Instant::now());
        }
        self.containers.insert(id, &admitted.subject);
        Ok(admitted)
    }
}
