//! The resolver's decisions: which questions go upstream, and what of the
//! upstream's answer reaches the pod and is admitted into the rules.
//!
//! - Only allowed names are asked upstream (a name that matches no entry gets
//!   NXDOMAIN without leaving the node), with a fresh query built from the
//!   question alone: nothing else the pod put in its query travels on.
//! - In `allowlist` mode only A and AAAA are asked (other types get an empty
//!   answer), and only A, AAAA and the CNAME chain from the question come back.
//! - Answered addresses of a blocked class (private, metadata, link-local, the
//!   node's…) are removed unless an allow entry permits them (DNS rebinding).
//! - Each address that reaches the pod is admitted, for the name's ports, for
//!   its TTL clamped to `[dns_min_ttl, dns_max_ttl]`; TTLs above the maximum are
//!   lowered in the answer so the pod asks again before the admission ends.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use simple_dns::rdata::{RData, A, AAAA, OPT};
use simple_dns::{
    Name, Packet, PacketFlag, Question, ResourceRecord, CLASS, OPCODE, QCLASS, QTYPE, RCODE, TYPE,
};

use crate::addr::Class;
use crate::config::{Mode, TtlBounds};
use crate::entry::normalize_name;
use crate::policy::{Compiled, DenyReason, Ports};

/// Largest answer over UDP to a client that did not say (RFC 1035).
pub const CLASSIC_UDP: usize = 512;
/// The EDNS buffer size agentbox advertises upstream.
pub const EDNS_UDP: u16 = 1232;

/// A question the pod may have answered from upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// The pod's query id.
    pub id: u16,
    pub name: String,
    pub qtype: u16,
    pub rd: bool,
    /// Ports the answered addresses are admitted for.
    pub ports: Ports,
    /// Largest answer the pod takes over this transport.
    pub max_size: usize,
    /// Whether answers are admitted into the rules (allowlist mode).
    pub admit: bool,
}

/// What to do with a query from the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryDecision {
    Forward(Query),
    /// Answer at once; `denied` names a refused name (for the audit log).
    Reply {
        bytes: Vec<u8>,
        denied: Option<(String, DenyReason)>,
    },
    /// Not a query at all: no answer.
    Ignore,
}

/// A header-only answer carrying `id` and `rcode` (for queries too broken to echo).
fn bare(id: u16, rcode: RCODE) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    b[0..2].copy_from_slice(&id.to_be_bytes());
    b[2] = 0x80; // QR
    b[3] = 0x80 | (rcode as u8); // RA, rcode
    b
}

