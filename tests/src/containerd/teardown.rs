//! Tearing a private containerd down: workloads stopped the way the kubelet
//! and containerd stop them, then the daemon; what is left recorded as a leak
//! and force-cleaned (processes, sockets, mounts, bridge, CNI cache, cgroups,
//! the folder).

use super::*;

impl Containerd {
    fn our_procs(&self) -> (BTreeSet<i32>, Vec<crate::util::ProcInfo>) {
        let needle = self.dir.display().to_string();
        let procs = list_procs();
        let me = std::process::id() as i32;
        let roots: BTreeSet<i32> = procs
            .iter()
            .filter(|p| p.pid != me && p.cmdline.iter().any(|a| a.contains(&needle)))
            .map(|p| p.pid)
            .collect();
        let all = with_descendants(&procs, &roots);
        let infos = procs.into_iter().filter(|p| all.contains(&p.pid)).collect();
        (all, infos)
    }

    fn graceful_stop_workloads(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        if self.cri_used.load(Ordering::SeqCst) {
            if let Ok(cri) =
                crate::cri::Cri::connect(&self.address, self.pod_log_root(), self.cgroup_parent())
            {
                cri.remove_all_pods(Duration::from_secs(40));
            }
        }
        let quick = |ns: &str, args: &[&str]| {
            run_timeout(&mut self.ctr_cmd(ns, args), Duration::from_secs(15))
        };
        let Ok(nss) = quick(DEFAULT_NAMESPACE, &["namespaces", "ls", "-q"]) else {
            return;
        };
        for ns in String::from_utf8_lossy(&nss.stdout)
            .lines()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Ok(tasks) = quick(ns, &["tasks", "ls", "-q"]) else {
                continue;
            };
            for id in String::from_utf8_lossy(&tasks.stdout)
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                if Instant::now() >= deadline {
                    return;
                }
                let _ = quick(ns, &["tasks", "kill", "--all", "--signal", "SIGKILL", id]);
                let _ = quick(ns, &["tasks", "delete", "--force", id]);
            }
            if let Ok(cs) = quick(ns, &["containers", "ls", "-q"]) {
                for id in String::from_utf8_lossy(&cs.stdout)
                    .lines()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                {
                    if Instant::now() >= deadline {
                        return;
                    }
                    let _ = quick(ns, &["containers", "delete", id]);
                }
            }
        }
    }

    fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    fn kill_leftovers(&self, sockets: &[PathBuf]) {
        let (pids, infos) = self.our_procs();
        kill_pids(&pids, Duration::from_secs(10));
        // Shim sockets live in /run/containerd/s (containerd's hash-named ones,
        // agentbox's `agentbox-<pod>` ones); a killed shim cannot remove its own.
        let mut all: Vec<PathBuf> = infos.iter().filter_map(crate::leaks::shim_socket).collect();
        all.extend(sockets.iter().cloned());
        for s in all {
            let _ = fs::remove_file(s);
        }
    }

    fn remove_cgroups(&self) {
        let name = format!("agentbox-e2e-{}", self.network.index);
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup").join(&name)];
        if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
            roots.extend(rd.flatten().map(|e| e.path().join(&name)));
        }
        for r in roots.into_iter().filter(|r| r.is_dir()) {
            rmdir_tree(&r);
        }
    }

    /// libcni's result cache (hard-coded /var/lib/cni/results) keeps entries of
    /// pods that were never torn down through CNI DEL; ours are named after our
    /// network (whose index we hold the lock of) and, for loopback, the pod id.
    fn remove_cni_cache(&self) {
        let dir = Path::new("/var/lib/cni/results");
        let prefix = format!("{}-", self.network.name);
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(&prefix) {
                if let Some(pod) = rest.strip_suffix("-eth0") {
                    let _ = fs::remove_file(dir.join(format!("cni-loopback-{pod}-lo")));
                }
                let _ = fs::remove_file(e.path());
            }
        }
    }

    fn remove_bridge(&self) {
        if Path::new("/sys/class/net")
            .join(&self.network.bridge)
            .exists()
        {
            let _ = run_timeout(
                Command::new("ip").args(["link", "del", &self.network.bridge]),
                Duration::from_secs(10),
            );
        }
    }

    /// Tears down now (also what Drop does). Safe to call twice. Workloads
    /// are removed the way the kubelet and containerd remove them; what is
    /// still there afterwards is recorded as a leak (`leaks()`, and Drop
    /// fails the test) and then force-cleaned.
    pub fn shutdown(&mut self) {
        let running = self.child.is_some();
        let sockets: Vec<PathBuf> = self
            .our_procs()
            .1
            .iter()
            .filter_map(crate::leaks::shim_socket)
            .collect();
        if running {
            self.graceful_stop_workloads();
        }
        self.stop_daemon();
        if running {
            self.leaks = crate::leaks::after_teardown(
                &self.dir,
                self.cgroup_parent().trim_start_matches('/'),
                &sockets,
                Duration::from_secs(10),
            );
        }
        self.kill_leftovers(&sockets);
        let left = unmount_all_under(&self.dir);
        if !left.is_empty() {
            eprintln!(
                "agentbox-e2e: still mounted under {}: {left:?}",
                self.dir.display()
            );
        }
        self.remove_bridge();
        self.remove_cni_cache();
        self.remove_cgroups();
        if left.is_empty() && self.dir.exists() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                eprintln!("agentbox-e2e: could not remove {}: {e}", self.dir.display());
            }
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- agentbox-e2e: containerd {} log tail ({}) ----\n{}\n---- end of containerd log ----",
                self.version,
                self.log_path().display(),
                self.log_tail(60)
            );
        }
        self.shutdown();
        if self.check_leaks && !self.leaks.is_empty() && !std::thread::panicking() {
            panic!(
                "agentbox-e2e: the test left behind (after its pods and tasks were removed):\n  {}",
                self.leaks.join("\n  ")
            );
        }
    }
}
