//! Bypass attempts that need the host: symlinks (live and dangling), host
//! sockets, namespace files. Real files in temp dirs where the kernel can
//! make them without root, a [`FakeHost`] table elsewhere.

mod common;

use agentbox_policy::{
    apply_value, apply_value_with, ApplyContext, HostFs, NoHostFs, Policy, RealHostFs,
};
use common::*;
use serde_json::json;

#[test]
fn symlinks_through_host_lookup() {
    let mut host = FakeHost::new(&[
        ("/srv/innocent", "/run/docker.sock"),
        ("/srv/dir", "/var/run"),
        (
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/evil",
            "/etc",
        ),
    ]);
    host.sockets = vec!["/run/docker.sock".into(), "/data/agent.socket-ish".into()];
    for src in ["/srv/innocent", "/srv/dir"] {
        let (spec, _) = allowed(apply_value(&standard(), with_mount(bind(src, "/x")), &host));
        assert!(!dests(&spec).contains(&"/x".to_string()), "{src}");
    }
    // an emptyDir that is really a link out of the kubelet's tree is not managed
    let m = json!({"destination": "/e", "type": "bind",
        "source": "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/evil", "options": ["rbind", "rw"]});
    refused(apply_value(&sensitive(), with_mount(m.clone()), &host));
    let (spec, report) = allowed(apply_value(&standard(), with_mount(m), &host));
    assert!(dests(&spec).contains(&"/e".to_string()));
    assert!(report
        .changes
        .iter()
        .any(|c| c.rule == "mounts.unmanaged-host"
            && c.target == "/e"
            && c.action == "forced-readonly"));
    // any host socket goes under sensitive
    let (spec, report) = allowed(apply_value(
        &sensitive(),
        with_mount(bind("/data/agent.socket-ish", "/s")),
        &host,
    ));
    assert!(!dests(&spec).contains(&"/s".to_string()));
    assert!(report
        .changes
        .iter()
        .any(|c| c.rule == "mounts.host-socket"));
}

#[test]
fn real_symlinks_in_a_tempdir() {
    use std::os::unix::net::UnixListener;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let r = root.to_str().unwrap();
    std::fs::create_dir_all(root.join("run/engine")).unwrap();
    let sock = root.join("run/engine/engine.sock");
    let _l = UnixListener::bind(&sock).unwrap();
    std::fs::create_dir_all(root.join("managed/pod")).unwrap();
    std::os::unix::fs::symlink(&sock, root.join("link-to-sock")).unwrap();
    std::os::unix::fs::symlink(root.join("run"), root.join("link-to-run")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("managed/pod/escape")).unwrap();
    let other = root.join("plain.sock");
    let _l2 = UnixListener::bind(&other).unwrap();
    std::os::unix::fs::symlink(&other, root.join("managed/pod/sock-link")).unwrap();

    let cfg = format!(
        "profile = \"standard\"\n[mounts]\ndeny_sockets = [\"{r}/run/engine/engine.sock\"]\nmanaged_roots = [\"{r}/managed\"]\n"
    );
    let std_p = Policy::from_toml_str(&cfg).unwrap();
    let sen_p = Policy::from_toml_str(&cfg.replace("\"standard\"", "\"sensitive\"")).unwrap();

    for src in [
        format!("{r}/link-to-sock"),
        format!("{r}/link-to-run"),
        format!("{r}/link-to-run/engine"),
    ] {
        let (spec, report) = allowed(apply_value(
            &std_p,
            with_mount(bind(&src, "/x")),
            &RealHostFs,
        ));
        assert!(!dests(&spec).contains(&"/x".to_string()), "{src}");
        assert!(report
            .changes
            .iter()
            .any(|c| c.rule == "mounts.runtime-socket"));
    }
    // a link out of a managed root refuses under sensitive
    let esc = format!("{r}/managed/pod/escape");
    refused(apply_value(
        &sen_p,
        with_mount(bind(&esc, "/e")),
        &RealHostFs,
    ));
    // a plain (undeclared) host socket reached through a managed root: removed under sensitive
    let sl = format!("{r}/managed/pod/sock-link");
    let (spec, report) = allowed(apply_value(
        &sen_p,
        with_mount(bind(&sl, "/s")),
        &RealHostFs,
    ));
    assert!(!dests(&spec).contains(&"/s".to_string()));
    assert!(report
        .changes
        .iter()
        .any(|c| c.rule == "mounts.host-socket"));
    // and a real managed directory passes untouched
    let ok = format!("{r}/managed/pod");
    let (spec, report) = allowed(apply_value(
        &sen_p,
        with_mount(bind(&ok, "/ok")),
        &RealHostFs,
    ));
    assert!(dests(&spec).contains(&"/ok".to_string()));
    assert!(report.changes.iter().all(|c| c.target != "/ok"));
}

