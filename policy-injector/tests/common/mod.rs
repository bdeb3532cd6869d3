//! Shared by the adversarial test files: a CRI-like base spec, mount
//! helpers, decision helpers and a fake host with a symlink table.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io;

use agentbox_policy::{apply_value, Decision, FileId, HostFs, NoHostFs, Policy, Profile};
use serde_json::{json, Value};

pub const POD: &str = "/var/lib/kubelet/pods/0d3c1a6e-5b1f-4a8e-9c7d-2f4e6a8b0c1d";

pub fn base() -> Value {
    json!({
        "ociVersion": "1.1.0",
        "process": {
            "args": ["sh"], "cwd": "/",
            "env": ["PATH=/usr/bin:/bin", "HOME=/root"],
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/work", "type": "bind", "source": format!("{POD}/volumes/kubernetes.io~empty-dir/work"), "options": ["rbind", "rw"]}
        ],
        "annotations": {"io.kubernetes.cri.container-name": "agent"},
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network", "path": "/var/run/netns/cni-1"}],
            "maskedPaths": agentbox_policy::MASKED_PATHS,
            "readonlyPaths": agentbox_policy::READONLY_PATHS
        }
    })
}

pub fn with_mount(m: Value) -> Value {
    let mut s = base();
    s["mounts"].as_array_mut().unwrap().push(m);
    s
}

pub fn bind(src: &str, dst: &str) -> Value {
    json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro"]})
}

pub fn standard() -> Policy {
    Policy::from_profile(Profile::Standard)
}

pub fn sensitive() -> Policy {
    Policy::from_profile(Profile::Sensitive)
}

pub fn allowed(d: Decision) -> (Value, agentbox_policy::Report) {
    match d {
        Decision::Allowed { spec, report } => (spec, report),
        Decision::Rejected { reason, .. } => panic!("unexpectedly refused: {reason}"),
    }
}

pub fn refused(d: Decision) -> String {
    match d {
        Decision::Allowed { report, .. } => panic!("unexpectedly allowed: {report:?}"),
        Decision::Rejected { reason, .. } => reason,
    }
}

pub fn dests(spec: &Value) -> Vec<String> {
    spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap().to_string())
        .collect()
}

/// The mount at `dst` must be gone, under both profiles (standard: the rest allowed).
pub fn assert_mount_removed(src: &str, dst: &str, rule: &str) {
    let (spec, report) = allowed(apply_value(
        &standard(),
        with_mount(bind(src, dst)),
        &NoHostFs,
    ));
    assert!(!dests(&spec).contains(&dst.to_string()), "{src} survived");
    assert!(
        report
            .changes
            .iter()
            .any(|c| c.rule == rule && c.target == dst),
        "{src}: expected {rule}, got {:?}",
        report.changes
    );
    let (spec, _) = allowed(apply_value(
        &sensitive(),
        with_mount(bind(src, dst)),
        &NoHostFs,
    ));
    assert!(
        !dests(&spec).contains(&dst.to_string()),
        "{src} survived (sensitive)"
    );
}

/// A host with a fixed symlink table, sockets and file ids. `file_id` and
/// `is_socket` follow the links as the kernel would (bounded).
#[derive(Default)]
pub struct FakeHost {
    pub links: HashMap<String, String>,
    pub sockets: Vec<String>,
    pub ids: HashMap<String, FileId>,
}

impl FakeHost {
    pub fn new(links: &[(&str, &str)]) -> FakeHost {
        FakeHost {
            links: links
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..FakeHost::default()
        }
    }

    /// Follow links component by component (at most 40), as the kernel does.
    fn follow(&self, path: &str) -> String {
        let mut todo: Vec<String> = path.split('/').rev().map(str::to_string).collect();
        let mut cur: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "" | "." => {}
                ".." => {
                    cur.pop();
                }
                _ => {
                    let cand = format!("/{}", [cur.join("/"), c.clone()].join("/"));
                    let cand = cand.replace("//", "/");
                    match self.links.get(&cand) {
                        Some(t) if hops < 40 => {
                            hops += 1;
                            if t.starts_with('/') {
                                cur.clear();
                            }
                            todo.extend(t.split('/').rev().map(str::to_string));
                        }
                        _ => cur.push(c),
                    }
                }
            }
        }
        format!("/{}", cur.join("/"))
    }
}

impl HostFs for FakeHost {
    fn read_link(&self, path: &str) -> io::Result<Option<String>> {
        Ok(self.links.get(path).cloned())
    }
    fn is_socket(&self, path: &str) -> bool {
        self.sockets.contains(&self.follow(path))
    }
    fn file_id(&self, path: &str) -> Option<FileId> {
        self.ids.get(&self.follow(path)).copied()
    }
}
