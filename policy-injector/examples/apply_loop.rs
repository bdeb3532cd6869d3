//! `apply` on the typical CRI spec N times, for instruction counts that do not
//! depend on machine load (BENCHMARKS.md):
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/apply_loop sensitive 1200`
//! minus the same with 200, divided by 1000.

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use agentbox_policy::{apply, NoHostFs, Policy, Profile};

fn main() {
    let pretty = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cri-container.json"
    ))
    .expect("fixture");
    let v: serde_json::Value = serde_json::from_slice(&pretty).expect("fixture parses");
    let spec = serde_json::to_vec(&v).expect("serialises");
    let mut args = std::env::args().skip(1);
    let profile = match args.next().as_deref() {
        Some("standard") => Profile::Standard,
        _ => Profile::Sensitive,
    };
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let policy = Policy::from_profile(profile);
    let mut changes = 0;
    for _ in 0..n {
        let d = apply(&policy, std::hint::black_box(&spec), &NoHostFs).expect("applies");
        changes += d.report().changes.len();
    }
    println!("{changes} changes");
}
