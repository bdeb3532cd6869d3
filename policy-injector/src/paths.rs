//! Lexical path handling: normalisation, the `/var/run` → `/run` alias, and
//! component-wise patterns (a `*` inside a component matches within that component).

use crate::glob::glob_match;

/// Normalise an absolute path lexically: collapse repeated and trailing slashes,
/// drop `.` components, resolve `..` (never above `/`). `None` for a relative path.
pub fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    let mut s = String::with_capacity(path.len());
    if out.is_empty() {
        s.push('/');
    }
    for c in out {
        s.push('/');
        s.push_str(c);
    }
    Some(s)
}

/// [`normalize`] without allocating when `path` is already in normal form.
pub fn normalize_cow(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !path.starts_with('/') {
        return None;
    }
    let normal = path == "/"
        || (!path.ends_with('/')
            && path[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".."));
    if normal {
        Some(std::borrow::Cow::Borrowed(path))
    } else {
        normalize(path).map(std::borrow::Cow::Owned)
    }
}

/// On every supported host `/var/run` is a symlink to `/run`: fold it so both
/// spellings compare equal. Input must already be normalised.
pub fn alias(norm: &str) -> String {
    if norm == "/var/run" {
        "/run".to_string()
    } else if let Some(rest) = norm.strip_prefix("/var/run/") {
        format!("/run/{rest}")
    } else {
        norm.to_string()
    }
}

/// The forms of `raw` to check against deny patterns: the lexical normal form and,
/// when `raw` has `..` components, the form where `/var/run` is folded first (the
/// kernel follows the `/var/run` symlink before applying `..`). Each aliased.
pub fn lexical_forms(raw: &str) -> Vec<String> {
    let mut v = Vec::with_capacity(2);
    if let Some(n) = normalize(raw) {
        v.push(alias(&n));
        if raw.split('/').any(|c| c == "..") {
            let folded = if let Some(rest) = raw.trim_start_matches('/').strip_prefix("var/run") {
                if rest.is_empty() || rest.starts_with('/') {
                    format!("/run{rest}")
                } else {
                    raw.to_string()
                }
            } else {
                raw.to_string()
            };
            if let Some(n2) = normalize(&folded) {
                let a = alias(&n2);
                if !v.contains(&a) {
                    v.push(a);
                }
            }
        }
    }
    v
}

/// `true` if normalised `path` is `root` or lies under it (both normalised).
pub fn is_under(path: &str, root: &str) -> bool {
    if root == "/" {
        return true;
    }
    path == root || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
}

/// A path pattern: absolute, normalised, `*`/`?` allowed within components.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    original: String,
    /// components, each with whether it has a wildcard
    comps: Vec<(String, bool)>,
}

