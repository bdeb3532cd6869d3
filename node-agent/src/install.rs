//! `agentbox-node install`: binaries, policies, containerd wiring; a restart
//! only when the wiring changed (or containerd has not loaded it); verified
//! through CRI; rolled back when containerd does not come back with the
//! handlers. Running it again changes nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use crate::cri::{Containerd, CriError};
use crate::files::{self, Journal};
use crate::paths::Layout;
use crate::restart::{RestartError, Restarter};
use crate::source::{self, Source, SourceError};
use crate::state::{self, FileKind, FileRecord, State, StateError, WiringRecord};
use crate::wiring::{self, Mode, WiringError};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Wiring(#[from] WiringError),
    #[error("{0}")]
    Layout(String),
    #[error("cannot ask containerd: {0}")]
    Cri(#[from] CriError),
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("containerd {0} ignores a handler's runtime_path: agentbox-node links the shim into a folder on containerd's PATH, so --shim-link-dir must be set")]
    NeedsLink(String),
    #[error("{0} exists and is not agentbox-node's link to the shim; remove it or choose another --shim-link-dir")]
    Foreign(PathBuf),
    #[error("the last install wired containerd {was}, this one would use {now} (the config's imports changed): run `agentbox-node uninstall` first")]
    ModeChanged {
        was: &'static str,
        now: &'static str,
    },
    #[error("{reason}; rolled back: containerd runs with its previous config{}", rollback_note(.rollback_errors))]
    RolledBack {
        reason: String,
        rollback_errors: Vec<String>,
    },
}

fn rollback_note(errors: &[String]) -> String {
    if errors.is_empty() {
        String::new()
    } else {
        format!(" (but could not restore: {})", errors.join("; "))
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |err| InstallError::Io {
        path: path.to_path_buf(),
        err,
    }
}

#[derive(Debug, Clone)]
pub struct InstallOptions {
    pub layout: Layout,
    /// The chart's ConfigMap (fragments and policies).
    pub source_dir: PathBuf,
    /// The binaries to install (in the image).
    pub binaries_dir: PathBuf,
    /// How long containerd may take to answer again after a restart.
    pub ready_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    pub containerd: String,
    pub mode: &'static str,
    pub handlers: Vec<String>,
    /// Host paths written or removed by this run.
    pub changed: Vec<PathBuf>,
    pub wiring_changed: bool,
    pub restarted: bool,
}

impl std::fmt::Display for InstallReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "agentbox installed: handlers {} on containerd {} ({}); {}; {}",
            self.handlers.join(", "),
            self.containerd,
            self.mode,
            if self.changed.is_empty() {
                "nothing changed".to_string()
            } else {
                format!("{} file(s) changed", self.changed.len())
            },
            if self.restarted {
                "containerd restarted"
            } else {
                "no containerd restart"
            }
        )
    }
}

/// Restarts containerd and checks what it loaded: all of `want`, none of `gone`.
pub(crate) fn restart_and_verify(
    ctd: &mut dyn Containerd,
    restarter: &mut dyn Restarter,
    timeout: Duration,
    want: &[String],
    gone: &[String],
) -> Result<(), String> {
    restarter
        .restart()
        .map_err(|e: RestartError| e.to_string())?;
    ctd.wait_ready(timeout).map_err(|e| e.to_string())?;
    let loaded = ctd.loaded_handlers().map_err(|e| e.to_string())?.ok_or(
        "containerd's CRI status lists no runtime handlers, so agentbox-node cannot verify them",
    )?;
    let missing: Vec<_> = want.iter().filter(|h| !loaded.contains(*h)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "containerd restarted without handler(s) {missing:?} (it loaded {loaded:?})"
        ));
    }
    let left: Vec<_> = gone.iter().filter(|h| loaded.contains(*h)).collect();
    if !left.is_empty() {
        return Err(format!(
            "containerd still has handler(s) {left:?} after the restart"
        ));
    }
    Ok(())
}

