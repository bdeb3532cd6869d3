//! `agentbox-node uninstall`: takes away exactly what install added. It does
//! not restart containerd while pods still run on agentbox's handlers
//! (checked through CRI) unless forced: restarting containerd under running
//! sandboxes is how other installers' cleanups have killed workloads.

use std::path::PathBuf;
use std::time::Duration;

use tracing::{info, warn};

use crate::cri::{Containerd, PodRef};
use crate::files::{self, Journal};
use crate::install::{io_err, restart_and_verify, roll_back, InstallError};
use crate::paths::Layout;
use crate::restart::Restarter;
use crate::state::{self, State, WiringRecord};
use crate::wiring;

#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    #[error("{} agentbox pod(s) still run on this node: {}; remove them first (or uninstall with --force, which restarts containerd under them)", .0.len(), list(.0))]
    PodsRunning(Vec<PodRef>),
    #[error(transparent)]
    Install(#[from] InstallError),
}

fn list(p: &[PodRef]) -> String {
    let mut s: Vec<String> = p.iter().take(10).map(|p| p.to_string()).collect();
    if p.len() > 10 {
        s.push(format!("… {} more", p.len() - 10));
    }
    s.join(", ")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UninstallReport {
    pub was_installed: bool,
    pub removed: Vec<PathBuf>,
    /// Files changed by someone since install: left in place.
    pub kept: Vec<PathBuf>,
    /// The config came back byte for byte (else: our tables were cut out of
    /// a config the admin changed since).
    pub config_restored_exactly: bool,
    pub restarted: bool,
    pub labels: Vec<String>,
}

impl std::fmt::Display for UninstallReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.was_installed {
            return write!(f, "agentbox is not installed here (no install record)");
        }
        write!(
            f,
            "agentbox uninstalled: {} file(s) removed{}; containerd config {}; {}",
            self.removed.len(),
            if self.kept.is_empty() {
                String::new()
            } else {
                format!(", {} changed since install kept", self.kept.len())
            },
            if self.config_restored_exactly {
                "restored byte for byte"
            } else {
                "had agentbox's handlers removed (it changed since install)"
            },
            if self.restarted {
                "containerd restarted"
            } else {
                "no containerd restart"
            }
        )
    }
}

#[derive(Debug, Clone)]
pub struct UninstallOptions {
    pub layout: Layout,
    pub ready_timeout: Duration,
    pub force: bool,
}

/// The record (if any) — for the caller to remove labels after uninstall.
pub fn installed(layout: &Layout) -> Result<Option<State>, InstallError> {
    Ok(state::load(&layout.on_host(&layout.state_path()))?)
}

