//! The transaction that replaces agentbox's table with a `Ruleset`.

use agentbox_netpolicy::ruleset::Ruleset;
use netlink_packet_core::NLM_F_APPEND;
use netlink_packet_netfilter::nftables::{
    ChainAttribute, ChainMessage, DevHookNumber, Hook, HookNumber, NfTablesMessage, RuleAttribute,
    RuleMessage, TableAttribute, TableFlags, TableMessage,
};

use super::expr::exprs;
use super::set::{element_attrs, elements_msg, new_set};
use super::{nft, Msg, NF_DROP};

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
