//! `root.path`: the container's root must be the bundle's `rootfs`, the folder
//! containerd prepares (and mounts the image snapshot on). Anything else — `/`
//! from `ctr run --rootfs /`, a host folder, `rootfs/..` — would make the host's
//! files the container's and every mount rule moot.

use std::path::Path;

use serde_json::{Map, Value};

use crate::paths::normalize;
use crate::report::Refusal;

const RULE: &str = "root.path";

/// `rootfs` relative to the bundle after lexical normalisation (`./rootfs`,
/// `rootfs/` …); `None` if it leaves the bundle or names something else.
fn relative_is_rootfs(path: &str) -> bool {
    path == "rootfs" || normalize(&format!("/{path}")).as_deref() == Some("/rootfs")
}

pub(crate) fn check(root: &Map<String, Value>, bundle: Option<&Path>) -> Result<(), Refusal> {
    let Some(path) = root
        .get("root")
        .and_then(|r| r.get("path"))
        .and_then(Value::as_str)
    else {
        return Err(Refusal::new(
            RULE,
            "root",
            "the spec has no root.path (containerd always sets it to the bundle's rootfs)",
        ));
    };
    if !path.starts_with('/') {
        if relative_is_rootfs(path) {
            return Ok(());
        }
        return Err(Refusal::new(
            RULE,
            path,
            format!("root.path {path:?} is not the bundle's rootfs"),
        ));
    }
    let want = bundle
        .filter(|b| b.is_absolute())
        .and_then(Path::to_str)
        .and_then(normalize)
        .map(|b| {
            if b == "/" {
                "/rootfs".to_string()
            } else {
                format!("{b}/rootfs")
            }
        });
    match want {
        Some(w) if normalize(path).as_deref() == Some(w.as_str()) => Ok(()),
        Some(w) => Err(Refusal::new(
            RULE,
            path,
            format!("root.path {path:?} is not the bundle's rootfs ({w})"),
        )),
        None => Err(Refusal::new(
            RULE,
            path,
            format!(
                "root.path {path:?} is absolute and no bundle folder was given to check it against (only \"rootfs\" is accepted without one)"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(root: Value, bundle: Option<&str>) -> Result<(), String> {
        let m = json!({ "root": root });
        check(m.as_object().unwrap(), bundle.map(Path::new)).map_err(|r| r.reason)
    }

    #[test]
    fn rootfs_only() {
        let b = Some("/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc");
        for ok in [
            "rootfs",
            "./rootfs",
            "rootfs/",
            "rootfs/.",
            "rootfs/../rootfs",
        ] {
            assert!(run(json!({"path": ok}), None).is_ok(), "{ok}");
            assert!(run(json!({"path": ok}), b).is_ok(), "{ok}");
        }
        let abs = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs";
        assert!(run(json!({"path": abs}), b).is_ok());
        assert!(run(json!({"path": format!("{abs}/")}), b).is_ok());
        assert!(run(json!({"path": abs}), None).is_err());
        for bad in [
            "/",
            "/rootfs",
            "rootfs/..",
            "..",
            ".",
            "",
            "rootfs/etc",
            "../other/rootfs",
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/other/rootfs",
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs/..",
        ] {
            let e = run(json!({"path": bad}), b).unwrap_err();
            assert!(e.contains("not the bundle's rootfs"), "{bad}: {e}");
        }
        assert!(run(json!({}), b).unwrap_err().contains("no root.path"));
        assert!(run(json!({"path": "rootfs"}), Some("relative/bundle")).is_ok());
        assert!(run(json!({"path": "/x/rootfs"}), Some("relative/x")).is_err());
    }
}
