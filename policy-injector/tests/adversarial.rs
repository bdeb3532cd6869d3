//! A catalogue of bypass attempts. Each must end with the dangerous thing gone
//! (or the container refused), never passed through. Host-dependent cases
//! (symlinks, sockets, namespaces) are in `adversarial_host.rs`, the issue 7
//! hardening cases in `hardening.rs`.

mod common;

use agentbox_policy::{apply_process, apply_value, NoHostFs, Policy};
use common::*;
use serde_json::{json, Map, Value};

#[test]
fn socket_spellings() {
    for src in [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "//var/run/./docker.sock",
        "/var/run/../run/docker.sock",
        "/var/run/docker.sock/",
        "/run//docker.sock",
        "/var//run/docker.sock",
        "/./run/./docker.sock",
        "/var/run/docker.sock.raw",
        "/run/user/1000/docker.sock",
        "/home/alice/.docker/run/docker.sock",
        "/run/containerd/containerd.sock",
        "/run/containerd/containerd.sock.ttrpc",
        "/run/containerd/s/5e1f0c2a9b",
        "/run/k3s/containerd/containerd.sock",
        "/var/run/crio/crio.sock",
        "/var/run/cri-dockerd.sock",
        "/run/podman/podman.sock",
        "/run/user/1000/podman/podman.sock",
        "/run/buildkit/buildkitd.sock",
        "/var/lib/kubelet/pod-resources/kubelet.sock",
        "/var/lib/kubelet/device-plugins/kubelet.sock",
        "/var/lib/kubelet/plugins_registry/csi.sock",
        "/var/run/nri/nri.sock",
        "/var/run/dbus/system_bus_socket",
        "/run/systemd/private",
        "/var/run/libvirt/libvirt-sock",
    ] {
        assert_mount_removed(src, "/x", "mounts.runtime-socket");
    }
}

#[test]
fn parent_folders() {
    for src in [
        "/",
        "//",
        "/run",
        "/var/run",
        "/var/run/",
        "/var",
        "/var/lib",
        "/var/lib/kubelet",
        "/var/lib/kubelet/device-plugins",
        "/run/containerd",
        "/run/user",
        "/run/user/1000",
        "/home",
        "/home/alice/.docker",
        "/var/lib/kubelet/pods/../pod-resources",
        "/var/lib/kubelet/pods/../../..",
    ] {
        assert_mount_removed(src, "/host", "mounts.runtime-socket");
    }
}

#[test]
fn proc_sources() {
    for src in [
        "/proc/1/root",
        "/proc/self/root",
        "/proc/1/root/var/run/docker.sock",
        "/proc/1/cwd",
        "/proc",
        "/proc/../proc/1/root",
    ] {
        assert_mount_removed(src, "/p", "mounts.host-proc");
    }
}

#[test]
fn host_device_binds() {
    for src in [
        "/dev/sda",
        "/dev",
        "/dev/kvm",
        "//dev/../dev/mem",
        "/dev/shm",
    ] {
        assert_mount_removed(src, "/d", "mounts.host-device");
    }
}

#[test]
fn destination_on_socket_path() {
    let src = format!("{POD}/volumes/kubernetes.io~empty-dir/work");
    for dst in [
        "/var/run/docker.sock",
        "/run/docker.sock",
        "//var/run/./docker.sock",
        "/run/containerd/containerd.sock",
        "var/run/docker.sock",
    ] {
        let (spec, report) = allowed(apply_value(
            &standard(),
            with_mount(bind(&src, dst)),
            &NoHostFs,
        ));
        assert!(!dests(&spec).contains(&dst.to_string()), "{dst} survived");
        assert!(report
            .changes
            .iter()
            .any(|c| c.rule == "mounts.socket-destination"));
    }
}

#[test]
fn bind_without_type_and_none_type() {
    for m in [
        json!({"destination": "/x", "source": "/var/run/docker.sock", "options": ["bind"]}),
        json!({"destination": "/x", "type": "none", "source": "/run", "options": ["rbind", "ro"]}),
    ] {
        let (spec, _) = allowed(apply_value(&standard(), with_mount(m), &NoHostFs));
        assert!(!dests(&spec).contains(&"/x".to_string()));
    }
}

#[test]
fn relative_sources_removed() {
    assert_mount_removed(
        "../../../../var/run/docker.sock",
        "/x",
        "mounts.relative-source",
    );
    assert_mount_removed("rootfs/../..", "/x", "mounts.relative-source");
}

