//! The nftables ruleset of one pod, as data: a `netdev` table whose base
//! chains hook `egress` on the pod's interfaces (where gVisor's netstack
//! packets are seen) and go to the rules of the packet's family
//! ([`family`]). The shim turns it into
//! netlink messages; [`crate::eval`] runs it on test packets; `Display`
//! prints it in `nft` syntax.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use crate::addr::Cidr;
use crate::policy::{Compiled, TCP, UDP};

mod family;
mod text;

pub use family::{family_chain, family_sets, FamilySets, FLOW_IDLE_MS, V4_SETS, V6_SETS};

/// The table agentbox owns in each pod's network namespace.
pub const TABLE: &str = "agentbox";
/// The NFLOG group denied packets are logged to (per network namespace).
pub const LOG_GROUP: u16 = 4162;
/// Bytes of each denied packet logged (network and transport headers).
pub const SNAPLEN: u32 = 128;
/// Denied packets logged per second at most (the rest are dropped unlogged).
pub const LOG_RATE: u64 = 200;
pub const LOG_BURST: u32 = 400;
pub const DENY_CHAIN: &str = "deny";
pub const DNS_CHAIN: &str = "dns";

pub const ETH_IP: u16 = 0x0800;
pub const ETH_IP6: u16 = 0x86dd;
pub const ETH_ARP: u16 = 0x0806;

/// Something a rule loads from a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// `meta protocol` (the ethertype).
    EtherType,
    /// `meta l4proto`.
    L4Proto,
    Daddr4,
    Daddr6,
    /// `th dport`: bytes 2–3 of the transport header.
    Dport,
    /// `th sport`: bytes 0–1 of the transport header.
    Sport,
    /// `icmpv6 type`: byte 0 of the transport header.
    Icmp6Type,
}

impl Field {
    /// Bytes loaded.
    pub fn size(self) -> usize {
        match self {
            Field::EtherType | Field::Dport | Field::Sport => 2,
            Field::L4Proto | Field::Icmp6Type => 1,
            Field::Daddr4 => 4,
            Field::Daddr6 => 16,
        }
    }

    /// Bytes taken in a register (and in a concatenated set key).
    pub fn padded(self) -> usize {
        self.size().div_ceil(4) * 4
    }

    /// nftables' datatype number (what `nft list` shows the key as).
    pub fn type_id(self) -> u32 {
        match self {
            Field::EtherType => 10,
            Field::L4Proto => 12,
            Field::Daddr4 => 7,
            Field::Daddr6 => 8,
            Field::Dport | Field::Sport => 13,
            Field::Icmp6Type => 29,
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Field::EtherType => "meta protocol",
            Field::L4Proto => "meta l4proto",
            Field::Daddr4 => "ip daddr",
            Field::Daddr6 => "ip6 daddr",
            Field::Dport => "th dport",
            Field::Sport => "th sport",
            Field::Icmp6Type => "icmpv6 type",
        }
    }

    fn nft_type(self) -> &'static str {
        match self {
            Field::EtherType => "ether_type",
            Field::L4Proto => "inet_proto",
            Field::Daddr4 => "ipv4_addr",
            Field::Daddr6 => "ipv6_addr",
            Field::Dport | Field::Sport => "inet_service",
            Field::Icmp6Type => "icmpv6_type",
        }
    }
}

/// A value of a field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    Addr(IpAddr),
    U8(u8),
    U16(u16),
}

