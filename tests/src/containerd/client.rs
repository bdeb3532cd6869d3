//! What tests ask of a private containerd: `ctr` commands, image imports and
//! the CRI client.

use super::*;

impl Containerd {
    pub(super) fn ctr_cmd(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binaries.ctr);
        c.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(ns)
            .args(args);
        c.env("CONTAINERD_SNAPSHOTTER", &self.snapshotter);
        c
    }

    /// Runs `ctr --address <sock> --namespace <self.namespace> ARGS` (bounded: 180 s).
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_ns(&self.namespace, args)
    }

    /// `ctr` in namespace `ns` (bounded: 180 s). A time-out is reported as a
    /// failed Output with the reason in stderr.
    pub fn ctr_ns(&self, ns: &str, args: &[&str]) -> Output {
        match run_timeout(&mut self.ctr_cmd(ns, args), Duration::from_secs(180)) {
            Ok(o) => o,
            Err(e) => {
                use std::os::unix::process::ExitStatusExt;
                Output {
                    status: std::process::ExitStatus::from_raw(124 << 8),
                    stdout: vec![],
                    stderr: e.to_string().into_bytes(),
                }
            }
        }
    }

    /// `ctr` that must succeed; returns stdout, or an error with stderr and the
    /// containerd log tail.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let o = self.ctr(args);
        if !o.status.success() {
            bail!(
                "ctr {args:?} failed ({}): {}{}\n--- containerd log tail ---\n{}",
                o.status,
                String::from_utf8_lossy(&o.stderr),
                String::from_utf8_lossy(&o.stdout),
                self.log_tail(30)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `ctr run --rm --fifo-dir <dir>/fifo --runc-root <dir>/runc FLAGS IMAGE ID CMD...`
    /// in `self.namespace`. FLAGS may carry `--runtime`, `--runc-binary`,
    /// `--runc-root` (then the default root is not added), `--env`, `--mount`…
    pub fn ctr_run(&self, flags: &[&str], image: &str, id: &str, cmd: &[&str]) -> Output {
        let fifo = self.fifo_dir().display().to_string();
        let root = self.runc_root().display().to_string();
        let mut args: Vec<&str> = vec!["run", "--rm", "--fifo-dir", &fifo];
        if !flags.iter().any(|f| f.starts_with("--runc-root")) {
            args.extend(["--runc-root", &root]);
        }
        args.extend(flags);
        args.push(image);
        args.push(id);
        args.extend(cmd);
        self.ctr(&args)
    }

    /// Flags for `ctr_run` that run the container with runsc through
    /// containerd-shim-runc-v2 (the wrapper as `--runc-binary`).
    pub fn runsc_ctr_flags(&self) -> Vec<String> {
        vec![
            "--runtime".into(),
            "io.containerd.runc.v2".into(),
            "--runc-binary".into(),
            self.runsc_wrapper.display().to_string(),
            "--runc-root".into(),
            self.runsc_root().display().to_string(),
        ]
    }

    /// Imports an image tarball into namespace `ns` and checks it is listed.
    pub fn import_image(&self, img: &ImageTar, ns: &str) -> Result<()> {
        let path = img.path.display().to_string();
        let mut args = vec!["images", "import", "--base-name", img.repo.as_str()];
        if self.version.major >= 2 {
            // the classic client-side import (as in 1.x; honours CONTAINERD_SNAPSHOTTER)
            // rather than 2.x's default transfer-service import
            args.push("--local");
        }
        args.push(&path);
        let o = self.ctr_ns(ns, &args);
        if !o.status.success() {
            bail!(
                "ctr images import {} into {ns} failed: {}{}\n--- containerd log tail ---\n{}",
                img.path.display(),
                String::from_utf8_lossy(&o.stderr),
                String::from_utf8_lossy(&o.stdout),
                self.log_tail(30)
            );
        }
        let o = self.ctr_ns(ns, &["images", "ls", "-q"]);
        let list = String::from_utf8_lossy(&o.stdout);
        if !list.lines().any(|l| l.trim() == img.name) {
            bail!("image {} not listed in {ns} after import: {list}", img.name);
        }
        Ok(())
    }

    /// Builds (cached) and imports the busybox test image into `ns`.
    pub fn import_busybox(&self, ns: &str) -> Result<()> {
        self.import_image(&busybox_image()?, ns)
    }

    /// Imports the pause image into `k8s.io` (once per instance).
    pub fn import_pause(&self) -> Result<()> {
        if !self.pause_imported.load(Ordering::SeqCst) {
            self.import_image(&pause_image()?, K8S_NAMESPACE)?;
            self.pause_imported.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// A CRI client on this containerd (imports the pause image first).
    pub fn cri(&self) -> Result<crate::cri::Cri> {
        self.import_pause()?;
        self.cri_used.store(true, Ordering::SeqCst);
        crate::cri::Cri::connect(&self.address, self.pod_log_root(), self.cgroup_parent())
    }
}
