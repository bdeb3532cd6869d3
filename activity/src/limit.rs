//! The pod's rate limit (a token bucket) and the count of what was dropped:
//! by the rate limit, by the sentry (its socket buffer was full), and on the
//! way to the disk (the queue was full).

use std::collections::BTreeMap;

use serde_json::{json, Map};

use crate::Record;

/// A token bucket over a caller-supplied clock (seconds), so it unit-tests
/// without sleeping.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: f64,
}

impl Bucket {
    pub fn new(rate_per_second: u32, burst: u32) -> Bucket {
        Bucket {
            rate: rate_per_second.max(1) as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: 0.0,
        }
    }

    /// Take one token at time `now`; false when the bucket is empty.
    pub fn take(&mut self, now: f64) -> bool {
        if now > self.last {
            self.tokens = (self.tokens + (now - self.last) * self.rate).min(self.burst);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What was dropped since the last `dropped` record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drops {
    /// By record kind, over the rate limit.
    pub rate: BTreeMap<&'static str, u64>,
    /// Records the disk queue had no room for.
    pub queue: u64,
    /// Processes no longer followed to keep memory bounded (their exits
    /// will not be recorded).
    pub evicted: u64,
    /// Points the sentry could not send (its own count, cumulative).
    gvisor_total: u64,
    gvisor_reported: u64,
    last_header: u32,
}

impl Drops {
    /// The header's cumulative count of dropped points (it wraps at u32).
    pub fn saw_gvisor_count(&mut self, count: u32) {
        let delta = count.wrapping_sub(self.last_header) as u64;
        self.last_header = count;
        self.gvisor_total += delta;
    }

    pub fn rate_limited(&mut self, event: &'static str) {
        *self.rate.entry(event).or_default() += 1;
    }

    pub fn pending(&self) -> bool {
        !self.rate.is_empty()
            || self.queue > 0
            || self.evicted > 0
            || self.gvisor_total > self.gvisor_reported
    }

    /// The `dropped` record for everything counted since the last one.
    pub fn take_record(&mut self) -> Option<Record> {
        if !self.pending() {
            return None;
        }
        let mut f = Map::new();
        let rate: u64 = self.rate.values().sum();
        if rate > 0 {
            f.insert("rate_limited".into(), json!(rate));
            f.insert("by_kind".into(), json!(self.rate));
        }
        if self.queue > 0 {
            f.insert("queue_full".into(), json!(self.queue));
        }
        if self.evicted > 0 {
            f.insert("processes_evicted".into(), json!(self.evicted));
        }
        let g = self.gvisor_total - self.gvisor_reported;
        if g > 0 {
            f.insert("gvisor_dropped".into(), json!(g));
        }
        self.rate.clear();
        self.queue = 0;
        self.evicted = 0;
        self.gvisor_reported = self.gvisor_total;
        Some(Record::new("dropped", String::new(), f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new(10, 5);
        assert_eq!((0..20).filter(|_| b.take(0.0)).count(), 5);
        // one second later: ten more, no more
        assert_eq!(
            (0..20).filter(|_| b.take(1.0)).count(),
            5,
            "refill is capped by the burst"
        );
        assert_eq!((0..20).filter(|_| b.take(1.5)).count(), 5);
        assert!(!b.take(1.5));
        // a clock going backwards never adds tokens
        assert!(!b.take(0.2));
    }

    #[test]
    fn drops_are_reported_once() {
        let mut d = Drops::default();
        assert!(d.take_record().is_none());
        d.rate_limited("file");
        d.rate_limited("file");
        d.rate_limited("process");
        d.queue += 3;
        d.saw_gvisor_count(7);
        let r = d.take_record().unwrap();
        assert_eq!(r.event, "dropped");
        assert_eq!(r.fields["rate_limited"], 3);
        assert_eq!(r.fields["by_kind"]["file"], 2);
        assert_eq!(r.fields["queue_full"], 3);
        assert_eq!(r.fields["gvisor_dropped"], 7);
        assert!(d.take_record().is_none());
        // the sentry's count is cumulative: only the increase is new
        d.saw_gvisor_count(9);
        assert_eq!(d.take_record().unwrap().fields["gvisor_dropped"], 2);
        // and it wraps
        d.saw_gvisor_count(u32::MAX);
        d.take_record();
        d.saw_gvisor_count(1);
        assert_eq!(d.take_record().unwrap().fields["gvisor_dropped"], 2);
    }
}
