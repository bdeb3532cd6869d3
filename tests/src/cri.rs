//! A blocking CRI (v1) client over containerd's unix socket, as the kubelet
//! drives it. It owns a small tokio runtime, so use it from plain `#[test]`
//! functions (not from inside another tokio runtime).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1;

/// A pod started with `Cri::run_pod`: its sandbox id and the config it was
/// created with (CreateContainer needs it again).
#[derive(Debug, Clone)]
pub struct Pod {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    /// host folder CRI writes this pod's container logs into
    pub log_directory: PathBuf,
}

/// What to create in a pod (the common fields of `ContainerConfig`).
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<cri::Mount>,
    pub annotations: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub working_dir: String,
    pub tty: bool,
    /// full control: the request's `linux` section (security context, resources)
    pub linux: Option<cri::LinuxContainerConfig>,
}

impl ContainerSpec {
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            ..Default::default()
        }
    }
    pub fn command<I: IntoIterator<Item = S>, S: Into<String>>(mut self, c: I) -> Self {
        self.command = c.into_iter().map(Into::into).collect();
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args = a.into_iter().map(Into::into).collect();
        self
    }
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }
    pub fn annotation(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.annotations.insert(k.into(), v.into());
        self
    }
    /// Bind mount `host` at `container` (read-only if `readonly`).
    pub fn mount(
        mut self,
        host: impl AsRef<Path>,
        container: impl Into<String>,
        readonly: bool,
    ) -> Self {
        self.mounts.push(cri::Mount {
            host_path: host.as_ref().display().to_string(),
            container_path: container.into(),
            readonly,
            ..Default::default()
        });
        self
    }
}

/// The pod's cgroup (cgroup v1: cpu, cpuacct, memory, pids), as the
/// kubelet creates it before RunPodSandbox (with default settings here, as
/// for a pod requesting one CPU). Best effort: without it runtimes create it.
fn create_pod_cgroup(parent: &str) {
    let rel = parent.trim_start_matches('/');
    if rel.is_empty() || rel.contains("..") || rel.contains(':') {
        return;
    }
    for ctrl in ["cpu", "cpuacct", "memory", "pids"] {
        let root = Path::new("/sys/fs/cgroup").join(ctrl);
        if root.join("tasks").is_file() {
            let _ = std::fs::create_dir_all(root.join(rel));
        }
    }
}

/// Result of ExecSync.
#[derive(Debug, Clone)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One line of a CRI container log (`<time> <stream> <P|F> <text>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    /// `stdout` or `stderr`
    pub stream: String,
    pub text: String,
}

/// Blocking CRI client.
pub struct Cri {
    rt: tokio::runtime::Runtime,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    log_root: PathBuf,
    cgroup_root: String,
    /// Bound on each ordinary RPC (RunPodSandbox, CreateContainer, …).
    pub rpc_timeout: Duration,
}

