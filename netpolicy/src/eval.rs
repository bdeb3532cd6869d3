//! A small interpreter of [`Ruleset`]s, with nftables' semantics for what the
//! rules use: tests check, packet by packet, that the generated rules do what
//! [`crate::policy::Compiled::decide`] says.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::ruleset::{encode_key, Elem, Expr, Field, Ruleset, Value, Verdict, ETH_IP, ETH_IP6};

/// A packet as the egress hook sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ethertype: u16,
    pub daddr: Option<IpAddr>,
    pub l4proto: u8,
    /// The first four bytes of the transport header.
    pub l4: [u8; 4],
}

impl Packet {
    /// A TCP or UDP packet.
    pub fn ports(daddr: IpAddr, proto: u8, sport: u16, dport: u16) -> Packet {
        let s = sport.to_be_bytes();
        let d = dport.to_be_bytes();
        Packet {
            ethertype: if daddr.is_ipv4() { ETH_IP } else { ETH_IP6 },
            daddr: Some(daddr),
            l4proto: proto,
            l4: [s[0], s[1], d[0], d[1]],
        }
    }

    /// Any other IP protocol, with its first four transport bytes.
    pub fn other(daddr: IpAddr, proto: u8, l4: [u8; 4]) -> Packet {
        Packet {
            ethertype: if daddr.is_ipv4() { ETH_IP } else { ETH_IP6 },
            daddr: Some(daddr),
            l4proto: proto,
            l4,
        }
    }

    fn load(&self, f: Field) -> Value {
        let addr = |want_v4: bool| match self.daddr {
            Some(a) if a.is_ipv4() == want_v4 => Value::Addr(a),
            _ => panic!(
                "a rule loads {f:?} from a packet of ethertype {:#x}: missing meta protocol guard",
                self.ethertype
            ),
        };
        match f {
            Field::EtherType => Value::U16(self.ethertype),
            Field::L4Proto => Value::U8(self.l4proto),
            Field::Daddr4 => addr(true),
            Field::Daddr6 => addr(false),
            Field::Sport => Value::U16(u16::from_be_bytes([self.l4[0], self.l4[1]])),
            Field::Dport => Value::U16(u16::from_be_bytes([self.l4[2], self.l4[3]])),
            Field::Icmp6Type => Value::U8(self.l4[0]),
        }
    }
}

#[derive(Clone, Debug)]
struct Member {
    lo: Vec<Vec<u8>>,
    hi: Vec<Vec<u8>>,
    expires: Option<u64>,
}

/// The sets' contents over time (static elements, admissions, dynamic adds).
#[derive(Clone, Debug, Default)]
pub struct State {
    sets: HashMap<String, Vec<Member>>,
}

fn fields_bytes(fields: &[Field], values: &[Value]) -> Vec<Vec<u8>> {
    fields
        .iter()
        .zip(values)
        .map(|(f, v)| encode_key(&[*f], &[*v]))
        .collect()
}

impl State {
    pub fn new(rs: &Ruleset) -> State {
        let mut sets = HashMap::new();
        for s in &rs.sets {
            let members = s
                .elements
                .iter()
                .map(|e| match e {
                    Elem::Key(k) => Member {
                        lo: fields_bytes(&s.key, k),
                        hi: fields_bytes(&s.key, k),
                        expires: None,
                    },
                    Elem::Range(a, b) => Member {
                        lo: fields_bytes(&s.key, a),
                        hi: fields_bytes(&s.key, b),
                        expires: None,
                    },
                })
                .collect();
            sets.insert(s.name.clone(), members);
        }
        State { sets }
    }

    /// Add (or refresh) an element, as the resolver or an `update` does.
    pub fn add(&mut self, rs: &Ruleset, set: &str, values: &[Value], expires: u64) {
        let def = rs.set(set).unwrap_or_else(|| panic!("no set {set}"));
        let key = fields_bytes(&def.key, values);
        let members = self.sets.get_mut(set).expect("set");
        members.retain(|m| m.lo != key);
        members.push(Member {
            lo: key.clone(),
            hi: key,
            expires: Some(expires),
        });
    }

    fn contains(&self, set: &str, key: &[Vec<u8>], now: u64) -> bool {
        self.sets
            .get(set)
            .unwrap_or_else(|| panic!("a rule looks up a missing set {set}"))
            .iter()
            .any(|m| {
                m.expires.is_none_or(|e| now < e)
                    && m.lo
                        .iter()
                        .zip(&m.hi)
                        .zip(key)
                        .all(|((lo, hi), k)| lo <= k && k <= hi)
            })
    }
}

/// What the hook did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: bool,
    pub logged: bool,
}

/// Run the base chain of `device` on `pkt` at time `now_ms`.
pub fn eval(rs: &Ruleset, st: &mut State, device: &str, pkt: &Packet, now_ms: u64) -> Outcome {
    let base = rs
        .chains
        .iter()
        .find(|c| c.device.as_deref() == Some(device))
        .unwrap_or_else(|| panic!("no chain hooks {device}"));
    let mut logged = false;
    // base chains have policy drop
    let accepted = run(rs, st, &base.name, pkt, now_ms, &mut logged, 0).unwrap_or(false);
    Outcome { accepted, logged }
}

/// Some(verdict) when the chain decided; None when it fell through.
fn run(
    rs: &Ruleset,
    st: &mut State,
    chain: &str,
    pkt: &Packet,
    now: u64,
    logged: &mut bool,
    depth: usize,
) -> Option<bool> {
    assert!(depth < 16, "chain loop");
    let c = rs
        .chain(chain)
        .unwrap_or_else(|| panic!("no chain {chain}"));
    'rules: for r in &c.rules {
        for e in &r.exprs {
            let ok = match e {
                Expr::Eq(f, v) => pkt.load(*f) == *v,
                Expr::Ne(f, v) => pkt.load(*f) != *v,
                Expr::Lookup { set, key } => {
                    let values: Vec<Value> = key.iter().map(|f| pkt.load(*f)).collect();
                    st.contains(set, &fields_bytes(key, &values), now)
                }
                Expr::Limit { .. } => true,
                Expr::Log { .. } => {
                    *logged = true;
                    true
                }
                Expr::Update {
                    set,
                    key,
                    timeout_ms,
                } => {
                    let values: Vec<Value> = key.iter().map(|f| pkt.load(*f)).collect();
                    st.add(rs, set, &values, now + timeout_ms);
                    true
                }
            };
            if !ok {
                continue 'rules;
            }
        }
        match &r.verdict {
            None => {}
            Some(Verdict::Accept) => return Some(true),
            Some(Verdict::Drop) => return Some(false),
            Some(Verdict::Goto(c)) => return run(rs, st, c, pkt, now, logged, depth + 1),
            Some(Verdict::Jump(c)) => {
                if let Some(v) = run(rs, st, c, pkt, now, logged, depth + 1) {
                    return Some(v);
                }
            }
        }
    }
    None
}
