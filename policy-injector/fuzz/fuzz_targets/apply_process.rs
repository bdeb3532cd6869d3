//! Fuzz `apply_process` on arbitrary bytes: it must never panic.
#![no_main]

use agentbox_policy::{apply_process, Policy, Profile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = Policy::from_profile(Profile::Sensitive);
    let mut ann = serde_json::Map::new();
    ann.insert(
        "io.kubernetes.cri.container-name".into(),
        serde_json::Value::String("agent".into()),
    );
    let _ = apply_process(&policy, data, &ann);
});
