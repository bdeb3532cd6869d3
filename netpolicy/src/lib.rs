//! `agentbox-netpolicy`: the pure logic of agentbox's pod egress control.
//!
//! - [`config`]: the `[network]` table and the `agentbox.dev/network` annotation;
//! - [`addr`]: prefixes, blocked classes (metadata, private, the node's own…),
//!   IPv4 forms embedded in IPv6 addresses;
//! - [`entry`]: allow-list entries (prefixes, names, ports);
//! - [`policy`]: one phase compiled, with the reference decision per packet;
//! - [`ruleset`]: the nftables ruleset that enforces it, as data; [`eval`]
//!   runs it on test packets;
//! - [`dns`]: what agentbox's resolver asks upstream and admits;
//! - [`packet`]: denied packets from NFLOG, TCP resets for them;
//! - [`ratelimit`]: audit records per second, with a count of the rest;
//! - [`explain`]: a pod's effective network policy for a person.
//!
//! No sockets, no processes: the shim does the I/O.

pub mod addr;
pub mod config;
pub mod dns;
pub mod entry;
pub mod eval;
pub mod explain;
pub mod packet;
pub mod policy;
pub mod ratelimit;
pub mod ruleset;

pub use config::{ConfigError, Mode, NetworkConfig, PhasePolicy, TtlBounds, ANNOTATION};
pub use policy::{Compiled, DenyReason, Ports};
