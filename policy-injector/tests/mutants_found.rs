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

/// A managed root may not be `/`, `/proc` or under `/proc`: each alone is
/// refused at load (mutants: `||` → `&&` in the config's compile step).
#[test]
fn managed_roots_cannot_be_the_root_or_proc() {
    for r in ["/", "/proc", "/proc/1", "/proc/self/root"] {
        let e = Policy::from_toml_str(&format!("[mounts]\nmanaged_roots = [\"{r}\"]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be a managed root"), "{r}: {e}");
    }
    Policy::from_toml_str("[mounts]\nmanaged_roots = [\"/srv/pods\"]").unwrap();
}

/// An injected mount's source may not be `/`, `/proc` or under `/proc`, and
/// a destination may be listed once (mutants in the config's compile step).
#[test]
fn inject_sources_and_destinations_are_checked_at_load() {
    for src in ["/", "/proc", "/proc/1/root"] {
        let e = Policy::from_toml_str(&format!(
            "[mounts]\ninject = [{{ source = \"{src}\", destination = \"/x\" }}]"
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("mounts.inject"), "{src}: {e}");
    }
    let e = Policy::from_toml_str(
        "[mounts]\ninject = [{ source = \"/etc/a\", destination = \"/x\" }, { source = \"/etc/b\", destination = \"/x\" }]",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("listed twice"), "{e}");
    Policy::from_toml_str(
        "[mounts]\ninject = [{ source = \"/etc/a\", destination = \"/x\" }, { source = \"/etc/b\", destination = \"/y\" }]",
    )
    .unwrap();
}

/// The real host: sockets are seen as sockets; a path that is not a link
/// is `Ok(None)`; an error that is not "no such link" is an error.
#[test]
fn the_real_host_tells_sockets_links_and_errors_apart() {
    use agentbox_policy::{HostFs, RealHostFs};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"").unwrap();
    assert!(RealHostFs.is_socket(sock.to_str().unwrap()));
    assert!(!RealHostFs.is_socket(file.to_str().unwrap()));
    for p in [
        file.clone(),
        dir.path().join("missing"),
        file.join("under-a-file"),
    ] {
        assert_eq!(RealHostFs.read_link(p.to_str().unwrap()).unwrap(), None);
    }
    let long = dir.path().join("n".repeat(300));
    assert!(RealHostFs.read_link(long.to_str().unwrap()).is_err());
}

fn input_error(spec: &Value) -> String {
    match agentbox_policy::apply(&standard(), &serde_json::to_vec(spec).unwrap(), &NoHostFs) {
        Err(e) => e.to_string(),
        Ok(d) => panic!("accepted: {:?}", d.report()),
    }
}

/// Input errors name where (a JSON pointer, long keys cut, `~` and `/`
/// escaped), the limit is 4 MiB inclusive, and every typed field is checked.
#[test]
fn input_errors_point_at_the_field_and_the_limit_is_exact() {
    let mut s = base();
    s["process"]["noNewPrivileges"] = json!("yes");
    assert_eq!(
        input_error(&s),
        "/process/noNewPrivileges must be a boolean"
    );
    let mut s = base();
    s["process"]["capabilities"]["bounding"] = json!([1]);
    assert!(input_error(&s).starts_with("/process/capabilities/bounding"));
    let mut s = base();
    s["mounts"][1]["destination"] = json!(7);
    assert_eq!(input_error(&s), "/mounts/1/destination must be a string");

    let key = format!("a/b~{}", "k".repeat(100));
    let mut s = base();
    s["x"] = json!({ key.clone(): "nul\u{0}" });
    let e = input_error(&s);
    let want = format!("/x/a~1b~0{}…", "k".repeat(60));
    assert!(e.contains(&want), "{e}");
    let mut s = base();
    s["x"] = json!({ "k".repeat(64): "nul\u{0}" });
    assert!(input_error(&s).contains(&format!("/x/{} ", "k".repeat(64))));

    // exactly the limit is read; one byte more is refused
    let mut bytes = serde_json::to_vec(&base()).unwrap();
    let pad = agentbox_policy::MAX_INPUT_BYTES - bytes.len();
    bytes.truncate(bytes.len() - 1);
    bytes.extend(std::iter::repeat_n(b' ', pad));
    bytes.push(b'}');
    assert_eq!(bytes.len(), agentbox_policy::MAX_INPUT_BYTES);
    agentbox_policy::apply(&standard(), &bytes, &NoHostFs).expect("at the limit");
    bytes.push(b' ');
    let e = match agentbox_policy::apply(&standard(), &bytes, &NoHostFs) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("one byte over the limit was read"),
    };
    assert_eq!(e, "input is 4194305 bytes, over the 4194304 byte limit");
}
