//! What an install puts on the node: the chart's ConfigMap (the containerd
//! handler fragments and each handler's agentbox TOML) and the binaries in
//! the image. Everything is checked here — fragments parsed, every policy
//! loaded with the shim's own parser — before anything on the host changes.

use std::path::{Path, PathBuf};

use crate::paths::{Layout, POLICY_CLI, SHIM};
use crate::wiring::{table_value, Fragments, Schema, WiringError};

pub const FRAGMENT_V2: &str = "containerd-config-v2.toml";
pub const FRAGMENT_V3: &str = "containerd-config-v3.toml";
/// The only runtime type agentbox-node wires.
pub const RUNTIME_TYPE: &str = "io.containerd.agentbox.v1";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {err}")]
    Read { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Fragment(#[from] WiringError),
    #[error("handler {handler}: {message}")]
    Handler { handler: String, message: String },
    #[error("policy for handler {handler} is refused, nothing was installed: {err}")]
    Policy {
        handler: String,
        err: agentbox_shim::config::ConfigError,
    },
    #[error("binary {path}: {message}")]
    Binary { path: PathBuf, message: String },
}

/// One handler's agentbox TOML.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    pub handler: String,
    /// Host path (the handler's `ConfigPath`).
    pub path: PathBuf,
    pub text: String,
}

/// A binary to install: where it is in the image, where it goes on the host.
#[derive(Debug, Clone)]
pub struct BinaryFile {
    pub src: PathBuf,
    pub dest: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub fragments: Fragments,
    pub handlers: Vec<String>,
    pub policies: Vec<PolicyFile>,
    pub binaries: Vec<BinaryFile>,
}

fn read(path: &Path) -> Result<String, SourceError> {
    std::fs::read_to_string(path).map_err(|err| SourceError::Read {
        path: path.into(),
        err,
    })
}

/// Loads and checks everything under `config_dir` (the ConfigMap) and
/// `binaries_dir` (the image's binaries) for `layout`.
pub fn load(
    config_dir: &Path,
    binaries_dir: &Path,
    layout: &Layout,
) -> Result<Source, SourceError> {
    let fragments = Fragments::parse(
        &read(&config_dir.join(FRAGMENT_V2))?,
        &read(&config_dir.join(FRAGMENT_V3))?,
    )?;
    let v2 = fragments.handlers(Schema::V2)?;
    let v3 = fragments.handlers(Schema::V3)?;
    let shim = layout.shim_path();
    let mut policies = vec![];
    for ((name, t2), (_, t3)) in v2.iter().zip(&v3) {
        let bad = |message: String| SourceError::Handler {
            handler: name.clone(),
            message,
        };
        if table_value(t2) != table_value(t3) {
            return Err(bad(
                "differs between the config version 2 and 3 fragments".into()
            ));
        }
        let v = table_value(t2);
        let get = |k: &str| v.get(k).and_then(|x| x.as_str());
        if get("runtime_type") != Some(RUNTIME_TYPE) {
            return Err(bad(format!(
                "runtime_type must be {RUNTIME_TYPE:?} (agentbox-node wires only agentbox handlers)"
            )));
        }
        if get("runtime_path").map(Path::new) != Some(shim.as_path()) {
            return Err(bad(format!(
                "runtime_path must be {} (where agentbox-node installs the shim)",
                shim.display()
            )));
        }
        let cfg = v
            .get("options")
            .and_then(|o| o.get("ConfigPath"))
            .and_then(|x| x.as_str())
            .map(PathBuf::from)
            .ok_or_else(|| bad("has no options.ConfigPath".into()))?;
        if cfg.parent() != Some(layout.config_dir.as_path()) {
            return Err(bad(format!(
                "options.ConfigPath {} must be a file directly in {}",
                cfg.display(),
                layout.config_dir.display()
            )));
        }
        let key = cfg.file_name().unwrap_or_default();
        let text = read(&config_dir.join(key))?;
        agentbox_shim::config::Config::from_toml_str(&text, &key.to_string_lossy()).map_err(
            |err| SourceError::Policy {
                handler: name.clone(),
                err,
            },
        )?;
        policies.push(PolicyFile {
            handler: name.clone(),
            path: cfg,
            text,
        });
    }
    let mut binaries = vec![];
    for name in [SHIM, POLICY_CLI] {
        let src = binaries_dir.join(name);
        let meta = std::fs::metadata(&src).map_err(|e| SourceError::Binary {
            path: src.clone(),
            message: e.to_string(),
        })?;
        use std::os::unix::fs::PermissionsExt;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            return Err(SourceError::Binary {
                path: src,
                message: "not an executable file".into(),
            });
        }
        binaries.push(BinaryFile {
            src,
            dest: layout.bin_dir().join(name),
        });
    }
    Ok(Source {
        handlers: v2.into_iter().map(|(n, _)| n).collect(),
        fragments,
        policies,
        binaries,
    })
}

#[cfg(test)]
#[path = "source_tests.rs"]
pub(crate) mod tests;
