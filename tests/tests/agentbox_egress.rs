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
