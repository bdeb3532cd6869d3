//! Agent-like workloads for `make bench-workload`: busybox shell scripts that
//! time themselves inside the container (`/proc/uptime`, 10 ms resolution),
//! so container start and exec overhead stay out of the numbers, plus the
//! archive they unpack (built here, at bench time) and the statistics.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::util::{run_ok, sha256_hex, work_dir};

/// Files in the archive (`dirs` × `per_dir`).
pub const ARCHIVE_DIRS: usize = 200;
pub const ARCHIVE_PER_DIR: usize = 100;
/// Where the archive is mounted (read-only) in the containers.
pub const ARCHIVE_MOUNT: &str = "/bench";

/// One timed workload: its name and the shell that runs it. `$D` is a fresh
/// folder on the file system under test; the script prints `T name start end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// 3,000 small files in 30 folders: create, stat, read, delete.
    Files(Place),
    /// Unpack the ~20,000-file archive, `find` it, `grep -r` it, remove it.
    Archive(Place),
    /// 20,000 `stat`s of one path (a shell builtin: no spawn): what one
    /// intercepted system call costs.
    Syscall,
    /// 2,000 spawns of `/bin/true`.
    Spawn,
    /// 64 MiB through `cat | gzip -1 | wc -c`, and 256 MiB through two `cat`s.
    Pipe,
}

/// The file system a workload works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// The container's root filesystem (`/home/bench`).
    Rootfs,
    /// `/tmp` (also the root filesystem in this image, as in most).
    Tmp,
    /// The workspace as an emptyDir volume (`/workspace`).
    EmptyDir,
    /// The workspace as a plain host bind (a hostPath or PVC: `/data`).
    Bind,
}

impl Place {
    pub fn name(self) -> &'static str {
        match self {
            Place::Rootfs => "rootfs",
            Place::Tmp => "/tmp",
            Place::EmptyDir => "emptyDir",
            Place::Bind => "bind",
        }
    }
    pub fn dir(self) -> &'static str {
        match self {
            Place::Rootfs => "/home/bench",
            Place::Tmp => "/tmp/bench",
            Place::EmptyDir => "/workspace/bench",
            Place::Bind => "/data/bench",
        }
    }
}

impl Workload {
    /// Every workload, in report order.
    pub fn all() -> Vec<Workload> {
        vec![
            Workload::Files(Place::Rootfs),
            Workload::Files(Place::Tmp),
            Workload::Files(Place::EmptyDir),
            Workload::Files(Place::Bind),
            Workload::Archive(Place::Rootfs),
            Workload::Archive(Place::EmptyDir),
            Workload::Syscall,
            Workload::Spawn,
            Workload::Pipe,
        ]
    }

    /// Its key in `AGENTBOX_BENCH_WORKLOADS` (`files-rootfs`, `spawn`, ...).
    pub fn key(self) -> String {
        let place = |p: Place| match p {
            Place::Rootfs => "rootfs",
            Place::Tmp => "tmp",
            Place::EmptyDir => "emptydir",
            Place::Bind => "bind",
        };
        match self {
            Workload::Files(p) => format!("files-{}", place(p)),
            Workload::Archive(p) => format!("archive-{}", place(p)),
            Workload::Syscall => "syscall".into(),
            Workload::Spawn => "spawn".into(),
            Workload::Pipe => "pipe".into(),
        }
    }

    /// The timed phases it reports, in order.
    pub fn phases(self) -> Vec<String> {
        match self {
            Workload::Files(p) => vec![format!("small files, {}", p.name())],
            Workload::Archive(p) => ["unpack", "find", "grep -r", "rm -r"]
                .iter()
                .map(|s| format!("archive {s}, {}", p.name()))
                .collect(),
            Workload::Syscall => vec!["20,000 stat()s".into()],
            Workload::Spawn => vec!["2,000 spawns".into()],
            Workload::Pipe => vec!["pipe: cat, gzip -1, wc".into(), "pipe: dd, 3 cats".into()],
        }
    }

    /// The script (one `sh -c` argument).
    pub fn script(self) -> String {
        let t = |name: &str, body: &str| {
            format!(
                "read s _ </proc/uptime\n{body}\nread e _ </proc/uptime\necho \"T {name}|$s|$e\"\n"
            )
        };
        let mut s = String::from("set -e\n");
        match self {
            Workload::Files(p) => {
                let _ = write!(
                    s,
                    "D={}/f.$$; rm -rf $D; mkdir -p $D; cd $D\nmkdir $(i=0; while [ $i -lt 30 ]; do echo d$i; i=$((i+1)); done)\n",
                    p.dir()
                );
                s += &t(
                    &self.phases()[0],
                    "i=0; while [ $i -lt 3000 ]; do echo \"line $i of a small file\" > d$((i%30))/f$i; i=$((i+1)); done\n\
                     i=0; while [ $i -lt 3000 ]; do [ -f d$((i%30))/f$i ]; read l < d$((i%30))/f$i; i=$((i+1)); done\n\
                     cd /; rm -r $D",
                );
            }
            Workload::Archive(p) => {
                let ph = self.phases();
                let _ = write!(
                    s,
                    "D={}/a.$$; rm -rf $D; mkdir -p $D\ncp {ARCHIVE_MOUNT}/src.tar /tmp/src.$$.tar\n",
                    p.dir()
                );
                s += &t(&ph[0], "tar -xf /tmp/src.$$.tar -C $D");
                s += &t(&ph[1], "n=$(find $D -type f | wc -l)");
                s += &t(&ph[2], "g=$(grep -r -l needle $D | wc -l)");
                s += &t(&ph[3], "rm -r $D");
                s += "rm -f /tmp/src.$$.tar\necho \"N files=$n matches=$g\"\n";
            }
            Workload::Syscall => {
                s += &t(
                    &self.phases()[0],
                    "i=0; while [ $i -lt 20000 ]; do [ -d /tmp ]; i=$((i+1)); done",
                );
            }
            Workload::Spawn => {
                s += &t(
                    &self.phases()[0],
                    "i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done",
                );
            }
            Workload::Pipe => {
                let ph = self.phases();
                s += "yes 'a line of text that gzip has some work to do with 0123456789' | head -c 67108864 > /tmp/big.$$\n";
                s += &t(&ph[0], "cat /tmp/big.$$ | gzip -1 | wc -c >/dev/null");
                s += &t(
                    &ph[1],
                    "dd if=/dev/zero bs=4096 count=65536 2>/dev/null | cat | cat | cat >/dev/null",
                );
                s += "rm -f /tmp/big.$$\n";
            }
        }
        s
    }
}

