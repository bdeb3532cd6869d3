//! Root-only tests of the netlink layer against the kernel, in a network
//! namespace each test creates and removes.

use std::net::Ipv4Addr;
use std::process::Command;

use agentbox_netpolicy::ruleset::{build, DnsLink, Interfaces};
use agentbox_netpolicy::{Compiled, NetworkConfig};

use super::netns::NetNs;
use super::nft::Nft;

pub(crate) struct TestNs {
    pub name: String,
}

impl TestNs {
    /// A named namespace with a dummy `eth0`, or None when not root.
    pub fn new(tag: &str) -> Option<TestNs> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root");
            return None;
        }
        let name = format!("abx-ut-{tag}-{}", std::process::id());
        let ok = |args: &[&str]| {
            let o = Command::new("ip").args(args).output().unwrap();
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ok(&["netns", "add", &name]);
        let ns = TestNs { name };
        ok(&[
            "-n", &ns.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ]);
        ok(&["-n", &ns.name, "link", "set", "eth0", "up"]);
        Some(ns)
    }

    pub fn path(&self) -> std::path::PathBuf {
        format!("/var/run/netns/{}", self.name).into()
    }

    pub fn nft_list(&self) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft", "list", "ruleset"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ruleset(toml: &str, dns_link: bool) -> agentbox_netpolicy::ruleset::Ruleset {
    let c = NetworkConfig::from_document(toml).unwrap().unwrap();
    let p = Compiled::new(&c.agent, &["192.0.2.10".parse().unwrap()]);
    build(
        &p,
        &Interfaces {
            pod: vec!["eth0".into()],
            dns_link: dns_link.then(|| DnsLink {
                device: "eth0".into(),
                resolver: Ipv4Addr::new(169, 254, 53, 1),
            }),
        },
    )
}

#[test]
fn the_ruleset_installs_replaces_and_goes() {
    let Some(t) = TestNs::new("nft") else { return };
    let ns = NetNs::open(&t.path()).unwrap();
    let rs = ruleset(
        "[network]\nmode = \"allowlist\"\nallow = [\"203.0.113.7:443\", \"10.20.0.0/16\", \"[2001:db8::7]:443\", \"pypi.mirror.internal:443\"]\n",
        false,
    );
    ns.run(|| Nft::open().unwrap().apply(&rs)).unwrap().unwrap();
    let listed = t.nft_list();
    if std::env::var_os("AGENTBOX_SHOW_RULES").is_some() {
        eprintln!("{listed}");
    }
    for needle in [
        "table netdev agentbox",
        "type filter hook egress device \"eth0\" priority filter; policy drop;",
        "203.0.113.7 . tcp . 443",
        "10.20.0.0/16",
        "169.254.0.0/16",
        "fc00::/7",
        "64:ff9b::a9fe:0/112",
        "ip daddr @block4 goto deny",
        "log prefix \"agentbox\" group 4162 snaplen 128",
        "update @live4",
    ] {
        assert!(listed.contains(needle), "{needle:?} not in\n{listed}");
    }
    // in the order written: ARP first, the deny chain's log before its drop
    let at = |s: &str| {
        listed
            .find(s)
            .unwrap_or_else(|| panic!("{s:?} not in\n{listed}"))
    };
    assert!(at("meta protocol ip goto v4") < at("meta protocol arp accept"));
    assert!(at("ip daddr . meta l4proto . th dport . th sport @live4") < at("@allow4h accept"));
    assert!(at("@allow4h accept") < at("ip daddr @allow4 accept"));
    assert!(at("ip daddr @allow4 accept") < at("ip daddr @block4 goto deny"));
    assert!(at("ip daddr @block4 goto deny") < at("ip daddr @dns4 update @live4"));
    assert!(at("log prefix") < at("\t\tdrop\n"));
    // applying again replaces, it does not add
    let off = ruleset("[network]\nmode = \"offline\"\n", false);
    ns.run(|| Nft::open().unwrap().apply(&off))
        .unwrap()
        .unwrap();
    let listed = t.nft_list();
    assert_eq!(listed.matches("table netdev agentbox").count(), 1);
    assert!(!listed.contains("203.0.113.7"), "{listed}");
    // elements with timeouts
    let (set, fields, key) =
        agentbox_netpolicy::ruleset::dns_element("203.0.113.99".parse().unwrap(), Some((6, 443)));
    let elem = |timeout_ms| super::admit::Element {
        set,
        fields: fields.clone(),
        key: key.clone(),
        timeout_ms,
    };
    ns.run(|| {
        let mut n = Nft::open().unwrap();
        n.admit("agentbox", &[elem(30_000)])?;
        // again: refreshed, not an error
        n.admit("agentbox", &[elem(60_000)])
    })
    .unwrap()
    .unwrap();
    let listed = t.nft_list();
    assert!(
        listed.contains("203.0.113.99 . tcp . 443 timeout 1m"),
        "{listed}"
    );
    let tables = ns.run(|| Nft::open().unwrap().tables()).unwrap().unwrap();
    assert_eq!(tables, vec!["agentbox".to_string()]);
    ns.run(|| Nft::open().unwrap().delete_table("agentbox"))
        .unwrap()
        .unwrap();
    assert!(!t.nft_list().contains("agentbox"));
    let e = ns
        .run(|| Nft::open().unwrap().delete_table("agentbox"))
        .unwrap()
        .unwrap_err();
    assert_eq!(e.errno, libc::ENOENT, "{e}");
}

