//! The host cgroup of a sandbox process: where it is (from
//! `/proc/PID/cgroup`, v1 controllers or the v2 unified tree) and resource
//! limits written to it, as runsc itself writes the limits of a spec at
//! create.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::resources::Limits;

/// The cgroup folders of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroup {
    /// cgroup v1: one folder per controller.
    V1(HashMap<String, PathBuf>),
    /// cgroup v2: one folder.
    V2(PathBuf),
}

impl Cgroup {
    /// Parse `/proc/PID/cgroup` against the cgroup mount `root`. A host
    /// with v1 controllers is driven through them (a hybrid host's unified
    /// tree has no controllers).
    pub fn parse(proc_cgroup: &str, root: &Path) -> Option<Cgroup> {
        let mut v1 = HashMap::new();
        let mut v2 = None;
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let rel = path.trim_start_matches('/');
            if controllers.is_empty() {
                v2 = Some(rel.to_string());
                continue;
            }
            for c in controllers.split(',') {
                if c.starts_with("name=") {
                    continue;
                }
                // a mount of several controllers is named after all of them
                v1.insert(c.to_string(), root.join(controllers).join(rel));
            }
        }
        if !v1.is_empty() {
            return Some(Cgroup::V1(v1));
        }
        let rel = v2?;
        let unified = root.join("unified");
        Some(Cgroup::V2(if unified.is_dir() {
            unified.join(rel)
        } else {
            root.join(rel)
        }))
    }

    /// The cgroup of a live process.
    pub fn of_pid(pid: u32) -> Result<Cgroup, String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| format!("cannot read the cgroup of process {pid}: {e}"))?;
        Cgroup::parse(&text, Path::new("/sys/fs/cgroup"))
            .ok_or_else(|| format!("process {pid} is in no cgroup agentbox can read"))
    }

    /// The folder of `controller` (v2: the one folder).
    pub fn dir(&self, controller: &str) -> Option<&Path> {
        match self {
            Cgroup::V1(m) => m.get(controller).map(PathBuf::as_path),
            Cgroup::V2(p) => Some(p),
        }
    }

    /// The file writes that apply `l`, in order: (path, value).
    pub fn writes(&self, l: &Limits) -> Result<Vec<(PathBuf, String)>, String> {
        let mut w = Vec::new();
        let file = |ctl: &str, name: &str| {
            self.dir(ctl)
                .map(|d| d.join(name))
                .ok_or_else(|| format!("the sandbox has no {ctl} cgroup"))
        };
        match self {
            Cgroup::V1(_) => {
                if let Some(m) = l.memory {
                    let limit = file("memory", "memory.limit_in_bytes")?;
                    let memsw = file("memory", "memory.memsw.limit_in_bytes")?;
                    let swap = l.swap.filter(|_| memsw.exists());
                    // memory+swap must never be below memory: raise it first
                    if let Some(s) = swap {
                        w.push((memsw.clone(), s.to_string()));
                    }
                    w.push((limit, m.to_string()));
                    if let Some(s) = swap {
                        w.push((memsw, s.to_string()));
                    }
                }
                if let Some(s) = l.cpu_shares {
                    w.push((file("cpu", "cpu.shares")?, s.to_string()));
                }
                if let Some(p) = l.cpu_period {
                    w.push((file("cpu", "cpu.cfs_period_us")?, p.to_string()));
                }
                if let Some(q) = l.cpu_quota {
                    w.push((file("cpu", "cpu.cfs_quota_us")?, q.to_string()));
                }
                if let Some(p) = l.pids {
                    let v = if p > 0 { p.to_string() } else { "max".into() };
                    w.push((file("pids", "pids.max")?, v));
                }
            }
            Cgroup::V2(_) => {
                if let Some(m) = l.memory {
                    w.push((file("memory", "memory.max")?, m.to_string()));
                    if let Some(s) = l.swap {
                        let swap = file("memory", "memory.swap.max")?;
                        if swap.exists() {
                            w.push((swap, (s - m).max(0).to_string()));
                        }
                    }
                }
                if let Some(s) = l.cpu_shares {
                    // runc's conversion of shares [2, 262144] to weight [1, 10000]
                    let weight = 1 + (s.clamp(2, 262144) - 2) * 9999 / 262142;
                    w.push((file("cpu", "cpu.weight")?, weight.to_string()));
                }
                if l.cpu_quota.is_some() || l.cpu_period.is_some() {
                    let q = match l.cpu_quota {
                        Some(q) if q > 0 => q.to_string(),
                        _ => "max".to_string(),
                    };
                    let p = l.cpu_period.unwrap_or(100_000);
                    w.push((file("cpu", "cpu.max")?, format!("{q} {p}")));
                }
                if let Some(p) = l.pids {
                    let v = if p > 0 { p.to_string() } else { "max".into() };
                    w.push((file("pids", "pids.max")?, v));
                }
            }
        }
        if let Some(c) = &l.cpus {
            w.push((file("cpuset", "cpuset.cpus")?, c.clone()));
        }
        if let Some(m) = &l.mems {
            w.push((file("cpuset", "cpuset.mems")?, m.clone()));
        }
        Ok(w)
    }

    /// Write `l` to the cgroup; the first write the kernel refuses is the error.
    pub fn apply(&self, l: &Limits) -> Result<(), String> {
        for (path, value) in self.writes(l)? {
            std::fs::write(&path, &value)
                .map_err(|e| format!("cannot write {value} to {}: {e}", path.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_controllers_and_joined_mounts() {
        let c = "12:pids:/default/c1\n4:cpu,cpuacct:/default/c1\n3:memory:/default/c1\n1:name=systemd:/x\n0::/\n";
        let cg = Cgroup::parse(c, Path::new("/sys/fs/cgroup")).unwrap();
        assert_eq!(
            cg.dir("cpu"),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/default/c1"))
        );
        assert_eq!(
            cg.dir("memory"),
            Some(Path::new("/sys/fs/cgroup/memory/default/c1"))
        );
        assert_eq!(cg.dir("systemd"), None);
        let l = Limits {
            memory: Some(100),
            cpu_quota: Some(5000),
            cpu_period: Some(10000),
            pids: Some(-1),
            ..Default::default()
        };
        let w: Vec<_> = cg
            .writes(&l)
            .unwrap()
            .into_iter()
            .map(|(p, v)| format!("{}={v}", p.file_name().unwrap().to_str().unwrap()))
            .collect();
        assert_eq!(
            w,
            [
                "memory.limit_in_bytes=100",
                "cpu.cfs_period_us=10000",
                "cpu.cfs_quota_us=5000",
                "pids.max=max"
            ]
        );
        let none = Cgroup::parse("3:memory:/a\n", Path::new("/r")).unwrap();
        assert!(none
            .writes(&Limits {
                pids: Some(1),
                ..Default::default()
            })
            .is_err());
    }

    #[test]
    fn v2_conversions() {
        let dir = tempfile::tempdir().unwrap();
        let cg = Cgroup::parse("0::/pod/c1\n", dir.path()).unwrap();
        let l = Limits {
            memory: Some(1000),
            cpu_shares: Some(1024),
            cpu_quota: Some(-1),
            ..Default::default()
        };
        let w: Vec<_> = cg.writes(&l).unwrap().into_iter().map(|(_, v)| v).collect();
        assert_eq!(w, ["1000", "39", "max 100000"]);
    }

    #[test]
    fn apply_writes_and_reports_the_failing_file() {
        let dir = tempfile::tempdir().unwrap();
        let mem = dir.path().join("memory/c1");
        std::fs::create_dir_all(&mem).unwrap();
        let cg = Cgroup::parse("3:memory:/c1\n", dir.path()).unwrap();
        cg.apply(&Limits {
            memory: Some(4096),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap(),
            "4096"
        );
        let gone = Cgroup::parse("3:memory:/missing/c1\n", dir.path()).unwrap();
        let e = gone
            .apply(&Limits {
                memory: Some(1),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.contains("memory.limit_in_bytes"), "{e}");
    }
}
