//! Working-set trimming. One agentbox daemon lives as long as its pod and
//! mostly waits; the code it ran while setting containers up (protobuf,
//! policy, process spawning) need not stay resident. After a burst of work
//! the daemon asks the kernel to reclaim its read-only file-backed pages
//! (`MADV_PAGEOUT`, Linux 5.4+): they stay in the page cache, shared with
//! every other daemon, and fault back in cheaply when next used. Anonymous
//! memory (heap, stacks) is never touched.

use std::time::Duration;

/// Read-only, file-backed mappings of this process: (start, length).
pub fn file_mappings(maps: &str) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3).unwrap_or("");
            if !path.starts_with('/') || perms.as_bytes().get(1) == Some(&b'w') {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let a = usize::from_str_radix(a, 16).ok()?;
            let b = usize::from_str_radix(b, 16).ok()?;
            (b > a).then_some((a, b - a))
        })
        .collect()
}

/// Ask the kernel to reclaim this process's read-only file pages now.
pub fn trim_now() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for (addr, len) in file_mappings(&maps) {
        // SAFETY: advice on our own mappings; MADV_PAGEOUT never changes contents.
        unsafe {
            libc::madvise(addr as *mut libc::c_void, len, libc::MADV_PAGEOUT);
        }
    }
}

/// A debounced trimmer: `poke` after work; the trim runs once things have
/// been quiet for `quiet`.
#[derive(Clone)]
pub struct Trimmer {
    tx: tokio::sync::mpsc::Sender<()>,
}

impl Trimmer {
    pub fn spawn(quiet: Duration) -> Trimmer {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                loop {
                    match tokio::time::timeout(quiet, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                trim_now();
            }
        });
        Trimmer { tx }
    }

    pub fn poke(&self) {
        let _ = self.tx.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_read_only_file_mappings() {
        let maps = "\
55d0c0000000-55d0c0100000 r-xp 00000000 fe:01 123 /usr/bin/containerd-shim-agentbox-v1
55d0c0100000-55d0c0200000 rw-p 00100000 fe:01 123 /usr/bin/containerd-shim-agentbox-v1
55d0c0300000-55d0c0400000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000001000 r--p 00000000 fe:01 9 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000002000-7f0000003000 r--p 00000000 00:00 0
";
        assert_eq!(
            file_mappings(maps),
            vec![(0x55d0c0000000, 0x100000), (0x7f0000000000, 0x1000)]
        );
    }

    /// Resident KiB of the mapping that starts at `addr` (from smaps).
    fn rss_kib(addr: usize) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = format!("{addr:x}-");
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        lines.next().expect("the mapping is listed");
        lines
            .find_map(|l| l.strip_prefix("Rss:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn trimming_reclaims_read_only_file_pages_and_keeps_them_readable() {
        use std::os::fd::AsRawFd;
        let len = 1 << 20;
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &vec![7u8; len]).unwrap();
        // clean page-cache pages, like a binary's code: dirty ones wait for writeback
        f.sync_all().unwrap();
        // SAFETY: a private read-only mapping of our own file, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: reading inside the mapping.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
        let touch = || bytes.iter().step_by(4096).map(|&b| b as u64).sum::<u64>();
        assert_eq!(touch(), 7 * 256);
        let before = rss_kib(p as usize);
        assert!(
            before >= 1000,
            "the touched mapping is resident: {before} KiB"
        );
        trim_now();
        let after = rss_kib(p as usize);
        assert!(
            after < before / 2,
            "trim left {after} KiB of {before} KiB resident"
        );
        // and the pages fault back in with their contents
        assert_eq!(touch(), 7 * 256);
        // SAFETY: unmapping what we mapped; `bytes` is not used after this.
        unsafe { libc::munmap(p, len) };
    }
}
