//! containerd through its CRI socket, as the kubelet talks to it: the
//! version, the runtime handlers it loaded, the pods that run on a handler.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::version::ContainerdVersion;

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("containerd's CRI at {socket} does not answer: {message}")]
    Unreachable { socket: PathBuf, message: String },
    #[error("CRI {call}: {message}")]
    Call { call: &'static str, message: String },
    #[error("containerd reports version {0:?}, which agentbox-node cannot read")]
    Version(String),
    #[error("containerd's CRI was not ready within {timeout:?}: {last}")]
    NotReady { timeout: Duration, last: String },
}

/// A pod sandbox running on one of agentbox's handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub handler: String,
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} ({})", self.namespace, self.name, self.handler)
    }
}

/// What install/uninstall need from containerd (a fake in unit tests).
pub trait Containerd {
    fn version(&mut self) -> Result<ContainerdVersion, CriError>;
    /// The runtime handlers containerd loaded; `None` when it does not say.
    fn loaded_handlers(&mut self) -> Result<Option<BTreeSet<String>>, CriError>;
    /// Ready pod sandboxes on any of `handlers`.
    fn pods_on(&mut self, handlers: &[String]) -> Result<Vec<PodRef>, CriError>;
    /// Waits (bounded) until the CRI answers and reports the runtime ready.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), CriError>;
}

/// Handler names from a CRI `Status` answer: the `runtime_handlers` field
/// (containerd 2.x) or the CRI config containerd loaded, which `verbose`
/// status carries as JSON in `info["config"]` (1.6 and 1.7 too).
pub fn handlers_from_status(resp: &cri::StatusResponse) -> Option<BTreeSet<String>> {
    if !resp.runtime_handlers.is_empty() {
        return Some(
            resp.runtime_handlers
                .iter()
                .map(|h| h.name.clone())
                .filter(|n| !n.is_empty())
                .collect(),
        );
    }
    let cfg: serde_json::Value = serde_json::from_str(resp.info.get("config")?).ok()?;
    let rt = cfg.get("containerd")?.get("runtimes")?.as_object()?;
    Some(rt.keys().cloned().collect())
}

/// The real one: CRI v1 over containerd's unix socket.
pub struct CriClient {
    socket: PathBuf,
    rt: tokio::runtime::Runtime,
    client: Option<RuntimeServiceClient<Channel>>,
    pub rpc_timeout: Duration,
}

impl CriClient {
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime"),
            client: None,
            rpc_timeout: Duration::from_secs(30),
        }
    }

    fn client(&mut self) -> Result<RuntimeServiceClient<Channel>, CriError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let path = self.socket.clone();
        let ch = self
            .rt
            .block_on(async move {
                Endpoint::try_from("http://[::1]:50051")?
                    .connect_timeout(Duration::from_secs(5))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    }))
                    .await
            })
            .map_err(|e| CriError::Unreachable {
                socket: self.socket.clone(),
                message: format!("{e:?}"),
            })?;
        let c = RuntimeServiceClient::new(ch);
        self.client = Some(c.clone());
        Ok(c)
    }

    fn call<T, F, Fut>(&mut self, call: &'static str, f: F) -> Result<T, CriError>
    where
        F: FnOnce(RuntimeServiceClient<Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let c = self.client()?;
        let t = self.rpc_timeout;
        let r = self
            .rt
            .block_on(async move { tokio::time::timeout(t, f(c)).await });
        match r {
            Err(_) => {
                self.client = None;
                Err(CriError::Call {
                    call,
                    message: format!("timed out after {t:?}"),
                })
            }
            Ok(Err(s)) => {
                // a restarted containerd needs a new connection
                self.client = None;
                Err(CriError::Call {
                    call,
                    message: format!("{:?}: {}", s.code(), s.message()),
                })
            }
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    fn status(&mut self) -> Result<cri::StatusResponse, CriError> {
        self.call("Status", |mut c| async move {
            c.status(cri::StatusRequest { verbose: true }).await
        })
    }
}

impl Containerd for CriClient {
    fn version(&mut self) -> Result<ContainerdVersion, CriError> {
        let r = self.call("Version", |mut c| async move {
            c.version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
        })?;
        ContainerdVersion::parse(&r.runtime_version).ok_or(CriError::Version(r.runtime_version))
    }

    fn loaded_handlers(&mut self) -> Result<Option<BTreeSet<String>>, CriError> {
        Ok(handlers_from_status(&self.status()?))
    }

    fn pods_on(&mut self, handlers: &[String]) -> Result<Vec<PodRef>, CriError> {
        let r = self.call("ListPodSandbox", |mut c| async move {
            c.list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    state: Some(cri::PodSandboxStateValue {
                        state: cri::PodSandboxState::SandboxReady as i32,
                    }),
                    ..Default::default()
                }),
            })
            .await
        })?;
        Ok(r.items
            .into_iter()
            .filter(|p| handlers.contains(&p.runtime_handler))
            .map(|p| {
                let m = p.metadata.unwrap_or_default();
                PodRef {
                    namespace: m.namespace,
                    name: m.name,
                    handler: p.runtime_handler,
                }
            })
            .collect())
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), CriError> {
        let end = Instant::now() + timeout;
        loop {
            self.client = None;
            let last = match self.status() {
                Ok(s) => {
                    let ready = s.status.as_ref().is_some_and(|st| {
                        st.conditions
                            .iter()
                            .any(|c| c.r#type == "RuntimeReady" && c.status)
                    });
                    if ready {
                        return Ok(());
                    }
                    "RuntimeReady is false".to_string()
                }
                Err(e) => e.to_string(),
            };
            if Instant::now() >= end {
                return Err(CriError::NotReady { timeout, last });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_from_either_status_form() {
        let mut r = cri::StatusResponse::default();
        assert_eq!(handlers_from_status(&r), None);
        r.info.insert(
            "config".into(),
            r#"{"containerd":{"defaultRuntimeName":"runc","runtimes":{"runc":{},"agentbox-gvisor":{}}}}"#
                .into(),
        );
        assert_eq!(
            handlers_from_status(&r),
            Some(["agentbox-gvisor".to_string(), "runc".to_string()].into())
        );
        r.runtime_handlers = vec![cri::RuntimeHandler {
            name: "runc".into(),
            features: None,
        }];
        assert_eq!(handlers_from_status(&r), Some(["runc".to_string()].into()));
    }
}
