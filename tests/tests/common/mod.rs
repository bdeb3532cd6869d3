//! Shared setup of the agentbox end-to-end tests (see `agentbox_e2e::agentbox`).
#![allow(dead_code, unused_imports)]
pub use agentbox_e2e::agentbox::*;
