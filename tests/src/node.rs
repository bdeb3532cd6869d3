//! A "node" for the node agent's end-to-end tests: a private containerd laid
//! out like a node (config in `<T>/etc/containerd/`, socket in
//! `<T>/run/containerd/`), the chart rendered with host paths pointing into
//! `<T>`, the node-agent image imported, and the test acting as the node's
//! service manager: the chart's restart command (`<T>/bin/restart-containerd`,
//! run by the agent in the test process's namespaces, as it would enter the
//! host's PID 1) asks this test to restart *this* private containerd and
//! waits for the answer. Nothing here touches a system containerd.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::chart::{find, tools};
use crate::kubelet::{configmaps, Kubelet, TemplatePod};
use crate::node_image::{bin_dir, node_image};
use crate::{Binaries, Containerd, ContainerdOptions, Cri, K8S_NAMESPACE};
use serde_json::Value;

pub const NS: &str = "agentbox-system";

pub struct Node {
    pub ctd: Containerd,
    pub opts: ContainerdOptions,
    pub cri: Cri,
    pub dir: PathBuf,
    /// The admin's containerd config before any install.
    pub admin_config: Vec<u8>,
    pub objs: Vec<Value>,
    pub restarts: usize,
    pub image_tag: String,
    scratch: tempfile::TempDir,
    pods: usize,
    pub link_dir: tempfile::TempDir,
}

/// The outcome of an agent container.
#[derive(Debug, PartialEq, Eq)]
pub enum Agent {
    Ready,
    Exited(i32),
}

pub fn gvisor_policy(dir: &Path, ctd: &Containerd, extra: &str) -> String {
    format!(
        "profile = \"standard\"\n{extra}\n[mounts]\n{}\n[runtime]\nbackend = \"runsc\"\nrunsc = \"/usr/bin/runsc\"\nrunsc_root = \"{}\"\nrunsc_flags = {{ platform = \"ptrace\", network = \"sandbox\" }}\nrunsc_mask_proc_sys_net = true\n[audit]\npath = \"{}\"\n",
        crate::agentbox::managed_roots(ctd),
        dir.join("ab-runsc").display(),
        dir.join("audit.jsonl").display()
    )
}

impl Node {
    /// A node on `suite`'s containerd; `dropin`: its config imports
    /// `<T>/etc/containerd/conf.d/*.toml` (as containerd 2.x nodes often do).
    pub fn start(suite: &str, dropin: bool) -> Node {
        // the node's /usr/local/bin: on containerd's PATH, where the agent links the shim for 1.6
        let link_dir = tempfile::Builder::new()
            .prefix("ab-node-bin")
            .tempdir_in("/tmp")
            .unwrap();
        let binaries = Binaries::for_suite(suite)
            .unwrap_or_else(|e| panic!("{suite}: {e:#}"))
            .with_shim_dir(link_dir.path());
        let opts = ContainerdOptions {
            node_layout: true,
            ..ContainerdOptions::default().with_binaries(binaries)
        };
        let ctd = Containerd::start(opts.clone()).expect("start containerd");
        let dir = ctd.dir().to_path_buf();
        // the admin's config: what the harness wrote, with their comments (and imports)
        let cfg = ctd.config_path();
        let text = std::fs::read_to_string(&cfg).unwrap();
        let imports = if dropin {
            format!(
                "imports = [\"{}/etc/containerd/conf.d/*.toml\"]   # node drop-ins\n",
                dir.display()
            )
        } else {
            String::new()
        };
        let text = text.replacen(
            "\n",
            &format!("\n# Node image default config. Local changes: see the runbook.\n{imports}"),
            1,
        );
        let admin_config = format!("# containerd config of this node\n{text}# end\n").into_bytes();
        std::fs::write(&cfg, &admin_config).unwrap();
        let script = dir.join("bin/restart-containerd");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n# asks the e2e test (this node's service manager) to restart its containerd\nreq={d}/restart.req; done={d}/restart.done\nrm -f \"$done\"; : > \"$req\"\ni=0\nwhile [ ! -f \"$done\" ] && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done\n[ -f \"$done\" ] || {{ echo 'restart: no answer within 90s' >&2; exit 1; }}\nrc=$(head -c 1 \"$done\"); cat \"$done\" >&2; rm -f \"$done\"; exit \"$rc\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        ctd.import_busybox(K8S_NAMESPACE).expect("busybox");
        let cri = ctd.cri().expect("CRI");
        let mut n = Node {
            ctd,
            opts,
            cri,
            dir,
            admin_config,
            objs: vec![],
            restarts: 0,
            image_tag: String::new(),
            scratch: tempfile::tempdir().unwrap(),
            pods: 0,
            link_dir,
        };
        n.use_image("test", &bin_dir());
        n
    }

    /// Imports the node image built from `bins` as `:tag` and renders with it next.
    pub fn use_image(&mut self, tag: &str, bins: &Path) {
        let img = node_image(tag, bins).expect("node image");
        self.ctd
            .import_image(&img, K8S_NAMESPACE)
            .expect("import node image");
        self.image_tag = tag.into();
    }

