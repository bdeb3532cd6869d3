//! `make bench-workload`: agent workloads (small files in the root
//! filesystem, `/tmp`, an emptyDir workspace and a plain bind; unpacking and
//! searching a ~20,000-file archive; system calls; spawns; pipes) run the
//! same way through one containerd under: plain runc, containerd-shim-runc-v2
//! driving the same runsc, agentbox with its shipped defaults, agentbox as it
//! shipped before the tuning, and agentbox with each tuning. Runs are
//! interleaved (the order of the sides rotates each round); the report gives
//! medians and ratios to runc as Markdown for BENCHMARKS.md.
//!
//! Debian 12's runsc (2022-12-19) is the one that counts; trixie's
//! (2024-07-29: systrap, directfs, the `self` overlay) is compared when
//! `scripts/fetch-runsc.sh trixie` has put it in `.work/runsc/trixie`.
//!
//! Env: AGENTBOX_BENCH_RUNS (rounds, default 3), AGENTBOX_BENCH_SIDES
//! (comma-separated side keys, default all), AGENTBOX_BENCH_WORKLOADS
//! (comma-separated workload keys — files-rootfs, files-tmp, files-emptydir,
//! files-bind, archive-rootfs, archive-emptydir, syscall, spawn, pipe —
//! default all), AGENTBOX_BENCH_NO_2024=1.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentbox_e2e::agentbox::{managed_roots, ConfigDir, RUNTIME_TYPE};
use agentbox_e2e::workload::{self, median, Place, Workload, ARCHIVE_MOUNT};
use agentbox_e2e::{
    is_root, Binaries, ContainerSpec, Containerd, ContainerdOptions, Cri, RuntimeHandler,
    BUSYBOX_IMAGE, DEFAULT_NAMESPACE, K8S_NAMESPACE,
};
use anyhow::{bail, Context, Result};

const EXEC_TIMEOUT: Duration = Duration::from_secs(1200);

fn all() -> Vec<Workload> {
    Workload::all()
}

/// How a side runs its containers.
#[derive(Debug, Clone)]
enum Via {
    /// A CRI pod on this handler (runc, agentbox).
    Cri(String),
    /// `ctr run -d` with these runtime flags (runc-v2 + runsc: it cannot
    /// start a pod's app container).
    Ctr(Vec<String>),
}

