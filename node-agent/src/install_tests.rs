//! install/uninstall against a fake containerd that "restarts" by reading
//! the config from the temp host root the way containerd would.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::Path;
use std::rc::Rc;

use super::*;
use crate::cri::PodRef;
use crate::restart::RestartError;
use crate::source::tests::{fixture, POLICY};
use crate::uninstall::{uninstall, UninstallError, UninstallOptions};
use crate::ContainerdVersion;

const ADMIN: &str = "# the admin's config\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"   # keep\n";

#[derive(Default)]
struct Node {
    loaded: BTreeSet<String>,
    restarts: usize,
    pods: Vec<PodRef>,
    version: Option<ContainerdVersion>,
}

#[derive(Clone)]
struct Fake {
    node: Rc<RefCell<Node>>,
    layout: Layout,
}

impl Fake {
    fn runtimes(text: &str) -> Result<BTreeSet<String>, String> {
        let t: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut out = BTreeSet::new();
        for plugin in ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime"] {
            if let Some(rt) = t
                .get("plugins")
                .and_then(|p| p.get(plugin))
                .and_then(|p| p.get("containerd"))
                .and_then(|p| p.get("runtimes"))
                .and_then(|r| r.as_table())
            {
                for (k, v) in rt {
                    if v.get("privileged_without_host_devices")
                        .is_some_and(|x| !x.is_bool())
                    {
                        // like containerd: the CRI plugin fails to load, no handlers at all
                        return Ok(BTreeSet::new());
                    }
                    out.insert(k.clone());
                }
            }
        }
        Ok(out)
    }
}

impl Restarter for Fake {
    fn restart(&mut self) -> Result<(), RestartError> {
        let cfg = std::fs::read_to_string(self.layout.on_host(&self.layout.containerd_config))
            .unwrap_or_default();
        let mut loaded = Fake::runtimes(&cfg).map_err(|e| RestartError::Failed {
            cmd: vec!["fake".into()],
            status: "1".into(),
            output: e,
        })?;
        let dropin = self.layout.on_host(&self.layout.dropin_path());
        if cfg.contains("imports") {
            if let Ok(t) = std::fs::read_to_string(dropin) {
                loaded.extend(Fake::runtimes(&t).unwrap_or_default());
            }
        }
        let mut n = self.node.borrow_mut();
        n.loaded = loaded;
        n.restarts += 1;
        Ok(())
    }
}

impl Containerd for Fake {
    fn version(&mut self) -> Result<ContainerdVersion, CriError> {
        Ok(self
            .node
            .borrow()
            .version
            .unwrap_or(ContainerdVersion::new(1, 6, 20)))
    }
    fn loaded_handlers(&mut self) -> Result<Option<BTreeSet<String>>, CriError> {
        Ok(Some(self.node.borrow().loaded.clone()))
    }
    fn pods_on(&mut self, handlers: &[String]) -> Result<Vec<PodRef>, CriError> {
        Ok(self
            .node
            .borrow()
            .pods
            .iter()
            .filter(|p| handlers.contains(&p.handler))
            .cloned()
            .collect())
    }
    fn wait_ready(&mut self, _: Duration) -> Result<(), CriError> {
        Ok(())
    }
}

struct T {
    dir: tempfile::TempDir,
    opts: InstallOptions,
    fake: Fake,
}

impl T {
    fn new(admin: Option<&str>) -> T {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("host");
        let (cm, bin) = fixture(dir.path());
        let layout = Layout::standard(&root);
        if let Some(a) = admin {
            let p = layout.on_host(&layout.containerd_config);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, a).unwrap();
        }
        let fake = Fake {
            node: Rc::new(RefCell::new(Node::default())),
            layout: layout.clone(),
        };
        // containerd runs on the admin's config
        if admin.is_some() {
            fake.clone().restart().unwrap();
            fake.node.borrow_mut().restarts = 0;
        }
        T {
            opts: InstallOptions {
                layout,
                source_dir: cm,
                binaries_dir: bin,
                ready_timeout: Duration::from_secs(1),
            },
            fake,
            dir,
        }
    }
    fn install(&mut self) -> Result<InstallReport, InstallError> {
        let mut a = self.fake.clone();
        let mut b = self.fake.clone();
        install(&self.opts, &mut a, &mut b)
    }
    fn uninstall(
        &mut self,
        force: bool,
    ) -> Result<crate::uninstall::UninstallReport, UninstallError> {
        let mut a = self.fake.clone();
        let mut b = self.fake.clone();
        uninstall(
            &UninstallOptions {
                layout: self.opts.layout.clone(),
                ready_timeout: Duration::from_secs(1),
                force,
            },
            &mut a,
            &mut b,
        )
    }
    fn host(&self, p: &str) -> std::path::PathBuf {
        self.opts.layout.on_host(Path::new(p))
    }
    fn config(&self) -> String {
        std::fs::read_to_string(self.host("/etc/containerd/config.toml")).unwrap()
    }
    fn restarts(&self) -> usize {
        self.fake.node.borrow().restarts
    }
    fn cm(&self, name: &str) -> std::path::PathBuf {
        self.opts.source_dir.join(name)
    }
    /// Every file under the host root with its content.
    fn snapshot(&self) -> Vec<(String, Vec<u8>)> {
        fn walk(d: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            if let Ok(rd) = std::fs::read_dir(d) {
                for e in rd.flatten() {
                    let p = e.path();
                    if let Ok(t) = std::fs::read_link(&p) {
                        out.push((
                            p.display().to_string(),
                            t.display().to_string().into_bytes(),
                        ));
                    } else if p.is_dir() {
                        out.push((p.display().to_string(), vec![]));
                        walk(&p, out);
                    } else {
                        out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
                    }
                }
            }
        }
        let mut v = vec![];
        walk(self.dir.path().join("host").as_path(), &mut v);
        v.sort();
        v
    }
}

