//! agentbox's node-side policy engine.
//!
//! [`apply`] rewrites a container's final OCI runtime spec (`config.json`) under a
//! [`Policy`]: it refuses host namespaces, a root other than the bundle's
//! `rootfs` and unmanaged host mounts (sensitive), removes runtime sockets
//! (through symlink chains), hooks, runtime-control annotations, host devices and
//! extra capabilities, restores `/proc` and `/sys` masking, and strips secrets
//! from the environment. Every change is recorded in a [`Report`] that names
//! rules, env var names and mount destinations, never a value.
//!
//! The spec is handled as a `serde_json::Value` throughout, so every field the
//! rules do not touch (vendor extensions, unknown fields) passes through as is.
//! See `docs/policy.md` for the rule reference.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod annotations;
mod caps;
mod config;
mod env;
mod glob;
mod host;
mod input;
mod linux;
mod mounts;
mod namespaces;
mod paths;
mod report;
mod resolve;
mod root;
mod sources;

pub use annotations::Phase;
pub use caps::ALLOWED_CAPS;
pub use config::ConfigError;
pub use env::{kept_name, secret_name, secret_value_kind};
pub use host::{FileId, HostFs, NoHostFs, RealHostFs};
pub use input::{InputError, MAX_DEPTH, MAX_INPUT_BYTES};
pub use linux::{MASKED_PATHS, READONLY_PATHS, SAFE_SYSCTLS};
pub use paths::{BUILTIN_MANAGED_ROOTS, BUILTIN_SOCKETS};
pub use report::{Change, Decision, PodRole, Report};
pub use resolve::MAX_SYMLINKS;

use annotations::SetupAllowed;
use glob::NameGlob;
use paths::PathPattern;
use report::{Recorder, Refusal};

/// A built-in policy profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Host bind mounts not managed by the kubelet/containerd are forced read-only.
    Standard,
    /// Such mounts refuse the container; host sockets and the service-account
    /// token (agent phase) are removed. The default.
    Sensitive,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Standard => "standard",
            Profile::Sensitive => "sensitive",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an unknown profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile {0:?} (expected \"standard\" or \"sensitive\")")]
pub struct ParseProfileError(String);

impl FromStr for Profile {
    type Err = ParseProfileError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(Profile::Standard),
            "sensitive" => Ok(Profile::Sensitive),
            other => Err(ParseProfileError(other.to_string())),
        }
    }
}

/// A mount agentbox always adds (read-only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Inject {
    pub source: String,
    pub destination: String,
    pub source_norm: String,
    pub dest_norm: String,
}

/// A compiled, validated policy: a profile plus the config's additions.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) profile: Profile,
    pub(crate) readonly: Vec<String>,
    pub(crate) inject: Vec<Inject>,
    pub(crate) sockets: Vec<PathPattern>,
    pub(crate) managed_roots: Vec<String>,
    pub(crate) env_strip: Vec<NameGlob>,
    pub(crate) env_allow: Vec<NameGlob>,
    pub(crate) setup_containers: SetupAllowed,
    pub(crate) kata_allow: Vec<String>,
    pub(crate) gvisor_allow: Vec<String>,
    pub(crate) sa_allow_agent: Option<bool>,
    pub(crate) secrets: Secrets,
}

/// The secret detector a policy uses: the built-in rules, or those plus the
/// config's `[env] secret_rules` (compiled once at load).
#[derive(Clone, Debug)]
pub(crate) enum Secrets {
    Builtin,
    Extended(std::sync::Arc<agentbox_secrets::Detector>),
}

impl Policy {
    /// A built-in profile with no config additions.
    pub fn from_profile(p: Profile) -> Policy {
        Policy {
            profile: p,
            readonly: Vec::new(),
            inject: Vec::new(),
            sockets: config::builtin_sockets(),
            managed_roots: BUILTIN_MANAGED_ROOTS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            env_strip: Vec::new(),
            env_allow: Vec::new(),
            setup_containers: match p {
                Profile::Standard => SetupAllowed::Any,
                Profile::Sensitive => SetupAllowed::Names(Vec::new()),
            },
            kata_allow: Vec::new(),
            gvisor_allow: Vec::new(),
            sa_allow_agent: None,
            secrets: Secrets::Builtin,
        }
    }

