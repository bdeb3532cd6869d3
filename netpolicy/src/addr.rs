//! Addresses: CIDR prefixes, the ranges blocked in every mode and what an
//! address is (metadata, private, the node's own…), IPv4 forms embedded in
//! IPv6 addresses included.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

/// An IPv4 or IPv6 prefix with its host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

fn bits_of(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// An address as a number (IPv4 in the low 32 bits).
pub fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

fn mask(len: u8, bits: u8) -> u128 {
    let host = bits - len;
    let all: u128 = if bits == 32 {
        u32::MAX as u128
    } else {
        u128::MAX
    };
    if host >= 128 {
        0
    } else {
        all & !((1u128 << host) - 1)
    }
}

impl Cidr {
    /// The prefix `addr/len`, host bits cleared; `None` if `len` is too long.
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        let bits = bits_of(&addr);
        if len > bits {
            return None;
        }
        let v = to_u128(addr) & mask(len, bits);
        Some(Cidr {
            addr: from_u128(v, bits == 32),
            len,
        })
    }

    /// One address.
    pub fn host(addr: IpAddr) -> Cidr {
        Cidr {
            len: bits_of(&addr),
            addr,
        }
    }

    /// `a.b.c.d`, `a.b.c.d/n`, `2001:db8::1`, `2001:db8::/32`. Host bits must be clear.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or prefix"))?;
        let bits = bits_of(&addr);
        let len = match l {
            None => bits,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= bits)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length"))?,
        };
        let c = Cidr::new(addr, len).expect("length checked");
        if c.addr != addr {
            return Err(format!("{s:?} has host bits set (did you mean {c}?)"));
        }
        Ok(c)
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }
    pub fn prefix_len(&self) -> u8 {
        self.len
    }
    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }
    fn bits(&self) -> u8 {
        bits_of(&self.addr)
    }
    /// True for a single address (/32 or /128).
    pub fn is_host(&self) -> bool {
        self.len == self.bits()
    }

    /// First and last address, as numbers.
    pub fn range(&self) -> (u128, u128) {
        let first = to_u128(self.addr);
        let span = if self.bits() - self.len == 128 {
            u128::MAX
        } else {
            (1u128 << (self.bits() - self.len)) - 1
        };
        (first, first | span)
    }

    pub fn first(&self) -> IpAddr {
        self.addr
    }
    pub fn last(&self) -> IpAddr {
        from_u128(self.range().1, self.is_v4())
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() != self.is_v4() {
            return false;
        }
        let (a, b) = self.range();
        let v = to_u128(ip);
        a <= v && v <= b
    }

    /// `other` lies within this prefix.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.is_v4() == self.is_v4() && other.len >= self.len && self.contains(other.addr)
    }

    /// The two halves of this prefix (none for a single address).
    pub fn halves(&self) -> Option<(Cidr, Cidr)> {
        if self.is_host() {
            return None;
        }
        let len = self.len + 1;
        let lo = Cidr {
            addr: self.addr,
            len,
        };
        let hi_v = to_u128(self.addr) | (1u128 << (self.bits() - len));
        let hi = Cidr {
            addr: from_u128(hi_v, self.is_v4()),
            len,
        };
        Some((lo, hi))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// `e` without every prefix of `holes` that lies within it, as prefixes.
pub fn subtract(e: Cidr, holes: &[Cidr]) -> Vec<Cidr> {
    let inside: Vec<Cidr> = holes
        .iter()
        .filter(|h| e.covers(h) || h.covers(&e))
        .copied()
        .collect();
    let mut out = Vec::new();
    split(e, &inside, &mut out);
    out
}

fn split(e: Cidr, holes: &[Cidr], out: &mut Vec<Cidr>) {
    if holes.iter().any(|h| h.covers(&e)) {
        return;
    }
    if !holes.iter().any(|h| e.covers(h)) {
        out.push(e);
        return;
    }
    if let Some((lo, hi)) = e.halves() {
        split(lo, holes, out);
        split(hi, holes, out);
    }
}

/// Sorted, merged `[first, last]` ranges of one family (overlapping and
/// adjacent ranges joined).
pub fn merge_ranges(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match out.last_mut() {
            Some((_, pb)) if a <= pb.saturating_add(1) => *pb = (*pb).max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// What an address is, for the rules and for the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Cloud instance metadata endpoints.
    Metadata,
    LinkLocal,
    Loopback,
    /// RFC 1918, shared address space (100.64/10), unique local (fc00::/7).
    Private,
    /// Unspecified, reserved, IPv4-mapped/compatible IPv6 forms.
    Reserved,
    Multicast,
    /// The node's own addresses.
    Node,
    /// Teredo: an IPv4 address hidden in an IPv6 one.
    Tunnel,
    /// Anything else.
    Public,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Metadata => "metadata",
            Class::LinkLocal => "link-local",
            Class::Loopback => "loopback",
            Class::Private => "private",
            Class::Reserved => "reserved",
            Class::Multicast => "multicast",
            Class::Node => "node",
            Class::Tunnel => "tunnel",
            Class::Public => "public",
        }
    }
}

