//! The decision and its report. A report names rules, env var names and mount
//! destinations; it never carries a value.

use serde::{Deserialize, Serialize};

/// One rewrite (or the refusal) made by a rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Stable rule id, e.g. `env.secret-name`.
    pub rule: String,
    /// What it applied to: env var name, mount destination, capability, path…
    pub target: String,
    /// `removed`, `forced-readonly`, `injected`, `replaced`, `set`, `rejected`.
    pub action: String,
    /// For the `env.secret-*` rules: the secret-detector rule that matched
    /// (`name-token`, `github-pat`, `generic-secret`…), never the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The decision report, serialised by `--report` and the shim's audit log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Report {
    /// `allowed` or `rejected`.
    pub decision: String,
    /// The effective profile (after `agentbox.dev/profile` tightening).
    pub profile: String,
    /// Why the container was refused.
    pub reason: Option<String>,
    /// `agent` or `setup`.
    pub phase: String,
    /// `sandbox` for the pod's sandbox (pause) container
    /// (`io.kubernetes.cri.container-type: sandbox`), `container` otherwise.
    #[serde(default = "container_kind")]
    pub kind: String,
    /// The container's name (`io.kubernetes.cri.container-name`) when
    /// containerd gave one.
    #[serde(default)]
    pub container: Option<String>,
    /// Every change, in the order the rules ran. On a refusal: the changes made
    /// before it and a last entry with action `rejected` naming the rule.
    pub changes: Vec<Change>,
}

fn container_kind() -> String {
    "container".to_string()
}

/// Where a container stands in its pod's setup → agent ordering, which the
/// shim enforces: every [`PodRole::Setup`] container must have exited before
/// any [`PodRole::Agent`] container of the pod starts, and no setup container
/// may be created once an agent container has started. The sandbox container
/// takes no part. The OCI spec does not say whether a container is a
/// Kubernetes init container or a sidecar (`restartPolicy: Always`): a setup
/// container that keeps running simply keeps the agent containers from
/// starting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodRole {
    Sandbox,
    Setup,
    Agent,
}

impl Report {
    /// This container's role in the setup → agent ordering.
    pub fn pod_role(&self) -> PodRole {
        if self.kind == "sandbox" {
            PodRole::Sandbox
        } else if self.phase == "setup" {
            PodRole::Setup
        } else {
            PodRole::Agent
        }
    }
}

/// The outcome of applying a policy.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Run this (rewritten) spec or process.
    Allowed {
        spec: serde_json::Value,
        report: Report,
    },
    /// Do not run the container or process.
    Rejected { reason: String, report: Report },
}

impl Decision {
    pub fn report(&self) -> &Report {
        match self {
            Decision::Allowed { report, .. } | Decision::Rejected { report, .. } => report,
        }
    }

    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// The rewritten spec when allowed.
    pub fn spec(&self) -> Option<&serde_json::Value> {
        match self {
            Decision::Allowed { spec, .. } => Some(spec),
            Decision::Rejected { .. } => None,
        }
    }
}

/// Collects changes while the rules run.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    pub changes: Vec<Change>,
}

impl Recorder {
    pub fn push(&mut self, rule: &str, target: impl Into<String>, action: &str) {
        self.push_detail(rule, target, action, None);
    }

    pub fn push_detail(
        &mut self,
        rule: &str,
        target: impl Into<String>,
        action: &str,
        detail: Option<&str>,
    ) {
        let target = target.into();
        tracing::debug!(rule, target = %target, action, detail, "policy change");
        self.changes.push(Change {
            rule: rule.to_string(),
            target,
            action: action.to_string(),
            detail: detail.map(str::to_string),
        });
    }
}

/// A refusal raised by a rule: its id, the target, and the sentence.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub rule: &'static str,
    pub target: String,
    pub reason: String,
}

impl Refusal {
    pub fn new(rule: &'static str, target: impl Into<String>, reason: impl Into<String>) -> Self {
        Refusal {
            rule,
            target: target.into(),
            reason: reason.into(),
        }
    }
}
