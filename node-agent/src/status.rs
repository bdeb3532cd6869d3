//! `agentbox-node status`: what is installed, which handlers containerd
//! loaded, how many agentbox pods run.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cri::Containerd;
use crate::files;
use crate::paths::Layout;
use crate::state;

#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    pub path: String,
    /// `ok`, `changed`, `missing`
    pub state: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub installed: bool,
    pub containerd_version: Option<String>,
    pub wiring: Option<String>,
    pub handlers: Vec<String>,
    /// Handlers containerd reports loaded (`None`: it does not say / unreachable).
    pub loaded: Option<Vec<String>>,
    pub agentbox_pods: Option<usize>,
    pub files: Vec<FileStatus>,
    pub labels: Vec<String>,
    pub problems: Vec<String>,
}

impl Status {
    /// Installed and every handler loaded.
    pub fn healthy(&self) -> bool {
        self.installed && self.problems.is_empty()
    }
}

pub fn status(layout: &Layout, ctd: &mut dyn Containerd) -> Result<Status, state::StateError> {
    let st = state::load(&layout.on_host(&layout.state_path()))?;
    let mut problems = vec![];
    let version = match ctd.version() {
        Ok(v) => Some(v.to_string()),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let loaded: Option<BTreeSet<String>> = if version.is_some() {
        ctd.loaded_handlers().unwrap_or_else(|e| {
            problems.push(e.to_string());
            None
        })
    } else {
        None
    };
    let Some(st) = st else {
        return Ok(Status {
            installed: false,
            containerd_version: version,
            wiring: None,
            handlers: vec![],
            loaded: loaded.map(|l| l.into_iter().collect()),
            agentbox_pods: None,
            files: vec![],
            labels: vec![],
            problems,
        });
    };
    let pods = if version.is_some() {
        match ctd.pods_on(&st.handlers) {
            Ok(p) => Some(p.len()),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        }
    } else {
        None
    };
    if let Some(l) = &loaded {
        for h in &st.handlers {
            if !l.contains(h) {
                problems.push(format!("containerd has not loaded handler {h}"));
            }
        }
    }
    let files = st
        .files
        .iter()
        .map(|f| {
            let seen = layout.on_host(&f.path);
            let have = if f.kind == state::FileKind::Link {
                std::fs::read_link(&seen)
                    .ok()
                    .map(|t| files::sha256_bytes(t.as_os_str().as_encoded_bytes()))
            } else {
                files::sha256_file(&seen).ok().flatten()
            };
            let state = match have {
                None => "missing",
                Some(h) if h == f.sha256 => "ok",
                Some(_) => "changed",
            };
            if state != "ok" {
                problems.push(format!("{} is {state}", f.path.display()));
            }
            FileStatus {
                path: f.path.display().to_string(),
                state,
            }
        })
        .collect();
    Ok(Status {
        installed: true,
        containerd_version: version,
        wiring: Some(format!(
            "{} ({})",
            st.wiring.mode_name(),
            match &st.wiring {
                state::WiringRecord::InPlace { config, .. } => config.display().to_string(),
                state::WiringRecord::DropIn { path, .. } => path.display().to_string(),
            }
        )),
        handlers: st.handlers.clone(),
        loaded: loaded.map(|l| l.into_iter().collect()),
        agentbox_pods: pods,
        files,
        labels: st.labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        problems,
    })
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "unknown".into());
        writeln!(f, "containerd:     {}", opt(&self.containerd_version))?;
        if !self.installed {
            writeln!(f, "agentbox:       not installed")?;
        } else {
            writeln!(f, "agentbox:       installed, {}", opt(&self.wiring))?;
            writeln!(f, "handlers:       {}", self.handlers.join(", "))?;
            for x in &self.files {
                writeln!(f, "  {:<8} {}", x.state, x.path)?;
            }
            writeln!(
                f,
                "agentbox pods:  {}",
                self.agentbox_pods
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unknown".into())
            )?;
            if !self.labels.is_empty() {
                writeln!(f, "node labels:    {}", self.labels.join(", "))?;
            }
        }
        writeln!(
            f,
            "loaded:         {}",
            self.loaded
                .as_ref()
                .map(|l| l.join(", "))
                .unwrap_or_else(|| "unknown".into())
        )?;
        for p in &self.problems {
            writeln!(f, "problem:        {p}")?;
        }
        Ok(())
    }
}
