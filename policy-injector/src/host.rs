//! Host lookups, behind a seam so the rules unit-test without real files.

use std::io;

/// Device and inode of a file on the host.
pub type FileId = (u64, u64);

/// What the rules may ask the host. Every method follows the kernel's view of
/// the path at the time of the call; the rules never write.
pub trait HostFs: Send + Sync {
    /// The target of the symbolic link at `path`, as stored (relative or
    /// absolute), without following it. `Ok(None)` when `path` is not a
    /// symbolic link or does not exist; `Err` when the host cannot tell
    /// (permission, I/O error): the rules then fail closed.
    fn read_link(&self, path: &str) -> io::Result<Option<String>>;
    /// `true` if `path` exists and is a unix socket (symlinks followed).
    fn is_socket(&self, path: &str) -> bool;
    /// Device and inode of what `path` leads to (symlinks followed), `None`
    /// if it does not exist or cannot be asked.
    fn file_id(&self, path: &str) -> Option<FileId>;
}

/// The real host filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealHostFs;

impl HostFs for RealHostFs {
    fn read_link(&self, path: &str) -> io::Result<Option<String>> {
        match std::fs::read_link(path) {
            Ok(t) => t.into_os_string().into_string().map(Some).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a symbolic link target is not utf-8",
                )
            }),
            // not a link (EINVAL), not there (ENOENT), a file in the middle (ENOTDIR)
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL | libc::ENOENT | libc::ENOTDIR)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn is_socket(&self, path: &str) -> bool {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path)
            .map(|m| m.file_type().is_socket())
            .unwrap_or(false)
    }

    fn file_id(&self, path: &str) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
}

/// A host where nothing exists: pure lexical checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHostFs;

impl HostFs for NoHostFs {
    fn read_link(&self, _path: &str) -> io::Result<Option<String>> {
        Ok(None)
    }
    fn is_socket(&self, _path: &str) -> bool {
        false
    }
    fn file_id(&self, _path: &str) -> Option<FileId> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_host_fs() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().to_str().unwrap();
        let link = format!("{d}/l");
        std::os::unix::fs::symlink("../missing/target", &link).unwrap();
        assert_eq!(
            RealHostFs.read_link(&link).unwrap().as_deref(),
            Some("../missing/target")
        );
        assert_eq!(RealHostFs.read_link(d).unwrap(), None);
        assert_eq!(RealHostFs.read_link(&format!("{d}/nope/x")).unwrap(), None);
        std::fs::write(format!("{d}/f"), b"").unwrap();
        assert_eq!(RealHostFs.read_link(&format!("{d}/f/x")).unwrap(), None);
        assert!(!RealHostFs.is_socket(d));
        assert!(RealHostFs.file_id(d).is_some());
        assert!(RealHostFs.file_id(&link).is_none(), "dangling");
        assert_eq!(
            RealHostFs.file_id("/proc/self/ns/net"),
            RealHostFs.file_id(&format!("/proc/{}/ns/net", std::process::id()))
        );
        assert!(NoHostFs.read_link(&link).unwrap().is_none());
        assert!(NoHostFs.file_id(d).is_none());
    }
}
