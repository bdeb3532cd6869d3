//! Fuzz `apply` on arbitrary bytes under both profiles: it must never panic, and
//! an allowed spec must be a fixed point (a second apply changes nothing).
#![no_main]

use agentbox_policy::{apply, apply_value, Decision, NoHostFs, Policy, Profile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for profile in [Profile::Standard, Profile::Sensitive] {
        let policy = Policy::from_profile(profile);
        if let Ok(Decision::Allowed { spec, .. }) = apply(&policy, data, &NoHostFs) {
            match apply_value(&policy, spec.clone(), &NoHostFs) {
                Decision::Allowed { spec: again, report } => {
                    assert_eq!(again, spec, "second apply changed the spec");
                    assert!(report.changes.is_empty(), "second apply reported changes");
                }
                Decision::Rejected { reason, .. } => panic!("second apply refused: {reason}"),
            }
        }
    }
});