fn reply_to(q: &Packet, rcode: RCODE) -> Vec<u8> {
    let mut r = Packet::new_reply(q.id());
    if q.has_flags(PacketFlag::RECURSION_DESIRED) {
        r.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    r.set_flags(PacketFlag::RECURSION_AVAILABLE);
    *r.rcode_mut() = rcode;
    r.questions = q.questions.clone();
    r.build_bytes_vec()
        .unwrap_or_else(|_| bare(q.id(), RCODE::ServerFailure))
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;

/// Decide on a query from the pod (`tcp`: it came over TCP).
pub fn decide_query(policy: &Compiled, bytes: &[u8], tcp: bool) -> QueryDecision {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return QueryDecision::Ignore;
    }
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    let q = match Packet::parse(bytes) {
        Ok(q) => q,
        Err(_) => {
            return QueryDecision::Reply {
                bytes: bare(id, RCODE::FormatError),
                denied: None,
            }
        }
    };
    if q.opcode() != OPCODE::StandardQuery {
        return QueryDecision::Reply {
            bytes: reply_to(&q, RCODE::NotImplemented),
            denied: None,
        };
    }
    let [question] = q.questions.as_slice() else {
        return QueryDecision::Reply {
            bytes: reply_to(&q, RCODE::FormatError),
            denied: None,
        };
    };
    if question.qclass != QCLASS::CLASS(CLASS::IN) {
        return QueryDecision::Reply {
            bytes: reply_to(&q, RCODE::Refused),
            denied: None,
        };
    }
    let name = normalize_name(&question.qname.to_string());
    let qtype: u16 = question.qtype.into();
    let reason = match policy.mode {
        Mode::Offline => DenyReason::Offline,
        _ => DenyReason::NotAllowed,
    };
    let Some(ports) = policy.name_ports(&name) else {
        // NXDOMAIN when names are checked (so search lists go on), REFUSED
        // when the phase resolves nothing
        let rcode = if policy.dns {
            RCODE::NameError
        } else {
            RCODE::Refused
        };
        return QueryDecision::Reply {
            bytes: reply_to(&q, rcode),
            denied: Some((name, reason)),
        };
    };
    let allowlist = policy.mode == Mode::Allowlist;
    if allowlist && qtype != TYPE_A && qtype != TYPE_AAAA {
        // the name exists as far as the pod may know; nothing else about it
        return QueryDecision::Reply {
            bytes: reply_to(&q, RCODE::NoError),
            denied: None,
        };
    }
    let max_size = if tcp {
        u16::MAX as usize
    } else {
        q.opt()
            .map(|o| (o.udp_packet_size as usize).max(CLASSIC_UDP))
            .unwrap_or(CLASSIC_UDP)
    };
    QueryDecision::Forward(Query {
        id,
        name,
        qtype,
        rd: q.has_flags(PacketFlag::RECURSION_DESIRED),
        ports,
        max_size,
        admit: allowlist,
    })
}

/// The query agentbox sends upstream for `q`, with its own `id`.
pub fn upstream_query(q: &Query, id: u16) -> Result<Vec<u8>, String> {
    let mut p = Packet::new_query(id);
    p.set_flags(PacketFlag::RECURSION_DESIRED);
    let name = Name::new(&q.name).map_err(|e| format!("bad name {:?}: {e}", q.name))?;
    let qtype = QTYPE::try_from(q.qtype).map_err(|e| format!("bad type {}: {e}", q.qtype))?;
    p.questions
        .push(Question::new(name, qtype, QCLASS::CLASS(CLASS::IN), false));
    *p.opt_mut() = Some(OPT {
        opt_codes: Vec::new(),
        udp_packet_size: EDNS_UDP,
        version: 0,
    });
    p.build_bytes_vec().map_err(|e| e.to_string())
}

/// An answered address the pod may now reach.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admission {
    pub addr: IpAddr,
    /// Seconds.
    pub ttl: u32,
}

/// The answer for the pod and what it admits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub reply: Vec<u8>,
    pub admit: Vec<Admission>,
    /// Addresses removed from the answer, and why.
    pub stripped: Vec<(IpAddr, DenyReason)>,
    /// The answer did not fit the pod's transport: it was cut (TC) and
    /// nothing was admitted.
    pub truncated: bool,
}

