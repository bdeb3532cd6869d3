//! Rate limiting of audit records: a token bucket that counts what it
//! refused, so a flood of denied packets cannot fill the disk and the log
//! still says how much was left out.

/// `rate` records a second after a burst of `burst`.
#[derive(Clone, Debug)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
    suppressed: u64,
}

impl Limiter {
    pub fn new(rate_per_sec: u32, burst: u32) -> Limiter {
        Limiter {
            rate: rate_per_sec as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last_ms: 0,
            suppressed: 0,
        }
    }

    /// May a record be written at `now_ms`? `Some(n)`: yes, and `n` records
    /// were left out since the last one written; `None`: leave this one out.
    pub fn admit(&mut self, now_ms: u64) -> Option<u64> {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }

    /// Records left out and not yet reported.
    pub fn pending(&self) -> u64 {
        self.suppressed
    }

    /// Report the pending count (e.g. in a final summary) and reset it.
    pub fn take_pending(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_rate_and_counted() {
        let mut l = Limiter::new(10, 20);
        let mut written = 0;
        let mut reported = 0;
        // 10 000 events within one second
        for i in 0..10_000u64 {
            if let Some(n) = l.admit(i / 10) {
                written += 1;
                reported += n;
            }
        }
        assert!((20..=31).contains(&written), "{written}");
        // a second later the next record reports everything left out
        let n = l.admit(5_000).unwrap();
        // every event was either written or counted as left out
        assert_eq!(reported + n + written, 10_000);
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn pending_is_reported_once() {
        let mut l = Limiter::new(1, 1);
        assert_eq!(l.admit(0), Some(0));
        assert_eq!(l.admit(1), None);
        assert_eq!(l.admit(2), None);
        assert_eq!(l.take_pending(), 2);
        assert_eq!(l.take_pending(), 0);
    }
}
