//! The node agent end to end: the node-agent image built here with buildah,
//! its container exactly as `helm template` renders the chart's DaemonSets
//! (image, command, args, env, mounts, security context, hostPID), run
//! through CRI on a private containerd of each version, installing agentbox
//! into that containerd's node layout (see `agentbox_e2e::node`). Which version
//! carries what, to keep `make test` short:
//!
//! * 1.6 (config v2, in place): the long path — install, a gVisor pod with
//!   the policy, a runc pod untouched, install again (no change, no
//!   restart), new shim + new policy under a running pod, uninstall refused
//!   while agentbox pods run, then uninstall with the config back byte for byte.
//! * 2.1 (config v3, drop-in through `imports`): install, a gVisor pod,
//!   uninstall; the admin's file is never written.
//! * 1.7 (config v2): a config containerd rejects, on purpose: rolled back,
//!   containerd runs with the old config.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use agentbox_e2e::node::*;
use agentbox_e2e::node_image::{bin_dir, NODE_BINARIES};
use agentbox_e2e::{skip_unless_root, ContainerSpec, Pod, BUSYBOX_IMAGE};
use common::*;

const SHIM: &str = "containerd-shim-agentbox-v1";

fn suite_enabled(name: &str, suite: &str) -> bool {
    if std::env::var("AGENTBOX_E2E_SUITES").is_ok_and(|s| !s.split(',').any(|x| x.trim() == suite))
    {
        eprintln!("SKIPPED {name}: AGENTBOX_E2E_SUITES excludes {suite}");
        return false;
    }
    !skip_unless_root(name)
}

/// A pod on `handler` with one long-running busybox container (env included).
fn sleeper(n: &Node, name: &str, handler: &str) -> (Pod, String) {
    let pod = n
        .cri
        .run_pod(name, "agents", &format!("uid-{name}"), handler, &[])
        .unwrap_or_else(|e| panic!("pod {name} on {handler}: {e:#}"));
    let id = n
        .cri
        .create_container(
            &pod,
            &ContainerSpec::new("main", BUSYBOX_IMAGE)
                .command(["sleep", "600"])
                .env("GITHUB_TOKEN", "ghp_e2eNodeAgentNotARealToken")
                .env("AWS_REGION", "eu-west-1"),
        )
        .unwrap();
    n.cri.start(&id).unwrap();
    (pod, id)
}

fn exec(n: &Node, id: &str, cmd: &[&str]) -> String {
    let r = n.cri.exec_sync(id, cmd, Duration::from_secs(30)).unwrap();
    assert_eq!(r.exit_code, 0, "{cmd:?}: {}", r.stderr);
    r.stdout
}

fn drop_pod(n: &Node, pod: &Pod, id: &str) {
    n.cri.stop_container(id, Duration::from_secs(5)).unwrap();
    n.cri.remove_container(id).unwrap();
    n.cri.stop_pod(&pod.id).unwrap();
    n.cri.remove_pod(&pod.id).unwrap();
}

/// The agentbox daemon serving a pod, and the inode of the binary it runs.
fn daemon_of(pod: &Pod) -> (i32, u64, String) {
    let pids = pids_matching(&[SHIM, &format!("-id {}", pod.id)]);
    assert_eq!(pids.len(), 1, "one daemon for {}: {pids:?}", pod.id);
    let exe = std::fs::read_link(format!("/proc/{}/exe", pids[0])).unwrap();
    let ino = std::fs::metadata(format!("/proc/{}/exe", pids[0]))
        .unwrap()
        .ino();
    (pids[0], ino, exe.display().to_string())
}

