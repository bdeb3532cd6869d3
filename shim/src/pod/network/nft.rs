//! The pod's ruleset written to nf_tables over netlink
//! (`netlink-packet-netfilter` messages on a `netlink-sys` socket opened in
//! the pod's namespace). A ruleset is applied in one transaction that
//! replaces agentbox's table whole, so a phase switch has no window in
//! between and a failure leaves the previous rules in place.

use std::net::IpAddr;

use agentbox_netpolicy::ruleset::{
    encode_key, Elem, Expr, Field, Ruleset, SetDef, Value, Verdict as RVerdict,
};
use netlink_packet_core::{DefaultNla, NetlinkMessage, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP};
use netlink_packet_netfilter::nftables::ChainMessage;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, Cmp, DataAttribute, DevHookNumber, Expressions, Hook, HookNumber, Immediate,
    ListAttribute, Lookup, Meta, MetaKey, NfTablesMessage, Operator, Payload, Register,
    RuleAttribute, RuleMessage, SetAttribute, SetDescription, SetElementAttribute, SetElementFlags,
    SetElementList, SetElementMessage, SetFlags, SetMessage, TableAttribute, TableFlags,
    TableMessage, Verdict, VerdictAttribute,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::constants::NETLINK_NETFILTER;

use super::nl::{Nl, NlError};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;
const NFT_JUMP: u32 = -3i32 as u32;
const NFT_GOTO: u32 = -4i32 as u32;
const NFT_REG32_00: u32 = 8;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_DYNSET_OP_UPDATE: u32 = 1;

pub(super) type Msg = NetlinkMessage<NetfilterMessage>;

fn nft(inner: NfTablesMessage, create: bool) -> Msg {
    let mut m = NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::NetDev, 0, 0),
        inner,
    ));
    if create {
        m.header.flags |= NLM_F_CREATE;
    }
    m
}

fn control(c: ControlMessage) -> Msg {
    NetlinkMessage::from(NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
        c,
    ))
}

fn u32_nla(kind: u16, v: u32) -> DefaultNla {
    DefaultNla::new(kind, v.to_be_bytes().to_vec())
}
fn u64_nla(kind: u16, v: u64) -> DefaultNla {
    DefaultNla::new(kind, v.to_be_bytes().to_vec())
}
fn str_nla(kind: u16, s: &str) -> DefaultNla {
    let mut b = s.as_bytes().to_vec();
    b.push(0);
    DefaultNla::new(kind, b)
}

fn reg32(i: usize) -> Register {
    use Register::*;
    [
        Reg32_00, Reg32_01, Reg32_02, Reg32_03, Reg32_04, Reg32_05, Reg32_06, Reg32_07, Reg32_08,
        Reg32_09, Reg32_10, Reg32_11, Reg32_12, Reg32_13, Reg32_14, Reg32_15,
    ][i]
}

/// Load `f` into register `r`.
fn load(
    f: Field,
    r: Register,
) -> ListAttribute<netlink_packet_netfilter::nftables::ExpressionAttribute> {
    let payload = |base, offset, len| {
        Expressions::Payload(vec![
            Payload::DestinationRegister(r),
            Payload::Base(base),
            Payload::Offset(offset),
            Payload::Len(len),
        ])
        .into()
    };
    match f {
        Field::EtherType => Expressions::Meta(vec![
            Meta::DestinationRegister(r),
            Meta::Key(MetaKey::EtherTypeProtocol),
        ])
        .into(),
        Field::L4Proto => Expressions::Meta(vec![
            Meta::DestinationRegister(r),
            Meta::Key(MetaKey::L4Proto),
        ])
        .into(),
        Field::Daddr4 => payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4),
        Field::Daddr6 => payload(NFT_PAYLOAD_NETWORK_HEADER, 24, 16),
        Field::Sport => payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 2),
        Field::Dport => payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2),
        Field::Icmp6Type => payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1),
    }
}

type ExprList = Vec<ListAttribute<netlink_packet_netfilter::nftables::ExpressionAttribute>>;

/// Load a concatenated key into consecutive 32-bit registers from REG32_00.
fn load_key(key: &[Field], out: &mut ExprList) {
    let mut at = 0;
    for f in key {
        out.push(load(*f, reg32(at / 4)));
        at += f.padded();
    }
}

fn other(
    name: &str,
    attrs: Vec<DefaultNla>,
) -> ListAttribute<netlink_packet_netfilter::nftables::ExpressionAttribute> {
    Expressions::Other {
        expression_type: name.into(),
        attributes: attrs,
    }
    .into()
}

