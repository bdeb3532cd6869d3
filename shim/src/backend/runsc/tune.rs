//! The tuning step of Create, after the policy and before `runsc create`:
//! the runsc flags for what this runsc supports (`tuning`, `probe`), the
//! per-pod folder of a file-backed root filesystem overlay, and for a pod's
//! sandbox container the emptyDir mount hints (`hints`), written into the
//! rewritten spec and audited.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::hints::{self, Volume, EMPTY_DIR_PLUGIN};
use super::tuning::{self, EmptyDirMode};
use crate::pod::{Admitted, Pod};

/// Longest a look at the kubelet's pods folder may take (a hung filesystem
/// costs the hints, never the pod).
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// What the tuning decided for one container. Dropped before [`Tuned::keep`],
/// it removes the overlay folder it created (Create failed).
#[derive(Debug, Default)]
pub(super) struct Tuned {
    /// Global runsc flags to add to the configured ones.
    pub flags: Vec<String>,
    /// The per-pod overlay folder this container created (the sandbox's own).
    pub overlay_dir: Option<PathBuf>,
}

impl Tuned {
    /// The container now owns the overlay folder (it removes it at delete).
    pub fn keep(&mut self) -> Option<PathBuf> {
        self.overlay_dir.take()
    }
}

impl Drop for Tuned {
    fn drop(&mut self) {
        if let Some(d) = &self.overlay_dir {
            remove_overlay_folder(d);
        }
    }
}

/// True for the container that becomes the runsc sandbox (a CRI pod's
/// sandbox container, or a container outside Kubernetes).
fn is_sandbox_root(admitted: &Admitted) -> bool {
    admitted
        .annotations
        .get("io.kubernetes.cri.container-type")
        .and_then(Value::as_str)
        .is_none_or(|t| t != "container")
}

/// A containerd id or namespace that is safe as one path component.
fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The pod's overlay folder: `<overlay_dir>/<namespace>/<sandbox id>`.
pub(super) fn overlay_folder(
    overlay_dir: &Path,
    namespace: &str,
    sandbox_id: &str,
) -> Result<PathBuf, String> {
    if !safe_component(namespace) || !safe_component(sandbox_id) {
        return Err(format!(
            "cannot name an overlay folder after namespace {namespace:?} and sandbox {sandbox_id:?}"
        ));
    }
    Ok(overlay_dir.join(namespace).join(sandbox_id))
}

/// Remove a pod's overlay folder (what runsc left in it included).
pub fn remove_overlay_folder(dir: &Path) {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot remove overlay folder"),
    }
}

