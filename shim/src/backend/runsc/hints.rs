//! Mount hints agentbox gives runsc for the pod's emptyDir volumes, as
//! gVisor's own shim (containerd-shim-runsc-v1) does: `dev.gvisor.spec.mount.
//! <volume>.{source,type,share}` annotations on the pod's sandbox container,
//! which runsc reads once, when the sandbox boots, and applies to every later
//! container mount whose source is the hinted folder.
//!
//! Added by agentbox *after* the policy (which removes every `dev.gvisor.*`
//! key a pod brings unless the node allowlists it) and never taken from the
//! pod: the volumes come from the kubelet's pods folder for the pod's uid, the
//! uid from the CRI annotations containerd sets. Pure: the caller lists the
//! folder (see `tune`).
//!
//! What each mode does for someone reading the volume from the host:
//! - `exclusive` (`type=bind, share=container`): the volume stays the host
//!   folder; every write reaches it when it happens. The sandbox caches what
//!   it has looked up, so a file changed from *outside* the container (the
//!   host, another container) while it runs may be seen late by it.
//! - `memory` (`type=tmpfs, share=pod`): the volume is a tmpfs inside the
//!   sandbox, shared by the pod's containers; the host folder stays empty.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::tuning::EmptyDirMode;

/// The annotation that makes runsc put the sandbox in this cgroup.
pub const CGROUP_PARENT: &str = "dev.gvisor.spec.cgroup-parent";
/// The annotation prefix runsc reads mount hints from.
pub const MOUNT_PREFIX: &str = "dev.gvisor.spec.mount.";
/// The kubelet's folder of a pod's emptyDir volumes, below `pods/<uid>/volumes/`.
pub const EMPTY_DIR_PLUGIN: &str = "kubernetes.io~empty-dir";

const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
const SANDBOX_LOG_DIR: &str = "io.kubernetes.cri.sandbox-log-directory";

/// An emptyDir volume of the pod: its name and its folder on the host
/// (canonical: runsc matches hints to mounts by exact source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub source: PathBuf,
}

fn annotation<'a>(a: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    a.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A pod uid that is safe as one path component.
fn valid_uid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The pod's uid from a CRI sandbox spec's annotations: containerd's
/// `sandbox-uid`, else (older containerd) the last `_` field of the pod's log
/// folder `<namespace>_<name>_<uid>` (as gVisor's shim reads it).
pub fn pod_uid(annotations: &Map<String, Value>) -> Option<String> {
    if let Some(uid) = annotation(annotations, SANDBOX_UID) {
        return valid_uid(uid).then(|| uid.to_string());
    }
    let dir = annotation(annotations, SANDBOX_LOG_DIR)?;
    let base = dir.trim_end_matches('/').rsplit('/').next()?;
    let fields: Vec<&str> = base.split('_').collect();
    let uid = match fields.as_slice() {
        [uid] => uid,
        [_, _, uid] => uid,
        _ => return None,
    };
    valid_uid(uid).then(|| uid.to_string())
}

/// A Kubernetes volume name runsc can carry in a hint key (a DNS label: no
/// `.`, which would split the key).
pub fn valid_volume_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// The hints for `volumes` under `mode`, as annotation key → value. A volume
/// that already has a hint in `existing` (by name or by source: a node
/// allowlisted it for the pod) is left alone, so runsc never sees two.
pub fn empty_dir_hints(
    mode: EmptyDirMode,
    existing: &Map<String, Value>,
    volumes: &[Volume],
) -> BTreeMap<String, String> {
    let (kind, share) = match mode {
        EmptyDirMode::Off => return BTreeMap::new(),
        EmptyDirMode::Exclusive => ("bind", "container"),
        EmptyDirMode::Memory => ("tmpfs", "pod"),
    };
    let hinted_names: Vec<&str> = existing
        .keys()
        .filter_map(|k| k.strip_prefix(MOUNT_PREFIX))
        .filter_map(|rest| rest.split('.').next())
        .collect();
    let hinted_sources: Vec<&str> = existing
        .iter()
        .filter(|(k, _)| k.starts_with(MOUNT_PREFIX) && k.ends_with(".source"))
        .filter_map(|(_, v)| v.as_str())
        .collect();
    let mut out = BTreeMap::new();
    for v in volumes {
        let Some(source) = v.source.to_str() else {
            continue;
        };
        if !valid_volume_name(&v.name)
            || hinted_names.contains(&v.name.as_str())
            || hinted_sources.contains(&source)
        {
            continue;
        }
        let key = |field: &str| format!("{MOUNT_PREFIX}{}.{field}", v.name);
        out.insert(key("source"), source.to_string());
        out.insert(key("type"), kind.to_string());
        out.insert(key("share"), share.to_string());
    }
    out
}

