//! Capabilities and `noNewPrivileges`.

use serde_json::{Map, Value};

use crate::report::Recorder;

/// The container runtime default set minus `CAP_NET_RAW`.
pub const ALLOWED_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const SETS: &[&str] = &["bounding", "effective", "inheritable", "permitted"];

/// Reduce every capability set to [`ALLOWED_CAPS`] (`caps.drop`), clear the ambient
/// set (`caps.ambient`) and set `noNewPrivileges` (`process.no-new-privileges`).
pub(crate) fn apply(process: &mut Map<String, Value>, rec: &mut Recorder) {
    if let Some(Value::Object(caps)) = process.get_mut("capabilities") {
        for set in SETS {
            if let Some(Value::Array(list)) = caps.get_mut(*set) {
                if list
                    .iter()
                    .all(|c| c.as_str().is_some_and(|c| ALLOWED_CAPS.contains(&c)))
                {
                    continue;
                }
                list.retain(|c| {
                    let name = c.as_str().unwrap_or("");
                    if ALLOWED_CAPS.contains(&name) {
                        true
                    } else {
                        rec.push("caps.drop", format!("{set}:{name}"), "removed");
                        false
                    }
                });
            }
        }
        if let Some(Value::Array(list)) = caps.get_mut("ambient") {
            for c in list.iter() {
                rec.push(
                    "caps.ambient",
                    format!("ambient:{}", c.as_str().unwrap_or("")),
                    "removed",
                );
            }
            list.clear();
        }
    }
    if process.get("noNewPrivileges") != Some(&Value::Bool(true)) {
        process.insert("noNewPrivileges".to_string(), Value::Bool(true));
        rec.push("process.no-new-privileges", "noNewPrivileges", "set");
    }
}