    /// Parse and validate a TOML config (see `docs/policy.md`). The shim's own
    /// top-level tables (`[runtime]`, `[audit]`, `[network]`, `[lifetime]`) are
    /// ignored; any other unknown key is an error naming it.
    pub fn from_toml_str(s: &str) -> Result<Policy, ConfigError> {
        config::from_toml_str(s)
    }

    /// [`Policy::from_toml_str`] on a file's contents.
    pub fn from_file(path: &Path) -> Result<Policy, ConfigError> {
        config::from_file(path)
    }

    /// The node profile (before any annotation tightening).
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The secret detector of this policy: the built-in rules plus the
    /// config's `[env] secret_rules`. The shim redacts audited argv with it.
    pub fn secrets(&self) -> &agentbox_secrets::Detector {
        match &self.secrets {
            Secrets::Builtin => agentbox_secrets::Detector::builtin(),
            Secrets::Extended(d) => d,
        }
    }
}

/// What the caller knows about where a spec comes from.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct ApplyContext<'a> {
    /// The bundle folder containerd created for the container (absolute).
    /// Without it only a relative `root.path` of `rootfs` is accepted.
    pub bundle: Option<&'a Path>,
    /// The host pid the runtime reported for the pod's sandbox container.
    /// containerd points an app container's shared namespaces at
    /// `/proc/<this pid>/ns/*`; under gVisor (ptrace) or Kata that process may
    /// itself live in host namespaces, and the runtime does not join those
    /// paths from the host, so they are exempt from the device/inode
    /// comparison (the lexical checks still apply).
    pub sandbox_pid: Option<u32>,
}

impl<'a> ApplyContext<'a> {
    /// A context naming the container's bundle folder.
    pub fn with_bundle(bundle: &'a Path) -> Self {
        ApplyContext {
            bundle: Some(bundle),
            sandbox_pid: None,
        }
    }

    /// The same context with the pod's sandbox pid.
    pub fn sandbox_pid(mut self, pid: Option<u32>) -> Self {
        self.sandbox_pid = pid;
        self
    }
}

/// Who the container is, for the report: profile, phase, kind, name.
struct Who {
    profile: Profile,
    phase: Phase,
    sandbox: bool,
    container: Option<String>,
}

impl Who {
    /// Before the annotations could be read: the node profile, agent phase.
    fn node(policy: &Policy, ann: Option<&Map<String, Value>>) -> Who {
        let (sandbox, container) = ann.map(annotations::identity).unwrap_or_default();
        Who {
            profile: policy.profile,
            phase: Phase::Agent,
            sandbox,
            container,
        }
    }

    fn of(eff: &annotations::Effective) -> Who {
        Who {
            profile: eff.profile,
            phase: eff.phase,
            sandbox: eff.sandbox,
            container: eff.container.clone(),
        }
    }

    fn report(self, reason: Option<String>, changes: Vec<Change>) -> Report {
        Report {
            decision: if reason.is_some() {
                "rejected"
            } else {
                "allowed"
            }
            .to_string(),
            profile: self.profile.to_string(),
            reason,
            phase: self.phase.as_str().to_string(),
            kind: if self.sandbox { "sandbox" } else { "container" }.to_string(),
            container: self.container,
            changes,
        }
    }
}

fn rejected(who: Who, mut rec: Recorder, r: Refusal) -> Decision {
    tracing::info!(rule = r.rule, target = %r.target, "policy refused the container");
    rec.push(r.rule, r.target, "rejected");
    Decision::Rejected {
        reason: r.reason.clone(),
        report: who.report(Some(r.reason), rec.changes),
    }
}

/// Rewrite a full OCI runtime spec (config.json bytes) with no bundle known
/// (see [`apply_with`]). Err only for malformed input.
pub fn apply(policy: &Policy, spec: &[u8], host: &dyn HostFs) -> Result<Decision, InputError> {
    apply_with(policy, spec, host, &ApplyContext::default())
}

