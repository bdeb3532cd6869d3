//! The fast runsc configuration (`[runtime.tuning]`): what the defaults keep
//! exact and what each fast path costs — workspace writes reach the host
//! volume, a root filesystem overlay in memory is paid for by the pod's own
//! memory cgroup, a file-backed overlay leaves nothing behind (after the pod
//! and after `kill -9` of its daemon), and what an emptyDir hint changes for
//! someone reading the volume from the host. Needs root.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agentbox_e2e::{
    skip_unless_root, Binaries, ContainerSpec, Containerd, Cri, Pod, BUSYBOX_IMAGE,
    DEFAULT_NAMESPACE, K8S_NAMESPACE,
};
use common::*;

const T: Duration = Duration::from_secs(60);

/// A containerd whose `agentbox` handler runs the standard profile with the
/// default tuning plus `tuning` (lines of `[runtime.tuning]`); a kubelet pods
/// folder in the config dir. Returns the config path too.
fn start(cfg: &ConfigDir, tuning: &str) -> (Containerd, PathBuf) {
    let path = cfg.path().join("agentbox.toml");
    let ctd = Containerd::start(options(Binaries::system(), &path)).expect("start containerd");
    let pods = pods_dir(cfg);
    std::fs::create_dir_all(&pods).unwrap();
    let roots = managed_roots(&ctd).replace(
        "managed_roots = [",
        &format!(
            "managed_roots = [\"{}/\", \"{}/\", ",
            pods.display(),
            host_data(cfg).display()
        ),
    );
    let extra = format!(
        "profile = \"standard\"\n[mounts]\n{roots}\n[runtime.tuning]\nkubelet_pods_dir = \"{}\"\noverlay_dir = \"{}\"\n{tuning}\n",
        pods.display(),
        cfg.path().join("overlay").display()
    );
    write_config(cfg.path(), "agentbox", "none", &extra);
    ctd.import_busybox(K8S_NAMESPACE).expect("import busybox");
    (ctd, path)
}

fn pods_dir(cfg: &ConfigDir) -> PathBuf {
    cfg.path().join("kubelet/pods")
}

/// A hostPath-like folder (a plain bind outside the kubelet's pods folder).
fn host_data(cfg: &ConfigDir) -> PathBuf {
    cfg.path().join("hostdata")
}

/// The pod's emptyDir `workspace`, as the kubelet makes it before RunPodSandbox.
fn workspace(cfg: &ConfigDir, uid: &str) -> PathBuf {
    let ws = pods_dir(cfg)
        .join(uid)
        .join("volumes/kubernetes.io~empty-dir/workspace");
    std::fs::create_dir_all(&ws).unwrap();
    ws
}

fn sh(cri: &Cri, id: &str, script: &str) -> String {
    let r = cri.exec_sync(id, &["sh", "-c", script], T).expect("exec");
    assert_eq!(r.exit_code, 0, "{script}: {}{}", r.stdout, r.stderr);
    r.stdout
}

fn with_workspace(name: &str, ws: &Path) -> ContainerSpec {
    ContainerSpec::new(name, BUSYBOX_IMAGE)
        .command(["sleep", "300"])
        .mount(ws, "/workspace", false)
}

fn remove(cri: &Cri, pod: &Pod, ids: &[&str]) {
    for id in ids {
        let _ = cri.stop_container(id, Duration::from_secs(1));
        let _ = cri.remove_container(id);
    }
    let _ = cri.stop_pod(&pod.id);
    let _ = cri.remove_pod(&pod.id);
}

/// The `tuning` audit record of a sandbox.
fn tuning_record(cfg: &ConfigDir, sandbox: &str) -> serde_json::Value {
    audit(cfg.path())
        .into_iter()
        .find(|r| r["event"] == "tuning" && r["container_id"] == sandbox)
        .unwrap_or_else(|| panic!("no tuning record for {sandbox}: {:#?}", audit(cfg.path())))
}

