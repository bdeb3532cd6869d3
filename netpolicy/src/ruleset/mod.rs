//! The nftables ruleset of one pod, as data: a `netdev` table whose base
//! chains hook `egress` on the pod's interfaces (where gVisor's netstack
//! packets are seen) and jump to the phase's rules. The shim turns it into
//! netlink messages; [`crate::eval`] runs it on test packets; `Display`
//! prints it in `nft` syntax.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::addr::{merge_ranges, to_u128, Cidr};
use crate::config::Mode;
use crate::policy::{Compiled, ICMPV6, TCP, UDP};

/// The table agentbox owns in each pod's network namespace.
pub const TABLE: &str = "agentbox";
/// The NFLOG group denied packets are logged to (per network namespace).
pub const LOG_GROUP: u16 = 4162;
/// Bytes of each denied packet logged (network and transport headers).
pub const SNAPLEN: u32 = 128;
/// Denied packets logged per second at most (the rest are dropped unlogged).
pub const LOG_RATE: u64 = 200;
pub const LOG_BURST: u32 = 400;
/// How long a flow to a resolved address stays admitted after its last packet.
pub const FLOW_IDLE_MS: u64 = 120_000;
pub const POD_CHAIN: &str = "pod";
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

/// Names of the sets of one family: allow, allow with port, block, resolved,
/// resolved with port, live flows.
pub struct FamilySets {
    pub allow: &'static str,
    pub allow_port: &'static str,
    pub block: &'static str,
    pub dns: &'static str,
    pub dns_port: &'static str,
    pub live: &'static str,
}

pub const V4_SETS: FamilySets = FamilySets {
    allow: "allow4",
    allow_port: "allow4p",
    block: "block4",
    dns: "dns4",
    dns_port: "dns4p",
    live: "live4",
};
pub const V6_SETS: FamilySets = FamilySets {
    allow: "allow6",
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

fn family_sets(p: &Compiled, v4: bool) -> Vec<SetDef> {
    let (names, addr) = if v4 {
        (&V4_SETS, Field::Daddr4)
    } else {
        (&V6_SETS, Field::Daddr6)
    };
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
                allow_port.elements.push(Elem::Range(
                    vec![Value::Addr(a), Value::U8(proto), Value::U16(port)],
                    vec![Value::Addr(b), Value::U8(proto), Value::U16(port)],
                ));
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
    vec![allow, allow_port, block, dns, dns_port, live]
}

fn lookup(set: &str, key: &[Field]) -> Expr {
    Expr::Lookup {
        set: set.into(),
        key: key.to_vec(),
    }
}

fn family_rules(p: &Compiled, v4: bool, out: &mut Vec<Rule>, stage: u8) {
    let (n, addr, eth) = if v4 {
        (&V4_SETS, Field::Daddr4, ETH_IP)
    } else {
        (&V6_SETS, Field::Daddr6, ETH_IP6)
    };
    let proto = Expr::Eq(Field::EtherType, Value::U16(eth));
    let port_key = [addr, Field::L4Proto, Field::Dport];
    let flow_key = [addr, Field::L4Proto, Field::Dport, Field::Sport];
    let update = Expr::Update {
        set: n.live.into(),
        key: flow_key.to_vec(),
        timeout_ms: FLOW_IDLE_MS,
    };
    match stage {
        // entries lift blocks: first
        0 => {
            out.push(rule(
                vec![proto.clone(), lookup(n.allow, &[addr])],
                Verdict::Accept,
            ));
            out.push(rule(
                vec![proto, lookup(n.allow_port, &port_key)],
                Verdict::Accept,
            ));
        }
        1 => out.push(rule(
            vec![proto, lookup(n.block, &[addr])],
            Verdict::Goto(DENY_CHAIN.into()),
        )),
        // what the resolver admitted, and flows begun while it was
        _ if p.mode == Mode::Allowlist && p.dns => {
            out.push(rule(
                vec![proto.clone(), lookup(n.live, &flow_key), update.clone()],
                Verdict::Accept,
            ));
            out.push(rule(
                vec![proto.clone(), lookup(n.dns, &[addr]), update.clone()],
                Verdict::Accept,
            ));
            out.push(rule(
                vec![proto, lookup(n.dns_port, &port_key), update],
                Verdict::Accept,
            ));
        }
        _ => {}
    }
}

/// The ruleset for one phase.
pub fn build(p: &Compiled, ifs: &Interfaces) -> Ruleset {
    let mut sets = family_sets(p, true);
    sets.extend(family_sets(p, false));
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
    sets.push(nd);
    sets.push(nd_types);

    let mut pod = vec![
        rule(
            vec![Expr::Eq(Field::EtherType, Value::U16(ETH_ARP))],
            Verdict::Accept,
        ),
        rule(
            vec![
                Expr::Eq(Field::EtherType, Value::U16(ETH_IP6)),
                Expr::Eq(Field::L4Proto, Value::U8(ICMPV6)),
                lookup("ndtypes", &[Field::Icmp6Type]),
                lookup("nd6", &[Field::Daddr6]),
            ],
            Verdict::Accept,
        ),
        rule(
            vec![
                Expr::Ne(Field::EtherType, Value::U16(ETH_IP)),
                Expr::Ne(Field::EtherType, Value::U16(ETH_IP6)),
            ],
            Verdict::Drop,
        ),
    ];
    for stage in 0..3 {
        family_rules(p, true, &mut pod, stage);
        family_rules(p, false, &mut pod, stage);
    }
    pod.push(match p.mode {
        Mode::Open => Rule {
            exprs: vec![],
            verdict: Some(Verdict::Accept),
        },
        _ => Rule {
            exprs: vec![],
            verdict: Some(Verdict::Goto(DENY_CHAIN.into())),
        },
    });

    let mut chains = Vec::new();
    for (i, dev) in ifs.pod.iter().enumerate() {
        chains.push(Chain {
            name: format!("egress{i}"),
            device: Some(dev.clone()),
            rules: vec![Rule {
                exprs: vec![],
                verdict: Some(Verdict::Jump(POD_CHAIN.into())),
            }],
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
    chains.push(Chain {
        name: POD_CHAIN.into(),
        device: None,
        rules: pod,
    });
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
    Ruleset {
        table: TABLE.into(),
        sets,
        chains,
    }
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

// ---- nft syntax ----

fn join<T: fmt::Display>(v: &[T], sep: &str) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

fn key_str(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.nft())
        .collect::<Vec<_>>()
        .join(" . ")
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::Key(k) => f.write_str(&join(k, " . ")),
            Elem::Range(a, b) => {
                let parts: Vec<String> = a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| {
                        if x == y {
                            x.to_string()
                        } else if let (Value::Addr(x), Value::Addr(y)) = (x, y) {
                            range_str(*x, *y)
                        } else {
                            format!("{x}-{y}")
                        }
                    })
                    .collect();
                f.write_str(&parts.join(" . "))
            }
        }
    }
}

/// `a-b`, or the prefix it is.
fn range_str(a: IpAddr, b: IpAddr) -> String {
    let bits = if a.is_ipv4() { 32 } else { 128 };
    for len in 0..=bits {
        if let Some(c) = Cidr::new(a, len) {
            if c.first() == a && to_u128(c.last()) == to_u128(b) {
                return c.to_string();
            }
        }
    }
    format!("{a}-{b}")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Eq(field, v) => write!(f, "{} {v}", field.nft()),
            Expr::Ne(field, v) => write!(f, "{} != {v}", field.nft()),
            Expr::Lookup { set, key } => write!(f, "{} @{set}", key_str(key)),
            Expr::Limit { per_second, burst } => {
                write!(f, "limit rate {per_second}/second burst {burst} packets")
            }
            Expr::Log { group, snaplen } => write!(f, "log group {group} snaplen {snaplen}"),
            Expr::Update {
                set,
                key,
                timeout_ms,
            } => write!(
                f,
                "update @{set} {{ {} timeout {}s }}",
                key_str(key),
                timeout_ms / 1000
            ),
        }
    }
}