#[test]
fn install_upgrade_uninstall_on_containerd_1_6() {
    let name = "install_upgrade_uninstall_on_containerd_1_6";
    if !suite_enabled(name, "bookworm") {
        return;
    }
    let mut n = Node::start("bookworm", false);
    let (plain, plain_id) = sleeper(&n, "plain", "runc");
    let policy1 = gvisor_policy(&n.dir, &n.ctd, "");
    n.render(&n.values(&policy1, ""));

    // install: one restart, the handler loaded, the admin's text kept
    let (agent, out) = n.run_agent("agentbox");
    assert_eq!(out, Agent::Ready, "{}", n.log(&agent));
    assert_eq!(n.restarts, 1);
    let log = n.log(&agent);
    assert!(
        log.contains("containerd restarted") && log.contains("in-place"),
        "{log}"
    );
    assert!(n.loaded().contains(&"agentbox-gvisor".to_string()));
    let wired = n.config();
    assert!(
        wired.starts_with(&n.admin_config),
        "admin's bytes kept as they were"
    );
    // the agent survived the restart it caused, and so did the runc pod
    let st = n.cri.container_status(&agent.containers[0].1).unwrap();
    assert_eq!(
        st.state,
        agentbox_e2e::cri::v1::ContainerState::ContainerRunning as i32
    );
    let host_kernel = std::fs::read_to_string("/proc/version").unwrap();
    assert_eq!(
        exec(&n, &plain_id, &["cat", "/proc/version"]),
        host_kernel,
        "runc: the host's kernel"
    );

    // a pod on the installed handler: gVisor, with the policy
    let (p1, c1) = sleeper(&n, "agent-1", "agentbox-gvisor");
    assert!(exec(&n, &c1, &["dmesg"]).contains("Starting gVisor"));
    let env1 = exec(&n, &c1, &["env"]);
    assert!(
        env1.contains("AWS_REGION=eu-west-1") && !env1.contains("GITHUB_TOKEN"),
        "{env1}"
    );
    let shim_path = n.host("opt/agentbox/bin").join(SHIM);
    let (d1, ino1, _) = daemon_of(&p1);
    assert_eq!(ino1, std::fs::metadata(&shim_path).unwrap().ino());

    // install again (a second agent pod, as after a node reboot): nothing
    let (again, out) = n.run_agent("agentbox");
    assert_eq!(out, Agent::Ready, "{}", n.log(&again));
    assert!(
        n.log(&again)
            .contains("nothing changed; no containerd restart"),
        "{}",
        n.log(&again)
    );
    assert_eq!(n.restarts, 1);
    assert_eq!(n.config(), wired);
    n.remove(&again);
    n.remove(&agent);

    // a new image (new shim binary) and a new policy while agent-1 runs
    let bins2 = tempfile::tempdir().unwrap();
    for b in NODE_BINARIES {
        std::fs::copy(bin_dir().join(b), bins2.path().join(b)).unwrap();
    }
    // a different build of the shim: one more (non-debug) ELF section
    let note = bins2.path().join("note");
    std::fs::write(&note, "agentbox e2e: a new build\n").unwrap();
    let o = std::process::Command::new("objcopy")
        .arg(format!("--add-section=.agentbox_e2e={}", note.display()))
        .arg(bins2.path().join(SHIM))
        .status()
        .unwrap();
    assert!(o.success());
    n.use_image("v2", bins2.path());
    let policy2 = gvisor_policy(&n.dir, &n.ctd, "[env]\nallow = [\"GITHUB_TOKEN\"]\n");
    n.render(&n.values(&policy2, ""));
    let (up, out) = n.run_agent("agentbox");
    assert_eq!(out, Agent::Ready, "{}", n.log(&up));
    assert!(
        n.log(&up)
            .contains("2 file(s) changed; no containerd restart"),
        "{}",
        n.log(&up)
    );
    assert_eq!(n.restarts, 1, "no restart for a binary or a policy");
    assert_eq!(n.config(), wired);
    // the running pod keeps its daemon (the old, now unlinked binary) and its spec
    let (d1b, _, exe1) = daemon_of(&p1);
    assert_eq!(d1b, d1);
    assert!(exe1.ends_with("(deleted)"), "{exe1}");
    assert!(!exec(&n, &c1, &["env"]).contains("GITHUB_TOKEN"));
    // the next pod gets both
    let (p2, c2) = sleeper(&n, "agent-2", "agentbox-gvisor");
    assert!(exec(&n, &c2, &["env"]).contains("GITHUB_TOKEN=ghp_e2eNodeAgentNotARealToken"));
    let (_, ino2, exe2) = daemon_of(&p2);
    assert_eq!(ino2, std::fs::metadata(&shim_path).unwrap().ino());
    assert_ne!(ino2, ino1);
    assert!(!exe2.ends_with("(deleted)"), "{exe2}");

    // uninstall (the pre-delete hook's pod) refuses while agentbox pods run
    let (u1, out) = n.run_agent("agentbox-uninstall");
    let ulog = n.log(&u1);
    assert_eq!(out, Agent::Exited(3), "{ulog}");
    assert!(
        ulog.contains("2 agentbox pod(s) still run on this node"),
        "{ulog}"
    );
    assert_eq!(n.restarts, 1);
    assert_eq!(n.config(), wired);
    assert!(exec(&n, &c1, &["true"]).is_empty());
    n.remove(&u1);

    drop_pod(&n, &p1, &c1);
    drop_pod(&n, &p2, &c2);
    let (u2, out) = n.run_agent("agentbox-uninstall");
    let ulog = n.log(&u2);
    assert_eq!(out, Agent::Ready, "{ulog}");
    assert!(ulog.contains("restored byte for byte"), "{ulog}");
    assert_eq!(n.restarts, 2);
    assert_eq!(
        n.config(),
        n.admin_config,
        "the admin's config, byte for byte"
    );
    assert!(!n.loaded().contains(&"agentbox-gvisor".to_string()));
    for d in ["opt/agentbox", "etc/agentbox"] {
        let left: Vec<_> = std::fs::read_dir(n.host(d)).unwrap().flatten().collect();
        assert!(left.is_empty(), "{d}: {left:?}");
    }
    n.remove(&u2);
    n.remove(&up);
    // the runc pod ran through all of it
    assert_eq!(exec(&n, &plain_id, &["cat", "/proc/version"]), host_kernel);
    drop_pod(&n, &plain, &plain_id);
}

