//! agentbox's reader of gVisor runtime monitoring.
//!
//! gVisor's sentry streams trace points to a "remote" sink over a
//! `SOCK_SEQPACKET` unix socket (`runsc --pod-init-config`). This crate is the
//! pure part of agentbox's sink: the wire format ([`wire`]), the messages
//! ([`proto`], from gVisor's Apache-2.0 `.proto` files), decoding ([`event`]),
//! the process tree and per-process file aggregation ([`tracker`]), the rate
//! limit and drop counts ([`limit`]), and the `[activity]` config with the
//! pod-init config it becomes ([`config`]). [`Pipeline`] ties them together;
//! the shim owns the socket, the threads and the audit log.
//!
//! Never an environment value: the environment the sentry sends with every
//! exec is not even decoded.

pub mod config;
pub mod event;
pub mod limit;
pub mod proto;
pub mod tracker;
pub mod wire;

use serde_json::{Map, Value};

pub use config::{ActivityConfig, Kind};
pub use tracker::{Redact, Redactor, Tracker};

/// One audit record: its event name, the gVisor container id it is about
/// (empty for the pod as a whole) and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub event: &'static str,
    pub container_id: String,
    pub fields: Map<String, Value>,
}

impl Record {
    pub fn new(event: &'static str, container_id: String, fields: Map<String, Value>) -> Record {
        Record {
            event,
            container_id,
            fields,
        }
    }
}

/// Frames in, rate-limited records out.
pub struct Pipeline {
    tracker: Tracker,
    bucket: limit::Bucket,
    pub drops: limit::Drops,
    /// Frames that could not be decoded.
    pub malformed: u64,
    scratch: Vec<Record>,
}

impl Pipeline {
    pub fn new(cfg: ActivityConfig, redact: Redactor) -> Pipeline {
        Pipeline {
            bucket: limit::Bucket::new(cfg.rate_per_second, cfg.burst),
            tracker: Tracker::new(cfg, redact),
            drops: limit::Drops::default(),
            malformed: 0,
            scratch: Vec::new(),
        }
    }

    /// One frame from the sentry at time `now` (seconds, any origin); the
    /// records to write go to `out`, after a `dropped` record when something
    /// was dropped since the last one.
    pub fn ingest(&mut self, frame: &[u8], now: f64, out: &mut Vec<Record>) {
        let (header, payload) = match wire::parse_frame(frame) {
            Ok(x) => x,
            Err(_) => {
                self.malformed += 1;
                return;
            }
        };
        self.drops.saw_gvisor_count(header.dropped);
        let evicted = self.tracker.evicted();
        match event::decode(header.message_type, payload) {
            Ok(ev) => self.tracker.handle(ev, &mut self.scratch),
            Err(_) => self.malformed += 1,
        }
        self.drops.evicted += self.tracker.evicted() - evicted;
        self.admit(now, out);
    }

    /// The sandbox is gone: everything still held, then the last drop count.
    pub fn finish(&mut self, now: f64, out: &mut Vec<Record>) {
        self.tracker.finish(&mut self.scratch);
        self.admit(now, out);
        out.extend(self.drops.take_record());
    }

    fn admit(&mut self, now: f64, out: &mut Vec<Record>) {
        for r in self.scratch.drain(..) {
            if self.bucket.take(now) {
                if self.drops.pending() {
                    out.extend(self.drops.take_record());
                }
                out.push(r);
            } else {
                self.drops.rate_limited(r.event);
            }
        }
    }

    /// Processes currently followed.
    pub fn processes(&self) -> usize {
        self.tracker.processes()
    }
}

#[cfg(test)]
mod tests;
