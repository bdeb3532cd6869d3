//! Cases `make mutants` found untested (issue 13): each test fails on the
//! mutant named in its comment.

mod common;

use agentbox_policy::{apply_value, apply_value_with, ApplyContext, NoHostFs, Policy};
use common::*;
use serde_json::{json, Value};

fn policy(toml: &str) -> Policy {
    Policy::from_toml_str(toml).expect("a valid config")
}

fn with_devices(rules: Value) -> Value {
    let mut s = base();
    s["linux"]["resources"] = json!({ "devices": rules });
    s
}

/// `broad_allow`: a rule that allows every type, every major or every minor
/// is replaced by deny-all; only a fully specific rule stays.
#[test]
fn device_rules_broad_in_any_one_field_are_replaced() {
    let broad = [
        json!({"allow": true, "type": "a", "major": 1, "minor": 3, "access": "rwm"}),
        json!({"allow": true, "type": "", "major": 1, "minor": 3, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": -1, "minor": 3, "access": "rwm"}),
        json!({"allow": true, "type": "c", "major": 1, "access": "rwm"}),
        json!({"allow": true, "type": "c", "minor": 3, "access": "rwm"}),
    ];
    for rule in broad {
        let (out, report) = allowed(apply_value(
            &standard(),
            with_devices(json!([rule.clone()])),
            &NoHostFs,
        ));
        assert_eq!(
            out["linux"]["resources"]["devices"][0],
            json!({"allow": false, "access": "rwm"}),
            "{rule}"
        );
        assert!(report
            .changes
            .iter()
            .any(|c| c.rule == "linux.device-cgroup"));
    }
    let specific = json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"});
    let (out, _) = allowed(apply_value(
        &standard(),
        with_devices(json!([specific.clone()])),
        &NoHostFs,
    ));
    assert_eq!(out["linux"]["resources"]["devices"][0], specific);
}

const ED: &str = "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/w";

fn is_ro(spec: &Value, dst: &str) -> bool {
    spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == dst)
        .unwrap_or_else(|| panic!("no mount at {dst}"))["options"]
        .as_array()
        .is_some_and(|o| o.iter().any(|x| x == "ro"))
}

fn rw_bind(src: &str, dst: &str) -> Value {
    json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rw"]})
}

/// Read-only follows the source of a *bind* at a read-only destination: a
/// tmpfs there whose source text happens to be a host path, or the pod's
/// own mount that an injected one replaces, makes nothing else read-only;
/// a real bind there does, even when the node injects elsewhere.
#[test]
fn readonly_source_comes_only_from_binds_that_stay() {
    let p = policy(
        "[mounts]\nreadonly = [\"/workspace\"]\ninject = [{ source = \"/etc/hostname\", destination = \"/workspace/plan\" }]",
    );
    // a tmpfs at the read-only destination (mutant: `||` → `&&` in the pre-scan)
    let mut s = base();
    let m = s["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/workspace", "type": "tmpfs", "source": ED, "options": ["rw"]}));
    m.push(rw_bind(ED, "/data"));
    let (out, _) = allowed(apply_value(&p, s, &NoHostFs));
    assert!(
        !is_ro(&out, "/data"),
        "a tmpfs is not a view of the host path"
    );

    // the pod's mount at the injected destination is replaced
    let mut s = base();
    let m = s["mounts"].as_array_mut().unwrap();
    m.push(rw_bind(ED, "/workspace/plan"));
    m.push(rw_bind(ED, "/data"));
    let (out, _) = allowed(apply_value(&p, s, &NoHostFs));
    assert!(
        !is_ro(&out, "/data"),
        "the replaced mount's source is not read-only"
    );

    // a real bind at the read-only destination (mutant: `==` → `!=`)
    let mut s = base();
    let m = s["mounts"].as_array_mut().unwrap();
    m.push(rw_bind(ED, "/workspace"));
    m.push(rw_bind(ED, "/data"));
    let (out, report) = allowed(apply_value(&p, s, &NoHostFs));
    assert!(is_ro(&out, "/workspace") && is_ro(&out, "/data"));
    assert!(report
        .changes
        .iter()
        .any(|c| c.rule == "mounts.readonly-source" && c.target == "/data"));
}

fn with_netns(path: &str) -> Value {
    let mut s = base();
    for n in s["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "network" {
            n["path"] = json!(path);
        }
    }
    s
}

/// Only `/proc/<sandbox pid>/ns/<name>` is exempt from the inode check: a
/// short path that is the host's namespace is refused even when the sandbox
/// pid is known (mutants: `&&` → `||` in `is_sandbox_ns`).
#[test]
fn only_the_sandbox_pids_own_namespaces_are_exempt() {
    let mut host = FakeHost::new(&[]);
    let hostnet = (7, 4026531840);
    host.ids.insert("/proc/1/ns/net".into(), hostnet);
    for p in ["/hostnet", "/run/hostnet", "/run/netns/hostnet"] {
        host.ids.insert(p.into(), hostnet);
    }
    host.ids.insert("/proc/4242/ns/net".into(), hostnet);
    let ctx = ApplyContext::default().sandbox_pid(Some(4242));
    for path in ["/hostnet", "/run/hostnet", "/run/netns/hostnet"] {
        let reason = refused(apply_value_with(&standard(), with_netns(path), &host, &ctx));
        assert!(reason.contains("host namespace"), "{path}: {reason}");
    }
    allowed(apply_value_with(
        &standard(),
        with_netns("/proc/4242/ns/net"),
        &host,
        &ctx,
    ));
    refused(apply_value_with(
        &standard(),
        with_netns("/proc/4242/ns/net/x"),
        &host,
        &ctx,
    ));
}

/// A symlink leading to `/proc/1/ns/…` is refused by its chain even when
/// the host cannot say what the end is (mutant: `!` deleted in `check_path`).
#[test]
fn a_link_to_the_hosts_namespace_is_refused_by_its_chain() {
    let host = FakeHost::new(&[("/run/netns/evil", "/proc/1/ns/net")]);
    let reason = refused(apply_value(
        &standard(),
        with_netns("/run/netns/evil"),
        &host,
    ));
    assert!(reason.contains("leads to the host's"), "{reason}");
}