/// Undo a journal, restart containerd on the old config, and say so.
pub(crate) fn roll_back(
    journal: Journal,
    ctd: &mut dyn Containerd,
    restarter: &mut dyn Restarter,
    timeout: Duration,
    reason: String,
) -> InstallError {
    warn!(%reason, "rolling back");
    let mut errors = journal.rollback();
    if let Err(e) = restarter.restart() {
        errors.push(format!("restart after rollback: {e}"));
    } else if let Err(e) = ctd.wait_ready(timeout) {
        errors.push(format!("containerd after rollback: {e}"));
    }
    InstallError::RolledBack {
        reason,
        rollback_errors: errors,
    }
}

struct Planned {
    wiring: wiring::Plan,
    /// current text of the file the plan writes (config or drop-in)
    current: Option<String>,
}

fn plan_wiring(
    layout: &Layout,
    src: &Source,
    prev: Option<&State>,
    version: crate::ContainerdVersion,
) -> Result<Planned, InstallError> {
    let cfg_seen = layout.on_host(&layout.containerd_config);
    let config = files::read_opt(&cfg_seen)
        .map_err(io_err(&cfg_seen))?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let stale: Vec<String> = prev
        .map(|p| {
            p.handlers
                .iter()
                .filter(|h| !src.handlers.contains(h))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let dropin = layout.dropin_path();
    let plan = wiring::plan(&wiring::Inputs {
        config_path: &layout.containerd_config,
        config: config.as_deref(),
        version,
        fragments: &src.fragments,
        dropin_path: &dropin,
        stale_handlers: &stale,
    })?;
    let now = match plan.mode {
        Mode::DropIn { .. } => "drop-in",
        Mode::InPlace { .. } => "in-place",
    };
    if let Some(p) = prev {
        if p.wiring.mode_name() != now {
            return Err(InstallError::ModeChanged {
                was: p.wiring.mode_name(),
                now,
            });
        }
    }
    let current = match &plan.mode {
        Mode::DropIn { path } => {
            let seen = layout.on_host(path);
            files::read_opt(&seen)
                .map_err(io_err(&seen))?
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        }
        Mode::InPlace { .. } => config,
    };
    Ok(Planned {
        wiring: plan,
        current,
    })
}

/// Backs up a file of someone else's that an install is about to replace.
fn keep_foreign(
    layout: &Layout,
    journal: &mut Journal,
    host_path: &Path,
) -> Result<Option<PathBuf>, InstallError> {
    let seen = layout.on_host(host_path);
    let Some(bytes) = files::read_opt(&seen).map_err(io_err(&seen))? else {
        return Ok(None);
    };
    let name = files::sha256_bytes(host_path.to_string_lossy().as_bytes());
    let backup = layout.backup_dir().join(format!("{}.orig", &name[..16]));
    let bseen = layout.on_host(&backup);
    journal
        .write(&bseen, &bytes, files::mode_or(&seen, 0o644))
        .map_err(io_err(&bseen))?;
    Ok(Some(backup))
}

pub fn install(
    opts: &InstallOptions,
    ctd: &mut dyn Containerd,
    restarter: &mut dyn Restarter,
) -> Result<InstallReport, InstallError> {
    let layout = &opts.layout;
    layout.check().map_err(InstallError::Layout)?;
    // 1. everything we install is valid, before the host changes
    let src = source::load(&opts.source_dir, &opts.binaries_dir, layout)?;
    let version = ctd.version()?;
    let state_seen = layout.on_host(&layout.state_path());
    let prev = state::load(&state_seen)?;
    let planned = plan_wiring(layout, &src, prev.as_ref(), version)?;
    let known = |p: &Path| -> Option<&FileRecord> {
        prev.as_ref()
            .and_then(|s| s.files.iter().find(|f| f.path == p))
    };

    // 2. files: binaries and policies, each replaced atomically if it differs
    let mut journal = Journal::new();
    let mut changed = vec![];
    let mut records = vec![];
    let mut wanted: Vec<(PathBuf, FileKind, Content)> = vec![];
    for b in &src.binaries {
        wanted.push((
            b.dest.clone(),
            FileKind::Binary,
            Content::Copy(b.src.clone()),
        ));
    }
    for p in &src.policies {
        wanted.push((
            p.path.clone(),
            FileKind::Policy,
            Content::Bytes(p.text.clone().into_bytes()),
        ));
    }
    for (dest, kind, content) in wanted {
        let seen = layout.on_host(&dest);
        let sha = content.sha256().map_err(io_err(&dest))?;
        let have = files::sha256_file(&seen).map_err(io_err(&seen))?;
        let prev_rec = known(&dest);
        let replaced_backup = match prev_rec {
            Some(r) => r.replaced_backup.clone(),
            None if have.is_some() => keep_foreign(layout, &mut journal, &dest)?,
            None => None,
        };
        if have.as_deref() != Some(sha.as_str()) {
            let mode = if kind == FileKind::Binary {
                0o755
            } else {
                0o644
            };
            match &content {
                Content::Copy(src) => journal.copy(src, &seen, mode),
                Content::Bytes(b) => journal.write(&seen, b, mode),
            }
            .map_err(io_err(&seen))?;
            info!(path = %dest.display(), "installed");
            changed.push(dest.clone());
        }
        records.push(FileRecord {
            path: dest,
            kind,
            sha256: sha,
            replaced_backup,
        });
    }
    // containerd 1.6 ignores runtime_path: link the shim into a folder on its PATH
    if version < crate::ContainerdVersion::new(1, 7, 0) {
        let dir = layout
            .shim_link_dir
            .as_ref()
            .ok_or(InstallError::NeedsLink(version.to_string()))?;
        let link = dir.join(crate::paths::SHIM);
        let seen = layout.on_host(&link);
        let target = layout.shim_path();
        let sha = files::sha256_bytes(target.as_os_str().as_encoded_bytes());
        match std::fs::symlink_metadata(&seen) {
            Ok(m)
                if m.file_type().is_symlink()
                    && std::fs::read_link(&seen).ok().as_deref() == Some(target.as_path()) => {}
            Ok(_) if known(&link).is_none() => return Err(InstallError::Foreign(link)),
            _ => {
                journal.symlink(&target, &seen).map_err(io_err(&seen))?;
                changed.push(link.clone());
            }
        }
        records.push(FileRecord {
            path: link,
            kind: FileKind::Link,
            sha256: sha,
            replaced_backup: None,
        });
    }
    // files of a previous install that this one no longer has (a handler turned off)
    if let Some(p) = &prev {
        for old in &p.files {
            if records.iter().any(|r| r.path == old.path) {
                continue;
            }
            let seen = layout.on_host(&old.path);
            match &old.replaced_backup {
                Some(b) => {
                    let data = std::fs::read(layout.on_host(b)).map_err(io_err(b))?;
                    journal.write(&seen, &data, 0o644).map_err(io_err(&seen))?;
                }
                None => journal.remove(&seen).map_err(io_err(&seen))?,
            }
            changed.push(old.path.clone());
        }
    }

    // 3. containerd's config
    let plan = &planned.wiring;
    let wiring_changed = planned.current.as_deref() != Some(plan.text.as_str());
    let wiring_record = match &plan.mode {
        Mode::InPlace { created } => {
            let cfg = &layout.containerd_config;
            let seen = layout.on_host(cfg);
            let (created, original_backup) = match &prev {
                Some(State {
                    wiring:
                        WiringRecord::InPlace {
                            created,
                            original_backup,
                            ..
                        },
                    ..
                }) => (*created, original_backup.clone()),
                _ if *created => (true, None),
                _ => {
                    let b = layout.backup_dir().join("containerd-config.toml.orig");
                    let orig = std::fs::read(&seen).map_err(io_err(&seen))?;
                    let bseen = layout.on_host(&b);
                    journal
                        .write(&bseen, &orig, files::mode_or(&seen, 0o644))
                        .map_err(io_err(&bseen))?;
                    (false, Some(b))
                }
            };
            if wiring_changed {
                journal
                    .write(&seen, plan.text.as_bytes(), files::mode_or(&seen, 0o644))
                    .map_err(io_err(&seen))?;
                changed.push(cfg.clone());
            }
            WiringRecord::InPlace {
                config: cfg.clone(),
                created,
                original_backup,
                wired_sha256: files::sha256_bytes(plan.text.as_bytes()),
            }
        }
        Mode::DropIn { path } => {
            let seen = layout.on_host(path);
            let replaced_backup = match &prev {
                Some(State {
                    wiring:
                        WiringRecord::DropIn {
                            replaced_backup, ..
                        },
                    ..
                }) => replaced_backup.clone(),
                _ => keep_foreign(layout, &mut journal, path)?,
            };
            if wiring_changed {
                journal
                    .write(&seen, plan.text.as_bytes(), 0o644)
                    .map_err(io_err(&seen))?;
                changed.push(path.clone());
            }
            WiringRecord::DropIn {
                path: path.clone(),
                wired_sha256: files::sha256_bytes(plan.text.as_bytes()),
                replaced_backup,
            }
        }
    };

    // 4. restart only if the wiring changed or containerd has not loaded it
    let stale: Vec<String> = prev
        .as_ref()
        .map(|p| {
            p.handlers
                .iter()
                .filter(|h| !plan.handlers.contains(h))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let loaded_now: Option<BTreeSet<String>> = ctd.loaded_handlers()?;
    let all_loaded = loaded_now.as_ref().is_some_and(|l| {
        plan.handlers.iter().all(|h| l.contains(h)) && stale.iter().all(|h| !l.contains(h))
    });
    let restart = wiring_changed || !all_loaded;
    if restart {
        info!(wiring_changed, "restarting containerd");
        if let Err(reason) =
            restart_and_verify(ctd, restarter, opts.ready_timeout, &plan.handlers, &stale)
        {
            return Err(roll_back(
                journal,
                ctd,
                restarter,
                opts.ready_timeout,
                reason,
            ));
        }
    }

    // 5. the record of what we did, then drop the rollback copies
    let mut created_dirs = prev
        .as_ref()
        .map(|p| p.created_dirs.clone())
        .unwrap_or_default();
    for d in journal.created_dirs() {
        let host = PathBuf::from("/").join(d.strip_prefix(&layout.host_root).unwrap_or(d));
        if !created_dirs.contains(&host) {
            created_dirs.push(host);
        }
    }
    let st = State {
        format: state::FORMAT,
        containerd_version: version.to_string(),
        schema: plan.schema,
        wiring: wiring_record,
        handlers: plan.handlers.clone(),
        files: records,
        created_dirs,
        labels: prev.as_ref().map(|p| p.labels.clone()).unwrap_or_default(),
    };
    let bytes = state::to_json(&st);
    if files::read_opt(&state_seen).ok().flatten().as_deref() != Some(bytes.as_slice()) {
        if let Err(e) = journal.write(&state_seen, &bytes, 0o644) {
            let reason = format!("cannot write {}: {e}", state_seen.display());
            return Err(if restart {
                roll_back(journal, ctd, restarter, opts.ready_timeout, reason)
            } else {
                let errs = journal.rollback();
                InstallError::RolledBack {
                    reason,
                    rollback_errors: errs,
                }
            });
        }
    }
    journal.commit();
    Ok(InstallReport {
        containerd: version.to_string(),
        mode: st.wiring.mode_name(),
        handlers: plan.handlers.clone(),
        changed,
        wiring_changed,
        restarted: restart,
    })
}

/// Records the labels set on the node (so uninstall removes exactly those).
pub fn record_labels(
    layout: &Layout,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), InstallError> {
    let seen = layout.on_host(&layout.state_path());
    let Some(mut st) = state::load(&seen)? else {
        return Ok(());
    };
    if &st.labels == labels {
        return Ok(());
    }
    st.labels = labels.clone();
    files::write_atomic(&seen, &state::to_json(&st), 0o644).map_err(io_err(&seen))
}

enum Content {
    Copy(PathBuf),
    Bytes(Vec<u8>),
}

impl Content {
    fn sha256(&self) -> std::io::Result<String> {
        match self {
            Content::Copy(p) => files::sha256_file(p)?
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "missing")),
            Content::Bytes(b) => Ok(files::sha256_bytes(b)),
        }
    }
}

#[cfg(test)]
#[path = "install_tests.rs"]
mod tests;
