//! The files in runtimeclass/ (generated from charts/agentbox, see
//! tests/chart.rs) are what sites install by hand: the sample agentbox
//! configs load, the RuntimeClasses name the handlers the containerd
//! fragments define, and the fragments work in a real containerd (1.6 with
//! config version 2, 2.1 with version 3): a pod runs through the handler.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use agentbox_e2e::{
    skip_unless_root, Binaries, ContainerSpec, Containerd, ContainerdOptions, BUSYBOX_IMAGE,
    K8S_NAMESPACE,
};
use common::*;

fn file(name: &str) -> PathBuf {
    agentbox_e2e::util::repo_root()
        .join("runtimeclass")
        .join(name)
}

#[test]
fn sample_configs_load() {
    for name in ["gvisor.toml", "kata.toml"] {
        let c = agentbox_shim::config::Config::load(&file(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            c.policy.profile(),
            agentbox_policy::Profile::Sensitive,
            "{name}"
        );
        assert_eq!(
            c.network.map(|n| n.agent.mode),
            Some(agentbox_netpolicy::Mode::Offline),
            "{name}: pods are offline by default"
        );
    }
    // the sample spells out the shim's tuning defaults (the chart uses it)
    let g = agentbox_shim::config::Config::load(&file("gvisor.toml")).unwrap();
    assert_eq!(g.runtime.tuning, Default::default());
    assert!(!g.runtime.runsc_flags.contains_key("platform"));
}

fn handlers_in_runtimeclasses() -> Vec<String> {
    std::fs::read_to_string(file("runtimeclass.yaml"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("handler: "))
        .map(|s| s.trim().to_string())
        .collect()
}

fn fragment(name: &str) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(file(name)).unwrap()).unwrap()
}

fn runtimes<'a>(t: &'a toml::Table, plugin: &str) -> &'a toml::Table {
    t["plugins"][plugin]["containerd"]["runtimes"]
        .as_table()
        .expect("runtimes table")
}

#[test]
fn runtimeclasses_match_the_containerd_fragments() {
    let classes = handlers_in_runtimeclasses();
    assert_eq!(classes, ["agentbox-gvisor", "agentbox-kata"]);
    for (f, plugin) in [
        ("containerd-config-v2.toml", "io.containerd.grpc.v1.cri"),
        ("containerd-config-v3.toml", "io.containerd.cri.v1.runtime"),
    ] {
        let t = fragment(f);
        let r = runtimes(&t, plugin);
        let names: Vec<_> = r.keys().cloned().collect();
        assert_eq!(names, classes, "{f}");
        for (_, h) in r {
            assert_eq!(h["runtime_type"].as_str(), Some(RUNTIME_TYPE), "{f}");
            assert_eq!(
                h["pod_annotations"].as_array().unwrap()[0].as_str(),
                Some("agentbox.dev/*")
            );
            assert!(h["options"]["ConfigPath"]
                .as_str()
                .unwrap()
                .starts_with("/etc/agentbox/"));
            assert_eq!(
                h["runtime_path"].as_str(),
                Some("/opt/agentbox/bin/containerd-shim-agentbox-v1")
            );
        }
    }
}

/// Load a shipped fragment into a private containerd (ConfigPath pointed at a
/// test config) and run a pod through its `agentbox-gvisor` handler.
fn fragment_runs_a_pod(suite: &str, fragment_file: &str, plugin: &str) {
    let name = format!("fragment {fragment_file} on {suite}");
    if skip_unless_root(&name) {
        return;
    }
    let cfg = ConfigDir::new();
    let path = cfg.path().join("agentbox.toml");
    let mut t = fragment(fragment_file);
    for (_, h) in t["plugins"][plugin]["containerd"]["runtimes"]
        .as_table_mut()
        .unwrap()
        .iter_mut()
    {
        h["options"]["ConfigPath"] = toml::Value::String(path.display().to_string());
        // the node agent installs the shim in /opt/agentbox/bin; here it is the build's
        h["runtime_path"] = toml::Value::String(
            shim_dir()
                .join("containerd-shim-agentbox-v1")
                .display()
                .to_string(),
        );
    }
    let binaries = Binaries::for_suite(suite).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let mut opts = ContainerdOptions::default().with_binaries(binaries.with_shim_dir(shim_dir()));
    opts.extra_config = t;
    let ctd = Containerd::start(opts).expect("start containerd");
    write_config(
        cfg.path(),
        "agentbox",
        "sandbox",
        &format!(
            "profile = \"standard\"\n[mounts]\n{}\n",
            managed_roots(&ctd)
        ),
    );
    ctd.import_busybox(K8S_NAMESPACE).expect("import busybox");
    let cri = ctd.cri().expect("CRI");
    let pod = cri
        .run_pod("frag", "default", "uid-frag", "agentbox-gvisor", &[])
        .expect("RunPodSandbox via the shipped handler");
    let id = cri
        .create_container(
            &pod,
            &ContainerSpec::new("c", BUSYBOX_IMAGE).command([
                "sh",
                "-c",
                "dmesg | head -1; exit 0",
            ]),
        )
        .expect("create");
    cri.start(&id).expect("start");
    assert_eq!(
        cri.wait_container_exit(&id, Duration::from_secs(60))
            .unwrap(),
        0
    );
    let log = cri.container_log_text(&pod, "c", None).unwrap();
    assert!(log.contains("Starting gVisor"), "{name}: {log}");
    cri.remove_container(&id).unwrap();
    cri.stop_pod(&pod.id).unwrap();
    cri.remove_pod(&pod.id).unwrap();
}

#[test]
fn v2_fragment_runs_a_pod_on_containerd_1_6() {
    fragment_runs_a_pod(
        "bookworm",
        "containerd-config-v2.toml",
        "io.containerd.grpc.v1.cri",
    );
}

#[test]
fn v3_fragment_runs_a_pod_on_containerd_2_1() {
    if std::env::var("AGENTBOX_E2E_SUITES").is_ok_and(|s| !s.split(',').any(|x| x.trim() == "sid"))
        && agentbox_e2e::skip(
            "v3_fragment_runs_a_pod_on_containerd_2_1",
            "AGENTBOX_E2E_SUITES excludes sid",
        )
    {
        return;
    }
    fragment_runs_a_pod(
        "sid",
        "containerd-config-v3.toml",
        "io.containerd.cri.v1.runtime",
    );
}
