//! One phase's policy compiled for enforcement, and its reference semantics
//! ([`Compiled::decide`]): what the generated rules must do, packet by packet.
//!
//! Order of decisions:
//! 1. an allow entry (prefix, with or without port) permits its addresses,
//!    except blocked prefixes that lie strictly inside it — so an entry lifts a
//!    block only where it is at least as specific as the block (`10.20.0.0/16`
//!    opens that part of 10/8; `0.0.0.0/0` opens nothing blocked; only
//!    `169.254.169.254` itself opens the metadata endpoint);
//! 2. blocked prefixes (metadata, link-local, private, loopback, reserved,
//!    multicast, the node's own addresses, IPv6 forms carrying them) are denied;
//! 3. the mode: `open` allows, `allowlist` allows what the resolver admitted for
//!    an allowed name, `offline` denies.

use std::net::IpAddr;

use serde::Serialize;

use crate::addr::{blocklist, classify, subtract, Blocked, Cidr, Class, Embedding};
use crate::config::{Mode, PhasePolicy};
use crate::entry::{NamePattern, Target};

/// IP protocol numbers used in the rules.
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// Why a packet or a name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenyReason {
    /// A blocked class of address.
    Blocked(Class, Option<Embedding>),
    /// Not in the allow list (nor answered for an allowed name).
    NotAllowed,
    /// The phase is offline.
    Offline,
}

impl DenyReason {
    pub fn describe(&self) -> String {
        match self {
            DenyReason::Blocked(c, None) => c.as_str().to_string(),
            DenyReason::Blocked(c, Some(via)) => {
                format!("{} ({})", c.as_str(), embedding_name(*via))
            }
            DenyReason::NotAllowed => "not-allowed".into(),
            DenyReason::Offline => "offline".into(),
        }
    }
}

pub fn embedding_name(e: Embedding) -> &'static str {
    match e {
        Embedding::Mapped => "IPv4-mapped",
        Embedding::Compatible => "IPv4-compatible",
        Embedding::Nat64 => "NAT64",
        Embedding::SixToFour => "6to4",
        Embedding::Teredo => "Teredo",
    }
}

/// Which ports a name or prefix is allowed on: every one, or TCP/UDP to these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ports {
    Any,
    Only(Vec<u16>),
}

impl Ports {
    fn add(&mut self, port: Option<u16>) {
        match (self, port) {
            (Ports::Any, _) => {}
            (p, None) => *p = Ports::Any,
            (Ports::Only(v), Some(n)) => {
                if !v.contains(&n) {
                    v.push(n)
                }
            }
        }
    }
}

/// One phase, compiled.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub mode: Mode,
    pub dns: bool,
    /// Permitted prefixes (blocks strictly inside an entry already cut out),
    /// with the entry's port.
    pub permit: Vec<(Cidr, Option<u16>)>,
    pub names: Vec<(NamePattern, Option<u16>)>,
    pub blocked: Vec<Blocked>,
}

impl Compiled {
    pub fn new(p: &PhasePolicy, node: &[IpAddr]) -> Compiled {
        let blocked = blocklist(node);
        let mut permit = Vec::new();
        let mut names = Vec::new();
        for e in &p.allow {
            match &e.target {
                Target::Net(c) => {
                    let holes: Vec<Cidr> = blocked
                        .iter()
                        .map(|b| b.cidr)
                        .filter(|b| c.covers(b) && b.prefix_len() > c.prefix_len())
                        .collect();
                    for part in subtract(*c, &holes) {
                        permit.push((part, e.port));
                    }
                }
                Target::Name(n) => names.push((n.clone(), e.port)),
            }
        }
        Compiled {
            mode: p.mode,
            dns: p.dns,
            permit,
            names,
            blocked,
        }
    }

    /// What kind of address `ip` is.
    pub fn classify(&self, ip: IpAddr) -> (Class, Option<Embedding>) {
        classify(ip, &self.blocked)
    }

    /// Is a prefix entry permitting this packet?
    pub fn permitted(&self, dst: IpAddr, proto: u8, dport: Option<u16>) -> bool {
        self.permit.iter().any(|(c, port)| {
            c.contains(dst)
                && match port {
                    None => true,
                    Some(p) => (proto == TCP || proto == UDP) && dport == Some(*p),
                }
        })
    }

    /// The reference decision for a packet to `dst`. `admitted`: the resolver
    /// answered `dst` for an allowed name whose ports cover this packet.
    pub fn decide(
        &self,
        dst: IpAddr,
        proto: u8,
        dport: Option<u16>,
        admitted: bool,
    ) -> Result<(), DenyReason> {
        if self.permitted(dst, proto, dport) {
            return Ok(());
        }
        let (class, via) = self.classify(dst);
        if class != Class::Public {
            return Err(DenyReason::Blocked(class, via));
        }
        match self.mode {
            Mode::Open => Ok(()),
            Mode::Allowlist if admitted => Ok(()),
            Mode::Allowlist => Err(DenyReason::NotAllowed),
            Mode::Offline => Err(DenyReason::Offline),
        }
    }

