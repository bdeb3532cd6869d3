//! `agentbox-audit`: one pod's run from agentbox's audit log.

use std::io::BufReader;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use time::OffsetDateTime;

use agentbox_audit::{build, load, text, Filter};

/// Show what happened in a pod, from agentbox's JSONL audit log: the
/// containers and policy decisions, the process tree with argv and exit
/// statuses, files written and read, network destinations allowed or denied.
#[derive(Parser, Debug)]
#[command(name = "agentbox-audit", version)]
struct Args {
    /// The audit log.
    #[arg(default_value = "/var/log/agentbox/audit.jsonl")]
    log: PathBuf,
    /// Pod name, namespace/name, or sandbox id (at least 6 characters).
    #[arg(long)]
    pod: Option<String>,
    /// Container name or id (at least 6 characters).
    #[arg(long)]
    container: Option<String>,
    /// Records at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    since: Option<OffsetDateTime>,
    /// Records at or before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    until: Option<OffsetDateTime>,
    /// Show only reads under this path (repeatable; all reads by default).
    #[arg(long = "read-under", value_name = "PATH")]
    read_under: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2025-01-31T12:00:00Z: {e}"))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let f = std::fs::File::open(&a.log)
        .with_context(|| format!("cannot open audit log {}", a.log.display()))?;
    let (records, bad) = load(BufReader::new(f))
        .with_context(|| format!("cannot read audit log {}", a.log.display()))?;
    if bad > 0 {
        eprintln!(
            "agentbox-audit: {bad} lines of {} are not JSON records; skipped",
            a.log.display()
        );
    }
    let filter = Filter {
        pod: a.pod,
        container: a.container,
        since: a.since,
        until: a.until,
        read_under: a.read_under,
    };
    let runs = build(&records, &filter);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        print!("{}", text::render(&runs));
    }
    Ok(())
}