pub fn uninstall(
    opts: &UninstallOptions,
    ctd: &mut dyn Containerd,
    restarter: &mut dyn Restarter,
) -> Result<UninstallReport, UninstallError> {
    let layout = &opts.layout;
    layout.check().map_err(InstallError::Layout)?;
    let Some(st) = installed(layout)? else {
        return Ok(UninstallReport {
            was_installed: false,
            removed: vec![],
            kept: vec![],
            config_restored_exactly: true,
            restarted: false,
            labels: vec![],
        });
    };
    let pods = ctd.pods_on(&st.handlers).map_err(InstallError::from)?;
    if !pods.is_empty() {
        if !opts.force {
            return Err(UninstallError::PodsRunning(pods));
        }
        warn!(pods = %list(&pods), "--force: uninstalling under running agentbox pods");
    }

    let mut journal = Journal::new();
    let mut removed = vec![];
    let mut kept = vec![];
    // 1. containerd's config back as it was
    let mut exact = true;
    let wiring_changed = match &st.wiring {
        WiringRecord::InPlace {
            config,
            created,
            original_backup,
            wired_sha256,
        } => {
            let seen = layout.on_host(config);
            let cur = files::read_opt(&seen).map_err(io_err(&seen))?;
            let cur_sha = cur.as_deref().map(files::sha256_bytes);
            if cur_sha.as_deref() == Some(wired_sha256.as_str()) {
                if *created {
                    journal.remove(&seen).map_err(io_err(&seen))?;
                } else {
                    let b = original_backup.as_ref().ok_or_else(|| {
                        InstallError::Layout(
                            "install record has no backup of the containerd config".into(),
                        )
                    })?;
                    let bseen = layout.on_host(b);
                    let orig = std::fs::read(&bseen).map_err(io_err(&bseen))?;
                    journal
                        .write(&seen, &orig, files::mode_or(&seen, 0o644))
                        .map_err(io_err(&seen))?;
                }
                removed.push(config.clone());
                true
            } else if let Some(cur) = cur {
                exact = false;
                let text = String::from_utf8_lossy(&cur);
                match wiring::remove_handlers(config, &text, st.schema, &st.handlers)
                    .map_err(InstallError::from)?
                {
                    Some(out) => {
                        warn!(config = %config.display(), "changed since install: removing agentbox's handler tables only");
                        journal
                            .write(&seen, out.as_bytes(), files::mode_or(&seen, 0o644))
                            .map_err(io_err(&seen))?;
                        true
                    }
                    None => false,
                }
            } else {
                false
            }
        }
        WiringRecord::DropIn {
            path,
            replaced_backup,
            ..
        } => {
            let seen = layout.on_host(path);
            match replaced_backup {
                Some(b) => {
                    let data = std::fs::read(layout.on_host(b)).map_err(io_err(b))?;
                    journal.write(&seen, &data, 0o644).map_err(io_err(&seen))?;
                }
                None => journal.remove(&seen).map_err(io_err(&seen))?,
            }
            removed.push(path.clone());
            true
        }
    };
    // 2. containerd without the handlers (only if its config changed)
    if wiring_changed {
        info!("restarting containerd without agentbox's handlers");
        if let Err(reason) =
            restart_and_verify(ctd, restarter, opts.ready_timeout, &[], &st.handlers)
        {
            return Err(roll_back(journal, ctd, restarter, opts.ready_timeout, reason).into());
        }
    }
    journal.commit();

    // 3. our files, unless someone changed them since
    for f in &st.files {
        let seen = layout.on_host(&f.path);
        if f.kind == crate::state::FileKind::Link {
            match std::fs::read_link(&seen) {
                Ok(t) if files::sha256_bytes(t.as_os_str().as_encoded_bytes()) == f.sha256 => {
                    std::fs::remove_file(&seen).map_err(io_err(&seen))?;
                    removed.push(f.path.clone());
                }
                Ok(_) => kept.push(f.path.clone()),
                Err(_) => {}
            }
            continue;
        }
        let have = files::sha256_file(&seen).map_err(io_err(&seen))?;
        match (&have, &f.replaced_backup) {
            (None, _) => {}
            (Some(h), _) if h != &f.sha256 => {
                warn!(path = %f.path.display(), "changed since install: kept");
                kept.push(f.path.clone());
            }
            (Some(_), Some(b)) => {
                let bseen = layout.on_host(b);
                let data = std::fs::read(&bseen).map_err(io_err(&bseen))?;
                files::write_atomic(&seen, &data, files::mode_or(&seen, 0o644))
                    .map_err(io_err(&seen))?;
                removed.push(f.path.clone());
            }
            (Some(_), None) => {
                std::fs::remove_file(&seen).map_err(io_err(&seen))?;
                removed.push(f.path.clone());
            }
        }
    }
    // 4. the record, the backups, and the folders install created
    let backups = layout.on_host(&layout.backup_dir());
    if backups.exists() {
        std::fs::remove_dir_all(&backups).map_err(io_err(&backups))?;
    }
    let state_seen = layout.on_host(&layout.state_path());
    std::fs::remove_file(&state_seen).map_err(io_err(&state_seen))?;
    for d in st.created_dirs.iter().rev() {
        let _ = std::fs::remove_dir(layout.on_host(d));
    }
    Ok(UninstallReport {
        was_installed: true,
        removed,
        kept,
        config_restored_exactly: exact,
        restarted: wiring_changed,
        labels: st.labels.keys().cloned().collect(),
    })
}
