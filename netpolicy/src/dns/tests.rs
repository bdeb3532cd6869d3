use super::*;
use crate::config::NetworkConfig;
use simple_dns::rdata::CNAME;

fn policy(toml: &str) -> Compiled {
    let c = NetworkConfig::from_document(toml).unwrap().unwrap();
    Compiled::new(&c.agent, &["192.0.2.10".parse().unwrap()])
}

fn allowlist() -> Compiled {
    policy("[network]\nmode = \"allowlist\"\nallow = [\"pypi.mirror.internal:443\", \"*.cdn.internal\", \"10.20.0.0/16\"]\n")
}

fn forward(p: &Compiled, name: &str, qtype: u16) -> Query {
    match decide_query(p, &query(7, name, qtype), false) {
        QueryDecision::Forward(q) => q,
        other => panic!("{name}: {other:?}"),
    }
}

fn upstream_answer(
    id: u16,
    q: &Query,
    records: Vec<ResourceRecord<'static>>,
    rcode: RCODE,
) -> Vec<u8> {
    let mut p = Packet::new_reply(id);
    p.questions.push(Question::new(
        Name::new_unchecked(&q.name).into_owned(),
        QTYPE::try_from(q.qtype).unwrap(),
        QCLASS::CLASS(CLASS::IN),
        false,
    ));
    p.answers = records;
    *p.rcode_mut() = rcode;
    p.build_bytes_vec().unwrap()
}

fn a(name: &'static str, ip: &str, ttl: u32) -> ResourceRecord<'static> {
    address_record(name, ip.parse().unwrap(), ttl).unwrap()
}

fn cname(name: &'static str, target: &'static str) -> ResourceRecord<'static> {
    ResourceRecord::new(
        Name::new_unchecked(name),
        CLASS::IN,
        300,
        RData::CNAME(CNAME(Name::new_unchecked(target))),
    )
}

#[test]
fn allowed_names_go_upstream_with_their_ports() {
    let p = allowlist();
    let q = forward(&p, "PyPI.Mirror.Internal.", 1);
    assert_eq!(q.name, "pypi.mirror.internal");
    assert_eq!(q.ports, Ports::Only(vec![443]));
    assert_eq!(q.id, 7);
    assert!(q.admit);
    assert_eq!(q.max_size, CLASSIC_UDP);
    assert_eq!(forward(&p, "a.b.cdn.internal", 28).ports, Ports::Any);
}

