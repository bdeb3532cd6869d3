//! Annotations: `agentbox.dev/*` pod annotations that tighten the policy and name
//! setup-phase containers; removal of runtime-control annotations and OCI hooks.

use serde_json::{Map, Value};

use crate::glob::NameGlob;
use crate::paths::normalize;
use crate::report::{Recorder, Refusal};
use crate::{Policy, Profile};

pub const PREFIX: &str = "agentbox.dev/";
pub const ANN_PROFILE: &str = "agentbox.dev/profile";
pub const ANN_READONLY: &str = "agentbox.dev/readonly-mounts";
pub const ANN_STRIP_ENV: &str = "agentbox.dev/strip-env";
pub const ANN_SETUP: &str = "agentbox.dev/setup-containers";
/// The pod's network mode; may only tighten the node's `[network]` (the shim
/// enforces that, `agentbox_netpolicy` decides it).
pub const ANN_NETWORK: &str = "agentbox.dev/network";
pub const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// Annotation families the sandbox runtimes act on: removed unless allowlisted.
pub const GVISOR_PREFIX: &str = "dev.gvisor.";
pub const KATA_PREFIX: &str = "io.katacontainers.";

const RULE: &str = "annotations.agentbox";

/// The phase of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Agent,
    Setup,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Agent => "agent",
            Phase::Setup => "setup",
        }
    }
}

/// Which containers may be setup phase (`[phases] setup_containers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SetupAllowed {
    /// Any container the pod names (`["*"]`; the standard profile's default,
    /// never honoured when the effective profile is sensitive).
    Any,
    /// Only these container names (empty: none; the sensitive default).
    Names(Vec<String>),
}

impl SetupAllowed {
    fn allows(&self, name: &str, profile: Profile) -> bool {
        match self {
            SetupAllowed::Any => profile == Profile::Standard,
            SetupAllowed::Names(n) => n.iter().any(|x| x == name),
        }
    }

    fn describe(&self) -> String {
        match self {
            SetupAllowed::Any => "any name, but not under the sensitive profile".to_string(),
            SetupAllowed::Names(n) if n.is_empty() => "none".to_string(),
            SetupAllowed::Names(n) => n.join(", "),
        }
    }
}

/// The node policy as tightened by a container's annotations.
#[derive(Debug)]
pub(crate) struct Effective {
    pub profile: Profile,
    pub phase: Phase,
    /// `io.kubernetes.cri.container-type` is `sandbox`.
    pub sandbox: bool,
    /// `io.kubernetes.cri.container-name`.
    pub container: Option<String>,
    /// Extra read-only destinations (normalised).
    pub readonly: Vec<String>,
    /// Extra env name patterns; they apply in every phase and beat `env.allow`.
    pub strip: Vec<NameGlob>,
}

/// Whether the spec is the pod's sandbox container, and the container's name,
/// from containerd's CRI annotations.
pub(crate) fn identity(ann: &Map<String, Value>) -> (bool, Option<String>) {
    (
        ann.get(CRI_CONTAINER_TYPE).and_then(Value::as_str) == Some("sandbox"),
        ann.get(CRI_CONTAINER_NAME)
            .and_then(Value::as_str)
            .map(str::to_string),
    )
}