/// The agent writes its workspace: new files, an append to a file the host
/// made, a rename, a delete. Returns the file the host expects in `existing`.
fn agent_writes(cri: &Cri, agent: &str) {
    sh(
        cri,
        agent,
        "mkdir -p /workspace/src && echo 'fn main() {}' > /workspace/src/main.rs \
         && cat /workspace/existing >/dev/null && echo agent >> /workspace/existing \
         && echo draft > /workspace/notes && mv /workspace/notes /workspace/notes.md \
         && rm /workspace/gone",
    );
}

/// What `agent_writes` did, seen in the host folder.
fn host_has_the_agents_writes(ws: &Path) {
    assert_eq!(
        std::fs::read_to_string(ws.join("src/main.rs")).unwrap(),
        "fn main() {}\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("existing")).unwrap(),
        "host\nagent\n"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("notes.md")).unwrap(),
        "draft\n"
    );
    assert!(!ws.join("notes").exists() && !ws.join("gone").exists());
}

/// A pod with a workspace emptyDir (holding `existing` and `gone`), a sidecar
/// that has listed it, and an agent; (pod, sidecar, agent, host folder).
fn pod_with_sidecar(cri: &Cri, cfg: &ConfigDir, uid: &str) -> (Pod, String, String, PathBuf) {
    let ws = workspace(cfg, uid);
    std::fs::write(ws.join("existing"), "host\n").unwrap();
    std::fs::write(ws.join("gone"), "x").unwrap();
    let pod = cri
        .run_pod(uid, "team-w", uid, AGENTBOX, &[])
        .expect("RunPodSandbox");
    let sidecar = cri
        .create_container(&pod, &with_workspace("sidecar", &ws))
        .expect("create sidecar");
    cri.start(&sidecar).expect("start sidecar");
    // the sidecar looks at the workspace before the agent writes
    assert_eq!(sh(cri, &sidecar, "ls /workspace"), "existing\ngone\n");
    let agent = cri
        .create_container(&pod, &with_workspace("agent", &ws))
        .expect("create agent");
    cri.start(&agent).expect("start agent");
    (pod, sidecar, agent, ws)
}

/// Under the default tuning (root overlay in memory, no emptyDir hint), what
/// the agent writes to its workspace reaches the host folder at once, and a
/// sidecar already running in the pod, a later container and the host after
/// the agent stopped all see it.
#[test]
fn workspace_writes_reach_the_host_under_the_default() {
    if skip_unless_root("workspace_writes_reach_the_host_under_the_default") {
        return;
    }
    let cfg = ConfigDir::new();
    let (ctd, _) = start(&cfg, "");
    let cri = ctd.cri().expect("CRI client");
    let (pod, sidecar, agent, ws) = pod_with_sidecar(&cri, &cfg, "uid-ws");
    let rec = tuning_record(&cfg, &pod.id);
    // no emptyDir hint by default; the sandbox runs in the pod's cgroup
    let pod_cgroup = format!("{}/poduid-ws", ctd.cgroup_parent());
    assert_eq!(
        rec["hints"],
        serde_json::json!({"dev.gvisor.spec.cgroup-parent": pod_cgroup}),
        "{rec}"
    );
    let sentry = pids_matching(&["runsc-sandbox", &pod.id]);
    assert_eq!(sentry.len(), 1, "{sentry:?}");
    let cgroups = std::fs::read_to_string(format!("/proc/{}/cgroup", sentry[0])).unwrap();
    assert!(
        cgroups
            .lines()
            .any(|l| l.ends_with(&format!(":cpu:{pod_cgroup}")) || l == format!("0::{pod_cgroup}")),
        "the sandbox is not in the pod's cgroup {pod_cgroup}: {cgroups}"
    );
    assert!(
        rec["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "--overlay2=root:memory"),
        "{rec}"
    );
    agent_writes(&cri, &agent);
    // the host folder, while the agent still runs
    host_has_the_agents_writes(&ws);
    // a hostPath-like bind (no hint ever applies to it) reaches the host too,
    // both ways, while the container runs
    let data = host_data(&cfg);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("from-host"), "h\n").unwrap();
    let binder = cri
        .create_container(
            &pod,
            &with_workspace("binder", &ws).mount(&data, "/data", false),
        )
        .expect("create binder");
    cri.start(&binder).expect("start binder");
    assert_eq!(
        sh(
            &cri,
            &binder,
            "cat /data/from-host; mkdir /data/out && echo result > /data/out/r && mv /data/out/r /data/out/result"
        ),
        "h\n"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("out/result")).unwrap(),
        "result\n"
    );
    std::fs::write(data.join("from-host"), "h2\n").unwrap();
    assert_eq!(sh(&cri, &binder, "cat /data/from-host"), "h2\n");
    // the sidecar
    assert_eq!(
        sh(&cri, &sidecar, "ls /workspace; cat /workspace/existing"),
        "existing\nnotes.md\nsrc\nhost\nagent\n"
    );
    // the agent stops: the host keeps it; a later container sees it
    let _ = cri.stop_container(&agent, Duration::from_secs(1));
    host_has_the_agents_writes(&ws);
    let later = cri
        .create_container(&pod, &with_workspace("reviewer", &ws))
        .expect("create reviewer");
    cri.start(&later).expect("start reviewer");
    assert_eq!(
        sh(
            &cri,
            &later,
            "cat /workspace/src/main.rs /workspace/existing"
        ),
        "fn main() {}\nhost\nagent\n"
    );
    remove(&cri, &pod, &[&agent, &sidecar, &later, &binder]);
}

