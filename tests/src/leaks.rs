//! What a test's private containerd must not leave behind once its
//! workloads were removed the way the kubelet and containerd remove them:
//! processes (shims, agentbox daemons, runsc sandboxes and gofers), mounts
//! (rootfs, pod network namespaces: both under the temp dir), shim sockets,
//! and cgroups that still hold processes. The harness checks this when a
//! `Containerd` is torn down, before it force-cleans what is left, and a
//! test fails on any leak (see `Containerd::shutdown`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{list_procs, mounts_under, sha256_hex, with_descendants, ProcInfo};

/// The unix socket a shim process serves on: an agentbox daemon's
/// `-socket`, or containerd's hash-named path for other shims
/// (`/run/containerd/s/<sha256(address/ns/id)>`).
pub fn shim_socket(p: &ProcInfo) -> Option<PathBuf> {
    if !p
        .cmdline
        .first()
        .is_some_and(|c| c.contains("containerd-shim"))
    {
        return None;
    }
    let arg = |name: &str| {
        p.cmdline
            .iter()
            .position(|a| a == name)
            .and_then(|i| p.cmdline.get(i + 1))
            .cloned()
    };
    if let Some(s) = arg("-socket") {
        return Some(PathBuf::from(s.trim_start_matches("unix://")));
    }
    let (ns, id, addr) = (arg("-namespace")?, arg("-id")?, arg("-address")?);
    let h = sha256_hex(format!("{addr}/{ns}/{id}").as_bytes());
    Some(PathBuf::from(format!("/run/containerd/s/{h}")))
}

/// Processes whose command line mentions `dir`, and their descendants.
pub fn processes_of(dir: &Path) -> Vec<ProcInfo> {
    let needle = dir.display().to_string();
    let procs = list_procs();
    let me = std::process::id() as i32;
    let roots = procs
        .iter()
        .filter(|p| p.pid != me && p.cmdline.iter().any(|a| a.contains(&needle)))
        .map(|p| p.pid)
        .collect();
    let all = with_descendants(&procs, &roots);
    procs.into_iter().filter(|p| all.contains(&p.pid)).collect()
}

/// cgroups named `name` (in any hierarchy) whose subtree still holds a process.
pub fn busy_cgroups(name: &str) -> Vec<PathBuf> {
    let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(name)];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        roots.extend(rd.flatten().map(|e| e.path().join(name)));
    }
    let mut busy = vec![];
    for r in roots.into_iter().filter(|r| r.is_dir()) {
        walk_busy(&r, &mut busy);
    }
    busy
}

fn walk_busy(dir: &Path, busy: &mut Vec<PathBuf>) {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    if !procs.trim().is_empty() {
        busy.push(dir.to_path_buf());
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk_busy(&e.path(), busy);
            }
        }
    }
}

/// What is left of a containerd instance after its workloads and the
/// daemon were stopped: processes get `settle` to exit by themselves (a
/// shim ends once containerd deleted its last task). `sockets` are the shim
/// sockets seen while it ran.
pub fn after_teardown(
    dir: &Path,
    cgroup: &str,
    sockets: &[PathBuf],
    settle: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + settle;
    let mut procs = processes_of(dir);
    while !procs.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        procs = processes_of(dir);
    }
    let mut leaks: Vec<String> = procs
        .iter()
        .map(|p| format!("process {} {}", p.pid, p.cmdline.join(" ")))
        .collect();
    // a live process's socket is reported with the process
    let live: Vec<PathBuf> = procs.iter().filter_map(shim_socket).collect();
    leaks.extend(
        sockets
            .iter()
            .filter(|s| s.exists() && !live.contains(s))
            .map(|s| format!("socket {}", s.display())),
    );
    leaks.extend(
        mounts_under(dir)
            .into_iter()
            .map(|m| format!("mount {}", m.display())),
    );
    leaks.extend(
        busy_cgroups(cgroup)
            .into_iter()
            .map(|c| format!("cgroup with processes {}", c.display())),
    );
    leaks
}

/// runsc state files (`<id>_sandbox:<sid>.state`, `<id>.state`…) left
/// under a runsc root.
pub fn runsc_state(root: &Path) -> Vec<PathBuf> {
    let mut found = vec![];
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "state") {
                found.push(p);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(cmd: &[&str]) -> ProcInfo {
        ProcInfo {
            pid: 1,
            ppid: 0,
            cmdline: cmd.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn agentbox_daemons_name_their_socket() {
        let p = proc(&[
            "/t/containerd-shim-agentbox-v1",
            "-namespace",
            "k8s.io",
            "-id",
            "c1",
            "-address",
            "/tmp/x/containerd.sock",
            "-socket",
            "unix:///run/containerd/s/abc",
        ]);
        assert_eq!(
            shim_socket(&p),
            Some(PathBuf::from("/run/containerd/s/abc"))
        );
    }

    #[test]
    fn other_shims_use_containerds_hash() {
        let p = proc(&[
            "/usr/bin/containerd-shim-runc-v2",
            "-namespace",
            "default",
            "-id",
            "c1",
            "-address",
            "/tmp/x/containerd.sock",
        ]);
        let h = sha256_hex(b"/tmp/x/containerd.sock/default/c1");
        assert_eq!(
            shim_socket(&p),
            Some(PathBuf::from(format!("/run/containerd/s/{h}")))
        );
        assert_eq!(shim_socket(&proc(&["/usr/bin/runsc", "-id", "x"])), None);
    }

    #[test]
    fn runsc_state_files_are_found_at_any_depth() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("k8s.io")).unwrap();
        std::fs::write(d.path().join("k8s.io/c1_sandbox:c1.state"), "{}").unwrap();
        std::fs::write(d.path().join("k8s.io/calls.log"), "").unwrap();
        assert_eq!(
            runsc_state(d.path()),
            [d.path().join("k8s.io/c1_sandbox:c1.state")]
        );
    }

    #[test]
    fn a_cgroup_tree_without_processes_is_not_busy() {
        assert!(busy_cgroups("agentbox-e2e-no-such-cgroup-here").is_empty());
    }
}
