//! `apply` on a typical CRI container spec and on a large one (hundreds of mounts
//! and env entries). Run: `cargo bench -p agentbox-policy --bench apply`
//! (mimalloc, as the CLI) or add `--no-default-features` (system allocator).

use agentbox_policy::{apply, NoHostFs, Policy, Profile};

// Same allocator as the `agentbox-policy` binary; `--no-default-features`
// measures with the system allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

/// The CRI container fixture, compact as containerd writes `config.json`.
fn typical() -> Vec<u8> {
    let pretty = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cri-container.json"
    ))
    .expect("fixture");
    let v: Value = serde_json::from_slice(&pretty).unwrap();
    serde_json::to_vec(&v).unwrap()
}

fn large() -> Vec<u8> {
    let mut s: Value = serde_json::from_slice(&typical()).unwrap();
    let env = s["process"]["env"].as_array_mut().unwrap();
    for i in 0..400 {
        env.push(json!(match i % 4 {
            0 => format!("SETTING_{i}=value-{i}-with-some-length/and/a/path"),
            1 => format!("SVC_{i}_SERVICE_HOST=10.96.{}.{}", i / 250, i % 250),
            2 => format!("APP_TOKEN_{i}=tok{i}"),
            _ => format!("URL_{i}=https://user:pw{i}@host{i}.example/x"),
        }));
    }
    let mounts = s["mounts"].as_array_mut().unwrap();
    for i in 0..300 {
        mounts.push(json!({
            "destination": format!("/data/vol{i}"),
            "type": "bind",
            "source": format!("/var/lib/kubelet/pods/0d3c1a6e-5b1f-4a8e-9c7d-2f4e6a8b0c1d/volumes/kubernetes.io~empty-dir/vol{i}"),
            "options": ["rbind", "rprivate", "rw"]
        }));
    }
    serde_json::to_vec(&s).unwrap()
}

fn bench(c: &mut Criterion) {
    let sensitive = Policy::from_profile(Profile::Sensitive);
    let standard = Policy::from_profile(Profile::Standard);
    let t = typical();
    let l = large();
    c.bench_function("apply/typical-cri/sensitive", |b| {
        b.iter(|| apply(&sensitive, black_box(&t), &NoHostFs).unwrap())
    });
    c.bench_function("apply/typical-cri/standard", |b| {
        b.iter(|| apply(&standard, black_box(&t), &NoHostFs).unwrap())
    });
    c.bench_function("parse-only/typical-cri", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&t)).unwrap())
    });
    let v: Value = serde_json::from_slice(&t).unwrap();
    c.bench_function("apply_value/typical-cri/sensitive", |b| {
        b.iter(|| agentbox_policy::apply_value(&sensitive, black_box(v.clone()), &NoHostFs))
    });
    c.bench_function("clone-only/typical-cri", |b| {
        b.iter(|| black_box(v.clone()))
    });
    c.bench_function("apply/large-700/sensitive", |b| {
        b.iter(|| apply(&sensitive, black_box(&l), &NoHostFs).unwrap())
    });
}

/// `apply` on the typical spec in thread CPU time: robust to the load of a
/// machine shared with other builds (see BENCHMARKS.md).
fn bench_cpu(c: &mut Criterion<cpu::ThreadCpu>) {
    let sensitive = Policy::from_profile(Profile::Sensitive);
    let t = typical();
    c.bench_function("cpu/apply/typical-cri/sensitive", |b| {
        b.iter(|| apply(&sensitive, black_box(&t), &NoHostFs).unwrap())
    });
    c.bench_function("cpu/parse-only/typical-cri", |b| {
        b.iter(|| serde_json::from_slice::<Value>(black_box(&t)).unwrap())
    });
}

/// Thread CPU time (`CLOCK_THREAD_CPUTIME_ID`) as a criterion measurement: on
/// a machine shared with other builds, wall time measures the load as much as
/// the code; CPU time of the benchmark thread does not.
mod cpu {
    use criterion::measurement::{Measurement, ValueFormatter, WallTime};

    pub struct ThreadCpu(WallTime);

    impl ThreadCpu {
        pub fn new() -> Self {
            ThreadCpu(WallTime)
        }
    }

    fn now_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec out-pointer for clock_gettime
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    impl Measurement for ThreadCpu {
        type Intermediate = u64;
        type Value = u64;
        fn start(&self) -> u64 {
            now_ns()
        }
        fn end(&self, i: u64) -> u64 {
            now_ns() - i
        }
        fn add(&self, a: &u64, b: &u64) -> u64 {
            a + b
        }
        fn zero(&self) -> u64 {
            0
        }
        fn to_f64(&self, v: &u64) -> f64 {
            *v as f64
        }
        fn formatter(&self) -> &dyn ValueFormatter {
            self.0.formatter()
        }
    }
}

criterion_group!(benches, bench);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(cpu::ThreadCpu::new());
    targets = bench_cpu
}
criterion_main!(benches, cpu_benches);