/// True if `source` is `<pods_dir>/<uid>/volumes/kubernetes.io~empty-dir/<volume>`
/// (any uid if `uid` is None, as gVisor's shim matches).
fn is_empty_dir(source: &Path, pods_dir: &Path, uid: Option<&str>) -> bool {
    let name_ok = source
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(valid_volume_name);
    let Some(plugin) = source.parent() else {
        return false;
    };
    let Some(pod) = plugin.parent().and_then(Path::parent) else {
        return false;
    };
    name_ok
        && plugin.file_name() == Some(EMPTY_DIR_PLUGIN.as_ref())
        && plugin.parent().and_then(Path::file_name) == Some("volumes".as_ref())
        && pod.parent() == Some(pods_dir)
        && pod
            .file_name()
            .and_then(|u| u.to_str())
            .is_some_and(|u| valid_uid(u) && uid.is_none_or(|want| u == want))
}

/// For `memory` hints, a later container's binds of the pod's emptyDir
/// folders become `tmpfs` mounts (source kept: runsc matches it to the hint
/// and mounts the pod's shared tmpfs), as gVisor's shim rewrites them; the
/// spec and the changed destinations if anything changed. Only ever turns a
/// host bind into a sandbox-internal mount.
pub fn tmpfs_for_empty_dirs(
    spec: &Value,
    pods_dir: &Path,
    uid: Option<&str>,
) -> Option<(Value, Vec<String>)> {
    let mut spec = spec.clone();
    let mut changed = Vec::new();
    let mounts = spec.get_mut("mounts")?.as_array_mut()?;
    for m in mounts.iter_mut() {
        let Some(obj) = m.as_object_mut() else {
            continue;
        };
        let source = obj.get("source").and_then(Value::as_str).map(Path::new);
        let hinted = source.is_some_and(|s| is_empty_dir(s, pods_dir, uid));
        if !hinted || !is_bind(obj) {
            continue;
        }
        obj.insert("type".into(), Value::String("tmpfs".into()));
        if let Some(opts) = obj.get_mut("options").and_then(Value::as_array_mut) {
            opts.retain(|o| !matches!(o.as_str(), Some("bind") | Some("rbind")));
        }
        if let Some(d) = obj.get("destination").and_then(Value::as_str) {
            changed.push(d.to_string());
        }
    }
    (!changed.is_empty()).then_some((spec, changed))
}

fn is_bind(m: &Map<String, Value>) -> bool {
    m.get("type").and_then(Value::as_str) == Some("bind")
        || m.get("options").and_then(Value::as_array).is_some_and(|o| {
            o.iter()
                .any(|o| matches!(o.as_str(), Some("bind") | Some("rbind")))
        })
}