/// SERVFAIL for `q` (upstream unreachable or nonsense).
pub fn servfail(q: &Query) -> Vec<u8> {
    let mut r = Packet::new_reply(q.id);
    r.set_flags(PacketFlag::RECURSION_AVAILABLE);
    if q.rd {
        r.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    *r.rcode_mut() = RCODE::ServerFailure;
    if let (Ok(name), Ok(qtype)) = (Name::new(&q.name), QTYPE::try_from(q.qtype)) {
        r.questions
            .push(Question::new(name, qtype, QCLASS::CLASS(CLASS::IN), false));
    }
    r.build_bytes_vec()
        .unwrap_or_else(|_| bare(q.id, RCODE::ServerFailure))
}

/// Build the pod's answer from the upstream answer to the query sent with `upstream_id`.
pub fn finish(
    policy: &Compiled,
    q: &Query,
    upstream_id: u16,
    upstream: &[u8],
    ttl: TtlBounds,
) -> Result<Finished, String> {
    let up = Packet::parse(upstream).map_err(|e| format!("unreadable upstream answer: {e}"))?;
    if up.id() != upstream_id || !up.has_flags(PacketFlag::RESPONSE) {
        return Err("upstream answer does not match the query".into());
    }
    let same_question = up.questions.len() == 1
        && normalize_name(&up.questions[0].qname.to_string()) == q.name
        && u16::from(up.questions[0].qtype) == q.qtype;
    if !same_question {
        return Err("upstream answered another question".into());
    }
    let rcode = up.rcode();
    if rcode != RCODE::NoError && rcode != RCODE::NameError {
        return Err(format!("upstream answered {rcode:?}"));
    }
    let allowlist = policy.mode == Mode::Allowlist;

    // the names of the CNAME chain from the question
    let mut chain: HashSet<String> = HashSet::from([q.name.clone()]);
    loop {
        let before = chain.len();
        for rr in &up.answers {
            if let RData::CNAME(c) = &rr.rdata {
                if chain.contains(&normalize_name(&rr.name.to_string())) {
                    chain.insert(normalize_name(&c.0.to_string()));
                }
            }
        }
        if chain.len() == before {
            break;
        }
    }

    let mut answers: Vec<ResourceRecord> = Vec::new();
    let mut admit = Vec::new();
    let mut stripped = Vec::new();
    for rr in &up.answers {
        if !chain.contains(&normalize_name(&rr.name.to_string())) {
            continue;
        }
        let addr = match &rr.rdata {
            RData::A(A { address }) => Some(IpAddr::V4(Ipv4Addr::from(*address))),
            RData::AAAA(AAAA { address }) => Some(IpAddr::V6(Ipv6Addr::from(*address))),
            RData::CNAME(_) => None,
            _ if allowlist => continue,
            _ => None,
        };
        let mut rr = rr.clone();
        rr.ttl = rr.ttl.min(ttl.max);
        if let Some(a) = addr {
            let (class, via) = policy.classify(a);
            let permitted = policy.permit.iter().any(|(c, _)| c.contains(a));
            if class != Class::Public && !permitted {
                stripped.push((a, DenyReason::Blocked(class, via)));
                continue;
            }
            if allowlist {
                admit.push(Admission {
                    addr: a,
                    ttl: ttl.clamp(rr.ttl),
                });
            }
        }
        answers.push(rr);
    }

    let mut r = Packet::new_reply(q.id);
    r.set_flags(PacketFlag::RECURSION_AVAILABLE);
    if q.rd {
        r.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    *r.rcode_mut() = rcode;
    let name = Name::new(&q.name).map_err(|e| e.to_string())?;
    let qtype = QTYPE::try_from(q.qtype).map_err(|e| e.to_string())?;
    r.questions
        .push(Question::new(name, qtype, QCLASS::CLASS(CLASS::IN), false));
    r.answers = answers;
    let bytes = r.build_bytes_vec_compressed().map_err(|e| e.to_string())?;
    if bytes.len() > q.max_size {
        r.answers.clear();
        r.set_flags(PacketFlag::TRUNCATION);
        return Ok(Finished {
            reply: r.build_bytes_vec().map_err(|e| e.to_string())?,
            admit: Vec::new(),
            stripped,
            truncated: true,
        });
    }
    Ok(Finished {
        reply: bytes,
        admit,
        stripped,
        truncated: false,
    })
}

/// An answer record, for tests and the bench: `name` → `addr` with `ttl`.
pub fn address_record(name: &str, addr: IpAddr, ttl: u32) -> Result<ResourceRecord<'_>, String> {
    let n = Name::new(name).map_err(|e| e.to_string())?;
    let rdata = match addr {
        IpAddr::V4(a) => RData::A(A {
            address: u32::from(a),
        }),
        IpAddr::V6(a) => RData::AAAA(AAAA {
            address: u128::from(a),
        }),
    };
    Ok(ResourceRecord::new(n, CLASS::IN, ttl, rdata))
}

/// A DNS query for `name` of type `qtype` (A = 1, AAAA = 28) with `id`.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut p = Packet::new_query(id);
    p.set_flags(PacketFlag::RECURSION_DESIRED);
    let t = QTYPE::TYPE(TYPE::from(qtype));
    p.questions.push(Question::new(
        Name::new_unchecked(name),
        t,
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.build_bytes_vec().unwrap_or_default()
}

/// The addresses and rcode of an answer (for tests and the bench).
pub fn answer_addresses(bytes: &[u8]) -> Result<(u8, Vec<IpAddr>), String> {
    let p = Packet::parse(bytes).map_err(|e| e.to_string())?;
    let addrs = p
        .answers
        .iter()
        .filter_map(|rr| match &rr.rdata {
            RData::A(A { address }) => Some(IpAddr::V4(Ipv4Addr::from(*address))),
            RData::AAAA(AAAA { address }) => Some(IpAddr::V6(Ipv6Addr::from(*address))),
            _ => None,
        })
        .collect();
    Ok((p.rcode() as u8, addrs))
}

#[cfg(test)]
mod tests;
