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

/// The node policy as tightened by a container's annotations.
#[derive(Debug)]
pub(crate) struct Effective {
    pub profile: Profile,
    pub phase: Phase,
    /// Extra read-only destinations (normalised).
    pub readonly: Vec<String>,
    /// Extra env name patterns; they apply in every phase and beat `env.allow`.
    pub strip: Vec<NameGlob>,
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
        readonly: Vec::new(),
        strip: Vec::new(),
    };
    let Some(ann) = annotations else {
        return Ok(eff);
    };
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
            ANN_SETUP => {
                if !policy.setup_containers {
                    return Err(Refusal::new(
                        RULE,
                        k.as_str(),
                        format!(
                            "annotation {k} would loosen the node policy (setup phases are turned off)"
                        ),
                    ));
                }
                setup_names = Some(v);
            }
            _ => {
                return Err(Refusal::new(
                    RULE,
                    k.as_str(),
                    format!("unknown agentbox annotation {k}"),
                ))
            }
        }
    }
    if let (Some(names), Some(Value::String(me))) = (setup_names, ann.get(CRI_CONTAINER_NAME)) {
        if list(names).any(|n| n == me) {
            eff.phase = Phase::Setup;
        }
    }
    Ok(eff)
}

fn is_runtime_control(policy: &Policy, key: &str) -> bool {
    if key.starts_with("dev.gvisor.flag.") || key.starts_with("dev.gvisor.internal.") {
        return true;
    }
    if key.starts_with("io.katacontainers.config.") {
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