#[test]
fn device_filesystems_refused() {
    for ty in [
        "ext4",
        "xfs",
        "overlay",
        "devtmpfs",
        "securityfs",
        "debugfs",
        "BIND",
    ] {
        let m = json!({"destination": "/d", "type": ty, "source": "/dev/sda1"});
        let reason = refused(apply_value(&standard(), with_mount(m), &NoHostFs));
        assert!(reason.contains(ty), "{reason}");
    }
}

#[test]
fn serviceaccount_aliases_removed_for_agents() {
    let src = format!("{POD}/volumes/kubernetes.io~projected/kube-api-access-1");
    for dst in [
        "/var/run/secrets/kubernetes.io/serviceaccount",
        "/run/secrets/kubernetes.io/serviceaccount",
        "/var/run/secrets/kubernetes.io/serviceaccount/",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "//run/secrets/./kubernetes.io/serviceaccount",
    ] {
        let (spec, _) = allowed(apply_value(
            &sensitive(),
            with_mount(bind(&src, dst)),
            &NoHostFs,
        ));
        assert!(!dests(&spec).contains(&dst.to_string()), "{dst} survived");
    }
}

#[test]
fn namespace_tricks() {
    for (ty, path) in [
        ("network", Some("/proc/1/ns/net")),
        ("network", Some("/proc/self/ns/net")),
        ("network", Some("/proc/thread-self/ns/net")),
        ("pid", Some("/proc/1/../1/ns/pid")),
        ("mount", Some("//proc/1/ns/mnt")),
        ("uts", Some("ns/uts")),
    ] {
        let mut s = base();
        let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != ty);
        ns.push(json!({"type": ty, "path": path}));
        refused(apply_value(&standard(), s, &NoHostFs));
    }
    // a look-alike type does not count as the real one
    let mut s = base();
    let ns = s["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "network");
    ns.push(json!({"type": "NETWORK"}));
    let r = refused(apply_value(&standard(), s, &NoHostFs));
    assert_eq!(
        r,
        "host network namespace is not allowed (spec has no \"network\" namespace entry)"
    );
}

#[test]
fn cwd_tricks() {
    for cwd in [
        "/proc",
        "/proc/",
        "//proc/1/root",
        "/proc/../proc/self/cwd",
        "/./proc/1",
    ] {
        let mut s = base();
        s["process"]["cwd"] = json!(cwd);
        refused(apply_value(&standard(), s, &NoHostFs));
    }
    let mut s = base();
    s["process"]["cwd"] = json!("/procfs");
    allowed(apply_value(&standard(), s, &NoHostFs));
}

