//! Issue 13: behaviours docs/policy.md promises, each with a test that fails
//! when the behaviour is broken (checked by breaking it on purpose and by
//! `make mutants`): the host-socket name fallback, `[serviceaccount]
//! allow_agent`, read-only "at or under" a destination, `agentbox.dev/strip-env`
//! beating `[env] allow`, and setup containers not exempt from `[env] strip`.

mod common;

use agentbox_policy::{apply_value, NoHostFs, Policy};
use common::*;
use serde_json::{json, Value};

const SA: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn policy(toml: &str) -> Policy {
    Policy::from_toml_str(toml).expect("a valid config")
}

fn env_names(spec: &Value) -> Vec<String> {
    spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().split('=').next().unwrap().to_string())
        .collect()
}

fn with_env(name: &str, pairs: &[(&str, &str)], env: &[&str]) -> Value {
    let mut s = base();
    s["annotations"]["io.kubernetes.cri.container-name"] = json!(name);
    for (k, v) in pairs {
        s["annotations"][*k] = json!(v);
    }
    let list = s["process"]["env"].as_array_mut().unwrap();
    for e in env {
        list.push(json!(e));
    }
    s
}

fn mount_at<'a>(spec: &'a Value, dst: &str) -> Option<&'a Value> {
    spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == dst)
}

fn is_ro(m: &Value) -> bool {
    m["options"]
        .as_array()
        .map(|o| o.iter().any(|x| x == "ro"))
        .unwrap_or(false)
}

/// When the host cannot tell (NoHostFs: no lookups), a source whose name
/// says it is a socket is still removed under `sensitive`, even from a
/// kubelet-managed folder that would otherwise be allowed.
#[test]
fn socket_named_sources_are_removed_without_a_host_lookup() {
    for name in ["agent.sock", "engine.socket", "ssh-auth-sock"] {
        let src = format!("{POD}/volumes/kubernetes.io~empty-dir/run/{name}");
        let (spec, report) = allowed(apply_value(
            &sensitive(),
            with_mount(bind(&src, "/run/s")),
            &NoHostFs,
        ));
        assert!(mount_at(&spec, "/run/s").is_none(), "{name} survived");
        assert!(
            report
                .changes
                .iter()
                .any(|c| c.rule == "mounts.host-socket" && c.target == "/run/s"),
            "{name}: {:?}",
            report.changes
        );
    }
    // an ordinary name in the same folder stays: the fallback is about names
    let src = format!("{POD}/volumes/kubernetes.io~empty-dir/run/data");
    let (spec, _) = allowed(apply_value(
        &sensitive(),
        with_mount(bind(&src, "/run/s")),
        &NoHostFs,
    ));
    assert!(mount_at(&spec, "/run/s").is_some());
}

fn sa_mount() -> Value {
    with_mount(bind(
        &format!("{POD}/volumes/kubernetes.io~projected/kube-api-access-x"),
        SA,
    ))
}

/// `[serviceaccount] allow_agent` decides whether the agent keeps the
/// token mount, both ways and under both profiles.
#[test]
fn serviceaccount_allow_agent_is_honoured_both_ways() {
    for profile in ["standard", "sensitive"] {
        let keep = policy(&format!(
            "profile = \"{profile}\"\n[serviceaccount]\nallow_agent = true"
        ));
        let (spec, _) = allowed(apply_value(&keep, sa_mount(), &NoHostFs));
        assert!(
            mount_at(&spec, SA).is_some(),
            "{profile}: allow_agent = true"
        );

        let drop = policy(&format!(
            "profile = \"{profile}\"\n[serviceaccount]\nallow_agent = false"
        ));
        let (spec, report) = allowed(apply_value(&drop, sa_mount(), &NoHostFs));
        assert!(
            mount_at(&spec, SA).is_none(),
            "{profile}: allow_agent = false"
        );
        assert!(report
            .changes
            .iter()
            .any(|c| c.rule == "mounts.serviceaccount"));
    }
    // the defaults: standard keeps, sensitive removes
    let (spec, _) = allowed(apply_value(&standard(), sa_mount(), &NoHostFs));
    assert!(mount_at(&spec, SA).is_some());
    let (spec, _) = allowed(apply_value(&sensitive(), sa_mount(), &NoHostFs));
    assert!(mount_at(&spec, SA).is_none());
}

/// `[mounts] readonly` covers the destination and everything under it, but
/// not a sibling that merely shares a prefix.
#[test]
fn readonly_applies_at_and_under_a_destination() {
    let p = policy("profile = \"standard\"\n[mounts]\nreadonly = [\"/workspace\"]");
    let ed = |n: &str| format!("{POD}/volumes/kubernetes.io~empty-dir/{n}");
    let mut spec = base();
    for (src, dst) in [
        ("a", "/workspace"),
        ("b", "/workspace/sub/dir"),
        ("c", "/workspace-other"),
    ] {
        spec["mounts"].as_array_mut().unwrap().push(json!({
            "destination": dst, "type": "bind", "source": ed(src), "options": ["rbind", "rw"]
        }));
    }
    let (out, _) = allowed(apply_value(&p, spec, &NoHostFs));
    assert!(is_ro(mount_at(&out, "/workspace").unwrap()), "at");
    assert!(
        is_ro(mount_at(&out, "/workspace/sub/dir").unwrap()),
        "under"
    );
    assert!(
        !is_ro(mount_at(&out, "/workspace-other").unwrap()),
        "a sibling with the same prefix is not under it"
    );
}