fn list(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Read the `agentbox.dev/` annotations. Unknown keys, bad values and anything that
/// would loosen the node policy are refused, naming the annotation.
pub(crate) fn effective(
    policy: &Policy,
    annotations: Option<&Map<String, Value>>,
) -> Result<Effective, Refusal> {
    let mut eff = Effective {
        profile: policy.profile,
        phase: Phase::Agent,
        sandbox: false,
        container: None,
        readonly: Vec::new(),
        strip: Vec::new(),
    };
    let Some(ann) = annotations else {
        return Ok(eff);
    };
    (eff.sandbox, eff.container) = identity(ann);
    let mut setup_names: Option<&str> = None;
    for (k, v) in ann {
        if !k.starts_with(PREFIX) {
            continue;
        }
        let v = v.as_str().unwrap_or("");
        match k.as_str() {
            ANN_PROFILE => match v.trim() {
                "sensitive" => eff.profile = Profile::Sensitive,
                "standard" if policy.profile == Profile::Standard => {}
                "standard" => {
                    return Err(Refusal::new(
                        RULE,
                        k.as_str(),
                        format!(
                        "annotation {k}=standard would loosen the node policy (profile sensitive)"
                    ),
                    ))
                }
                _ => {
                    return Err(Refusal::new(
                        RULE,
                        k.as_str(),
                        format!("annotation {k} must be \"standard\" or \"sensitive\""),
                    ))
                }
            },
            ANN_READONLY => {
                for p in list(v) {
                    match normalize(p) {
                        Some(n) => eff.readonly.push(n),
                        None => {
                            return Err(Refusal::new(
                                RULE,
                                k.as_str(),
                                format!("annotation {k} lists a path that is not absolute"),
                            ))
                        }
                    }
                }
            }
            ANN_STRIP_ENV => {
                for p in list(v) {
                    if p.contains('=') {
                        return Err(Refusal::new(
                            RULE,
                            k.as_str(),
                            format!("annotation {k} lists something that is not a name pattern"),
                        ));
                    }
                    eff.strip.push(NameGlob::new(p));
                }
            }
            ANN_NETWORK => {
                if !matches!(v.trim(), "offline" | "allowlist" | "open") {
                    return Err(Refusal::new(
                        RULE,
                        k.as_str(),
                        format!("annotation {k} must be \"offline\", \"allowlist\" or \"open\""),
                    ));
                }
            }
            ANN_SETUP => setup_names = Some(v),
            _ => {
                return Err(Refusal::new(
                    RULE,
                    k.as_str(),
                    format!("unknown agentbox annotation {k}"),
                ))
            }
        }
    }
    // Every name must be one the node allows (checked after the loop: the
    // profile annotation may have tightened the profile).
    if let Some(names) = setup_names {
        if let Some(bad) = list(names).find(|n| !policy.setup_containers.allows(n, eff.profile)) {
            return Err(Refusal::new(
                RULE,
                ANN_SETUP,
                format!(
                    "annotation {ANN_SETUP} names {bad:?}, which would loosen the node policy ([phases] setup_containers allows: {})",
                    policy.setup_containers.describe()
                ),
            ));
        }
        if let Some(me) = &eff.container {
            if !eff.sandbox && list(names).any(|n| n == me) {
                eff.phase = Phase::Setup;
            }
        }
    }
    Ok(eff)
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// A `dev.gvisor.*` or `io.katacontainers.*` key (any ASCII case) that the
/// node config does not list exactly.
fn is_runtime_control(policy: &Policy, key: &str) -> bool {
    if starts_with_ci(key, GVISOR_PREFIX) {
        return !policy.gvisor_allow.iter().any(|a| a == key);
    }
    if starts_with_ci(key, KATA_PREFIX) {
        return !policy.kata_allow.iter().any(|a| a == key);
    }
    false
}

/// Remove runtime-control annotations (`annotations.runtime-control`).
pub(crate) fn strip_runtime_control(
    policy: &Policy,
    ann: &mut Map<String, Value>,
    rec: &mut Recorder,
) {
    if !ann.keys().any(|k| is_runtime_control(policy, k)) {
        return;
    }
    ann.retain(|k, _| {
        if is_runtime_control(policy, k) {
            rec.push("annotations.runtime-control", k.as_str(), "removed");
            false
        } else {
            true
        }
    });
}

/// Remove OCI hooks: they run on the host (`hooks.removed`, one entry per hook).
pub(crate) fn strip_hooks(root: &mut Map<String, Value>, rec: &mut Recorder) {
    let Some(Value::Object(hooks)) = root.get("hooks") else {
        return;
    };
    let any = hooks.values().any(|l| match l {
        Value::Array(a) => !a.is_empty(),
        Value::Null => false,
        _ => true,
    });
    if !any {
        return;
    }
    for (kind, list) in hooks {
        match list {
            Value::Array(a) => {
                for (i, h) in a.iter().enumerate() {
                    let path = h.get("path").and_then(Value::as_str).unwrap_or("?");
                    rec.push("hooks.removed", format!("{kind}[{i}] {path}"), "removed");
                }
            }
            Value::Null => {}
            _ => rec.push("hooks.removed", kind.as_str(), "removed"),
        }
    }
    root.remove("hooks");
}
