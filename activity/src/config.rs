//! The `[activity]` table of the agentbox config, and the pod-init config it
//! becomes for runsc (`--pod-init-config`).

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Value};

/// What the activity audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `process`, `process_exit`: the process tree with argv and statuses.
    Processes,
    /// `file`: opened paths and intent, aggregated per process.
    Files,
    /// `connect`, `bind`, `accept`.
    Network,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivityConfig {
    /// On or off; unset follows the profile (on under `sensitive`).
    pub enabled: Option<bool>,
    pub kinds: Vec<Kind>,
    /// Paths (and everything under them) whose opens are not recorded.
    pub ignore_paths: Vec<String>,
    /// Leave out the dynamic loader's reads (shared libraries, `ld.so.cache`).
    pub ignore_loader: bool,
    /// Records per second the pod may write, on average...
    pub rate_per_second: u32,
    /// ...and in a burst; beyond, records are dropped and counted.
    pub burst: u32,
    /// Distinct (process, path) pairs kept in memory before a process's file
    /// records are written early.
    pub max_tracked_files: usize,
    /// Processes followed at once. A process whose exit point was dropped
    /// would otherwise stay forever; beyond this, the longest-followed one
    /// is written out and forgotten (counted as `evicted`).
    pub max_tracked_processes: usize,
    /// Records waiting for the disk; beyond, they are dropped and counted so
    /// a slow disk never slows the sandbox.
    pub queue: usize,
}

impl Default for ActivityConfig {
    fn default() -> Self {
        ActivityConfig {
            enabled: None,
            kinds: vec![Kind::Processes, Kind::Files, Kind::Network],
            ignore_paths: vec!["/proc".into(), "/sys".into(), "/dev".into()],
            ignore_loader: true,
            rate_per_second: 500,
            burst: 5000,
            max_tracked_files: 4096,
            max_tracked_processes: 4096,
            queue: 4096,
        }
    }
}

impl ActivityConfig {
    /// Whether activity audit is on, given the profile's default.
    pub fn is_enabled(&self, profile_default: bool) -> bool {
        self.enabled.unwrap_or(profile_default)
    }

    pub fn records(&self, k: Kind) -> bool {
        self.kinds.contains(&k)
    }

    /// A config error, in words a person can act on.
    pub fn validate(&self) -> Result<(), String> {
        if self.rate_per_second == 0 || self.burst == 0 {
            return Err("activity.rate_per_second and activity.burst must be at least 1".into());
        }
        if self.queue == 0 || self.max_tracked_files == 0 || self.max_tracked_processes == 0 {
            return Err(
                "activity.queue, activity.max_tracked_files and activity.max_tracked_processes must be at least 1"
                    .into(),
            );
        }
        if let Some(p) = self.ignore_paths.iter().find(|p| !p.starts_with('/')) {
            return Err(format!(
                "activity.ignore_paths: {p:?} is not an absolute path"
            ));
        }
        Ok(())
    }

    /// The pod-init config runsc reads: one trace session whose remote sink
    /// is `socket`, with the points the configured kinds need.
    ///
    /// Every point and every context field costs the sentry work on the
    /// sandbox's own time (the point is built and sent from the task that hit
    /// it), so each asks for what the tracker reads and nothing more: no
    /// `binary_info` (a stat of the binary per exec), no `time` or start
    /// times, no syscall points for a kind that is off. `sentry/task_exit`
    /// rather than `sentry/exit_notify_parent`: the latter is never sent for
    /// a container's first process (it has no parent in the sentry), whose
    /// exit status the audit needs.
    pub fn pod_init_config(&self, socket: &Path) -> Value {
        // the process tree is always followed: it attributes files and
        // connections to a process, even when only those are recorded.
        // container/start carries the container id and cwd itself.
        let mut points = vec![
            point("container/start", &[], &["group_id", "credentials"]),
            // the parent of each process; container_id for a parent never
            // seen (started by `runsc exec`)
            point("sentry/clone", &[], &["container_id", "group_id"]),
            point(
                "sentry/execve",
                &[],
                &["container_id", "group_id", "cwd", "credentials"],
            ),
            // thread_id tells a process's end from one of its threads'
            point("sentry/task_exit", &[], &["group_id", "thread_id"]),
        ];
        // cwd resolves relative paths; container_id, cwd and process_name
        // describe a process first seen through this point
        let who = ["container_id", "group_id", "cwd", "process_name"];
        if self.records(Kind::Files) {
            points.push(point("syscall/open/exit", &[], &who));
            // fd_path resolves paths relative to a directory fd
            points.push(point("syscall/openat/exit", &["fd_path"], &who));
            points.push(point("syscall/creat/exit", &[], &who));
        }
        if self.records(Kind::Network) {
            for call in ["connect", "bind", "accept", "accept4"] {
                points.push(point(&format!("syscall/{call}/exit"), &[], &who));
            }
        }
        json!({"trace_session": {
            "name": "Default",
            "points": points,
            "sinks": [{"name": "remote", "config": {"endpoint": socket.display().to_string()}}],
        }})
    }
}

