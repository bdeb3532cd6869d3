//! The pod daemon: what one pod owns whatever the backend. One daemon serves
//! a pod group (a CRI sandbox and its containers, or one container outside
//! Kubernetes); it is created with the group's first container and ends with
//! its last.
//!
//! Both backends go through it for what is not about running a process:
//! admitting a container or an exec under the policy (`admit`), one Create
//! at a time per container id (`reserve`), the bundle state that `delete`
//! needs after a crash (`state`), the pod's lifetime limit (`lifetime`), the
//! activity sink that records what the sandbox's processes did
//! (`activity`), the phases in time (`phase`) and the pod's egress control
//! (`network`, hooked in by `egress`). A backend reaches the pod through
//! [`Pod`]; the pod reaches the backend through [`crate::backend::Control`].

pub mod activity;
pub mod admit;
mod egress;
pub mod lifetime;
pub mod network;
pub mod phase;
pub mod reserve;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use agentbox_policy::{HostFs, RealHostFs};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use tokio::sync::Notify;

use crate::backend::Control;
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::events::EventSink;
use crate::options;
use crate::reaper::Reaper;

pub use admit::Admitted;
pub use lifetime::LifetimeGuard;
pub use reserve::Reservation;
pub use state::{BundleState, STATE_FILE};

/// How long admission may wait on the host (config, bundle, mount sources)
/// before it fails closed.
pub const HOST_TIMEOUT: Duration = Duration::from_secs(10);

/// The pod daemon's shared state.
pub struct Pod {
    /// containerd namespace (`k8s.io` for Kubernetes).
    pub namespace: String,
    /// Config path learned from `start`'s runtime options, if any.
    pub default_config: Option<PathBuf>,
    pub events: Arc<dyn EventSink>,
    pub reaper: Arc<Reaper>,
    /// Notified when the daemon should exit.
    pub shutdown: Arc<Notify>,
    /// Trims the daemon's working set after bursts of work.
    pub trimmer: Option<crate::trim::Trimmer>,
    /// The backend, for what the pod decides about its containers (lifetime).
    control: OnceLock<Weak<dyn Control>>,
    /// The host the policy looks at (mount sources, sockets).
    pub host: Arc<dyn HostFs>,
    /// How long admission may wait on the host.
    pub host_timeout: Duration,
    /// When the pod's first container was admitted: its lifetime starts here.
    started: OnceLock<tokio::time::Instant>,
    /// Container ids with a Create in flight.
    creating: reserve::Ids,
    /// The pod's containers, for the activity records about them.
    containers: Arc<activity::Containers>,
    /// The activity sink, once the sandbox is created with one.
    activity: std::sync::Mutex<Option<Arc<activity::ActivitySink>>>,
    /// The pod's containers by phase.
    pub phases: phase::Phases,
    /// The pod's egress control, once installed.
    network: std::sync::Mutex<Option<Arc<network::PodNetwork>>>,
}

impl Pod {
    pub fn new(
        namespace: impl Into<String>,
        default_config: Option<PathBuf>,
        events: Arc<dyn EventSink>,
        reaper: Arc<Reaper>,
        trimmer: Option<crate::trim::Trimmer>,
    ) -> Pod {
        Pod {
            namespace: namespace.into(),
            default_config,
            events,
            reaper,
            shutdown: Arc::new(Notify::new()),
            trimmer,
            control: OnceLock::new(),
            host: Arc::new(RealHostFs),
            host_timeout: HOST_TIMEOUT,
            started: OnceLock::new(),
            creating: reserve::Ids::default(),
            containers: Arc::default(),
            activity: std::sync::Mutex::new(None),
            phases: Default::default(),
            network: Default::default(),
        }
    }

    /// Start the activity sink for the pod's sandbox, if the container's
    /// config turns the activity audit on: the pod-init config for runsc.
    /// Fail closed: an error means the sandbox must not be created.
    pub fn start_activity(
        &self,
        c: &Admitted,
        bundle: &Path,
        socket_dir: &Path,
    ) -> Result<Option<PathBuf>, String> {
        if !c.cfg.activity_enabled() {
            return Ok(None);
        }
        let sink = activity::ActivitySink::start(
            &c.cfg.activity,
            socket_dir,
            bundle,
            &c.id,
            c.audit.clone(),
            self.containers.clone(),
            crate::audit::Subject {
                container_id: String::new(),
                container: None,
                ..c.subject.clone()
            },
            // the node policy's detector: [env] secret_rules apply too
            Box::new(activity::SecretsRedactor::Node(c.cfg.clone())),
        )?;
        let _ = c.audit.record(
            "activity",
            &c.subject,
            serde_json::json!({"state": "on", "kinds": c.cfg.activity.kinds.iter().map(|k| format!("{k:?}").to_lowercase()).collect::<Vec<_>>()}),
        );
        let pod_init = sink.pod_init.clone();
        *self.activity.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(sink));
        Ok(Some(pod_init))
    }

    /// After the sandbox's create: it must have connected to the sink.
    pub fn activity_connected(&self) -> Result<(), String> {
        let sink = self
            .activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match sink {
            Some(s) => s.wait_connected(std::time::Duration::from_secs(5)),
            None => Ok(()),
        }
    }

    /// The sandbox is gone or the daemon exits: write what the sink holds.
    pub fn close_activity(&self) {
        let sink = self
            .activity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(s) = sink {
            s.close(std::time::Duration::from_secs(3));
        }
    }

    /// The same pod, looking at `host` with `timeout` (tests use a host that hangs).
    pub fn with_host(mut self, host: Arc<dyn HostFs>, timeout: Duration) -> Pod {
        self.host = host;
        self.host_timeout = timeout;
        self
    }

    /// Note that work happened (the working set is trimmed once it is quiet).
    pub fn worked(&self) {
        if let Some(t) = &self.trimmer {
            t.poke();
        }
    }

    /// Attach the backend (once, right after it is built).
    pub fn attach(&self, control: Weak<dyn Control>) {
        let _ = self.control.set(control);
    }

    /// The backend, while it exists.
    pub fn control(&self) -> Option<Arc<dyn Control>> {
        self.control.get().and_then(Weak::upgrade)
    }

    /// The config for a Create: see [`resolve_config`].
    pub fn config_for(&self, options_any: Option<&Any>) -> Result<Config, String> {
        resolve_config(options_any, self.default_config.as_deref())
    }
}

/// Resolve the config for a Create: the request's runtime options win, then
/// what `start` was given, then the default path. Fail closed on any error.
pub fn resolve_config(options_any: Option<&Any>, default: Option<&Path>) -> Result<Config, String> {
    if let Some(any) = options_any {
        match options::from_any(any) {
            Ok(Some(o)) => {
                if let Some(body) = o.config_body.as_deref() {
                    return Config::from_toml_str(body, "runtime options ConfigBody")
                        .map_err(|e| e.to_string());
                }
                if let Some(path) = o.config_path.as_deref() {
                    return Config::load(Path::new(path)).map_err(|e| e.to_string());
                }
            }
            Ok(None) => {}
            Err(e) => return Err(format!("agentbox cannot read the runtime options: {e}")),
        }
    }
    let path = default.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
    Config::load(path).map_err(|e| e.to_string())
}

/// True for a CRI pod sandbox (pause) container.
pub fn is_cri_sandbox(annotations: &serde_json::Map<String, serde_json::Value>) -> bool {
    annotations
        .get("io.kubernetes.cri.container-type")
        .and_then(serde_json::Value::as_str)
        == Some("sandbox")
}
