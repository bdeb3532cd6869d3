//! The sandbox's processes as the points describe them, and the records they
//! become: `process` when a process gets its image (or first does something
//! worth recording), `file` per process and path (aggregated, written when the
//! process exits or execs), `connect`/`bind`/`accept`, `process_exit`.

use std::collections::HashMap;

use serde_json::{json, Map};

use crate::config::{ActivityConfig, Kind};
use crate::event::{Ctx, Event, NetCall, SockAddr};
use crate::Record;

/// How what the tracker records is redacted before it is written: argv as a
/// command line, and every other string a process chose that could carry a
/// value (its binary and working directory, file paths, unix socket
/// addresses). The shim passes the node policy's secret detector.
pub trait Redact: Send {
    fn argv(&self, argv: &[String]) -> Vec<String>;
    fn text(&self, text: &str) -> String;
}

/// The redactor a [`Tracker`] owns.
pub type Redactor = Box<dyn Redact>;

const AT_FDCWD: i64 = -100;
const O_ACCMODE: u32 = 0o3;
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct FileUse {
    read: bool,
    write: bool,
    create: bool,
    opens: u32,
    failed: u32,
}

#[derive(Debug, Default)]
struct Proc {
    container: String,
    ppid: i32,
    binary: String,
    argv: Vec<String>,
    cwd: String,
    uid: Option<u32>,
    gid: Option<u32>,
    /// Its `process` record was written (for its current image).
    announced: bool,
    /// When it started being followed (for eviction, oldest first).
    seq: u64,
    files: HashMap<String, FileUse>,
}

pub struct Tracker {
    cfg: ActivityConfig,
    redact: Redactor,
    procs: HashMap<i32, Proc>,
    tracked_files: usize,
    next_seq: u64,
    evicted: u64,
}

impl Tracker {
    pub fn new(cfg: ActivityConfig, redact: Redactor) -> Tracker {
        Tracker {
            cfg,
            redact,
            procs: HashMap::new(),
            tracked_files: 0,
            next_seq: 0,
            evicted: 0,
        }
    }

