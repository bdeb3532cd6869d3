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

    #[test]
    fn trimming_keeps_the_process_working() {
        trim_now();
        // code and read-only data fault back in
        let v: Vec<u64> = (0..1000).collect();
        assert_eq!(v.iter().sum::<u64>(), 499500);
    }
}