#[test]
fn install_and_uninstall_by_drop_in_on_containerd_2_1() {
    let name = "install_and_uninstall_by_drop_in_on_containerd_2_1";
    if !suite_enabled(name, "sid") {
        return;
    }
    let mut n = Node::start("sid", true);
    let policy = gvisor_policy(&n.dir, &n.ctd, "");
    n.render(&n.values(&policy, ""));
    let (agent, out) = n.run_agent("agentbox");
    assert_eq!(out, Agent::Ready, "{}", n.log(&agent));
    assert!(n.log(&agent).contains("drop-in"), "{}", n.log(&agent));
    assert_eq!(n.restarts, 1);
    assert_eq!(
        n.config(),
        n.admin_config,
        "the admin's file is not written"
    );
    let dropin = n.host("etc/containerd/conf.d/agentbox.toml");
    let text = std::fs::read_to_string(&dropin).unwrap();
    assert!(text.contains("io.containerd.cri.v1.runtime"), "{text}");
    let loaded = n.loaded();
    assert!(
        loaded.contains(&"agentbox-gvisor".to_string()) && loaded.contains(&"runc".to_string()),
        "{loaded:?}"
    );
    let (p, c) = sleeper(&n, "agent-1", "agentbox-gvisor");
    assert!(exec(&n, &c, &["dmesg"]).contains("Starting gVisor"));
    assert!(!exec(&n, &c, &["env"]).contains("GITHUB_TOKEN"));
    drop_pod(&n, &p, &c);
    let (u, out) = n.run_agent("agentbox-uninstall");
    assert_eq!(out, Agent::Ready, "{}", n.log(&u));
    assert_eq!(n.restarts, 2);
    assert!(!dropin.exists());
    assert_eq!(n.config(), n.admin_config);
    assert!(!n.loaded().contains(&"agentbox-gvisor".to_string()));
    n.remove(&u);
    n.remove(&agent);
}

#[test]
fn a_config_containerd_rejects_is_rolled_back_on_containerd_1_7() {
    let name = "a_config_containerd_rejects_is_rolled_back_on_containerd_1_7";
    if !suite_enabled(name, "trixie") {
        return;
    }
    let mut n = Node::start("trixie", false);
    let before = n.loaded();
    let policy = gvisor_policy(&n.dir, &n.ctd, "");
    // a handler option of the wrong type, on purpose: containerd's CRI cannot load it
    n.render(&n.values(
        &policy,
        "    extraRuntimeConfig:\n      privileged_without_host_devices: \"yes\"\n",
    ));
    let (agent, out) = n.run_agent("agentbox");
    let log = n.log(&agent);
    assert_eq!(out, Agent::Exited(1), "{log}");
    assert!(
        log.contains("rolled back: containerd runs with its previous config"),
        "{log}"
    );
    assert_eq!(
        n.restarts, 2,
        "the failed restart, then the one on the old config"
    );
    assert_eq!(n.config(), n.admin_config);
    assert_eq!(n.loaded(), before);
    for d in ["opt/agentbox", "etc/agentbox"] {
        let left: Vec<_> = std::fs::read_dir(n.host(d)).unwrap().flatten().collect();
        assert!(left.is_empty(), "{d}: {left:?}");
    }
    // containerd works: a runc pod runs
    let (p, c) = sleeper(&n, "after", "runc");
    assert!(exec(&n, &c, &["cat", "/proc/version"]).contains("Linux"));
    drop_pod(&n, &p, &c);
    n.remove(&agent);
}
