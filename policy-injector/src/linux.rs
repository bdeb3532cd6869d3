//! `/proc` and `/sys` masking, host devices, the device cgroup, sysctls.

use serde_json::{json, Map, Value};

use crate::report::Recorder;

/// The container runtime defaults (containerd and the kubelet use the same list).
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The Kubernetes "safe" sysctls (namespaced, cannot affect the node).
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

fn restore(
    linux: &mut Map<String, Value>,
    key: &str,
    want: &[&str],
    rule: &str,
    rec: &mut Recorder,
) {
    let entry = linux
        .entry(key.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = entry {
        for p in want {
            if !list.iter().any(|x| x.as_str() == Some(p)) {
                list.push(Value::String(p.to_string()));
                rec.push(rule, *p, "injected");
            }
        }
    }
}

fn broad_allow(rule: &Map<String, Value>) -> bool {
    if rule.get("allow") != Some(&Value::Bool(true)) {
        return false;
    }
    let ty = rule.get("type").and_then(Value::as_str).unwrap_or("a");
    let wild = |k: &str| match rule.get(k) {
        None | Some(Value::Null) => true,
        Some(v) => v.as_i64() == Some(-1),
    };
    ty == "a" || ty.is_empty() || wild("major") || wild("minor")
}

/// Allow-all device rules of a `LinuxResources` object (`at` names it in the
/// report) become deny-all (`linux.device-cgroup`).
pub(crate) fn device_rules(res: &mut Map<String, Value>, at: &str, rec: &mut Recorder) {
    if let Some(Value::Array(rules)) = res.get_mut("devices") {
        for (i, r) in rules.iter_mut().enumerate() {
            if r.as_object().is_some_and(broad_allow) {
                *r = json!({"allow": false, "access": "rwm"});
                rec.push(
                    "linux.device-cgroup",
                    format!("{at}.devices[{i}]"),
                    "replaced",
                );
            }
        }
    }
}

/// Masked/read-only paths (`linux.masked-paths`, `linux.readonly-paths`), host
/// devices (`linux.devices`), allow-all device rules (`linux.device-cgroup`),
/// unsafe sysctls (`linux.sysctl`).
pub(crate) fn apply(linux: &mut Map<String, Value>, rec: &mut Recorder) {
    restore(
        linux,
        "maskedPaths",
        MASKED_PATHS,
        "linux.masked-paths",
        rec,
    );
    restore(
        linux,
        "readonlyPaths",
        READONLY_PATHS,
        "linux.readonly-paths",
        rec,
    );

    if let Some(Value::Array(devs)) = linux.get_mut("devices") {
        for d in devs.iter() {
            let path = d.get("path").and_then(Value::as_str).unwrap_or("?");
            rec.push("linux.devices", path, "removed");
        }
        devs.clear();
    }

    if let Some(Value::Object(res)) = linux.get_mut("resources") {
        device_rules(res, "linux.resources", rec);
    }

    if let Some(Value::Object(sysctl)) = linux.get_mut("sysctl") {
        let unsafe_key = |k: &str| {
            if k.contains('/') {
                !SAFE_SYSCTLS.contains(&k.replace('/', ".").as_str())
            } else {
                !SAFE_SYSCTLS.contains(&k)
            }
        };
        if sysctl.keys().any(|k| unsafe_key(k)) {
            sysctl.retain(|k, _| {
                if unsafe_key(k) {
                    rec.push("linux.sysctl", k.as_str(), "removed");
                    false
                } else {
                    true
                }
            });
        }
    }
}
