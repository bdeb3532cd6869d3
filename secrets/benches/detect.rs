//! The detector's cost: compiling the rules, checking environment variables
//! (per KiB of env), scanning text, redacting command lines; and the same
//! format rules as one `regex::bytes::RegexSet`, the alternative design, for
//! time and memory. Run: `cargo bench -p agentbox-secrets --bench detect`
//! (`make bench-secrets`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use agentbox_secrets::{redact_argv, Detector, RULES_TOML};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// Counts live heap bytes, to weigh the compiled rules.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn ordinary() -> Vec<(String, String)> {
    include_str!("../tests/corpus/ordinary.env")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// What the policy's env rules ask of the detector for one entry.
fn check_entry(d: &Detector, name: &str, value: &str) -> bool {
    d.find(name).is_some()
        || (!d.kept_name(name) && d.name_rule(name).is_some())
        || d.env_value(name, value).is_some()
}

/// The shape grammar as a regular expression (bench only: the alternative design).
fn shape_regex(shape: &str) -> String {
    let mut out = String::new();
    let mut chars = shape.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push_str(&regex::escape(&n.to_string()));
                }
            }
            '{' => {
                let inner: String = chars.by_ref().take_while(|&x| x != '}').collect();
                let (set, count) = inner.rsplit_once(':').unwrap();
                let class = match set {
                    "digit" => "[0-9]".into(),
                    "hex" => "[0-9a-f]".into(),
                    "HEX" => "[0-9A-F]".into(),
                    "hexi" => "[0-9a-fA-F]".into(),
                    "lower" => "[a-z]".into(),
                    "upper" => "[A-Z]".into(),
                    "alpha" => "[a-zA-Z]".into(),
                    "alnum" => "[a-zA-Z0-9]".into(),
                    "lalnum" => "[a-z0-9]".into(),
                    "ualnum" => "[A-Z0-9]".into(),
                    "word" => "[a-zA-Z0-9_]".into(),
                    "b64" => "[a-zA-Z0-9+/]".into(),
                    "b64url" => "[a-zA-Z0-9_-]".into(),
                    "base32" => "[A-Z2-7]".into(),
                    other => other.to_string(),
                };
                let rep = match count.split_once('-') {
                    None => format!("{{{count}}}"),
                    Some((a, "")) => format!("{{{a},}}"),
                    Some((a, b)) => format!("{{{a},{b}}}"),
                };
                out.push_str(&class);
                out.push_str(&rep);
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    format!(r"(?-u)\b{out}")
}