/// `empty_dir = "exclusive"` (hint `share=container`): every write still
/// reaches the host folder at once and a later container sees it, but a
/// sidecar that had listed the volume keeps its old listing — the cost of
/// that hint for a reader in another container.
#[test]
fn exclusive_emptydir_hint_keeps_the_host_exact_but_not_a_sidecars_listing() {
    if skip_unless_root("exclusive_emptydir_hint_keeps_the_host_exact_but_not_a_sidecars_listing") {
        return;
    }
    let cfg = ConfigDir::new();
    let (ctd, _) = start(&cfg, "empty_dir = \"exclusive\"");
    let cri = ctd.cri().expect("CRI client");
    let (pod, sidecar, agent, ws) = pod_with_sidecar(&cri, &cfg, "uid-excl");
    let hints = &tuning_record(&cfg, &pod.id)["hints"];
    assert_eq!(hints["dev.gvisor.spec.mount.workspace.share"], "container");
    assert_eq!(hints["dev.gvisor.spec.mount.workspace.type"], "bind");
    assert_eq!(
        hints["dev.gvisor.spec.mount.workspace.source"],
        std::fs::canonicalize(&ws).unwrap().display().to_string()
    );
    agent_writes(&cri, &agent);
    host_has_the_agents_writes(&ws);
    // file contents are read through (the append shows), the listing is cached
    assert_eq!(
        sh(&cri, &sidecar, "ls /workspace; cat /workspace/existing"),
        "existing\ngone\nhost\nagent\n"
    );
    let later = cri
        .create_container(&pod, &with_workspace("reviewer", &ws))
        .expect("create reviewer");
    cri.start(&later).expect("start reviewer");
    assert_eq!(
        sh(&cri, &later, "ls /workspace; cat /workspace/src/main.rs"),
        "existing\nnotes.md\nsrc\nfn main() {}\n"
    );
    remove(&cri, &pod, &[&agent, &sidecar, &later]);
}

