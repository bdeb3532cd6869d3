//! Reliability runs (`make soak`, and a shortened run in `make test`; see
//! RELIABILITY.md): their scale, a leak check scoped to one private
//! containerd and its agentbox config folder that runs while containerd
//! does, audit record counts, process memory, and a runsc wrapper that
//! injects one fault into one chosen runsc call.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::agentbox::runsc_root;
use crate::leaks::{busy_cgroups, runsc_state, shim_socket};
use crate::util::mounts_under;
use crate::Containerd;

/// How much of each scenario runs: `AGENTBOX_SOAK=full` for `make soak`,
/// otherwise the short run of `make test`.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub full: bool,
    /// Pods churned through CRI.
    pub churn: usize,
    /// Pods churned at once.
    pub concurrency: usize,
    /// Idle pods held at once.
    pub density: usize,
    /// ExecSync calls into the long-lived pod.
    pub execs: usize,
    /// Container restarts in the long-lived pod.
    pub restarts: usize,
    /// Repetitions of each fault.
    pub cycles: usize,
}

impl Scale {
    pub fn from_env() -> Scale {
        let full = std::env::var("AGENTBOX_SOAK").is_ok_and(|v| v == "full");
        let n = |k: &str, full_v: usize, short_v: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(if full { full_v } else { short_v })
        };
        Scale {
            full,
            churn: n("AGENTBOX_SOAK_CHURN", 300, 20),
            concurrency: n("AGENTBOX_SOAK_CONCURRENCY", 4, 4),
            density: n("AGENTBOX_SOAK_DENSITY", 100, 6),
            execs: n("AGENTBOX_SOAK_EXECS", 2000, 100),
            restarts: n("AGENTBOX_SOAK_RESTARTS", 200, 10),
            cycles: n("AGENTBOX_SOAK_CYCLES", 20, 3),
        }
    }
}

/// What one private containerd and its agentbox config folder hold when no
/// pod runs; `leaks` is anything beyond that.
pub struct Scope {
    dir: PathBuf,
    cfg: PathBuf,
    containerd: Option<u32>,
    address: String,
    cgroup: String,
    baseline_mounts: BTreeSet<PathBuf>,
    sockets: Mutex<BTreeSet<PathBuf>>,
}

impl Scope {
    /// Take the baseline now (containerd up, images imported, no pod).
    pub fn new(ctd: &Containerd, cfg: &Path) -> Scope {
        Scope {
            dir: ctd.dir().to_path_buf(),
            cfg: cfg.to_path_buf(),
            containerd: ctd.pid(),
            address: ctd.address().display().to_string(),
            cgroup: ctd.cgroup_parent().trim_start_matches('/').to_string(),
            baseline_mounts: mounts_under(ctd.dir()).into_iter().collect(),
            sockets: Mutex::default(),
        }
    }

    /// After containerd was restarted: its new pid.
    pub fn restarted(&mut self, ctd: &Containerd) {
        self.containerd = ctd.pid();
    }

    /// The agentbox daemons of this containerd.
    pub fn daemons(&self) -> Vec<i32> {
        self.processes()
            .into_iter()
            .filter(|p| {
                p.cmd
                    .first()
                    .is_some_and(|c| c.contains("containerd-shim-agentbox-v1"))
                    && p.cmd.iter().any(|a| a.contains(&self.address))
            })
            .map(|p| p.pid)
            .collect()
    }

    /// Remember the sockets of the shims running now (checked later).
    pub fn note_sockets(&self) {
        let live: Vec<PathBuf> = crate::util::list_procs()
            .iter()
            .filter(|p| p.cmdline.iter().any(|a| a.contains(&self.address)))
            .filter_map(shim_socket)
            .collect();
        self.sockets.lock().unwrap().extend(live);
    }

    /// Processes of this containerd's workloads (not containerd itself):
    /// their command line names its folder or the config folder.
    pub fn processes(&self) -> Vec<Proc> {
        let dir = self.dir.display().to_string();
        let cfg = self.cfg.display().to_string();
        let me = std::process::id() as i32;
        let mut out = vec![];
        for p in procfs::process::all_processes()
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(cmd) = p.cmdline() else { continue };
            if p.pid == me || Some(p.pid as u32) == self.containerd {
                continue;
            }
            if cmd.iter().any(|a| a.contains(&dir) || a.contains(&cfg)) {
                out.push(Proc { pid: p.pid, cmd });
            }
        }
        out
    }

    /// Everything left behind now: processes (shims, agentbox daemons,
    /// runsc sandboxes and gofers), mounts (rootfs, network namespaces),
    /// cgroups with processes, runsc state, shim sockets, bundles.
    pub fn leaks(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .processes()
            .iter()
            .map(|p| format!("process {} {}", p.pid, p.cmd.join(" ")))
            .collect();
        for m in mounts_under(&self.dir)
            .into_iter()
            .chain(mounts_under(&self.cfg))
        {
            if !self.baseline_mounts.contains(&m) {
                v.push(format!("mount {}", m.display()));
            }
        }
        v.extend(
            busy_cgroups(&self.cgroup)
                .into_iter()
                .map(|c| format!("cgroup with processes {}", c.display())),
        );
        v.extend(
            runsc_state(&runsc_root(&self.cfg))
                .into_iter()
                .map(|s| format!("runsc state {}", s.display())),
        );
        v.extend(
            self.sockets
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.exists())
                .map(|s| format!("socket {}", s.display())),
        );
        for sub in [
            "state/io.containerd.runtime.v2.task",
            "root/io.containerd.runtime.v2.task",
        ] {
            for ns in ["k8s.io", "default"] {
                let d = self.dir.join(sub).join(ns);
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    v.push(format!("bundle {}", e.path().display()));
                }
            }
        }
        let netns = self.dir.join("state/netns");
        for e in std::fs::read_dir(&netns).into_iter().flatten().flatten() {
            v.push(format!("netns {}", e.path().display()));
        }
        v
    }

    /// Wait (bounded) for what a removal is still tearing down, then fail
    /// with everything left behind.
    pub fn assert_clean(&self, what: &str) {
        let end = Instant::now() + Duration::from_secs(30);
        let mut left = self.leaks();
        while !left.is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(250));
            left = self.leaks();
        }
        assert!(
            left.is_empty(),
            "{what}: left behind:\n  {}",
            left.join("\n  ")
        );
    }
}

