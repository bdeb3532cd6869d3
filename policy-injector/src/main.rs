//! `agentbox-policy`: apply, explain or check the agentbox policy on an OCI spec.
//!
//! Exit codes: 0 allowed, 2 refused by the policy, 1 unreadable or malformed input
//! (or a usage/config error). Nothing is printed on stdout unless allowed (apply)
//! or explaining.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentbox_policy::{
    apply_with, ApplyContext, Decision, HostFs, NoHostFs, Policy, Profile, RealHostFs, Report,
    MAX_INPUT_BYTES,
};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "agentbox-policy",
    version,
    about = "agentbox's node-side OCI spec policy"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Rewrite SPEC and print it as JSON (exit 0), or refuse it (exit 2).
    Apply(Common),
    /// Print the decisions for a person to read.
    Explain(Common),
    /// Exit 0 if SPEC is allowed, 2 if refused; print no spec.
    Check(Common),
}

#[derive(Args, Debug)]
struct Common {
    /// Built-in profile (default: sensitive).
    #[arg(long, value_name = "standard|sensitive", conflicts_with = "config")]
    profile: Option<Profile>,
    /// Policy config file (TOML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Write the decision report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Do not look at the host filesystem (no symlink resolution, no socket or
    /// namespace checks on the host).
    #[arg(long)]
    no_host: bool,
    /// The container's bundle folder: an absolute root.path must be DIR/rootfs
    /// (without it only the relative "rootfs" is accepted).
    #[arg(long, value_name = "DIR")]
    bundle: Option<PathBuf>,
    /// Host pid of the pod's sandbox container: an app container's
    /// /proc/PID/ns/* paths are then the pod's own (not compared with the host's).
    #[arg(long, value_name = "PID")]
    sandbox_pid: Option<u32>,
    /// Pretty-print the rewritten spec.
    #[arg(long)]
    pretty: bool,
    /// The OCI config.json ("-" for stdin).
    #[arg(value_name = "SPEC")]
    spec: PathBuf,
}

enum Outcome {
    Allowed,
    Rejected,
}

fn main() -> ExitCode {
    init_tracing();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(Outcome::Allowed) => ExitCode::SUCCESS,
        Ok(Outcome::Rejected) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter = std::env::var("AGENTBOX_LOG").unwrap_or_else(|_| "off".to_string());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .try_init();
}

fn read_spec(path: &Path) -> Result<Vec<u8>> {
    let limit = MAX_INPUT_BYTES as u64 + 1;
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut buf)
            .context("cannot read the spec from stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut buf))
            .with_context(|| format!("cannot read spec {}", path.display()))?;
    }
    Ok(buf)
}

fn load_policy(c: &Common) -> Result<Policy> {
    Ok(match (&c.config, c.profile) {
        (Some(path), _) => Policy::from_file(path)?,
        (None, Some(p)) => Policy::from_profile(p),
        (None, None) => Policy::from_profile(Profile::Sensitive),
    })
}

fn write_report(path: &Path, report: &Report) -> Result<()> {
    let mut s = serde_json::to_string_pretty(report)?;
    s.push('\n');
    std::fs::write(path, s).with_context(|| format!("cannot write report {}", path.display()))
}

fn run(cli: Cli) -> Result<Outcome> {
    let (mode, c) = match cli.cmd {
        Cmd::Apply(c) => ("apply", c),
        Cmd::Explain(c) => ("explain", c),
        Cmd::Check(c) => ("check", c),
    };
    let policy = load_policy(&c)?;
    let bytes = read_spec(&c.spec)?;
    let host: &dyn HostFs = if c.no_host { &NoHostFs } else { &RealHostFs };
    let bundle = match &c.bundle {
        Some(b) => Some(
            std::path::absolute(b)
                .with_context(|| format!("cannot make the bundle path {} absolute", b.display()))?,
        ),
        None => None,
    };
    let ctx = match &bundle {
        Some(b) => ApplyContext::with_bundle(b),
        None => ApplyContext::default(),
    }
    .sandbox_pid(c.sandbox_pid);
    let decision = apply_with(&policy, &bytes, host, &ctx)
        .with_context(|| format!("cannot apply the policy to {}", c.spec.display()))?;
    if let Some(r) = &c.report {
        write_report(r, decision.report())?;
    }
    match mode {
        "explain" => {
            let network = explain_network(&c, &bytes)?;
            explain(decision.report(), &network)?;
            Ok(if network.is_ok() {
                outcome(&decision)
            } else {
                Outcome::Rejected
            })
        }
        _ => match decision {
            Decision::Allowed { spec, .. } => {
                if mode == "apply" {
                    let mut out = if c.pretty {
                        serde_json::to_vec_pretty(&spec)?
                    } else {
                        serde_json::to_vec(&spec)?
                    };
                    out.push(b'\n');
                    let mut stdout = std::io::stdout().lock();
                    stdout.write_all(&out).context("cannot write to stdout")?;
                    stdout.flush().context("cannot write to stdout")?;
                }
                Ok(Outcome::Allowed)
            }
            Decision::Rejected { reason, .. } => {
                eprintln!("rejected: {reason}");
                Ok(Outcome::Rejected)
            }
        },
    }
}

fn outcome(d: &Decision) -> Outcome {
    if d.is_allowed() {
        Outcome::Allowed
    } else {
        Outcome::Rejected
    }
}

/// The pod's effective network policy (the config's `[network]` and the
/// spec's `agentbox.dev/network` annotation): its text, or why the shim
/// would refuse the pod.
fn explain_network(c: &Common, spec: &[u8]) -> Result<std::result::Result<String, String>> {
    let cfg = match &c.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            agentbox_netpolicy::NetworkConfig::from_document(&text)?
        }
        None => None,
    };
    let annotation = serde_json::from_slice::<serde_json::Value>(spec)
        .ok()
        .and_then(|v| {
            v.pointer("/annotations")?
                .get(agentbox_netpolicy::ANNOTATION)?
                .as_str()
                .map(str::to_string)
        });
    Ok(agentbox_netpolicy::explain::explain(
        cfg.as_ref(),
        annotation.as_deref(),
    ))
}

fn explain(r: &Report, network: &std::result::Result<String, String>) -> Result<()> {
    let mut out = String::new();
    out.push_str(&format!("profile {}, phase {}\n", r.profile, r.phase));
    for ch in &r.changes {
        // the detector rule that matched, never the value
        let detail = ch
            .detail
            .as_deref()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {:<16} {:<28} {}{detail}\n",
            ch.action, ch.rule, ch.target
        ));
    }
    if let Ok(text) = network {
        out.push_str(text);
    }
    let n = r.changes.iter().filter(|c| c.action != "rejected").count();
    match (&r.reason, network) {
        (None, Err(e)) => out.push_str(&format!("rejected: network: {e}\n")),
        (None, Ok(_)) if n == 0 => out.push_str("allowed: no changes\n"),
        (None, Ok(_)) => out.push_str(&format!(
            "allowed: {n} change{}\n",
            if n == 1 { "" } else { "s" }
        )),
        (Some(reason), _) => out.push_str(&format!("rejected: {reason}\n")),
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .context("cannot write to stdout")?;
    Ok(())
}