/// A pod's `agentbox.dev/strip-env` removes a name even when the node's
/// `[env] allow` lists it: a pod may tighten, and allow only protects from
/// the secret detectors.
#[test]
fn pod_strip_env_beats_node_allow() {
    let p = policy("profile = \"standard\"\n[env]\nallow = [\"AWS_REGION\", \"TEAM_*\"]");
    let spec = with_env(
        "agent",
        &[("agentbox.dev/strip-env", "AWS_REGION,TEAM_NAME")],
        &["AWS_REGION=eu-west-1", "TEAM_NAME=a", "TEAM_SIZE=3"],
    );
    let (out, report) = allowed(apply_value(&p, spec, &NoHostFs));
    let names = env_names(&out);
    assert!(!names.contains(&"AWS_REGION".to_string()), "{names:?}");
    assert!(!names.contains(&"TEAM_NAME".to_string()), "{names:?}");
    assert!(names.contains(&"TEAM_SIZE".to_string()), "{names:?}");
    assert!(report
        .changes
        .iter()
        .any(|c| c.rule == "env.annotation-strip" && c.target == "AWS_REGION"));
}

/// Setup containers keep the secrets the detectors would take from an
/// agent, but the node's `[env] strip` list applies to them too.
#[test]
fn setup_containers_are_not_exempt_from_the_node_strip_list() {
    let p = policy(
        "profile = \"standard\"\n[env]\nstrip = [\"ACME_*\"]\n[phases]\nsetup_containers = [\"clone\"]",
    );
    let token = format!("ghp_{}", "SetupPhaseTokenValue0123456789abcdefAB");
    let spec = with_env(
        "clone",
        &[("agentbox.dev/setup-containers", "clone")],
        &["ACME_DEPLOY=x", &format!("GITHUB_TOKEN={token}")],
    );
    let (out, report) = allowed(apply_value(&p, spec, &NoHostFs));
    let names = env_names(&out);
    assert!(!names.contains(&"ACME_DEPLOY".to_string()), "{names:?}");
    assert!(
        names.contains(&"GITHUB_TOKEN".to_string()),
        "a setup container keeps its token: {names:?}"
    );
    assert!(report
        .changes
        .iter()
        .any(|c| c.rule == "env.config-strip" && c.target == "ACME_DEPLOY"));

    // the same container as agent phase loses both
    let spec = with_env(
        "clone",
        &[],
        &["ACME_DEPLOY=x", &format!("GITHUB_TOKEN={token}")],
    );
    let (out, _) = allowed(apply_value(&p, spec, &NoHostFs));
    let names = env_names(&out);
    assert!(!names.contains(&"ACME_DEPLOY".to_string()));
    assert!(!names.contains(&"GITHUB_TOKEN".to_string()));
    assert!(!out.to_string().contains(&token));
}

/// `agentbox.dev/profile: sensitive` tightens a standard node: the
/// sensitive rules apply (an unmanaged host bind is refused).
#[test]
fn a_pod_may_choose_the_sensitive_profile() {
    let mut spec = with_mount(bind("/srv/data", "/data"));
    spec["annotations"]["agentbox.dev/profile"] = json!("sensitive");
    let reason = refused(apply_value(&standard(), spec, &NoHostFs));
    assert!(reason.contains("sensitive profile"), "{reason}");

    let mut spec = base();
    spec["annotations"]["agentbox.dev/profile"] = json!(" sensitive ");
    let (_, report) = allowed(apply_value(&standard(), spec, &NoHostFs));
    assert_eq!(report.profile, "sensitive");
}

/// A refused setup-containers annotation says which names the node allows.
#[test]
fn a_refused_setup_annotation_names_what_the_node_allows() {
    let listed = policy("[phases]\nsetup_containers = [\"clone\", \"fetch\"]");
    let spec = with_env("agent", &[("agentbox.dev/setup-containers", "agent")], &[]);
    let reason = refused(apply_value(&listed, spec.clone(), &NoHostFs));
    assert!(reason.contains("allows: clone, fetch"), "{reason}");

    let none = policy("[phases]\nsetup_containers = []");
    let reason = refused(apply_value(&none, spec.clone(), &NoHostFs));
    assert!(reason.contains("allows: none"), "{reason}");

    let reason = refused(apply_value(&sensitive(), spec, &NoHostFs));
    assert!(reason.contains("allows: none"), "{reason}");
}

/// Hooks run on the host: each one is removed and reported once; empty or
/// null lists are left as they are, with nothing reported.
#[test]
fn hooks_are_removed_and_reported_one_by_one() {
    let mut spec = base();
    spec["hooks"] = json!({
        "prestart": [{"path": "/usr/bin/a"}, {"path": "/usr/bin/b"}],
        "poststart": null,
        "poststop": [],
    });
    let (out, report) = allowed(apply_value(&standard(), spec, &NoHostFs));
    assert!(out.get("hooks").is_none(), "{}", out["hooks"]);
    let hooks: Vec<&str> = report
        .changes
        .iter()
        .filter(|c| c.rule == "hooks.removed")
        .map(|c| c.target.as_str())
        .collect();
    assert_eq!(hooks, ["prestart[0] /usr/bin/a", "prestart[1] /usr/bin/b"]);

    for empty in [json!({"prestart": []}), json!({"prestart": null})] {
        let mut spec = base();
        spec["hooks"] = empty.clone();
        let (out, report) = allowed(apply_value(&standard(), spec, &NoHostFs));
        assert_eq!(out["hooks"], empty);
        assert!(report.changes.is_empty(), "{:?}", report.changes);
    }
}
