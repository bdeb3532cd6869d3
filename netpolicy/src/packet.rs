//! Packets the rules denied (as NFLOG hands them over) and what agentbox
//! answers them with — a TCP reset, or for anything else an ICMP
//! "administratively prohibited" — so a denied or cut connection fails at
//! once inside the sandbox instead of hanging.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::policy::{ICMP, ICMPV6, TCP, UDP};

/// What the audit log and the reset need of a denied packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub tcp: Option<TcpHeader>,
    /// The Ethernet source and destination, when the log had them.
    pub macs: Option<([u8; 6], [u8; 6])>,
    /// ICMP/ICMPv6 type, for those.
    pub icmp_type: Option<u8>,
    /// The IP packet as logged (cut at the log's snap length).
    pub raw: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpHeader {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// Payload bytes (as far as the IP length says).
    pub payload: u32,
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

impl Denied {
    pub fn protocol_name(&self) -> String {
        match self.proto {
            TCP => "tcp".into(),
            UDP => "udp".into(),
            ICMP => "icmp".into(),
            ICMPV6 => "icmpv6".into(),
            p => format!("ip-proto-{p}"),
        }
    }
}

/// Parse a logged packet: an Ethernet frame carrying IPv4 or IPv6 when
/// `ethernet` (the egress hook of an Ethernet device logs the frame), else
/// the IP packet itself. `None` if it is neither.
pub fn parse_denied(data: &[u8], ethernet: bool) -> Option<Denied> {
    if !ethernet {
        return parse_l3(data);
    }
    if data.len() <= 14 {
        return None;
    }
    let ethertype = u16::from_be_bytes([data[12], data[13]]);
    if ethertype != 0x0800 && ethertype != 0x86dd {
        return None;
    }
    let mut d = parse_l3(&data[14..])?;
    let mut dst = [0u8; 6];
    let mut src = [0u8; 6];
    dst.copy_from_slice(&data[0..6]);
    src.copy_from_slice(&data[6..12]);
    d.macs = Some((src, dst));
    Some(d)
}

fn parse_l3(p: &[u8]) -> Option<Denied> {
    let version = p.first()? >> 4;
    let (src, dst, proto, l4, l4_len) = match version {
        4 if p.len() >= 20 => {
            let ihl = ((p[0] & 0x0f) as usize) * 4;
            let total = u16::from_be_bytes([p[2], p[3]]) as usize;
            if ihl < 20 || p.len() < ihl {
                return None;
            }
            let frag_offset = u16::from_be_bytes([p[6], p[7]]) & 0x1fff;
            let l4 = if frag_offset == 0 { &p[ihl..] } else { &[][..] };
            (
                IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
                IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])),
                p[9],
                l4,
                total.saturating_sub(ihl),
            )
        }
        6 if p.len() >= 40 => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&p[8..24]);
            d.copy_from_slice(&p[24..40]);
            let payload = u16::from_be_bytes([p[4], p[5]]) as usize;
            // skip extension headers (hop-by-hop, routing, destination options)
            let (mut next, mut off) = (p[6], 40usize);
            while matches!(next, 0 | 43 | 60) && p.len() >= off + 8 {
                next = p[off];
                off += (p[off + 1] as usize + 1) * 8;
            }
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                next,
                p.get(off..).unwrap_or(&[]),
                payload.saturating_sub(off - 40),
            )
        }
        _ => return None,
    };
    let ports = (proto == TCP || proto == UDP) && l4.len() >= 4;
    let (sport, dport) = if ports {
        (
            Some(u16::from_be_bytes([l4[0], l4[1]])),
            Some(u16::from_be_bytes([l4[2], l4[3]])),
        )
    } else {
        (None, None)
    };
    let icmp_type = ((proto == ICMP || proto == ICMPV6) && !l4.is_empty()).then(|| l4[0]);
    let tcp = (proto == TCP && l4.len() >= 14).then(|| {
        let off = ((l4.get(12).copied().unwrap_or(0x50) >> 4) as u32) * 4;
        TcpHeader {
            seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
            ack: u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
            flags: l4[13],
            payload: (l4_len as u32).saturating_sub(off),
        }
    });
    Some(Denied {
        src,
        dst,
        proto,
        sport,
        dport,
        tcp,
        macs: None,
        icmp_type,
        raw: p.to_vec(),
    })
}

fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn add_bytes(sum: &mut u32, b: &[u8]) {
    for pair in b.chunks(2) {
        let w = if pair.len() == 2 {
            u16::from_be_bytes([pair[0], pair[1]])
        } else {
            u16::from_be_bytes([pair[0], 0])
        };
        *sum += w as u32;
    }
}

/// The Ethernet frame of a TCP reset from the denied packet's destination
/// back to its source, as if the remote end had refused or dropped the
/// connection. `None` for anything but TCP (and never for a reset).
pub fn tcp_reset_frame(d: &Denied, pod_mac: [u8; 6], peer_mac: [u8; 6]) -> Option<Vec<u8>> {
    let t = d.tcp?;
    if t.flags & TCP_RST != 0 {
        return None;
    }
    let (sport, dport) = (d.sport?, d.dport?);
    // RFC 9293 3.10.7.1: take the sequence number from the segment's ACK, or
    // acknowledge everything the segment occupied
    let (seq, ack, flags) = if t.flags & TCP_ACK != 0 {
        (t.ack, 0, TCP_RST)
    } else {
        let len = t.payload + u32::from(t.flags & TCP_SYN != 0) + u32::from(t.flags & TCP_FIN != 0);
        (0, t.seq.wrapping_add(len), TCP_RST | TCP_ACK)
    };
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&dport.to_be_bytes());
    tcp[2..4].copy_from_slice(&sport.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[8..12].copy_from_slice(&ack.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;

    let mut frame = Vec::with_capacity(74);
    frame.extend_from_slice(&pod_mac);
    frame.extend_from_slice(&peer_mac);
    match (d.dst, d.src) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&40u16.to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = TCP;
            ip[12..16].copy_from_slice(&from.octets());
            ip[16..20].copy_from_slice(&to.octets());
            let mut s = 0;
            add_bytes(&mut s, &ip);
            let c = fold(s);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut s = 0;
            add_bytes(&mut s, &from.octets());
            add_bytes(&mut s, &to.octets());
            s += TCP as u32 + 20;
            add_bytes(&mut s, &tcp);
            let c = fold(s);
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            frame.extend(ip);
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            frame.extend_from_slice(&0x86ddu16.to_be_bytes());
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&20u16.to_be_bytes());
            ip[6] = TCP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&from.octets());
            ip[24..40].copy_from_slice(&to.octets());
            let mut s = 0;
            add_bytes(&mut s, &from.octets());
            add_bytes(&mut s, &to.octets());
            s += 20 + TCP as u32;
            add_bytes(&mut s, &tcp);
            let c = fold(s);
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            frame.extend(ip);
        }
        _ => return None,
    }
    frame.extend(tcp);
    Some(frame)
}

fn is_icmp_error(d: &Denied) -> bool {
    match (d.proto, d.icmp_type) {
        (ICMP, Some(t)) => matches!(t, 3 | 4 | 5 | 11 | 12),
        (ICMPV6, Some(t)) => t < 128,
        (ICMP | ICMPV6, None) => true,
        _ => false,
    }
}

fn is_group(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_multicast(),
    }
}

