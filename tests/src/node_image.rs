//! The node agent image (node-agent/Dockerfile), built with buildah by
//! `scripts/build-node-image.sh` from this workspace's binaries and cached
//! in `.work/images/` by a hash of everything that goes in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::images::ImageTar;
use crate::util::{flock_wait, repo_root, run_timeout, sha256_hex, work_dir};

pub const NODE_IMAGE_REPO: &str = "localhost/agentbox/node-agent";
/// The binaries the image carries.
pub const NODE_BINARIES: [&str; 3] = [
    "agentbox-node",
    "containerd-shim-agentbox-v1",
    "agentbox-policy",
];

/// The cargo profile folder holding the binaries (as `shim_dir`).
pub fn bin_dir() -> PathBuf {
    let dir = crate::agentbox::shim_dir();
    for b in NODE_BINARIES {
        assert!(
            dir.join(b).is_file(),
            "{} is missing: build the workspace first (`cargo build --workspace`; `make test` does)",
            dir.join(b).display()
        );
    }
    dir
}

/// Builds (or reuses) `localhost/agentbox/node-agent:<tag>` from `bins`.
pub fn node_image(tag: &str, bins: &Path) -> Result<ImageTar> {
    let mut key = String::from("agentbox node image v1\0");
    for f in [
        repo_root().join("node-agent/Dockerfile"),
        repo_root().join("scripts/build-node-image.sh"),
    ] {
        key.push_str(&sha256_hex(&std::fs::read(&f)?));
    }
    for b in NODE_BINARIES {
        key.push_str(&sha256_hex(&std::fs::read(bins.join(b))?));
    }
    let key = sha256_hex(key.as_bytes());
    let dir = work_dir().join("images");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("node-agent-{tag}-{}.tar", &key[..16]));
    let name = format!("{NODE_IMAGE_REPO}:{tag}");
    if !out.exists() {
        let _l = flock_wait(&dir.join(".node-agent.lock"), Duration::from_secs(600))?;
        if !out.exists() {
            let o = run_timeout(
                Command::new("bash")
                    .arg(repo_root().join("scripts/build-node-image.sh"))
                    .arg(bins)
                    .arg(&name)
                    .arg(&out),
                Duration::from_secs(600),
            )?;
            if !o.status.success() {
                bail!(
                    "build-node-image.sh failed: {}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
    Ok(ImageTar {
        path: out,
        repo: NODE_IMAGE_REPO.into(),
        name,
    })
}