/// `empty_dir = "memory"`: the pod's containers share the volume as a tmpfs
/// inside the sandbox, and the host folder sees none of it — the cost of
/// that hint for anyone reading the volume from the host.
#[test]
fn memory_emptydir_hint_keeps_writes_off_the_host() {
    if skip_unless_root("memory_emptydir_hint_keeps_writes_off_the_host") {
        return;
    }
    let cfg = ConfigDir::new();
    let (ctd, _) = start(&cfg, "empty_dir = \"memory\"");
    let cri = ctd.cri().expect("CRI client");
    let uid = "uid-mem-ws";
    let ws = workspace(&cfg, uid);
    let pod = cri
        .run_pod("memws", "team-w", uid, AGENTBOX, &[])
        .expect("RunPodSandbox");
    assert_eq!(
        tuning_record(&cfg, &pod.id)["hints"]["dev.gvisor.spec.mount.workspace.type"],
        "tmpfs"
    );
    let a = cri
        .create_container(&pod, &with_workspace("writer", &ws))
        .expect("create");
    cri.start(&a).expect("start");
    let b = cri
        .create_container(&pod, &with_workspace("reader", &ws))
        .expect("create");
    cri.start(&b).expect("start");
    sh(&cri, &a, "echo shared > /workspace/result");
    assert_eq!(sh(&cri, &b, "cat /workspace/result"), "shared\n");
    assert_eq!(
        std::fs::read_dir(&ws).unwrap().count(),
        0,
        "the host folder must stay empty under the memory hint"
    );
    remove(&cri, &pod, &[&a, &b]);
}

/// The root filesystem overlay in memory (the default on Debian 12's runsc):
/// a pod writing more than its memory limit into its root filesystem runs
/// out inside its own memory cgroup (ENOSPC inside, or its sandbox is
/// OOM-killed), and nothing of it lands on the node's disk.
#[test]
fn rootfs_overlay_in_memory_is_paid_by_the_pods_memory_limit() {
    if skip_unless_root("rootfs_overlay_in_memory_is_paid_by_the_pods_memory_limit") {
        return;
    }
    let cfg = ConfigDir::new();
    let (ctd, _) = start(&cfg, "");
    let cri = ctd.cri().expect("CRI client");
    let uid = "uid-fill";
    let pod = cri
        .run_pod("fill", "team-m", uid, AGENTBOX, &[])
        .expect("RunPodSandbox");
    let memcg = Path::new("/sys/fs/cgroup/memory")
        .join(ctd.cgroup_parent().trim_start_matches('/'))
        .join(format!("pod{uid}"));
    if !memcg.join("memory.limit_in_bytes").exists() {
        eprintln!(
            "SKIPPED rootfs_overlay_in_memory_is_paid_by_the_pods_memory_limit: no cgroup v1 memory controller at {}",
            memcg.display()
        );
        return;
    }
    let limit: u64 = 200 << 20;
    std::fs::write(memcg.join("memory.limit_in_bytes"), limit.to_string())
        .expect("set the pod memory limit");
    let spec = ContainerSpec::new("filler", BUSYBOX_IMAGE).command([
        "sh",
        "-c",
        "dd if=/dev/zero of=/home/fill bs=1M count=400 2>/tmp/dd.err; echo dd=$? > /tmp/dd.rc; sleep 300",
    ]);
    let id = cri.create_container(&pod, &spec).expect("create");
    let bundle = bundle_of(&ctd, K8S_NAMESPACE, &id);
    cri.start(&id).expect("start");
    let read = |f: &str| {
        std::fs::read_to_string(memcg.join(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    // dd ends one way or the other: ENOSPC (the container lives on) or the
    // sandbox is OOM-killed
    let mut outcome = String::new();
    let done = wait_until(T, || {
        if let Ok(st) = cri.container_status(&id) {
            if st.state == agentbox_e2e::cri::v1::ContainerState::ContainerExited as i32 {
                outcome = format!("exited {} {}", st.exit_code, st.reason);
                return true;
            }
        }
        if let Ok(r) = cri.exec_sync(&id, &["cat", "/tmp/dd.rc", "/tmp/dd.err"], T) {
            if r.exit_code == 0 {
                outcome = r.stdout;
                return true;
            }
        }
        false
    });
    assert!(done, "dd neither finished nor was killed");
    let enospc = outcome.starts_with("dd=1") && outcome.contains("No space left");
    let oom = outcome == "exited 137 OOMKilled";
    assert!(enospc || oom, "unexpected outcome: {outcome:?}");
    // the pressure was on the pod's own cgroup, never past its limit
    let failcnt: u64 = read("memory.failcnt").parse().unwrap_or(0);
    let max: u64 = read("memory.max_usage_in_bytes")
        .parse()
        .unwrap_or(u64::MAX);
    assert!(
        failcnt > 0,
        "the pod's memory cgroup never hit its limit ({outcome:?})"
    );
    // (the kernel may overshoot by a charge batch)
    assert!(max <= limit + (2 << 20), "max usage {max} > limit {limit}");
    eprintln!("rootfs fill beyond the pod's memory limit: {outcome:?}, failcnt {failcnt}");
    // nothing went to the container's writable layer on the host
    let fill = bundle.join("rootfs/home/fill");
    let on_disk = std::fs::metadata(&fill).map(|m| m.len()).unwrap_or(0);
    assert!(
        on_disk < (1 << 20),
        "{} holds {on_disk} bytes",
        fill.display()
    );
    remove(&cri, &pod, &[&id]);
}

/// Sandbox processes holding a file under `dir` (the unlinked overlay
/// filestore): (pid, allocated bytes).
fn filestore_holders(dir: &Path) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let needle = dir.display().to_string();
    let mut out = vec![];
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if target.display().to_string().starts_with(&needle) {
                let bytes = std::fs::metadata(fd.path())
                    .map(|m| m.blocks() * 512)
                    .unwrap_or(0);
                out.push((p.file_name().to_string_lossy().into_owned(), bytes));
            }
        }
    }
    out
}

