//! containerd config.toml (schema 2 for 1.6/1.7, schema 3 for 2.x), runtime
//! handlers and the CNI conflist of a private containerd.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::binaries::ContainerdVersion;

/// One CRI runtime handler (`RuntimeClass.handler`), i.e. one
/// `...containerd.runtimes.<name>` section.
#[derive(Debug, Clone)]
pub struct RuntimeHandler {
    /// handler name as CRI's `RunPodSandboxRequest.runtime_handler`
    pub name: String,
    /// e.g. `io.containerd.runc.v2`, `io.containerd.agentbox.v1`
    pub runtime_type: String,
    /// the `options` table handed to the shim: runc's `BinaryName`/`Root`/…, or for
    /// other runtime types the generic `ConfigPath`/`TypeUrl`
    pub options: Table,
    /// pod annotations (globs) passed through to the OCI spec
    pub pod_annotations: Vec<String>,
    /// container annotations (globs) passed through to the OCI spec
    pub container_annotations: Vec<String>,
    pub privileged_without_host_devices: bool,
}

impl RuntimeHandler {
    pub fn new(name: impl Into<String>, runtime_type: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            runtime_type: runtime_type.into(),
            options: Table::new(),
            pod_annotations: vec![],
            container_annotations: vec![],
            privileged_without_host_devices: false,
        }
    }

    /// Sets one entry of the `options` table (`ConfigPath`, `BinaryName`, …).
    pub fn option(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.options.insert(key.to_string(), value.into());
        self
    }

    pub fn pod_annotations<I: IntoIterator<Item = S>, S: Into<String>>(mut self, globs: I) -> Self {
        self.pod_annotations = globs.into_iter().map(Into::into).collect();
        self
    }

    pub fn container_annotations<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        globs: I,
    ) -> Self {
        self.container_annotations = globs.into_iter().map(Into::into).collect();
        self
    }

    pub fn privileged_without_host_devices(mut self, v: bool) -> Self {
        self.privileged_without_host_devices = v;
        self
    }

    /// `runc`: containerd-shim-runc-v2 with runc, its state under `runc_root`
    /// (never runc's default /run/containerd/runc).
    pub fn runc(runc_root: &Path) -> Self {
        Self::new("runc", "io.containerd.runc.v2")
            .option("Root", runc_root.display().to_string())
            .option("SystemdCgroup", false)
    }

    /// `runsc-runc-shim`: containerd-shim-runc-v2 driving runsc through a wrapper
    /// script (`BinaryName`). The baseline agentbox is compared against. Works for
    /// single-container tasks; a pod's app container does not join the pause
    /// container's sandbox this way.
    pub fn runsc_runc_shim(wrapper: &Path, runsc_root: &Path) -> Self {
        Self::new("runsc-runc-shim", "io.containerd.runc.v2")
            .option("BinaryName", wrapper.display().to_string())
            .option("Root", runsc_root.display().to_string())
            .option("SystemdCgroup", false)
    }

    fn to_table(&self) -> Table {
        let mut t = Table::new();
        t.insert("runtime_type".into(), self.runtime_type.clone().into());
        t.insert("pod_annotations".into(), str_array(&self.pod_annotations));
        t.insert(
            "container_annotations".into(),
            str_array(&self.container_annotations),
        );
        t.insert(
            "privileged_without_host_devices".into(),
            self.privileged_without_host_devices.into(),
        );
        t.insert("options".into(), Value::Table(self.options.clone()));
        t
    }
}

fn str_array(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// Everything the config of one private containerd is made from.
#[derive(Debug, Clone)]
pub struct ConfigInputs {
    pub version: ContainerdVersion,
    pub dir: PathBuf,
    pub address: PathBuf,
    pub snapshotter: String,
    pub sandbox_image: String,
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub handlers: Vec<RuntimeHandler>,
    pub default_handler: String,
    pub log_level: String,
    /// merged last, key by key, over the generated config (tables merge recursively)
    pub extra: Table,
}

fn path_str(p: &Path) -> Value {
    Value::String(p.display().to_string())
}

/// Gets or creates the nested table at `keys`.
fn tbl<'a>(root: &'a mut Table, keys: &[&str]) -> &'a mut Table {
    let mut cur = root;
    for k in keys {
        cur = cur
            .entry(k.to_string())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("config key is a table");
    }
    cur
}

