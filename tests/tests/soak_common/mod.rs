//! What the soak tests share (`agentbox_soak.rs`, `agentbox_soak_faults.rs`):
//! a private containerd with agentbox and a short runsc timeout, pods with
//! one running app container, their removal.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use agentbox_e2e::{Binaries, ContainerSpec, Containerd, Cri, BUSYBOX_IMAGE, K8S_NAMESPACE};

use crate::common::*;

pub const T: Duration = Duration::from_secs(60);
/// `[runtime] runsc_timeout_seconds` in these runs: short, so a hung runsc
/// fault costs seconds.
pub const RUNSC_TIMEOUT: u64 = 5;

pub struct Setup {
    // dropped after the containerd: it holds agentbox's runsc state
    pub cfg: ConfigDir,
    pub ctd: Containerd,
    pub config: PathBuf,
    pub opts: agentbox_e2e::ContainerdOptions,
}

pub fn setup(top: &str) -> Setup {
    let cfg = ConfigDir::new();
    let config = cfg.path().join("agentbox.toml");
    let opts = options(Binaries::system(), &config);
    let ctd = Containerd::start(opts.clone()).expect("start containerd");
    let extra = format!("{top}\n[mounts]\n{}\n", managed_roots(&ctd));
    write_config(cfg.path(), "agentbox", "sandbox", &extra);
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "[runtime]\n",
        &format!("[runtime]\nrunsc_timeout_seconds = {RUNSC_TIMEOUT}\n"),
    );
    std::fs::write(&config, text).unwrap();
    ctd.import_busybox(K8S_NAMESPACE).expect("import busybox");
    ctd.import_pause().expect("import pause");
    Setup {
        ctd,
        cfg,
        config,
        opts,
    }
}

pub fn agent() -> ContainerSpec {
    ContainerSpec::new("agent", BUSYBOX_IMAGE).command(["sleep", "600"])
}

/// A pod with one running app container.
pub fn pod_with_agent(cri: &Cri, name: &str) -> (agentbox_e2e::Pod, String) {
    let pod = cri
        .run_pod(name, "soak", &format!("uid-{name}"), AGENTBOX, &[])
        .expect("RunPodSandbox");
    let cid = cri
        .create_container(&pod, &agent())
        .expect("CreateContainer");
    cri.start(&cid).expect("StartContainer");
    (pod, cid)
}

/// Remove a pod as the kubelet does: a StopContainer that fails is tried
/// again (bounded) before RemoveContainer. containerd 1.6 can lose the reply
/// to a Kill that races its own handling of the container's exit (it closes
/// the task's connection once it deleted the task: `ttrpc: closed`); the
/// kubelet retries then, and so does this.
pub fn remove_pod(cri: &Cri, pod: &agentbox_e2e::Pod) {
    if let Ok(cs) = cri.list_containers(Some(&pod.id)) {
        for c in cs {
            let mut stopped = cri.stop_container(&c.id, Duration::ZERO);
            for _ in 0..20 {
                if stopped.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
                stopped = cri.stop_container(&c.id, Duration::ZERO);
            }
            stopped.expect("StopContainer (tried 21 times)");
            cri.remove_container(&c.id).expect("RemoveContainer");
        }
    }
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
}

pub fn kill9(pid: i32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

pub fn report(line: String) {
    println!("RELIABILITY {line}");
}
