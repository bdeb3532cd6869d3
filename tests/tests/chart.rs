//! charts/agentbox with the real tools: `helm lint --strict`, `helm
//! template` on several values files, every rendered object validated
//! against the Kubernetes API schemas (kubernetes-validate, oldest and newest
//! supported versions), the values schema refusing bad input, the rendered
//! ConfigMap accepted by the node agent's own checks, and runtimeclass/
//! being exactly what the chart renders. No root needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use agentbox_e2e::chart::{chart_dir, find, run, tools, Tools};
use serde_json::Value;

/// Kubernetes versions the chart's objects must validate against.
const K8S: [&str; 2] = ["1.25.0", "1.37.0"];

fn values(name: &str) -> PathBuf {
    chart_dir().join("ci").join(name)
}

fn render(t: &Tools, files: &[&Path], extra: &[&str]) -> (String, Vec<Value>) {
    let yaml = t.template("agentbox-system", files, extra).unwrap();
    let objs = t.objects(&yaml).unwrap();
    (yaml, objs)
}

fn kinds(objs: &[Value]) -> Vec<String> {
    objs.iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn args(ds: &Value) -> Vec<String> {
    ds.pointer("/spec/template/spec/containers/0/args")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn lint_strict_on_every_values_file() {
    let t = tools().unwrap();
    for v in [
        None,
        Some("all-handlers-values.yaml"),
        Some("minimal-values.yaml"),
        Some("runtimeclass-values.yaml"),
    ] {
        let mut c = Command::new(&t.helm);
        c.args(["lint", "--strict"]).arg(chart_dir());
        if let Some(v) = v {
            c.arg("-f").arg(values(v));
        }
        let (out, _) = run(&mut c).unwrap_or_else(|e| panic!("{v:?}: {e}"));
        assert!(out.contains("0 chart(s) failed"), "{v:?}: {out}");
    }
}

#[test]
fn every_rendered_object_is_valid_kubernetes() {
    let t = tools().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for v in [
        vec![],
        vec![values("all-handlers-values.yaml")],
        vec![values("minimal-values.yaml")],
        vec![values("runtimeclass-values.yaml")],
    ] {
        let refs: Vec<&Path> = v.iter().map(PathBuf::as_path).collect();
        let (yaml, objs) = render(&t, &refs, &[]);
        assert!(!objs.is_empty());
        let f = dir.path().join("rendered.yaml");
        std::fs::write(&f, &yaml).unwrap();
        for k in K8S {
            let out = t
                .validate(&f, k)
                .unwrap_or_else(|e| panic!("{v:?} against {k}: {e}"));
            // one "passed" line per object
            assert_eq!(
                out.matches(" passed ").count(),
                objs.len(),
                "{v:?} {k}: {out}"
            );
        }
    }
    // and the validator does catch a broken object
    let f = dir.path().join("broken.yaml");
    std::fs::write(
        &f,
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata:\n  name: x\nhandlr: x\n",
    )
    .unwrap();
    assert!(t.validate(&f, K8S[1]).is_err());
}

#[test]
fn default_render() {
    let t = tools().unwrap();
    let (_, objs) = render(&t, &[], &[]);
    let k = kinds(&objs);
    for want in [
        "ServiceAccount/agentbox",
        "ConfigMap/agentbox",
        "ClusterRole/agentbox",
        "ClusterRoleBinding/agentbox",
        "Role/agentbox-uninstall",
        "RoleBinding/agentbox-uninstall",
        "DaemonSet/agentbox",
        "RuntimeClass/agentbox-gvisor",
        "DaemonSet/agentbox-uninstall",
        "Job/agentbox-uninstall-wait",
    ] {
        assert!(k.contains(&want.to_string()), "{want} not in {k:?}");
    }
    assert!(!k.iter().any(|x| x.contains("kata")), "{k:?}");
    // minimal RBAC: patch nodes, get one DaemonSet
    let cr = find(&objs, "ClusterRole", None).unwrap();
    assert_eq!(cr["rules"].as_array().unwrap().len(), 1);
    assert_eq!(cr["rules"][0]["resources"], serde_json::json!(["nodes"]));
    assert_eq!(cr["rules"][0]["verbs"], serde_json::json!(["get", "patch"]));
    let role = find(&objs, "Role", None).unwrap();
    assert_eq!(
        role["rules"][0]["resourceNames"],
        serde_json::json!(["agentbox-uninstall"])
    );
    // the agent: privileged, hostPID for the restart, the host folders it needs and no others
    let ds = find(&objs, "DaemonSet", Some("agentbox")).unwrap();
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"], true);
    assert!(spec.get("hostNetwork").is_none());
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    let host: Vec<&str> = spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.pointer("/hostPath/path").and_then(Value::as_str))
        .collect();
    assert_eq!(
        host,
        [
            "/opt/agentbox",
            "/etc/agentbox",
            "/etc/containerd",
            "/run/containerd",
            "/usr/local/bin"
        ]
    );
    assert_eq!(
        c["readinessProbe"]["exec"]["command"],
        serde_json::json!(["/usr/local/bin/agentbox-node", "is-ready"])
    );
    let a = args(ds);
    assert_eq!(a[0], "install");
    for want in [
        "--restart-namespaces-of=1",
        "--restart-command=[\"systemctl\",\"restart\",\"containerd\"]",
        "--label=agentbox.dev/runtime=true",
        "--stay",
    ] {
        assert!(a.contains(&want.to_string()), "{want} not in {a:?}");
    }
    // the hook: same agent, uninstall, pre-delete; the Job waits for it
    let hook = find(&objs, "DaemonSet", Some("agentbox-uninstall")).unwrap();
    assert_eq!(
        hook["metadata"]["annotations"]["helm.sh/hook"],
        "pre-delete"
    );
    assert_eq!(args(hook)[0], "uninstall");
    assert!(!args(hook).contains(&"--force".to_string()));
    let job = find(&objs, "Job", None).unwrap();
    assert_eq!(job["metadata"]["annotations"]["helm.sh/hook"], "pre-delete");
    assert!(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
            .as_str()
            .unwrap()
            .parse::<i32>()
            .unwrap()
            > hook["metadata"]["annotations"]["helm.sh/hook-weight"]
                .as_str()
                .unwrap()
                .parse::<i32>()
                .unwrap()
    );
    let rc = find(&objs, "RuntimeClass", None).unwrap();
    assert_eq!(rc["handler"], "agentbox-gvisor");
    assert_eq!(
        rc["scheduling"]["nodeSelector"],
        serde_json::json!({"agentbox.dev/runtime": "true"})
    );
    assert!(rc["overhead"]["podFixed"]["memory"].is_string());
    // standard labels everywhere
    for o in &objs {
        let l = &o["metadata"]["labels"];
        for key in [
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "helm.sh/chart",
        ] {
            assert!(
                l.get(key).is_some(),
                "{key} missing on {}",
                o["metadata"]["name"]
            );
        }
    }
}

#[test]
fn other_values_files_render_what_they_say() {
    let t = tools().unwrap();
    let (_, objs) = render(&t, &[&values("all-handlers-values.yaml")], &[]);
    let names: Vec<(String, String)> = objs
        .iter()
        .filter(|o| o["kind"] == "RuntimeClass")
        .map(|o| {
            (
                o["metadata"]["name"].as_str().unwrap().to_string(),
                o["handler"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("sandboxed".to_string(), "agentbox-gvisor".to_string()),
            ("sandboxed-vm".to_string(), "agentbox-kata".to_string())
        ]
    );
    let sandboxed = find(&objs, "RuntimeClass", Some("sandboxed")).unwrap();
    assert_eq!(sandboxed["scheduling"]["tolerations"][0]["key"], "agents");
    let vm = find(&objs, "RuntimeClass", Some("sandboxed-vm")).unwrap();
    assert_eq!(
        vm["overhead"]["podFixed"],
        serde_json::json!({"cpu": "250m", "memory": "160Mi"})
    );
    let ds = find(&objs, "DaemonSet", Some("agentbox")).unwrap();
    let a = args(ds);
    assert!(
        a.contains(&"--label=agentbox.dev/kata=true".to_string()),
        "{a:?}"
    );
    assert_eq!(
        ds["spec"]["template"]["spec"]["nodeSelector"],
        serde_json::json!({"node-pool": "agents"})
    );
    assert_eq!(
        ds.pointer("/spec/template/spec/containers/0/image")
            .unwrap(),
        "registry.example.com/platform/agentbox-node:0.1.0-rc1"
    );
    assert!(
        args(find(&objs, "DaemonSet", Some("agentbox-uninstall")).unwrap())
            .contains(&"--force".to_string())
    );
    let cm = find(&objs, "ConfigMap", None).unwrap();
    assert!(cm["data"]["kata.toml"]
        .as_str()
        .unwrap()
        .contains("containerd-shim-kata-v2"));

    let (_, objs) = render(&t, &[&values("minimal-values.yaml")], &[]);
    let k = kinds(&objs);
    assert_eq!(k, ["ConfigMap/agentbox", "DaemonSet/agentbox"], "{k:?}");
    let ds = find(&objs, "DaemonSet", None).unwrap();
    assert_eq!(ds["spec"]["template"]["spec"]["hostPID"], false);
    assert_eq!(
        ds["spec"]["template"]["spec"]["serviceAccountName"],
        "default"
    );
    let a = args(ds);
    assert!(
        a.contains(&"--restart-namespaces-of=0".to_string()),
        "{a:?}"
    );
    assert!(!a.iter().any(|x| x.starts_with("--label")), "{a:?}");
    let host: Vec<&str> = ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.pointer("/hostPath/path").and_then(Value::as_str))
        .collect();
    // the drop-in folder is not below the config's folder here: its own mount
    assert!(
        host.contains(&"/var/lib/rancher/k3s/agent/etc/containerd"),
        "{host:?}"
    );
    assert!(host.contains(&"/etc/containerd/conf.d"), "{host:?}");
    assert!(host.contains(&"/run/k3s/containerd"), "{host:?}");
    assert_eq!(
        host.len(),
        5,
        "no link folder where containerd reads runtime_path: {host:?}"
    );
}

#[test]
fn the_values_schema_and_the_templates_refuse_bad_values() {
    let t = tools().unwrap();
    for (set, want) in [
        ("paths.installDir=opt/agentbox", "installDir"),
        ("paths.configDir=/etc/../etc/agentbox", "configDir"),
        ("handlers.gvisor.handler=Bad_Name", "handler"),
        ("handlers.gvisor.nodeLabel=has space", "nodeLabel"),
        (
            "handlers.gvisor.runtimeClass.overhead.memory=lots",
            "memory",
        ),
        ("containerd.restart.hostPid=0", "hostPid"),
        ("agent.bogus=1", "bogus"),
        ("handlers.gvisor.enabled=false", "enable at least one"),
        (
            "handlers.gvisor.extraRuntimeConfig.runtime_path=/x",
            "extraRuntimeConfig",
        ),
    ] {
        let e = t
            .template("ns", &[], &["--set", set])
            .expect_err(set)
            .to_string();
        assert!(e.contains(want), "{set}: {e}");
    }
}

/// The rendered ConfigMap is what the node agent accepts: the fragments parse,
/// name agentbox handlers at the chart's paths, and every policy loads with
/// the shim's parser.
#[test]
fn the_node_agent_accepts_the_rendered_configmap() {
    let t = tools().unwrap();
    for v in [vec![], vec![values("all-handlers-values.yaml")]] {
        let refs: Vec<&Path> = v.iter().map(PathBuf::as_path).collect();
        let (_, objs) = render(&t, &refs, &[]);
        let cm = agentbox_e2e::kubelet::configmaps(&objs);
        let data = &cm["agentbox"];
        let dir = tempfile::tempdir().unwrap();
        for (k, text) in data {
            std::fs::write(dir.path().join(k), text).unwrap();
        }
        let bins = dir.path().join("bin");
        std::fs::create_dir(&bins).unwrap();
        for b in ["containerd-shim-agentbox-v1", "agentbox-policy"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(bins.join(b), "x").unwrap();
            std::fs::set_permissions(bins.join(b), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let layout = agentbox_node::paths::Layout::standard("/host");
        let src = agentbox_node::source::load(dir.path(), &bins, &layout)
            .unwrap_or_else(|e| panic!("{v:?}: {e}"));
        let want = if v.is_empty() { 1 } else { 2 };
        assert_eq!(src.policies.len(), want);
    }
}

#[test]
fn runtimeclass_folder_is_generated_from_the_chart() {
    let t = tools().unwrap();
    let script = agentbox_e2e::util::repo_root().join("scripts/gen-runtimeclass.py");
    let r = run(Command::new(&t.python).arg(&script).arg("--check"));
    assert!(r.is_ok(), "{r:?}");
}
