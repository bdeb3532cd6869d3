//! Resource limits written to the host cgroup of a sandbox process, as
//! runsc itself writes a spec's limits at create, through `cgroups-rs` (the
//! crate containerd-shim already depends on): v1 controllers or the v2
//! unified tree, whichever the host mounts.

use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{hierarchies, Cgroup, Controller, MaxValue};

use crate::resources::Limits;

/// runc's conversion of v1 CPU shares [2, 262144] to a v2 weight [1, 10000].
pub fn weight(shares: u64) -> u64 {
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

fn err(what: &str) -> impl Fn(cgroups_rs::fs::error::Error) -> String + '_ {
    move |e| format!("cannot set {what}: {e}")
}

/// Write `l` to the cgroup of the live process `pid`; the first write the
/// kernel refuses is the error (the writes before it stay).
pub fn apply(pid: u32, l: &Limits) -> Result<(), String> {
    let paths = cgroups_rs::fs::cgroup::get_cgroups_relative_paths_by_pid(pid)
        .map_err(|e| format!("cannot read the cgroup of process {pid}: {e}"))?;
    let h = hierarchies::auto();
    let v2 = h.v2();
    let key = if v2 { "" } else { "memory" };
    let rel = paths
        .get(key)
        .or_else(|| paths.get("cpu"))
        .ok_or_else(|| format!("process {pid} is in no cgroup agentbox can write"))?
        .trim_start_matches('/')
        .to_string();
    let cg = Cgroup::load(h, rel.as_str());
    let need = |what: &str| format!("the sandbox has no {what} cgroup");
    if let Some(m) = l.memory {
        let mem: &MemController = cg.controller_of().ok_or_else(|| need("memory"))?;
        // v1 memory+swap must never be below memory: raise it first, then
        // set it again after the limit (v2 counts swap on its own)
        let memsw = l
            .swap
            .filter(|_| v2 || mem.path().join("memory.memsw.limit_in_bytes").exists());
        let swap_value = |s: i64| if v2 { (s - m).max(0) } else { s };
        if let (Some(s), false) = (memsw, v2) {
            let _ = mem.set_memswap_limit(swap_value(s));
        }
        mem.set_limit(m).map_err(err("the memory limit"))?;
        if let Some(s) = memsw {
            mem.set_memswap_limit(swap_value(s))
                .map_err(err("the swap limit"))?;
        }
    }
    if l.cpu_shares.is_some() || l.cpu_quota.is_some() || l.cpu_period.is_some() {
        let cpu: &CpuController = cg.controller_of().ok_or_else(|| need("cpu"))?;
        if let Some(s) = l.cpu_shares {
            cpu.set_shares(if v2 { weight(s) } else { s })
                .map_err(err("the CPU shares"))?;
        }
        if l.cpu_quota.is_some() || l.cpu_period.is_some() {
            cpu.set_cfs_quota_and_period(l.cpu_quota, l.cpu_period)
                .map_err(err("the CPU quota"))?;
        }
    }
    if let Some(p) = l.pids {
        let pids: &PidController = cg.controller_of().ok_or_else(|| need("pids"))?;
        let max = if p > 0 {
            MaxValue::Value(p)
        } else {
            MaxValue::Max
        };
        pids.set_pid_max(max).map_err(err("the pids limit"))?;
    }
    if l.cpus.is_some() || l.mems.is_some() {
        let set: &CpuSetController = cg.controller_of().ok_or_else(|| need("cpuset"))?;
        if let Some(c) = &l.cpus {
            set.set_cpus(c).map_err(err("the CPUs"))?;
        }
        if let Some(m) = &l.mems {
            set.set_mems(m).map_err(err("the memory nodes"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_become_weights_as_runc_converts_them() {
        assert_eq!(weight(2), 1);
        assert_eq!(weight(1024), 39);
        assert_eq!(weight(262_144), 10_000);
        assert_eq!(weight(0), 1, "below the range");
        assert_eq!(weight(u64::MAX), 10_000, "above the range");
    }

    #[test]
    fn a_process_that_does_not_exist_is_an_error() {
        let e = apply(
            u32::MAX - 1,
            &Limits {
                memory: Some(1 << 20),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("cannot read the cgroup"), "{e}");
    }
}