/// How an IPv4 address is carried in an IPv6 one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Embedding {
    /// `::ffff:a.b.c.d`
    Mapped,
    /// `::a.b.c.d` (deprecated)
    Compatible,
    /// `64:ff9b::a.b.c.d` (NAT64 well-known prefix)
    Nat64,
    /// `2002:aabb:ccdd::/48` (6to4)
    SixToFour,
    /// `2001::/32` (Teredo)
    Teredo,
}

/// A prefix blocked in every mode unless an allow entry inside it permits it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked {
    pub cidr: Cidr,
    pub class: Class,
    pub via: Option<Embedding>,
}

fn c(s: &str) -> Cidr {
    Cidr::parse(s).expect("builtin prefix")
}

/// The cloud metadata endpoints.
pub const METADATA: &[&str] = &[
    "169.254.169.254",
    "169.254.170.2",
    "169.254.170.23",
    "100.100.100.200",
    "168.63.129.16",
    "fd00:ec2::254",
    "fd00:ec2::23",
];

const V4: &[(&str, Class)] = &[
    ("0.0.0.0/8", Class::Reserved),
    ("10.0.0.0/8", Class::Private),
    ("100.64.0.0/10", Class::Private),
    ("127.0.0.0/8", Class::Loopback),
    ("169.254.0.0/16", Class::LinkLocal),
    ("172.16.0.0/12", Class::Private),
    ("192.0.0.0/24", Class::Reserved),
    ("192.168.0.0/16", Class::Private),
    ("198.18.0.0/15", Class::Reserved),
    ("224.0.0.0/4", Class::Multicast),
    ("240.0.0.0/4", Class::Reserved),
];

const V6: &[(&str, Class)] = &[
    ("::/128", Class::Reserved),
    ("::1/128", Class::Loopback),
    ("100::/64", Class::Reserved),
    ("fc00::/7", Class::Private),
    ("fe80::/10", Class::LinkLocal),
    ("fec0::/10", Class::Private),
    ("ff00::/8", Class::Multicast),
];

/// Prefixes blocked whole because they carry other addresses.
const V6_WHOLE: &[(&str, Class, Embedding)] = &[
    ("::ffff:0:0/96", Class::Reserved, Embedding::Mapped),
    ("::/96", Class::Reserved, Embedding::Compatible),
    ("64:ff9b:1::/48", Class::Private, Embedding::Nat64),
    ("2001::/32", Class::Tunnel, Embedding::Teredo),
];

fn embed(v4: Cidr, how: Embedding) -> Cidr {
    let v = to_u128(v4.addr());
    let (base, shift, extra) = match how {
        Embedding::Nat64 => (0x0064_ff9b_u128 << 96, 0, 96),
        Embedding::SixToFour => (0x2002_u128 << 112, 80, 16),
        Embedding::Mapped => (0xffff_u128 << 32, 0, 96),
        Embedding::Compatible => (0, 0, 96),
        Embedding::Teredo => unreachable!("teredo is blocked whole"),
    };
    Cidr::new(
        IpAddr::V6(Ipv6Addr::from(base | (v << shift))),
        v4.prefix_len() + extra,
    )
    .expect("embedded prefix fits")
}