/// Every keyword-free shape of the built-in table, as one RegexSet.
fn regex_set() -> regex::bytes::RegexSet {
    let table: toml::Value = toml::from_str(RULES_TOML).unwrap();
    let mut pats = Vec::new();
    for r in table["rule"].as_array().unwrap() {
        if r.get("keywords").is_some() {
            continue;
        }
        let mut shapes: Vec<&str> = r
            .get("shapes")
            .and_then(|s| s.as_array())
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        if let Some(s) = r.get("shape").and_then(|s| s.as_str()) {
            shapes.push(s);
        }
        pats.extend(shapes.into_iter().map(shape_regex));
    }
    regex::bytes::RegexSetBuilder::new(pats)
        .size_limit(64 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    // memory of the compiled rules (live heap after building, dropped after)
    let before = LIVE.load(Ordering::Relaxed);
    let d = Detector::with_rules(&[]).unwrap();
    let det_bytes = LIVE.load(Ordering::Relaxed) - before;
    let before = LIVE.load(Ordering::Relaxed);
    let set = regex_set();
    let set_bytes = LIVE.load(Ordering::Relaxed) - before;
    eprintln!(
        "heap: Detector (AC + rules) {} KiB; RegexSet of the same {} format shapes {} KiB (before any search)",
        det_bytes / 1024,
        set.len(),
        set_bytes / 1024
    );

    let env = ordinary();
    let kib: usize = env.iter().map(|(n, v)| n.len() + v.len() + 1).sum();
    let mut g = c.benchmark_group("env");
    g.throughput(Throughput::Bytes(kib as u64));
    g.bench_function(
        format!("ordinary-corpus-{}-vars-{}B", env.len(), kib),
        |b| {
            b.iter(|| {
                env.iter()
                    .filter(|(n, v)| check_entry(&d, black_box(n), black_box(v)))
                    .count()
            })
        },
    );
    g.bench_function("regexset-formats-only-same-corpus", |b| {
        b.iter(|| {
            env.iter()
                .filter(|(_, v)| set.is_match(black_box(v.as_bytes())))
                .count()
        })
    });
    g.finish();

    let fixture: serde_json::Value = serde_json::from_str(include_str!(
        "../../policy-injector/tests/fixtures/cri-container.json"
    ))
    .unwrap();
    let cri: Vec<(String, String)> = fixture["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e.as_str()?
                .split_once('=')
                .map(|(n, v)| (n.to_string(), v.to_string()))
        })
        .collect();
    c.bench_function(&format!("env/typical-cri-{}-vars", cri.len()), |b| {
        b.iter(|| cri.iter().filter(|(n, v)| check_entry(&d, n, v)).count())
    });

    c.bench_function("compile/builtin-rules", |b| {
        b.iter(|| Detector::with_rules(&[]).unwrap())
    });
    c.bench_function("compile/toml-parse-only", |b| {
        b.iter(|| toml::from_str::<toml::Value>(black_box(RULES_TOML)).unwrap())
    });

    let argv = ["sh", "-c", "export DB_PASSWORD=hunter2 && curl -sf -H 'Authorization: Bearer abc' https://x.example | tee out"];
    c.bench_function("redact_argv/shell-line", |b| {
        b.iter(|| redact_argv(black_box(&argv)))
    });
    let plain = ["ls", "-la", "--color=auto", "/tmp"];
    c.bench_function("redact_argv/plain", |b| {
        b.iter(|| redact_argv(black_box(&plain)))
    });
}

/// The same hot paths in thread CPU time (robust to machine load).
fn bench_cpu(c: &mut Criterion<cpu::ThreadCpu>) {
    let d = Detector::builtin();
    let env = ordinary();
    let kib: usize = env.iter().map(|(n, v)| n.len() + v.len() + 1).sum();
    let mut g = c.benchmark_group("cpu");
    g.throughput(Throughput::Bytes(kib as u64));
    g.bench_function("env/ordinary-corpus", |b| {
        b.iter(|| {
            env.iter()
                .filter(|(n, v)| check_entry(d, black_box(n), black_box(v)))
                .count()
        })
    });
    let set = regex_set();
    g.bench_function("env/regexset-formats-only", |b| {
        b.iter(|| {
            env.iter()
                .filter(|(_, v)| set.is_match(black_box(v.as_bytes())))
                .count()
        })
    });
    g.finish();
    let fixture: serde_json::Value = serde_json::from_str(include_str!(
        "../../policy-injector/tests/fixtures/cri-container.json"
    ))
    .unwrap();
    let cri: Vec<(String, String)> = fixture["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e.as_str()?
                .split_once('=')
                .map(|(n, v)| (n.to_string(), v.to_string()))
        })
        .collect();
    c.bench_function("cpu/env/typical-cri", |b| {
        b.iter(|| cri.iter().filter(|(n, v)| check_entry(d, n, v)).count())
    });
    c.bench_function("cpu/compile/builtin-rules", |b| {
        b.iter(|| Detector::with_rules(&[]).unwrap())
    });
    let argv = ["sh", "-c", "export DB_PASSWORD=hunter2 && curl -sf -H 'Authorization: Bearer abc' https://x.example | tee out"];
    c.bench_function("cpu/redact_argv/shell-line", |b| {
        b.iter(|| redact_argv(black_box(&argv)))
    });
    let plain = ["ls", "-la", "--color=auto", "/tmp"];
    c.bench_function("cpu/redact_argv/plain", |b| {
        b.iter(|| redact_argv(black_box(&plain)))
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
