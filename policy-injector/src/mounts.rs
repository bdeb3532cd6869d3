//! Mount rules: runtime sockets, host `/proc`, host sockets, the service-account
//! token, unmanaged host binds, read-only destinations, injected mounts.

use serde_json::{json, Map, Value};

use crate::annotations::{Effective, Phase};
use crate::paths::{alias, is_under, lexical_forms, normalize, parts, SERVICEACCOUNT_DESTS};
use crate::report::{Recorder, Refusal};
use crate::sources::Source;
use crate::{HostFs, Inject, Policy, Profile};

/// Mount types that are not host mounts (their source names nothing on the host).
pub const PSEUDO_FS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm", "ramfs",
];

/// Options of an injected mount.
pub const INJECT_OPTIONS: &[&str] = &["rbind", "ro", "nosuid", "nodev"];

fn options(m: &Map<String, Value>) -> impl Iterator<Item = &str> {
    m.get("options")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// Is this a bind mount (of a host path)?
pub fn is_bind(m: &Map<String, Value>) -> bool {
    m.get("type").and_then(Value::as_str) == Some("bind")
        || options(m).any(|o| o == "bind" || o == "rbind")
}

fn is_ro(m: &Map<String, Value>) -> bool {
    options(m).any(|o| o == "ro") && !options(m).any(|o| o == "rw")
}

/// Make a mount read-only; `true` if it changed.
fn force_ro(m: &mut Map<String, Value>) -> bool {
    if is_ro(m) {
        return false;
    }
    let opts = m
        .entry("options".to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(a) = opts {
        a.retain(|o| o.as_str() != Some("rw"));
        if !a.iter().any(|o| o.as_str() == Some("ro")) {
            a.push(Value::String("ro".to_string()));
        }
    }
    true
}

fn inject_value(i: &Inject) -> Value {
    json!({
        "destination": i.destination,
        "type": "bind",
        "source": i.source,
        "options": INJECT_OPTIONS,
    })
}

fn dest_norm(dest: &str) -> String {
    if dest.starts_with('/') {
        normalize(dest).unwrap_or_default()
    } else {
        normalize(&format!("/{dest}")).unwrap_or_default()
    }
}

fn looks_like_socket(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    last.ends_with(".sock") || last.ends_with(".socket") || last.ends_with("-sock")
}

enum Fate {
    Keep,
    Drop(&'static str),
}

fn src_of(m: &Map<String, Value>) -> &str {
    m.get("source").and_then(Value::as_str).unwrap_or("")
}

fn ro_dest(policy: &Policy, eff: &Effective, dnorm: &str) -> bool {
    policy
        .readonly
        .iter()
        .chain(eff.readonly.iter())
        .any(|r| is_under(dnorm, r))
}

pub(crate) fn apply(
    policy: &Policy,
    eff: &Effective,
    root: &mut Map<String, Value>,
    host: &dyn HostFs,
    rec: &mut Recorder,
) -> Result<(), Refusal> {
    let sensitive = eff.profile == Profile::Sensitive;
    let sa_allowed = eff.phase == Phase::Setup
        || policy
            .sa_allow_agent
            .unwrap_or(eff.profile == Profile::Standard);

    if !root.contains_key("mounts") && policy.inject.is_empty() {
        return Ok(());
    }
    let mounts = root
        .entry("mounts".to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(mounts) = mounts else {
        return Ok(());
    };
    let old = std::mem::take(mounts);
    let mut out: Vec<Value> = Vec::with_capacity(old.len() + policy.inject.len());
    let mut injected_seen = vec![false; policy.inject.len()];

    // Sources of the binds at read-only destinations: read-only follows them.
    let mut cache: Vec<Option<Source>> = Vec::new();
    let mut ro_sources: Vec<Source> = Vec::new();
    if !policy.readonly.is_empty() || !eff.readonly.is_empty() {
        cache.resize(old.len(), None);
        for (i, mv) in old.iter().enumerate() {
            let Some(m) = mv.as_object() else { continue };
            let dnorm = dest_norm(m.get("destination").and_then(Value::as_str).unwrap_or(""));
            let src = src_of(m);
            if !is_bind(m)
                || !src.starts_with('/')
                || policy.inject.iter().any(|i| i.dest_norm == dnorm)
            {
                continue;
            }
            // an unresolvable source refuses the container below
            if let Ok(s) = Source::new(src, host) {
                if ro_dest(policy, eff, &dnorm) {
                    ro_sources.push(s.clone());
                }
                cache[i] = Some(s);
            }
        }
    }

    for (i, mut mv) in old.into_iter().enumerate() {
        let Value::Object(m) = &mut mv else {
            out.push(mv);
            continue;
        };
        let dest = m
            .get("destination")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let dnorm = dest_norm(&dest);

        // agentbox's own injected mounts: replaced in place by the canonical form.
        if let Some(j) = policy.inject.iter().position(|i| i.dest_norm == dnorm) {
            let want = inject_value(&policy.inject[j]);
            if injected_seen[j] {
                rec.push("mounts.inject", dest.as_str(), "removed");
                continue;
            }
            injected_seen[j] = true;
            if mv != want {
                rec.push("mounts.inject", dest.as_str(), "replaced");
            }
            out.push(want);
            continue;
        }

        let cached = cache.get_mut(i).and_then(Option::take);
        let (fate, source) = mount_fate(
            policy, sensitive, sa_allowed, m, &dest, &dnorm, host, cached,
        )?;
        if let Fate::Drop(rule) = fate {
            rec.push(rule, dest.as_str(), "removed");
            continue;
        }

        // Read-only forcing, first matching rule reported.
        if let Some(src) = &source {
            if !sensitive && !src.managed(&policy.managed_roots) && force_ro(m) {
                rec.push("mounts.unmanaged-host", dest.as_str(), "forced-readonly");
            }
        }
        if ro_dest(policy, eff, &dnorm) && force_ro(m) {
            rec.push("mounts.readonly", dest.as_str(), "forced-readonly");
        }
        if let Some(src) = &source {
            if ro_sources.iter().any(|r| r.overlaps(src)) && force_ro(m) {
                rec.push("mounts.readonly-source", dest.as_str(), "forced-readonly");
            }
        }
        if is_under(&dnorm, "/sys") && force_ro(m) {
            rec.push("mounts.sys-readonly", dest.as_str(), "forced-readonly");
        }
        out.push(mv);
    }

    for (j, seen) in injected_seen.iter().enumerate() {
        if !seen {
            let i = &policy.inject[j];
            out.push(inject_value(i));
            rec.push("mounts.inject", i.destination.as_str(), "injected");
        }
    }
    *mounts = out;
    Ok(())
}

fn reaches_socket(policy: &Policy, path: &str) -> bool {
    let p = parts(path);
    policy.sockets.iter().any(|s| s.reaches_parts(&p))
}

/// The rule that drops a bind exposing one of `forms`: host `/proc`, host
/// `/dev`, a runtime socket (or a folder above or below one).
fn drop_rule(policy: &Policy, forms: &[String]) -> Option<&'static str> {
    if forms.iter().any(|f| is_under(f, "/proc")) {
        Some("mounts.host-proc")
    } else if forms.iter().any(|f| is_under(f, "/dev")) {
        Some("mounts.host-device")
    } else if forms.iter().any(|f| reaches_socket(policy, f)) {
        Some("mounts.runtime-socket")
    } else {
        None
    }
}

/// What happens to one mount; for a kept host bind, its [`Source`].
#[allow(clippy::too_many_arguments)]
fn mount_fate(
    policy: &Policy,
    sensitive: bool,
    sa_allowed: bool,
    m: &Map<String, Value>,
    dest: &str,
    dnorm: &str,
    host: &dyn HostFs,
    cached: Option<Source>,
) -> Result<(Fate, Option<Source>), Refusal> {
    let dalias = alias(dnorm);
    let dparts = parts(&dalias);
    if policy.sockets.iter().any(|s| s.is_exactly_parts(&dparts)) {
        return Ok((Fate::Drop("mounts.socket-destination"), None));
    }
    if !sa_allowed
        && SERVICEACCOUNT_DESTS
            .iter()
            .any(|sa| is_under(dnorm, sa) || is_under(&dalias, sa))
    {
        return Ok((Fate::Drop("mounts.serviceaccount"), None));
    }
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    if !is_bind(m) {
        if ty.is_empty() || ty == "none" || PSEUDO_FS.contains(&ty) {
            return Ok((Fate::Keep, None));
        }
        return Err(Refusal::new(
            "mounts.fs-type",
            dest,
            format!("a {ty:?} filesystem mount at {dest} is not allowed (only binds and pseudo filesystems)"),
        ));
    }
    let src = src_of(m);
    if !src.starts_with('/') {
        return Ok((Fate::Drop("mounts.relative-source"), None));
    }
    // Lexical forms first (no host lookup needed), then the symlink chain:
    // every place it passes, even when its end does not exist yet.
    let (lexical, cached) = match cached {
        Some(s) => (None, Some(s)),
        None => (Some(lexical_forms(src)), None),
    };
    let forms = lexical
        .as_deref()
        .or(cached.as_ref().map(|s| s.lexical.as_slice()))
        .unwrap_or_default();
    if let Some(rule) = drop_rule(policy, forms) {
        return Ok((Fate::Drop(rule), None));
    }
    let source = match (cached, lexical) {
        (Some(s), _) => s,
        (None, lexical) => {
            Source::with_lexical(lexical.unwrap_or_default(), src, host).map_err(|e| {
                Refusal::new(
                    "mounts.symlink-chain",
                    dest,
                    format!("cannot resolve the source {src:?} of the bind at {dest}: {e}"),
                )
            })?
        }
    };
    if !source.chain.is_empty() {
        if let Some(rule) = drop_rule(policy, &source.chain) {
            return Ok((Fate::Drop(rule), None));
        }
    }
    if sensitive && (host.is_socket(src) || source.all().any(|f| looks_like_socket(f))) {
        return Ok((Fate::Drop("mounts.host-socket"), None));
    }
    if sensitive && !source.managed(&policy.managed_roots) {
        return Err(Refusal::new(
            "mounts.unmanaged-host",
            dest,
            format!(
                "host bind mount of {src:?} at {dest} is not allowed under the sensitive profile (its source is not managed by the kubelet or containerd)"
            ),
        ));
    }
    Ok((Fate::Keep, Some(source)))
}
