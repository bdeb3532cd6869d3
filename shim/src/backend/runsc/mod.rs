//! The runsc backend: agentbox is the gVisor shim. One daemon serves a whole
//! pod group; the pod's first container (the CRI sandbox, or a lone `ctr run`
//! container) is the runsc sandbox and every later container of the group is
//! created in it as a subcontainer (runsc reads the CRI annotations of the
//! spec to decide).
//!
//! Layout: `task` (the Task service), `lifecycle` (Create, Start, Delete),
//! `container` (Create: rootfs and
//! `runsc create`), `exec` (exec'd processes), `exit` (waiting for exits and
//! reporting them), `cli` (runsc's command lines) and `executor` (running
//! them), `io` (FIFOs, pipes, terminals), `process`, `oom`, `stats`,
//! `update` (resource updates), `cleanup` (containerd's `delete` after a
//! crash), and the fast runsc configuration: `tuning` (which flags), `probe`
//! (what this runsc supports), `hints` (emptyDir mount hints), `tune` (the
//! Create step).

pub mod cleanup;
pub mod cli;
mod container;
mod exec;
pub mod executor;
mod exit;
pub mod hints;
pub mod io;
mod lifecycle;
pub mod oom;
pub mod probe;
pub mod process;
pub mod stats;
mod task;
mod tune;
pub mod tuning;
mod update;

use std::time::Duration;

use containerd_shim_protos::ttrpc::{self, Code};

pub use cleanup::CleanupState;
pub use cli::{Argv, RunscCli};
pub use executor::{parse_ps, summarize, Runsc, RunscError};
pub use task::RunscTask;

/// How long the output of an exited process may take to drain.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn status(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn not_found(what: &str, id: &str) -> ttrpc::Error {
    status(Code::NOT_FOUND, format!("{what} {id} not found"))
}

fn internal(e: impl std::fmt::Display) -> ttrpc::Error {
    status(Code::INTERNAL, e.to_string())
}