/// A fresh, private folder (a leftover of an earlier sandbox of the same id is removed).
fn create_private(dir: &Path) -> Result<(), String> {
    if let Some(parent) = dir.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    remove_overlay_folder(dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create overlay folder {}: {e}", dir.display()))
}

/// The pod's emptyDir volumes in the kubelet's pods folder (canonical paths).
fn list_empty_dirs(pods_dir: &Path, uid: &str) -> Vec<Volume> {
    let dir = pods_dir.join(uid).join("volumes").join(EMPTY_DIR_PLUGIN);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !is_dir || !hints::valid_volume_name(&name) {
            continue;
        }
        if let Ok(source) = std::fs::canonicalize(e.path()) {
            out.push(Volume { name, source });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The tuning for a container about to be created. For the container that
/// becomes the sandbox: its overlay folder, and hints written into
/// `<bundle>/config.json`. An error means the container does not run.
pub(super) async fn prepare(
    pod: &Pod,
    admitted: &Admitted,
    bundle: &Path,
) -> Result<Tuned, String> {
    let cfg = &admitted.cfg;
    let t = &cfg.runtime.tuning;
    let explicit = &cfg.runtime.runsc_flags;
    let caps = super::probe::capabilities(&pod.reaper, &cfg.runtime.runsc, &cfg.runtime.runsc_root)
        .await?;
    let folder = if t.wants_overlay_dir(explicit) {
        Some(overlay_folder(
            &t.overlay_dir,
            &pod.namespace,
            &admitted.subject.sandbox_id,
        )?)
    } else {
        None
    };
    let flags = tuning::flags(t, &caps, explicit, folder.as_deref())?;
    if !is_sandbox_root(admitted) {
        if t.empty_dir == EmptyDirMode::Memory {
            memory_mounts(admitted, bundle, t).await?;
        }
        return Ok(Tuned {
            flags,
            overlay_dir: None,
        });
    }
    if let Some(f) = &folder {
        create_private(f)?;
    }
    let hints = if admitted.is_cri_sandbox() {
        sandbox_annotations(admitted, t).await
    } else {
        BTreeMap::new()
    };
    let tuned = Tuned {
        flags,
        overlay_dir: folder,
    };
    // on error, dropping `tuned` removes the folder
    write_and_audit(admitted, bundle, &caps.version, &tuned, &hints)?;
    Ok(tuned)
}

/// True if the cgroup exists on the host (made by the kubelet: then runsc
/// uses it as it is; a missing one runsc would create with the pause
/// container's resources).
fn cgroup_exists(path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    root.join("cpu").join(rel).is_dir() || root.join(rel).join("cgroup.controllers").is_file()
}

/// The annotations agentbox gives a pod's sandbox container: the emptyDir
/// mount hints and the pod's cgroup. Host lookups run off the event loop,
/// bounded: a hung filesystem costs the hints, never the pod.
async fn sandbox_annotations(
    admitted: &Admitted,
    t: &tuning::TuningConfig,
) -> BTreeMap<String, String> {
    let uid = hints::pod_uid(&admitted.annotations).filter(|_| t.empty_dir != EmptyDirMode::Off);
    let cgroup = hints::pod_cgroup(&admitted.enforced.spec)
        .filter(|_| t.pod_cgroup && !admitted.annotations.contains_key(hints::CGROUP_PARENT));
    let pods_dir = t.kubelet_pods_dir.clone();
    let lookup = tokio::task::spawn_blocking(move || {
        let volumes = uid
            .map(|u| list_empty_dirs(&pods_dir, &u))
            .unwrap_or_default();
        (volumes, cgroup.filter(|c| cgroup_exists(c)))
    });
    let (volumes, cgroup) = match tokio::time::timeout(LIST_TIMEOUT, lookup).await {
        Ok(Ok(found)) => found,
        _ => {
            tracing::warn!(
                container = %admitted.id,
                "the kubelet's folders did not answer in time: no hints"
            );
            return BTreeMap::new();
        }
    };
    let mut out = hints::empty_dir_hints(t.empty_dir, &admitted.annotations, &volumes);
    if let Some(c) = cgroup {
        out.insert(hints::CGROUP_PARENT.to_string(), c);
    }
    out
}

/// `memory` emptyDir hints: the container's binds of the pod's emptyDir
/// folders become tmpfs mounts of the pod's shared tmpfs (audited).
async fn memory_mounts(
    admitted: &Admitted,
    bundle: &Path,
    t: &tuning::TuningConfig,
) -> Result<(), String> {
    let pods_dir = t.kubelet_pods_dir.clone();
    let canonical = tokio::task::spawn_blocking(move || std::fs::canonicalize(&pods_dir));
    let pods_dir = match tokio::time::timeout(LIST_TIMEOUT, canonical).await {
        Ok(Ok(Ok(p))) => p,
        _ => t.kubelet_pods_dir.clone(),
    };
    let uid = hints::pod_uid(&admitted.annotations);
    let Some((spec, changed)) =
        hints::tmpfs_for_empty_dirs(&admitted.enforced.spec, &pods_dir, uid.as_deref())
    else {
        return Ok(());
    };
    admitted
        .audit
        .record(
            "tuning",
            &admitted.subject,
            json!({"empty_dir": "memory", "tmpfs": changed}),
        )
        .map_err(|e| format!("agentbox refused to run: {e}"))?;
    let path = bundle.join("config.json");
    crate::enforce::write_atomic(&path, &spec)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn write_and_audit(
    admitted: &Admitted,
    bundle: &Path,
    version: &str,
    tuned: &Tuned,
    hints: &BTreeMap<String, String>,
) -> Result<(), String> {
    let record = json!({
        "runsc": version,
        "flags": tuned.flags,
        "hints": hints,
    });
    admitted
        .audit
        .record("tuning", &admitted.subject, record)
        .map_err(|e| format!("agentbox refused to run: {e}"))?;
    if hints.is_empty() {
        return Ok(());
    }
    let spec: Value = hints::with_hints(&admitted.enforced.spec, hints);
    let path = bundle.join("config.json");
    crate::enforce::write_atomic(&path, &spec)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_folder_is_one_component_per_part() {
        let base = Path::new("/var/lib/agentbox/overlay");
        assert_eq!(
            overlay_folder(base, "k8s.io", "abc123").unwrap(),
            Path::new("/var/lib/agentbox/overlay/k8s.io/abc123")
        );
        for (ns, id) in [("k8s.io", "../x"), ("..", "a"), ("a/b", "c"), ("a", "")] {
            assert!(overlay_folder(base, ns, id).is_err(), "{ns} {id}");
        }
    }

    #[test]
    fn creates_a_private_folder_and_removes_it_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ns/sb");
        create_private(&f).unwrap();
        std::fs::write(f.join("leftover"), b"x").unwrap();
        // a second sandbox with the same id starts from an empty folder
        create_private(&f).unwrap();
        assert_eq!(std::fs::read_dir(&f).unwrap().count(), 0);
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::write(f.join("file"), b"x").unwrap();
        remove_overlay_folder(&f);
        assert!(!f.exists());
        remove_overlay_folder(&f); // absent: fine
    }

    #[test]
    fn lists_only_empty_dir_folders_with_valid_names() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("pods/u1/volumes").join(EMPTY_DIR_PLUGIN);
        for d in ["workspace", "cache", "Bad.Name"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::write(base.join("file"), b"").unwrap();
        std::os::unix::fs::symlink("/etc", base.join("link")).unwrap();
        let v = list_empty_dirs(&dir.path().join("pods"), "u1");
        let names: Vec<&str> = v.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["cache", "workspace"]);
        assert!(v[0].source.is_absolute());
        assert!(list_empty_dirs(&dir.path().join("pods"), "nope").is_empty());
    }
}
