//! `make bench-activity`: the cost of the activity audit (gVisor runtime
//! monitoring into the pod daemon), in one run, as ratios: a build-like
//! workload (thousands of file opens, hundreds of processes, some
//! connections) in a pod with the activity audit off, on for processes and
//! network, and on for everything, interleaved (each round starts with a
//! different mode); the workload times itself inside the sandbox. Besides the
//! wall time: the sandbox's CPU time (its pod cgroup), the daemon's CPU time
//! (and its sink threads'), audit bytes per process, the daemon's memory with
//! the sink active, and the machine's load average. Uses the release shim;
//! prints Markdown.
//!
//! Knobs: `AGENTBOX_BENCH_RUNS` (rounds, default 5), `AGENTBOX_BENCH_MODES`
//! (comma-separated mode names, default all three; `off` is always run).

use std::path::Path;
use std::time::Duration;

use agentbox_e2e::agentbox::{managed_roots, pids_matching, ConfigDir, AGENTBOX};
use agentbox_e2e::{
    is_root, Binaries, ContainerSpec, Containerd, ContainerdOptions, RuntimeHandler, BUSYBOX_IMAGE,
    K8S_NAMESPACE,
};
use anyhow::{bail, Context, Result};

const WORKLOAD: &str = r#"t0=$(cut -d' ' -f1 /proc/uptime)
mkdir -p /tmp/src
i=0; while [ $i -lt 2000 ]; do echo "x$i" > /tmp/src/f$i; i=$((i+1)); done
i=0; while [ $i -lt 300 ]; do cat /tmp/src/f$i /tmp/src/f$((i+1000)) > /tmp/src/o$i; i=$((i+1)); done
i=0; while [ $i -lt 2000 ]; do read l < /tmp/src/f$i; i=$((i+1)); done
i=0; while [ $i -lt 30 ]; do wget -q -T 1 -O /dev/null http://127.0.0.1:1/ 2>/dev/null; i=$((i+1)); done
t1=$(cut -d' ' -f1 /proc/uptime)
echo "elapsed $t0 $t1""#;

const MODES: [(&str, &str); 3] = [
    ("off", "enabled = false"),
    (
        "processes+network",
        "enabled = true\nkinds = [\"processes\", \"network\"]\nrate_per_second = 100000\nburst = 100000",
    ),
    (
        "processes+network+files",
        "enabled = true\nrate_per_second = 100000\nburst = 100000",
    ),
];

/// Sorted copy's quantile `q` (nearest rank, so every figure is a measured one).
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((s.len() - 1) as f64 * q).round() as usize;
    s[i]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// `median [min–max]`.
fn spread(v: &[f64], digits: usize) -> String {
    format!(
        "{:.digits$} [{:.digits$}–{:.digits$}]",
        median(v),
        quantile(v, 0.0),
        quantile(v, 1.0)
    )
}

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Rss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a `/proc/.../stat` file, in seconds.
fn cpu_seconds(stat: &Path) -> f64 {
    let Ok(s) = std::fs::read_to_string(stat) else {
        return 0.0;
    };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 1..]) else {
        return 0.0;
    };
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    f.iter().sum::<u64>() as f64 / hz
}

/// The daemon's CPU seconds, and its sink threads' (reader + writer).
fn daemon_cpu(pid: i32) -> (f64, f64) {
    let total = cpu_seconds(Path::new(&format!("/proc/{pid}/stat")));
    let mut sink = 0.0;
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.starts_with("activity-") {
                sink += cpu_seconds(&t.path().join("stat"));
            }
        }
    }
    (total, sink)
}

/// CPU seconds of everything in the pod's cgroup (the sandbox: sentry,
/// gofer, ptrace stubs), if the cpuacct hierarchy has it.
fn pod_cpu(cgroup: &str) -> Option<f64> {
    let p = format!("/sys/fs/cgroup/cpuacct{cgroup}/cpuacct.usage");
    let ns: u64 = std::fs::read_to_string(p).ok()?.trim().parse().ok()?;
    Some(ns as f64 / 1e9)
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}