    /// The e2e values: host paths in `<T>`, the private restart, no API server.
    /// `gvisor_extra`: more YAML under `handlers.gvisor` (indented 4).
    pub fn values(&self, policy: &str, gvisor_extra: &str) -> String {
        let d = self.dir.display();
        let policy: String = policy.lines().map(|l| format!("      {l}\n")).collect();
        format!(
            "image:\n  repository: localhost/agentbox/node-agent\n  tag: {tag}\n  pullPolicy: Never\n\
             paths:\n  installDir: {d}/opt/agentbox\n  configDir: {d}/etc/agentbox\n\
             containerd:\n  config: {d}/etc/containerd/config.toml\n  dropinDir: {d}/etc/containerd/conf.d\n  socket: {d}/run/containerd/containerd.sock\n  shimLinkDir: {link}\n  restart:\n    command: [\"{d}/bin/restart-containerd\"]\n    hostNamespaces: true\n    hostPid: {pid}\n    readyTimeoutSeconds: 20\n\
             labelNode: false\n\
             handlers:\n  gvisor:\n{gvisor_extra}    policy: |\n{policy}",
            tag = self.image_tag,
            pid = std::process::id(),
            link = self.link_dir.path().display(),
        )
    }

    /// `helm template` with `values` (a YAML text).
    pub fn render(&mut self, values: &str) {
        let t = tools().unwrap();
        let f = self.scratch.path().join("values.yaml");
        std::fs::write(&f, values).unwrap();
        let yaml = t.template(NS, &[&f], &[]).unwrap();
        self.objs = t.objects(&yaml).unwrap();
    }

    /// Runs the rendered DaemonSet `ds`'s pod as the kubelet would and serves
    /// restart requests until it is ready or exits (bounded).
    pub fn run_agent(&mut self, ds: &str) -> (TemplatePod, Agent) {
        let d = find(&self.objs, "DaemonSet", Some(ds))
            .unwrap_or_else(|| panic!("no DaemonSet {ds}"))
            .clone();
        self.pods += 1;
        let name = format!("{ds}-{}", self.pods);
        let k = Kubelet {
            cri: &self.cri,
            node_name: "node-1".into(),
            namespace: NS.into(),
            configmaps: configmaps(&self.objs),
            scratch: self.scratch.path().to_path_buf(),
        };
        let pod = k
            .run(&name, &format!("uid-{name}"), &d["spec"]["template"])
            .unwrap_or_else(|e| panic!("run {ds}: {e:#}"));
        let outcome = self.serve(&pod, Duration::from_secs(240));
        (pod, outcome)
    }

    /// The service-manager loop: restart requests, then the agent's state.
    pub fn serve(&mut self, pod: &TemplatePod, limit: Duration) -> Agent {
        let (cname, id) = pod.containers[0].clone();
        let probe = pod.readiness.get(&cname).cloned().unwrap_or_default();
        let req = self.dir.join("restart.req");
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if req.exists() {
                std::fs::remove_file(&req).unwrap();
                // as systemd would: a containerd that exits on its config fails the restart
                let ok = self.ctd.restart(&self.opts);
                self.restarts += 1;
                let answer = match &ok {
                    Ok(()) => "0 restarted\n".to_string(),
                    Err(e) => format!("1 containerd did not come back: {e}\n"),
                };
                if ok.is_ok() {
                    self.cri = self.ctd.cri().expect("CRI after restart");
                }
                std::fs::write(self.dir.join("restart.done"), answer).unwrap();
                continue;
            }
            if let Ok(st) = self.cri.container_status(&id) {
                if st.state == crate::cri::v1::ContainerState::ContainerExited as i32 {
                    return Agent::Exited(st.exit_code);
                }
                let probe: Vec<&str> = probe.iter().map(String::as_str).collect();
                if st.state == crate::cri::v1::ContainerState::ContainerRunning as i32
                    && self
                        .cri
                        .exec_sync(&id, &probe, Duration::from_secs(10))
                        .is_ok_and(|r| r.exit_code == 0)
                {
                    return Agent::Ready;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "agent {cname} neither ready nor exited within {limit:?}; log:\n{}",
            self.log(pod)
        );
    }

    /// The agent container's log (stdout + stderr).
    pub fn log(&self, pod: &TemplatePod) -> String {
        self.cri
            .container_log_text(&pod.pod, &pod.containers[0].0, None)
            .unwrap_or_default()
    }

    /// Stops and removes a pod started with `run_agent`.
    pub fn remove(&self, pod: &TemplatePod) {
        for (_, id) in &pod.containers {
            let _ = self.cri.stop_container(id, Duration::from_secs(5));
            let _ = self.cri.remove_container(id);
        }
        self.cri.stop_pod(&pod.pod.id).unwrap();
        self.cri.remove_pod(&pod.pod.id).unwrap();
    }

    /// Handlers containerd's CRI reports loaded.
    pub fn loaded(&self) -> Vec<String> {
        let mut c = self.cri.runtime_client();
        let r = self
            .cri
            .block_on(async move {
                c.status(crate::cri::v1::StatusRequest { verbose: true })
                    .await
            })
            .expect("CRI status")
            .into_inner();
        let mut v: Vec<String> = agentbox_node::cri::handlers_from_status(&r)
            .expect("status lists handlers")
            .into_iter()
            .collect();
        v.sort();
        v
    }

    pub fn config(&self) -> Vec<u8> {
        std::fs::read(self.ctd.config_path()).unwrap()
    }

    pub fn host(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}