fn symlink(target: impl AsRef<std::path::Path>, link: impl AsRef<std::path::Path>) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

fn changed(report: &agentbox_policy::Report, rule: &str, dst: &str) -> bool {
    report
        .changes
        .iter()
        .any(|c| c.rule == rule && c.target == dst)
}

/// Links whose final target does not exist (yet): the socket may appear
/// before the container starts, so every step of the chain is checked.
#[test]
fn dangling_symlink_chains() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let r = root.to_str().unwrap();
    std::fs::create_dir_all(root.join("run/engine")).unwrap();
    std::fs::create_dir_all(root.join("managed/pod")).unwrap();
    // engine.sock is listed but not there; every link below dangles
    symlink(root.join("run/engine/engine.sock"), root.join("direct"));
    symlink("run/engine/engine.sock", root.join("relative"));
    symlink(root.join("hop2"), root.join("hop1"));
    symlink("./hop3", root.join("hop2"));
    symlink(root.join("run/engine/engine.sock"), root.join("hop3"));
    symlink(root.join("run"), root.join("dirlink"));
    symlink("/var/run/docker.sock", root.join("managed/pod/docker"));
    symlink(
        root.join("future/agent.sock"),
        root.join("managed/pod/future"),
    );
    let cfg = format!(
        "[mounts]\ndeny_sockets = [\"{r}/run/engine/engine.sock\"]\nmanaged_roots = [\"{r}/managed\"]\n"
    );
    let std_p = Policy::from_toml_str(&format!("profile = \"standard\"\n{cfg}")).unwrap();
    let sen_p = Policy::from_toml_str(&format!("profile = \"sensitive\"\n{cfg}")).unwrap();
    for src in [
        format!("{r}/direct"),
        format!("{r}/relative"),
        format!("{r}/hop1"),
        format!("{r}/dirlink/engine/engine.sock"),
        format!("{r}/dirlink/engine/../engine/engine.sock"),
        format!("{r}/managed/pod/docker"),
    ] {
        for p in [&std_p, &sen_p] {
            let (spec, report) = allowed(apply_value(p, with_mount(bind(&src, "/x")), &RealHostFs));
            assert!(!dests(&spec).contains(&"/x".to_string()), "{src} kept");
            assert!(changed(&report, "mounts.runtime-socket", "/x"), "{src}");
        }
    }
    // an undeclared socket-to-be under a managed root: removed under sensitive
    let src = format!("{r}/managed/pod/future");
    let (spec, report) = allowed(apply_value(
        &sen_p,
        with_mount(bind(&src, "/f")),
        &RealHostFs,
    ));
    assert!(!dests(&spec).contains(&"/f".to_string()));
    assert!(changed(&report, "mounts.host-socket", "/f"));
    // without host lookups the chain is invisible: the documented limit
    let (spec, _) = allowed(apply_value(
        &std_p,
        with_mount(bind(&format!("{r}/direct"), "/x")),
        &NoHostFs,
    ));
    assert!(dests(&spec).contains(&"/x".to_string()));
}

