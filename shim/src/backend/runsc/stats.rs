//! `runsc events --stats` (runc's event JSON) to containerd's cgroup v1 metrics.

use containerd_shim_protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField, MessageFull};
use serde_json::Value;

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or(0)
}

/// Convert one stats event into a packed `io.containerd.cgroups.v1.Metrics`.
pub fn metrics_from_runsc(out: &[u8]) -> Result<Any, String> {
    let text = String::from_utf8_lossy(out);
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| "runsc events printed nothing".to_string())?;
    let v: Value = serde_json::from_str(line)
        .map_err(|e| format!("runsc events printed unreadable output: {e}"))?;
    if v.get("type").and_then(Value::as_str) != Some("stats") {
        return Err("runsc events printed no stats".into());
    }
    let d = v.get("data").cloned().unwrap_or(Value::Null);
    let m = Metrics {
        cpu: MessageField::some(CPUStat {
            usage: MessageField::some(CPUUsage {
                total: u(&d, "/cpu/usage/total"),
                kernel: u(&d, "/cpu/usage/kernel"),
                user: u(&d, "/cpu/usage/user"),
                per_cpu: d
                    .pointer("/cpu/usage/percpu")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_u64).collect())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat {
            cache: u(&d, "/memory/cache"),
            usage: MessageField::some(MemoryEntry {
                limit: u(&d, "/memory/usage/limit"),
                usage: u(&d, "/memory/usage/usage"),
                max: u(&d, "/memory/usage/max"),
                failcnt: u(&d, "/memory/usage/failcnt"),
                ..Default::default()
            }),
            ..Default::default()
        }),
        pids: MessageField::some(PidsStat {
            current: u(&d, "/pids/current"),
            limit: u(&d, "/pids/limit"),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Any {
        type_url: Metrics::descriptor().full_name().to_string(),
        value: m.write_to_bytes().map_err(|e| e.to_string())?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_a_stats_event() {
        let ev = br#"{"type":"stats","id":"c","data":{"cpu":{"usage":{"total":1000,"percpu":[600,400],"kernel":10,"user":990}},"memory":{"cache":5,"usage":{"usage":4096,"limit":8192}},"pids":{"current":3}}}"#;
        let any = metrics_from_runsc(ev).unwrap();
        assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
        let m = Metrics::parse_from_bytes(&any.value).unwrap();
        assert_eq!(m.cpu.usage.total, 1000);
        assert_eq!(m.cpu.usage.per_cpu, vec![600, 400]);
        assert_eq!(m.memory.usage.usage, 4096);
        assert_eq!(m.pids.current, 3);
    }

    #[test]
    fn rejects_other_output() {
        assert!(metrics_from_runsc(b"").is_err());
        assert!(metrics_from_runsc(b"{\"type\":\"oom\"}").is_err());
        assert!(metrics_from_runsc(b"not json").is_err());
    }
}