    /// May the pod resolve `name`, and for which ports are its addresses
    /// admitted? `None`: the name is refused.
    pub fn name_ports(&self, name: &str) -> Option<Ports> {
        if !self.dns {
            return None;
        }
        if self.mode == Mode::Open {
            return Some(Ports::Any);
        }
        let mut ports: Option<Ports> = None;
        for (pat, port) in &self.names {
            if pat.matches(name) {
                let p = ports.get_or_insert(Ports::Only(Vec::new()));
                p.add(*port);
            }
        }
        ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkConfig;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn compiled(toml: &str) -> Compiled {
        let c = NetworkConfig::from_document(toml).unwrap().unwrap();
        Compiled::new(&c.agent, &[ip("192.0.2.10")])
    }

    #[test]
    fn offline_denies_everything() {
        let c = compiled("[network]\nmode = \"offline\"\n");
        for d in ["203.0.113.7", "2001:db8::7", "10.0.0.1", "169.254.169.254"] {
            assert!(c.decide(ip(d), TCP, Some(443), false).is_err(), "{d}");
        }
        assert_eq!(
            c.decide(ip("203.0.113.7"), TCP, Some(443), true),
            Err(DenyReason::Offline)
        );
        assert_eq!(c.name_ports("pypi.org"), None);
    }

    #[test]
    fn open_allows_public_only() {
        let c = compiled("[network]\nmode = \"open\"\n");
        assert!(c.decide(ip("203.0.113.7"), UDP, Some(53), false).is_ok());
        assert!(c.decide(ip("2001:db8::7"), ICMPV6, None, false).is_ok());
        for (d, class) in [
            ("169.254.169.254", Class::Metadata),
            ("fd00:ec2::254", Class::Metadata),
            ("10.1.1.1", Class::Private),
            ("192.0.2.10", Class::Node),
            ("::ffff:169.254.169.254", Class::Metadata),
            ("64:ff9b::a01:101", Class::Private),
            ("2002:a00:1::1", Class::Private),
        ] {
            match c.decide(ip(d), TCP, Some(80), false) {
                Err(DenyReason::Blocked(got, _)) => assert_eq!(got, class, "{d}"),
                other => panic!("{d}: {other:?}"),
            }
        }
        assert_eq!(c.name_ports("anything.example"), Some(Ports::Any));
    }

    #[test]
    fn allowlist_entries_and_ports() {
        let c = compiled(
            "[network]\nmode = \"allowlist\"\nallow = [\"10.20.0.0/16\", \"203.0.113.7:443\", \"[2001:db8::7]:443\", \"pypi.mirror.internal:443\", \"*.mirror.internal:80\", \"pypi.mirror.internal:8443\"]\n",
        );
        assert!(c.decide(ip("10.20.3.4"), ICMP, None, false).is_ok());
        assert!(c.decide(ip("10.21.3.4"), ICMP, None, false).is_err());
        assert!(c.decide(ip("203.0.113.7"), TCP, Some(443), false).is_ok());
        assert!(c.decide(ip("203.0.113.7"), UDP, Some(443), false).is_ok());
        assert!(c.decide(ip("203.0.113.7"), TCP, Some(80), false).is_err());
        assert!(c.decide(ip("203.0.113.7"), ICMP, None, false).is_err());
        assert!(c.decide(ip("2001:db8::7"), TCP, Some(443), false).is_ok());
        assert_eq!(
            c.decide(ip("203.0.113.8"), TCP, Some(443), false),
            Err(DenyReason::NotAllowed)
        );
        assert!(c.decide(ip("203.0.113.8"), TCP, Some(443), true).is_ok());
        // admitted public addresses never open a blocked one
        assert!(c.decide(ip("10.99.0.1"), TCP, Some(443), true).is_err());
        assert_eq!(
            c.name_ports("pypi.mirror.internal"),
            Some(Ports::Only(vec![443, 80, 8443]))
        );
        assert_eq!(
            c.name_ports("x.mirror.internal"),
            Some(Ports::Only(vec![80]))
        );
        assert_eq!(c.name_ports("mirror.internal"), None);
        assert_eq!(c.name_ports("pypi.org"), None);
    }

    #[test]
    fn only_an_entry_as_specific_as_a_block_lifts_it() {
        let c = compiled(
            "[network]\nmode = \"allowlist\"\nallow = [\"0.0.0.0/0\", \"169.254.0.0/16\", \"::/0\"]\n",
        );
        assert!(c.decide(ip("203.0.113.7"), TCP, Some(1), false).is_ok());
        assert!(c.decide(ip("2001:db8::1"), TCP, Some(1), false).is_ok());
        assert!(c.decide(ip("10.0.0.1"), TCP, Some(1), false).is_err());
        assert!(c.decide(ip("169.254.1.1"), TCP, Some(1), false).is_ok());
        assert!(c
            .decide(ip("169.254.169.254"), TCP, Some(80), false)
            .is_err());
        assert!(c
            .decide(ip("::ffff:10.0.0.1"), TCP, Some(1), false)
            .is_err());
        assert!(c.decide(ip("fd00:ec2::254"), TCP, Some(80), false).is_err());
        let m = compiled("[network]\nmode = \"allowlist\"\nallow = [\"169.254.169.254:80\"]\n");
        assert!(m
            .decide(ip("169.254.169.254"), TCP, Some(80), false)
            .is_ok());
        assert!(m
            .decide(ip("169.254.169.254"), TCP, Some(81), false)
            .is_err());
    }
}