impl fmt::Display for Ruleset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "table netdev {} {{", self.table)?;
        for s in &self.sets {
            writeln!(f, "\tset {} {{", s.name)?;
            let types: Vec<&str> = s.key.iter().map(|k| k.nft_type()).collect();
            writeln!(f, "\t\ttype {}", types.join(" . "))?;
            let mut flags = Vec::new();
            if s.interval {
                flags.push("interval");
            }
            if s.timeout {
                flags.push("timeout");
            }
            if s.dynamic {
                flags.push("dynamic");
            }
            if !flags.is_empty() {
                writeln!(f, "\t\tflags {}", flags.join(","))?;
            }
            if !s.elements.is_empty() {
                writeln!(f, "\t\telements = {{ {} }}", join(&s.elements, ", "))?;
            }
            writeln!(f, "\t}}")?;
        }
        for c in &self.chains {
            writeln!(f, "\tchain {} {{", c.name)?;
            if let Some(dev) = &c.device {
                writeln!(
                    f,
                    "\t\ttype filter hook egress device \"{dev}\" priority 0; policy drop;"
                )?;
            }
            for r in &c.rules {
                let mut parts: Vec<String> = r.exprs.iter().map(|e| e.to_string()).collect();
                match &r.verdict {
                    Some(Verdict::Accept) => parts.push("accept".into()),
                    Some(Verdict::Drop) => parts.push("drop".into()),
                    Some(Verdict::Jump(c)) => parts.push(format!("jump {c}")),
                    Some(Verdict::Goto(c)) => parts.push(format!("goto {c}")),
                    None => {}
                }
                writeln!(f, "\t\t{}", parts.join(" "))?;
            }
            writeln!(f, "\t}}")?;
        }
        writeln!(f, "}}")
    }
}