/// The transaction id of a set of `rs` (a name it does not have has none).
fn set_id(rs: &Ruleset, name: &str) -> Option<u32> {
    rs.sets
        .iter()
        .position(|s| s.name == name)
        .map(|i| i as u32 + 1)
}

fn exprs(rs: &Ruleset, r: &agentbox_netpolicy::ruleset::Rule) -> ExprList {
    let mut out = ExprList::new();
    for e in &r.exprs {
        match e {
            Expr::Eq(f, v) | Expr::Ne(f, v) => {
                out.push(load(*f, Register::Reg1));
                let op = if matches!(e, Expr::Eq(..)) {
                    Operator::Equal
                } else {
                    Operator::NotEqual
                };
                out.push(
                    Expressions::Cmp(vec![
                        Cmp::SourceRegister(Register::Reg1),
                        Cmp::Op(op),
                        Cmp::Data(DataAttribute::Value(v.bytes())),
                    ])
                    .into(),
                );
            }
            Expr::Lookup { set, key } => {
                load_key(key, &mut out);
                let mut l = vec![Lookup::Set(set.clone()), Lookup::SourceRegister(reg32(0))];
                if let Some(id) = set_id(rs, set) {
                    l.push(Lookup::SetId(id));
                }
                out.push(Expressions::Lookup(l).into());
            }
            Expr::Limit { per_second, burst } => out.push(other(
                "limit",
                vec![
                    u64_nla(1, *per_second), // NFTA_LIMIT_RATE
                    u64_nla(2, 1),           // NFTA_LIMIT_UNIT: per second
                    u32_nla(3, *burst),      // NFTA_LIMIT_BURST
                    u32_nla(4, 0),           // NFTA_LIMIT_TYPE: packets
                    u32_nla(5, 0),           // NFTA_LIMIT_FLAGS
                ],
            )),
            Expr::Log { group, snaplen } => out.push(other(
                "log",
                vec![
                    DefaultNla::new(1, group.to_be_bytes().to_vec()), // NFTA_LOG_GROUP
                    str_nla(2, "agentbox"),                           // NFTA_LOG_PREFIX
                    u32_nla(3, *snaplen),                             // NFTA_LOG_SNAPLEN
                ],
            )),
            Expr::Update {
                set,
                key,
                timeout_ms,
            } => {
                load_key(key, &mut out);
                let mut a = vec![
                    str_nla(1, set),                  // NFTA_DYNSET_SET_NAME
                    u32_nla(3, NFT_DYNSET_OP_UPDATE), // NFTA_DYNSET_OP
                    u32_nla(4, NFT_REG32_00),         // NFTA_DYNSET_SREG_KEY
                    u64_nla(6, *timeout_ms),          // NFTA_DYNSET_TIMEOUT
                ];
                if let Some(id) = set_id(rs, set) {
                    a.push(u32_nla(2, id)); // NFTA_DYNSET_SET_ID
                }
                out.push(other("dynset", a));
            }
        }
    }
    if let Some(v) = &r.verdict {
        let (code, chain) = match v {
            RVerdict::Accept => (NF_ACCEPT, None),
            RVerdict::Drop => (NF_DROP, None),
            RVerdict::Jump(c) => (NFT_JUMP, Some(c.clone())),
            RVerdict::Goto(c) => (NFT_GOTO, Some(c.clone())),
        };
        let mut va = vec![VerdictAttribute::Code(Verdict::Other(code))];
        if let Some(c) = chain {
            va.push(VerdictAttribute::Chain(c));
        }
        out.push(
            Expressions::Immediate(vec![
                Immediate::DestinationRegister(Register::Verdict),
                Immediate::Data(DataAttribute::Verdict(va)),
            ])
            .into(),
        );
    }
    out
}

fn concat_desc(s: &SetDef) -> Vec<SetDescription> {
    if s.key.len() < 2 {
        return vec![];
    }
    // NFTA_SET_DESC_CONCAT: a list of NFTA_LIST_ELEM { NFTA_SET_FIELD_LEN }
    let fields = s
        .key
        .iter()
        .map(|f| {
            let inner = u32_nla(1, f.size() as u32);
            let mut b = vec![0u8; netlink_packet_core::Emitable::buffer_len(&inner)];
            netlink_packet_core::Emitable::emit(&inner, &mut b);
            DefaultNla::new(1 | netlink_packet_core::NLA_F_NESTED, b)
        })
        .collect();
    vec![SetDescription::Concat(fields)]
}

fn key_type(key: &[Field]) -> u32 {
    key.iter().fold(0, |acc, f| (acc << 6) | f.type_id())
}