#[derive(Default)]
struct Sample {
    seconds: f64,
    pod_cpu: Option<f64>,
    daemon_cpu: f64,
    sink_cpu: f64,
    rss_kb: u64,
    bytes: usize,
    processes: usize,
    dropped: bool,
    load: f64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    if !is_root() {
        bail!("the benchmark starts containerd and gVisor sandboxes: run it as root");
    }
    let runs: usize = std::env::var("AGENTBOX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let modes: Vec<(&str, &str)> = match std::env::var("AGENTBOX_BENCH_MODES") {
        Ok(list) => {
            let want: Vec<&str> = list.split(',').map(str::trim).collect();
            if let Some(bad) = want.iter().find(|w| !MODES.iter().any(|m| m.0 == **w)) {
                bail!("AGENTBOX_BENCH_MODES: unknown mode {bad:?} (modes: off, processes+network, processes+network+files)");
            }
            MODES
                .iter()
                .filter(|m| m.0 == "off" || want.contains(&m.0))
                .copied()
                .collect()
        }
        Err(_) => MODES.to_vec(),
    };
    let release = agentbox_e2e::util::cargo_target_dir().join("release");
    if !release.join("containerd-shim-agentbox-v1").is_file() {
        bail!("build the release shim first: cargo build --release -p agentbox-shim");
    }
    let cfg = ConfigDir::new();
    let path = cfg.path().join("agentbox.toml");
    let ctd = Containerd::start(
        ContainerdOptions::default()
            .with_binaries(Binaries::system().with_shim_dir(&release))
            .handler(
                RuntimeHandler::new(AGENTBOX, agentbox_e2e::agentbox::RUNTIME_TYPE)
                    .option("ConfigPath", path.display().to_string()),
            ),
    )
    .context("start containerd")?;
    ctd.import_busybox(K8S_NAMESPACE)?;
    let audit = cfg.path().join("audit.jsonl");
    let cri = ctd.cri()?;
    let load_start = loadavg();
    let mut samples: Vec<Vec<Sample>> = modes.iter().map(|_| Vec::new()).collect();
    for r in 0..runs {
        // rotate the order so no mode always runs first (or after a given one)
        for k in 0..modes.len() {
            let m = (r + k) % modes.len();
            let (name, table) = modes[m];
            std::fs::write(
                &path,
                format!(
                    "profile = \"standard\"\n[mounts]\n{}\n[activity]\n{table}\n[runtime]\nrunsc_root = \"{}\"\nrunsc_flags = {{ platform = \"ptrace\", network = \"sandbox\" }}\nrunsc_mask_proc_sys_net = true\n[audit]\npath = \"{}\"\n",
                    managed_roots(&ctd),
                    cfg.path().join("runsc").display(),
                    audit.display()
                ),
            )?;
            let s = one(&cri, &ctd, &audit, r, m, name)?;
            eprintln!(
                "round {r} {name}: {:.2} s, sandbox cpu {:?}, daemon cpu {:.2} s, load {:.1}",
                s.seconds, s.pod_cpu, s.daemon_cpu, s.load
            );
            samples[m].push(s);
        }
    }
    let load_end = loadavg();
    report(&ctd, runs, &modes, &samples, load_start, load_end);
    Ok(())
}

/// One pod running the workload in one mode.
fn one(
    cri: &agentbox_e2e::cri::Cri,
    ctd: &Containerd,
    audit: &Path,
    r: usize,
    m: usize,
    name: &str,
) -> Result<Sample> {
    let before = std::fs::metadata(audit).map(|m| m.len()).unwrap_or(0) as usize;
    let uid = format!("uid-{r}-{m}");
    let pod = cri.run_pod(&format!("bench-{r}-{m}"), "bench", &uid, AGENTBOX, &[])?;
    let cgroup = format!("{}/pod{uid}", ctd.cgroup_parent());
    let daemon = pids_matching(&["containerd-shim-agentbox-v1", &pod.id]);
    let cpu0 = pod_cpu(&cgroup);
    let d0 = daemon.first().map(|&p| daemon_cpu(p)).unwrap_or_default();
    let load = loadavg();
    let spec = ContainerSpec::new("build", BUSYBOX_IMAGE).command(["sh", "-c", WORKLOAD]);
    let id = cri.create_container(&pod, &spec)?;
    cri.start(&id)?;
    let code = cri.wait_container_exit(&id, Duration::from_secs(600))?;
    if code != 0 {
        bail!("workload exited {code} in mode {name}");
    }
    let logs = cri.container_log_text(&pod, "build", None)?;
    let line = logs
        .lines()
        .find(|l| l.starts_with("elapsed "))
        .with_context(|| format!("no timing in {logs:?}"))?;
    let t: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let cpu1 = pod_cpu(&cgroup);
    // the sink has written what the workload did once its shell exited
    std::thread::sleep(Duration::from_millis(500));
    let rss = daemon.first().map(|&p| rss_kb(p)).unwrap_or(0);
    let d1 = daemon.first().map(|&p| daemon_cpu(p)).unwrap_or_default();
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    let new = &text[before.min(text.len())..];
    let act: Vec<&str> = new
        .lines()
        .filter(|l| l.contains("\"source\":\"gvisor\"") && l.contains(&pod.id))
        .collect();
    let s = Sample {
        seconds: t.get(1).unwrap_or(&0.0) - t.first().unwrap_or(&0.0),
        pod_cpu: cpu0.zip(cpu1).map(|(a, b)| b - a),
        daemon_cpu: d1.0 - d0.0,
        sink_cpu: d1.1 - d0.1,
        rss_kb: rss,
        bytes: act.iter().map(|l| l.len() + 1).sum(),
        processes: act
            .iter()
            .filter(|l| l.contains("\"event\":\"process\""))
            .count(),
        dropped: act.iter().any(|l| l.contains("\"event\":\"dropped\"")),
        load,
    };
    cri.remove_container(&id)?;
    cri.stop_pod(&pod.id)?;
    cri.remove_pod(&pod.id)?;
    Ok(s)
}