impl Value {
    /// Network byte order, `len` bytes.
    pub fn bytes(self) -> Vec<u8> {
        match self {
            Value::Addr(IpAddr::V4(a)) => a.octets().to_vec(),
            Value::Addr(IpAddr::V6(a)) => a.octets().to_vec(),
            Value::U8(v) => vec![v],
            Value::U16(v) => v.to_be_bytes().to_vec(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Addr(a) => write!(f, "{a}"),
            Value::U8(TCP) => f.write_str("tcp"),
            Value::U8(UDP) => f.write_str("udp"),
            Value::U8(v) => write!(f, "{v}"),
            Value::U16(ETH_IP) => f.write_str("ip"),
            Value::U16(ETH_IP6) => f.write_str("ip6"),
            Value::U16(ETH_ARP) => f.write_str("arp"),
            Value::U16(v) => write!(f, "{v}"),
        }
    }
}

/// A set key, field by field, padded as nftables lays it out in registers.
pub fn encode_key(fields: &[Field], values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for (f, v) in fields.iter().zip(values) {
        let mut b = v.bytes();
        b.resize(f.padded(), 0);
        out.extend(b);
    }
    out
}

/// One set element: a key, or (interval sets) a first and last key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Elem {
    Key(Vec<Value>),
    Range(Vec<Value>, Vec<Value>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetDef {
    pub name: String,
    pub key: Vec<Field>,
    /// Elements are ranges (prefixes).
    pub interval: bool,
    /// Elements may carry a timeout.
    pub timeout: bool,
    /// Rules add elements to it (`update @set`).
    pub dynamic: bool,
    pub elements: Vec<Elem>,
}

impl SetDef {
    fn new(name: &str, key: &[Field]) -> SetDef {
        SetDef {
            name: name.into(),
            key: key.to_vec(),
            interval: false,
            timeout: false,
            dynamic: false,
            elements: Vec::new(),
        }
    }

    /// Key length in bytes.
    pub fn key_len(&self) -> usize {
        self.key.iter().map(|f| f.padded()).sum()
    }
}

/// One expression of a rule; every expression must match for the rule's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Eq(Field, Value),
    Ne(Field, Value),
    /// The concatenation of `key` is in `set`.
    Lookup {
        set: String,
        key: Vec<Field>,
    },
    /// Matches at most `per_second` packets a second (after a burst).
    Limit {
        per_second: u64,
        burst: u32,
    },
    Log {
        group: u16,
        snaplen: u32,
    },
    /// Add the packet's `key` to `set`, or refresh it, with `timeout_ms`.
    Update {
        set: String,
        key: Vec<Field>,
        timeout_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Jump(String),
    Goto(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub exprs: Vec<Expr>,
    /// None: go on with the next rule.
    pub verdict: Option<Verdict>,
}

fn rule(exprs: Vec<Expr>, v: Verdict) -> Rule {
    Rule {
        exprs,
        verdict: Some(v),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub name: String,
    /// Base chains: the device whose egress they hook (priority 0, policy drop).
    pub device: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ruleset {
    pub table: String,
    pub sets: Vec<SetDef>,
    pub chains: Vec<Chain>,
}

impl Ruleset {
    pub fn set(&self, name: &str) -> Option<&SetDef> {
        self.sets.iter().find(|s| s.name == name)
    }
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }
}

/// Where the rules go: the pod's interfaces and, if names resolve through
/// agentbox, the link to its resolver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interfaces {
    pub pod: Vec<String>,
    pub dns_link: Option<DnsLink>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsLink {
    /// The interface the sandbox reaches the resolver through.
    pub device: String,
    pub resolver: Ipv4Addr,
}

pub(crate) fn lookup(set: &str, key: &[Field]) -> Expr {
    Expr::Lookup {
        set: set.into(),
        key: key.to_vec(),
    }
}

/// The ruleset for one phase.
pub fn build(p: &Compiled, ifs: &Interfaces) -> Ruleset {
    let v4 = family_sets(p, true);
    let v6 = family_sets(p, false);
    let mut chains = Vec::new();
    // each interface's base chain sends a packet to its family's chain at once
    for (i, dev) in ifs.pod.iter().enumerate() {
        let proto = |eth| Expr::Eq(Field::EtherType, Value::U16(eth));
        chains.push(Chain {
            name: format!("egress{i}"),
            device: Some(dev.clone()),
            rules: vec![
                rule(vec![proto(ETH_IP)], Verdict::Goto(V4_SETS.chain.into())),
                rule(vec![proto(ETH_IP6)], Verdict::Goto(V6_SETS.chain.into())),
                rule(vec![proto(ETH_ARP)], Verdict::Accept),
                // other frames: dropped unlogged
                Rule {
                    exprs: vec![],
                    verdict: Some(Verdict::Drop),
                },
            ],
        });
    }
    if let Some(link) = &ifs.dns_link {
        let mut rules = vec![rule(
            vec![Expr::Eq(Field::EtherType, Value::U16(ETH_ARP))],
            Verdict::Accept,
        )];
        // always open to the resolver: it answers what the phase allows
        // (and refuses names when the phase resolves none), so a pod
        // without DNS learns so at once, and its attempts are audited by name
        {
            for proto in [UDP, TCP] {
                rules.push(rule(
                    vec![
                        Expr::Eq(Field::EtherType, Value::U16(ETH_IP)),
                        Expr::Eq(Field::Daddr4, Value::Addr(IpAddr::V4(link.resolver))),
                        Expr::Eq(Field::L4Proto, Value::U8(proto)),
                        Expr::Eq(Field::Dport, Value::U16(53)),
                    ],
                    Verdict::Accept,
                ));
            }
        }
        rules.push(Rule {
            exprs: vec![],
            verdict: Some(Verdict::Goto(DENY_CHAIN.into())),
        });
        chains.push(Chain {
            name: DNS_CHAIN.into(),
            device: Some(link.device.clone()),
            rules,
        });
    }
    chains.push(family_chain(p, true, &v4));
    chains.push(family_chain(p, false, &v6));
    chains.push(Chain {
        name: DENY_CHAIN.into(),
        device: None,
        rules: vec![
            Rule {
                exprs: vec![
                    Expr::Limit {
                        per_second: LOG_RATE,
                        burst: LOG_BURST,
                    },
                    Expr::Log {
                        group: LOG_GROUP,
                        snaplen: SNAPLEN,
                    },
                ],
                verdict: None,
            },
            Rule {
                exprs: vec![],
                verdict: Some(Verdict::Drop),
            },
        ],
    });
    let mut sets = v4;
    sets.extend(v6);
    sets.extend(nd_sets());
    Ruleset {
        table: TABLE.into(),
        sets,
        chains,
    }
}

/// The link-local and link multicast prefixes and the ICMPv6 types of
/// neighbour discovery and MLD.
fn nd_sets() -> [SetDef; 2] {
    let mut nd = SetDef::new("nd6", &[Field::Daddr6]);
    nd.interval = true;
    nd.elements = ["fe80::/10", "ff02::/16"]
        .iter()
        .map(|s| {
            let c = Cidr::parse(s).expect("builtin prefix");
            Elem::Range(vec![Value::Addr(c.first())], vec![Value::Addr(c.last())])
        })
        .collect();
    let mut nd_types = SetDef::new("ndtypes", &[Field::Icmp6Type]);
    // MLD query/report/done, router/neighbour solicitation and advertisement, MLDv2 reports
    nd_types.elements = [130u8, 131, 132, 133, 134, 135, 136, 143]
        .iter()
        .map(|t| Elem::Key(vec![Value::U8(*t)]))
        .collect();
    [nd, nd_types]
}

/// A resolved address admitted for `ttl` seconds: the set element to add.
pub fn dns_element(
    addr: IpAddr,
    port: Option<(u8, u16)>,
) -> (&'static str, Vec<Field>, Vec<Value>) {
    let (n, f) = if addr.is_ipv4() {
        (&V4_SETS, Field::Daddr4)
    } else {
        (&V6_SETS, Field::Daddr6)
    };
    match port {
        None => (n.dns, vec![f], vec![Value::Addr(addr)]),
        Some((proto, port)) => (
            n.dns_port,
            vec![f, Field::L4Proto, Field::Dport],
            vec![Value::Addr(addr), Value::U8(proto), Value::U16(port)],
        ),
    }
}
