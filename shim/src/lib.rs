//! `containerd-shim-agentbox-v1`: a containerd shim v2 that rewrites every
//! container's OCI spec under the agentbox policy and then runs it in a real
//! sandbox — gVisor, driven directly through runsc's command line (the runsc
//! backend), or any other shim v2 such as Kata's (the shim backend).
//!
//! Layout: `bootstrap` (containerd's start/delete/serve protocol), `pod`
//! (the pod daemon both backends share: admission under the policy, bundle
//! state, lifetime), `backend` (one folder per backend behind one seam:
//! `runsc` drives runsc itself, `delegate` forwards to another shim v2),
//! `enforce` (policy on bundles and exec specs), `audit`, `config`,
//! `options` (runtime options), `resources` and `cgroup` (resource updates),
//! `reaper`, `events`, `logging`, `trim`.

pub mod audit;
pub mod backend;
pub mod bootstrap;
pub mod cgroup;
pub mod config;
pub mod enforce;
pub mod events;
pub mod logging;
pub mod options;
pub mod output;
pub mod pod;
pub mod reaper;
pub mod resources;
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
