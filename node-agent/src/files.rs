//! Changing files on the host safely: atomic replacement (write a temp file
//! in the same folder, fsync, rename — a running shim keeps its old inode, a
//! reader never sees half a file), hashes, and a journal that puts every
//! file a run changed back when the run fails.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// sha256 of a file, hex; `None` when it does not exist.
pub fn sha256_file(path: &Path) -> io::Result<Option<String>> {
    let mut f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Some(hex(&h.finalize())))
}

pub fn sha256_bytes(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a file; `None` when it does not exist.
pub fn read_opt(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its missing parents; returns the ones it created, outermost first.
pub fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = vec![];
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    missing.reverse();
    for d in &missing {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(missing)
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.agentbox-{tag}-{}", std::process::id()))
}

/// Replaces `path` atomically with `data` (mode `mode`).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_from(path, &mut io::Cursor::new(data), mode)
}

/// Replaces `path` atomically with a copy of `src`.
pub fn copy_atomic(src: &Path, path: &Path, mode: u32) -> io::Result<()> {
    let mut f = fs::File::open(src)?;
    write_atomic_from(path, &mut f, mode)
}

fn write_atomic_from(path: &Path, r: &mut dyn Read, mode: u32) -> io::Result<()> {
    let tmp = sibling(path, "new");
    let res = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        io::copy(r, &mut f)?;
        f.flush()?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Mode of an existing file, or `default`.
pub fn mode_or(path: &Path, default: u32) -> u32 {
    fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(default)
}

#[derive(Debug)]
struct Entry {
    path: PathBuf,
    /// a hard link to (or copy of) the previous file; `None`: there was none
    saved: Option<PathBuf>,
}

/// The files one run changed, so a failed run can put them back.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Vec<Entry>,
    dirs: Vec<PathBuf>,
}

impl Journal {
    pub fn new() -> Self {
        Self::default()
    }

    fn save(&mut self, path: &Path) -> io::Result<()> {
        if self.entries.iter().any(|e| e.path == path) {
            return Ok(());
        }
        let saved = if let Ok(meta) = fs::symlink_metadata(path) {
            let s = sibling(path, "prev");
            let _ = fs::remove_file(&s);
            if meta.file_type().is_symlink() {
                std::os::unix::fs::symlink(fs::read_link(path)?, &s)?;
            } else if fs::hard_link(path, &s).is_err() {
                fs::copy(path, &s)?;
            }
            Some(s)
        } else {
            None
        };
        self.entries.push(Entry {
            path: path.to_path_buf(),
            saved,
        });
        Ok(())
    }

    /// Creates the parent folders of `path`, remembering the new ones.
    pub fn ensure_parent(&mut self, path: &Path) -> io::Result<()> {
        if let Some(p) = path.parent() {
            let made = create_dirs(p)?;
            self.dirs.extend(made);
        }
        Ok(())
    }

    pub fn write(&mut self, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
        self.ensure_parent(path)?;
        self.save(path)?;
        write_atomic(path, data, mode)
    }

    pub fn copy(&mut self, src: &Path, path: &Path, mode: u32) -> io::Result<()> {
        self.ensure_parent(path)?;
        self.save(path)?;
        copy_atomic(src, path, mode)
    }

    /// Points `path` at `target` (a symlink, replaced atomically).
    pub fn symlink(&mut self, target: &Path, path: &Path) -> io::Result<()> {
        self.ensure_parent(path)?;
        self.save(path)?;
        let tmp = sibling(path, "new");
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp)?;
        fs::rename(&tmp, path).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
    }

    pub fn remove(&mut self, path: &Path) -> io::Result<()> {
        if fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        self.save(path)?;
        fs::remove_file(path)
    }

    /// Folders this journal created (outermost first).
    pub fn created_dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// Puts every file back as it was, newest change first; removes the
    /// folders this run created (if empty). Returns what could not be restored.
    pub fn rollback(self) -> Vec<String> {
        let mut errors = vec![];
        for e in self.entries.into_iter().rev() {
            let r = match &e.saved {
                Some(s) => fs::rename(s, &e.path),
                None => match fs::remove_file(&e.path) {
                    Err(x) if x.kind() == io::ErrorKind::NotFound => Ok(()),
                    r => r,
                },
            };
            if let Err(x) = r {
                errors.push(format!("{}: {x}", e.path.display()));
            }
        }
        for d in self.dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
        errors
    }

    /// Keeps the changes (drops the saved copies).
    pub fn commit(self) {
        for e in self.entries {
            if let Some(s) = e.saved {
                let _ = fs::remove_file(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_replaced_created_and_removed_files() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        let b = d.path().join("sub/deeper/b");
        let c = d.path().join("c");
        fs::write(&a, "old a").unwrap();
        fs::write(&c, "old c").unwrap();
        let mut j = Journal::new();
        j.write(&a, b"new a", 0o644).unwrap();
        j.write(&a, b"newer a", 0o644).unwrap();
        j.write(&b, b"b", 0o600).unwrap();
        j.remove(&c).unwrap();
        assert_eq!(fs::read_to_string(&a).unwrap(), "newer a");
        assert_eq!(mode_or(&b, 0), 0o600);
        assert!(!c.exists());
        assert_eq!(j.created_dirs().len(), 2);
        assert!(j.rollback().is_empty());
        assert_eq!(fs::read_to_string(&a).unwrap(), "old a");
        assert_eq!(fs::read_to_string(&c).unwrap(), "old c");
        assert!(!d.path().join("sub").exists());
        // no temp or saved files left behind
        let left: Vec<_> = fs::read_dir(d.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn a_running_binary_keeps_its_inode_when_replaced() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("shim");
        fs::write(&p, "v1").unwrap();
        let held = fs::File::open(&p).unwrap();
        let ino = held.metadata().unwrap().ino();
        let mut j = Journal::new();
        j.write(&p, b"v2", 0o755).unwrap();
        j.commit();
        assert_ne!(fs::metadata(&p).unwrap().ino(), ino);
        let mut s = String::new();
        (&held).read_to_string(&mut s).unwrap();
        assert_eq!(s, "v1");
        assert_eq!(sha256_file(&p).unwrap().unwrap(), sha256_bytes(b"v2"));
        assert_eq!(sha256_file(&d.path().join("none")).unwrap(), None);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
