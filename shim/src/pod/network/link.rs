//! Interfaces and addresses over rtnetlink (`netlink-packet-route`): the
//! pod's interfaces, the link to agentbox's resolver, the node's addresses.

use std::net::IpAddr;

use netlink_packet_core::{NetlinkMessage, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::constants::NETLINK_ROUTE;

use super::nl::{Nl, NlError};

/// One interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<[u8; 6]>,
    /// The peer's index (veth), in the namespace the peer lives in.
    pub peer: Option<u32>,
    pub loopback: bool,
    pub veth: bool,
}

type Msg = NetlinkMessage<RouteNetlinkMessage>;

pub struct Rtnl {
    nl: Nl,
}

fn msg(m: RouteNetlinkMessage, flags: u16) -> Msg {
    let mut n = NetlinkMessage::from(m);
    n.header.flags |= flags;
    n
}

impl Rtnl {
    /// In the calling thread's network namespace.
    pub fn open() -> std::io::Result<Rtnl> {
        Ok(Rtnl {
            nl: Nl::new(NETLINK_ROUTE)?,
        })
    }

    pub fn links(&mut self) -> Result<Vec<Link>, NlError> {
        let m = msg(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        );
        let answers = self
            .nl
            .request(vec![(m, false)], |_| "list interfaces".into())?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a.payload {
                netlink_packet_core::NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewLink(l),
                ) => Some(l),
                _ => None,
            })
            .map(|l| {
                let mut link = Link {
                    index: l.header.index,
                    name: String::new(),
                    mac: None,
                    peer: None,
                    loopback: l.header.flags.contains(LinkFlags::Loopback),
                    veth: false,
                };
                for a in l.attributes {
                    match a {
                        LinkAttribute::IfName(n) => link.name = n,
                        LinkAttribute::Address(b) if b.len() == 6 => {
                            let mut m = [0u8; 6];
                            m.copy_from_slice(&b);
                            link.mac = Some(m);
                        }
                        LinkAttribute::Link(i) => link.peer = Some(i),
                        LinkAttribute::LinkInfo(infos) => {
                            link.veth = infos
                                .iter()
                                .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)));
                        }
                        _ => {}
                    }
                }
                link
            })
            .collect())
    }

    pub fn link(&mut self, name: &str) -> Result<Option<Link>, NlError> {
        Ok(self.links()?.into_iter().find(|l| l.name == name))
    }

    /// A veth pair `a` ↔ `b`, both down.
    pub fn add_veth(&mut self, a: &str, b: &str) -> Result<(), NlError> {
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(b.into()));
        let mut l = LinkMessage::default();
        l.attributes.push(LinkAttribute::IfName(a.into()));
        l.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let m = msg(RouteNetlinkMessage::NewLink(l), NLM_F_CREATE | NLM_F_EXCL);
        self.nl
            .request(vec![(m, true)], |_| {
                format!("create interfaces {a} and {b}")
            })
            .map(|_| ())
    }

    pub fn set_up(&mut self, index: u32, up: bool) -> Result<(), NlError> {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.header.change_mask = LinkFlags::Up;
        if up {
            l.header.flags = LinkFlags::Up;
        }
        let m = msg(RouteNetlinkMessage::SetLink(l), 0);
        self.nl
            .request(vec![(m, true)], |_| {
                format!("set interface {index} up={up}")
            })
            .map(|_| ())
    }

    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), NlError> {
        let mut a = AddressMessage::default();
        a.header.family = if addr.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        a.header.prefix_len = prefix;
        a.header.index = index;
        a.attributes.push(AddressAttribute::Local(addr));
        a.attributes.push(AddressAttribute::Address(addr));
        let m = msg(
            RouteNetlinkMessage::NewAddress(a),
            NLM_F_CREATE | NLM_F_EXCL,
        );
        self.nl
            .request(vec![(m, true)], |_| format!("add address {addr}/{prefix}"))
            .map(|_| ())
    }

    pub fn del_link(&mut self, index: u32) -> Result<(), NlError> {
        let mut l = LinkMessage::default();
        l.header.index = index;
        let m = msg(RouteNetlinkMessage::DelLink(l), 0);
        self.nl
            .request(vec![(m, true)], |_| format!("delete interface {index}"))
            .map(|_| ())
    }

    /// Every address of every interface.
    pub fn addresses(&mut self) -> Result<Vec<IpAddr>, NlError> {
        let m = msg(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        );
        let answers = self
            .nl
            .request(vec![(m, false)], |_| "list addresses".into())?;
        let mut out = Vec::new();
        for a in answers {
            if let netlink_packet_core::NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewAddress(m),
            ) = a.payload
            {
                for attr in m.attributes {
                    if let AddressAttribute::Local(ip) | AddressAttribute::Address(ip) = attr {
                        if !out.contains(&ip) {
                            out.push(ip);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}