fn new_set(rs: &Ruleset, s: &SetDef) -> Msg {
    let mut flags = SetFlags::empty();
    if s.interval {
        flags |= SetFlags::Interval;
    }
    // the kernel wants the flag with every field description of a concatenation
    if s.key.len() > 1 {
        flags |= SetFlags::Concat;
    }
    if s.timeout {
        flags |= SetFlags::Timeout;
    }
    if s.dynamic {
        flags |= SetFlags::Eval;
    }
    let mut attrs = vec![
        SetAttribute::Table(rs.table.clone()),
        SetAttribute::Name(s.name.clone()),
        SetAttribute::Flags(flags),
        SetAttribute::KeyType(key_type(&s.key)),
        SetAttribute::KeyLen(s.key_len() as u32),
        SetAttribute::Id(set_id(rs, &s.name).unwrap_or(0)),
    ];
    let desc = concat_desc(s);
    if !desc.is_empty() {
        attrs.push(SetAttribute::Description(desc));
    }
    nft(
        NfTablesMessage::NewSet(SetMessage { attributes: attrs }),
        true,
    )
}

/// One more than `v` in the last field (for the end of an rbtree interval);
/// None if it is the family's last address.
fn after(v: &[Value]) -> Option<Vec<Value>> {
    let mut out = v.to_vec();
    match out.last_mut()? {
        Value::Addr(IpAddr::V4(a)) => {
            let n = u32::from(*a).checked_add(1)?;
            *out.last_mut()? = Value::Addr(IpAddr::V4(n.into()));
        }
        Value::Addr(IpAddr::V6(a)) => {
            let n = u128::from(*a).checked_add(1)?;
            *out.last_mut()? = Value::Addr(IpAddr::V6(n.into()));
        }
        _ => return None,
    }
    Some(out)
}

pub(super) fn key_data(fields: &[Field], values: &[Value]) -> SetElementAttribute {
    SetElementAttribute::Key(DataAttribute::Value(encode_key(fields, values)))
}

/// Element attributes for a set's static elements.
fn element_attrs(s: &SetDef) -> Vec<ListAttribute<SetElementAttribute>> {
    let mut out = Vec::new();
    for e in &s.elements {
        match e {
            Elem::Key(k) => out.push(ListAttribute::Element(vec![key_data(&s.key, k)])),
            // concatenations: the kernel's pipapo takes first and last key
            Elem::Range(a, b) if s.key.len() > 1 => {
                let end = DefaultNla::new(1, encode_key(&s.key, b)); // NFTA_DATA_VALUE
                out.push(ListAttribute::Element(vec![
                    key_data(&s.key, a),
                    SetElementAttribute::KeyEnd(vec![end]),
                ]));
            }
            // single field: the rbtree takes the first key and, flagged, the one after the last
            Elem::Range(a, b) => {
                out.push(ListAttribute::Element(vec![key_data(&s.key, a)]));
                if let Some(next) = after(b) {
                    out.push(ListAttribute::Element(vec![
                        key_data(&s.key, &next),
                        SetElementAttribute::Flags(SetElementFlags::IntervalEnd),
                    ]));
                }
            }
        }
    }
    out
}

pub(super) fn elements_msg(
    table: &str,
    set: &str,
    elems: Vec<ListAttribute<SetElementAttribute>>,
    delete: bool,
) -> Msg {
    let attrs = vec![
        SetElementList::Table(table.into()),
        SetElementList::Set(set.into()),
        SetElementList::Elements(elems),
    ];
    let m = SetElementMessage { attributes: attrs };
    if delete {
        nft(NfTablesMessage::DeleteSetElement(m), false)
    } else {
        nft(NfTablesMessage::NewSetElement(m), true)
    }
}

