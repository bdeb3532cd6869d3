//! The generated nftables rules do what the policy says: packet by packet,
//! the interpreter's verdict on the ruleset equals `Compiled::decide`, for
//! random configurations, destinations, protocols, ports and DNS admissions.

use std::net::{IpAddr, Ipv4Addr};

use agentbox_netpolicy::eval::{eval, Packet, State};
use agentbox_netpolicy::policy::{Compiled, ICMP, ICMPV6, TCP, UDP};
use agentbox_netpolicy::ruleset::{
    build, dns_element, DnsLink, Interfaces, Ruleset, Value, ETH_ARP,
};
use agentbox_netpolicy::{Mode, NetworkConfig};
use proptest::prelude::*;

const NODE: &str = "192.0.2.10";

const ENTRIES: &[&str] = &[
    "10.20.0.0/16",
    "203.0.113.7:443",
    "[2001:db8::7]:443",
    "198.51.100.0/24",
    "169.254.0.0/16",
    "169.254.169.254:80",
    "0.0.0.0/0",
    "::/0",
    "2001:db8:1::/48:8443",
    "fd00:ec2::254",
    "10.0.0.0/8:53",
    "192.0.2.10:22",
    "pypi.mirror.internal:443",
    "*.cdn.internal",
];

const DESTS: &[&str] = &[
    "203.0.113.7",
    "203.0.113.8",
    "198.51.100.9",
    "2001:db8::7",
    "2001:db8::8",
    "2001:db8:1::9",
    "10.20.1.1",
    "10.21.1.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "169.254.170.2",
    "169.254.1.1",
    "100.100.100.200",
    "168.63.129.16",
    "127.0.0.1",
    "0.0.0.1",
    "224.0.0.251",
    "255.255.255.255",
    "192.0.2.10",
    "fd00:ec2::254",
    "fd12::1",
    "fe80::1",
    "ff02::1",
    "ff05::2",
    "::1",
    "::ffff:169.254.169.254",
    "::ffff:203.0.113.7",
    "::10.0.0.1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::cb00:7107",
    "64:ff9b:1::1",
    "2002:a9fe:a9fe::1",
    "2002:c000:20a::1",
    "2002:cb00:7107::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn config(mode: Mode, entries: &[&str], dns: bool) -> Option<NetworkConfig> {
    let allow: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
    let text = format!(
        "[network]\nmode = \"{}\"\nallow = [{}]\ndns = {dns}\n",
        mode,
        if mode == Mode::Offline {
            String::new()
        } else {
            allow.join(", ")
        }
    );
    NetworkConfig::from_document(&text).ok().flatten()
}

fn ifs() -> Interfaces {
    Interfaces {
        pod: vec!["eth0".into(), "net1".into()],
        dns_link: Some(DnsLink {
            device: "agentbox-dns".into(),
            resolver: Ipv4Addr::new(169, 254, 53, 1),
        }),
    }
}

/// An admission the resolver made: an address, for every port or one.
#[derive(Clone, Debug)]
struct Admit {
    addr: IpAddr,
    port: Option<u16>,
}

fn admitted(p: &Compiled, adm: &[Admit], dst: IpAddr, proto: u8, dport: u16) -> bool {
    p.mode == Mode::Allowlist
        && p.dns
        && adm.iter().any(|a| {
            a.addr == dst
                && match a.port {
                    None => true,
                    Some(port) => (proto == TCP || proto == UDP) && port == dport,
                }
        })
}

fn state_with(rs: &Ruleset, adm: &[Admit]) -> State {
    let mut st = State::new(rs);
    for a in adm {
        match a.port {
            None => {
                let (set, _, key) = dns_element(a.addr, None);
                st.add(rs, set, &key, 1_000);
            }
            Some(port) => {
                for proto in [TCP, UDP] {
                    let (set, _, key) = dns_element(a.addr, Some((proto, port)));
                    st.add(rs, set, &key, 1_000);
                }
            }
        }
    }
    st
}

fn packet(dst: IpAddr, proto: u8, sport: u16, dport: u16) -> Packet {
    if proto == TCP || proto == UDP {
        Packet::ports(dst, proto, sport, dport)
    } else {
        let icmp_type = if proto == ICMPV6 { 128 } else { 8 };
        Packet::other(dst, proto, [icmp_type, 0, (dport >> 8) as u8, dport as u8])
    }
}