fn pod(handler: &str) -> PodRef {
    PodRef {
        namespace: "agents".into(),
        name: "a1".into(),
        handler: handler.into(),
    }
}

#[test]
fn install_is_idempotent_and_uninstall_restores_the_config_byte_for_byte() {
    let mut t = T::new(Some(ADMIN));
    let before = t.snapshot();
    let r = t.install().unwrap();
    assert!(r.restarted && r.wiring_changed, "{r:?}");
    assert_eq!(r.mode, "in-place");
    assert_eq!(t.restarts(), 1);
    assert!(t.fake.node.borrow().loaded.contains("agentbox-gvisor"));
    assert!(t.config().starts_with(ADMIN));
    assert_eq!(
        std::fs::read_to_string(t.host("/etc/agentbox/gvisor.toml")).unwrap(),
        POLICY
    );
    assert!(t
        .host("/opt/agentbox/bin/containerd-shim-agentbox-v1")
        .is_file());

    // again: nothing to do
    let r = t.install().unwrap();
    assert!(r.changed.is_empty() && !r.restarted, "{r:?}");
    assert_eq!(t.restarts(), 1);

    // a pod runs: uninstall refuses and changes nothing
    t.fake.node.borrow_mut().pods = vec![pod("agentbox-gvisor"), pod("runc")];
    let wired = t.snapshot();
    let e = t.uninstall(false).unwrap_err();
    assert!(
        matches!(&e, UninstallError::PodsRunning(p) if p.len() == 1),
        "{e}"
    );
    assert!(e.to_string().contains("agents/a1 (agentbox-gvisor)"), "{e}");
    assert_eq!(t.snapshot(), wired);
    assert_eq!(t.restarts(), 1);

    t.fake.node.borrow_mut().pods.clear();
    let r = t.uninstall(false).unwrap();
    assert!(r.config_restored_exactly && r.restarted, "{r:?}");
    assert_eq!(t.config(), ADMIN);
    assert_eq!(t.snapshot(), before, "exactly what install added is gone");
    assert!(!t.fake.node.borrow().loaded.contains("agentbox-gvisor"));
    assert_eq!(t.restarts(), 2);
    // and once more: nothing installed
    assert!(!t.uninstall(false).unwrap().was_installed);
}

#[test]
fn a_new_binary_or_policy_needs_no_restart() {
    let mut t = T::new(Some(ADMIN));
    t.install().unwrap();
    std::fs::write(
        t.cm("gvisor.toml"),
        format!("{POLICY}[env]\nallow = [\"X\"]\n"),
    )
    .unwrap();
    let shim = t.opts.binaries_dir.join("containerd-shim-agentbox-v1");
    std::fs::write(&shim, "#!/bin/sh\necho v2\n").unwrap();
    let r = t.install().unwrap();
    assert_eq!(r.changed.len(), 2, "{r:?}");
    assert!(!r.restarted && !r.wiring_changed);
    assert_eq!(t.restarts(), 1);
    assert!(std::fs::read_to_string(t.host("/etc/agentbox/gvisor.toml"))
        .unwrap()
        .contains("allow"));
}

#[test]
fn a_bad_policy_changes_nothing_on_the_host() {
    let mut t = T::new(Some(ADMIN));
    std::fs::write(t.cm("gvisor.toml"), "profile = \"yolo\"\n").unwrap();
    let before = t.snapshot();
    let e = t.install().unwrap_err().to_string();
    assert!(e.contains("refused"), "{e}");
    assert_eq!(t.snapshot(), before);
    assert_eq!(t.restarts(), 0);
}

#[test]
fn a_config_containerd_rejects_is_rolled_back() {
    let mut t = T::new(Some(ADMIN));
    // a handler option of the wrong type: containerd's CRI plugin fails to load
    for f in [crate::source::FRAGMENT_V2, crate::source::FRAGMENT_V3] {
        let text = std::fs::read_to_string(t.cm(f)).unwrap().replace(
            "pod_annotations",
            "privileged_without_host_devices = \"yes\"\n  pod_annotations",
        );
        std::fs::write(t.cm(f), text).unwrap();
    }
    let before = t.snapshot();
    let e = t.install().unwrap_err();
    assert!(
        matches!(&e, InstallError::RolledBack { rollback_errors, .. } if rollback_errors.is_empty()),
        "{e}"
    );
    assert!(e.to_string().contains("without handler"), "{e}");
    assert_eq!(t.snapshot(), before);
    assert_eq!(t.config(), ADMIN);
    assert_eq!(t.restarts(), 2, "restart, then restart on the old config");
    assert!(t.fake.node.borrow().loaded.contains("runc"));
}

