//! The sets and the chain of one address family.
//!
//! Every packet of the pod runs this chain, so its order is the cost per
//! packet (measured by `make bench-net`, "the chain's cost per packet"):
//! - flows the resolver's admissions opened (`live`) first: the bulk of an
//!   allowlist pod's packets, one hash lookup. They need not come after the
//!   blocked prefixes: a flow only enters `live` from the `dns` rules, which
//!   come after them, and the blocked prefixes do not change within a
//!   ruleset (a phase switch replaces the table, `live` with it);
//! - entries: exact `address:port` entries in a hash set, prefixes in an
//!   interval set, `prefix:port` entries in a concatenated interval set
//!   (pipapo, whose AVX2 lookup saves the task's FPU state: the dearest
//!   lookup, last); a rule for an empty set is left out;
//! - blocked prefixes, then what the resolver admitted, then the mode.
//!
//! The chain is entered by `goto` from a `meta protocol` rule; its rules
//! still start with the same `meta protocol` match (~25 ns a packet), which
//! lets `nft list ruleset` show `ip daddr` rather than `@nh,128,32` and
//! load its own listing again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{
    lookup, rule, Chain, Elem, Expr, Field, Rule, SetDef, Value, Verdict, DENY_CHAIN, ETH_IP,
    ETH_IP6,
};
use crate::addr::{merge_ranges, Cidr};
use crate::config::Mode;
use crate::policy::{Compiled, ICMPV6, TCP, UDP};

/// How long a flow to a resolved address stays admitted after its last packet.
pub const FLOW_IDLE_MS: u64 = 120_000;

/// Names of one family's chain and sets: allowed prefixes, allowed
/// `address:port`, allowed `prefix:port`, blocked prefixes, resolved
/// addresses, resolved `address:port`, live flows.
pub struct FamilySets {
    pub chain: &'static str,
    pub allow: &'static str,
    pub allow_host: &'static str,
    pub allow_port: &'static str,
    pub block: &'static str,
    pub dns: &'static str,
    pub dns_port: &'static str,
    pub live: &'static str,
}

pub const V4_SETS: FamilySets = FamilySets {
    chain: "v4",
    allow: "allow4",
    allow_host: "allow4h",
    allow_port: "allow4p",
    block: "block4",
    dns: "dns4",
    dns_port: "dns4p",
    live: "live4",
};
pub const V6_SETS: FamilySets = FamilySets {
    chain: "v6",
    allow: "allow6",
    allow_host: "allow6h",
    allow_port: "allow6p",
    block: "block6",
    dns: "dns6",
    dns_port: "dns6p",
    live: "live6",
};

fn ranges(cidrs: impl Iterator<Item = Cidr>, v4: bool) -> Vec<(IpAddr, IpAddr)> {
    let r = merge_ranges(
        cidrs
            .filter(|c| c.is_v4() == v4)
            .map(|c| c.range())
            .collect(),
    );
    r.into_iter()
        .map(|(a, b)| {
            if v4 {
                (
                    IpAddr::V4(Ipv4Addr::from(a as u32)),
                    IpAddr::V4(Ipv4Addr::from(b as u32)),
                )
            } else {
                (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))
            }
        })
        .collect()
}

fn names(v4: bool) -> (&'static FamilySets, Field) {
    if v4 {
        (&V4_SETS, Field::Daddr4)
    } else {
        (&V6_SETS, Field::Daddr6)
    }
}