/// Every blocked prefix: the built-in classes, the node's own addresses, and
/// the IPv6 forms that carry a blocked IPv4 address.
pub fn blocklist(node: &[IpAddr]) -> Vec<Blocked> {
    let mut out = Vec::new();
    let mut v4 = Vec::new();
    for m in METADATA {
        let cidr = c(m);
        out.push(Blocked {
            cidr,
            class: Class::Metadata,
            via: None,
        });
        if cidr.is_v4() {
            v4.push((cidr, Class::Metadata));
        }
    }
    for (s, class) in V4 {
        v4.push((c(s), *class));
    }
    for a in node {
        let cidr = Cidr::host(*a);
        if a.is_ipv4() {
            v4.push((cidr, Class::Node));
        } else {
            out.push(Blocked {
                cidr,
                class: Class::Node,
                via: None,
            });
        }
    }
    for (cidr, class) in &v4 {
        if *class != Class::Metadata {
            out.push(Blocked {
                cidr: *cidr,
                class: *class,
                via: None,
            });
        }
        for how in [Embedding::Nat64, Embedding::SixToFour] {
            out.push(Blocked {
                cidr: embed(*cidr, how),
                class: *class,
                via: Some(how),
            });
        }
    }
    for (s, class) in V6 {
        out.push(Blocked {
            cidr: c(s),
            class: *class,
            via: None,
        });
    }
    for (s, class, how) in V6_WHOLE {
        out.push(Blocked {
            cidr: c(s),
            class: *class,
            via: Some(*how),
        });
    }
    out
}

/// The IPv4 address an IPv6 one carries, and how.
pub fn embedded_v4(a: Ipv6Addr) -> Option<(Ipv4Addr, Embedding)> {
    let v = u128::from(a);
    let low = Ipv4Addr::from(v as u32);
    if v >> 32 == 0xffff {
        return Some((low, Embedding::Mapped));
    }
    if v >> 32 == 0 && v > 1 {
        return Some((low, Embedding::Compatible));
    }
    if v >> 32 == 0x0064_ff9b_u128 << 64 {
        return Some((low, Embedding::Nat64));
    }
    if v >> 112 == 0x2002 {
        return Some((Ipv4Addr::from((v >> 80) as u32), Embedding::SixToFour));
    }
    if v >> 96 == 0x2001_0000 {
        // Teredo: the client's address, obfuscated, in the last 32 bits
        return Some((Ipv4Addr::from(!(v as u32)), Embedding::Teredo));
    }
    None
}