/// A process: pid and command line.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub cmd: Vec<String>,
}

/// Per container id: how many `create` and how many `exit` records (of the
/// container's init, not its execs) the audit log holds.
pub fn audit_counts(records: &[serde_json::Value]) -> BTreeMap<String, (usize, usize)> {
    let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in records {
        let Some(id) = r["container_id"].as_str() else {
            continue;
        };
        match r["event"].as_str() {
            Some("create") => m.entry(id.into()).or_default().0 += 1,
            Some("exit") if r.get("exec_id").is_none() => m.entry(id.into()).or_default().1 += 1,
            _ => {}
        }
    }
    m
}

/// Resident and proportional set size of a process, in KiB.
pub fn memory_kib(pid: i32) -> Option<(u64, u64)> {
    let p = procfs::process::Process::new(pid).ok()?;
    let r = p.smaps_rollup().ok()?;
    let m = r.memory_map_rollup.0.first()?;
    let get = |k: &str| m.extension.map.get(k).copied().unwrap_or(0) / 1024;
    Some((get("Rss"), get("Pss")))
}

/// Open file descriptors of a process.
pub fn fd_count(pid: i32) -> Option<usize> {
    procfs::process::Process::new(pid).ok()?.fd_count().ok()
}

/// A runsc wrapper that injects a fault into the next runsc call with a
/// given subcommand (one call only), then runs the real runsc for the rest.
pub struct FaultRunsc {
    dir: PathBuf,
    pub path: PathBuf,
}

/// The secret a `garbage` fault prints; it must never reach an error.
pub const GARBAGE_SECRET: &str = "ghp_Q9w8E7r6T5y4U3i2O1p0A9s8D7f6G5h4J3k2";

/// What the next matching runsc call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Wait (bounded) until released; `reached()` tells it got there.
    Pause,
    /// Never return (the hung process's pid in `hung_pid()`).
    Hang,
    /// Exit 3 with random bytes and a secret on stderr and in runsc's log.
    Garbage,
}

impl FaultRunsc {
    /// Write the wrapper into `dir` and point the agentbox `config` at it.
    pub fn install(dir: &Path, config: &Path) -> FaultRunsc {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("runsc-fault");
        let d = dir.display();
        let script = format!(
            r#"#!/bin/sh
dir={d}
sub=""; log=""
for a in "$@"; do case "$a" in --log=*) log="${{a#--log=}}";; --*) ;; *) [ -z "$sub" ] && sub="$a";; esac; done
if [ -f "$dir/fault" ] && [ "$(cut -d' ' -f2 "$dir/fault")" = "$sub" ] && mv "$dir/fault" "$dir/fault.$$" 2>/dev/null; then
  mode=$(cut -d' ' -f1 "$dir/fault.$$"); rm -f "$dir/fault.$$"
  case "$mode" in
    pause) echo $$ > "$dir/fault.reached"
      i=0; while [ ! -f "$dir/fault.release" ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
      rm -f "$dir/fault.release";;
    hang) echo $$ > "$dir/fault.hung"; exec sleep 100000;;
    garbage)
      head -c 4000 /dev/urandom >&2; printf '\nGITHUB_TOKEN={GARBAGE_SECRET} failed\n' >&2
      if [ -n "$log" ]; then head -c 2000 /dev/urandom >> "$log"; printf '\n{{"msg":"cannot start: GITHUB_TOKEN={GARBAGE_SECRET}"}}\n' >> "$log"; fi
      exit 3;;
  esac
fi
exec /usr/bin/runsc "$@"
"#
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let text = std::fs::read_to_string(config).unwrap();
        let text = text.replace(
            "runsc = \"/usr/bin/runsc\"",
            &format!("runsc = \"{}\"", path.display()),
        );
        assert!(text.contains("runsc-fault"), "not a write_config config");
        std::fs::write(config, text).unwrap();
        FaultRunsc {
            dir: dir.to_path_buf(),
            path,
        }
    }

    /// Arm `fault` for the next runsc call with `subcommand`.
    pub fn arm(&self, fault: Fault, subcommand: &str) {
        for f in ["fault.reached", "fault.release", "fault.hung"] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        let mode = match fault {
            Fault::Pause => "pause",
            Fault::Hang => "hang",
            Fault::Garbage => "garbage",
        };
        std::fs::write(self.dir.join("fault"), format!("{mode} {subcommand}")).unwrap();
    }

    /// Disarm a fault no call took.
    pub fn disarm(&self) {
        let _ = std::fs::remove_file(self.dir.join("fault"));
    }

    /// Wait (bounded) until a paused call got there.
    pub fn reached(&self, bound: Duration) -> bool {
        let end = Instant::now() + bound;
        while Instant::now() < end {
            if self.dir.join("fault.reached").exists() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Let a paused call go on.
    pub fn release(&self) {
        std::fs::write(self.dir.join("fault.release"), "").unwrap();
    }

    /// The pid of a hung call, once it hangs.
    pub fn hung_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("fault.hung"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

/// Whether `pid` still runs (a zombie is gone).
pub fn alive(pid: i32) -> bool {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .is_ok_and(|s| s.state != 'Z' && s.state != 'X')
}
