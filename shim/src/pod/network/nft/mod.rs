//! The pod's ruleset written to nf_tables over netlink
//! (`netlink-packet-netfilter` messages on a `netlink-sys` socket opened in
//! the pod's namespace). A ruleset is applied in one transaction that
//! replaces agentbox's table whole, so a phase switch has no window in
//! between and a failure leaves the previous rules in place.
//!
//! `ruleset` builds that transaction from the `Ruleset`, with the rules'
//! expressions from `expr` and the sets and their elements from `set`; this
//! module holds the message plumbing and the socket.

mod expr;
mod ruleset;
mod set;

use agentbox_netpolicy::ruleset::Ruleset;
use netlink_packet_core::{DefaultNla, NetlinkMessage, NLM_F_CREATE, NLM_F_DUMP};
use netlink_packet_netfilter::nftables::{NfTablesMessage, TableAttribute, TableMessage};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::constants::NETLINK_NETFILTER;

use super::nl::{Nl, NlError};

pub use ruleset::ruleset_messages;
pub(super) use set::{elements_msg, key_data};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NF_DROP: u32 = 0;

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
