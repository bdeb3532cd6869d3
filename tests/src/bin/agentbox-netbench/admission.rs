//! What the resolver pays to admit an answer before it answers: the
//! addresses of one answer written into the pod's timeout sets, in one
//! transaction (`Nft::admit`), against learning from a failed exclusive
//! add whether each element is there (`Nft::admit_each`, what agentbox did
//! before: the kernel's abort waits for an RCU grace period). Interleaved,
//! in a namespace of the bench's own, on the pod's ruleset.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use agentbox_netpolicy::policy::{TCP, UDP};
use agentbox_netpolicy::ruleset::{dns_element, Ruleset, TABLE};
use agentbox_shim::pod::network::admit::Element;
use agentbox_shim::pod::network::netns::NetNs;
use agentbox_shim::pod::network::nft::Nft;
use anyhow::Result;

use crate::{median, pct};

/// The elements of an answer for `name:443` with one address.
fn answer(addr: IpAddr) -> Vec<Element> {
    [TCP, UDP]
        .iter()
        .map(|p| {
            let (set, fields, key) = dns_element(addr, Some((*p, 443)));
            Element {
                set,
                fields,
                key,
                timeout_ms: 300_000,
            }
        })
        .collect()
}

pub fn admission_cost(ns: &NetNs, rs: &Ruleset, runs: usize) -> Result<()> {
    let err = |e| anyhow::anyhow!("{e}");
    let [mut again, mut again_each, mut fresh, mut fresh_each] = ns
        .run(|| -> Result<[Vec<f64>; 4]> {
            let mut n = Nft::open()?;
            n.apply(rs).map_err(err)?;
            let known = answer(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)));
            n.admit(TABLE, &known).map_err(err)?;
            let mut out: [Vec<f64>; 4] = Default::default();
            let us = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
            for i in 0..runs as u32 {
                // an address answered before (the common case: the same name again)
                let t = Instant::now();
                n.admit(TABLE, &known).map_err(err)?;
                out[0].push(us(t));
                let t = Instant::now();
                n.admit_each(TABLE, &known).map_err(err)?;
                out[1].push(us(t));
                // an address not admitted yet
                let new = answer(IpAddr::V4(Ipv4Addr::from(0xcb00_7180 + 2 * i)));
                let t = Instant::now();
                n.admit(TABLE, &new).map_err(err)?;
                out[2].push(us(t));
                let new = answer(IpAddr::V4(Ipv4Addr::from(0xcb00_7181 + 2 * i)));
                let t = Instant::now();
                n.admit_each(TABLE, &new).map_err(err)?;
                out[3].push(us(t));
            }
            Ok(out)
        })
        .map_err(|e| anyhow::anyhow!(e))??;
    println!("## admitting a resolver answer before answering ({runs} runs each, interleaved, in-process)\n");
    println!("One address for `name:443`: two elements (tcp, udp) with a timeout.\n");
    println!("| element | how | median µs | p95 µs |\n|---|---|---|---|");
    for (what, how, v) in [
        ("already admitted", "one transaction (now)", &mut again),
        (
            "already admitted",
            "a failed exclusive add first (before)",
            &mut again_each,
        ),
        ("new", "one transaction (now)", &mut fresh),
        (
            "new",
            "one transaction per element (before)",
            &mut fresh_each,
        ),
    ] {
        println!(
            "| {what} | {how} | {:.0} | {:.0} |",
            median(&mut v.clone()),
            pct(v, 0.95)
        );
    }
    println!();
    Ok(())
}
