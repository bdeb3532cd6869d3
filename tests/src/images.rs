//! Locally built images: busybox (from busybox-static) and a tiny static `pause`,
//! built with umoci into OCI layouts and cached as tarballs under
//! `.work/images/`, keyed by a hash of their inputs.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::{flock_wait, require_bin, run_ok, sha256_hex, work_dir};

/// Repository (without tag) of the busybox test image.
pub const BUSYBOX_REPO: &str = "docker.io/library/busybox";
/// Tag of the busybox test image.
pub const BUSYBOX_TAG: &str = "agentbox-test";
/// Full name of the busybox test image after import.
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:agentbox-test";
/// Repository of the pause image.
pub const PAUSE_REPO: &str = "localhost/agentbox/pause";
/// Tag of the pause image.
pub const PAUSE_TAG: &str = "test";
/// Full name of the pause (sandbox) image after import.
pub const PAUSE_IMAGE: &str = "localhost/agentbox/pause:test";

const PAUSE_C: &str = include_str!("../assets/pause.c");
const NETPROBE_C: &str = include_str!("../assets/netprobe.c");
/// Bump when the image recipes change.
const RECIPE: &str = "agentbox-e2e images v1";

/// An image tarball (OCI layout) and the name it imports as.
#[derive(Debug, Clone)]
pub struct ImageTar {
    pub path: PathBuf,
    /// `--base-name` for `ctr images import` (the repository)
    pub repo: String,
    /// full name after import (`repo:tag`)
    pub name: String,
}

fn images_dir() -> Result<PathBuf> {
    let d = work_dir().join("images");
    std::fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
    Ok(d)
}

fn tool_version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// Builds (or reuses from the cache) the busybox image tarball.
pub fn busybox_image() -> Result<ImageTar> {
    let busybox = Path::new("/bin/busybox");
    require_bin(busybox, "busybox-static");
    let bytes = std::fs::read(busybox)?;
    let key = sha256_hex(
        format!(
            "{RECIPE}\0busybox\0{}\0{}\0{NETPROBE_C}\0{}",
            sha256_hex(&bytes),
            tool_version("umoci", "--version"),
            tool_version("gcc", "--version")
        )
        .as_bytes(),
    );
    let path = cached_build(
        "busybox",
        &key[..16],
        |rootfs| {
            for d in [
                "bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "run", "home",
            ] {
                std::fs::create_dir_all(rootfs.join(d))?;
            }
            std::fs::set_permissions(rootfs.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
            std::fs::copy(busybox, rootfs.join("bin/busybox"))?;
            std::fs::set_permissions(
                rootfs.join("bin/busybox"),
                std::fs::Permissions::from_mode(0o755),
            )?;
            let list = run_ok(Command::new(busybox).arg("--list"), Duration::from_secs(10))?;
            for applet in list
                .lines()
                .map(str::trim)
                .filter(|a| !a.is_empty() && *a != "busybox")
            {
                let _ = symlink("busybox", rootfs.join("bin").join(applet));
            }
            std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )?;
            std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
            // netprobe: the egress tests' network client (static)
            let src = rootfs.parent().unwrap().join("netprobe.c");
            std::fs::write(&src, NETPROBE_C)?;
            let gcc = crate::util::which("gcc").unwrap_or_else(|| PathBuf::from("/usr/bin/gcc"));
            run_ok(
                Command::new(&gcc)
                    .args(["-static", "-O2", "-s", "-o"])
                    .arg(rootfs.join("bin/netprobe"))
                    .arg(&src),
                Duration::from_secs(120),
            )?;
            std::fs::remove_file(&src)?;
            Ok(())
        },
        BUSYBOX_TAG,
        &[
            "--config.cmd",
            "sh",
            "--config.env",
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
        ],
    )?;
    Ok(ImageTar {
        path,
        repo: BUSYBOX_REPO.into(),
        name: BUSYBOX_IMAGE.into(),
    })
}

/// Builds (or reuses) the pause image: a static C `pause` as `/pause`, entrypoint `/pause`.
pub fn pause_image() -> Result<ImageTar> {
    let gcc = crate::util::which("gcc").unwrap_or_else(|| PathBuf::from("/usr/bin/gcc"));
    require_bin(&gcc, "gcc (to build the static pause binary)");
    let key = sha256_hex(
        format!(
            "{RECIPE}\0pause\0{PAUSE_C}\0{}\0{}",
            tool_version("gcc", "--version"),
            tool_version("umoci", "--version")
        )
        .as_bytes(),
    );
    let path = cached_build(
        "pause",
        &key[..16],
        |rootfs| {
            let src = rootfs.parent().unwrap().join("pause.c");
            std::fs::write(&src, PAUSE_C)?;
            run_ok(
                Command::new(&gcc)
                    .args(["-static", "-O2", "-s", "-o"])
                    .arg(rootfs.join("pause"))
                    .arg(&src),
                Duration::from_secs(120),
            )?;
            std::fs::remove_file(&src)?;
            Ok(())
        },
        PAUSE_TAG,
        &["--clear=config.cmd", "--config.entrypoint", "/pause"],
    )?;
    Ok(ImageTar {
        path,
        repo: PAUSE_REPO.into(),
        name: PAUSE_IMAGE.into(),
    })
}

/// `<images>/<name>-<key>.tar`, built once under a lock: umoci init/new/unpack,
/// `fill(rootfs)`, repack, config, gc, tar.
fn cached_build(
    name: &str,
    key: &str,
    fill: impl FnOnce(&Path) -> Result<()>,
    tag: &str,
    config_args: &[&str],
) -> Result<PathBuf> {
    let dir = images_dir()?;
    let out = dir.join(format!("{name}-{key}.tar"));
    if out.exists() {
        return Ok(out);
    }
    let _lock = flock_wait(&dir.join(".lock"), Duration::from_secs(300))?;
    if out.exists() {
        return Ok(out);
    }
    require_bin(Path::new("/usr/bin/umoci"), "umoci");
    let tmp = tempfile::Builder::new()
        .prefix(&format!("build-{name}-"))
        .tempdir_in(&dir)?;
    let layout = tmp.path().join("layout");
    let bundle = tmp.path().join("bundle");
    let image = format!("{}:{tag}", layout.display());
    let t = Duration::from_secs(120);
    run_ok(
        Command::new("umoci")
            .args(["init", "--layout"])
            .arg(&layout),
        t,
    )?;
    run_ok(Command::new("umoci").args(["new", "--image", &image]), t)?;
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--image", &image])
            .arg(&bundle),
        t,
    )?;
    fill(&bundle.join("rootfs")).with_context(|| format!("fill {name} rootfs"))?;
    run_ok(
        Command::new("umoci")
            .args(["repack", "--image", &image])
            .arg(&bundle),
        t,
    )?;
    let mut cfg = Command::new("umoci");
    cfg.args(["config", "--image", &image]).args(config_args);
    run_ok(&mut cfg, t)?;
    run_ok(
        Command::new("umoci").args(["gc", "--layout"]).arg(&layout),
        t,
    )?;
    let partial = out.with_extension("tar.partial");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&partial)
            .arg("."),
        t,
    )?;
    std::fs::rename(&partial, &out)?;
    if !out.exists() {
        bail!("image tar {} not written", out.display());
    }
    Ok(out)
}