/// Rewrite a full OCI runtime spec (config.json bytes) read from the bundle
/// in `ctx`. Err only for malformed input.
pub fn apply_with(
    policy: &Policy,
    spec: &[u8],
    host: &dyn HostFs,
    ctx: &ApplyContext<'_>,
) -> Result<Decision, InputError> {
    let v = input::parse(spec)?;
    input::validate_spec(&v)?;
    Ok(run_spec(policy, v, host, ctx))
}

/// Same as [`apply`] on an already-parsed value. A value that fails the input
/// checks (types, depth, NUL bytes) is rejected with a `malformed spec: …` reason.
pub fn apply_value(policy: &Policy, spec: Value, host: &dyn HostFs) -> Decision {
    apply_value_with(policy, spec, host, &ApplyContext::default())
}

/// Same as [`apply_with`] on an already-parsed value.
pub fn apply_value_with(
    policy: &Policy,
    spec: Value,
    host: &dyn HostFs,
    ctx: &ApplyContext<'_>,
) -> Decision {
    if let Err(e) = input::check_tree(&spec).and_then(|_| input::validate_spec(&spec)) {
        return rejected(
            Who::node(policy, None),
            Recorder::default(),
            Refusal::new("input.malformed", "spec", format!("malformed spec: {e}")),
        );
    }
    run_spec(policy, spec, host, ctx)
}

fn run_spec(policy: &Policy, mut spec: Value, host: &dyn HostFs, ctx: &ApplyContext) -> Decision {
    let mut rec = Recorder::default();
    let Value::Object(root) = &mut spec else {
        unreachable!("validate_spec checked the root is an object")
    };
    let eff =
        match annotations::effective(policy, root.get("annotations").and_then(Value::as_object)) {
            Ok(e) => e,
            Err(r) => {
                let ann = root.get("annotations").and_then(Value::as_object);
                return rejected(Who::node(policy, ann), rec, r);
            }
        };

    if let Err(r) = root::check(root, ctx.bundle) {
        return rejected(Who::of(&eff), rec, r);
    }
    if let Err(r) = namespaces::check(root, host, ctx.sandbox_pid) {
        return rejected(Who::of(&eff), rec, r);
    }
    if let Some(Value::Object(p)) = root.get("process") {
        if let Err(r) = namespaces::check_cwd(p) {
            return rejected(Who::of(&eff), rec, r);
        }
    }
    annotations::strip_hooks(root, &mut rec);
    if let Some(Value::Object(ann)) = root.get_mut("annotations") {
        annotations::strip_runtime_control(policy, ann, &mut rec);
    }
    if let Some(Value::Object(p)) = root.get_mut("process") {
        caps::apply(p, &mut rec);
    }
    if let Some(Value::Object(l)) = root.get_mut("linux") {
        linux::apply(l, &mut rec);
    }
    if let Err(r) = mounts::apply(policy, &eff, root, host, &mut rec) {
        return rejected(Who::of(&eff), rec, r);
    }
    if let Some(Value::Object(p)) = root.get_mut("process") {
        env::apply(policy, &eff, p, &mut rec);
    }
    Decision::Allowed {
        spec,
        report: Who::of(&eff).report(None, rec.changes),
    }
}

/// Rules for an Exec'd process (OCI `process` object JSON, as containerd passes in ExecProcessRequest.spec):
/// env secret stripping (unless the container is setup phase), capability reduction, noNewPrivileges,
/// cwd under /proc refused. `container_annotations` are the annotations of the container's (already rewritten) spec.
pub fn apply_process(
    policy: &Policy,
    process: &[u8],
    container_annotations: &Map<String, Value>,
) -> Result<Decision, InputError> {
    let mut v = input::parse(process)?;
    input::validate_process(&v, &"the process")?;
    let mut rec = Recorder::default();
    let eff = match annotations::effective(policy, Some(container_annotations)) {
        Ok(e) => e,
        Err(r) => {
            return Ok(rejected(
                Who::node(policy, Some(container_annotations)),
                rec,
                r,
            ))
        }
    };
    let Value::Object(p) = &mut v else {
        unreachable!("validate_process checked the process is an object")
    };
    if let Err(r) = namespaces::check_cwd(p) {
        return Ok(rejected(Who::of(&eff), rec, r));
    }
    caps::apply(p, &mut rec);
    env::apply(policy, &eff, p, &mut rec);
    Ok(Decision::Allowed {
        spec: v,
        report: Who::of(&eff).report(None, rec.changes),
    })
}

