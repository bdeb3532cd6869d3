//! Admitting resolved addresses into the pod's timeout sets, fast.
//!
//! The resolver admits every answered address before the answer reaches the
//! pod, so this is on the path of every allowed DNS answer. An element is
//! added with `NLM_F_EXCL`; one that is already there must be deleted and
//! added again in one transaction to get its new timeout (kernels before
//! 6.10 ignore a plain re-add's timeout). Learning that it is there from a
//! failed add costs an aborted transaction, and the kernel's abort waits for
//! an RCU grace period: ~20 ms a query on a busy node, where a committed
//! transaction costs ~30 µs. So [`Ledger`] remembers what this socket added
//! and when the kernel expires it, and [`Nft::admit`] writes every element of
//! an answer in one transaction that does not fail: delete-and-add for
//! elements surely still there, add for the others. If the ledger is wrong
//! (something else touched the set, or an expiry at the margin), the
//! transaction fails whole, nothing of it applies, and each element is
//! written the slow, certain way.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use agentbox_netpolicy::ruleset::{Field, Value};
use netlink_packet_core::NLM_F_EXCL;
use netlink_packet_netfilter::nftables::{ListAttribute, SetElementAttribute};

use super::nft::{elements_msg, key_data, Msg, Nft};
use super::nl::NlError;

/// An element within this much of its expiry is not relied on to be there.
pub const MARGIN: Duration = Duration::from_secs(1);
/// Ledger entries kept at most; past it, expired ones are forgotten.
const PRUNE_AT: usize = 4096;

/// One set element to admit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    pub set: &'static str,
    pub fields: Vec<Field>,
    pub key: Vec<Value>,
    pub timeout_ms: u64,
}

/// How to write one element in the one-transaction path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Not there (or expired): add it.
    Add,
    /// Surely there: delete and add it again, for the new timeout.
    Replace,
}

/// What this socket added to the sets and when the kernel expires it.
#[derive(Debug, Default)]
pub struct Ledger {
    until: HashMap<(&'static str, Vec<Value>), Instant>,
}

impl Ledger {
    /// How to write `e` at `now`.
    pub fn plan(&self, e: &Element, now: Instant) -> Write {
        match self.until.get(&(e.set, e.key.clone())) {
            Some(t) if *t > now + MARGIN => Write::Replace,
            _ => Write::Add,
        }
    }

    /// `e` was written at `now`.
    pub fn added(&mut self, e: &Element, now: Instant) {
        if self.until.len() >= PRUNE_AT {
            self.until.retain(|_, t| *t > now);
        }
        self.until.insert(
            (e.set, e.key.clone()),
            now + Duration::from_millis(e.timeout_ms),
        );
    }

    /// What the ledger says about `e` is not to be trusted.
    pub fn forget(&mut self, e: &Element) {
        self.until.remove(&(e.set, e.key.clone()));
    }

    /// The sets were replaced or removed: nothing is known to be there.
    pub fn clear(&mut self) {
        self.until.clear();
    }

    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }
}

fn one(e: &Element, timeout: bool) -> Vec<ListAttribute<SetElementAttribute>> {
    let mut a = vec![key_data(&e.fields, &e.key)];
    if timeout {
        a.push(SetElementAttribute::Timeout(e.timeout_ms));
    }
    vec![ListAttribute::Element(a)]
}

fn add(table: &str, e: &Element) -> (Msg, String) {
    let mut m = elements_msg(table, e.set, one(e, true), false);
    m.header.flags |= NLM_F_EXCL;
    (m, format!("add to set {}", e.set))
}

fn delete(table: &str, e: &Element) -> (Msg, String) {
    (
        elements_msg(table, e.set, one(e, false), true),
        format!("refresh set {}", e.set),
    )
}