impl PathPattern {
    /// `None` if `p` is not absolute.
    pub fn new(p: &str) -> Option<PathPattern> {
        let n = alias(&normalize(p)?);
        let comps = n
            .split('/')
            .filter(|c| !c.is_empty())
            .map(|c| (c.to_string(), c.contains(['*', '?'])))
            .collect();
        Some(PathPattern {
            original: p.to_string(),
            comps,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Compare the first `min(len)` components. `Some(true)` if every compared
    /// component matches and `path` is exactly as long (the path is the socket),
    /// `Some(false)` if they match and one is a prefix of the other (an ancestor
    /// folder or something below the socket), `None` otherwise.
    fn relate(&self, parts: &[&str]) -> Option<bool> {
        for (i, (pat, wild)) in self.comps.iter().enumerate() {
            let Some(c) = parts.get(i) else {
                return Some(false);
            };
            let ok = if *wild {
                glob_match(pat.as_bytes(), c.as_bytes(), false)
            } else {
                pat == c
            };
            if !ok {
                return None;
            }
        }
        Some(parts.len() == self.comps.len())
    }

    /// `path` (normalised, aliased) is this socket, a folder above it, or below it.
    pub fn reaches(&self, path: &str) -> bool {
        self.reaches_parts(&parts(path))
    }

    /// [`PathPattern::reaches`] on a path already split by [`parts`].
    pub fn reaches_parts(&self, parts: &[&str]) -> bool {
        self.relate(parts).is_some()
    }

    /// `path` (normalised, aliased) is exactly this socket.
    #[cfg(test)]
    pub fn is_exactly(&self, path: &str) -> bool {
        self.is_exactly_parts(&parts(path))
    }

    /// [`PathPattern::is_exactly`] on a path already split by [`parts`].
    pub fn is_exactly_parts(&self, parts: &[&str]) -> bool {
        parts.len() == self.comps.len() && self.relate(parts) == Some(true)
    }
}

/// The components of a normalised path.
pub fn parts(path: &str) -> Vec<&str> {
    path.split('/').filter(|c| !c.is_empty()).collect()
}

/// Built-in container-runtime and node-agent sockets (`/var/run` is folded to `/run`).
pub const BUILTIN_SOCKETS: &[&str] = &[
    // docker (rootful, Docker Desktop raw socket, rootless, docker's own containerd)
    "/run/docker.sock",
    "/run/docker.sock.raw",
    "/run/user/*/docker.sock",
    "/home/*/.docker/run/docker.sock",
    "/run/docker/containerd/containerd.sock",
    "/run/docker/plugins/*",
    // containerd (API, ttrpc, debug, shim sockets), k3s / rke2, microk8s
    "/run/containerd/containerd.sock",
    "/run/containerd/containerd.sock.ttrpc",
    "/run/containerd/debug.sock",
    "/run/containerd/s/*",
    "/run/k3s/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock.ttrpc",
    "/var/snap/microk8s/common/run/containerd.sock",
    // CRI-O, cri-dockerd
    "/run/crio/crio.sock",
    "/run/cri-dockerd.sock",
    // podman rootful and rootless
    "/run/podman/podman.sock",
    "/run/user/*/podman/podman.sock",
    // buildkit rootful and rootless
    "/run/buildkit/buildkitd.sock",
    "/run/user/*/buildkit/buildkitd.sock",
    // kubelet pod-resources, device plugins, plugin registration, CSI plugins
    "/var/lib/kubelet/pod-resources/*",
    "/var/lib/kubelet/device-plugins/*",
    "/var/lib/kubelet/plugins_registry/*",
    "/var/lib/kubelet/plugins/*/*",
    // NRI
    "/run/nri/nri.sock",
    // dbus system bus and per-user buses, systemd
    "/run/dbus/system_bus_socket",
    "/run/user/*/bus",
    "/run/systemd/private",
    "/run/user/*/systemd/private",
    // libvirt
    "/run/libvirt/*",
];

/// Built-in roots whose content is managed by the kubelet or containerd's CRI plugin.
pub const BUILTIN_MANAGED_ROOTS: &[&str] = &[
    "/var/lib/kubelet/pods",
    "/var/lib/containerd/io.containerd.grpc.v1.cri",
    "/run/containerd/io.containerd.grpc.v1.cri",
];

/// Destinations of the Kubernetes service-account token (both spellings).
pub const SERVICEACCOUNT_DESTS: &[&str] = &[
    "/var/run/secrets/kubernetes.io/serviceaccount",
    "/run/secrets/kubernetes.io/serviceaccount",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise() {
        assert_eq!(
            normalize("//var/run/./docker.sock").unwrap(),
            "/var/run/docker.sock"
        );
        assert_eq!(
            normalize("/var/run/../run/docker.sock/").unwrap(),
            "/var/run/docker.sock"
        );
        assert_eq!(normalize("/../..").unwrap(), "/");
        assert_eq!(normalize("/"), Some("/".into()));
        assert_eq!(normalize("rel/x"), None);
        assert_eq!(alias("/var/run/docker.sock"), "/run/docker.sock");
        assert_eq!(alias("/var/runx"), "/var/runx");
        assert_eq!(alias("/var/run"), "/run");
    }

    #[test]
    fn normalize_without_allocating() {
        for p in [
            "/", "/a", "/a/b", "//a", "/a/", "/a/./b", "/a/../b", "/..", "/a//b", "rel",
        ] {
            assert_eq!(
                normalize_cow(p).map(|c| c.into_owned()),
                normalize(p),
                "{p}"
            );
        }
        assert!(matches!(
            normalize_cow("/proc/1/ns/net"),
            Some(std::borrow::Cow::Borrowed(_))
        ));
    }

    #[test]
    fn forms_with_dotdot() {
        let f = lexical_forms("/var/run/../docker.sock");
        assert!(f.contains(&"/var/docker.sock".to_string()));
        assert!(f.contains(&"/docker.sock".to_string()));
    }

    #[test]
    fn patterns() {
        let p = PathPattern::new("/run/user/*/docker.sock").unwrap();
        assert!(p.is_exactly("/run/user/1000/docker.sock"));
        assert!(p.reaches("/run/user/1000"));
        assert!(p.reaches("/run"));
        assert!(p.reaches("/"));
        assert!(!p.reaches("/run/podman"));
        assert!(!p.is_exactly("/run/user"));
        let q = PathPattern::new("/var/run/docker.sock").unwrap();
        assert!(q.is_exactly("/run/docker.sock"));
        assert!(is_under("/a/b", "/a"));
        assert!(!is_under("/ab", "/a"));
        assert!(is_under("/a", "/"));
    }
}