    /// Processes forgotten to keep within `max_tracked_processes`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn insert(&mut self, tgid: i32, mut p: Proc) {
        p.seq = self.next_seq;
        self.next_seq += 1;
        self.procs.insert(tgid, p);
    }

    /// Keep memory bounded: write out and forget the longest-followed process.
    fn evict_oldest(&mut self, out: &mut Vec<Record>) {
        let Some(tgid) = self
            .procs
            .iter()
            .min_by_key(|(_, p)| p.seq)
            .map(|(t, _)| *t)
        else {
            return;
        };
        if self.procs.get(&tgid).is_some_and(|p| !p.files.is_empty()) {
            self.announce(tgid, out);
            self.flush_files(tgid, out);
        }
        self.procs.remove(&tgid);
        self.evicted += 1;
    }

    /// Processes currently followed (for tests and memory bounds).
    pub fn processes(&self) -> usize {
        self.procs.len()
    }

    /// Apply one event; the records it completes go to `out`.
    pub fn handle(&mut self, ev: Event, out: &mut Vec<Record>) {
        // an event adds at most one process: room for it first
        while self.procs.len() >= self.cfg.max_tracked_processes {
            self.evict_oldest(out);
        }
        match ev {
            Event::ContainerStart { ctx, id, cwd, args } => {
                let container = if id.is_empty() {
                    ctx.container.clone()
                } else {
                    id
                };
                self.end(ctx.tgid, None, out);
                let p = Proc {
                    container,
                    binary: args.first().cloned().unwrap_or_default(),
                    argv: args,
                    cwd,
                    uid: ctx.uid,
                    gid: ctx.gid,
                    ..Proc::default()
                };
                self.insert(ctx.tgid, p);
                self.announce(ctx.tgid, out);
            }
            Event::Clone { ctx, child_tgid } => {
                if child_tgid == ctx.tgid || child_tgid <= 0 {
                    return; // a thread
                }
                let parent = self.proc_of(&ctx);
                let child = Proc {
                    container: parent.container.clone(),
                    ppid: ctx.tgid,
                    binary: parent.binary.clone(),
                    argv: parent.argv.clone(),
                    cwd: parent.cwd.clone(),
                    uid: parent.uid,
                    gid: parent.gid,
                    ..Proc::default()
                };
                self.insert(child_tgid, child);
            }
            Event::Exec { ctx, binary, argv } => {
                // what the previous image did is written under it
                if self
                    .procs
                    .get(&ctx.tgid)
                    .is_some_and(|p| !p.files.is_empty())
                {
                    self.announce(ctx.tgid, out);
                    self.flush_files(ctx.tgid, out);
                }
                let p = self.proc_of(&ctx);
                p.binary = binary;
                p.argv = argv;
                if !ctx.cwd.is_empty() {
                    p.cwd = ctx.cwd;
                }
                p.uid = ctx.uid.or(p.uid);
                p.gid = ctx.gid.or(p.gid);
                p.announced = false;
                self.announce(ctx.tgid, out);
            }
            Event::TaskExit { ctx, status } => {
                if ctx.tid == ctx.tgid || ctx.tid == 0 {
                    self.end(ctx.tgid, Some(status), out);
                }
            }
            Event::Open {
                ctx,
                dirfd,
                dir_path,
                pathname,
                flags,
                result,
            } => {
                if !self.cfg.records(Kind::Files) {
                    return;
                }
                let Some(path) = resolve(&ctx.cwd, dirfd, &dir_path, &pathname) else {
                    return;
                };
                if self.ignored(&path, flags) {
                    return;
                }
                let tgid = ctx.tgid;
                let new_path = {
                    let p = self.proc_of(&ctx);
                    let new = !p.files.contains_key(&path);
                    let u = p.files.entry(path).or_default();
                    u.opens = u.opens.saturating_add(1);
                    if result < 0 {
                        u.failed = u.failed.saturating_add(1);
                    }
                    match flags & O_ACCMODE {
                        O_WRONLY => u.write = true,
                        O_RDWR => {
                            u.read = true;
                            u.write = true
                        }
                        _ => u.read = true,
                    }
                    if flags & (O_TRUNC | O_APPEND) != 0 {
                        u.write = true;
                    }
                    if flags & O_CREAT != 0 {
                        u.create = true;
                    }
                    new
                };
                if new_path {
                    self.tracked_files += 1;
                    if self.tracked_files > self.cfg.max_tracked_files {
                        // bounded memory: this process's files are written now
                        self.announce(tgid, out);
                        self.flush_files(tgid, out);
                    }
                }
            }
            Event::Net {
                ctx,
                call,
                addr,
                result,
            } => {
                if !self.cfg.records(Kind::Network) {
                    return;
                }
                let Some(addr) = addr else { return };
                let mut f = Map::new();
                f.insert("pid".into(), json!(ctx.tgid));
                match addr {
                    SockAddr::Inet { v6, address, port } => {
                        f.insert("family".into(), json!(if v6 { "inet6" } else { "inet" }));
                        f.insert("address".into(), json!(address));
                        f.insert("port".into(), json!(port));
                    }
                    SockAddr::Unix(path) => {
                        f.insert("family".into(), json!("unix"));
                        f.insert("address".into(), json!(self.redact.text(&path)));
                    }
                    SockAddr::Other(_) => return,
                }
                f.insert("result".into(), json!(result_text(result)));
                let event = match call {
                    NetCall::Connect => "connect",
                    NetCall::Bind => "bind",
                    NetCall::Accept => "accept",
                };
                let container = self.proc_of(&ctx).container.clone();
                self.announce(ctx.tgid, out);
                out.push(Record::new(event, container, f));
            }
            Event::Other(_) => {}
        }
    }

    /// The sandbox is gone: what is still open is written.
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        let mut pids: Vec<i32> = self.procs.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            if self.procs.get(&pid).is_some_and(|p| !p.files.is_empty()) {
                self.announce(pid, out);
                self.flush_files(pid, out);
            }
        }
        self.procs.clear();
        self.tracked_files = 0;
    }

    /// The process of an event, created from its context if the process was
    /// never seen (started by `runsc exec`, or its clone point was dropped).
    fn proc_of(&mut self, ctx: &Ctx) -> &mut Proc {
        let seq = self.next_seq;
        if !self.procs.contains_key(&ctx.tgid) {
            self.next_seq += 1;
        }
        self.procs.entry(ctx.tgid).or_insert_with(|| Proc {
            seq,
            container: ctx.container.clone(),
            binary: ctx.name.clone(),
            cwd: ctx.cwd.clone(),
            uid: ctx.uid,
            gid: ctx.gid,
            ..Proc::default()
        })
    }

    fn ignored(&self, path: &str, flags: u32) -> bool {
        if self.cfg.ignore_paths.iter().any(|p| under(path, p)) {
            return true;
        }
        let read_only = flags & (O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND) == 0;
        self.cfg.ignore_loader && read_only && loader_read(path)
    }

    fn announce(&mut self, tgid: i32, out: &mut Vec<Record>) {
        let Some(p) = self.procs.get_mut(&tgid) else {
            return;
        };
        if p.announced {
            return;
        }
        p.announced = true;
        if !self.cfg.records(Kind::Processes) {
            return;
        }
        let mut f = Map::new();
        f.insert("pid".into(), json!(tgid));
        f.insert("ppid".into(), json!(p.ppid));
        f.insert("binary".into(), json!(self.redact.text(&p.binary)));
        f.insert("argv".into(), json!(self.redact.argv(&p.argv)));
        f.insert("cwd".into(), json!(self.redact.text(&p.cwd)));
        if let Some(uid) = p.uid {
            f.insert("uid".into(), json!(uid));
        }
        if let Some(gid) = p.gid {
            f.insert("gid".into(), json!(gid));
        }
        out.push(Record::new("process", p.container.clone(), f));
    }

    fn flush_files(&mut self, tgid: i32, out: &mut Vec<Record>) {
        let Some(p) = self.procs.get_mut(&tgid) else {
            return;
        };
        let mut files: Vec<(String, FileUse)> = p.files.drain().collect();
        self.tracked_files = self.tracked_files.saturating_sub(files.len());
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, u) in files {
            let mut intent = Vec::new();
            if u.read {
                intent.push("read");
            }
            if u.write {
                intent.push("write");
            }
            if u.create {
                intent.push("create");
            }
            let mut f = Map::new();
            f.insert("pid".into(), json!(tgid));
            f.insert("path".into(), json!(self.redact.text(&path)));
            f.insert("intent".into(), json!(intent));
            f.insert("opens".into(), json!(u.opens));
            if u.failed > 0 {
                f.insert("failed".into(), json!(u.failed));
            }
            out.push(Record::new("file", p.container.clone(), f));
        }
    }

    /// A process ended (or its pid was reused): write what it did.
    fn end(&mut self, tgid: i32, status: Option<i32>, out: &mut Vec<Record>) {
        let Some(p) = self.procs.get(&tgid) else {
            return;
        };
        let worth = p.announced || !p.files.is_empty();
        if !worth {
            self.procs.remove(&tgid);
            return;
        }
        self.announce(tgid, out);
        self.flush_files(tgid, out);
        let p = self.procs.remove(&tgid).expect("present");
        if let (Some(status), true) = (status, self.cfg.records(Kind::Processes)) {
            let mut f = Map::new();
            f.insert("pid".into(), json!(tgid));
            f.insert("status".into(), json!(status));
            let (code, signal) = decode_wait_status(status);
            if let Some(c) = code {
                f.insert("exit_code".into(), json!(c));
            }
            if let Some(s) = signal {
                f.insert("signal".into(), json!(s));
            }
            out.push(Record::new("process_exit", p.container, f));
        }
    }
}