fn mode_strategy() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Offline), Just(Mode::Allowlist), Just(Mode::Open)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn rules_agree_with_the_policy(
        mode in mode_strategy(),
        picks in proptest::sample::subsequence(ENTRIES.to_vec(), 0..6),
        dns in any::<bool>(),
        adm_picks in proptest::collection::vec((0..DESTS.len(), prop_oneof![Just(None), Just(Some(443u16)), Just(Some(53u16))]), 0..4),
        probes in proptest::collection::vec(
            (0..DESTS.len(), prop_oneof![Just(TCP), Just(UDP), Just(ICMP), Just(ICMPV6), Just(47u8)],
             prop_oneof![Just(443u16), Just(80), Just(53), Just(8443), Just(22), any::<u16>()]),
            1..30),
    ) {
        let Some(cfg) = config(mode, &picks, dns) else {
            // an invalid combination (names without dns): the config refuses it
            return Ok(());
        };
        let p = Compiled::new(&cfg.agent, &[ip(NODE)]);
        let rs = build(&p, &ifs());
        let adm: Vec<Admit> = adm_picks
            .iter()
            .map(|(i, port)| Admit { addr: ip(DESTS[*i]), port: *port })
            .collect();
        for (i, proto, dport) in probes {
            let dst = ip(DESTS[i]);
            // ICMP is per family: skip the combinations that cannot exist
            if (proto == ICMP && !dst.is_ipv4()) || (proto == ICMPV6 && dst.is_ipv4()) {
                continue;
            }
            let want = p.decide(dst, proto, Some(dport), admitted(&p, &adm, dst, proto, dport));
            let mut st = state_with(&rs, &adm);
            for dev in ["eth0", "net1"] {
                let got = eval(&rs, &mut st, dev, &packet(dst, proto, 40000, dport), 1);
                prop_assert_eq!(got.accepted, want.is_ok(),
                    "{} {} proto {} port {}: policy {:?}\n{}", dev, dst, proto, dport, want, rs);
                // every refusal is logged
                prop_assert_eq!(got.logged, want.is_err());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Later packets of a flow: while the admissions last, the verdict of
    /// its first packet; after they expired, still open if the first
    /// packet was (the flow is tracked while used), and otherwise what the
    /// policy says without them. This holds whatever the order of the
    /// flow, entry and block rules.
    #[test]
    fn a_flow_keeps_the_verdict_of_its_first_packet(
        mode in mode_strategy(),
        picks in proptest::sample::subsequence(ENTRIES.to_vec(), 0..6),
        adm_picks in proptest::collection::vec((0..DESTS.len(), prop_oneof![Just(None), Just(Some(443u16)), Just(Some(53u16))]), 0..4),
        probes in proptest::collection::vec(
            (0..DESTS.len(), prop_oneof![Just(TCP), Just(UDP), Just(ICMP), Just(ICMPV6), Just(47u8)],
             prop_oneof![Just(443u16), Just(80), Just(53), Just(8443), any::<u16>()]),
            1..20),
    ) {
        let Some(cfg) = config(mode, &picks, true) else {
            return Ok(());
        };
        let p = Compiled::new(&cfg.agent, &[ip(NODE)]);
        let rs = build(&p, &ifs());
        let adm: Vec<Admit> = adm_picks
            .iter()
            .map(|(i, port)| Admit { addr: ip(DESTS[*i]), port: *port })
            .collect();
        for (i, proto, dport) in probes {
            let dst = ip(DESTS[i]);
            if (proto == ICMP && !dst.is_ipv4()) || (proto == ICMPV6 && dst.is_ipv4()) {
                continue;
            }
            let mut st = state_with(&rs, &adm);
            let pkt = packet(dst, proto, 40000, dport);
            let first = eval(&rs, &mut st, "eth0", &pkt, 1).accepted;
            // the same flow, through the other interface too, before the TTL
            prop_assert_eq!(eval(&rs, &mut st, "net1", &pkt, 2).accepted, first);
            // after the admissions expired (at 1000), within the idle time
            let without = p.decide(dst, proto, Some(dport), false).is_ok();
            let later = eval(&rs, &mut st, "eth0", &pkt, 50_000).accepted;
            prop_assert_eq!(later, first || without, "{} proto {} port {}\n{}", dst, proto, dport, rs);
            // and after it idled out
            let idle = eval(&rs, &mut st, "eth0", &pkt, 50_000 + 121_000).accepted;
            prop_assert_eq!(idle, without, "{} proto {} port {}", dst, proto, dport);
        }
    }
}

#[test]
fn arp_and_neighbour_discovery_pass_other_frames_do_not() {
    let cfg = config(Mode::Offline, &[], false).unwrap();
    let p = Compiled::new(&cfg.agent, &[ip(NODE)]);
    let rs = build(&p, &ifs());
    let mut st = State::new(&rs);
    let arp = Packet {
        ethertype: ETH_ARP,
        daddr: None,
        l4proto: 0,
        l4: [0; 4],
    };
    assert!(eval(&rs, &mut st, "eth0", &arp, 0).accepted);
    // neighbour solicitation to a solicited-node address
    let ns = Packet::other(ip("ff02::1:ff00:1"), ICMPV6, [135, 0, 0, 0]);
    assert!(eval(&rs, &mut st, "eth0", &ns, 0).accepted);
    // but not to a global address (it could be routed)
    let ns_far = Packet::other(ip("2001:db8::1"), ICMPV6, [135, 0, 0, 0]);
    assert!(!eval(&rs, &mut st, "eth0", &ns_far, 0).accepted);
    // an echo request to link-local multicast is not neighbour discovery
    let echo = Packet::other(ip("ff02::1"), ICMPV6, [128, 0, 0, 0]);
    assert!(!eval(&rs, &mut st, "eth0", &echo, 0).accepted);
    let other = Packet {
        ethertype: 0x88cc,
        daddr: None,
        l4proto: 0,
        l4: [0; 4],
    };
    let o = eval(&rs, &mut st, "eth0", &other, 0);
    assert!(!o.accepted && !o.logged);
}

#[test]
fn the_resolver_link_carries_dns_to_the_resolver_only() {
    let cfg = config(Mode::Allowlist, &["pypi.mirror.internal:443"], true).unwrap();
    let p = Compiled::new(&cfg.agent, &[ip(NODE)]);
    let rs = build(&p, &ifs());
    let mut st = State::new(&rs);
    let dev = "agentbox-dns";
    let r = ip("169.254.53.1");
    assert!(eval(&rs, &mut st, dev, &Packet::ports(r, UDP, 5000, 53), 0).accepted);
    assert!(eval(&rs, &mut st, dev, &Packet::ports(r, TCP, 5000, 53), 0).accepted);
    for bad in [
        Packet::ports(r, TCP, 5000, 80),
        Packet::ports(ip("169.254.53.2"), UDP, 5000, 53),
        Packet::ports(ip("203.0.113.7"), TCP, 5000, 443),
        Packet::other(r, ICMP, [8, 0, 0, 0]),
    ] {
        let o = eval(&rs, &mut st, dev, &bad, 0);
        assert!(!o.accepted && o.logged, "{bad:?}");
    }
    // a phase without DNS still reaches the resolver, which refuses every name
    let off = config(Mode::Offline, &[], false).unwrap();
    let rs = build(&Compiled::new(&off.agent, &[]), &ifs());
    let mut st = State::new(&rs);
    assert!(eval(&rs, &mut st, dev, &Packet::ports(r, UDP, 5000, 53), 0).accepted);
    assert!(!eval(&rs, &mut st, dev, &Packet::ports(r, UDP, 5000, 54), 0).accepted);
}

#[test]
fn flows_outlive_the_ttl_new_ones_do_not() {
    let cfg = config(Mode::Allowlist, &["pypi.mirror.internal:443"], true).unwrap();
    let p = Compiled::new(&cfg.agent, &[ip(NODE)]);
    let rs = build(&p, &ifs());
    let dst = ip("203.0.113.50");
    let mut st = state_with(
        &rs,
        &[Admit {
            addr: dst,
            port: Some(443),
        }],
    );
    let flow = Packet::ports(dst, TCP, 40001, 443);
    assert!(eval(&rs, &mut st, "eth0", &flow, 500).accepted);
    // the admission expired at 1000; the flow goes on while it is used
    assert!(eval(&rs, &mut st, "eth0", &flow, 1_500).accepted);
    assert!(eval(&rs, &mut st, "eth0", &flow, 100_000).accepted);
    // a new connection needs a new answer
    let fresh = Packet::ports(dst, TCP, 40002, 443);
    assert!(!eval(&rs, &mut st, "eth0", &fresh, 100_000).accepted);
    // an idle flow ends
    assert!(!eval(&rs, &mut st, "eth0", &flow, 100_000 + 121_000).accepted);
    // other ports were never admitted
    assert!(
        !eval(
            &rs,
            &mut st,
            "eth0",
            &Packet::ports(dst, TCP, 40001, 80),
            600
        )
        .accepted
    );
}

#[test]
fn the_ruleset_prints_as_nft() {
    let cfg = config(
        Mode::Allowlist,
        &[
            "203.0.113.7:443",
            "10.20.0.0/16",
            "pypi.mirror.internal:443",
        ],
        true,
    )
    .unwrap();
    let p = Compiled::new(&cfg.agent, &[ip(NODE)]);
    let text = build(&p, &ifs()).to_string();
    for needle in [
        "table netdev agentbox {",
        "type filter hook egress device \"eth0\" priority 0; policy drop;",
        "ip daddr . meta l4proto . th dport @allow4h accept",
        "203.0.113.7 . tcp . 443",
        "10.20.0.0/16",
        "ip daddr @block4 goto deny",
        "update @live4",
        "log group 4162 snaplen 128",
        "ip daddr 169.254.53.1 meta l4proto udp th dport 53 accept",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
    let _ = Value::U8(0);
}