/// Recursive merge of `over` into `base`.
pub fn merge_toml(base: &mut Table, over: &Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge_toml(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Renders config.toml for `inp`.
pub fn render_config(inp: &ConfigInputs) -> String {
    let mut root = Table::new();
    let schema = inp.version.config_schema();
    root.insert("version".into(), Value::Integer(schema as i64));
    root.insert("root".into(), path_str(&inp.dir.join("root")));
    root.insert("state".into(), path_str(&inp.dir.join("state")));
    root.insert("oom_score".into(), Value::Integer(0));
    tbl(&mut root, &["grpc"]).insert("address".into(), path_str(&inp.address));
    tbl(&mut root, &["ttrpc"]).insert(
        "address".into(),
        path_str(&inp.address.with_extension("sock.ttrpc")),
    );
    tbl(&mut root, &["debug"]).insert("level".into(), inp.log_level.clone().into());
    tbl(&mut root, &["plugins", "io.containerd.internal.v1.opt"])
        .insert("path".into(), path_str(&inp.dir.join("opt")));
    if inp.version
        >= (ContainerdVersion {
            major: 1,
            minor: 7,
            patch: 0,
        })
    {
        let nri = tbl(&mut root, &["plugins", "io.containerd.nri.v1.nri"]);
        nri.insert("disable".into(), true.into());
        nri.insert("socket_path".into(), path_str(&inp.dir.join("nri.sock")));
        nri.insert("plugin_path".into(), path_str(&inp.dir.join("nri/plugins")));
        nri.insert(
            "plugin_config_path".into(),
            path_str(&inp.dir.join("nri/conf.d")),
        );
    }

    let mut runtimes = Table::new();
    for h in &inp.handlers {
        runtimes.insert(h.name.clone(), Value::Table(h.to_table()));
    }

    if schema == 2 {
        let cri = tbl(&mut root, &["plugins", "io.containerd.grpc.v1.cri"]);
        cri.insert("sandbox_image".into(), inp.sandbox_image.clone().into());
        cri.insert("restrict_oom_score_adj".into(), true.into());
        cri.insert("netns_mounts_under_state_dir".into(), true.into());
        cri.insert("enable_selinux".into(), false.into());
        cri.insert("stream_server_address".into(), "127.0.0.1".into());
        cri.insert("stream_server_port".into(), "0".into());
        let c = tbl(cri, &["containerd"]);
        c.insert("snapshotter".into(), inp.snapshotter.clone().into());
        c.insert(
            "default_runtime_name".into(),
            inp.default_handler.clone().into(),
        );
        c.insert("runtimes".into(), Value::Table(runtimes));
        let cni = tbl(cri, &["cni"]);
        cni.insert("bin_dir".into(), path_str(&inp.cni_bin_dir));
        cni.insert("conf_dir".into(), path_str(&inp.cni_conf_dir));
        cni.insert("max_conf_num".into(), Value::Integer(1));
    } else {
        let img = tbl(&mut root, &["plugins", "io.containerd.cri.v1.images"]);
        img.insert("snapshotter".into(), inp.snapshotter.clone().into());
        tbl(img, &["pinned_images"]).insert("sandbox".into(), inp.sandbox_image.clone().into());
        let rt = tbl(&mut root, &["plugins", "io.containerd.cri.v1.runtime"]);
        rt.insert("restrict_oom_score_adj".into(), true.into());
        rt.insert("netns_mounts_under_state_dir".into(), true.into());
        rt.insert("enable_selinux".into(), false.into());
        let c = tbl(rt, &["containerd"]);
        c.insert(
            "default_runtime_name".into(),
            inp.default_handler.clone().into(),
        );
        c.insert("runtimes".into(), Value::Table(runtimes));
        let cni = tbl(rt, &["cni"]);
        if inp.version.major == 2 && inp.version.minor == 0 {
            cni.insert("bin_dir".into(), path_str(&inp.cni_bin_dir));
        } else {
            cni.insert(
                "bin_dirs".into(),
                Value::Array(vec![path_str(&inp.cni_bin_dir)]),
            );
        }
        cni.insert("conf_dir".into(), path_str(&inp.cni_conf_dir));
        cni.insert("max_conf_num".into(), Value::Integer(1));
        let grpc = tbl(&mut root, &["plugins", "io.containerd.grpc.v1.cri"]);
        grpc.insert("stream_server_address".into(), "127.0.0.1".into());
        grpc.insert("stream_server_port".into(), "0".into());
    }
    merge_toml(&mut root, &inp.extra);
    toml::to_string_pretty(&root).expect("config serializes")
}

/// The private CNI network of one harness instance.
#[derive(Debug, Clone)]
pub struct CniNetwork {
    /// CNI network name (`agentbox-e2e-<index>`)
    pub name: String,
    /// Linux bridge the bridge plugin creates (`abx-e2e-<index>`, ≤ 15 chars)
    pub bridge: String,
    /// third octet: the subnet is 10.233.<index>.0/24
    pub index: u8,
    /// Egress tests: pods also get an IPv6 address (`fd00:233:<index>::/64`)
    /// and default routes via the test's router on the bridge (`.254`, `::fe`),
    /// never via the node.
    pub egress: bool,
}

impl CniNetwork {
    pub fn subnet(&self) -> String {
        format!("10.233.{}.0/24", self.index)
    }
    pub fn gateway(&self) -> String {
        format!("10.233.{}.1", self.index)
    }
    /// The pods' IPv6 subnet (egress tests).
    pub fn subnet6(&self) -> String {
        format!("fd00:233:{}::/64", self.index)
    }
    /// The test router's addresses on the bridge (egress tests).
    pub fn router(&self) -> (String, String) {
        (
            format!("10.233.{}.254", self.index),
            format!("fd00:233:{}::fe", self.index),
        )
    }
    /// Does `ip` (dotted quad) lie in this network's /24?
    pub fn contains(&self, ip: &str) -> bool {
        let p: Vec<&str> = ip.split('.').collect();
        p.len() == 4 && p[0] == "10" && p[1] == "233" && p[2] == self.index.to_string()
    }

    /// bridge + host-local conflist (loopback is set up by containerd's CRI itself,
    /// with the `loopback` plugin from the same bin dir). No default route and no
    /// masquerade: pods reach only their /24.
    pub fn conflist(&self, ipam_dir: &Path) -> String {
        if self.egress {
            let (r4, r6) = self.router();
            return serde_json::to_string_pretty(&serde_json::json!({
                "cniVersion": "0.4.0",
                "name": self.name,
                "plugins": [{
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [
                            [{ "subnet": self.subnet(), "gateway": self.gateway() }],
                            [{ "subnet": self.subnet6(), "gateway": format!("fd00:233:{}::1", self.index) }],
                        ],
                        "routes": [{ "dst": "0.0.0.0/0", "gw": r4 }, { "dst": "::/0", "gw": r6 }],
                        "dataDir": ipam_dir.display().to_string(),
                    },
                }],
            }))
            .expect("json");
        }
        serde_json::to_string_pretty(&serde_json::json!({
            "cniVersion": "0.4.0",
            "name": self.name,
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": self.subnet(), "gateway": self.gateway() }]],
                    "dataDir": ipam_dir.display().to_string(),
                },
            }],
        }))
        .expect("json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(v: ContainerdVersion) -> ConfigInputs {
        ConfigInputs {
            version: v,
            dir: "/tmp/x".into(),
            address: "/tmp/x/containerd.sock".into(),
            snapshotter: "overlayfs".into(),
            sandbox_image: "localhost/agentbox/pause:test".into(),
            cni_bin_dir: "/usr/lib/cni".into(),
            cni_conf_dir: "/tmp/x/cni/net.d".into(),
            handlers: vec![
                RuntimeHandler::runc(Path::new("/tmp/x/runc")),
                RuntimeHandler::new("agentbox", "io.containerd.agentbox.v1")
                    .option("ConfigPath", "/etc/agentbox/gvisor.toml")
                    .pod_annotations(["agentbox.dev/*"]),
            ],
            default_handler: "runc".into(),
            log_level: "info".into(),
            extra: Table::new(),
        }
    }

    #[test]
    fn schema2_layout() {
        let s = render_config(&inputs(ContainerdVersion {
            major: 1,
            minor: 6,
            patch: 20,
        }));
        let t: Table = toml::from_str(&s).unwrap();
        assert_eq!(t["version"].as_integer(), Some(2));
        let cri = &t["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(
            cri["sandbox_image"].as_str(),
            Some("localhost/agentbox/pause:test")
        );
        let ab = &cri["containerd"]["runtimes"]["agentbox"];
        assert_eq!(
            ab["runtime_type"].as_str(),
            Some("io.containerd.agentbox.v1")
        );
        assert_eq!(
            ab["options"]["ConfigPath"].as_str(),
            Some("/etc/agentbox/gvisor.toml")
        );
        assert_eq!(ab["pod_annotations"][0].as_str(), Some("agentbox.dev/*"));
        assert!(t["plugins"].get("io.containerd.nri.v1.nri").is_none());
    }

    #[test]
    fn schema3_layout() {
        let s = render_config(&inputs(ContainerdVersion {
            major: 2,
            minor: 1,
            patch: 9,
        }));
        let t: Table = toml::from_str(&s).unwrap();
        assert_eq!(t["version"].as_integer(), Some(3));
        let rt = &t["plugins"]["io.containerd.cri.v1.runtime"];
        assert_eq!(rt["restrict_oom_score_adj"].as_bool(), Some(true));
        assert_eq!(
            rt["containerd"]["runtimes"]["runc"]["options"]["Root"].as_str(),
            Some("/tmp/x/runc")
        );
        assert_eq!(rt["cni"]["bin_dirs"][0].as_str(), Some("/usr/lib/cni"));
        let img = &t["plugins"]["io.containerd.cri.v1.images"];
        assert_eq!(
            img["pinned_images"]["sandbox"].as_str(),
            Some("localhost/agentbox/pause:test")
        );
        assert_eq!(
            t["plugins"]["io.containerd.nri.v1.nri"]["disable"].as_bool(),
            Some(true)
        );
    }

    #[test]
    fn conflist_is_private() {
        let n = CniNetwork {
            name: "agentbox-e2e-7".into(),
            bridge: "abx-e2e-7".into(),
            index: 7,
            egress: false,
        };
        let j: serde_json::Value =
            serde_json::from_str(&n.conflist(Path::new("/tmp/x/ipam"))).unwrap();
        assert_eq!(
            j["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.233.7.0/24"
        );
        assert_eq!(j["plugins"][0]["ipMasq"], false);
        assert!(n.contains("10.233.7.12"));
        assert!(!n.contains("10.233.70.12"));
    }
}