#[test]
fn a_failing_rule_fails_the_whole_transaction() {
    let Some(t) = TestNs::new("fail") else { return };
    let ns = NetNs::open(&t.path()).unwrap();
    let mut rs = ruleset("[network]\nmode = \"offline\"\n", false);
    let v4 = rs.chains.iter_mut().find(|c| c.name == "v4").unwrap();
    v4.rules.push(agentbox_netpolicy::ruleset::Rule {
        exprs: vec![agentbox_netpolicy::ruleset::Expr::Lookup {
            set: "nosuchset".into(),
            key: vec![agentbox_netpolicy::ruleset::Field::Daddr4],
        }],
        verdict: None,
    });
    let e = ns
        .run(|| Nft::open().unwrap().apply(&rs))
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("add rule v4"), "{e}");
    assert!(!t.nft_list().contains("agentbox"), "nothing half-installed");
}

#[test]
fn the_node_namespace_is_refused() {
    let e = NetNs::open(std::path::Path::new("/proc/self/ns/net")).unwrap_err();
    assert!(e.contains("node's own"), "{e}");
    let e = NetNs::open(std::path::Path::new("/etc/hostname")).unwrap_err();
    assert!(e.contains("not a network namespace"), "{e}");
}

fn timeout_of(listed: &str, elem: &str) -> String {
    let at = listed
        .find(elem)
        .unwrap_or_else(|| panic!("{elem:?} not in\n{listed}"));
    listed[at + elem.len()..]
        .split([',', '\n', '}'])
        .next()
        .unwrap()
        .split(" expires")
        .next()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn admission_holds_whatever_the_ledger_believes() {
    use super::admit::Element;
    let Some(t) = TestNs::new("adm") else { return };
    let ns = NetNs::open(&t.path()).unwrap();
    let rs = ruleset(
        "[network]\nmode = \"allowlist\"\nallow = [\"pypi.mirror.internal:443\"]\n",
        false,
    );
    let elem = |addr: &str, port, timeout_ms| {
        let (set, fields, key) =
            agentbox_netpolicy::ruleset::dns_element(addr.parse().unwrap(), port);
        Element {
            set,
            fields,
            key,
            timeout_ms,
        }
    };
    let nft = |cmd: &str| {
        let o = Command::new("ip")
            .args(["netns", "exec", &t.name, "sh", "-c", &format!("nft {cmd}")])
            .output()
            .unwrap();
        assert!(o.status.success(), "nft {cmd}: {o:?}");
    };
    let mut n = ns.run(|| Nft::open().unwrap()).unwrap();
    let run = |n: &mut Nft, elems: Vec<Element>| {
        ns.run(|| n.admit("agentbox", &elems)).unwrap().unwrap();
    };
    ns.run(|| n.apply(&rs)).unwrap().unwrap();
    // several addresses and ports in one call, then again with new timeouts
    let first = vec![
        elem("203.0.113.20", Some((6, 443)), 30_000),
        elem("203.0.113.20", Some((17, 443)), 30_000),
        elem("2001:db8::20", None, 30_000),
    ];
    run(&mut n, first);
    assert_eq!(n.ledger.len(), 3);
    let listed = t.nft_list();
    assert_eq!(
        timeout_of(&listed, "203.0.113.20 . udp . 443 timeout"),
        "30s"
    );
    assert_eq!(timeout_of(&listed, "2001:db8::20 timeout"), "30s");
    run(
        &mut n,
        vec![
            elem("203.0.113.20", Some((6, 443)), 90_000),
            elem("2001:db8::20", None, 90_000),
        ],
    );
    let listed = t.nft_list();
    assert_eq!(
        timeout_of(&listed, "203.0.113.20 . tcp . 443 timeout"),
        "1m30s"
    );
    assert_eq!(
        timeout_of(&listed, "203.0.113.20 . udp . 443 timeout"),
        "30s"
    );
    assert_eq!(timeout_of(&listed, "2001:db8::20 timeout"), "1m30s");
    // the ledger believes an element is there that is not: still admitted
    nft("delete element netdev agentbox dns4p '{ 203.0.113.20 . tcp . 443 }'");
    run(&mut n, vec![elem("203.0.113.20", Some((6, 443)), 45_000)]);
    let listed = t.nft_list();
    assert_eq!(
        timeout_of(&listed, "203.0.113.20 . tcp . 443 timeout"),
        "45s"
    );
    // an element there that the ledger does not know: refreshed
    nft("add element netdev agentbox dns4 '{ 203.0.113.21 timeout 5s }'");
    run(&mut n, vec![elem("203.0.113.21", None, 120_000)]);
    assert_eq!(
        timeout_of(&t.nft_list(), "203.0.113.21 timeout"),
        "2m",
        "refreshed, not an error"
    );
    // a new ruleset empties the sets: the ledger forgets, admission works
    ns.run(|| n.apply(&rs)).unwrap().unwrap();
    assert!(n.ledger.is_empty());
    assert!(!t.nft_list().contains("203.0.113.2"));
    run(&mut n, vec![elem("203.0.113.20", Some((6, 443)), 30_000)]);
    assert!(t
        .nft_list()
        .contains("203.0.113.20 . tcp . 443 timeout 30s"));
    // a set that does not exist is an error naming it
    let mut bad = elem("203.0.113.22", None, 30_000);
    bad.set = "nosuchset";
    let e = ns
        .run(|| n.admit("agentbox", &[elem("203.0.113.23", None, 30_000), bad]))
        .unwrap()
        .unwrap_err();
    assert!(e.to_string().contains("nosuchset"), "{e}");
}