/// A chain longer than the kernel's limit, or a loop, refuses the container.
#[test]
fn symlink_loops_and_long_chains_fail_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let r = root.to_str().unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    symlink(root.join("b"), root.join("a"));
    symlink(root.join("a"), root.join("b"));
    // l0 -> l1 -> … -> l40 -> data: 41 links
    symlink(root.join("data"), root.join("l40"));
    for i in 0..40 {
        symlink(root.join(format!("l{}", i + 1)), root.join(format!("l{i}")));
    }
    for p in [
        Policy::from_profile(agentbox_policy::Profile::Standard),
        sensitive(),
    ] {
        for src in [format!("{r}/a"), format!("{r}/l0"), format!("{r}/a/x")] {
            let reason = refused(apply_value(&p, with_mount(bind(&src, "/x")), &RealHostFs));
            assert!(reason.contains("symbolic links"), "{src}: {reason}");
        }
    }
    // 40 links is the limit, not over it (standard: an unmanaged host bind)
    let rw = json!({"destination": "/x", "type": "bind", "source": format!("{r}/l1"), "options": ["rbind", "rw"]});
    let (spec, report) = allowed(apply_value(&standard(), with_mount(rw), &RealHostFs));
    assert!(dests(&spec).contains(&"/x".to_string()));
    assert!(changed(&report, "mounts.unmanaged-host", "/x"));
}

fn with_netns(path: &str) -> serde_json::Value {
    let mut s = base();
    for n in s["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "network" {
            n["path"] = json!(path);
        }
    }
    s
}

/// Namespace paths are compared with the host's own namespaces by device and
/// inode, through symlinks, with lexical checks where the host cannot answer.
#[test]
fn namespace_paths_by_device_and_inode() {
    let me = format!("/proc/{}/ns/net", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let link = root.join("netns-link");
    symlink(&me, &link);
    let self_link = root.join("self-link");
    symlink("/proc/self/ns/net", &self_link);
    let plain = root.join("not-a-namespace");
    std::fs::write(&plain, b"").unwrap();
    for p in [standard(), sensitive()] {
        for path in [
            me.as_str(),
            link.to_str().unwrap(),
            self_link.to_str().unwrap(),
            "/proc/self/root/proc/1/ns/net",
            "/proc/1/root/proc/1/ns/net",
        ] {
            let reason = refused(apply_value(&p, with_netns(path), &RealHostFs));
            assert!(reason.contains("host namespace"), "{path}: {reason}");
        }
        // a file that is not the host's namespace passes this rule
        allowed(apply_value(
            &p,
            with_netns(plain.to_str().unwrap()),
            &RealHostFs,
        ));
    }
    // the pod sandbox's own namespaces (gVisor's and Kata's sandbox process
    // may live in host namespaces; the runtime does not join those paths)
    let pid = std::process::id();
    let ctx = ApplyContext::default().sandbox_pid(Some(pid));
    for ty in ["network", "pid", "ipc", "uts"] {
        let mut s = base();
        let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != ty);
        let name = if ty == "network" { "net" } else { ty };
        ns.push(json!({"type": ty, "path": format!("/proc/{pid}/ns/{name}")}));
        refused(apply_value(&standard(), s.clone(), &RealHostFs));
        allowed(apply_value_with(&standard(), s, &RealHostFs, &ctx));
    }
    for path in [
        link.to_str().unwrap(),
        "/proc/self/ns/net",
        "/proc/1/ns/net",
        &format!("/proc/{pid}/root/proc/1/ns/net"),
    ] {
        refused(apply_value_with(
            &standard(),
            with_netns(path),
            &RealHostFs,
            &ctx,
        ));
    }
    // a kernel thread shares the host's namespaces; only root may look
    if RealHostFs.file_id("/proc/2/ns/net").is_some() {
        let n2 = with_netns("/proc/2/ns/net");
        refused(apply_value(&standard(), n2.clone(), &RealHostFs));
        refused(apply_value_with(&standard(), n2, &RealHostFs, &ctx));
    }

    let mut host = FakeHost::new(&[
        ("/var/run", "../run"),
        ("/run/netns/evil", "/proc/2/ns/net"),
    ]);
    host.ids = [
        ("/proc/1/ns/net", (4, 1)),
        ("/proc/2/ns/net", (4, 1)),
        ("/proc/self/ns/net", (4, 1)),
        ("/proc/1/ns/pid", (4, 9)),
        ("/proc/4242/ns/net", (4, 2)),
        ("/run/netns/cni-1", (4, 3)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for path in ["/proc/2/ns/net", "/var/run/netns/evil", "/run/netns/evil"] {
        refused(apply_value(&standard(), with_netns(path), &host));
    }
    for path in ["/proc/4242/ns/net", "/var/run/netns/cni-1"] {
        allowed(apply_value(&standard(), with_netns(path), &host));
    }
}