/// The family's sets: allow, allow_host, allow_port, block, dns, dns_port, live.
pub fn family_sets(p: &Compiled, v4: bool) -> Vec<SetDef> {
    let (names, addr) = names(v4);
    let port_key = [addr, Field::L4Proto, Field::Dport];
    let mut allow = SetDef::new(names.allow, &[addr]);
    allow.interval = true;
    allow.elements = ranges(
        p.permit
            .iter()
            .filter(|(_, port)| port.is_none())
            .map(|(c, _)| *c),
        v4,
    )
    .into_iter()
    .map(|(a, b)| Elem::Range(vec![Value::Addr(a)], vec![Value::Addr(b)]))
    .collect();

    let mut allow_host = SetDef::new(names.allow_host, &port_key);
    let mut allow_port = SetDef::new(names.allow_port, &port_key);
    allow_port.interval = true;
    let mut ports: Vec<u16> = p.permit.iter().filter_map(|(_, port)| *port).collect();
    ports.sort_unstable();
    ports.dedup();
    for port in ports {
        let cidrs = p
            .permit
            .iter()
            .filter(|(_, x)| *x == Some(port))
            .map(|(c, _)| *c);
        for (a, b) in ranges(cidrs, v4) {
            for proto in [TCP, UDP] {
                if a == b {
                    allow_host.elements.push(Elem::Key(vec![
                        Value::Addr(a),
                        Value::U8(proto),
                        Value::U16(port),
                    ]));
                } else {
                    allow_port.elements.push(Elem::Range(
                        vec![Value::Addr(a), Value::U8(proto), Value::U16(port)],
                        vec![Value::Addr(b), Value::U8(proto), Value::U16(port)],
                    ));
                }
            }
        }
    }

    let mut block = SetDef::new(names.block, &[addr]);
    block.interval = true;
    block.elements = ranges(p.blocked.iter().map(|b| b.cidr), v4)
        .into_iter()
        .map(|(a, b)| Elem::Range(vec![Value::Addr(a)], vec![Value::Addr(b)]))
        .collect();

    let mut dns = SetDef::new(names.dns, &[addr]);
    dns.timeout = true;
    let mut dns_port = SetDef::new(names.dns_port, &port_key);
    dns_port.timeout = true;
    let mut live = SetDef::new(
        names.live,
        &[addr, Field::L4Proto, Field::Dport, Field::Sport],
    );
    live.timeout = true;
    live.dynamic = true;
    vec![allow, allow_host, allow_port, block, dns, dns_port, live]
}

