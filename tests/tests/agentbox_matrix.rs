//! The containerd version × backend matrix: containerd 1.6 (Debian 12), 1.7
//! (Debian 13) and 2.1 (Debian unstable), each through agentbox's runsc
//! backend and its shim backend (in front of the same containerd's
//! `containerd-shim-runc-v2`, `sandbox = "none"`). Each case runs a `ctr`
//! container and a CRI pod and checks the policy from inside. Needs root; the
//! 1.7 and 2.1 binaries are fetched once from Debian's archive
//! (`scripts/fetch-containerd.sh`). `AGENTBOX_E2E_SUITES=bookworm` limits the
//! matrix to the system containerd.

mod common;

use std::time::Duration;

use agentbox_e2e::{
    skip, skip_unless_root, Binaries, ContainerSpec, Containerd, BUSYBOX_IMAGE, DEFAULT_NAMESPACE,
    K8S_NAMESPACE,
};
use common::*;

const T: Duration = Duration::from_secs(60);

fn suite_enabled(suite: &str) -> bool {
    match std::env::var("AGENTBOX_E2E_SUITES") {
        Ok(list) => list.split(',').any(|s| s.trim() == suite),
        Err(_) => true,
    }
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Runsc,
    RuncShim,
}

fn case(suite: &str, (major, minor): (u32, u32), backend: Backend) {
    let name = format!("matrix {suite} {backend:?}");
    if skip_unless_root(&name) {
        return;
    }
    if !suite_enabled(suite) && skip(&name, &format!("AGENTBOX_E2E_SUITES excludes {suite}")) {
        return;
    }
    let binaries =
        Binaries::for_suite(suite).unwrap_or_else(|e| panic!("containerd for {suite}: {e:#}"));
    let cfg = ConfigDir::new();
    let path = cfg.path().join("agentbox.toml");
    let ctd = Containerd::start(options(binaries, &path)).expect("start containerd");
    let runtime = match backend {
        Backend::Runsc => String::new(),
        Backend::RuncShim => {
            "backend = \"shim\"\nshim = \"containerd-shim-runc-v2\"\nsandbox = \"none\"\n"
                .to_string()
        }
    };
    let network = match backend {
        Backend::Runsc => "sandbox",
        Backend::RuncShim => "none",
    };
    write_config(
        cfg.path(),
        "agentbox",
        network,
        &format!(
            "profile = \"standard\"\n[mounts]\n{}\n",
            managed_roots(&ctd)
        ),
    );
    if !runtime.is_empty() {
        // the shim backend's settings go into the [runtime] table write_config made
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("[runtime]\n", &format!("[runtime]\n{runtime}"));
        std::fs::write(&path, text).unwrap();
    }
    eprintln!("{name}: containerd {}", ctd.version());
    // the suite serves the containerd this entry of the matrix stands for
    let v = ctd.version();
    assert_eq!(
        (v.major, v.minor),
        (major, minor),
        "{name}: the {suite} suite served containerd {v}"
    );
    let secret = format!("ghs_{}", "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8");

    // ctr: the policy from inside, exit status, --net-host refused
    ctd.import_busybox(DEFAULT_NAMESPACE)
        .expect("import busybox");
    let id = ctd.unique_id("mx");
    let env = format!("GH_TOKEN={secret}");
    let cfg_s = path.display().to_string();
    let o = ctd.ctr_run(
        &[
            "--runtime",
            RUNTIME_TYPE,
            "--runtime-config-path",
            &cfg_s,
            "--env",
            &env,
            "--env",
            "LANG=C.UTF-8",
        ],
        BUSYBOX_IMAGE,
        &id,
        &["sh", "-c", "env; dmesg 2>/dev/null | head -1; exit 9"],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(
        o.status.code(),
        Some(9),
        "{name}: {out}\n{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        ctd.log_tail(40)
    );
    assert!(
        !out.contains("GH_TOKEN") && !out.contains(&secret),
        "{name}: secret visible"
    );
    assert!(out.contains("LANG=C.UTF-8"), "{name}: {out}");
    match backend {
        Backend::Runsc => assert!(out.contains("Starting gVisor"), "{name}: {out}"),
        Backend::RuncShim => assert!(!out.contains("Starting gVisor"), "{name}: {out}"),
    }
    let id2 = ctd.unique_id("mx-nethost");
    let o = ctd.ctr_run(
        &[
            "--runtime",
            RUNTIME_TYPE,
            "--runtime-config-path",
            &cfg_s,
            "--net-host",
        ],
        BUSYBOX_IMAGE,
        &id2,
        &["true"],
    );
    assert!(!o.status.success(), "{name}: --net-host ran");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("host network namespace"),
        "{name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = ctd.ctr(&["containers", "rm", &id2]);

    // CRI: a pod with a container, exec, the policy, stop and remove
    ctd.import_busybox(K8S_NAMESPACE)
        .expect("import busybox (k8s.io)");
    let cri = ctd.cri().expect("CRI client");
    let pod = cri
        .run_pod("mx-pod", "mx", "uid-mx", AGENTBOX, &[])
        .expect("RunPodSandbox");
    let spec = ContainerSpec::new("agent", BUSYBOX_IMAGE)
        .command(["sleep", "300"])
        .env("GH_TOKEN", &secret)
        .env("EDITOR", "vi");
    let cid = cri.create_container(&pod, &spec).expect("CreateContainer");
    cri.start(&cid).expect("StartContainer");
    let r = cri
        .exec_sync(&cid, &["sh", "-c", "env; exit 2"], T)
        .expect("ExecSync");
    assert_eq!(r.exit_code, 2, "{name}: {r:?}");
    assert!(
        !r.stdout.contains(&secret) && r.stdout.contains("EDITOR=vi"),
        "{name}: {r:?}"
    );
    let ip = cri.pod_ip(&pod.id).expect("pod ip");
    assert!(ctd.network().contains(&ip), "{name}: pod ip {ip}");
    cri.stop_container(&cid, Duration::from_secs(2))
        .expect("StopContainer");
    cri.remove_container(&cid).expect("RemoveContainer");
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");

    let recs = audit(cfg.path());
    let creates = recs.iter().filter(|r| r["event"] == "create").count();
    assert!(creates >= 3, "{name}: {creates} create records: {recs:#?}");
    let expected = match backend {
        Backend::Runsc => "gvisor",
        Backend::RuncShim => "none",
    };
    assert!(
        recs.iter()
            .filter(|r| r["event"] == "create")
            .all(|r| r["sandbox"] == expected),
        "{name}: {recs:#?}"
    );
    assert!(!std::fs::read_to_string(cfg.path().join("audit.jsonl"))
        .unwrap()
        .contains(&secret));
}

#[test]
fn containerd_1_6_runsc() {
    case("bookworm", (1, 6), Backend::Runsc);
}
#[test]
fn containerd_1_6_shim_backend() {
    case("bookworm", (1, 6), Backend::RuncShim);
}
#[test]
fn containerd_1_7_runsc() {
    case("trixie", (1, 7), Backend::Runsc);
}
#[test]
fn containerd_1_7_shim_backend() {
    case("trixie", (1, 7), Backend::RuncShim);
}
#[test]
fn containerd_2_1_runsc() {
    case("sid", (2, 1), Backend::Runsc);
}
#[test]
fn containerd_2_1_shim_backend() {
    case("sid", (2, 1), Backend::RuncShim);
}
