//! Which containerd/ctr/shim binaries a harness instance runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::{is_executable, run_ok, work_dir};

/// containerd's version, parsed from `containerd --version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ContainerdVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ContainerdVersion {
    /// Config schema version containerd expects: 2 for 1.x, 3 for 2.x.
    pub fn config_schema(&self) -> u32 {
        if self.major >= 2 {
            3
        } else {
            2
        }
    }

    /// Parses `containerd github.com/containerd/containerd 1.6.20~ds1 ...` (and `v2.1.9`).
    pub fn parse(version_output: &str) -> Result<Self> {
        let word = version_output
            .split_whitespace()
            .find(|w| {
                let w = w.trim_start_matches('v');
                w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.')
            })
            .with_context(|| format!("no version in {version_output:?}"))?;
        let nums: Vec<u32> = word
            .trim_start_matches('v')
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map(|s| s.parse().unwrap_or(0))
            .collect();
        Ok(Self {
            major: nums[0],
            minor: *nums.get(1).unwrap_or(&0),
            patch: *nums.get(2).unwrap_or(&0),
        })
    }
}

impl std::fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The binaries one private containerd runs with.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// the `containerd` daemon
    pub containerd: PathBuf,
    /// the matching `ctr`
    pub ctr: PathBuf,
    /// folders put first on containerd's `PATH`, in order: shims
    /// (`containerd-shim-*-v*`) are resolved there. Put the agentbox shim's folder
    /// here to make `io.containerd.agentbox.v1` resolvable.
    pub shim_dirs: Vec<PathBuf>,
}

impl Binaries {
    /// Debian 12's packaged containerd 1.6 (`/usr/bin`).
    pub fn system() -> Self {
        Self {
            containerd: PathBuf::from("/usr/bin/containerd"),
            ctr: PathBuf::from("/usr/bin/ctr"),
            shim_dirs: vec![PathBuf::from("/usr/bin")],
        }
    }

    /// `bookworm` (or `system`): the system binaries. Any other suite (`trixie`:
    /// containerd 1.7, `sid`: containerd 2.x): binaries extracted by
    /// `scripts/fetch-containerd.sh SUITE` into `.work/containerd/SUITE/`,
    /// running the script when the extract is missing (needs the package mirror).
    pub fn for_suite(suite: &str) -> Result<Self> {
        if suite == "bookworm" || suite == "system" {
            return Ok(Self::system());
        }
        let dir = work_dir().join("containerd").join(suite);
        if !dir.join(".complete").exists() || !is_executable(&dir.join("usr/bin/containerd")) {
            let script = crate::util::repo_root().join("scripts/fetch-containerd.sh");
            let out = crate::util::run_timeout(
                Command::new("bash").arg(&script).arg(suite),
                Duration::from_secs(600),
            )?;
            if !out.status.success() {
                bail!(
                    "{} {suite} failed: {}{}",
                    script.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Self::from_dir(&dir.join("usr/bin"))
    }

    /// containerd, ctr and shims all from one folder (e.g. an extracted `usr/bin`).
    pub fn from_dir(bin: &Path) -> Result<Self> {
        let b = Self {
            containerd: bin.join("containerd"),
            ctr: bin.join("ctr"),
            shim_dirs: vec![bin.to_path_buf()],
        };
        for p in [&b.containerd, &b.ctr] {
            if !is_executable(p) {
                bail!("{} missing or not executable", p.display());
            }
        }
        Ok(b)
    }

    /// Adds a shim folder in front of the others (e.g. the agentbox shim's target dir).
    pub fn with_shim_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.shim_dirs.insert(0, dir.into());
        self
    }

    /// `containerd --version`, parsed.
    pub fn version(&self) -> Result<ContainerdVersion> {
        let out = run_ok(
            Command::new(&self.containerd).arg("--version"),
            Duration::from_secs(20),
        )?;
        ContainerdVersion::parse(&out)
    }

    /// Panics with a clear message when a binary is missing.
    pub fn require(&self) {
        crate::util::require_bin(&self.containerd, "containerd daemon");
        crate::util::require_bin(&self.ctr, "ctr client");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_versions() {
        let v = ContainerdVersion::parse(
            "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n",
        )
        .unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 6, 20));
        assert_eq!(v.config_schema(), 2);
        let v = ContainerdVersion::parse(
            "containerd github.com/containerd/containerd/v2 2.1.9+unknown \n",
        )
        .unwrap();
        assert_eq!((v.major, v.minor, v.patch), (2, 1, 9));
        assert_eq!(v.config_schema(), 3);
        let v = ContainerdVersion::parse("containerd github.com/containerd/containerd v1.7.24 abc")
            .unwrap();
        assert_eq!(v.minor, 7);
    }
}