/// `rootfs_overlay = "dir"`: the root filesystem's writes go to an unlinked
/// file in a per-pod folder agentbox owns — disk use `du` cannot see while
/// the pod runs — and nothing of it is left after the pod is deleted, nor
/// after `kill -9` of its daemon and containerd's cleanup.
#[test]
fn file_backed_overlay_leaves_nothing_after_the_pod_or_a_crash() {
    if skip_unless_root("file_backed_overlay_leaves_nothing_after_the_pod_or_a_crash") {
        return;
    }
    let cfg = ConfigDir::new();
    let (ctd, path) = start(&cfg, "rootfs_overlay = \"dir\"");
    ctd.import_busybox(DEFAULT_NAMESPACE)
        .expect("import busybox");
    let cmd = [
        "sh",
        "-c",
        "dd if=/dev/urandom of=/home/fill bs=1M count=48 2>/dev/null; touch /tmp/done; sleep 600",
    ];
    for (round, crash) in [(0, false), (1, true)] {
        let id = ctd.unique_id(&format!("ab-ovdir{round}"));
        let folder = cfg.path().join("overlay").join(DEFAULT_NAMESPACE).join(&id);
        run_detached(&ctd, &path, &id, &cmd).expect("ctr run -d");
        assert!(folder.is_dir(), "no overlay folder {}", folder.display());
        let filled = wait_until(T, || {
            filestore_holders(&folder)
                .iter()
                .any(|(_, b)| *b >= 40 << 20)
        });
        assert!(
            filled,
            "no filestore of 40 MiB+ under {}: {:?}",
            folder.display(),
            filestore_holders(&folder)
        );
        // the file is unlinked: the folder looks empty to du while the disk fills
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
        if crash {
            let daemon = pids_matching(&["containerd-shim-agentbox-v1", &format!("-id {id}")]);
            assert_eq!(daemon.len(), 1, "{daemon:?}");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(daemon[0]),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        } else {
            let _ = ctd.ctr(&["task", "kill", "-s", "KILL", &id]);
            std::thread::sleep(Duration::from_millis(500));
            let o = ctd.ctr(&["task", "rm", "-f", &id]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let clean = wait_until(Duration::from_secs(30), || {
            !folder.exists() && filestore_holders(&folder).is_empty()
        });
        assert!(
            clean,
            "left behind (crash: {crash}): folder {} exists: {}, holders {:?}\n{}",
            folder.display(),
            folder.exists(),
            filestore_holders(&folder),
            ctd.log_tail(30)
        );
        let _ = ctd.ctr(&["task", "rm", "-f", &id]);
        let _ = ctd.ctr(&["containers", "rm", &id]);
    }
}
