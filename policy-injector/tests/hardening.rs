//! Issue 7 (security hardening), policy half: runtime annotations are an
//! allowlist, the node decides which containers may be setup phase, the root
//! must be the bundle's rootfs, and read-only follows a mount's source.
//! Host-dependent variants (symlinks, namespace inodes) are in
//! `adversarial_host.rs`.

mod common;

use std::path::Path;

use agentbox_policy::{
    apply_process, apply_value, apply_value_with, apply_with, ApplyContext, NoHostFs, PodRole,
    Policy, Profile, RealHostFs,
};
use common::*;
use serde_json::{json, Map, Value};

fn with_annotations(pairs: &[(&str, &str)]) -> Value {
    let mut s = base();
    for (k, v) in pairs {
        s["annotations"][*k] = json!(v);
    }
    s
}

fn keys(spec: &Value) -> Vec<String> {
    spec["annotations"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

const RUNTIME_KEYS: &[&str] = &[
    "io.katacontainers.config_path",
    "io.katacontainers.config.hypervisor.default_memory",
    "io.katacontainers.config.hypervisor.path",
    "io.katacontainers.pkg.oci.bundle_path",
    "io.katacontainers.container.type",
    "IO.KataContainers.config_path",
    "dev.gvisor.spec.rootfs.source",
    "dev.gvisor.spec.rootfs.type",
    "dev.gvisor.spec.rootfs.overlay",
    "dev.gvisor.spec.mount.ws.source",
    "dev.gvisor.spec.mount.ws.type",
    "dev.gvisor.spec.mount.ws.share",
    "dev.gvisor.spec.mount.ws.options",
    "dev.gvisor.flag.network",
    "Dev.Gvisor.Flag.network",
    "dev.gvisor.internal.nvproxy",
    "dev.gvisor.tar.rootfs.upper",
    "dev.gvisor.spec.cgroup-parent",
];

#[test]
fn runtime_annotations_removed_unless_listed() {
    let pairs: Vec<(&str, &str)> = RUNTIME_KEYS.iter().map(|k| (*k, "/")).collect();
    for p in [standard(), sensitive()] {
        let (spec, report) = allowed(apply_value(&p, with_annotations(&pairs), &NoHostFs));
        assert_eq!(keys(&spec), ["io.kubernetes.cri.container-name"]);
        for k in RUNTIME_KEYS {
            assert!(
                report
                    .changes
                    .iter()
                    .any(|c| c.rule == "annotations.runtime-control" && c.target == *k),
                "{k} not reported"
            );
        }
    }
    let listed = Policy::from_toml_str(
        "[annotations]\nkata_allow = [\"io.katacontainers.config.hypervisor.default_memory\"]\ngvisor_allow = [\"dev.gvisor.spec.cgroup-parent\"]",
    )
    .unwrap();
    let (spec, _) = allowed(apply_value(&listed, with_annotations(&pairs), &NoHostFs));
    assert_eq!(
        keys(&spec),
        [
            "io.kubernetes.cri.container-name",
            "io.katacontainers.config.hypervisor.default_memory",
            "dev.gvisor.spec.cgroup-parent"
        ]
    );
    // exact names only: another spelling of a listed key is removed
    let (spec, _) = allowed(apply_value(
        &listed,
        with_annotations(&[("DEV.GVISOR.spec.cgroup-parent", "/x")]),
        &NoHostFs,
    ));
    assert_eq!(keys(&spec), ["io.kubernetes.cri.container-name"]);
}

#[test]
fn dangerous_runtime_annotations_cannot_be_allowlisted() {
    for (list, key) in [
        ("kata_allow", "io.katacontainers.config_path"),
        ("gvisor_allow", "dev.gvisor.spec.mount.ws.source"),
        ("gvisor_allow", "dev.gvisor.spec.rootfs.source"),
        ("gvisor_allow", "dev.gvisor.flag.network"),
        ("gvisor_allow", "dev.gvisor.spec.*"),
    ] {
        let e = Policy::from_toml_str(&format!("[annotations]\n{list} = [{key:?}]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("annotations.{list}")), "{e}");
    }
}

fn in_pod(name: &str, setup: &str) -> Value {
    with_annotations(&[
        ("io.kubernetes.cri.container-name", name),
        ("agentbox.dev/setup-containers", setup),
    ])
}

fn phase(p: &Policy, name: &str, setup: &str) -> Result<PodRole, String> {
    match apply_value(p, in_pod(name, setup), &NoHostFs) {
        agentbox_policy::Decision::Allowed { report, .. } => Ok(report.pod_role()),
        agentbox_policy::Decision::Rejected { reason, .. } => Err(reason),
    }
}

#[test]
fn the_node_decides_which_containers_may_be_setup() {
    // sensitive: a pod cannot pick, whatever it names
    for name in ["agent", "clone"] {
        let e = phase(&sensitive(), name, "agent").unwrap_err();
        assert!(e.contains("agentbox.dev/setup-containers"), "{e}");
        assert!(e.contains("allows: none"), "{e}");
    }
    // sensitive with a node list: only listed names, and every named one must be listed
    let listed = Policy::from_toml_str("[phases]\nsetup_containers = [\"clone\"]").unwrap();
    assert_eq!(phase(&listed, "clone", "clone"), Ok(PodRole::Setup));
    assert_eq!(phase(&listed, "agent", "clone"), Ok(PodRole::Agent));
    assert_eq!(phase(&listed, "clone", ""), Ok(PodRole::Agent));
    for named in ["agent", "clone,agent", " agent ", "Clone"] {
        assert!(phase(&listed, "agent", named).is_err(), "{named}");
        assert!(phase(&listed, "clone", named).is_err(), "{named}");
    }
    // standard: pods choose (the temporal rule in the shim still applies)
    assert_eq!(phase(&standard(), "agent", "agent"), Ok(PodRole::Setup));
    // …unless the pod tightened itself to sensitive
    let mut s = in_pod("agent", "agent");
    s["annotations"]["agentbox.dev/profile"] = json!("sensitive");
    refused(apply_value(&standard(), s, &NoHostFs));
    // standard with a list, and turned off
    let std_listed =
        Policy::from_toml_str("profile = \"standard\"\n[phases]\nsetup_containers = [\"clone\"]")
            .unwrap();
    assert!(phase(&std_listed, "agent", "agent").is_err());
    let off = Policy::from_toml_str("profile = \"standard\"\n[phases]\nsetup_containers = false")
        .unwrap();
    assert!(phase(&off, "clone", "clone").is_err());
}

#[test]
fn secrets_and_token_follow_the_node_list() {
    let mut s = in_pod("agent", "agent");
    s["process"]["env"] = json!([
        "PATH=/bin",
        "GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789"
    ]);
    s["mounts"].as_array_mut().unwrap().push(bind(
        &format!("{POD}/volumes/kubernetes.io~projected/kube-api-access-1"),
        "/var/run/secrets/kubernetes.io/serviceaccount",
    ));
    // the old bypass: naming the agent container itself under sensitive
    refused(apply_value(&sensitive(), s.clone(), &NoHostFs));
    let listed = Policy::from_toml_str("[phases]\nsetup_containers = [\"clone\"]").unwrap();
    s["annotations"]["agentbox.dev/setup-containers"] = json!("clone");
    let (spec, report) = allowed(apply_value(&listed, s, &NoHostFs));
    assert_eq!(report.phase, "agent");
    assert_eq!(spec["process"]["env"], json!(["PATH=/bin"]));
    assert!(!dests(&spec).iter().any(|d| d.contains("serviceaccount")));
}

#[test]
fn report_names_the_pod_role() {
    let listed = Policy::from_toml_str("[phases]\nsetup_containers = [\"clone\"]").unwrap();
    let mut sandbox = with_annotations(&[
        ("io.kubernetes.cri.container-type", "sandbox"),
        ("agentbox.dev/setup-containers", "clone"),
    ]);
    sandbox["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("io.kubernetes.cri.container-name");
    let (_, r) = allowed(apply_value(&listed, sandbox, &NoHostFs));
    assert_eq!((r.kind.as_str(), r.container.as_deref()), ("sandbox", None));
    assert_eq!(r.pod_role(), PodRole::Sandbox);
    let (_, r) = allowed(apply_value(&listed, in_pod("clone", "clone"), &NoHostFs));
    assert_eq!(
        (r.kind.as_str(), r.container.as_deref(), r.pod_role()),
        ("container", Some("clone"), PodRole::Setup)
    );
    // a refusal still says who was refused
    let e = apply_value(&sensitive(), in_pod("agent", "agent"), &NoHostFs);
    assert_eq!(e.report().container.as_deref(), Some("agent"));
    // exec: the phase of the container it runs in
    let ann: Map<String, Value> = in_pod("clone", "clone")["annotations"]
        .as_object()
        .unwrap()
        .clone();
    let d = apply_process(&listed, br#"{"args":["sh"],"cwd":"/"}"#, &ann).unwrap();
    assert_eq!(d.report().pod_role(), PodRole::Setup);
    let d = apply_process(&sensitive(), br#"{"args":["sh"],"cwd":"/"}"#, &ann).unwrap();
    assert!(!d.is_allowed());
}

fn with_root(path: &str) -> Value {
    let mut s = base();
    s["root"] = json!({"path": path});
    s
}

#[test]
fn root_must_be_the_bundle_rootfs() {
    let bundle = Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1");
    let ctx = ApplyContext::with_bundle(bundle);
    for p in [standard(), sensitive()] {
        for ok in ["rootfs", "./rootfs", "rootfs/"] {
            allowed(apply_value(&p, with_root(ok), &NoHostFs));
            allowed(apply_value_with(&p, with_root(ok), &NoHostFs, &ctx));
        }
        let abs = format!("{}/rootfs", bundle.display());
        allowed(apply_value_with(&p, with_root(&abs), &NoHostFs, &ctx));
        refused(apply_value(&p, with_root(&abs), &NoHostFs));
        for bad in [
            "/",
            "//",
            "/.",
            "/var/lib/containerd",
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c2/rootfs",
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1",
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1/rootfs/..",
            "..",
            "rootfs/..",
            "rootfs/../..",
            "../c2/rootfs",
            "",
        ] {
            let r = refused(apply_value_with(&p, with_root(bad), &NoHostFs, &ctx));
            assert!(r.contains("root.path"), "{bad}: {r}");
        }
        let mut no_root = base();
        no_root.as_object_mut().unwrap().remove("root");
        refused(apply_value_with(&p, no_root, &NoHostFs, &ctx));
    }
    // the bytes API and a wrong type
    let bytes = serde_json::to_vec(&with_root("/")).unwrap();
    assert!(!apply_with(&standard(), &bytes, &RealHostFs, &ctx)
        .unwrap()
        .is_allowed());
    let mut bad_type = base();
    bad_type["root"] = json!({"path": 7});
    assert!(apply_with(
        &standard(),
        &serde_json::to_vec(&bad_type).unwrap(),
        &NoHostFs,
        &ctx
    )
    .is_err());
}

fn rw(src: &str, dst: &str) -> Value {
    json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate", "rw"]})
}

fn is_ro(spec: &Value, dst: &str) -> bool {
    let m = spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == dst)
        .unwrap_or_else(|| panic!("{dst} missing"));
    let o = m["options"].as_array().unwrap();
    o.iter().any(|x| x == "ro") && !o.iter().any(|x| x == "rw")
}

#[test]
fn readonly_follows_the_source() {
    let vol = format!("{POD}/volumes/kubernetes.io~empty-dir");
    let ws = format!("{vol}/ws");
    let cases = [
        (ws.clone(), true),
        (format!("{ws}/"), true),
        (format!("{vol}/./ws"), true),
        (format!("{vol}/other/../ws"), true),
        (format!("{ws}/sub/dir"), true),
        (vol.clone(), true),
        (POD.to_string(), true),
        (format!("{POD}/volume-subpaths/ws/agent/3"), true),
        (format!("{vol}/ws2"), false),
        (format!("{vol}/cache"), false),
        (format!("{POD}/volume-subpaths/cache/agent/3"), false),
        (format!("{POD}/etc-hosts"), false),
    ];
    let by_config = |profile: &str| {
        Policy::from_toml_str(&format!(
            "profile = \"{profile}\"\n[mounts]\nreadonly = [\"/workspace\"]"
        ))
        .unwrap()
    };
    for (src, want_ro) in &cases {
        for (p, ann) in [
            (by_config("standard"), false),
            (by_config("sensitive"), false),
            (standard(), true),
            (sensitive(), true),
        ] {
            let mut s = base();
            let m = s["mounts"].as_array_mut().unwrap();
            m.push(rw(&ws, "/workspace"));
            m.push(rw(src, "/other"));
            if ann {
                s["annotations"]["agentbox.dev/readonly-mounts"] = json!("/workspace");
            }
            let (spec, report) = allowed(apply_value(&p, s, &NoHostFs));
            assert!(is_ro(&spec, "/workspace"));
            assert_eq!(is_ro(&spec, "/other"), *want_ro, "{src} ({})", p.profile());
            let reported = report
                .changes
                .iter()
                .any(|c| c.rule == "mounts.readonly-source" && c.target == "/other");
            assert_eq!(reported, *want_ro, "{src}");
        }
    }
    // a read-only destination below the mount point counts too
    let mut s = base();
    let m = s["mounts"].as_array_mut().unwrap();
    m.push(rw(&format!("{ws}/src"), "/workspace/src"));
    m.push(rw(&ws, "/w"));
    s["annotations"]["agentbox.dev/readonly-mounts"] = json!("/workspace");
    let (spec, _) = allowed(apply_value(&sensitive(), s, &NoHostFs));
    assert!(is_ro(&spec, "/workspace/src") && is_ro(&spec, "/w"));
}

/// Through the host: a symlink to the read-only source, and the read-only
/// source itself reached through one.
#[test]
fn readonly_follows_the_source_through_symlinks() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let r = root.to_str().unwrap();
    std::fs::create_dir_all(root.join("managed/vol/ws/sub")).unwrap();
    std::os::unix::fs::symlink(root.join("managed/vol/ws"), root.join("managed/alias")).unwrap();
    std::os::unix::fs::symlink("vol/ws/sub", root.join("managed/sub-alias")).unwrap();
    let p = Policy::from_toml_str(&format!(
        "[mounts]\nreadonly = [\"/workspace\"]\nmanaged_roots = [\"{r}/managed\"]"
    ))
    .unwrap();
    for (ro_src, other) in [
        (format!("{r}/managed/vol/ws"), format!("{r}/managed/alias")),
        (
            format!("{r}/managed/vol/ws"),
            format!("{r}/managed/sub-alias"),
        ),
        (
            format!("{r}/managed/alias"),
            format!("{r}/managed/vol/ws/sub"),
        ),
        (format!("{r}/managed/alias/sub"), format!("{r}/managed/vol")),
    ] {
        let mut s = base();
        let m = s["mounts"].as_array_mut().unwrap();
        m.push(rw(&ro_src, "/workspace"));
        m.push(rw(&other, "/other"));
        let (spec, _) = allowed(apply_value(&p, s.clone(), &RealHostFs));
        assert!(is_ro(&spec, "/other"), "{other} writable beside {ro_src}");
        // lexically the two are unrelated: only the host shows it
        let (spec, _) = allowed(apply_value(&p, s, &NoHostFs));
        assert!(!is_ro(&spec, "/other"), "{other}");
    }
    assert_eq!(Profile::Sensitive, p.profile());
}