fn point(name: &str, optional: &[&str], context: &[&str]) -> Value {
    let mut p = json!({"name": name, "context_fields": context});
    if !optional.is_empty() {
        p["optional_fields"] = json!(optional);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_profile() {
        let c: ActivityConfig = toml_like("{}");
        assert!(c.is_enabled(true));
        assert!(!c.is_enabled(false));
        let off: ActivityConfig = toml_like(r#"{"enabled": false}"#);
        assert!(!off.is_enabled(true));
        assert_eq!(c.ignore_paths, ["/proc", "/sys", "/dev"]);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(serde_json::from_str::<ActivityConfig>(r#"{"enabeld": true}"#).is_err());
        assert!(serde_json::from_str::<ActivityConfig>(r#"{"kinds": ["syscalls"]}"#).is_err());
        let c: ActivityConfig = toml_like(r#"{"burst": 0}"#);
        assert!(c.validate().unwrap_err().contains("burst"));
        let c: ActivityConfig = toml_like(r#"{"ignore_paths": ["tmp"]}"#);
        assert!(c.validate().unwrap_err().contains("tmp"));
    }

    #[test]
    fn pod_init_config_names_the_socket_and_the_points_of_each_kind() {
        let all = ActivityConfig::default().pod_init_config(Path::new("/run/a.sock"));
        assert_eq!(all["trace_session"]["name"], "Default");
        assert_eq!(
            all["trace_session"]["sinks"][0]["config"]["endpoint"],
            "/run/a.sock"
        );
        let names = |v: &Value| -> Vec<String> {
            v["trace_session"]["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_string())
                .collect()
        };
        let n = names(&all);
        for want in [
            "container/start",
            "sentry/execve",
            "syscall/openat/exit",
            "syscall/connect/exit",
        ] {
            assert!(n.iter().any(|x| x == want), "{want} missing from {n:?}");
        }
        // no point ever asks for the environment
        assert!(!all.to_string().contains("env"));
        let procs: ActivityConfig = toml_like(r#"{"kinds": ["processes"]}"#);
        let n = names(&procs.pod_init_config(Path::new("/s")));
        assert!(
            n.iter()
                .all(|x| x.starts_with("container/") || x.starts_with("sentry/")),
            "{n:?}"
        );
    }

    #[test]
    fn each_point_asks_only_for_what_the_tracker_reads() {
        let pn: ActivityConfig = toml_like(r#"{"kinds": ["processes", "network"]}"#);
        let cfg = pn.pod_init_config(Path::new("/s"));
        let points = cfg["trace_session"]["points"].as_array().unwrap();
        let names: Vec<&str> = points.iter().map(|p| p["name"].as_str().unwrap()).collect();
        // files off: no open point, the costliest by far in a build
        assert!(
            !names
                .iter()
                .any(|n| n.contains("open") || n.contains("creat")),
            "{names:?}"
        );
        assert!(names.contains(&"syscall/connect/exit"), "{names:?}");
        let all = ActivityConfig::default().pod_init_config(Path::new("/s"));
        for p in all["trace_session"]["points"].as_array().unwrap() {
            let ctx: Vec<&str> = p["context_fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap())
                .collect();
            for unused in ["time", "task_start_time", "thread_group_start_time"] {
                assert!(!ctx.contains(&unused), "{}: {ctx:?}", p["name"]);
            }
            let optional = p["optional_fields"].to_string();
            assert!(!optional.contains("binary_info"), "{}", p["name"]);
            if p["name"] != "syscall/openat/exit" {
                assert!(!optional.contains("fd_path"), "{}", p["name"]);
            }
        }
        let exit = points
            .iter()
            .find(|p| p["name"] == "sentry/task_exit")
            .unwrap();
        assert_eq!(exit["context_fields"], json!(["group_id", "thread_id"]));
    }

    fn toml_like(json: &str) -> ActivityConfig {
        serde_json::from_str(json).unwrap()
    }
}