fn report(
    ctd: &Containerd,
    runs: usize,
    modes: &[(&str, &str)],
    samples: &[Vec<Sample>],
    load_start: f64,
    load_end: f64,
) {
    let loads: Vec<f64> = samples.iter().flatten().map(|s| s.load).collect();
    println!("# activity audit benchmark\n");
    println!(
        "containerd {}, runsc --platform=ptrace, {runs} rounds, modes interleaved (rotating order); workload: 2,000 files created, 300 `cat` processes (900 opens), 2,000 reads, 30 `wget` connects (refused), timed inside the sandbox. Load average (1 min) {load_start:.1} at start, {load_end:.1} at end, {} over the pods. Figures: median [min–max].\n",
        ctd.version(),
        spread(&loads, 1)
    );
    println!("| mode | workload s | ratio to off (of medians) | ratio to off, same round | CPU s, sandbox + daemon | CPU ratio (of medians) | CPU ratio, same round | daemon CPU s (sink threads) | daemon RSS KiB | audit bytes | process records | bytes/process |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    // CPU: the sandbox's (pod cgroup) plus the daemon's, where the sink runs
    let total = |x: &Sample| x.pod_cpu.map(|c| c + x.daemon_cpu);
    let base = &samples[0];
    let base_secs: Vec<f64> = base.iter().map(|s| s.seconds).collect();
    let base_cpu: Vec<f64> = base.iter().filter_map(total).collect();
    for (m, (name, _)) in modes.iter().enumerate() {
        let s = &samples[m];
        let secs: Vec<f64> = s.iter().map(|x| x.seconds).collect();
        let paired: Vec<f64> = s
            .iter()
            .zip(base)
            .map(|(x, b)| x.seconds / b.seconds)
            .collect();
        let cpu: Vec<f64> = s.iter().filter_map(total).collect();
        let cpu_paired: Vec<f64> = s
            .iter()
            .zip(base)
            .filter_map(|(x, b)| Some(total(x)? / total(b)?))
            .collect();
        let (cpu_s, cpu_ratio, cpu_pair) = if cpu.is_empty() || base_cpu.is_empty() {
            ("-".to_string(), "-".to_string(), "-".to_string())
        } else {
            (
                spread(&cpu, 2),
                format!("{:.3}", median(&cpu) / median(&base_cpu)),
                spread(&cpu_paired, 3),
            )
        };
        let dcpu: Vec<f64> = s.iter().map(|x| x.daemon_cpu).collect();
        let sink: Vec<f64> = s.iter().map(|x| x.sink_cpu).collect();
        let rss = median(&s.iter().map(|x| x.rss_kb as f64).collect::<Vec<_>>());
        let bytes = median(&s.iter().map(|x| x.bytes as f64).collect::<Vec<_>>());
        let procs = median(&s.iter().map(|x| x.processes as f64).collect::<Vec<_>>());
        let per = if procs > 0.0 {
            format!("{:.0}", bytes / procs)
        } else {
            "-".into()
        };
        println!(
            "| {name} | {} | {:.3} | {} | {cpu_s} | {cpu_ratio} | {cpu_pair} | {:.2} ({:.2}) | {rss:.0} | {bytes:.0} | {procs:.0} | {per} |",
            spread(&secs, 2),
            median(&secs) / median(&base_secs),
            spread(&paired, 3),
            median(&dcpu),
            median(&sink),
        );
        if s.iter().any(|x| x.dropped) {
            println!("\n(mode {name}: some records were dropped: the figures undercount)\n");
        }
    }
}
