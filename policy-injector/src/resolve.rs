//! Symlink resolution through [`HostFs::read_link`], one component at a time,
//! that keeps going when the final target (or any tail) does not exist yet:
//! a dangling link to a runtime socket is as dangerous as a live one, since
//! the socket may be created before the container starts.

use crate::host::HostFs;
use crate::paths::normalize;

/// Most symbolic links followed in one resolution (Linux's own limit, ELOOP).
pub const MAX_SYMLINKS: usize = 40;

/// A path with every symbolic link followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The path after every link (normalised; the tail may not exist).
    pub path: String,
    /// After each link followed, the whole path being resolved (normalised):
    /// every place the chain passes through.
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// More than [`MAX_SYMLINKS`] links.
    Loop,
    /// The host could not tell whether a component is a link.
    Host(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::Loop => write!(f, "more than {MAX_SYMLINKS} symbolic links"),
            ResolveError::Host(e) => write!(f, "the host cannot resolve it: {e}"),
        }
    }
}

/// Resolve absolute `path` as the kernel would, without requiring it to exist.
/// `..` applies to the resolved prefix (after links), never above `/`.
pub(crate) fn resolve(path: &str, host: &dyn HostFs) -> Result<Resolved, ResolveError> {
    let mut rest = std::borrow::Cow::Borrowed(path);
    let mut pos = 0usize;
    let mut cur = String::with_capacity(path.len());
    let mut steps = Vec::new();
    loop {
        let b = rest.as_bytes();
        while pos < b.len() && b[pos] == b'/' {
            pos += 1;
        }
        if pos >= b.len() {
            break;
        }
        let end = rest[pos..].find('/').map_or(rest.len(), |i| pos + i);
        let comp = &rest[pos..end];
        match comp {
            "." => {}
            ".." => {
                let cut = cur.rfind('/').unwrap_or(0);
                cur.truncate(cut);
            }
            _ => {
                let before = cur.len();
                cur.push('/');
                cur.push_str(comp);
                match host.read_link(&cur) {
                    Ok(None) => {}
                    Ok(Some(target)) => {
                        if steps.len() >= MAX_SYMLINKS {
                            return Err(ResolveError::Loop);
                        }
                        cur.truncate(before);
                        if target.starts_with('/') {
                            cur.clear();
                        }
                        rest = std::borrow::Cow::Owned(format!("{target}/{}", &rest[end..]));
                        pos = 0;
                        steps.push(
                            normalize(&format!("{cur}/{rest}")).unwrap_or_else(|| "/".into()),
                        );
                        continue;
                    }
                    Err(e) => return Err(ResolveError::Host(e.to_string())),
                }
            }
        }
        pos = end;
    }
    if cur.is_empty() {
        cur.push('/');
    }
    Ok(Resolved { path: cur, steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{FileId, NoHostFs};
    use std::collections::HashMap;

    struct Links(HashMap<&'static str, &'static str>);
    impl HostFs for Links {
        fn read_link(&self, p: &str) -> std::io::Result<Option<String>> {
            if p == "/denied" {
                return Err(std::io::Error::other("permission denied"));
            }
            Ok(self.0.get(p).map(|s| s.to_string()))
        }
        fn is_socket(&self, _: &str) -> bool {
            false
        }
        fn file_id(&self, _: &str) -> Option<FileId> {
            None
        }
    }

    #[test]
    fn lexical_without_links() {
        let r = resolve("//a/./b/../c/", &NoHostFs).unwrap();
        assert_eq!(r.path, "/a/c");
        assert!(r.steps.is_empty());
        assert_eq!(resolve("/../..", &NoHostFs).unwrap().path, "/");
    }

    #[test]
    fn chains_and_dangling_targets() {
        let h = Links(HashMap::from([
            ("/var/run", "../run"),
            ("/srv/a", "/srv/b"),
            ("/srv/b", "/var/run/docker.sock"),
            ("/srv/dir", "/var/run"),
            ("/loop1", "/loop2"),
            ("/loop2", "loop1"),
            ("/up", "x/../../.."),
        ]));
        let r = resolve("/srv/a", &h).unwrap();
        assert_eq!(r.path, "/run/docker.sock");
        assert_eq!(
            r.steps,
            ["/srv/b", "/var/run/docker.sock", "/run/docker.sock"]
        );
        assert_eq!(
            resolve("/srv/dir/../etc", &h).unwrap().path,
            "/etc",
            "`..` applies after the link"
        );
        assert_eq!(resolve("/up/etc", &h).unwrap().path, "/etc");
        assert_eq!(resolve("/loop1", &h), Err(ResolveError::Loop));
        assert!(matches!(
            resolve("/denied/x", &h),
            Err(ResolveError::Host(_))
        ));
    }
}