/// The `T name|start|end` lines of a script's output, as seconds per phase;
/// an error if a phase in `expect` is missing (the script failed midway).
pub fn parse_times(out: &str, expect: &[String]) -> Result<BTreeMap<String, f64>> {
    let mut m = BTreeMap::new();
    for l in out.lines() {
        let Some(rest) = l.strip_prefix("T ") else {
            continue;
        };
        let f: Vec<&str> = rest.split('|').collect();
        if let [name, s, e] = f.as_slice() {
            let (s, e): (f64, f64) = (s.trim().parse()?, e.trim().parse()?);
            m.insert(name.to_string(), e - s);
        }
    }
    for p in expect {
        if !m.contains_key(p) {
            bail!("phase {p:?} missing from the workload output: {out}");
        }
    }
    Ok(m)
}

/// The archive's file count and `needle` matches, from the script output.
pub fn parse_counts(out: &str) -> Option<(usize, usize)> {
    let l = out.lines().find_map(|l| l.strip_prefix("N "))?;
    let get = |k: &str| {
        l.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k))
            .and_then(|v| v.parse().ok())
    };
    Some((get("files=")?, get("matches=")?))
}

/// How many archive files contain `needle`.
pub fn archive_matches() -> usize {
    (0..ARCHIVE_DIRS * ARCHIVE_PER_DIR)
        .filter(|i| i % 50 == 7)
        .count()
}

/// The archive (`src.tar`, ~20,000 small text files in 200 folders), built
/// once into `.work/bench/` and reused; the folder holding it.
pub fn archive_dir() -> Result<PathBuf> {
    let key = &sha256_hex(format!("archive v1 {ARCHIVE_DIRS} {ARCHIVE_PER_DIR}").as_bytes())[..12];
    let dir = work_dir().join("bench").join(format!("archive-{key}"));
    if dir.join("src.tar").is_file() {
        return Ok(dir);
    }
    let tmp = work_dir().join("bench").join(format!("build-{key}"));
    let _ = std::fs::remove_dir_all(&tmp);
    let src = tmp.join("src");
    for d in 0..ARCHIVE_DIRS {
        let sub = src.join(format!("pkg{d:03}/lib"));
        std::fs::create_dir_all(&sub)?;
        for f in 0..ARCHIVE_PER_DIR {
            let i = d * ARCHIVE_PER_DIR + f;
            let mut body = String::new();
            for line in 0..(4 + i % 12) {
                let _ = writeln!(
                    body,
                    "export function f{i}_{line}(x) {{ return x + {line}; }}"
                );
            }
            if i % 50 == 7 {
                body.push_str("// the needle is here\n");
            }
            std::fs::write(sub.join(format!("m{f:03}.js")), body)?;
        }
    }
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(tmp.join("src.tar"))
            .arg("-C")
            .arg(&tmp)
            .arg("src"),
        Duration::from_secs(300),
    )
    .context("tar the bench archive")?;
    std::fs::create_dir_all(&dir)?;
    std::fs::rename(tmp.join("src.tar"), dir.join("src.tar"))?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(dir)
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_report_every_phase_they_promise() {
        for w in [
            Workload::Files(Place::Tmp),
            Workload::Archive(Place::EmptyDir),
            Workload::Syscall,
            Workload::Spawn,
            Workload::Pipe,
        ] {
            let s = w.script();
            for p in w.phases() {
                assert!(!p.contains('|'), "{p}: '|' separates the T fields");
                assert!(s.contains(&format!("T {p}|")), "{w:?} {p}");
            }
        }
    }

    #[test]
    fn workload_keys_are_distinct() {
        let all = Workload::all();
        let keys: std::collections::BTreeSet<String> = all.iter().map(|w| w.key()).collect();
        assert_eq!(keys.len(), all.len());
        assert_eq!(Workload::Files(Place::Tmp).key(), "files-tmp");
    }

    #[test]
    fn parses_times_and_counts() {
        let out = "x\nT a|10.00|12.50\nT b|12.50|12.60\nN files=20000 matches=400\n";
        let m = parse_times(out, &["a".into(), "b".into()]).unwrap();
        assert!((m["a"] - 2.5).abs() < 1e-9 && (m["b"] - 0.1).abs() < 1e-6);
        assert!(parse_times(out, &["c".into()]).is_err());
        assert_eq!(parse_counts(out), Some((20000, 400)));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