/// The family's chain over its sets (as [`family_sets`] made them).
pub fn family_chain(p: &Compiled, v4: bool, sets: &[SetDef]) -> Chain {
    let (n, addr) = names(v4);
    let has = |name: &str| {
        sets.iter()
            .any(|s| s.name == name && !s.elements.is_empty())
    };
    let port_key = [addr, Field::L4Proto, Field::Dport];
    let flow_key = [addr, Field::L4Proto, Field::Dport, Field::Sport];
    let update = Expr::Update {
        set: n.live.into(),
        key: flow_key.to_vec(),
        timeout_ms: FLOW_IDLE_MS,
    };
    let resolves = p.mode == Mode::Allowlist && p.dns;
    let eth = if v4 { ETH_IP } else { ETH_IP6 };
    let rule = |mut exprs: Vec<Expr>, v: Verdict| {
        exprs.insert(0, Expr::Eq(Field::EtherType, Value::U16(eth)));
        rule(exprs, v)
    };
    let mut rules = Vec::new();
    if !v4 {
        // neighbour discovery and MLD, to link-local and link multicast only
        rules.push(rule(
            vec![
                Expr::Eq(Field::L4Proto, Value::U8(ICMPV6)),
                lookup("ndtypes", &[Field::Icmp6Type]),
                lookup("nd6", &[Field::Daddr6]),
            ],
            Verdict::Accept,
        ));
    }
    if resolves {
        rules.push(rule(
            vec![lookup(n.live, &flow_key), update.clone()],
            Verdict::Accept,
        ));
    }
    // entries lift blocks: before them
    if has(n.allow_host) {
        rules.push(rule(vec![lookup(n.allow_host, &port_key)], Verdict::Accept));
    }
    if has(n.allow) {
        rules.push(rule(vec![lookup(n.allow, &[addr])], Verdict::Accept));
    }
    if has(n.allow_port) {
        rules.push(rule(vec![lookup(n.allow_port, &port_key)], Verdict::Accept));
    }
    if has(n.block) {
        rules.push(rule(
            vec![lookup(n.block, &[addr])],
            Verdict::Goto(DENY_CHAIN.into()),
        ));
    }
    if resolves {
        rules.push(rule(
            vec![lookup(n.dns, &[addr]), update.clone()],
            Verdict::Accept,
        ));
        rules.push(rule(
            vec![lookup(n.dns_port, &port_key), update],
            Verdict::Accept,
        ));
    }
    rules.push(Rule {
        exprs: vec![],
        verdict: Some(match p.mode {
            Mode::Open => Verdict::Accept,
            _ => Verdict::Goto(DENY_CHAIN.into()),
        }),
    });
    Chain {
        name: n.chain.into(),
        device: None,
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::{build, Interfaces};
    use crate::NetworkConfig;

    fn compiled(toml: &str) -> Compiled {
        let c = NetworkConfig::from_document(toml).unwrap().unwrap();
        Compiled::new(&c.agent, &["192.0.2.10".parse().unwrap()])
    }

    fn set<'a>(sets: &'a [SetDef], name: &str) -> &'a SetDef {
        sets.iter().find(|s| s.name == name).unwrap()
    }

    /// The sets a chain's rules look up, in order.
    fn lookups(c: &Chain) -> Vec<String> {
        c.rules
            .iter()
            .filter_map(|r| {
                r.exprs.iter().find_map(|e| match e {
                    Expr::Lookup { set, .. } => Some(set.clone()),
                    _ => None,
                })
            })
            .collect()
    }

    #[test]
    fn host_entries_go_to_a_hash_set_prefix_entries_to_an_interval_set() {
        let p = compiled(
            "[network]\nmode = \"allowlist\"\nallow = [\"203.0.113.7:443\", \"198.51.100.0/24:443\", \"[2001:db8::7]:8443\", \"10.20.0.0/16\"]\n",
        );
        let v4 = family_sets(&p, true);
        let host = set(&v4, "allow4h");
        assert!(!host.interval && host.key.len() == 3);
        assert_eq!(host.elements.len(), 2, "tcp and udp: {:?}", host.elements);
        assert!(host.elements.iter().all(
            |e| matches!(e, Elem::Key(k) if k[0] == Value::Addr("203.0.113.7".parse().unwrap()))
        ));
        let port = set(&v4, "allow4p");
        assert!(port.interval);
        assert_eq!(port.elements.len(), 2);
        assert!(port.elements.iter().all(|e| matches!(e, Elem::Range(a, b)
            if a[0] == Value::Addr("198.51.100.0".parse().unwrap())
            && b[0] == Value::Addr("198.51.100.255".parse().unwrap()))));
        let v6 = family_sets(&p, false);
        assert_eq!(set(&v6, "allow6h").elements.len(), 2);
        assert!(set(&v6, "allow6p").elements.is_empty());
    }

    #[test]
    fn the_chain_looks_up_flows_first_and_skips_empty_entry_sets() {
        let p = compiled(
            "[network]\nmode = \"allowlist\"\nallow = [\"203.0.113.7:443\", \"pypi.mirror.internal:443\"]\n",
        );
        let v4 = family_sets(&p, true);
        let c = family_chain(&p, true, &v4);
        assert_eq!(c.name, "v4");
        // no prefix or prefix:port entries: no rule for allow4, allow4p
        assert_eq!(lookups(&c), ["live4", "allow4h", "block4", "dns4", "dns4p"]);
        assert_eq!(
            c.rules.last().unwrap().verdict,
            Some(Verdict::Goto(DENY_CHAIN.into()))
        );
        // every rule that loads from the packet names its family first
        for r in c.rules.iter().filter(|r| !r.exprs.is_empty()) {
            assert_eq!(r.exprs[0], Expr::Eq(Field::EtherType, Value::U16(ETH_IP)));
        }
        let v6 = family_sets(&p, false);
        let c = family_chain(&p, false, &v6);
        // neighbour discovery first; no IPv6 entries at all
        assert_eq!(lookups(&c), ["ndtypes", "live6", "block6", "dns6", "dns6p"]);
    }

    #[test]
    fn every_entry_kind_has_its_rule_and_the_pipapo_lookup_comes_last() {
        let p = compiled(
            "[network]\nmode = \"allowlist\"\ndns = false\nallow = [\"203.0.113.7:443\", \"198.51.100.0/24:443\", \"10.20.0.0/16\"]\n",
        );
        let c = family_chain(&p, true, &family_sets(&p, true));
        // without DNS: no flow or resolver rules
        assert_eq!(lookups(&c), ["allow4h", "allow4", "allow4p", "block4"]);
        let open = compiled("[network]\nmode = \"open\"\n");
        let c = family_chain(&open, true, &family_sets(&open, true));
        assert_eq!(lookups(&c), ["block4"]);
        assert_eq!(c.rules.last().unwrap().verdict, Some(Verdict::Accept));
    }

    #[test]
    fn base_chains_send_each_family_to_its_chain() {
        let p = compiled("[network]\nmode = \"offline\"\n");
        let rs = build(
            &p,
            &Interfaces {
                pod: vec!["eth0".into(), "net1".into()],
                dns_link: None,
            },
        );
        for dev in ["eth0", "net1"] {
            let base = rs
                .chains
                .iter()
                .find(|c| c.device.as_deref() == Some(dev))
                .unwrap();
            let v: Vec<_> = base.rules.iter().map(|r| r.verdict.clone()).collect();
            assert_eq!(
                v,
                [
                    Some(Verdict::Goto("v4".into())),
                    Some(Verdict::Goto("v6".into())),
                    Some(Verdict::Accept),
                    Some(Verdict::Drop)
                ]
            );
        }
        assert!(rs.chain("v4").is_some() && rs.chain("v6").is_some());
    }
}