impl Nft {
    /// Admit `elems` of `table`'s timeout sets, each with its own timeout
    /// (an element already there gets the new one). All or, on an error,
    /// an error naming what failed.
    pub fn admit(&mut self, table: &str, elems: &[Element]) -> Result<(), NlError> {
        if elems.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        let mut msgs = Vec::with_capacity(elems.len() * 2);
        for e in elems {
            if self.ledger.plan(e, now) == Write::Replace {
                msgs.push(delete(table, e));
            }
            msgs.push(add(table, e));
        }
        if self.batch(msgs).is_ok() {
            for e in elems {
                self.ledger.added(e, now);
            }
            return Ok(());
        }
        // the ledger was wrong about one of them: the slow, certain way
        self.admit_each(table, elems)
    }

    /// Admit `elems` one by one, each learning from a failed exclusive add
    /// whether it is there: the slow, certain way (an aborted transaction
    /// per element already there). Elements before a failing one stay
    /// admitted.
    pub fn admit_each(&mut self, table: &str, elems: &[Element]) -> Result<(), NlError> {
        for e in elems {
            self.ledger.forget(e);
            let now = Instant::now();
            match self.batch(vec![add(table, e)]) {
                // already there: delete and add in one transaction
                Err(err) if err.errno == libc::EEXIST => {
                    self.batch(vec![delete(table, e), add(table, e)])?
                }
                r => r?,
            }
            self.ledger.added(e, now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentbox_netpolicy::ruleset::dns_element;

    fn elem(addr: &str, timeout_ms: u64) -> Element {
        let (set, fields, key) = dns_element(addr.parse().unwrap(), Some((6, 443)));
        Element {
            set,
            fields,
            key,
            timeout_ms,
        }
    }

    #[test]
    fn an_element_is_replaced_only_while_surely_there() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        let e = elem("203.0.113.9", 10_000);
        assert_eq!(l.plan(&e, t0), Write::Add, "never added");
        l.added(&e, t0);
        assert_eq!(l.plan(&e, t0), Write::Replace);
        assert_eq!(
            l.plan(&e, t0 + Duration::from_millis(8_900)),
            Write::Replace
        );
        // within the margin of its expiry, and after it: added
        assert_eq!(l.plan(&e, t0 + Duration::from_millis(9_000)), Write::Add);
        assert_eq!(l.plan(&e, t0 + Duration::from_millis(9_500)), Write::Add);
        assert_eq!(l.plan(&e, t0 + Duration::from_secs(60)), Write::Add);
        // another address, or the same one in another set, is its own element
        assert_eq!(l.plan(&elem("203.0.113.8", 10_000), t0), Write::Add);
        let (set, fields, key) = dns_element("203.0.113.9".parse().unwrap(), None);
        let any_port = Element {
            set,
            fields,
            key,
            timeout_ms: 10_000,
        };
        assert_eq!(l.plan(&any_port, t0), Write::Add);
        l.forget(&e);
        assert_eq!(l.plan(&e, t0), Write::Add);
        l.added(&e, t0);
        l.clear();
        assert!(l.is_empty());
        assert_eq!(l.plan(&e, t0), Write::Add);
    }

    #[test]
    fn a_refresh_extends_and_a_shorter_ttl_shortens() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        l.added(&elem("203.0.113.9", 5_000), t0);
        l.added(&elem("203.0.113.9", 60_000), t0 + Duration::from_secs(3));
        assert_eq!(
            l.plan(&elem("203.0.113.9", 1), t0 + Duration::from_secs(30)),
            Write::Replace
        );
        // the kernel takes the last timeout written, so the ledger does too
        l.added(&elem("203.0.113.9", 2_000), t0 + Duration::from_secs(30));
        assert_eq!(
            l.plan(&elem("203.0.113.9", 1), t0 + Duration::from_secs(31)),
            Write::Add
        );
    }

    #[test]
    fn the_ledger_forgets_expired_elements_when_large() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        for i in 0..PRUNE_AT as u32 {
            let a = std::net::Ipv4Addr::from(0xcb00_7100u32 + i).to_string();
            l.added(&elem(&a, 1_000), t0);
        }
        assert_eq!(l.len(), PRUNE_AT);
        l.added(&elem("198.51.100.1", 60_000), t0 + Duration::from_secs(2));
        assert_eq!(l.len(), 1, "only the live one is kept");
    }
}