#[test]
fn other_names_never_leave_the_node() {
    let p = allowlist();
    match decide_query(&p, &query(9, "exfil.attacker.example", 1), false) {
        QueryDecision::Reply { bytes, denied } => {
            assert_eq!(
                answer_addresses(&bytes).unwrap(),
                (RCODE::NameError as u8, vec![])
            );
            assert_eq!(bytes[0..2], [0, 9]);
            assert_eq!(
                denied,
                Some(("exfil.attacker.example".into(), DenyReason::NotAllowed))
            );
        }
        other => panic!("{other:?}"),
    }
    let off = policy("[network]\nmode = \"offline\"\n");
    match decide_query(&off, &query(9, "pypi.mirror.internal", 1), false) {
        QueryDecision::Reply { bytes, denied } => {
            assert_eq!(answer_addresses(&bytes).unwrap().0, RCODE::Refused as u8);
            assert_eq!(denied.unwrap().1, DenyReason::Offline);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn allowlist_asks_only_for_addresses() {
    let p = allowlist();
    // TXT (16) for an allowed name: an empty answer, nothing upstream
    match decide_query(&p, &query(3, "pypi.mirror.internal", 16), false) {
        QueryDecision::Reply {
            bytes,
            denied: None,
        } => {
            assert_eq!(answer_addresses(&bytes).unwrap(), (0, vec![]))
        }
        other => panic!("{other:?}"),
    }
    // open mode forwards it
    let open = policy("[network]\nmode = \"open\"\n");
    assert!(matches!(
        decide_query(&open, &query(3, "anything.example", 16), false),
        QueryDecision::Forward(Query { admit: false, .. })
    ));
}

#[test]
fn garbage_is_answered_or_ignored_never_a_panic() {
    let p = allowlist();
    assert_eq!(decide_query(&p, &[1, 2, 3], false), QueryDecision::Ignore);
    let mut junk = vec![0u8; 40];
    junk[0] = 0x12;
    junk[1] = 0x34;
    junk[5] = 9; // nine questions, none there
    match decide_query(&p, &junk, false) {
        QueryDecision::Reply { bytes, .. } => assert_eq!(bytes[0..2], [0x12, 0x34]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_upstream_query_carries_only_the_question() {
    let p = allowlist();
    // a pod query with extra sections
    let raw = query(5, "pypi.mirror.internal", 1);
    let mut pod = Packet::parse(&raw).unwrap();
    pod.additional_records
        .push(a("smuggled.data.example", "203.0.113.99", 1));
    let bytes = pod.build_bytes_vec().unwrap();
    let QueryDecision::Forward(q) = decide_query(&p, &bytes, false) else {
        panic!()
    };
    let up = upstream_query(&q, 4242).unwrap();
    let parsed = Packet::parse(&up).unwrap();
    assert_eq!(parsed.id(), 4242);
    assert_eq!(parsed.questions.len(), 1);
    assert!(parsed.additional_records.is_empty());
    assert!(!String::from_utf8_lossy(&up).contains("smuggled"));
}

#[test]
fn answers_follow_the_cname_chain_strip_blocked_and_admit() {
    let p = allowlist();
    let q = forward(&p, "pypi.mirror.internal", 1);
    let up = upstream_answer(
        77,
        &q,
        vec![
            cname("pypi.mirror.internal", "edge.cdn.example"),
            a("edge.cdn.example", "203.0.113.7", 30),
            a("edge.cdn.example", "169.254.169.254", 30),
            a("edge.cdn.example", "10.20.1.1", 30),
            a("unrelated.example", "203.0.113.66", 30),
            a("edge.cdn.example", "198.51.100.9", 999_999),
        ],
        RCODE::NoError,
    );
    let f = finish(&p, &q, 77, &up, TtlBounds { min: 60, max: 600 }).unwrap();
    let (rcode, addrs) = answer_addresses(&f.reply).unwrap();
    assert_eq!(rcode, 0);
    let want: Vec<IpAddr> = ["203.0.113.7", "10.20.1.1", "198.51.100.9"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(addrs, want);
    assert_eq!(
        f.stripped,
        vec![(
            "169.254.169.254".parse().unwrap(),
            DenyReason::Blocked(Class::Metadata, None)
        )]
    );
    assert_eq!(f.admit.len(), 3);
    assert_eq!(
        f.admit[0].ttl, 60,
        "a short TTL is admitted for the minimum"
    );
    assert_eq!(f.admit[2].ttl, 600, "a long TTL is cut to the maximum");
    // ...and lowered in the answer itself
    let reply = Packet::parse(&f.reply).unwrap();
    assert!(reply.answers.iter().all(|r| r.ttl <= 600));
    assert_eq!(reply.id(), 7);
}

#[test]
fn mismatched_or_failed_upstream_answers_are_errors() {
    let p = allowlist();
    let q = forward(&p, "pypi.mirror.internal", 1);
    let up = upstream_answer(78, &q, vec![], RCODE::NoError);
    assert!(finish(&p, &q, 77, &up, TtlBounds::default()).is_err());
    let other = Query {
        name: "other.example".into(),
        ..q.clone()
    };
    let up = upstream_answer(77, &other, vec![], RCODE::NoError);
    assert!(finish(&p, &q, 77, &up, TtlBounds::default()).is_err());
    let up = upstream_answer(77, &q, vec![], RCODE::ServerFailure);
    assert!(finish(&p, &q, 77, &up, TtlBounds::default()).is_err());
    let s = servfail(&q);
    assert_eq!(answer_addresses(&s).unwrap().0, RCODE::ServerFailure as u8);
    // NXDOMAIN passes through
    let up = upstream_answer(77, &q, vec![], RCODE::NameError);
    let f = finish(&p, &q, 77, &up, TtlBounds::default()).unwrap();
    assert_eq!(answer_addresses(&f.reply).unwrap(), (3, vec![]));
}

#[test]
fn too_big_for_udp_is_truncated_and_admits_nothing() {
    let p = policy("[network]\nmode = \"allowlist\"\nallow = [\"*.big.example\"]\n");
    let q = forward(&p, "x.big.example", 1);
    let records: Vec<ResourceRecord<'static>> = (0..60)
        .map(|i| {
            a(
                "x.big.example",
                Box::leak(format!("203.0.113.{i}").into_boxed_str()),
                60,
            )
        })
        .collect();
    let up = upstream_answer(1, &q, records, RCODE::NoError);
    let f = finish(&p, &q, 1, &up, TtlBounds::default()).unwrap();
    assert!(f.truncated && f.admit.is_empty());
    assert!(Packet::parse(&f.reply)
        .unwrap()
        .has_flags(PacketFlag::TRUNCATION));
    // over TCP it fits
    let QueryDecision::Forward(qt) = decide_query(&p, &query(1, "x.big.example", 1), true) else {
        panic!()
    };
    let f = finish(&p, &qt, 1, &up, TtlBounds::default()).unwrap();
    assert_eq!(f.admit.len(), 60);
}