/// The Ethernet frame of an ICMP "administratively prohibited" from the
/// denied packet's destination back to its source, carrying the start of
/// the denied packet (so the sender's stack finds the socket). `None` for
/// TCP (it gets a reset), ICMP errors, and group destinations.
pub fn icmp_prohibited_frame(d: &Denied, pod_mac: [u8; 6], peer_mac: [u8; 6]) -> Option<Vec<u8>> {
    if d.proto == TCP || is_icmp_error(d) || is_group(d.dst) || d.raw.is_empty() {
        return None;
    }
    let mut frame = Vec::with_capacity(200);
    frame.extend_from_slice(&pod_mac);
    frame.extend_from_slice(&peer_mac);
    match (d.dst, d.src) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            let ihl = ((d.raw[0] & 0x0f) as usize) * 4;
            let quoted = &d.raw[..d.raw.len().min(ihl + 8)];
            let mut icmp = vec![3u8, 13, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(quoted);
            let mut s = 0;
            add_bytes(&mut s, &icmp);
            let c = fold(s);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let total = 20 + icmp.len();
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = ICMP;
            ip[12..16].copy_from_slice(&from.octets());
            ip[16..20].copy_from_slice(&to.octets());
            let mut s = 0;
            add_bytes(&mut s, &ip);
            let c = fold(s);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            frame.extend_from_slice(&0x0800u16.to_be_bytes());
            frame.extend(ip);
            frame.extend(icmp);
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            let mut icmp = vec![1u8, 1, 0, 0, 0, 0, 0, 0];
            icmp.extend_from_slice(&d.raw);
            let mut s = 0;
            add_bytes(&mut s, &from.octets());
            add_bytes(&mut s, &to.octets());
            s += icmp.len() as u32 + ICMPV6 as u32;
            add_bytes(&mut s, &icmp);
            let c = fold(s);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(icmp.len() as u16).to_be_bytes());
            ip[6] = ICMPV6;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&from.octets());
            ip[24..40].copy_from_slice(&to.octets());
            frame.extend_from_slice(&0x86ddu16.to_be_bytes());
            frame.extend(ip);
            frame.extend(icmp);
        }
        _ => return None,
    }
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp(flags: u8, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; 40 + payload];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        p[9] = TCP;
        p[12..16].copy_from_slice(&[10, 233, 7, 5]);
        p[16..20].copy_from_slice(&[203, 0, 113, 10]);
        p[20..22].copy_from_slice(&40000u16.to_be_bytes());
        p[22..24].copy_from_slice(&443u16.to_be_bytes());
        p[24..28].copy_from_slice(&seq.to_be_bytes());
        p[28..32].copy_from_slice(&ack.to_be_bytes());
        p[32] = 5 << 4;
        p[33] = flags;
        p
    }

    fn checksum_ok(frame: &[u8]) -> bool {
        let ip = &frame[14..];
        let (mut s, tcp) = if ip[0] >> 4 == 4 {
            let mut h = 0;
            add_bytes(&mut h, &ip[..20]);
            if fold(h) != 0 {
                return false;
            }
            let mut s = 0;
            add_bytes(&mut s, &ip[12..20]);
            (s, &ip[20..])
        } else {
            let mut s = 0;
            add_bytes(&mut s, &ip[8..40]);
            (s, &ip[40..])
        };
        s += TCP as u32 + tcp.len() as u32;
        add_bytes(&mut s, tcp);
        fold(s) == 0
    }

    #[test]
    fn parses_ip_and_frames() {
        let p = v4_tcp(TCP_SYN, 100, 0, 0);
        let d = parse_denied(&p, false).unwrap();
        assert_eq!(d.dst, "203.0.113.10".parse::<IpAddr>().unwrap());
        assert_eq!((d.sport, d.dport), (Some(40000), Some(443)));
        assert_eq!(d.protocol_name(), "tcp");
        let mut frame = vec![0xaa; 6];
        frame.extend([0xbb; 6]);
        frame.extend(0x0800u16.to_be_bytes());
        frame.extend(&p);
        let f = parse_denied(&frame, true).unwrap();
        assert_eq!(f.macs, Some(([0xbb; 6], [0xaa; 6])));
        assert_eq!(f.tcp, d.tcp);
        assert_eq!(parse_denied(&[0x00, 0x01], false), None);
        assert_eq!(parse_denied(&[], true), None);
        // an IP packet is not a frame
        assert_eq!(parse_denied(&p, true), None);
    }

    #[test]
    fn a_syn_is_refused_with_rst_ack() {
        let d = parse_denied(&v4_tcp(TCP_SYN, 1000, 0, 0), false).unwrap();
        let f = tcp_reset_frame(&d, [1; 6], [2; 6]).unwrap();
        assert_eq!(&f[0..6], &[1; 6]);
        let back = parse_denied(&f, true).unwrap();
        assert_eq!(back.src, d.dst);
        assert_eq!(back.dst, d.src);
        assert_eq!((back.sport, back.dport), (Some(443), Some(40000)));
        let t = back.tcp.unwrap();
        assert_eq!(t.flags, TCP_RST | TCP_ACK);
        assert_eq!(t.ack, 1001);
        assert!(checksum_ok(&f));
    }

    #[test]
    fn an_established_segment_is_reset_at_its_ack() {
        let d = parse_denied(&v4_tcp(TCP_ACK, 5000, 777_777, 5), false).unwrap();
        assert_eq!(d.tcp.unwrap().payload, 5);
        let f = tcp_reset_frame(&d, [1; 6], [2; 6]).unwrap();
        let t = parse_denied(&f, true).unwrap().tcp.unwrap();
        assert_eq!((t.flags, t.seq), (TCP_RST, 777_777));
        assert!(checksum_ok(&f));
        // never answer a reset
        let r = parse_denied(&v4_tcp(TCP_RST | TCP_ACK, 1, 1, 0), false).unwrap();
        assert_eq!(tcp_reset_frame(&r, [1; 6], [2; 6]), None);
    }

    fn v4_udp() -> Vec<u8> {
        let mut p = vec![0u8; 32];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        p[9] = UDP;
        p[12..16].copy_from_slice(&[10, 233, 7, 5]);
        p[16..20].copy_from_slice(&[203, 0, 113, 10]);
        p[20..22].copy_from_slice(&5353u16.to_be_bytes());
        p[22..24].copy_from_slice(&53u16.to_be_bytes());
        p[24..26].copy_from_slice(&12u16.to_be_bytes());
        p
    }

    #[test]
    fn udp_is_refused_with_icmp_prohibited() {
        let d = parse_denied(&v4_udp(), false).unwrap();
        let f = icmp_prohibited_frame(&d, [1; 6], [2; 6]).unwrap();
        let ip = &f[14..];
        assert_eq!(ip[9], ICMP);
        assert_eq!(&ip[12..16], &[203, 0, 113, 10]);
        assert_eq!(&ip[16..20], &[10, 233, 7, 5]);
        let icmp = &ip[20..];
        assert_eq!((icmp[0], icmp[1]), (3, 13));
        // the quoted packet: the denied header and its first 8 bytes
        assert_eq!(&icmp[8..], &v4_udp()[..28]);
        let mut s = 0;
        add_bytes(&mut s, &ip[..20]);
        assert_eq!(fold(s), 0);
        let mut s = 0;
        add_bytes(&mut s, icmp);
        assert_eq!(fold(s), 0);
        // TCP gets a reset instead, ICMP errors and group addresses nothing
        let t = parse_denied(&v4_tcp(TCP_SYN, 1, 0, 0), false).unwrap();
        assert_eq!(icmp_prohibited_frame(&t, [1; 6], [2; 6]), None);
        let mut err = v4_udp();
        err[9] = ICMP;
        err[20] = 3;
        let e = parse_denied(&err, false).unwrap();
        assert_eq!(icmp_prohibited_frame(&e, [1; 6], [2; 6]), None);
        let mut echo = v4_udp();
        echo[9] = ICMP;
        echo[20] = 8;
        assert!(
            icmp_prohibited_frame(&parse_denied(&echo, false).unwrap(), [1; 6], [2; 6]).is_some()
        );
        let mut mc = v4_udp();
        mc[16..20].copy_from_slice(&[224, 0, 0, 251]);
        assert_eq!(
            icmp_prohibited_frame(&parse_denied(&mc, false).unwrap(), [1; 6], [2; 6]),
            None
        );
    }

    #[test]
    fn ipv6_prohibited_has_a_valid_checksum() {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&8u16.to_be_bytes());
        p[6] = UDP;
        p[8..24].copy_from_slice(&"fd00::5".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
        let d = parse_denied(&p, false).unwrap();
        let f = icmp_prohibited_frame(&d, [1; 6], [2; 6]).unwrap();
        let ip = &f[14..];
        let icmp = &ip[40..];
        assert_eq!((icmp[0], icmp[1]), (1, 1));
        let mut s = 0;
        add_bytes(&mut s, &ip[8..40]);
        s += icmp.len() as u32 + ICMPV6 as u32;
        add_bytes(&mut s, icmp);
        assert_eq!(fold(s), 0);
    }

    #[test]
    fn ipv6_resets_have_valid_checksums() {
        let mut p = vec![0u8; 60];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&20u16.to_be_bytes());
        p[6] = TCP;
        p[7] = 64;
        p[8..24].copy_from_slice(&"fd00::5".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"2001:db8::10".parse::<Ipv6Addr>().unwrap().octets());
        p[40..42].copy_from_slice(&1234u16.to_be_bytes());
        p[42..44].copy_from_slice(&80u16.to_be_bytes());
        p[44..48].copy_from_slice(&9u32.to_be_bytes());
        p[52] = 5 << 4;
        p[53] = TCP_SYN;
        let d = parse_denied(&p, false).unwrap();
        let f = tcp_reset_frame(&d, [1; 6], [2; 6]).unwrap();
        assert!(checksum_ok(&f));
        assert_eq!(parse_denied(&f, true).unwrap().tcp.unwrap().ack, 10);
    }
}