/// The pod's cgroup in a sandbox spec's `linux.cgroupsPath`
/// (`/kubepods/burstable/pod<uid>/<id>` → `/kubepods/burstable/pod<uid>`), as
/// gVisor's shim finds it: with it as `dev.gvisor.spec.cgroup-parent` the
/// sandbox — every container of the pod — runs under the pod's CPU and memory
/// settings instead of the pause container's (`cpu.shares` 2, which starves
/// the sandbox whenever the node is busy). None for a systemd-style path.
pub fn pod_cgroup(spec: &Value) -> Option<String> {
    let path = spec.pointer("/linux/cgroupsPath")?.as_str()?;
    if path.contains(':') || path.split('/').any(|p| p == "..") {
        return None;
    }
    let parts: Vec<&str> = path.split('/').collect();
    let i = parts.iter().rposition(|p| p.starts_with("pod"))?;
    let parent = parts[..=i].join("/");
    (parent != path && !parent.trim_matches('/').is_empty()).then_some(parent)
}

/// `annotations` with `hints` added.
pub fn with_hints(spec: &Value, hints: &BTreeMap<String, String>) -> Value {
    let mut spec = spec.clone();
    if hints.is_empty() {
        return spec;
    }
    if let Some(obj) = spec.as_object_mut() {
        let ann = obj
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if !ann.is_object() {
            *ann = Value::Object(Map::new());
        }
        if let Some(ann) = ann.as_object_mut() {
            for (k, v) in hints {
                ann.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ann(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn vols() -> Vec<Volume> {
        vec![
            Volume {
                name: "workspace".into(),
                source: "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/workspace".into(),
            },
            Volume {
                name: "cache".into(),
                source: "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache".into(),
            },
        ]
    }

    #[test]
    fn uid_from_containerd_or_the_log_folder() {
        assert_eq!(
            pod_uid(&ann(json!({"io.kubernetes.cri.sandbox-uid": "7d3c-11"}))).as_deref(),
            Some("7d3c-11")
        );
        assert_eq!(
            pod_uid(&ann(json!({
                "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/ns_name_abc-123/"
            })))
            .as_deref(),
            Some("abc-123")
        );
        assert_eq!(
            pod_uid(&ann(json!({
                "io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/abc"
            })))
            .as_deref(),
            Some("abc")
        );
        for bad in [
            json!({"io.kubernetes.cri.sandbox-uid": "../../etc"}),
            json!({"io.kubernetes.cri.sandbox-uid": ".."}),
            json!({"io.kubernetes.cri.sandbox-uid": "a/b"}),
            json!({"io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/a_b"}),
            json!({"io.kubernetes.cri.sandbox-log-directory": "/var/log/pods/a_b_.."}),
            json!({}),
        ] {
            assert_eq!(pod_uid(&ann(bad.clone())), None, "{bad}");
        }
    }

    #[test]
    fn exclusive_hints_keep_the_host_folder() {
        let h = empty_dir_hints(EmptyDirMode::Exclusive, &Map::new(), &vols());
        assert_eq!(h.len(), 6);
        assert_eq!(h["dev.gvisor.spec.mount.workspace.type"], "bind");
        assert_eq!(h["dev.gvisor.spec.mount.workspace.share"], "container");
        assert_eq!(
            h["dev.gvisor.spec.mount.cache.source"],
            "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache"
        );
    }

    #[test]
    fn memory_hints_make_a_pod_tmpfs_and_off_adds_nothing() {
        let h = empty_dir_hints(EmptyDirMode::Memory, &Map::new(), &vols());
        assert_eq!(h["dev.gvisor.spec.mount.cache.type"], "tmpfs");
        assert_eq!(h["dev.gvisor.spec.mount.cache.share"], "pod");
        assert!(empty_dir_hints(EmptyDirMode::Off, &Map::new(), &vols()).is_empty());
    }

    #[test]
    fn an_existing_hint_by_name_or_source_is_left_alone() {
        let existing = ann(json!({
            "dev.gvisor.spec.mount.workspace.share": "shared",
            "dev.gvisor.spec.mount.other.source":
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache",
        }));
        let h = empty_dir_hints(EmptyDirMode::Exclusive, &existing, &vols());
        assert!(h.is_empty(), "{h:?}");
    }

    #[test]
    fn names_runsc_cannot_carry_are_skipped() {
        for bad in ["a.b", "", "-a", "a-", "UPPER", "a_b", &"x".repeat(64)] {
            assert!(!valid_volume_name(bad), "{bad}");
            let v = vec![Volume {
                name: bad.to_string(),
                source: "/p".into(),
            }];
            assert!(empty_dir_hints(EmptyDirMode::Exclusive, &Map::new(), &v).is_empty());
        }
        assert!(valid_volume_name("ws-1"));
    }

    #[test]
    fn memory_mode_turns_the_pods_empty_dir_binds_into_tmpfs() {
        let pods = Path::new("/var/lib/kubelet/pods");
        let spec = json!({"mounts": [
            {"destination": "/workspace", "type": "bind",
             "source": "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/workspace",
             "options": ["rbind", "rprivate", "ro"]},
            {"destination": "/cache", "type": "none",
             "source": "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache",
             "options": ["bind"]},
            {"destination": "/other", "type": "bind",
             "source": "/var/lib/kubelet/pods/u2/volumes/kubernetes.io~empty-dir/workspace",
             "options": ["rbind"]},
            {"destination": "/sub", "type": "bind",
             "source": "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/workspace/sub",
             "options": ["rbind"]},
            {"destination": "/proc", "type": "proc", "source": "proc"}
        ]});
        let (out, changed) = tmpfs_for_empty_dirs(&spec, pods, Some("u1")).unwrap();
        assert_eq!(changed, ["/workspace", "/cache"]);
        assert_eq!(out["mounts"][0]["type"], "tmpfs");
        assert_eq!(out["mounts"][0]["options"], json!(["rprivate", "ro"]));
        assert_eq!(
            out["mounts"][0]["source"], spec["mounts"][0]["source"],
            "runsc matches the hint by source"
        );
        assert_eq!(out["mounts"][1]["type"], "tmpfs");
        assert_eq!(out["mounts"][2], spec["mounts"][2]);
        assert_eq!(out["mounts"][3], spec["mounts"][3]);
        assert_eq!(out["mounts"][4], spec["mounts"][4]);
        assert!(tmpfs_for_empty_dirs(&json!({"mounts": []}), pods, None).is_none());
        // without the uid, any pod's emptyDir folder matches (as gVisor's shim)
        let (_, any) = tmpfs_for_empty_dirs(&spec, pods, None).unwrap();
        assert_eq!(any, ["/workspace", "/cache", "/other"]);
    }

    #[test]
    fn pod_cgroup_as_gvisors_shim_finds_it() {
        let spec = |p: &str| json!({"linux": {"cgroupsPath": p}});
        assert_eq!(
            pod_cgroup(&spec("/kubepods/burstable/pod12-34/abcdef")).as_deref(),
            Some("/kubepods/burstable/pod12-34")
        );
        assert_eq!(
            pod_cgroup(&spec("kubepods/podx/c1")).as_deref(),
            Some("kubepods/podx")
        );
        for none in [
            "/kubepods/burstable/pod12",
            "/default/c1",
            "kubepods-besteffort-pod1.slice:cri-containerd:c1",
            "/pods/../pod1/c",
            "",
        ] {
            assert_eq!(pod_cgroup(&spec(none)), None, "{none}");
        }
        assert_eq!(pod_cgroup(&json!({})), None);
    }

    #[test]
    fn hints_are_merged_into_the_spec() {
        let spec = json!({"ociVersion": "1.0.2", "annotations": {"a": "b"}});
        let h = empty_dir_hints(EmptyDirMode::Exclusive, &Map::new(), &vols()[..1]);
        let out = with_hints(&spec, &h);
        assert_eq!(out["annotations"]["a"], "b");
        assert_eq!(
            out["annotations"]["dev.gvisor.spec.mount.workspace.share"],
            "container"
        );
        let bare = with_hints(&json!({"ociVersion": "1.0.2"}), &h);
        assert_eq!(bare["annotations"].as_object().unwrap().len(), 3);
        assert_eq!(with_hints(&spec, &BTreeMap::new()), spec);
    }
}