/// The messages that replace agentbox's table with `rs` (the table is added,
/// deleted and added again, so it works whether or not it existed).
pub fn ruleset_messages(rs: &Ruleset) -> Vec<(Msg, String)> {
    let table = || TableMessage {
        attributes: vec![
            TableAttribute::Name(rs.table.clone()),
            TableAttribute::Flags(TableFlags::empty()),
        ],
    };
    let mut out = vec![
        (
            nft(NfTablesMessage::NewTable(table()), true),
            format!("add table {}", rs.table),
        ),
        (
            nft(
                NfTablesMessage::DeleteTable(TableMessage {
                    attributes: vec![TableAttribute::Name(rs.table.clone())],
                }),
                false,
            ),
            format!("replace table {}", rs.table),
        ),
        (
            nft(NfTablesMessage::NewTable(table()), true),
            format!("add table {}", rs.table),
        ),
    ];
    for s in &rs.sets {
        out.push((new_set(rs, s), format!("add set {}", s.name)));
        let elems = element_attrs(s);
        if !elems.is_empty() {
            out.push((
                elements_msg(&rs.table, &s.name, elems, false),
                format!("add elements to set {}", s.name),
            ));
        }
    }
    // regular chains first: base chains jump to them
    for c in rs.chains.iter().filter(|c| c.device.is_none()) {
        let attrs = vec![
            ChainAttribute::Table(rs.table.clone()),
            ChainAttribute::Name(c.name.clone()),
        ];
        out.push((
            nft(
                NfTablesMessage::NewChain(ChainMessage { attributes: attrs }),
                true,
            ),
            format!("add chain {}", c.name),
        ));
    }
    for c in rs.chains.iter().filter(|c| c.device.is_some()) {
        let dev = c.device.clone().unwrap_or_default();
        let attrs = vec![
            ChainAttribute::Table(rs.table.clone()),
            ChainAttribute::Name(c.name.clone()),
            ChainAttribute::Hook(vec![
                Hook::Number(HookNumber::Dev(DevHookNumber::Egress)),
                Hook::Priority(0),
                Hook::NetDeviceName(dev.clone()),
            ]),
            ChainAttribute::Policy(NF_DROP),
            ChainAttribute::Type("filter".into()),
        ];
        out.push((
            nft(
                NfTablesMessage::NewChain(ChainMessage { attributes: attrs }),
                true,
            ),
            format!("add chain {} (egress hook on {dev})", c.name),
        ));
    }
    for c in &rs.chains {
        for (i, r) in c.rules.iter().enumerate() {
            let attrs = vec![
                RuleAttribute::Table(rs.table.clone()),
                RuleAttribute::Chain(c.name.clone()),
                RuleAttribute::Expressions(exprs(rs, r)),
            ];
            let mut m = nft(
                NfTablesMessage::NewRule(RuleMessage { attributes: attrs }),
                true,
            );
            // in order: without APPEND each rule would go first
            m.header.flags |= NLM_F_APPEND;
            out.push((m, format!("add rule {} #{i}", c.name)));
        }
    }
    out
}

/// A socket to nf_tables in one network namespace.
pub struct Nft {
    nl: Nl,
    /// What this socket admitted into the timeout sets (see `admit`).
    pub(super) ledger: super::admit::Ledger,
}

impl Nft {
    /// Open in the calling thread's network namespace.
    pub fn open() -> std::io::Result<Nft> {
        Ok(Nft {
            nl: Nl::new(NETLINK_NETFILTER)?,
            ledger: Default::default(),
        })
    }

    pub(super) fn batch(&mut self, msgs: Vec<(Msg, String)>) -> Result<(), NlError> {
        let mut all = vec![(control(ControlMessage::BatchBegin), false)];
        let mut names = vec!["begin".to_string()];
        for (m, name) in msgs {
            all.push((m, true));
            names.push(name);
        }
        all.push((control(ControlMessage::BatchEnd), false));
        names.push("end".into());
        self.nl
            .request(all, |i| {
                names.get(i).cloned().unwrap_or_else(|| "nftables".into())
            })
            .map(|_| ())
    }

    /// Replace agentbox's table with `rs`, atomically.
    pub fn apply(&mut self, rs: &Ruleset) -> Result<(), NlError> {
        // the sets are new (and if it fails, what is there is unknown)
        self.ledger.clear();
        self.batch(ruleset_messages(rs))
    }

    /// Delete agentbox's table `table` (an error if there is none: ENOENT).
    pub fn delete_table(&mut self, table: &str) -> Result<(), NlError> {
        self.ledger.clear();
        self.batch(vec![(
            nft(
                NfTablesMessage::DeleteTable(TableMessage {
                    attributes: vec![TableAttribute::Name(table.into())],
                }),
                false,
            ),
            format!("delete table {table}"),
        )])
    }

    /// Names of the netdev tables in this namespace.
    pub fn tables(&mut self) -> Result<Vec<String>, NlError> {
        let mut m = nft(
            NfTablesMessage::GetTable(TableMessage { attributes: vec![] }),
            false,
        );
        m.header.flags |= NLM_F_DUMP;
        let answers = self
            .nl
            .request(vec![(m, false)], |_| "list tables".into())?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a.payload {
                netlink_packet_core::NetlinkPayload::InnerMessage(NetfilterMessage {
                    inner:
                        netlink_packet_netfilter::NetfilterMessageInner::NfTables(
                            NfTablesMessage::NewTable(t),
                        ),
                    ..
                }) => t.attributes.into_iter().find_map(|a| match a {
                    TableAttribute::Name(n) => Some(n),
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }
}