#[test]
fn containerd_2_gets_a_drop_in_and_the_admin_file_is_never_written() {
    let admin = "version = 2\nimports = [\"/etc/containerd/conf.d/*.toml\"]\n# mine\n";
    let mut t = T::new(Some(admin));
    t.fake.node.borrow_mut().version = Some(ContainerdVersion::new(2, 1, 9));
    let before = t.snapshot();
    let r = t.install().unwrap();
    assert_eq!(r.mode, "drop-in");
    assert!(
        !t.host("/usr/local/bin").exists(),
        "no link where runtime_path works"
    );
    assert_eq!(t.config(), admin);
    assert!(t.fake.node.borrow().loaded.contains("agentbox-gvisor"));
    assert!(!t.install().unwrap().restarted);
    t.uninstall(false).unwrap();
    assert_eq!(t.snapshot(), before);
}

#[test]
fn admin_changes_after_install_survive_uninstall() {
    let mut t = T::new(Some(ADMIN));
    t.install().unwrap();
    let edited = format!("{}\n[debug]\n  level = \"debug\"\n", t.config());
    std::fs::write(t.host("/etc/containerd/config.toml"), &edited).unwrap();
    let r = t.uninstall(false).unwrap();
    assert!(!r.config_restored_exactly);
    let c = t.config();
    assert!(
        c.contains("level = \"debug\"") && !c.contains("agentbox"),
        "{c}"
    );
    assert!(c.starts_with(ADMIN));
}

#[test]
fn a_file_that_was_there_before_comes_back() {
    let mut t = T::new(Some(ADMIN));
    let p = t.host("/etc/agentbox/gvisor.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, "# hand-written\n").unwrap();
    let before = t.snapshot();
    t.install().unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), POLICY);
    t.uninstall(false).unwrap();
    assert_eq!(t.snapshot(), before);
}

#[test]
fn turning_a_handler_off_removes_it() {
    let mut t = T::new(Some(ADMIN));
    let kata = |schema_plugin: &str| {
        format!("\n[plugins.\"{schema_plugin}\".containerd.runtimes.agentbox-kata]\n  runtime_type = \"io.containerd.agentbox.v1\"\n  runtime_path = \"/opt/agentbox/bin/containerd-shim-agentbox-v1\"\n  [plugins.\"{schema_plugin}\".containerd.runtimes.agentbox-kata.options]\n    ConfigPath = \"/etc/agentbox/kata.toml\"\n")
    };
    let (v2, v3) = (
        std::fs::read_to_string(t.cm(crate::source::FRAGMENT_V2)).unwrap(),
        std::fs::read_to_string(t.cm(crate::source::FRAGMENT_V3)).unwrap(),
    );
    std::fs::write(
        t.cm(crate::source::FRAGMENT_V2),
        format!("{v2}{}", kata("io.containerd.grpc.v1.cri")),
    )
    .unwrap();
    std::fs::write(
        t.cm(crate::source::FRAGMENT_V3),
        format!("{v3}{}", kata("io.containerd.cri.v1.runtime")),
    )
    .unwrap();
    std::fs::write(
        t.cm("kata.toml"),
        "[runtime]\nbackend = \"shim\"\nshim = \"containerd-shim-kata-v2\"\n",
    )
    .unwrap();
    t.install().unwrap();
    assert!(t.fake.node.borrow().loaded.contains("agentbox-kata"));
    std::fs::write(t.cm(crate::source::FRAGMENT_V2), v2).unwrap();
    std::fs::write(t.cm(crate::source::FRAGMENT_V3), v3).unwrap();
    let r = t.install().unwrap();
    assert!(r.restarted, "{r:?}");
    assert!(!t.fake.node.borrow().loaded.contains("agentbox-kata"));
    assert!(!t.host("/etc/agentbox/kata.toml").exists());
    assert!(!t.config().contains("agentbox-kata"));
}

#[test]
fn a_run_that_died_before_the_restart_restarts_next_time() {
    let mut t = T::new(Some(ADMIN));
    t.install().unwrap();
    // containerd came back on an old config somehow: the wiring is there, not loaded
    t.fake.node.borrow_mut().loaded.remove("agentbox-gvisor");
    let r = t.install().unwrap();
    assert!(r.restarted && !r.wiring_changed, "{r:?}");
}

#[test]
fn force_uninstalls_under_running_pods() {
    let mut t = T::new(Some(ADMIN));
    t.install().unwrap();
    t.fake.node.borrow_mut().pods = vec![pod("agentbox-gvisor")];
    let r = t.uninstall(true).unwrap();
    assert!(r.restarted);
    assert_eq!(t.config(), ADMIN);
}
