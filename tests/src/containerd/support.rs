//! The private containerd's host-side helpers: config templating, shell
//! quoting, the overlay probe, CNI subnet allocation, process checks.

use super::*;

/// Replaces `{dir}` in every string of a handler's options with the instance's
/// temp dir (so a ConfigPath can point into it before the dir exists).
pub(super) fn substitute_dir(t: &mut toml::Table, dir: &str) {
    for (_, v) in t.iter_mut() {
        match v {
            toml::Value::String(s) => *s = s.replace("{dir}", dir),
            toml::Value::Table(t) => substitute_dir(t, dir),
            toml::Value::Array(a) => {
                for x in a.iter_mut() {
                    if let toml::Value::String(s) = x {
                        *s = s.replace("{dir}", dir);
                    }
                }
            }
            _ => {}
        }
    }
}

pub(super) fn rmdir_tree(p: &Path) {
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(p);
}

pub(super) fn sh_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_=./,:".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Does an overlay mount work under `dir`? (Decides overlayfs vs native.)
pub(super) fn overlay_works(dir: &Path) -> bool {
    let base = dir.join("overlay-probe");
    let (l, u, w, m) = (
        base.join("l"),
        base.join("u"),
        base.join("w"),
        base.join("m"),
    );
    for d in [&l, &u, &w, &m] {
        if fs::create_dir_all(d).is_err() {
            return false;
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        l.display(),
        u.display(),
        w.display()
    );
    let c = |s: &str| CString::new(s).unwrap();
    let (src, tgt, fst, data) = (
        c("overlay"),
        c(&m.display().to_string()),
        c("overlay"),
        c(&opts),
    );
    // SAFETY: valid C strings; the mount is undone right after.
    let ok = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fst.as_ptr(),
            0,
            data.as_ptr() as *const _,
        )
    } == 0;
    if ok {
        // SAFETY: as above.
        unsafe { libc::umount2(tgt.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = fs::remove_dir_all(&base);
    ok
}

/// Picks a free 10.233.X.0/24 + bridge, holding a flock for the instance's life
/// (so parallel harnesses, also in other processes, never share one). A stale
/// bridge left by a crashed run under a lock we now hold is deleted.
pub(super) fn alloc_network() -> Result<(CniNetwork, fs::File)> {
    let lock_dir = std::env::temp_dir().join("agentbox-e2e-locks");
    fs::create_dir_all(&lock_dir)?;
    let used = {
        let a = run_ok(
            Command::new("ip").args(["-o", "-4", "addr", "show"]),
            Duration::from_secs(10),
        )
        .unwrap_or_default();
        let r = run_ok(
            Command::new("ip").args(["-4", "route", "show", "table", "all"]),
            Duration::from_secs(10),
        )
        .unwrap_or_default();
        a + &r
    };
    let start =
        (std::process::id() as usize * 7 + COUNTER.load(Ordering::SeqCst) as usize * 13) % 250;
    for k in 0..250 {
        let index = (1 + (start + k) % 250) as u8;
        let Some(lock) = try_flock(&lock_dir.join(format!("net-{index}.lock")))? else {
            continue;
        };
        let net = CniNetwork {
            name: format!("agentbox-e2e-{index}"),
            bridge: format!("abx-e2e-{index}"),
            index,
            egress: false,
        };
        let stale = Path::new("/sys/class/net").join(&net.bridge).exists();
        if stale {
            let _ = run_timeout(
                Command::new("ip").args(["link", "del", &net.bridge]),
                Duration::from_secs(10),
            );
        }
        if !stale && used.contains(&format!("10.233.{index}.")) {
            continue;
        }
        return Ok((net, lock));
    }
    Err(anyhow!("no free 10.233.X.0/24 subnet for the harness"))
}

/// True when no process of the harness with this dir is left (for tests of the harness).
pub fn no_process_mentions(dir: &Path) -> bool {
    let needle = dir.display().to_string();
    list_procs()
        .iter()
        .all(|p| !p.cmdline.iter().any(|a| a.contains(&needle)) || !pid_alive(p.pid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dir_placeholder() {
        let mut t = toml::Table::new();
        t.insert("ConfigPath".into(), "{dir}/agentbox.toml".into());
        t.insert("n".into(), 3.into());
        super::substitute_dir(&mut t, "/tmp/x");
        assert_eq!(t["ConfigPath"].as_str(), Some("/tmp/x/agentbox.toml"));
    }
}
