//! Logs. The daemon writes to the `log` FIFO containerd opens in the bundle
//! (containerd copies it into its own log); a full FIFO drops lines rather
//! than stalling the shim. `start` and `delete` log to stderr, which
//! containerd shows when they fail.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};

use tracing_subscriber::filter::LevelFilter;

/// A writer that never blocks: lines that do not fit are dropped.
#[derive(Clone)]
pub struct NonBlocking(Arc<Mutex<File>>);

impl Write for NonBlocking {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut f = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match f.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(buf.len()),
            other => other,
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The level: `AGENTBOX_LOG` (error, warn, info, debug, trace, off), else
/// debug with containerd's `-debug`, else info. A plain level filter keeps the
/// daemon small (no regex engine for directives).
fn filter(debug: bool) -> LevelFilter {
    std::env::var("AGENTBOX_LOG")
        .ok()
        .and_then(|v| v.trim().parse::<LevelFilter>().ok())
        .unwrap_or(if debug {
            LevelFilter::DEBUG
        } else {
            LevelFilter::INFO
        })
}

/// Log to the bundle's `log` FIFO if there is one, else to stderr.
pub fn init_daemon(debug: bool) {
    let fifo = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("log");
    match fifo {
        Ok(f) => {
            let w = NonBlocking(Arc::new(Mutex::new(f)));
            let _ = tracing_subscriber::fmt()
                .with_max_level(filter(debug))
                .with_ansi(false)
                .with_writer(move || w.clone())
                .try_init();
        }
        Err(_) => init_stderr(debug),
    }
}

pub fn init_stderr(debug: bool) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(filter(debug))
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .try_init();
}
