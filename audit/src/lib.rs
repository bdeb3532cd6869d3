//! agentbox-audit: one pod's run, from agentbox's JSONL audit log, as a
//! person wants to read it — the containers and the policy's decisions, the
//! process tree with argv and exit statuses, files written, files read,
//! network destinations with what the egress rules decided.
//!
//! [`load`] reads the log, [`Filter`] selects records, [`build`] turns them
//! into [`Run`]s (one per pod) and [`text`] renders them; `--json` prints the
//! same `Run`s as JSON.

pub mod model;
pub mod text;

pub use model::{build, load, Filter, Run};