#[derive(Debug, Clone)]
struct Side {
    key: String,
    label: String,
    via: Via,
    work: Vec<Workload>,
    /// `[runtime.tuning]` keys (agentbox sides).
    tuning: String,
    runsc: PathBuf,
    runsc_flags: String,
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn agentbox(
    key: &str,
    label: &str,
    runsc: &Path,
    flags: &str,
    tuning: &str,
    work: Vec<Workload>,
) -> Side {
    Side {
        key: key.into(),
        label: label.into(),
        via: Via::Cri(format!("ab-{key}")),
        work,
        tuning: tuning.into(),
        runsc: runsc.to_path_buf(),
        runsc_flags: flags.into(),
    }
}

fn sides(
    ctd_wrapper: &Path,
    wrapper_2024: Option<&Path>,
    new_runsc: Option<&Path>,
    runsc_root: &Path,
) -> Vec<Side> {
    let old = Path::new("/usr/bin/runsc");
    let rootfs = vec![
        Workload::Files(Place::Rootfs),
        Workload::Files(Place::Tmp),
        Workload::Archive(Place::Rootfs),
    ];
    let cpu = vec![
        Workload::Files(Place::Rootfs),
        Workload::Syscall,
        Workload::Spawn,
        Workload::Pipe,
    ];
    let volume = vec![
        Workload::Files(Place::EmptyDir),
        Workload::Archive(Place::EmptyDir),
    ];
    let ctr = |wrapper: &Path, root: &str| {
        Via::Ctr(vec![
            "--runtime".into(),
            "io.containerd.runc.v2".into(),
            "--runc-binary".into(),
            wrapper.display().to_string(),
            "--runc-root".into(),
            runsc_root.join(root).display().to_string(),
        ])
    };
    let mut v = vec![
        Side {
            key: "runc".into(),
            label: "runc".into(),
            via: Via::Cri("runc".into()),
            work: all(),
            tuning: String::new(),
            runsc: old.into(),
            runsc_flags: String::new(),
        },
        Side {
            key: "runc-v2-runsc".into(),
            label: "runc-v2 + runsc".into(),
            via: ctr(ctd_wrapper, "v2022"),
            work: all(),
            tuning: String::new(),
            runsc: old.into(),
            runsc_flags: String::new(),
        },
        agentbox(
            "before",
            "agentbox as shipped before",
            old,
            "platform = \"ptrace\", ",
            "rootfs_overlay = \"none\"\nempty_dir = \"off\"\npod_cgroup = false\n",
            all(),
        ),
        agentbox("default", "**agentbox default**", old, "", "", all()),
        agentbox(
            "dir",
            "agentbox overlay dir",
            old,
            "",
            "rootfs_overlay = \"dir\"\n",
            rootfs.clone(),
        ),
        agentbox(
            "pause-cgroup",
            "agentbox in the pause cgroup",
            old,
            "",
            "pod_cgroup = false\n",
            cpu.clone(),
        ),
        agentbox(
            "no-overlay",
            "agentbox overlay none",
            old,
            "",
            "rootfs_overlay = \"none\"\n",
            rootfs.clone(),
        ),
        agentbox(
            "hints-exclusive",
            "agentbox emptyDir exclusive",
            old,
            "",
            "empty_dir = \"exclusive\"\n",
            volume.clone(),
        ),
        agentbox(
            "hints-memory",
            "agentbox emptyDir memory",
            old,
            "",
            "empty_dir = \"memory\"\n",
            volume.clone(),
        ),
    ];
    if let (Some(w), Some(new)) = (wrapper_2024, new_runsc) {
        v.push(Side {
            key: "runc-v2-runsc-2024".into(),
            label: "runc-v2 + runsc 2024".into(),
            via: ctr(w, "v2024"),
            work: all(),
            tuning: String::new(),
            runsc: new.into(),
            runsc_flags: String::new(),
        });
        v.push(agentbox(
            "2024-default",
            "agentbox default, runsc 2024",
            new,
            "",
            "",
            all(),
        ));
        v.push(agentbox(
            "2024-ptrace",
            "agentbox ptrace, runsc 2024",
            new,
            "",
            "platform = \"ptrace\"\n",
            cpu,
        ));
        v.push(agentbox(
            "2024-memory",
            "agentbox overlay memory, runsc 2024",
            new,
            "",
            "rootfs_overlay = \"memory\"\n",
            rootfs,
        ));
        v.push(agentbox(
            "2024-nodirectfs",
            "agentbox directfs off, runsc 2024",
            new,
            "",
            "directfs = false\n",
            vec![
                Workload::Files(Place::Rootfs),
                Workload::Files(Place::EmptyDir),
                Workload::Files(Place::Bind),
            ],
        ));
    }
    if let Ok(only) = std::env::var("AGENTBOX_BENCH_SIDES") {
        let keys: Vec<&str> = only.split(',').map(str::trim).collect();
        v.retain(|s| keys.contains(&s.key.as_str()));
    }
    if let Ok(only) = std::env::var("AGENTBOX_BENCH_WORKLOADS") {
        let keys: Vec<&str> = only.split(',').map(str::trim).collect();
        for s in &mut v {
            s.work.retain(|w| keys.contains(&w.key().as_str()));
        }
    }
    v
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// Per side: phase → seconds of each round; and pod start times.
#[derive(Default)]
struct Results {
    times: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    start: BTreeMap<String, Vec<f64>>,
}

fn run() -> Result<()> {
    if !is_root() {
        bail!("the benchmarks start containerd and gVisor sandboxes: run them as root");
    }
    let runs = env_usize("AGENTBOX_BENCH_RUNS", 3);
    let release = agentbox_e2e::util::cargo_target_dir().join("release");
    if !release.join("containerd-shim-agentbox-v1").is_file() {
        bail!("build the release shim first: cargo build --release -p agentbox-shim");
    }
    let new_runsc = agentbox_e2e::util::work_dir().join("runsc/trixie/usr/bin/runsc");
    let new_runsc = (new_runsc.is_file() && std::env::var_os("AGENTBOX_BENCH_NO_2024").is_none())
        .then_some(new_runsc);
    let archive = workload::archive_dir()?;
    let cfg = ConfigDir::new();
    let pods_dir = cfg.path().join("kubelet/pods");
    std::fs::create_dir_all(&pods_dir)?;

    // the sides' handlers need their config paths before containerd starts
    let probe_sides = sides(
        Path::new("/x"),
        Some(Path::new("/x")),
        new_runsc.as_deref(),
        Path::new("/x"),
    );
    let mut opts =
        ContainerdOptions::default().with_binaries(Binaries::system().with_shim_dir(&release));
    for s in &probe_sides {
        if let Via::Cri(h) = &s.via {
            if h != "runc" {
                opts = opts.handler(RuntimeHandler::new(h.as_str(), RUNTIME_TYPE).option(
                    "ConfigPath",
                    cfg.path().join(format!("{h}.toml")).display().to_string(),
                ));
            }
        }
    }
    let ctd = Containerd::start(opts).context("start containerd")?;
    let wrapper_2024 = match &new_runsc {
        Some(new) => Some(write_wrapper_2024(&ctd, new)?),
        None => None,
    };
    let sides = sides(
        ctd.runsc_wrapper(),
        wrapper_2024.as_deref(),
        new_runsc.as_deref(),
        &ctd.dir().join("bench-runsc"),
    );
    for s in &sides {
        if let Via::Cri(h) = &s.via {
            if h != "runc" {
                write_agentbox_config(&ctd, cfg.path(), h, s, &pods_dir, &archive)?;
            }
        }
    }
    ctd.import_busybox(DEFAULT_NAMESPACE)?;
    ctd.import_busybox(K8S_NAMESPACE)?;
    let cri = ctd.cri()?;
    let versions = versions(&ctd, new_runsc.as_deref());
    println!("# agent workloads\n\n{versions}; {runs} interleaved rounds\n");

    let mut res = Results::default();
    for round in 0..runs {
        let n = sides.len();
        for k in 0..n {
            let s = &sides[(k + round) % n];
            let t = Instant::now();
            let out = match &s.via {
                Via::Cri(h) => run_cri(&cri, &pods_dir, &archive, s, h, round, &mut res),
                Via::Ctr(flags) => run_ctr(&ctd, &pods_dir, &archive, s, flags, round),
            }
            .with_context(|| format!("side {} round {round}", s.key))?;
            for (phase, secs) in out {
                res.times
                    .entry(s.key.clone())
                    .or_default()
                    .entry(phase)
                    .or_default()
                    .push(secs);
            }
            eprintln!(
                "round {round} {}: {:.0} s ({})",
                s.key,
                t.elapsed().as_secs_f64(),
                std::fs::read_to_string("/proc/loadavg")
                    .unwrap_or_default()
                    .trim()
            );
        }
    }
    report(&sides, &res);
    drop(cri);
    drop(ctd);
    Ok(())
}

fn versions(ctd: &Containerd, new: Option<&Path>) -> String {
    let v = |bin: &Path| {
        std::process::Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let mut s = format!(
        "containerd {}, {}",
        ctd.version(),
        v(Path::new("/usr/bin/runsc"))
    );
    if let Some(n) = new {
        s += &format!(" (and {} for comparison)", v(n));
    }
    s + &format!(
        ", {}",
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| format!("loadavg at start {}", l.trim()))
            .unwrap_or_default()
    )
}

/// A copy of the harness's runsc wrapper for containerd-shim-runc-v2 that runs
/// trixie's runsc with its own defaults (systrap, `root:self`, directfs).
fn write_wrapper_2024(ctd: &Containerd, new: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(ctd.runsc_wrapper())?;
    let text = text
        .replace("'/usr/bin/runsc'", &format!("'{}'", new.display()))
        .replace("/usr/bin/runsc", &new.display().to_string())
        .replace("'--platform=ptrace'", "'--platform=systrap'")
        .replace("--platform=ptrace", "--platform=systrap");
    if !text.contains(&new.display().to_string()) {
        bail!("unexpected runsc wrapper:\n{text}");
    }
    let p = ctd.dir().join("bin/runsc-wrapper-2024");
    std::fs::write(&p, text)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
    Ok(p)
}

fn write_agentbox_config(
    ctd: &Containerd,
    dir: &Path,
    handler: &str,
    s: &Side,
    pods_dir: &Path,
    archive: &Path,
) -> Result<()> {
    let roots = managed_roots(ctd).replace(
        "managed_roots = [",
        &format!(
            "managed_roots = [\"{}/\", \"{}/\", ",
            pods_dir.display(),
            archive.display()
        ),
    );
    let text = format!(
        "profile = \"standard\"\n[mounts]\n{roots}\n[runtime]\nrunsc = \"{}\"\nrunsc_root = \"{}\"\nrunsc_flags = {{ {}network = \"none\" }}\n[runtime.tuning]\nkubelet_pods_dir = \"{}\"\noverlay_dir = \"{}\"\n{}[audit]\npath = \"{}\"\n",
        s.runsc.display(),
        dir.join(format!("runsc-{handler}")).display(),
        s.runsc_flags,
        pods_dir.display(),
        dir.join("overlay").display(),
        s.tuning,
        dir.join("audit.jsonl").display(),
    );
    std::fs::write(dir.join(format!("{handler}.toml")), text)?;
    Ok(())
}

/// The pod's volume folders: an emptyDir and a PVC-like bind.
fn volumes(pods_dir: &Path, uid: &str) -> Result<(PathBuf, PathBuf)> {
    let vols = pods_dir.join(uid).join("volumes");
    let ws = vols.join("kubernetes.io~empty-dir/workspace");
    let data = vols.join("kubernetes.io~csi/data/mount");
    std::fs::create_dir_all(&ws)?;
    std::fs::create_dir_all(&data)?;
    Ok((ws, data))
}

fn script(work: &[Workload]) -> (String, Vec<String>) {
    let mut s = String::new();
    let mut phases = vec![];
    for w in work {
        s += &format!("(\n{}\n) || echo \"FAILED {w:?}\"\n", w.script());
        phases.extend(w.phases());
    }
    (s, phases)
}

fn check(out: &str, phases: &[String]) -> Result<BTreeMap<String, f64>> {
    if let Some(l) = out.lines().find(|l| l.starts_with("FAILED")) {
        bail!("{l}: {out}");
    }
    let want = (
        workload::ARCHIVE_DIRS * workload::ARCHIVE_PER_DIR,
        workload::archive_matches(),
    );
    for l in out.lines().filter(|l| l.starts_with("N ")) {
        if workload::parse_counts(l) != Some(want) {
            bail!("the archive workload saw {l:?}, expected {want:?}");
        }
    }
    workload::parse_times(out, phases)
}

fn run_cri(
    cri: &Cri,
    pods_dir: &Path,
    archive: &Path,
    s: &Side,
    handler: &str,
    round: usize,
    res: &mut Results,
) -> Result<BTreeMap<String, f64>> {
    let uid = format!("wl-{}-{round}", s.key);
    let (ws, data) = volumes(pods_dir, &uid)?;
    let t = Instant::now();
    let pod = cri.run_pod(
        &format!("wl-{}-{round}", s.key),
        "bench",
        &uid,
        handler,
        &[],
    )?;
    let spec = ContainerSpec::new("agent", BUSYBOX_IMAGE)
        .command(["sleep", "3600"])
        .mount(&ws, "/workspace", false)
        .mount(&data, "/data", false)
        .mount(archive, ARCHIVE_MOUNT, true);
    let id = cri.create_container(&pod, &spec)?;
    cri.start(&id)?;
    res.start
        .entry(s.key.clone())
        .or_default()
        .push(t.elapsed().as_secs_f64() * 1000.0);
    let (sh, phases) = script(&s.work);
    let r = cri.exec_sync(&id, &["sh", "-c", &sh], EXEC_TIMEOUT);
    let _ = cri.stop_container(&id, Duration::from_secs(1));
    let _ = cri.remove_container(&id);
    let _ = cri.stop_pod(&pod.id);
    let _ = cri.remove_pod(&pod.id);
    let _ = std::fs::remove_dir_all(pods_dir.join(&uid));
    let r = r?;
    if r.exit_code != 0 {
        bail!("exit {}: {}{}", r.exit_code, r.stdout, r.stderr);
    }
    check(&r.stdout, &phases)
}

fn run_ctr(
    ctd: &Containerd,
    pods_dir: &Path,
    archive: &Path,
    s: &Side,
    flags: &[String],
    round: usize,
) -> Result<BTreeMap<String, f64>> {
    let uid = format!("wl-{}-{round}", s.key);
    let (ws, data) = volumes(pods_dir, &uid)?;
    let id = ctd.unique_id(&format!("wl-{}-{round}", s.key));
    let m = |src: &Path, dst: &str, o: &str| {
        format!(
            "type=bind,src={},dst={dst},options=rbind:{o}",
            src.display()
        )
    };
    let mounts = [
        m(&ws, "/workspace", "rw"),
        m(&data, "/data", "rw"),
        m(archive, ARCHIVE_MOUNT, "ro"),
    ];
    let fifo = ctd.fifo_dir().display().to_string();
    let mut args: Vec<&str> = vec!["run", "-d", "--fifo-dir", &fifo];
    args.extend(flags.iter().map(String::as_str));
    for mo in &mounts {
        args.extend(["--mount", mo.as_str()]);
    }
    args.extend([BUSYBOX_IMAGE, id.as_str(), "sleep", "3600"]);
    ctd.ctr_ok(&args)?;
    let (sh, phases) = script(&s.work);
    // ctd.ctr() is bounded at 180 s: a workload under gVisor can take longer
    let mut exec = std::process::Command::new(&ctd.binaries().ctr);
    exec.arg("--address")
        .arg(ctd.address())
        .args([
            "--namespace",
            DEFAULT_NAMESPACE,
            "task",
            "exec",
            "--fifo-dir",
            &fifo,
        ])
        .args(["--exec-id", "wl", &id, "sh", "-c", &sh]);
    let out = agentbox_e2e::util::run_timeout(&mut exec, EXEC_TIMEOUT).and_then(|o| {
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            bail!("ctr task exec {id}: {}", String::from_utf8_lossy(&o.stderr))
        }
    });
    let _ = ctd.ctr(&["task", "kill", "-s", "KILL", &id]);
    std::thread::sleep(Duration::from_millis(500));
    let _ = ctd.ctr(&["task", "rm", "-f", &id]);
    let _ = ctd.ctr(&["containers", "rm", &id]);
    let _ = std::fs::remove_dir_all(pods_dir.join(&uid));
    check(&out?, &phases)
}

/// Which sides a report table shows.
type Pick = fn(&Side) -> bool;

fn report(sides: &[Side], res: &Results) {
    let phases: Vec<String> = all().iter().flat_map(|w| w.phases()).collect();
    let med = |key: &str, phase: &str| {
        res.times
            .get(key)
            .and_then(|m| m.get(phase))
            .map(|v| median(v))
    };
    let groups: [(&str, Pick); 2] = [
        ("Debian 12's runsc (2022-12-19)", |s| {
            !s.key.contains("2024")
        }),
        ("trixie's runsc (2024-07-29), for comparison", |s| {
            s.key.contains("2024") || s.key == "runc"
        }),
    ];
    for (title, pick) in groups {
        let cols: Vec<&Side> = sides.iter().filter(|s| pick(s)).collect();
        if cols.iter().filter(|s| s.key != "runc").count() == 0 {
            continue;
        }
        println!("## {title}\n\nmedian seconds (ratio to runc)\n");
        print!("| workload |");
        for c in &cols {
            print!(" {} |", c.label);
        }
        print!("\n|---|");
        for _ in &cols {
            print!("---|");
        }
        println!();
        for p in &phases {
            let base = med("runc", p);
            print!("| {p} |");
            for c in &cols {
                match (med(&c.key, p), base) {
                    (Some(v), Some(b)) if c.key != "runc" && b > 0.0 => {
                        print!(" {v:.2} ({:.2}×) |", v / b)
                    }
                    (Some(v), _) => print!(" {v:.2} |"),
                    (None, _) => print!(" — |"),
                }
            }
            println!();
        }
        println!();
    }
    println!("## pod start (RunPodSandbox + CreateContainer + StartContainer, median ms)\n");
    println!("| side | median ms | ratio to agentbox as shipped before |\n|---|---|---|");
    let before = res.start.get("before").map(|v| median(v));
    for s in sides {
        if let Some(v) = res.start.get(&s.key) {
            let m = median(v);
            match before {
                Some(b) => println!("| {} | {m:.0} | {:.2} |", s.label, m / b),
                None => println!("| {} | {m:.0} | — |", s.label),
            }
        }
    }
    println!();
}