impl Cri {
    /// Connects to the CRI service on `socket`. Pods get their log_directory
    /// below `log_root` and their cgroup below `cgroup_root`.
    pub fn connect(socket: &Path, log_root: PathBuf, cgroup_root: String) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let path = socket.to_path_buf();
        let channel = rt
            .block_on(async move {
                // The URI is ignored: the connector always dials the unix socket.
                Endpoint::try_from("http://[::1]:50051")?
                    .connect_timeout(Duration::from_secs(10))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }))
                    .await
                    .map_err(anyhow::Error::from)
            })
            .with_context(|| format!("connect CRI at {}", socket.display()))?;
        Ok(Self {
            rt,
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            log_root,
            cgroup_root,
            rpc_timeout: Duration::from_secs(120),
        })
    }

    /// Runs a future on the client's runtime (for calls not wrapped here, with
    /// `runtime_client()` / `image_client()`).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
    /// A clone of the raw tonic RuntimeService client.
    pub fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }
    /// A clone of the raw tonic ImageService client.
    pub fn image_client(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    fn call<T, F, Fut>(&self, what: &str, timeout: Duration, f: F) -> Result<T>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let c = self.runtime.clone();
        self.rt.block_on(async move {
            match tokio::time::timeout(timeout, f(c)).await {
                Err(_) => Err(anyhow!("CRI {what}: timed out after {timeout:?}")),
                Ok(Err(s)) => Err(anyhow!("CRI {what}: {:?}: {}", s.code(), s.message())),
                Ok(Ok(r)) => Ok(r.into_inner()),
            }
        })
    }

    /// `Version`: (runtime name, runtime version, API version).
    pub fn version(&self) -> Result<(String, String, String)> {
        let r = self.call("Version", self.rpc_timeout, |mut c| async move {
            c.version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
        })?;
        Ok((r.runtime_name, r.runtime_version, r.runtime_api_version))
    }

    /// The PodSandboxConfig `run_pod` uses: metadata, hostname, log directory,
    /// cgroup parent, pod-level network/pid/ipc namespaces, annotations.
    pub fn pod_config(
        &self,
        name: &str,
        namespace: &str,
        uid: &str,
        annotations: &[(&str, &str)],
    ) -> cri::PodSandboxConfig {
        let log_dir = self.log_root.join(format!("{namespace}_{name}_{uid}"));
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_dir.display().to_string(),
            labels: [("io.kubernetes.pod.name".to_string(), name.to_string())].into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod{}", self.cgroup_root, uid),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: cri::NamespaceMode::Container as i32,
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// RunPodSandbox with the default pod config on `handler`.
    pub fn run_pod(
        &self,
        name: &str,
        namespace: &str,
        uid: &str,
        handler: &str,
        annotations: &[(&str, &str)],
    ) -> Result<Pod> {
        self.run_pod_with_config(self.pod_config(name, namespace, uid, annotations), handler)
    }

    /// RunPodSandbox with a caller-made config (log_directory is created if
    /// set; the pod's cgroup too, as the kubelet makes it first).
    pub fn run_pod_with_config(&self, config: cri::PodSandboxConfig, handler: &str) -> Result<Pod> {
        let log_directory = PathBuf::from(&config.log_directory);
        if !config.log_directory.is_empty() {
            std::fs::create_dir_all(&log_directory)?;
        }
        if let Some(parent) = config.linux.as_ref().map(|l| l.cgroup_parent.as_str()) {
            create_pod_cgroup(parent);
        }
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.into(),
        };
        let r = self.call("RunPodSandbox", self.rpc_timeout, |mut c| async move {
            c.run_pod_sandbox(req).await
        })?;
        Ok(Pod {
            id: r.pod_sandbox_id,
            config,
            log_directory,
        })
    }

    /// CreateContainer (log_path `<name>.log` in the pod's log directory).
    pub fn create_container(&self, pod: &Pod, spec: &ContainerSpec) -> Result<String> {
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: spec.name.clone(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: spec.image.clone(),
                ..Default::default()
            }),
            command: spec.command.clone(),
            args: spec.args.clone(),
            working_dir: spec.working_dir.clone(),
            envs: spec
                .envs
                .iter()
                .map(|(k, v)| cri::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            mounts: spec.mounts.clone(),
            labels: spec.labels.clone(),
            annotations: spec.annotations.clone(),
            log_path: format!("{}.log", spec.name),
            tty: spec.tty,
            linux: Some(spec.linux.clone().unwrap_or_default()),
            ..Default::default()
        };
        self.create_container_with_config(pod, config)
    }

    /// CreateContainer with a caller-made ContainerConfig.
    pub fn create_container_with_config(
        &self,
        pod: &Pod,
        config: cri::ContainerConfig,
    ) -> Result<String> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        Ok(self
            .call("CreateContainer", self.rpc_timeout, |mut c| async move {
                c.create_container(req).await
            })?
            .container_id)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        self.call("StartContainer", self.rpc_timeout, |mut c| async move {
            c.start_container(req).await
        })?;
        Ok(())
    }

    /// ExecSync; `timeout` bounds the command in the container (and the RPC).
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout: Duration) -> Result<ExecResult> {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout.as_secs().max(1) as i64,
        };
        let r = self.call(
            "ExecSync",
            timeout + Duration::from_secs(30),
            |mut c| async move { c.exec_sync(req).await },
        )?;
        Ok(ExecResult {
            exit_code: r.exit_code,
            stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        })
    }

    pub fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        self.call("ContainerStatus", self.rpc_timeout, |mut c| async move {
            c.container_status(req).await
        })?
        .status
        .context("ContainerStatus without status")
    }

    pub fn pod_status(&self, pod_id: &str) -> Result<cri::PodSandboxStatus> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod_id.into(),
            verbose: false,
        };
        self.call("PodSandboxStatus", self.rpc_timeout, |mut c| async move {
            c.pod_sandbox_status(req).await
        })?
        .status
        .context("PodSandboxStatus without status")
    }

    /// The pod's primary IP as CRI reports it ("" if none).
    pub fn pod_ip(&self, pod_id: &str) -> Result<String> {
        Ok(self
            .pod_status(pod_id)?
            .network
            .map(|n| n.ip)
            .unwrap_or_default())
    }

    pub fn list_pods(&self) -> Result<Vec<cri::PodSandbox>> {
        let req = cri::ListPodSandboxRequest { filter: None };
        Ok(self
            .call("ListPodSandbox", self.rpc_timeout, |mut c| async move {
                c.list_pod_sandbox(req).await
            })?
            .items)
    }

    pub fn list_containers(&self, pod_id: Option<&str>) -> Result<Vec<cri::Container>> {
        let filter = pod_id.map(|p| cri::ContainerFilter {
            pod_sandbox_id: p.into(),
            ..Default::default()
        });
        let req = cri::ListContainersRequest { filter };
        Ok(self
            .call("ListContainers", self.rpc_timeout, |mut c| async move {
                c.list_containers(req).await
            })?
            .containers)
    }

    /// StopContainer with a grace period of `grace` (SIGTERM, then SIGKILL).
    pub fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout: grace.as_secs() as i64,
        };
        self.call(
            "StopContainer",
            self.rpc_timeout + grace,
            |mut c| async move { c.stop_container(req).await },
        )?;
        Ok(())
    }

    /// RemoveContainer, tried again for up to 5 s while containerd answers
    /// "still running" for a container it already stopped: containerd 1.6's
    /// CRI answers StopContainer at once for a container whose task is gone
    /// while its own exit handler is still finishing it (a sibling killed
    /// with the container it shared a PID namespace with); the kubelet
    /// retries RemoveContainer the same way.
    pub fn remove_container(&self, id: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let req = cri::RemoveContainerRequest {
                container_id: id.into(),
            };
            let r = self.call("RemoveContainer", self.rpc_timeout, |mut c| async move {
                c.remove_container(req).await
            });
            match r {
                Err(e)
                    if format!("{e:#}").contains("still running")
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                r => return r.map(|_| ()),
            }
        }
    }

    pub fn stop_pod(&self, pod_id: &str) -> Result<()> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: pod_id.into(),
        };
        self.call("StopPodSandbox", self.rpc_timeout, |mut c| async move {
            c.stop_pod_sandbox(req).await
        })?;
        Ok(())
    }

    pub fn remove_pod(&self, pod_id: &str) -> Result<()> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: pod_id.into(),
        };
        self.call("RemovePodSandbox", self.rpc_timeout, |mut c| async move {
            c.remove_pod_sandbox(req).await
        })?;
        Ok(())
    }

    /// Polls ContainerStatus until the container has exited; returns its exit code.
    pub fn wait_container_exit(&self, id: &str, timeout: Duration) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.container_status(id)?;
            if st.state == cri::ContainerState::ContainerExited as i32 {
                return Ok(st.exit_code);
            }
            if Instant::now() >= deadline {
                bail!(
                    "container {id} still in state {} after {timeout:?}",
                    st.state
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Host path of a container's CRI log file.
    pub fn log_path(&self, pod: &Pod, container_name: &str) -> PathBuf {
        pod.log_directory.join(format!("{container_name}.log"))
    }

    /// Parsed lines of a container's CRI log (partial lines joined).
    pub fn container_logs(&self, pod: &Pod, container_name: &str) -> Result<Vec<LogLine>> {
        let p = self.log_path(pod, container_name);
        let s = std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        Ok(parse_cri_log(&s))
    }

    /// The text of a container's log, one stream (`stdout`/`stderr`) or both (`None`).
    pub fn container_log_text(
        &self,
        pod: &Pod,
        container_name: &str,
        stream: Option<&str>,
    ) -> Result<String> {
        Ok(self
            .container_logs(pod, container_name)?
            .into_iter()
            .filter(|l| match stream {
                None => true,
                Some(s) => s == l.stream,
            })
            .map(|l| l.text + "\n")
            .collect())
    }

    /// ImageStatus: is `image` known to CRI?
    pub fn image_present(&self, image: &str) -> Result<bool> {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: false,
        };
        let mut c = self.images.clone();
        let t = self.rpc_timeout;
        let r = self
            .rt
            .block_on(async move { tokio::time::timeout(t, c.image_status(req)).await });
        match r {
            Err(_) => bail!("CRI ImageStatus timed out"),
            Ok(Err(s)) => bail!("CRI ImageStatus: {:?}: {}", s.code(), s.message()),
            Ok(Ok(r)) => Ok(r.into_inner().image.is_some()),
        }
    }

    /// Best-effort: stop and remove every container and pod (bounded by `bound`).
    pub fn remove_all_pods(&self, bound: Duration) {
        let deadline = Instant::now() + bound;
        let short = Duration::from_secs(15);
        let with_bound = |f: &dyn Fn() -> Result<()>| {
            if Instant::now() < deadline {
                let _ = f();
            }
        };
        if let Ok(cs) = self.list_containers(None) {
            for c in cs {
                with_bound(&|| {
                    let req = cri::StopContainerRequest {
                        container_id: c.id.clone(),
                        timeout: 0,
                    };
                    self.call("StopContainer", short, |mut cl| async move {
                        cl.stop_container(req).await
                    })?;
                    Ok(())
                });
                with_bound(&|| {
                    let req = cri::RemoveContainerRequest {
                        container_id: c.id.clone(),
                    };
                    self.call("RemoveContainer", short, |mut cl| async move {
                        cl.remove_container(req).await
                    })?;
                    Ok(())
                });
            }
        }
        if let Ok(ps) = self.list_pods() {
            for p in ps {
                with_bound(&|| {
                    let req = cri::StopPodSandboxRequest {
                        pod_sandbox_id: p.id.clone(),
                    };
                    self.call("StopPodSandbox", short, |mut cl| async move {
                        cl.stop_pod_sandbox(req).await
                    })?;
                    Ok(())
                });
                with_bound(&|| {
                    let req = cri::RemovePodSandboxRequest {
                        pod_sandbox_id: p.id.clone(),
                    };
                    self.call("RemovePodSandbox", short, |mut cl| async move {
                        cl.remove_pod_sandbox(req).await
                    })?;
                    Ok(())
                });
            }
        }
    }
}

