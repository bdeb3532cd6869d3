//! containerd-shim-agentbox-v1: a thin binary over the `agentbox_shim` library.

use agentbox_shim::{bootstrap, logging};
use anyhow::Result;

fn main() {
    if let Err(e) = run() {
        // containerd shows start's and delete's stderr when they fail
        eprintln!("agentbox: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<_> = std::env::args_os().collect();
    let flags = containerd_shim::parse(&args[1..]).map_err(|e| anyhow::anyhow!("{e}"))?;
    if flags.version {
        println!("containerd-shim-agentbox-v1 {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if flags.info {
        return bootstrap::info();
    }
    match flags.action.as_str() {
        "start" => {
            logging::init_stderr(flags.debug);
            bootstrap::start(&flags)
        }
        "delete" => {
            logging::init_stderr(flags.debug);
            bootstrap::delete(&flags)
        }
        "" => {
            logging::init_daemon(flags.debug);
            // one thread serves a pod: the work is waiting on runsc and containerd
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let r = rt.block_on(bootstrap::serve(&flags));
            if let Err(e) = &r {
                tracing::error!(error = %format!("{e:#}"), "agentbox daemon failed");
            }
            // do not wait for blocked IO threads: the daemon's work is done
            std::process::exit(if r.is_ok() { 0 } else { 1 });
        }
        other => anyhow::bail!("unknown action {other:?}"),
    }
}
