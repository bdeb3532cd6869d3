//! `apply` on the typical CRI spec (or, with a third argument `large`, the
//! bench's large one) N times, for instruction counts that do not depend on
//! machine load (BENCHMARKS.md):
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
    let mut v: serde_json::Value = serde_json::from_slice(&pretty).expect("fixture parses");
    let mut args = std::env::args().skip(1);
    let profile = match args.next().as_deref() {
        Some("standard") => Profile::Standard,
        _ => Profile::Sensitive,
    };
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    if args.next().as_deref() == Some("large") {
        // as benches/apply.rs builds it
        let env = v["process"]["env"].as_array_mut().expect("env");
        for i in 0..400 {
            env.push(serde_json::json!(match i % 4 {
                0 => format!("SETTING_{i}=value-{i}-with-some-length/and/a/path"),
                1 => format!("SVC_{i}_SERVICE_HOST=10.96.{}.{}", i / 250, i % 250),
                2 => format!("APP_TOKEN_{i}=tok{i}"),
                _ => format!("URL_{i}=https://user:pw{i}@host{i}.example/x"),
            }));
        }
        let mounts = v["mounts"].as_array_mut().expect("mounts");
        for i in 0..300 {
            mounts.push(serde_json::json!({
                "destination": format!("/data/vol{i}"),
                "type": "bind",
                "source": format!("/var/lib/kubelet/pods/0d3c1a6e-5b1f-4a8e-9c7d-2f4e6a8b0c1d/volumes/kubernetes.io~empty-dir/vol{i}"),
                "options": ["rbind", "rprivate", "rw"]
            }));
        }
    }
    let spec = serde_json::to_vec(&v).expect("serialises");
    let policy = Policy::from_profile(profile);
    let mut changes = 0;
    for _ in 0..n {
        let d = apply(&policy, std::hint::black_box(&spec), &NoHostFs).expect("applies");
        changes += d.report().changes.len();
    }
    println!("{changes} changes");
}