/// `wait(2)`'s status: the exit code, or the signal that ended the process.
pub fn decode_wait_status(status: i32) -> (Option<i32>, Option<i32>) {
    let sig = status & 0x7f;
    if sig == 0 {
        (Some((status >> 8) & 0xff), None)
    } else {
        (None, Some(sig))
    }
}

/// The absolute path an open refers to, if it can be known.
fn resolve(cwd: &str, dirfd: i64, dir_path: &str, pathname: &str) -> Option<String> {
    if pathname.starts_with('/') {
        return Some(normalize(pathname));
    }
    let base = if dirfd == AT_FDCWD || dirfd < 0 {
        cwd
    } else {
        dir_path
    };
    if !base.starts_with('/') {
        return None;
    }
    if pathname.is_empty() {
        return Some(normalize(base));
    }
    Some(normalize(&format!("{base}/{pathname}")))
}

/// `.` and `..` and doubled slashes removed (lexically: the sentry resolved
/// symlinks its own way; this is for reading, not for access decisions).
fn normalize(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

fn under(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// What the dynamic loader reads to start a program.
fn loader_read(path: &str) -> bool {
    if matches!(path, "/etc/ld.so.cache" | "/etc/ld.so.preload") {
        return true;
    }
    let name = path.rsplit('/').next().unwrap_or(path);
    name.ends_with(".so") || name.contains(".so.")
}

/// A syscall result for the audit log: `ok`, or the errno's name.
pub fn result_text(result: i64) -> String {
    if result >= 0 {
        return "ok".into();
    }
    let name = match -result {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        11 => "EAGAIN",
        13 => "EACCES",
        22 => "EINVAL",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        n => return format!("errno {n}"),
    };
    name.into()
}

#[cfg(test)]
mod tests;
