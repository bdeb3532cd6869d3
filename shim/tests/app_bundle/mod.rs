//! The app-container bundle the in-process Task service suites create
//! (`task_service.rs`, `delegate_service/`): a CRI container `agent` of pod
//! `pod-a` (sandbox `sb1`) running `sleep 60`.

use std::path::{Path, PathBuf};

use serde_json::json;

/// Write `dir/id/config.json` with `env`, and the pod's network namespace
/// if `net`; the bundle's path.
pub fn write(dir: &Path, id: &str, net: bool, env: &[&str]) -> PathBuf {
    let b = dir.join(id);
    std::fs::create_dir_all(&b).unwrap();
    let mut ns = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if net {
        ns.push(json!({"type": "network", "path": "/var/run/netns/cni-1"}));
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["sleep", "60"], "cwd": "/", "env": env},
        "root": {"path": "rootfs"},
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": "sb1",
            "io.kubernetes.cri.container-name": "agent",
            "io.kubernetes.cri.sandbox-name": "pod-a"
        },
        "linux": {"namespaces": ns}
    });
    std::fs::write(b.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
    b
}
