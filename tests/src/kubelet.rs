//! The kubelet's share of running a rendered pod template through CRI, for
//! the node agent's end-to-end tests: the pod spec exactly as `helm
//! template` renders it (image, command, args, env, volume mounts, security
//! context, hostPID) becomes RunPodSandbox + CreateContainer. A field this
//! does not translate is an error, never silently dropped.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use k8s_cri::v1 as cri;
use serde_json::Value;

use crate::cri::{Cri, Pod};

/// A pod started from a template.
#[derive(Debug, Clone)]
pub struct TemplatePod {
    pub pod: Pod,
    /// (container name, container id)
    pub containers: Vec<(String, String)>,
    /// readiness probe exec command per container
    pub readiness: BTreeMap<String, Vec<String>>,
}

/// Where pod volumes that are not host paths live, and what the API would give.
pub struct Kubelet<'a> {
    pub cri: &'a Cri,
    pub node_name: String,
    pub namespace: String,
    /// ConfigMaps by name (their `data`).
    pub configmaps: BTreeMap<String, BTreeMap<String, String>>,
    /// Scratch folder for configMap and emptyDir volumes.
    pub scratch: PathBuf,
}

const POD_KEYS: &[&str] = &[
    "serviceAccountName",
    "hostPID",
    "priorityClassName",
    "terminationGracePeriodSeconds",
    "containers",
    "volumes",
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "affinity",
    "restartPolicy",
];
const CONTAINER_KEYS: &[&str] = &[
    "name",
    "image",
    "imagePullPolicy",
    "command",
    "args",
    "env",
    "readinessProbe",
    "securityContext",
    "resources",
    "volumeMounts",
];

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Kubelet<'_> {
    /// Volume name → host path to bind (creating what the volume type says).
    fn volumes(&self, pod_name: &str, spec: &Value) -> Result<BTreeMap<String, (PathBuf, bool)>> {
        let mut out = BTreeMap::new();
        for v in spec["volumes"].as_array().into_iter().flatten() {
            let name = v["name"]
                .as_str()
                .context("volume without name")?
                .to_string();
            if let Some(hp) = v.get("hostPath") {
                let p = PathBuf::from(hp["path"].as_str().context("hostPath.path")?);
                match hp["type"].as_str().unwrap_or("") {
                    "DirectoryOrCreate" => std::fs::create_dir_all(&p)?,
                    "Directory" if !p.is_dir() => {
                        bail!("hostPath {} is not a directory", p.display())
                    }
                    "Directory" | "" => {}
                    t => bail!("hostPath type {t} not supported here"),
                }
                out.insert(name, (p, false));
            } else if let Some(cm) = v.get("configMap") {
                let cname = cm["name"].as_str().context("configMap.name")?;
                let data = self
                    .configmaps
                    .get(cname)
                    .with_context(|| format!("configMap {cname} not rendered"))?;
                let dir = self.scratch.join(pod_name).join(&name);
                std::fs::create_dir_all(&dir)?;
                for (k, text) in data {
                    std::fs::write(dir.join(k), text)?;
                }
                out.insert(name, (dir, true));
            } else if v.get("emptyDir").is_some() {
                let dir = self.scratch.join(pod_name).join(&name);
                std::fs::create_dir_all(&dir)?;
                out.insert(name, (dir, false));
            } else {
                bail!("volume {name}: kind not supported here: {v}");
            }
        }
        Ok(out)
    }

    fn env(&self, c: &Value, pod_name: &str) -> Result<Vec<(String, String)>> {
        let mut out = vec![];
        for e in c["env"].as_array().into_iter().flatten() {
            let k = e["name"].as_str().context("env name")?.to_string();
            let v = if let Some(v) = e.get("value") {
                v.as_str().unwrap_or("").to_string()
            } else if let Some(f) = e.pointer("/valueFrom/fieldRef/fieldPath") {
                match f.as_str() {
                    Some("spec.nodeName") => self.node_name.clone(),
                    Some("metadata.namespace") => self.namespace.clone(),
                    Some("metadata.name") => pod_name.to_string(),
                    other => bail!("env {k}: fieldRef {other:?} not supported here"),
                }
            } else {
                bail!("env {k}: not supported here: {e}");
            };
            out.push((k, v));
        }
        Ok(out)
    }

    /// Runs `template` (a pod template: `{metadata, spec}`) as pod `pod_name`.
    pub fn run(&self, pod_name: &str, uid: &str, template: &Value) -> Result<TemplatePod> {
        let spec = &template["spec"];
        for k in spec.as_object().context("pod spec")?.keys() {
            if !POD_KEYS.contains(&k.as_str()) {
                bail!("pod spec field {k} not supported here");
            }
        }
        let vols = self.volumes(pod_name, spec)?;
        let containers = spec["containers"].as_array().context("containers")?;
        let privileged = containers
            .iter()
            .any(|c| c.pointer("/securityContext/privileged") == Some(&Value::Bool(true)));
        let mut cfg = self.cri.pod_config(pod_name, &self.namespace, uid, &[]);
        {
            let sc = cfg
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut())
                .context("pod security context")?;
            sc.privileged = privileged;
            if spec["hostPID"] == Value::Bool(true) {
                sc.namespace_options.as_mut().context("ns options")?.pid =
                    cri::NamespaceMode::Node as i32;
            }
        }
        let pod = self.cri.run_pod_with_config(cfg, "runc")?;
        let mut out = TemplatePod {
            pod: pod.clone(),
            containers: vec![],
            readiness: BTreeMap::new(),
        };
        for c in containers {
            for k in c.as_object().context("container")?.keys() {
                if !CONTAINER_KEYS.contains(&k.as_str()) {
                    bail!("container field {k} not supported here");
                }
            }
            let name = c["name"].as_str().context("container name")?.to_string();
            let mut mounts = vec![];
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let v = m["name"].as_str().context("mount name")?;
                let (host, ro) = vols.get(v).with_context(|| format!("volume {v}"))?;
                mounts.push(cri::Mount {
                    container_path: m["mountPath"].as_str().context("mountPath")?.into(),
                    host_path: host.display().to_string(),
                    readonly: *ro || m["readOnly"] == Value::Bool(true),
                    ..Default::default()
                });
            }
            let sc = &c["securityContext"];
            let linux = cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    privileged: sc["privileged"] == Value::Bool(true),
                    readonly_rootfs: sc["readOnlyRootFilesystem"] == Value::Bool(true),
                    run_as_user: sc["runAsUser"]
                        .as_i64()
                        .map(|u| cri::Int64Value { value: u }),
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: if spec["hostPID"] == Value::Bool(true) {
                            cri::NamespaceMode::Node as i32
                        } else {
                            cri::NamespaceMode::Container as i32
                        },
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let config = cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: name.clone(),
                    attempt: 0,
                }),
                image: Some(cri::ImageSpec {
                    image: c["image"].as_str().context("image")?.into(),
                    ..Default::default()
                }),
                command: strings(&c["command"]),
                args: strings(&c["args"]),
                envs: self
                    .env(c, pod_name)?
                    .into_iter()
                    .map(|(key, value)| cri::KeyValue { key, value })
                    .collect(),
                mounts,
                log_path: format!("{name}.log"),
                linux: Some(linux),
                ..Default::default()
            };
            let id = self.cri.create_container_with_config(&pod, config)?;
            self.cri.start(&id)?;
            if let Some(p) = c.pointer("/readinessProbe/exec/command") {
                out.readiness.insert(name.clone(), strings(p));
            }
            out.containers.push((name, id));
        }
        Ok(out)
    }
}

/// The ConfigMaps among rendered objects, by name.
pub fn configmaps(objs: &[Value]) -> BTreeMap<String, BTreeMap<String, String>> {
    objs.iter()
        .filter(|o| o["kind"] == "ConfigMap")
        .map(|o| {
            let data = o["data"]
                .as_object()
                .map(|d| {
                    d.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (
                o["metadata"]["name"].as_str().unwrap_or("").to_string(),
                data,
            )
        })
        .collect()
}
