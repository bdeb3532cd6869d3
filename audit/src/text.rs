//! A run as text.

use std::fmt::Write;

use crate::model::{Destination, FileUse, Process, Run};

/// Longest argument shown before it is shortened.
const ARG_MAX: usize = 80;

pub fn render(runs: &[Run]) -> String {
    let mut o = String::new();
    if runs.is_empty() {
        o.push_str("no records match\n");
    }
    for (i, r) in runs.iter().enumerate() {
        if i > 0 {
            o.push('\n');
        }
        run(&mut o, r);
    }
    o
}

fn run(o: &mut String, r: &Run) {
    let _ = writeln!(
        o,
        "pod {} (sandbox {})  {} .. {}",
        r.pod.as_deref().unwrap_or("-"),
        short(&r.sandbox_id),
        r.first,
        r.last
    );
    o.push_str("containers:\n");
    for c in r.containers.iter().filter(|c| !c.id.is_empty()) {
        let mut line = format!("  {}", c.name);
        if let Some(p) = &c.phase {
            let _ = write!(line, "  phase {p}");
        }
        let _ = write!(line, "  {} policy changes", c.changes);
        match (&c.rejected, c.exit_status) {
            (Some(why), _) => {
                let _ = write!(line, "  REJECTED: {why}");
            }
            (None, Some(s)) => {
                let _ = write!(line, "  exit {s}");
            }
            (None, None) => line.push_str("  running or not reported"),
        }
        if !c.ended_by.is_empty() {
            let _ = write!(line, "  (ended by {})", c.ended_by.join(", "));
        }
        let _ = writeln!(o, "{line}");
        for e in &c.execs {
            let _ = writeln!(o, "    exec: {}", argv(e));
        }
    }
    if !r.activity {
        o.push_str(
            "activity: not recorded for this pod ([activity] off, or not a gVisor sandbox)\n",
        );
        return;
    }
    o.push_str("processes:\n");
    for p in &r.processes {
        process(o, p, "  ", "", true, true);
    }
    list_files(o, "files written:", &r.files_written);
    list_files(o, "files read:", &r.files_read);
    list_net(o, "network:", &r.network);
    list_net(o, "listening:", &r.listeners);
    if r.dropped > 0 {
        let _ = writeln!(
            o,
            "dropped: {} records (rate limit, queue or gVisor): this view is incomplete",
            r.dropped
        );
    }
}

fn process(o: &mut String, p: &Process, indent: &str, branch: &str, root: bool, last: bool) {
    let status = match (p.exit_code, p.signal) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => "running or not reported".into(),
    };
    let shown = if p.argv.is_empty() {
        p.binary.clone()
    } else {
        argv(&p.argv)
    };
    let head = if root {
        format!("{}: ", p.container)
    } else {
        String::new()
    };
    let mut from = String::new();
    for a in &p.execed_from {
        let _ = write!(from, "  exec'd from: {}", argv(a));
    }
    let _ = writeln!(
        o,
        "{indent}{branch}{head}[{}] {shown}  ({status}){from}",
        p.pid
    );
    let child_indent = if root {
        format!("{indent}  ")
    } else if last {
        format!("{indent}   ")
    } else {
        format!("{indent}│  ")
    };
    for (i, c) in p.children.iter().enumerate() {
        let last = i + 1 == p.children.len();
        process(
            o,
            c,
            &child_indent,
            if last { "└─ " } else { "├─ " },
            false,
            last,
        );
    }
}

fn list_files(o: &mut String, title: &str, files: &[FileUse]) {
    let _ = writeln!(o, "{title}{}", if files.is_empty() { " none" } else { "" });
    for f in files {
        let mut extra = format!("{}, {} opens", f.intent.join("+"), f.opens);
        if f.failed > 0 {
            let _ = write!(extra, ", {} failed", f.failed);
        }
        let _ = writeln!(o, "  {}  ({extra})  by {}", f.path, f.by.join("; "));
    }
}

fn list_net(o: &mut String, title: &str, dests: &[Destination]) {
    if dests.is_empty() && title == "listening:" {
        return;
    }
    let _ = writeln!(o, "{title}{}", if dests.is_empty() { " none" } else { "" });
    for d in dests {
        let addr = match d.port {
            Some(p) if d.address.contains(':') => format!("[{}]:{p}", d.address),
            Some(p) => format!("{}:{p}", d.address),
            None => d.address.clone(),
        };
        let name = d
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let by = if d.by.is_empty() {
            String::new()
        } else {
            format!("  by {}", d.by.join("; "))
        };
        let _ = writeln!(
            o,
            "  {addr}{name}  {}  x{}{by}",
            d.verdict.to_uppercase(),
            d.attempts.max(1)
        );
    }
}

fn argv(a: &[String]) -> String {
    a.iter()
        .map(|s| {
            let s = if s.chars().count() > ARG_MAX {
                format!("{}…", s.chars().take(ARG_MAX).collect::<String>())
            } else {
                s.clone()
            };
            if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", s.replace('\'', "'\\''"))
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}