fn env_after(policy: &Policy, env: &[&str]) -> Vec<String> {
    let mut s = base();
    s["process"]["env"] = json!(env);
    let (spec, report) = allowed(apply_value(policy, s, &NoHostFs));
    let out: Vec<String> = spec["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    // no value of a removed entry in the report
    let r = serde_json::to_string(&report).unwrap();
    for e in env {
        if !out.contains(&e.to_string()) {
            if let Some((_, v)) = e.split_once('=') {
                if v.len() >= 6 {
                    assert!(!r.contains(v), "report leaks a value");
                }
            }
        }
    }
    out
}

#[test]
fn env_case_and_separator_tricks() {
    let kept = env_after(
        &sensitive(),
        &[
            "GitHub_Token=abc",
            "gh_token=abc",
            "aws-secret-access-key=abc",
            "Db.Password=abc",
            "my_api_key=abc",
            "x_Private_Key=abc",
            "github_token=x",
            "GITHUB_TOKEN=a",
            "GITHUB_TOKEN=b",
        ],
    );
    assert!(kept.is_empty(), "{kept:?}");
}

#[test]
fn env_secret_under_innocuous_name() {
    let kept = env_after(
        &sensitive(),
        &[
            "NOTE=see ghp_abcdefghijklmnopqrstuvwxyz0123456789 here",
            "URL=https://api.example/v1?key=AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "CFG={\"slack\":\"xoxb-123456789012-abcdefghijkl\"}",
            "UPSTREAM=https://deploy:glpat-abcdefghij0123456789@gitlab.example/x.git",
            "BLOB=-----BEGIN EC PRIVATE KEY-----",
            "HF=hf_abcdefghijklmnopqrstuvwxyzABCDEFGH",
            "PATH=/bin:AKIAIOSFODNN7EXAMPLE",
        ],
    );
    assert!(kept.is_empty(), "{kept:?}");
}

/// Tokens of services the old hand-coded list lacked, under innocuous names
/// (issue 12). Built from pieces: no literal token in the repository.
#[test]
fn env_more_formats_under_innocuous_names() {
    let b62 = "Zq3xR8vLm2NpT5wK9bYc4HdJ1sQ7fG6a";
    let hex = "9f2c4e6a8b0d1f3e5a7c9e1b3d5f7a9c";
    let env: Vec<String> = vec![
        format!("SENDGRID=SG.{}.{}{}", &b62[..22], b62, &b62[..11]),
        format!("DO=dop_v1_{hex}{hex}"),
        format!("PYPI=pypi-AgEIcHlwaS5vcmc{b62}{b62}"),
        format!("VAULT=hvs.{b62}{b62}{b62}"),
        format!("DOCKER=dckr_pat_{}", &b62[..27]),
        format!("CONFIG={{\"upstream_key\": \"{b62}\"}}"),
        format!("EXTRA_ARGS=--retries 3 --api-key {b62}"),
    ];
    let env: Vec<&str> = env.iter().map(String::as_str).collect();
    let kept = env_after(&sensitive(), &env);
    assert!(kept.is_empty(), "{} kept", kept.len());
}

#[test]
fn env_malformed_entries() {
    let kept = env_after(
        &sensitive(),
        &[
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "ghp_abcdefghijklmnopqrstuvwxyz0123456789=x",
            "=value",
            "NAME WITH SPACE=x",
            "GITHUB_TOKEN\u{200b}=ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "TAB\tNAME=x",
        ],
    );
    assert!(kept.is_empty(), "{kept:?}");
}

#[test]
fn env_ordinary_kept() {
    let env = [
        "PATH=/usr/local/bin:/usr/bin",
        "HOME=/home/a",
        "HOSTNAME=pod-1",
        "TERM=xterm-256color",
        "LANG=en_US.UTF-8",
        "LC_ALL=C",
        "TZ=Europe/Paris",
        "KUBERNETES_SERVICE_HOST=10.96.0.1",
        "KUBERNETES_SERVICE_PORT=443",
        "SECRET_STORE_SERVICE_HOST=10.96.3.3",
        "SECRET_STORE_SERVICE_PORT_HTTP=80",
        "SECRET_STORE_PORT_80_TCP_ADDR=10.96.3.3",
        "PYTHONUNBUFFERED=1",
        "GPG_KEY=A035C8C19219BA821ECEA86B64E628F8D684696D",
        "TOKENIZERS_PARALLELISM=false",
        "MAX_TOKENS=4096",
        "NODE_OPTIONS=--max-old-space-size=4096",
        "EMPTY=",
        "JAVA_HOME=/usr/lib/jvm/default",
        "GIT_SSH_COMMAND=ssh -o StrictHostKeyChecking=no",
    ];
    let kept = env_after(&sensitive(), &env);
    assert_eq!(kept, env.to_vec());
}

#[test]
fn capability_spelling_tricks() {
    let mut s = base();
    s["process"]["capabilities"] = json!({
        "bounding": ["cap_sys_admin", "CAP_SYS_ADMIN ", "SYS_ADMIN", "CAP_KILL"],
        "ambient": ["CAP_KILL"]
    });
    let (spec, _) = allowed(apply_value(&standard(), s, &NoHostFs));
    assert_eq!(
        spec["process"]["capabilities"]["bounding"],
        json!(["CAP_KILL"])
    );
    assert_eq!(spec["process"]["capabilities"]["ambient"], json!([]));
}

#[test]
fn hooks_of_any_kind_removed() {
    let mut s = base();
    s["hooks"] = json!({"startContainer": [{"path": "/x"}], "createContainer": [{"path": "/y"}], "futureHook": [{"path": "/z"}]});
    let (spec, _) = allowed(apply_value(&standard(), s, &NoHostFs));
    assert!(spec.get("hooks").is_none());
}

#[test]
fn annotation_tricks() {
    for (k, v) in [
        ("agentbox.dev/profile", "Standard"),
        ("agentbox.dev/profile", "standard"),
        ("agentbox.dev/profile", ""),
        ("agentbox.dev/allow-sockets", "true"),
        ("agentbox.dev/readonly-mounts", "relative/path"),
        ("agentbox.dev/strip-env", "A=B"),
        ("agentbox.dev/network", "wide-open"),
        ("agentbox.dev/network", ""),
    ] {
        let mut s = base();
        s["annotations"][k] = json!(v);
        let r = refused(apply_value(&sensitive(), s, &NoHostFs));
        assert!(r.contains(k), "{r}");
    }
    // setup phases turned off: naming setup containers would loosen → refused
    let p = Policy::from_toml_str("[phases]\nsetup_containers = false").unwrap();
    let mut s = base();
    s["annotations"]["agentbox.dev/setup-containers"] = json!("agent");
    assert!(refused(apply_value(&p, s, &NoHostFs)).contains("agentbox.dev/setup-containers"));
}

#[test]
fn network_annotation_is_left_to_the_shim() {
    // a mode name passes the policy (the shim refuses one that would loosen
    // the node's [network], and applies one that tightens it)
    for v in ["offline", "allowlist", "open"] {
        let mut s = base();
        s["annotations"]["agentbox.dev/network"] = json!(v);
        let (spec, _) = allowed(apply_value(&sensitive(), s, &NoHostFs));
        assert_eq!(spec["annotations"]["agentbox.dev/network"], json!(v));
    }
}

#[test]
fn runtime_control_annotations() {
    let mut s = base();
    for k in [
        "dev.gvisor.flag.network",
        "dev.gvisor.flag.debug",
        "dev.gvisor.internal.x",
        "io.katacontainers.config.hypervisor.kernel_params",
    ] {
        s["annotations"][k] = json!("x");
    }
    s["annotations"]["io.kubernetes.pod.name"] = json!("p");
    let (spec, _) = allowed(apply_value(&standard(), s, &NoHostFs));
    let keys: Vec<&String> = spec["annotations"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["io.kubernetes.cri.container-name", "io.kubernetes.pod.name"]
    );
}

#[test]
fn duplicate_json_keys_checked_as_emitted() {
    let raw = br#"{"process":{"env":["PATH=/bin"],"cwd":"/"},"process":{"env":["GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789"],"cwd":"/"},
      "root":{"path":"rootfs"},
      "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"network"}]}}"#;
    let d = agentbox_policy::apply(&sensitive(), raw, &NoHostFs).unwrap();
    let (spec, _) = allowed(d);
    let out = serde_json::to_string(&spec).unwrap();
    assert!(!out.contains("ghp_"), "{out}");
}

#[test]
fn exec_process_rules() {
    let ann: Map<String, Value> = serde_json::from_value(json!({
        "io.kubernetes.cri.container-name": "agent",
        "agentbox.dev/setup-containers": "clone"
    }))
    .unwrap();
    let proc_ = json!({
        "args": ["sh"], "cwd": "/",
        "env": ["PATH=/bin", "GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789"],
        "capabilities": {"bounding": ["CAP_SYS_ADMIN", "CAP_KILL"], "ambient": ["CAP_KILL"]}
    });
    let bytes = serde_json::to_vec(&proc_).unwrap();
    let sensitive = || Policy::from_toml_str("[phases]\nsetup_containers = [\"clone\"]").unwrap();
    let (p, report) = allowed(apply_process(&sensitive(), &bytes, &ann).unwrap());
    assert_eq!(p["env"], json!(["PATH=/bin"]));
    assert_eq!(p["capabilities"]["bounding"], json!(["CAP_KILL"]));
    assert_eq!(p["capabilities"]["ambient"], json!([]));
    assert_eq!(p["noNewPrivileges"], json!(true));
    assert_eq!(report.phase, "agent");

    // setup container keeps its env
    let mut ann2 = ann.clone();
    ann2.insert("io.kubernetes.cri.container-name".into(), json!("clone"));
    let (p, report) = allowed(apply_process(&sensitive(), &bytes, &ann2).unwrap());
    assert_eq!(p["env"].as_array().unwrap().len(), 2);
    assert_eq!(report.phase, "setup");

    // cwd under /proc refused
    let bad = serde_json::to_vec(&json!({"args": ["sh"], "cwd": "/proc/1/root"})).unwrap();
    refused(apply_process(&sensitive(), &bad, &ann).unwrap());
    // malformed process is an input error
    assert!(apply_process(&sensitive(), b"{\"env\": 1}", &ann).is_err());
    assert!(apply_process(&sensitive(), b"[]", &ann).is_err());
}
