//! Admission: what both backends do before a container or an exec may run —
//! resolve the config, rewrite the spec under the policy, audit the decision.
//! Fail closed: an error here means nothing runs.

use std::path::Path;
use std::sync::Arc;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use serde_json::{Map, Value};

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
    /// origin) merged into the record.
    pub fn admit(
        &self,
        id: &str,
        bundle: &Path,
        options: Option<&Any>,
        mut runtime: Value,
    ) -> Result<Admitted, String> {
        if id.is_empty() || bundle.as_os_str().is_empty() {
            return Err("create needs an id and a bundle".into());
        }
        let cfg = Arc::new(self.config_for(options)?);
        if let Some(o) = runtime.as_object_mut() {
            o.insert("config".into(), Value::String(cfg.origin.clone()));
        }
        cfg.check_activity_backend()?;
        let audit = Arc::new(AuditLog::new(&cfg.audit.path));
        let enforced =
            enforce::enforce_bundle(&cfg.policy, &audit, bundle, &self.namespace, id, runtime)
                .map_err(|e| e.to_string())?;
        let annotations = enforced.annotations();
        let subject = Subject::from_annotations(&self.namespace, id, Some(&annotations));
        self.containers.insert(id, &subject);
        Ok(Admitted {
            id: id.to_string(),
            cfg,
            audit,
            subject,
            annotations,
            enforced,
        })
    }
}