/// What `ip` is: the class of the most specific blocked prefix holding it, or
/// public. For IPv6 forms carrying an IPv4 address, that address's class (and
/// how it was carried).
pub fn classify(ip: IpAddr, blocked: &[Blocked]) -> (Class, Option<Embedding>) {
    let best = blocked
        .iter()
        .filter(|b| b.cidr.contains(ip))
        .max_by_key(|b| b.cidr.prefix_len());
    if let (IpAddr::V6(a), Some(b)) = (ip, best) {
        if let Some((v4, how)) = embedded_v4(a) {
            if how == Embedding::Teredo {
                return (Class::Tunnel, Some(how));
            }
            let (inner, _) = classify(IpAddr::V4(v4), blocked);
            if inner != Class::Public {
                return (inner, Some(how));
            }
            return (b.class, Some(how));
        }
    }
    match best {
        Some(b) => (b.class, b.via),
        None => (Class::Public, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_and_display() {
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("10.1.2.3").unwrap().to_string(), "10.1.2.3");
        assert_eq!(
            Cidr::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(Cidr::parse("::/0").unwrap().range(), (0, u128::MAX));
        assert_eq!(
            Cidr::parse("0.0.0.0/0").unwrap().range(),
            (0, u32::MAX as u128)
        );
        let e = Cidr::parse("10.0.0.1/8").unwrap_err();
        assert!(e.contains("host bits") && e.contains("10.0.0.0/8"), "{e}");
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("pypi.org").is_err());
    }

    #[test]
    fn subtract_punches_holes() {
        let e = Cidr::parse("169.254.0.0/16").unwrap();
        let holes = [Cidr::parse("169.254.169.254").unwrap()];
        let parts = subtract(e, &holes);
        assert!(parts.iter().all(|p| !p.contains(ip("169.254.169.254"))));
        assert!(parts.iter().any(|p| p.contains(ip("169.254.169.253"))));
        assert!(parts.iter().any(|p| p.contains(ip("169.254.0.1"))));
        assert_eq!(parts.len(), 16);
        // a hole covering the whole prefix leaves nothing
        assert!(subtract(holes[0], &[e]).is_empty());
        // disjoint holes change nothing
        assert_eq!(subtract(e, &[Cidr::parse("10.0.0.0/8").unwrap()]), vec![e]);
    }

    #[test]
    fn merge_joins_adjacent_and_overlapping() {
        assert_eq!(
            merge_ranges(vec![(5, 9), (0, 4), (20, 30), (25, 40)]),
            vec![(0, 9), (20, 40)]
        );
        assert_eq!(
            merge_ranges(vec![(0, u128::MAX), (3, 4)]),
            vec![(0, u128::MAX)]
        );
    }

    #[test]
    fn classes() {
        let b = blocklist(&[ip("192.0.2.10"), ip("2001:db8::10")]);
        let cls = |s| classify(ip(s), &b);
        assert_eq!(cls("169.254.169.254"), (Class::Metadata, None));
        assert_eq!(cls("169.254.1.1"), (Class::LinkLocal, None));
        assert_eq!(cls("fd00:ec2::254"), (Class::Metadata, None));
        assert_eq!(cls("10.1.2.3"), (Class::Private, None));
        assert_eq!(cls("100.100.100.200"), (Class::Metadata, None));
        assert_eq!(cls("100.64.0.1"), (Class::Private, None));
        assert_eq!(cls("192.0.2.10"), (Class::Node, None));
        assert_eq!(cls("2001:db8::10"), (Class::Node, None));
        assert_eq!(cls("203.0.113.7"), (Class::Public, None));
        assert_eq!(cls("2001:db8::7"), (Class::Public, None));
        assert_eq!(cls("127.0.0.1").0, Class::Loopback);
        assert_eq!(cls("::1").0, Class::Loopback);
        assert_eq!(cls("fe80::1").0, Class::LinkLocal);
        assert_eq!(cls("224.0.0.1").0, Class::Multicast);
        assert_eq!(cls("255.255.255.255").0, Class::Reserved);
    }

    #[test]
    fn embedded_forms_carry_the_inner_class() {
        let b = blocklist(&[ip("192.0.2.10")]);
        let cls = |s| classify(ip(s), &b);
        assert_eq!(
            cls("::ffff:169.254.169.254"),
            (Class::Metadata, Some(Embedding::Mapped))
        );
        assert_eq!(
            cls("::ffff:10.0.0.1"),
            (Class::Private, Some(Embedding::Mapped))
        );
        // a mapped public address is still blocked: such packets have no business on the wire
        assert_eq!(
            cls("::ffff:203.0.113.7"),
            (Class::Reserved, Some(Embedding::Mapped))
        );
        assert_eq!(
            cls("::169.254.169.254"),
            (Class::Metadata, Some(Embedding::Compatible))
        );
        assert_eq!(
            cls("64:ff9b::a9fe:a9fe"),
            (Class::Metadata, Some(Embedding::Nat64))
        );
        assert_eq!(cls("64:ff9b::cb00:7107"), (Class::Public, None));
        assert_eq!(
            cls("2002:a9fe:a9fe::1"),
            (Class::Metadata, Some(Embedding::SixToFour))
        );
        assert_eq!(
            cls("2002:c000:20a::1"),
            (Class::Node, Some(Embedding::SixToFour))
        );
        assert_eq!(cls("2002:cb00:7107::1"), (Class::Public, None));
        assert_eq!(cls("2001:0:4136:e378::1").0, Class::Tunnel);
        assert_eq!(cls("64:ff9b:1::1").0, Class::Private);
    }

    #[test]
    fn every_blocked_prefix_classifies_as_blocked() {
        let b = blocklist(&[ip("192.0.2.10")]);
        for x in &b {
            for a in [x.cidr.first(), x.cidr.last()] {
                assert_ne!(classify(a, &b).0, Class::Public, "{a} in {}", x.cidr);
            }
        }
    }
}
