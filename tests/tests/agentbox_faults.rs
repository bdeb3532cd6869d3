//! Faults: the agentbox daemon killed with SIGKILL, then containerd's
//! cleanup; containerd itself restarted under a running pod. Needs root.

mod common;

use std::time::Duration;

use agentbox_e2e::cri::v1::ContainerState;
use agentbox_e2e::{
    skip_unless_root, Binaries, ContainerSpec, Containerd, BUSYBOX_IMAGE, DEFAULT_NAMESPACE,
    K8S_NAMESPACE,
};
use common::*;

const T: Duration = Duration::from_secs(60);

/// `kill -9` of the agentbox daemon: containerd's cleanup (the shim's
/// `delete` action) leaves no runsc process, mount or runsc state behind.
#[test]
fn killed_daemon_leaves_nothing_behind() {
    if skip_unless_root("killed_daemon_leaves_nothing_behind") {
        return;
    }
    let cfg = ConfigDir::new();
    let path = write_config(cfg.path(), "agentbox", "none", "profile = \"standard\"");
    let ctd = Containerd::start(options(Binaries::system(), &path)).expect("start containerd");
    ctd.import_busybox(DEFAULT_NAMESPACE)
        .expect("import busybox");
    let id = ctd.unique_id("ab-kill9");
    run_detached(&ctd, &path, &id, &["sleep", "600"]).expect("ctr run -d");
    let daemon = pids_matching(&["containerd-shim-agentbox-v1", &format!("-id {id}")]);
    assert_eq!(daemon.len(), 1, "one agentbox daemon for {id}: {daemon:?}");
    let runsc_root = cfg.path().join("ab-runsc").join(DEFAULT_NAMESPACE);
    assert!(
        !pids_matching(&["runsc", &id]).is_empty(),
        "no runsc process for {id}"
    );
    let state_of_id = || {
        agentbox_e2e::leaks::runsc_state(&runsc_root)
            .into_iter()
            .filter(|p| p.display().to_string().contains(&id))
            .count()
    };
    assert!(state_of_id() > 0, "no runsc state for {id}");
    let socket = agentbox_e2e::util::list_procs()
        .into_iter()
        .find(|p| p.pid == daemon[0])
        .and_then(|p| agentbox_e2e::leaks::shim_socket(&p))
        .expect("the daemon's socket");
    assert!(socket.exists());
    let bundle = bundle_of(&ctd, DEFAULT_NAMESPACE, &id);
    assert!(
        !agentbox_e2e::util::mounts_under(&bundle).is_empty(),
        "rootfs not mounted in {}",
        bundle.display()
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    // containerd notices the dead shim and runs `containerd-shim-agentbox-v1 delete`
    let clean = wait_until(Duration::from_secs(30), || {
        pids_matching(&["runsc", &id]).is_empty()
            && agentbox_e2e::util::mounts_under(&bundle).is_empty()
    });
    assert!(
        clean,
        "left behind: {:?} / {:?}\n{}",
        processes_mentioning(&id),
        agentbox_e2e::util::mounts_under(&bundle),
        ctd.log_tail(40)
    );
    let list = std::process::Command::new("runsc")
        .arg(format!("--root={}", runsc_root.display()))
        .args(["list", "-quiet"])
        .output()
        .unwrap();
    assert!(
        list.status.success(),
        "runsc list: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&list.stdout)
            .lines()
            .any(|l| l.trim() == id),
        "runsc still knows {id}"
    );
    assert_eq!(state_of_id(), 0, "runsc state of {id} left");
    // the dead daemon's socket went with the cleanup
    assert!(!socket.exists(), "{} left behind", socket.display());
    let recs = audit(cfg.path());
    let cleanups: Vec<_> = recs
        .iter()
        .filter(|r| r["event"] == "cleanup" && r["container_id"] == id.as_str())
        .collect();
    assert_eq!(cleanups.len(), 1, "{recs:#?}");
    assert_eq!(cleanups[0]["result"], "cleaned", "{recs:#?}");
    // containerd lets the task and container go
    let _ = ctd.ctr(&["task", "rm", "-f", &id]);
    let o = ctd.ctr(&["containers", "rm", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// containerd restarted (SIGKILL, then started again) under a running pod
/// reconnects to agentbox: the pod stays ready and can be exec'd, stopped and
/// removed.
#[test]
fn containerd_restart_reconnects_to_the_pod() {
    if skip_unless_root("containerd_restart_reconnects_to_the_pod") {
        return;
    }
    let cfg = ConfigDir::new();
    let path = cfg.path().join("agentbox.toml");
    let opts = options(Binaries::system(), &path);
    let mut ctd = Containerd::start(opts.clone()).expect("start containerd");
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
    let (pod, cid) = {
        let cri = ctd.cri().expect("CRI client");
        let pod = cri
            .run_pod("survivor", "ops", "uid-survivor", AGENTBOX, &[])
            .expect("RunPodSandbox");
        let spec = ContainerSpec::new("agent", BUSYBOX_IMAGE).command(["sleep", "600"]);
        let cid = cri.create_container(&pod, &spec).expect("CreateContainer");
        cri.start(&cid).expect("StartContainer");
        (pod, cid)
    };
    // this containerd's daemons only: other tests run their own at the same time
    let address = ctd.address().display().to_string();
    let ours = || pids_matching(&["containerd-shim-agentbox-v1", &address]);
    let daemons_before = ours();
    assert_eq!(
        daemons_before.len(),
        1,
        "one daemon for the pod: {daemons_before:?}"
    );

    ctd.restart(&opts).expect("restart containerd");

    let cri = ctd.cri().expect("CRI client after restart");
    let ready = wait_until(Duration::from_secs(30), || {
        cri.container_status(&cid)
            .map(|s| s.state == ContainerState::ContainerRunning as i32)
            .unwrap_or(false)
    });
    assert!(
        ready,
        "container not running after restart\n{}",
        ctd.log_tail(40)
    );
    assert_eq!(ours(), daemons_before, "the same daemon serves the pod");
    let r = cri
        .exec_sync(&cid, &["sh", "-c", "echo still-here"], T)
        .expect("ExecSync after restart");
    assert_eq!((r.exit_code, r.stdout.as_str()), (0, "still-here\n"));
    cri.stop_container(&cid, Duration::from_secs(2))
        .expect("StopContainer");
    cri.remove_container(&cid).expect("RemoveContainer");
    cri.stop_pod(&pod.id).expect("StopPodSandbox");
    cri.remove_pod(&pod.id).expect("RemovePodSandbox");
    let gone = wait_until(Duration::from_secs(10), || ours().is_empty());
    assert!(gone, "the daemon outlived its pod");
}

/// With the shim backend, a containerd restart reconnects to agentbox, not
/// straight to the delegate: an Exec after the restart still goes through the
/// policy and the audit log.
#[test]
fn containerd_restart_keeps_agentbox_in_front_of_the_delegate() {
    if skip_unless_root("containerd_restart_keeps_agentbox_in_front_of_the_delegate") {
        return;
    }
    let cfg = ConfigDir::new();
    let path = write_config(cfg.path(), "agentbox", "none", "profile = \"standard\"");
    use_runc_delegate(&path);
    let opts = options(Binaries::system(), &path);
    let mut ctd = Containerd::start(opts.clone()).expect("start containerd");
    ctd.import_busybox(DEFAULT_NAMESPACE)
        .expect("import busybox");
    let id = ctd.unique_id("ab-fwd-restart");
    run_detached(&ctd, &path, &id, &["sleep", "600"]).expect("ctr run -d");
    let bundle = bundle_of(&ctd, DEFAULT_NAMESPACE, &id);
    let before = std::fs::read_to_string(bundle.join("address")).unwrap();

    ctd.restart(&opts).expect("restart containerd");

    assert_eq!(
        std::fs::read_to_string(bundle.join("address")).unwrap(),
        before
    );
    let o = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after-restart",
        &id,
        "sh",
        "-c",
        "echo through-agentbox",
    ]);
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        ctd.log_tail(30)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through-agentbox\n");
    let recs = audit(cfg.path());
    assert!(
        recs.iter()
            .any(|r| r["event"] == "exec" && r["exec_id"] == "after-restart"),
        "the exec bypassed agentbox: {recs:#?}"
    );
    let k = ctd.ctr(&["task", "kill", "-s", "KILL", &id]);
    assert!(k.status.success());
    std::thread::sleep(Duration::from_millis(500));
    let _ = ctd.ctr(&["task", "rm", "-f", &id]);
    let _ = ctd.ctr(&["containers", "rm", &id]);
}

/// `kill -9` of agentbox in front of a delegate: containerd's cleanup runs
/// the delegate's own `delete` and ends the delegate daemon; the workload is gone.
#[test]
fn killed_daemon_with_a_delegate_leaves_nothing_behind() {
    if skip_unless_root("killed_daemon_with_a_delegate_leaves_nothing_behind") {
        return;
    }
    let cfg = ConfigDir::new();
    let path = write_config(cfg.path(), "agentbox", "none", "profile = \"standard\"");
    use_runc_delegate(&path);
    let ctd = Containerd::start(options(Binaries::system(), &path)).expect("start containerd");
    ctd.import_busybox(DEFAULT_NAMESPACE)
        .expect("import busybox");
    let id = ctd.unique_id("ab-kill9-fwd");
    run_detached(&ctd, &path, &id, &["sleep", "654"]).expect("ctr run -d");
    let id_arg = format!("-id {id}");
    let daemon = pids_matching(&["containerd-shim-agentbox-v1", &id_arg]);
    let delegate = pids_matching(&["containerd-shim-runc-v2", &id_arg]);
    assert_eq!(
        (daemon.len(), delegate.len()),
        (1, 1),
        "{daemon:?} {delegate:?}"
    );
    assert_eq!(pids_matching(&["sleep 654"]).len(), 1, "the workload runs");
    let bundle = bundle_of(&ctd, DEFAULT_NAMESPACE, &id);
    let state = std::fs::read_to_string(bundle.join("agentbox-state.json")).unwrap_or_default();
    assert!(
        state.contains(&format!("\"delegate_pid\":{}", delegate[0])),
        "the delegate's pid is recorded: {state}"
    );
    // both daemons' sockets, which must not outlive them
    let sockets: Vec<_> = agentbox_e2e::util::list_procs()
        .into_iter()
        .filter(|p| p.pid == daemon[0] || p.pid == delegate[0])
        .filter_map(|p| agentbox_e2e::leaks::shim_socket(&p))
        .collect();
    assert_eq!(sockets.len(), 2, "{sockets:?}");
    assert!(sockets.iter().all(|s| s.exists()), "{sockets:?}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let clean = wait_until(Duration::from_secs(30), || {
        pids_matching(&["containerd-shim-runc-v2", &id_arg]).is_empty()
            && pids_matching(&["sleep 654"]).is_empty()
            && agentbox_e2e::util::mounts_under(&bundle).is_empty()
    });
    assert!(
        clean,
        "left behind: {:?}\n{}",
        processes_mentioning(&id),
        ctd.log_tail(40)
    );
    let left: Vec<_> = sockets.iter().filter(|s| s.exists()).collect();
    assert!(left.is_empty(), "sockets left behind: {left:?}");
    let recs = audit(cfg.path());
    assert!(
        recs.iter().any(|r| r["event"] == "cleanup"
            && r["container_id"] == id.as_str()
            && r["result"] == "cleaned"),
        "{recs:#?}"
    );
    let _ = ctd.ctr(&["task", "rm", "-f", &id]);
    let o = ctd.ctr(&["containers", "rm", &id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
