//! A container's `/etc/resolv.conf` pointed at agentbox's resolver: the
//! mount's source becomes a file in the bundle with agentbox's address and
//! the original search and options lines.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{json, Value};

use super::{resolver::nameservers, RESOLVER};

pub const FILE: &str = "agentbox-resolv.conf";
const DEST: &str = "/etc/resolv.conf";

fn is_resolv_conf(m: &Value) -> bool {
    m.get("destination")
        .and_then(Value::as_str)
        .map(|d| d.trim_end_matches('/') == DEST)
        .unwrap_or(false)
}

/// The text for the pod: agentbox's resolver, the original search/options.
pub fn render(original: &str) -> String {
    let mut out =
        format!("# agentbox: names resolve through agentbox's resolver\nnameserver {RESOLVER}\n");
    for l in original.lines() {
        let w = l.split_whitespace().next().unwrap_or("");
        if matches!(w, "search" | "domain" | "options") {
            out.push_str(l.trim());
            out.push('\n');
        }
    }
    out
}

/// Rewrite `spec` (and write the file into `bundle`); the nameservers the
/// container had.
pub fn rewrite(spec: &mut Value, bundle: &Path) -> Result<Vec<SocketAddr>, String> {
    let file = bundle.join(FILE);
    let mounts = spec
        .as_object_mut()
        .ok_or("the spec is not an object")?
        .entry("mounts")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or("the spec's mounts are not a list")?;
    let original = mounts
        .iter()
        .find(|m| is_resolv_conf(m))
        .and_then(|m| m.get("source").and_then(Value::as_str))
        .and_then(|src| std::fs::read_to_string(src).ok())
        .unwrap_or_default();
    std::fs::write(&file, render(&original))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    mounts.retain(|m| !is_resolv_conf(m));
    mounts.push(json!({
        "destination": DEST,
        "type": "bind",
        "source": file.display().to_string(),
        "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
    }));
    Ok(nameservers(&original))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_search_and_options_and_reports_the_servers() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("resolv.conf");
        std::fs::write(
            &src,
            "search team.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fd00::a\noptions ndots:5\n",
        )
        .unwrap();
        let mut spec = json!({"mounts": [
            {"destination": "/etc/hostname", "source": "/x/hostname", "type": "bind"},
            {"destination": "/etc/resolv.conf", "source": src.display().to_string(), "type": "bind", "options": ["rbind", "rw"]},
        ]});
        let servers = rewrite(&mut spec, dir.path()).unwrap();
        assert_eq!(
            servers.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            vec!["10.96.0.10:53", "[fd00::a]:53"]
        );
        let m = spec["mounts"].as_array().unwrap();
        assert_eq!(m.len(), 2);
        let r = m.iter().find(|m| m["destination"] == DEST).unwrap();
        assert!(r["options"].as_array().unwrap().contains(&json!("ro")));
        let text = std::fs::read_to_string(r["source"].as_str().unwrap()).unwrap();
        assert!(text.contains("nameserver 169.254.53.1\n"), "{text}");
        assert!(!text.contains("10.96.0.10"), "{text}");
        assert!(text.contains("search team.svc.cluster.local"), "{text}");
        assert!(text.contains("options ndots:5"), "{text}");
    }

    #[test]
    fn adds_the_mount_when_there_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = json!({});
        assert!(rewrite(&mut spec, dir.path()).unwrap().is_empty());
        assert_eq!(spec["mounts"][0]["destination"], DEST);
    }
}
