//! A pod's effective network policy, for `agentbox-policy explain`.

use std::fmt::Write as _;

use crate::addr::METADATA;
use crate::config::{Mode, NetworkConfig, PhasePolicy, ANNOTATION};
use crate::entry::Target;

fn phase(out: &mut String, name: &str, p: &PhasePolicy) {
    let _ = write!(out, "  {name:<6} {}", p.mode);
    match p.mode {
        Mode::Offline => out.push_str(": no egress, no DNS\n"),
        Mode::Open => {
            let _ = writeln!(
                out,
                ": any public address{}",
                if p.dns {
                    "; any name through agentbox's resolver"
                } else {
                    "; no DNS"
                }
            );
        }
        Mode::Allowlist => {
            out.push('\n');
            for e in &p.allow {
                let what = match (&e.target, e.port) {
                    (Target::Net(_), None) => "every protocol",
                    (Target::Net(_), Some(_)) => "tcp and udp",
                    (Target::Name(_), None) => "its answered addresses, every protocol",
                    (Target::Name(_), Some(_)) => "its answered addresses, tcp and udp",
                };
                let _ = writeln!(out, "           allow {e:<32} {what}");
            }
            if p.allow.is_empty() {
                out.push_str("           (nothing listed)\n");
            }
            let _ = writeln!(
                out,
                "           dns: {}",
                if p.dns {
                    "allowed names only, through agentbox's resolver"
                } else {
                    "none"
                }
            );
        }
    }
}

/// The effective policy of a pod under `cfg` with the pod's
/// `agentbox.dev/network` annotation (if any); an error if the annotation
/// would loosen it.
pub fn explain(cfg: Option<&NetworkConfig>, annotation: Option<&str>) -> Result<String, String> {
    let mut out = String::new();
    let Some(cfg) = cfg else {
        out.push_str("network: not enforced (the config has no [network] table)\n");
        if annotation.is_some() {
            return Err(format!(
                "{ANNOTATION} is set but the config has no [network] table to tighten"
            ));
        }
        return Ok(out);
    };
    let eff = cfg.with_annotation(annotation).map_err(|e| e.to_string())?;
    out.push_str("network (enforced at the pod's interfaces, from the node):\n");
    if let Some(a) = annotation {
        let _ = writeln!(out, "  tightened by {ANNOTATION}={a}");
    }
    phase(&mut out, "setup", &eff.setup);
    phase(&mut out, "agent", &eff.agent);
    let _ = writeln!(
        out,
        "  blocked in every mode unless an entry as specific allows it: metadata ({}), \
link-local, loopback, private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7), \
multicast, reserved, the node's own addresses, and IPv6 forms carrying any of them",
        METADATA.join(", ")
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_both_phases_and_the_tightening() {
        let c = NetworkConfig::from_document(
            "[network]\nmode = \"offline\"\n[network.setup]\nmode = \"allowlist\"\nallow = [\"pypi.mirror.internal:443\"]\n",
        )
        .unwrap()
        .unwrap();
        let s = explain(Some(&c), None).unwrap();
        assert!(s.contains("setup  allowlist"), "{s}");
        assert!(s.contains("allow pypi.mirror.internal:443"), "{s}");
        assert!(s.contains("agent  offline: no egress"), "{s}");
        let s = explain(Some(&c), Some("offline")).unwrap();
        assert!(s.contains("setup  offline"), "{s}");
        assert!(explain(Some(&c), Some("open"))
            .unwrap_err()
            .contains("loosen"));
        assert!(explain(None, None).unwrap().contains("not enforced"));
    }
}