/// Rules for a resource update of a running container (the `LinuxResources`
/// JSON containerd passes in `UpdateTaskRequest.resources`): the same
/// device-cgroup rule as at create, so an update cannot re-open the devices
/// the policy closed. Err only for malformed input.
pub fn apply_resources(policy: &Policy, resources: &[u8]) -> Result<Decision, InputError> {
    let mut v = input::parse(resources)?;
    let mut rec = Recorder::default();
    let Value::Object(res) = &mut v else {
        return Ok(rejected(
            Who::node(policy, None),
            rec,
            Refusal::new(
                "input.malformed",
                "resources",
                "malformed resources: not a JSON object".to_string(),
            ),
        ));
    };
    linux::device_rules(res, "resources", &mut rec);
    Ok(Decision::Allowed {
        spec: v,
        report: Who::node(policy, None).report(None, rec.changes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_updates_cannot_reopen_devices() {
        let p = Policy::from_profile(Profile::Standard);
        let upd = br#"{"memory":{"limit":1000},"devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},{"allow":true,"access":"rwm"},{"allow":true,"type":"b","access":"rwm"}]}"#;
        let Decision::Allowed { spec, report } = apply_resources(&p, upd).unwrap() else {
            panic!("allowed")
        };
        let devs = spec["devices"].as_array().unwrap();
        assert_eq!(devs[1]["minor"], 3, "a specific rule stays");
        for i in [2, 3] {
            assert_eq!(
                devs[i],
                serde_json::json!({"allow": false, "access": "rwm"})
            );
        }
        assert_eq!(spec["memory"]["limit"], 1000);
        let targets: Vec<_> = report.changes.iter().map(|c| c.target.as_str()).collect();
        assert_eq!(targets, ["resources.devices[2]", "resources.devices[3]"]);
        assert!(matches!(
            apply_resources(&p, b"[1]").unwrap(),
            Decision::Rejected { .. }
        ));
        assert!(apply_resources(&p, b"{nope").is_err());
    }

    fn assert_send_sync<T: Send + Sync + Clone + std::fmt::Debug>() {}

    #[test]
    fn api_traits() {
        assert_send_sync::<Policy>();
        assert_send_sync::<Decision>();
        let _: &dyn HostFs = &RealHostFs;
        let _: &dyn HostFs = &NoHostFs;
    }

    #[test]
    fn profile_text() {
        assert_eq!("standard".parse::<Profile>().unwrap(), Profile::Standard);
        assert_eq!("sensitive".parse::<Profile>().unwrap(), Profile::Sensitive);
        assert!("Sensitive".parse::<Profile>().is_err());
        assert_eq!(Profile::Sensitive.to_string(), "sensitive");
        assert_eq!(
            serde_json::to_string(&Profile::Standard).unwrap(),
            "\"standard\""
        );
        let p: Profile = serde_json::from_str("\"sensitive\"").unwrap();
        assert_eq!(p, Profile::Sensitive);
        assert_eq!(
            Policy::from_profile(Profile::Standard).profile(),
            Profile::Standard
        );
    }

    #[test]
    fn apply_value_refuses_malformed() {
        let d = apply_value(
            &Policy::from_profile(Profile::Sensitive),
            serde_json::json!({"process": {"env": "x"}}),
            &NoHostFs,
        );
        match d {
            Decision::Rejected { reason, report } => {
                assert_eq!(
                    reason,
                    "malformed spec: /process/env must be an array of strings"
                );
                assert_eq!(report.changes[0].rule, "input.malformed");
            }
            other => panic!("{other:?}"),
        }
        let mut deep = serde_json::json!(1);
        for _ in 0..200 {
            deep = serde_json::json!([deep]);
        }
        assert!(
            !apply_value(&Policy::from_profile(Profile::Standard), deep, &NoHostFs).is_allowed()
        );
    }
}
