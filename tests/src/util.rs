//! Small process, mount and command helpers shared by the harness.

use std::collections::{BTreeSet, HashMap};
use std::ffi::CString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// True when the current process runs as uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Set (to anything but `0`) to turn every skip into a failure; `.ci/run`
/// sets it, so a CI run cannot pass by not running a test.
pub const NO_SKIP_ENV: &str = "AGENTBOX_E2E_NO_SKIP";

/// Whether skips are forbidden in this run.
pub fn skips_forbidden() -> bool {
    std::env::var_os(NO_SKIP_ENV).is_some_and(|v| v != "0")
}

/// Skip `test` for `reason`: returns `true` (and prints a loud reason), or
/// panics when [`NO_SKIP_ENV`] forbids skipping. Use as
/// `if skip("name", "why") { return; }`. libtest hides a passing test's
/// stderr, so a skip is only visible with `--nocapture`: that is why CI
/// forbids them rather than counting them.
pub fn skip(test: &str, reason: &str) -> bool {
    if skips_forbidden() {
        panic!("{test} would be skipped ({reason}), and {NO_SKIP_ENV} forbids skipping");
    }
    eprintln!("SKIPPED {test}: {reason}");
    true
}

/// For tests that need root: see [`skip`]. Use as
/// `if skip_unless_root("name") { return; }`.
pub fn skip_unless_root(test: &str) -> bool {
    !is_root()
        && skip(
            test,
            "needs root (private containerd, mounts, network namespaces)",
        )
}

/// Panics with a clear message when `path` is not an executable file.
pub fn require_bin(path: &Path, what: &str) {
    if !is_executable(path) {
        panic!(
            "agentbox-e2e: required binary {} ({what}) not found or not executable; \
             install it (see tests/README.md)",
            path.display()
        );
    }
}

pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Looks `name` up on `PATH` (plus `/usr/sbin`, `/sbin` which root's PATH may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            [
                "/usr/local/sbin",
                "/usr/local/bin",
                "/usr/sbin",
                "/usr/bin",
                "/sbin",
                "/bin",
            ]
            .map(PathBuf::from),
        )
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// `/work/main/.work` (the repository's gitignored work folder), or `$AGENTBOX_WORK`.
pub fn work_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AGENTBOX_WORK") {
        return PathBuf::from(d);
    }
    repo_root().join(".work")
}

/// Cargo's target dir (`$CARGO_TARGET_DIR` or `<workspace>/target`); the agentbox
/// shim binary is in its `debug/` or `release/` folder.
pub fn cargo_target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The workspace root (parent of this crate).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Runs a command with a bound on its run time; on time-out the child is killed
/// and an error returned. stdout/stderr are captured.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawn {desc}"))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status: ExitStatus = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("command timed out after {timeout:?}: {desc}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Readers end when every holder of the pipes exits; a grandchild that kept
    // them open (daemonized shim) must not hang us, so bound the joins as well.
    let stdout = join_bounded(t_out, Duration::from_secs(5));
    let stderr = join_bounded(t_err, Duration::from_secs(5));
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn join_bounded(t: std::thread::JoinHandle<Vec<u8>>, bound: Duration) -> Vec<u8> {
    let deadline = Instant::now() + bound;
    while !t.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if t.is_finished() {
        t.join().unwrap_or_default()
    } else {
        Vec::new()
    }
}

/// Runs a command (bounded) and fails with its stderr unless it exits 0; returns stdout.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let desc = format!("{cmd:?}");
    let out = run_timeout(cmd, timeout)?;
    if !out.status.success() {
        bail!(
            "{desc} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A process as seen in /proc.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub cmdline: Vec<String>,
}

/// Every process currently in /proc (best effort: processes that vanish are skipped).
pub fn list_procs() -> Vec<ProcInfo> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm may contain spaces and parens: ppid is the 2nd field after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                b.split(|c| *c == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.push(ProcInfo { pid, ppid, cmdline });
    }
    v
}

/// `roots` plus all their descendants, from one snapshot of /proc.
pub fn with_descendants(procs: &[ProcInfo], roots: &BTreeSet<i32>) -> BTreeSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = BTreeSet::new();
    let mut stack: Vec<i32> = roots.iter().copied().collect();
    while let Some(p) = stack.pop() {
        if out.insert(p) {
            if let Some(c) = children.get(&p) {
                stack.extend(c);
            }
        }
    }
    out
}

pub(crate) fn pid_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); treat it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rfind(')')
            .map(|i| s[i + 1..].trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Sends SIGKILL to each pid (never pid <= 1 nor ourselves) and waits up to `bound`
/// for them to be gone.
pub fn kill_pids(pids: &BTreeSet<i32>, bound: Duration) {
    let me = std::process::id() as i32;
    for &p in pids {
        if p > 1 && p != me {
            // SAFETY: plain kill(2).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    let deadline = Instant::now() + bound;
    while Instant::now() < deadline && pids.iter().any(|&p| p > 1 && p != me && pid_alive(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Mount points at or below `dir` from /proc/self/mountinfo, deepest first (and
/// for stacked mounts on one point, the most recent first).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec![];
    };
    let mut v: Vec<(usize, usize, PathBuf)> = Vec::new();
    for (i, line) in info.lines().enumerate() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let p = PathBuf::from(unescape_mountinfo(mp));
        if p.starts_with(dir) {
            v.push((p.components().count(), i, p));
        }
    }
    v.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    v.into_iter().map(|(_, _, p)| p).collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lazily unmounts everything mounted at or below `dir`, deepest first, in a few
/// bounded rounds. Returns what is still mounted afterwards (normally nothing).
pub fn unmount_all_under(dir: &Path) -> Vec<PathBuf> {
    for _ in 0..5 {
        let m = mounts_under(dir);
        if m.is_empty() {
            return m;
        }
        for p in &m {
            if let Ok(c) = CString::new(p.as_os_str().as_encoded_bytes()) {
                // SAFETY: valid C string; MNT_DETACH never blocks.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
    mounts_under(dir)
}

/// Last `n` lines of a text file ("" if unreadable).
pub fn tail_file(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Exclusive, non-blocking flock on `path` (created if needed). `None` if held elsewhere.
pub(crate) fn try_flock(path: &Path) -> Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open lock {}", path.display()))?;
    // SAFETY: valid fd.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        Ok(Some(f))
    } else {
        Ok(None)
    }
}

/// Blocking flock (bounded by `bound`; polls).
pub(crate) fn flock_wait(path: &Path, bound: Duration) -> Result<std::fs::File> {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(f) = try_flock(path)? {
            return Ok(f);
        }
        if Instant::now() >= deadline {
            return Err(anyhow!("timed out waiting for lock {}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Hex sha256 of bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }

    #[test]
    fn descendants_of_self_include_self() {
        let me = std::process::id() as i32;
        let procs = list_procs();
        let set = with_descendants(&procs, &[me].into_iter().collect());
        assert!(set.contains(&me));
    }

    #[test]
    fn run_timeout_kills() {
        let r = run_timeout(Command::new("sleep").arg("5"), Duration::from_millis(200));
        assert!(r.is_err());
        let o = run_timeout(Command::new("echo").arg("x"), Duration::from_secs(5)).unwrap();
        assert_eq!(o.stdout, b"x\n");
    }
}
