//! What the configured runsc supports: asked once (`runsc --version`,
//! `runsc help platforms`, `runsc flags`) and cached in the runsc state root,
//! keyed by the binary's path, size and modification time, so a pod start
//! costs no extra runsc call once a node has seen its runsc.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::tuning::Capabilities;
use crate::reaper::Reaper;

/// The cache file in the runsc state root.
pub const CACHE_FILE: &str = "agentbox-runsc-capabilities.json";
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cached {
    binary: PathBuf,
    size: u64,
    mtime_ns: i128,
    caps: Capabilities,
}

fn key(binary: &Path) -> Result<(u64, i128), String> {
    let m = std::fs::metadata(binary)
        .map_err(|e| format!("cannot find runsc {}: {e}", binary.display()))?;
    Ok((
        m.size(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
    ))
}

/// The capabilities of `binary`, from the cache in `state_root` or by asking it.
pub async fn capabilities(
    reaper: &Reaper,
    binary: &Path,
    state_root: &Path,
) -> Result<Capabilities, String> {
    let (size, mtime_ns) = key(binary)?;
    let cache = state_root.join(CACHE_FILE);
    if let Some(c) = std::fs::read(&cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<Cached>(&b).ok())
    {
        if c.binary == binary && c.size == size && c.mtime_ns == mtime_ns {
            return Ok(c.caps);
        }
    }
    let (version, platforms, flags) = tokio::try_join!(
        run(reaper, binary, &["--version"]),
        run(reaper, binary, &["help", "platforms"]),
        run(reaper, binary, &["flags"]),
    )?;
    let caps = Capabilities::parse(&version, &platforms, &flags);
    if caps.platforms.is_empty() {
        return Err(format!(
            "{} did not list its platforms (`runsc help platforms`): is it runsc?",
            binary.display()
        ));
    }
    let entry = Cached {
        binary: binary.to_path_buf(),
        size,
        mtime_ns,
        caps: caps.clone(),
    };
    if std::fs::create_dir_all(state_root).is_ok() {
        if let Ok(v) = serde_json::to_value(&entry) {
            // a cache miss next time is all a failed write costs
            let _ = crate::enforce::write_atomic(&cache, &v);
        }
    }
    Ok(caps)
}

/// Run `binary args`; stdout and stderr together (runsc prints `flags` to stderr).
async fn run(reaper: &Reaper, binary: &Path, args: &[&str]) -> Result<String, String> {
    use crate::output::{capture, CaptureError};
    let what = format!("{} {}", binary.display(), args.join(" "));
    let mut cmd = std::process::Command::new(binary);
    cmd.args(args);
    let c = match capture(reaper, cmd, None, Some(PROBE_TIMEOUT)).await {
        Ok(c) => c,
        Err(CaptureError::Timeout(_)) => return Err(format!("{what} timed out")),
        Err(e) => return Err(format!("cannot run {what}: {e}")),
    };
    let (mut out, err) = (c.stdout, c.stderr);
    if c.status != 0 {
        return Err(format!(
            "{what} failed (exit status: {}): {}",
            c.status,
            crate::output::summarize(&err)
        ));
    }
    out.extend_from_slice(&err);
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fake_runsc(dir: &Path, platforms: &str) -> PathBuf {
        let p = dir.join("runsc");
        let count = dir.join("calls");
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho x >> {}\ncase \"$1\" in\n--version) echo 'runsc version 0.0~20240729.0';;\nhelp) printf '{platforms}';;\nflags) echo '  -directfs' >&2; echo '    \tdirectly access (default true)' >&2;;\nesac\n",
                count.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn calls(dir: &Path) -> usize {
        std::fs::read_to_string(dir.join("calls"))
            .unwrap_or_default()
            .lines()
            .count()
    }

    #[tokio::test]
    async fn asks_once_then_reads_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let bin = fake_runsc(dir.path(), "kvm\\nsystrap\\nptrace\\n");
        let root = dir.path().join("state");
        let reaper = Reaper::new();
        let caps = capabilities(&reaper, &bin, &root).await.unwrap();
        assert_eq!(caps.platforms, ["kvm", "systrap", "ptrace"]);
        assert!(caps.directfs);
        assert_eq!(calls(dir.path()), 3);
        let again = capabilities(&reaper, &bin, &root).await.unwrap();
        assert_eq!(again, caps);
        assert_eq!(calls(dir.path()), 3, "the second call must hit the cache");
        // a changed binary is asked again
        std::thread::sleep(Duration::from_millis(20));
        let bin = fake_runsc(dir.path(), "ptrace\\n");
        let changed = capabilities(&reaper, &bin, &root).await.unwrap();
        assert_eq!(changed.platforms, ["ptrace"]);
    }

    #[tokio::test]
    async fn a_missing_or_wrong_binary_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let reaper = Reaper::new();
        let e = capabilities(&reaper, &dir.path().join("nope"), dir.path())
            .await
            .unwrap_err();
        assert!(e.contains("cannot find runsc"), "{e}");
        let e = capabilities(&reaper, Path::new("/bin/true"), dir.path())
            .await
            .unwrap_err();
        assert!(e.contains("platforms"), "{e}");
    }
}
