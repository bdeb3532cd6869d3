//! The pod's network namespace: opened by path, checked not to be the node's
//! own, and entered on a short-lived thread of its own (never a pooled one)
//! to open sockets that stay bound to it.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    pub path: PathBuf,
}

impl NetNs {
    /// Open the namespace at `path` (e.g. `/var/run/netns/cni-…`). Refused:
    /// a path that is not a network namespace, or the node's own namespace
    /// (rules there would filter the node, not the pod).
    pub fn open(path: &Path) -> Result<NetNs, String> {
        let file = File::open(path).map_err(|e| {
            format!(
                "cannot open the pod's network namespace {}: {e}",
                path.display()
            )
        })?;
        let st = nix::sys::statfs::fstatfs(&file)
            .map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
        // NSFS_MAGIC
        if st.filesystem_type().0 as u64 != 0x6e73_6673 {
            return Err(format!("{} is not a network namespace", path.display()));
        }
        let mine = std::fs::metadata("/proc/self/ns/net")
            .map_err(|e| format!("cannot inspect the daemon's network namespace: {e}"))?;
        let theirs = file
            .metadata()
            .map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
        if (mine.dev(), mine.ino()) == (theirs.dev(), theirs.ino()) {
            return Err(format!(
                "the pod's network namespace {} is the node's own: agentbox will not filter the node",
                path.display()
            ));
        }
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Run `f` inside the namespace, on a thread that exists only for it.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        std::thread::scope(|s| {
            s.spawn(|| {
                setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("cannot enter the pod's network namespace: {e}"))?;
                Ok(f())
            })
            .join()
            .map_err(|_| "a thread in the pod's network namespace panicked".to_string())?
        })
    }

    /// (device, inode) of the namespace, to tell two paths to one apart.
    pub fn id(&self) -> Option<(u64, u64)> {
        self.file.metadata().ok().map(|m| (m.dev(), m.ino()))
    }
}
