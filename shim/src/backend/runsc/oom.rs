//! Out-of-memory kills. runsc's command line reports none, but the host does:
//! the sandbox runs in a memory cgroup, and when the host's OOM killer ends
//! the sandbox (the gVisor kernel and everything in it) that cgroup's
//! `oom_kill` counter goes up. agentbox reads the counter when a container is
//! created and again when it exits; if it rose, containerd gets `TaskOOM`
//! before `TaskExit` (CRI then reports the container as `OOMKilled`).

use std::path::{Path, PathBuf};

/// The memory cgroup of `pid` from `/proc/PID/cgroup`: the v1 `memory`
/// hierarchy if mounted, else the unified (v2) one.
pub fn memcg_of(proc_cgroup: &str, root: &Path) -> Option<PathBuf> {
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "memory") {
            return Some(root.join("memory").join(rel));
        }
        if controllers.is_empty() {
            v2 = Some(rel.to_string());
        }
    }
    let rel = v2?;
    // a hybrid host mounts v2 at /sys/fs/cgroup/unified
    let unified = root.join("unified");
    Some(if unified.is_dir() {
        unified.join(rel)
    } else {
        root.join(rel)
    })
}

/// `oom_kill N` from `memory.oom_control` (v1) or `memory.events` (v2).
pub fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix("oom_kill ")
            .and_then(|n| n.trim().parse().ok())
    })
}

/// How many OOM kills the memory cgroup at `dir` has seen.
pub fn oom_kills(dir: &Path) -> Option<u64> {
    ["memory.oom_control", "memory.events"]
        .iter()
        .find_map(|f| {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|t| parse_oom_kill(&t))
        })
}

/// The memory cgroup of a live process and its current OOM kill count.
pub fn baseline(pid: u32) -> Option<(PathBuf, u64)> {
    if pid == 0 {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let dir = memcg_of(&text, Path::new("/sys/fs/cgroup"))?;
    let n = oom_kills(&dir)?;
    Some((dir, n))
}

/// True if the cgroup saw an OOM kill since `baseline`.
pub fn killed_since(baseline: &(PathBuf, u64)) -> bool {
    oom_kills(&baseline.0).is_some_and(|n| n > baseline.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_v1_memory_cgroup() {
        let c = "9:name=systemd:/\n4:memory:/default/c1\n0::/\n";
        assert_eq!(
            memcg_of(c, Path::new("/sys/fs/cgroup")),
            Some(PathBuf::from("/sys/fs/cgroup/memory/default/c1"))
        );
        let c = "5:cpu,memory:/k8s/pod1\n";
        assert_eq!(
            memcg_of(c, Path::new("/r")),
            Some(PathBuf::from("/r/memory/k8s/pod1"))
        );
    }

    #[test]
    fn falls_back_to_v2() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            memcg_of("0::/kubepods/pod1\n", dir.path()),
            Some(dir.path().join("kubepods/pod1"))
        );
        std::fs::create_dir(dir.path().join("unified")).unwrap();
        assert_eq!(
            memcg_of("0::/x\n", dir.path()),
            Some(dir.path().join("unified/x"))
        );
        assert_eq!(memcg_of("3:cpu:/x\n", dir.path()), None);
    }

    #[test]
    fn reads_the_counter_and_compares() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            Some(3)
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n"),
            Some(1)
        );
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), None);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("memory.oom_control"), "oom_kill 2\n").unwrap();
        let b = (dir.path().to_path_buf(), oom_kills(dir.path()).unwrap());
        assert!(!killed_since(&b));
        std::fs::write(dir.path().join("memory.oom_control"), "oom_kill 3\n").unwrap();
        assert!(killed_since(&b));
    }
}
