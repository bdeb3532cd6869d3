//! A rule's expressions: loads of packet fields into registers, compares,
//! set lookups, limits, logs and dynamic set updates, then its verdict.

use agentbox_netpolicy::ruleset::{Expr, Field, Rule, Ruleset, Verdict as RVerdict};
use netlink_packet_core::DefaultNla;
use netlink_packet_netfilter::nftables::{
    Cmp, DataAttribute, ExpressionAttribute, Expressions, Immediate, ListAttribute, Lookup, Meta,
    MetaKey, Operator, Payload, Register, Verdict, VerdictAttribute,
};

use super::{str_nla, u32_nla, u64_nla, NF_DROP};

const NF_ACCEPT: u32 = 1;
const NFT_JUMP: u32 = -3i32 as u32;
const NFT_GOTO: u32 = -4i32 as u32;
const NFT_REG32_00: u32 = 8;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFT_DYNSET_OP_UPDATE: u32 = 1;

fn reg32(i: usize) -> Register {
    use Register::*;
    [
        Reg32_00, Reg32_01, Reg32_02, Reg32_03, Reg32_04, Reg32_05, Reg32_06, Reg32_07, Reg32_08,
        Reg32_09, Reg32_10, Reg32_11, Reg32_12, Reg32_13, Reg32_14, Reg32_15,
    ][i]
}

/// Load `f` into register `r`.
fn load(f: Field, r: Register) -> ListAttribute<ExpressionAttribute> {
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

type ExprList = Vec<ListAttribute<ExpressionAttribute>>;

/// Load a concatenated key into consecutive 32-bit registers from REG32_00.
fn load_key(key: &[Field], out: &mut ExprList) {
    let mut at = 0;
    for f in key {
        out.push(load(*f, reg32(at / 4)));
        at += f.padded();
    }
}

fn other(name: &str, attrs: Vec<DefaultNla>) -> ListAttribute<ExpressionAttribute> {
    Expressions::Other {
        expression_type: name.into(),
        attributes: attrs,
    }
    .into()
}

/// The transaction id of a set of `rs` (a name it does not have has none).
pub(super) fn set_id(rs: &Ruleset, name: &str) -> Option<u32> {
    rs.sets
        .iter()
        .position(|s| s.name == name)
        .map(|i| i as u32 + 1)
}

pub(super) fn exprs(rs: &Ruleset, r: &Rule) -> ExprList {
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