/// Parses CRI's log format: `<RFC3339Nano> <stdout|stderr> <P|F> <text>`; `P`
/// (partial) lines are joined with the following line of the same stream.
pub fn parse_cri_log(s: &str) -> Vec<LogLine> {
    let mut out: Vec<LogLine> = Vec::new();
    let mut partial: HashMap<String, String> = HashMap::new();
    for line in s.lines() {
        let mut it = line.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let text = it.next().unwrap_or("");
        let acc = partial.entry(stream.to_string()).or_default();
        acc.push_str(text);
        if tag == "P" {
            continue;
        }
        let text = std::mem::take(acc);
        out.push(LogLine {
            time: time.into(),
            stream: stream.into(),
            text,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_parse() {
        let s = "2024-01-01T00:00:00.1Z stdout F hello\n2024-01-01T00:00:00.2Z stderr P par\n2024-01-01T00:00:00.3Z stderr F tial\n2024-01-01T00:00:00.4Z stdout F \n";
        let l = parse_cri_log(s);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].text, "hello");
        assert_eq!(
            l[1],
            LogLine {
                time: "2024-01-01T00:00:00.3Z".into(),
                stream: "stderr".into(),
                text: "partial".into()
            }
        );
        assert_eq!(l[2].text, "");
    }
}
