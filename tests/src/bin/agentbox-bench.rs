//! `make bench-shim`: agentbox against the same delegate, in one run, as
//! ratios (scripted measurements, not timed tests). Uses the release build
//! of the shim. Prints a Markdown report for BENCHMARKS.md.
//!
//! - start-to-exit of `ctr run --rm … true`: agentbox (runsc backend) versus
//!   containerd-shim-runc-v2 driving the same runsc through the same wrapper
//!   (same flags), interleaved runs, medians.
//! - memory of one daemon per pod (RSS and PSS), agentbox versus the Go shim.
//! - pod start through CRI (sandbox + one container).
//! - the shim backend: a `State` round trip through agentbox versus straight
//!   to the delegate, and agentbox's memory in front of it.

use std::time::{Duration, Instant};

use agentbox_e2e::agentbox::{
    bundle_of, managed_roots, pids_matching as pids, run_detached, ConfigDir, RUNTIME_TYPE,
};
use agentbox_e2e::{
    is_root, Binaries, ContainerSpec, Containerd, ContainerdOptions, RuntimeHandler, BUSYBOX_IMAGE,
    DEFAULT_NAMESPACE, K8S_NAMESPACE, RUNSC_RUNC_SHIM,
};
use anyhow::{bail, Context, Result};
use containerd_shim_protos::api::{StateRequest, StateResponse};
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// (RSS kB, PSS kB) of a process.
fn mem(pid: i32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (get("Rss:"), get("Pss:"))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    if !is_root() {
        bail!("the benchmarks start containerd and gVisor sandboxes: run them as root");
    }
    let runs = env_usize("AGENTBOX_BENCH_RUNS", 12);
    let release = agentbox_e2e::util::cargo_target_dir().join("release");
    if !release.join("containerd-shim-agentbox-v1").is_file() {
        bail!("build the release shim first: cargo build --release -p agentbox-shim");
    }
    let cfg = ConfigDir::new();
    let gvisor = cfg.path().join("gvisor.toml");
    let fwd = cfg.path().join("forward.toml");
    let opts = ContainerdOptions::default()
        .with_binaries(Binaries::system().with_shim_dir(&release))
        .handler(
            RuntimeHandler::new("agentbox", RUNTIME_TYPE)
                .option("ConfigPath", gvisor.display().to_string())
                .pod_annotations(["agentbox.dev/*"]),
        );
    let ctd = Containerd::start(opts).context("start containerd")?;
    let wrapper = ctd.runsc_wrapper().display().to_string();
    let audit = cfg.path().join("audit.jsonl");
    // both sides run runsc through the harness's wrapper: the same binary and flags
    std::fs::write(
        &gvisor,
        format!(
            "profile = \"standard\"\n[mounts]\n{}\n[runtime]\nrunsc = \"{wrapper}\"\nrunsc_root = \"{}\"\n[audit]\npath = \"{}\"\n",
            managed_roots(&ctd),
            cfg.path().join("runsc").display(),
            audit.display()
        ),
    )?;
    std::fs::write(
        &fwd,
        format!(
            "profile = \"standard\"\n[runtime]\nbackend = \"shim\"\nshim = \"containerd-shim-runc-v2\"\nsandbox = \"none\"\n[audit]\npath = \"{}\"\n",
            audit.display()
        ),
    )?;
    ctd.import_busybox(DEFAULT_NAMESPACE)?;
    let versions = format!(
        "containerd {}, {}, {}",
        ctd.version(),
        String::from_utf8_lossy(
            &std::process::Command::new("runsc")
                .arg("--version")
                .output()?
                .stdout
        )
        .lines()
        .next()
        .unwrap_or(""),
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| format!("loadavg {}", l.trim()))
            .unwrap_or_default()
    );
    println!("# agentbox shim benchmarks\n\n{versions}; {runs} interleaved runs per side\n");

    // 1. start-to-exit
    let gv = gvisor.display().to_string();
    let ab_flags = vec![
        "--runtime".to_string(),
        RUNTIME_TYPE.into(),
        "--runtime-config-path".into(),
        gv.clone(),
    ];
    let go_flags = ctd.runsc_ctr_flags();
    let time_run = |flags: &[String], id: &str| -> Result<f64> {
        let f: Vec<&str> = flags.iter().map(String::as_str).collect();
        let t = Instant::now();
        let o = ctd.ctr_run(&f, BUSYBOX_IMAGE, id, &["true"]);
        let dt = t.elapsed().as_secs_f64() * 1000.0;
        if !o.status.success() {
            bail!("ctr run {id}: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(dt)
    };
    // warm-up both paths (page cache, image unpack)
    time_run(&ab_flags, &ctd.unique_id("warm-ab"))?;
    time_run(&go_flags, &ctd.unique_id("warm-go"))?;
    let (mut ab, mut go) = (vec![], vec![]);
    for i in 0..runs {
        // alternate which side goes first
        if i % 2 == 0 {
            ab.push(time_run(&ab_flags, &ctd.unique_id(&format!("ab{i}")))?);
            go.push(time_run(&go_flags, &ctd.unique_id(&format!("go{i}")))?);
        } else {
            go.push(time_run(&go_flags, &ctd.unique_id(&format!("go{i}")))?);
            ab.push(time_run(&ab_flags, &ctd.unique_id(&format!("ab{i}")))?);
        }
    }
    let (mab, mgo) = (median(&mut ab), median(&mut go));
    println!("## start-to-exit (`ctr run --rm busybox true`)\n");
    println!("| runtime | median ms | min ms | max ms |\n|---|---|---|---|");
    println!(
        "| agentbox (runsc backend) | {mab:.0} | {:.0} | {:.0} |",
        ab[0],
        ab[ab.len() - 1]
    );
    println!(
        "| containerd-shim-runc-v2 + same runsc | {mgo:.0} | {:.0} | {:.0} |",
        go[0],
        go[go.len() - 1]
    );
    println!("\nratio agentbox / runc-v2: **{:.3}**\n", mab / mgo);

    // 2. memory per pod
    let mid = ctd.unique_id("mem-ab");
    run_detached(&ctd, &gvisor, &mid, &["sleep", "600"])?;
    let gid = ctd.unique_id("mem-go");
    let fifo = ctd.fifo_dir().display().to_string();
    let mut args: Vec<&str> = vec!["run", "-d", "--fifo-dir", &fifo];
    args.extend(go_flags.iter().map(String::as_str));
    args.extend([BUSYBOX_IMAGE, gid.as_str(), "sleep", "600"]);
    let o = ctd.ctr(&args);
    if !o.status.success() {
        bail!("{}", String::from_utf8_lossy(&o.stderr));
    }
    std::thread::sleep(Duration::from_secs(4));
    let abp = *pids(&["containerd-shim-agentbox-v1", &format!("-id {mid}")])
        .first()
        .context("agentbox daemon")?;
    let gop = *pids(&["containerd-shim-runc-v2", &format!("-id {gid}")])
        .first()
        .context("runc-v2 shim")?;
    let (ar, ap) = mem(abp);
    let (gr, gp) = mem(gop);
    // three more agentbox pods: the binary's pages are shared between daemons
    let mut extra = vec![];
    for i in 0..3 {
        let id = ctd.unique_id(&format!("mem-ab{i}"));
        run_detached(&ctd, &gvisor, &id, &["sleep", "600"])?;
        extra.push(id);
    }
    std::thread::sleep(Duration::from_secs(4));
    // this containerd's daemons only (other containerds run on the host)
    let address = ctd.address().display().to_string();
    let all: Vec<i32> = pids(&["containerd-shim-agentbox-v1", &address]);
    let pss4: u64 = all.iter().map(|p| mem(*p).1).sum::<u64>() / all.len().max(1) as u64;
    println!("## memory of the shim process per pod (one running container, idle)\n");
    println!("| shim | RSS KiB | PSS KiB |\n|---|---|---|");
    println!("| agentbox (runsc backend) | {ar} | {ap} |");
    println!("| containerd-shim-runc-v2 (Go) | {gr} | {gp} |");
    println!(
        "\nwith {} agentbox daemons running, mean PSS per daemon: {pss4} KiB\n",
        all.len()
    );
    for id in extra.iter().chain([&mid, &gid]) {
        let _ = ctd.ctr(&["task", "kill", "-s", "KILL", id]);
    }
    std::thread::sleep(Duration::from_secs(1));
    for id in extra.iter().chain([&mid, &gid]) {
        let _ = ctd.ctr(&["task", "rm", "-f", id]);
        let _ = ctd.ctr(&["containers", "rm", id]);
    }

    // 3. pod start through CRI
    ctd.import_busybox(K8S_NAMESPACE)?;
    let cri = ctd.cri()?;
    let pod_runs = env_usize("AGENTBOX_BENCH_POD_RUNS", 10);
    let (mut full, mut sb_ab, mut sb_go) = (vec![], vec![], vec![]);
    for i in 0..pod_runs {
        let t = Instant::now();
        let pod = cri.run_pod(
            &format!("bench-{i}"),
            "bench",
            &format!("uid-bench-{i}"),
            "agentbox",
            &[],
        )?;
        let sandbox = t.elapsed().as_secs_f64() * 1000.0;
        let id = cri.create_container(
            &pod,
            &ContainerSpec::new("app", BUSYBOX_IMAGE).command(["sleep", "60"]),
        )?;
        cri.start(&id)?;
        full.push(t.elapsed().as_secs_f64() * 1000.0);
        sb_ab.push(sandbox);
        cri.stop_container(&id, Duration::from_secs(1))?;
        cri.remove_container(&id)?;
        cri.stop_pod(&pod.id)?;
        cri.remove_pod(&pod.id)?;
        let t = Instant::now();
        let pod = cri.run_pod(
            &format!("bench-go-{i}"),
            "bench",
            &format!("uid-bench-go-{i}"),
            RUNSC_RUNC_SHIM,
            &[],
        )?;
        sb_go.push(t.elapsed().as_secs_f64() * 1000.0);
        cri.stop_pod(&pod.id)?;
        cri.remove_pod(&pod.id)?;
    }
    println!("## pod start through CRI (median of {pod_runs})\n");
    println!("| what | median ms |\n|---|---|");
    println!(
        "| agentbox: RunPodSandbox + CreateContainer + StartContainer | {:.0} |",
        median(&mut full)
    );
    println!("| agentbox: RunPodSandbox | {:.0} |", median(&mut sb_ab));
    println!(
        "| runc-v2 + runsc: RunPodSandbox | {:.0} |",
        median(&mut sb_go)
    );
    println!("\n(runc-v2 driving runsc cannot start a pod's app container, so the full pod has no Go counterpart.)\n");
    drop(cri);

    // 4. the shim backend
    let fid = ctd.unique_id("fwd");
    run_detached(&ctd, &fwd, &fid, &["sleep", "600"])?;
    std::thread::sleep(Duration::from_secs(4));
    // idle memory, before the State storm faults the forwarding path back in
    let fp = *pids(&["containerd-shim-agentbox-v1", &format!("-id {fid}")])
        .first()
        .context("agentbox daemon (shim backend)")?;
    let dp = *pids(&["containerd-shim-runc-v2", &format!("-id {fid}")])
        .first()
        .context("delegate")?;
    let (fr, fpss) = mem(fp);
    let (dr, dpss) = mem(dp);
    let bundle = bundle_of(&ctd, DEFAULT_NAMESPACE, &fid);
    let ours = std::fs::read_to_string(bundle.join("address"))?;
    let hash = agentbox_e2e::util::sha256_hex(
        format!("{}/{}/{}", ctd.address().display(), DEFAULT_NAMESPACE, fid).as_bytes(),
    );
    let delegate = format!("unix:///run/containerd/s/{hash}");
    let calls = env_usize("AGENTBOX_BENCH_CALLS", 400);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (through, direct) = rt.block_on(async {
        let a = ttrpc::r#async::Client::connect(ours.trim()).await?;
        let d = ttrpc::r#async::Client::connect(&delegate).await?;
        let req = StateRequest {
            id: fid.clone(),
            ..Default::default()
        }
        .write_to_bytes()?;
        let call = |c: &ttrpc::r#async::Client| {
            let r = ttrpc::Request {
                service: "containerd.task.v2.Task".into(),
                method: "State".into(),
                payload: req.clone(),
                timeout_nano: 5_000_000_000,
                ..Default::default()
            };
            let c = c.clone();
            async move {
                let t = Instant::now();
                let res = c.request(r).await?;
                let st = StateResponse::parse_from_bytes(&res.payload)?;
                anyhow::ensure!(st.pid > 0, "state has no pid");
                Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64() * 1e6)
            }
        };
        let (mut x, mut y) = (vec![], vec![]);
        for _ in 0..20 {
            call(&a).await?;
            call(&d).await?;
        }
        for i in 0..calls {
            if i % 2 == 0 {
                x.push(call(&a).await?);
                y.push(call(&d).await?);
            } else {
                y.push(call(&d).await?);
                x.push(call(&a).await?);
            }
        }
        Ok::<_, anyhow::Error>((median(&mut x), median(&mut y)))
    })?;
    let (fr_busy, _) = mem(fp);
    println!("## shim backend (agentbox in front of containerd-shim-runc-v2)\n");
    println!("| what | value |\n|---|---|");
    println!("| `State` round trip through agentbox, median µs | {through:.0} |");
    println!("| `State` round trip straight to the delegate, median µs | {direct:.0} |");
    println!(
        "| forwarding overhead per call, µs | {:.0} |",
        through - direct
    );
    println!("| agentbox RSS / PSS KiB, idle | {fr} / {fpss} |");
    println!("| agentbox RSS KiB right after {calls} forwarded calls | {fr_busy} |");
    println!("| delegate (runc-v2) RSS / PSS KiB | {dr} / {dpss} |");
    let _ = ctd.ctr(&["task", "kill", "-s", "KILL", &fid]);
    std::thread::sleep(Duration::from_secs(1));
    let _ = ctd.ctr(&["task", "rm", "-f", &fid]);
    let _ = ctd.ctr(&["containers", "rm", &fid]);
    drop(ctd);
    Ok(())
}
