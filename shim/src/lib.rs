//! `containerd-shim-agentbox-v1`: a containerd shim v2 that rewrites every
//! container's OCI spec under the agentbox policy and then runs it in a real
//! sandbox — gVisor, driven directly through runsc's command line (the runsc
//! backend), or any other shim v2 such as Kata's (the shim backend).
//!
//! Layout: `bootstrap` (containerd's start/delete/serve protocol), `task`
//! (the Task service of the runsc backend), `forward` (the shim backend),
//! `enforce` (policy on bundles and exec specs), `runsc` (command lines and
//! the executor), `io` (FIFOs, pipes, terminals), `audit`, `config`,
//! `options` (runtime options), `reaper`, `process`, `events`, `stats`.

pub mod audit;
pub mod bootstrap;
pub mod config;
pub mod enforce;
pub mod events;
pub mod forward;
pub mod io;
pub mod logging;
pub mod oom;
pub mod options;
pub mod process;
pub mod reaper;
pub mod runsc;
pub mod stats;
pub mod task;
pub mod trim;

/// Become a child subreaper, so runsc's sandbox processes stay ours to reap.
pub fn reaper_setup() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
