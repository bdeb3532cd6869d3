//! `make bench-activity`: the cost of the activity audit (gVisor runtime
//! monitoring into the pod daemon), in one run, as ratios: a build-like
//! workload (thousands of file opens, hundreds of processes, some
//! connections) in a pod with the activity audit off, on for processes and
//! network, and on for everything, interleaved; the workload times itself
//! inside the sandbox. Also audit bytes per process and the daemon's memory
//! with the sink active. Uses the release shim; prints Markdown.

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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
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

struct Sample {
    seconds: f64,
    rss_kb: u64,
    bytes: usize,
    processes: usize,
    dropped: bool,
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
    // rate limit high enough that nothing of the workload is dropped
    let modes = [
        ("off", "enabled = false"),
        ("processes+network", "enabled = true\nkinds = [\"processes\", \"network\"]\nrate_per_second = 100000\nburst = 100000"),
        ("processes+network+files", "enabled = true\nrate_per_second = 100000\nburst = 100000"),
    ];
    let cri = ctd.cri()?;
    let mut samples: Vec<Vec<Sample>> = modes.iter().map(|_| Vec::new()).collect();
    for r in 0..runs {
        for (m, (name, table)) in modes.iter().enumerate() {
            std::fs::write(
                &path,
                format!(
                    "profile = \"standard\"\n[mounts]\n{}\n[activity]\n{table}\n[runtime]\nrunsc_root = \"{}\"\nrunsc_flags = {{ platform = \"ptrace\", network = \"sandbox\" }}\nrunsc_mask_proc_sys_net = true\n[audit]\npath = \"{}\"\n",
                    managed_roots(&ctd),
                    cfg.path().join("runsc").display(),
                    audit.display()
                ),
            )?;
            let before = std::fs::metadata(&audit).map(|m| m.len()).unwrap_or(0) as usize;
            let pod = cri.run_pod(
                &format!("bench-{r}-{m}"),
                "bench",
                &format!("uid-{r}-{m}"),
                AGENTBOX,
                &[],
            )?;
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
            // the sink has written what the workload did once its shell exited
            std::thread::sleep(Duration::from_millis(500));
            let daemon = pids_matching(&["containerd-shim-agentbox-v1", &pod.id]);
            let rss = daemon.first().map(|&p| rss_kb(p)).unwrap_or(0);
            let text = std::fs::read_to_string(&audit).unwrap_or_default();
            let new = &text[before.min(text.len())..];
            let act: Vec<&str> = new
                .lines()
                .filter(|l| l.contains("\"source\":\"gvisor\"") && l.contains(&pod.id))
                .collect();
            samples[m].push(Sample {
                seconds: t.get(1).unwrap_or(&0.0) - t.first().unwrap_or(&0.0),
                rss_kb: rss,
                bytes: act.iter().map(|l| l.len() + 1).sum(),
                processes: act
                    .iter()
                    .filter(|l| l.contains("\"event\":\"process\""))
                    .count(),
                dropped: act.iter().any(|l| l.contains("\"event\":\"dropped\"")),
            });
            cri.remove_container(&id)?;
            cri.stop_pod(&pod.id)?;
            cri.remove_pod(&pod.id)?;
        }
    }
    println!("# activity audit benchmark\n");
    println!(
        "containerd {}, runsc --platform=ptrace, {runs} interleaved runs per mode; workload: 2,000 files created, 300 `cat` processes (900 opens), 2,000 reads, 30 `wget` connects (refused), timed inside the sandbox\n",
        ctd.version()
    );
    println!("| mode | workload s (median) | ratio to off | daemon RSS KiB (median) | audit bytes | process records | bytes/process |");
    println!("|---|---|---|---|---|---|---|");
    let base = median(&mut samples[0].iter().map(|s| s.seconds).collect::<Vec<_>>());
    for (m, (name, _)) in modes.iter().enumerate() {
        let s = &samples[m];
        let secs = median(&mut s.iter().map(|x| x.seconds).collect::<Vec<_>>());
        let rss = median(&mut s.iter().map(|x| x.rss_kb as f64).collect::<Vec<_>>());
        let bytes = median(&mut s.iter().map(|x| x.bytes as f64).collect::<Vec<_>>());
        let procs = median(&mut s.iter().map(|x| x.processes as f64).collect::<Vec<_>>());
        let per = if procs > 0.0 {
            format!("{:.0}", bytes / procs)
        } else {
            "-".into()
        };
        println!(
            "| {name} | {secs:.2} | {:.3} | {rss:.0} | {bytes:.0} | {procs:.0} | {per} |",
            secs / base
        );
        if s.iter().any(|x| x.dropped) {
            println!("\n(mode {name}: some records were dropped: the figures undercount)\n");
        }
    }
    Ok(())
}
