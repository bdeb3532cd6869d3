//! The install record (`<install dir>/state.json`): every file an install
//! added or replaced, how containerd was wired, which handlers and labels —
//! exactly what uninstall takes away again. Paths are host paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::wiring::Schema;

pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Binary,
    Policy,
    /// A symlink to the shim (containerd 1.6); `sha256` is of its target path.
    Link,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: PathBuf,
    pub kind: FileKind,
    pub sha256: String,
    /// A file of someone else's was there before: its copy, put back on uninstall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_backup: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum WiringRecord {
    /// Handler tables added to the admin's config.
    InPlace {
        config: PathBuf,
        /// There was no config: uninstall deletes it.
        created: bool,
        /// The admin's config as it was before the first install (byte for byte).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        original_backup: Option<PathBuf>,
        /// sha256 of the config as agentbox left it.
        wired_sha256: String,
    },
    /// Our own file, read through the admin's `imports`.
    DropIn {
        path: PathBuf,
        wired_sha256: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaced_backup: Option<PathBuf>,
    },
}

impl WiringRecord {
    pub fn mode_name(&self) -> &'static str {
        match self {
            WiringRecord::InPlace { .. } => "in-place",
            WiringRecord::DropIn { .. } => "drop-in",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// containerd's version at the last install.
    pub containerd_version: String,
    pub schema: Schema,
    pub wiring: WiringRecord,
    pub handlers: Vec<String>,
    pub files: Vec<FileRecord>,
    /// Folders the install created (outermost first), removed if empty.
    #[serde(default)]
    pub created_dirs: Vec<PathBuf>,
    /// Node labels the install set.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read install record {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error("install record {path} is damaged ({err}); move it away to start over, after checking containerd's config by hand")]
    Parse {
        path: PathBuf,
        err: serde_json::Error,
    },
    #[error("install record {path} has format {found}, this agentbox-node reads {FORMAT}")]
    Format { path: PathBuf, found: u32 },
}

/// Loads the record at `seen` (where this process sees it); `None` if absent.
pub fn load(seen: &Path) -> Result<Option<State>, StateError> {
    let bytes = match crate::files::read_opt(seen) {
        Ok(Some(b)) => b,
        Ok(None) => return Ok(None),
        Err(err) => {
            return Err(StateError::Read {
                path: seen.into(),
                err,
            })
        }
    };
    let s: State = serde_json::from_slice(&bytes).map_err(|err| StateError::Parse {
        path: seen.into(),
        err,
    })?;
    if s.format != FORMAT {
        return Err(StateError::Format {
            path: seen.into(),
            found: s.format,
        });
    }
    Ok(Some(s))
}

pub fn to_json(s: &State) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(s).expect("state serializes");
    v.push(b'\n');
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_damage() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        assert_eq!(load(&p).unwrap(), None);
        let s = State {
            format: FORMAT,
            containerd_version: "1.6.20".into(),
            schema: Schema::V2,
            wiring: WiringRecord::InPlace {
                config: "/etc/containerd/config.toml".into(),
                created: false,
                original_backup: Some("/opt/agentbox/backup/config.toml".into()),
                wired_sha256: "ab".into(),
            },
            handlers: vec!["agentbox-gvisor".into()],
            files: vec![FileRecord {
                path: "/opt/agentbox/bin/containerd-shim-agentbox-v1".into(),
                kind: FileKind::Binary,
                sha256: "cd".into(),
                replaced_backup: None,
            }],
            created_dirs: vec![],
            labels: [("agentbox.dev/runtime".to_string(), "true".to_string())].into(),
        };
        std::fs::write(&p, to_json(&s)).unwrap();
        assert_eq!(load(&p).unwrap(), Some(s));
        std::fs::write(&p, "{").unwrap();
        assert!(load(&p).unwrap_err().to_string().contains("damaged"));
    }
}
