//! Resource updates (`UpdateTaskRequest.resources`): the `LinuxResources`
//! JSON containerd sends, what of it a gVisor sandbox's cgroup can take, and
//! the policy's filter for a delegate. Pure: the cgroup writes are in
//! [`crate::cgroup`].

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use serde_json::{Map, Value};

/// The type containerd gives a Linux resource update.
pub const LINUX_RESOURCES: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// The update's `LinuxResources` object; an error for any other type.
pub fn parse(any: &Any) -> Result<Map<String, Value>, String> {
    let short = any.type_url.rsplit('/').next().unwrap_or_default();
    if short != "LinuxResources" {
        return Err(format!(
            "agentbox cannot apply resources of type {:?} (only {LINUX_RESOURCES})",
            any.type_url
        ));
    }
    match serde_json::from_slice(&any.value) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err("the resource update is not a JSON object".into()),
        Err(e) => Err(format!("the resource update is not valid JSON: {e}")),
    }
}

/// What a sandbox's cgroup takes from an update.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<i64>,
    pub swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpus: Option<String>,
    pub mems: Option<String>,
    pub pids: Option<i64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The limits as audit fields.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("memory.limit", self.memory.map(Into::into));
        put("memory.swap", self.swap.map(Into::into));
        put("cpu.shares", self.cpu_shares.map(Into::into));
        put("cpu.quota", self.cpu_quota.map(Into::into));
        put("cpu.period", self.cpu_period.map(Into::into));
        put("cpu.cpus", self.cpus.clone().map(Into::into));
        put("cpu.mems", self.mems.clone().map(Into::into));
        put("pids.limit", self.pids.map(Into::into));
        Value::Object(m)
    }
}

/// Set: anything but null, zero, false, "" or an empty list/object.
fn set(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::Bool(true) => true,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => o.values().any(set),
    }
}

/// Split an update into the limits a gVisor sandbox's cgroup can take and
/// the fields it cannot (named `section.field`); deny-all device rules are
/// accepted as they are (gVisor gives the sandbox no host device), a rule
/// that allows a device is not.
pub fn sandbox_limits(res: &Map<String, Value>) -> (Limits, Vec<String>) {
    let mut l = Limits::default();
    let mut refused = Vec::new();
    let int = |v: &Value| v.as_i64().filter(|_| set(v));
    let uint = |v: &Value| v.as_u64().filter(|_| set(v));
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    for (section, v) in res {
        match (section.as_str(), v) {
            (_, v) if !set(v) => {}
            ("memory", Value::Object(m)) => {
                for (k, v) in m {
                    match k.as_str() {
                        "limit" => l.memory = int(v),
                        "swap" => l.swap = int(v),
                        _ if set(v) => refused.push(format!("memory.{k}")),
                        _ => {}
                    }
                }
            }
            ("cpu", Value::Object(m)) => {
                for (k, v) in m {
                    match k.as_str() {
                        "shares" => l.cpu_shares = uint(v),
                        "quota" => l.cpu_quota = int(v),
                        "period" => l.cpu_period = uint(v),
                        "cpus" => l.cpus = text(v),
                        "mems" => l.mems = text(v),
                        _ if set(v) => refused.push(format!("cpu.{k}")),
                        _ => {}
                    }
                }
            }
            ("pids", Value::Object(m)) => {
                for (k, v) in m {
                    match k.as_str() {
                        "limit" => l.pids = int(v),
                        _ if set(v) => refused.push(format!("pids.{k}")),
                        _ => {}
                    }
                }
            }
            ("devices", Value::Array(rules)) => {
                if rules
                    .iter()
                    .any(|r| r.get("allow") == Some(&Value::Bool(true)))
                {
                    refused.push("devices (a rule that allows a device)".into());
                }
            }
            (other, _) => refused.push(other.to_string()),
        }
    }
    if l.swap.is_some() && l.swap != l.memory {
        refused.push("memory.swap (other than the memory limit)".into());
        l.swap = None;
    }
    (l, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn any(v: Value) -> Any {
        Any {
            type_url: LINUX_RESOURCES.into(),
            value: serde_json::to_vec(&v).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn only_linux_resources_json_is_read() {
        assert!(parse(&any(json!({"memory": {"limit": 5}}))).is_ok());
        let mut a = any(json!({}));
        a.type_url = "types.containerd.io/opencontainers/runtime-spec/1/WindowsResources".into();
        assert!(parse(&a).unwrap_err().contains("WindowsResources"));
        let mut a = any(json!([]));
        assert!(parse(&a).is_err());
        a.value = b"{garbage".to_vec();
        assert!(parse(&a).is_err());
    }

    #[test]
    fn what_a_sandbox_cgroup_takes_and_what_it_refuses() {
        // what containerd sends: every section, most of it unset
        let res = json!({
            "devices": [{"allow": false, "access": "rwm"}],
            "memory": {"limit": 268435456, "swap": 268435456, "kernel": null, "swappiness": 0},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "", "realtimeRuntime": 0},
            "pids": {"limit": 64},
            "hugepageLimits": [],
            "blockIO": {"weight": null}
        });
        let (l, refused) = sandbox_limits(res.as_object().unwrap());
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(l.memory, Some(268435456));
        assert_eq!(
            (l.cpu_shares, l.cpu_quota, l.cpu_period),
            (Some(512), Some(50000), Some(100000))
        );
        assert_eq!(l.pids, Some(64));
        assert_eq!(l.cpus, None);

        let res = json!({
            "devices": [{"allow": true, "access": "rwm"}],
            "memory": {"limit": 1, "kernel": 5, "swap": 99},
            "cpu": {"realtimeRuntime": 100},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 1}],
            "unified": {"memory.high": "5"}
        });
        let (_, mut refused) = sandbox_limits(res.as_object().unwrap());
        refused.sort();
        assert_eq!(
            refused,
            [
                "cpu.realtimeRuntime",
                "devices (a rule that allows a device)",
                "hugepageLimits",
                "memory.kernel",
                "memory.swap (other than the memory limit)",
                "unified"
            ]
        );
    }
}
