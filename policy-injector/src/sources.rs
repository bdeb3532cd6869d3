//! A bind mount's source as the rules see it: its lexical forms, where its
//! symlink chain passes and ends (even when the end does not exist yet), and
//! which kubelet volume it belongs to. Used by the socket, `/proc`, `/dev`,
//! managed-root and read-only-source rules.

use crate::host::HostFs;
use crate::paths::{alias, is_under, lexical_forms};
use crate::resolve::{resolve, ResolveError};

/// Everything known about one absolute source path.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// Lexical forms (normalised, `/var/run` folded): see [`lexical_forms`].
    pub lexical: Vec<String>,
    /// Every place the symlink chain passes (aliased) and where it ends, less
    /// what `lexical` already holds (empty for a path without links).
    pub chain: Vec<String>,
    /// Where the chain ends (aliased).
    pub resolved: String,
}

impl Source {
    pub fn new(src: &str, host: &dyn HostFs) -> Result<Source, ResolveError> {
        Source::with_lexical(lexical_forms(src), src, host)
    }

    /// [`Source::new`] when `lexical == lexical_forms(src)` is already known.
    pub fn with_lexical(
        lexical: Vec<String>,
        src: &str,
        host: &dyn HostFs,
    ) -> Result<Source, ResolveError> {
        let r = resolve(src, host)?;
        let resolved = alias(&r.path);
        let mut chain: Vec<String> = Vec::new();
        for p in r.steps.iter().map(|s| alias(s)) {
            if !lexical.contains(&p) && !chain.contains(&p) {
                chain.push(p);
            }
        }
        if !lexical.contains(&resolved) && !chain.contains(&resolved) {
            chain.push(resolved.clone());
        }
        Ok(Source {
            lexical,
            chain,
            resolved,
        })
    }

    /// Every form a rule on "what this bind exposes" must check.
    pub fn all(&self) -> impl Iterator<Item = &String> + Clone {
        self.lexical.iter().chain(self.chain.iter())
    }

    /// The forms that name what is mounted: lexical forms and the end of the chain.
    pub fn identity(&self) -> impl Iterator<Item = &String> + Clone {
        let end = (!self.lexical.contains(&self.resolved)).then_some(&self.resolved);
        self.lexical.iter().chain(end)
    }

    /// Under a managed root in every identity form.
    pub fn managed(&self, roots: &[String]) -> bool {
        self.identity()
            .all(|p| roots.iter().any(|r| is_under(p, r)))
    }

    /// The same source as `other`, under it, or containing it; or the same
    /// kubelet volume (a `subPath` mount is a separate bind of part of it).
    pub fn overlaps(&self, other: &Source) -> bool {
        self.identity().any(|a| {
            other
                .identity()
                .any(|b| is_under(a, b) || is_under(b, a) || same_volume(a, b))
        })
    }
}

/// The kubelet volume a path belongs to: `(…/pods/<uid>, <volume>)` for
/// `…/pods/<uid>/volumes/<plugin>/<volume>/…` and for the `subPath` binds
/// `…/pods/<uid>/volume-subpaths/<volume>/<container>/<index>/…`.
fn kubelet_volume(path: &str) -> Option<(&str, &str)> {
    let comps: Vec<(usize, &str)> = path
        .match_indices('/')
        .map(|(i, _)| i)
        .zip(path.split('/').skip(1))
        .collect();
    let at = comps
        .iter()
        .position(|(_, c)| *c == "volumes" || *c == "volume-subpaths")?;
    if at < 2 || comps[at - 2].1 != "pods" {
        return None;
    }
    let pod = &path[..comps[at].0];
    let vol = if comps[at].1 == "volumes" {
        comps.get(at + 2)?.1
    } else {
        comps.get(at + 1)?.1
    };
    Some((pod, vol))
}

fn same_volume(a: &str, b: &str) -> bool {
    match (kubelet_volume(a), kubelet_volume(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::NoHostFs;

    const POD: &str = "/var/lib/kubelet/pods/0d3c";

    #[test]
    fn volumes() {
        let ws = format!("{POD}/volumes/kubernetes.io~empty-dir/ws");
        assert_eq!(kubelet_volume(&ws), Some((POD, "ws")));
        assert_eq!(
            kubelet_volume(&format!("{POD}/volume-subpaths/ws/agent/1")),
            Some((POD, "ws"))
        );
        assert_eq!(
            kubelet_volume(&format!("{POD}/volumes/kubernetes.io~csi/pv-1/mount/x")),
            Some((POD, "pv-1"))
        );
        assert_eq!(
            kubelet_volume(&format!("{POD}/volumes/kubernetes.io~empty-dir")),
            None
        );
        assert_eq!(kubelet_volume(&format!("{POD}/etc-hosts")), None);
        assert_eq!(kubelet_volume("/srv/volumes/a/b"), None);
    }

    #[test]
    fn overlap() {
        let s = |p: &str| Source::new(p, &NoHostFs).unwrap();
        let ws = s(&format!("{POD}/volumes/kubernetes.io~empty-dir/ws"));
        for other in [
            format!("{POD}/volumes/kubernetes.io~empty-dir/ws"),
            format!("{POD}/volumes/kubernetes.io~empty-dir/ws/sub"),
            format!("{POD}/volumes/kubernetes.io~empty-dir"),
            format!("{POD}/volumes/kubernetes.io~empty-dir/./ws/../ws/"),
            format!("{POD}/volume-subpaths/ws/agent/2"),
            POD.to_string(),
        ] {
            assert!(ws.overlaps(&s(&other)), "{other}");
            assert!(s(&other).overlaps(&ws), "{other}");
        }
        for other in [
            format!("{POD}/volumes/kubernetes.io~empty-dir/ws2"),
            format!("{POD}/volume-subpaths/cache/agent/2"),
            format!("{POD}/etc-hosts"),
            "/var/lib/kubelet/pods/other/volumes/kubernetes.io~empty-dir/ws".to_string(),
        ] {
            assert!(!ws.overlaps(&s(&other)), "{other}");
        }
    }
}
