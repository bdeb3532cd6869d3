//! The delegate shim: started for the pod the way containerd would start it,
//! then called over ttrpc with the task API version it announced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use containerd_shim::Flags;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::{Message, MessageFull};
use containerd_shim_protos::ttrpc::{self, r#async::Client, Code};
use serde_json::Value;

use super::status;
use crate::config::Config;
use crate::options;
use crate::pod::Pod;

/// How long a forwarded lifecycle call may take.
pub(super) const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The delegate's task API: service name by protocol version.
fn service_name(version: u32) -> &'static str {
    if version >= 3 {
        "containerd.task.v3.Task"
    } else {
        "containerd.task.v2.Task"
    }
}

/// Parse what a shim's `start` printed: a bare address (task API v2) or
/// `{"version":N,"address":"..","protocol":"ttrpc"}`.
pub fn parse_start_output(out: &str) -> Result<(String, u32), String> {
    let out = out.trim();
    if out.is_empty() {
        return Err("the delegate shim printed no address".into());
    }
    if out.starts_with('{') {
        let v: Value = serde_json::from_str(out)
            .map_err(|e| format!("the delegate shim printed unreadable JSON: {e}"))?;
        let address = v
            .get("address")
            .and_then(Value::as_str)
            .ok_or("the delegate shim's reply has no address")?;
        let proto = v.get("protocol").and_then(Value::as_str).unwrap_or("ttrpc");
        if proto != "ttrpc" {
            return Err(format!(
                "the delegate shim speaks {proto}; agentbox forwards ttrpc only"
            ));
        }
        let version = v.get("version").and_then(Value::as_u64).unwrap_or(2) as u32;
        return Ok((address.to_string(), version));
    }
    Ok((out.to_string(), 2))
}

/// Resolve the delegate binary: an absolute path, or a name on PATH.
pub fn find_delegate(name: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(name);
    if p.is_absolute() {
        if p.is_file() {
            return Ok(p.to_path_buf());
        }
        bail!("delegate shim {name} does not exist");
    }
    if name.contains('/') {
        bail!("delegate shim {name:?} must be a name on PATH or an absolute path");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let c = dir.join(name);
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!("delegate shim {name} is not on PATH")
}

pub(super) struct Delegate {
    client: Client,
    service: &'static str,
    pub binary: PathBuf,
    pub address: String,
    /// The delegate daemon's pid, for cleanup after agentbox dies.
    pub pid: Option<i32>,
}

impl Delegate {
    pub async fn call<Req: Message, Resp: MessageFull>(
        &self,
        ctx_timeout_nano: i64,
        method: &str,
        req: &Req,
    ) -> ttrpc::Result<Resp> {
        let payload = req
            .write_to_bytes()
            .map_err(|e| status(Code::INTERNAL, format!("cannot encode {method}: {e}")))?;
        let timeout_nano = if ctx_timeout_nano > 0 {
            ctx_timeout_nano
        } else if method == "Wait" {
            0
        } else {
            CALL_TIMEOUT.as_nanos() as i64
        };
        let creq = ttrpc::Request {
            service: self.service.to_string(),
            method: method.to_string(),
            payload,
            timeout_nano,
            ..Default::default()
        };
        let res = self.client.request(creq).await?;
        Resp::parse_from_bytes(&res.payload).map_err(|e| {
            status(
                Code::INTERNAL,
                format!("cannot decode the delegate's {method} reply: {e}"),
            )
        })
    }
}

impl Delegate {
    /// Start the delegate shim for this pod group in `bundle`, the first
    /// container's bundle (where containerd ran agentbox's `start`).
    pub async fn start(
        pod: &Pod,
        cfg: &Config,
        flags: &Flags,
        bundle: &Path,
    ) -> anyhow::Result<Delegate> {
        let name = cfg
            .runtime
            .shim
            .clone()
            .ok_or_else(|| anyhow!("runtime.shim is not set"))?;
        let binary = find_delegate(&name)?;
        let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let grpc_address = if flags.address.is_empty() {
            std::env::var("GRPC_ADDRESS").unwrap_or_default()
        } else {
            flags.address.clone()
        };
        let mut cmd = std::process::Command::new(&binary);
        cmd.args([
            "-namespace",
            &flags.namespace,
            "-address",
            &grpc_address,
            "-id",
            &flags.id,
        ]);
        if flags.debug {
            cmd.arg("-debug");
        }
        cmd.arg("start");
        cmd.current_dir(bundle);
        cmd.env("TTRPC_ADDRESS", &ttrpc_address)
            .env("GRPC_ADDRESS", &grpc_address)
            .env("NAMESPACE", &flags.namespace);
        let input = match &cfg.runtime.shim_config {
            Some(p) => options::to_any(&options::RuntimeOptions {
                config_path: Some(p.display().to_string()),
                config_body: None,
            })
            .write_to_bytes()?,
            None => Vec::new(),
        };
        let out = crate::output::capture(&pod.reaper, cmd, Some(input), Some(CALL_TIMEOUT))
            .await
            .map_err(|e| anyhow!("the delegate shim's start: {e}"))?;
        if out.status != 0 {
            bail!(
                "the delegate shim {} failed to start (exit status {}): {}",
                binary.display(),
                out.status,
                crate::output::summarize(&out.stderr)
            );
        }
        let (address, version) =
            parse_start_output(&String::from_utf8_lossy(&out.stdout)).map_err(|e| anyhow!(e))?;
        if flags.socket.trim_start_matches("unix://") == address.trim_start_matches("unix://") {
            bail!("the delegate shim answered with agentbox's own socket {address}");
        }
        // The delegate's `start` wrote its own address into the bundle; put
        // agentbox's back, or a restarted containerd would reconnect straight
        // to the delegate and bypass the policy.
        let ours = if flags.socket.starts_with("unix://") {
            flags.socket.clone()
        } else {
            format!("unix://{}", flags.socket)
        };
        std::fs::write(bundle.join("address"), &ours).context("cannot restore the address file")?;
        // the delegate may have written its pid over ours
        let _ = std::fs::write(bundle.join("shim.pid"), std::process::id().to_string());
        Delegate::connect(binary, &address, version, &flags.id).await
    }

    /// Connect to a delegate shim serving at `address` with task API
    /// `version`; `binary` runs its `delete` action.
    pub async fn connect(
        binary: PathBuf,
        address: &str,
        version: u32,
        id: &str,
    ) -> anyhow::Result<Delegate> {
        let client = Client::connect(address)
            .await
            .map_err(|e| anyhow!("cannot connect to the delegate shim at {address}: {e}"))?;
        let mut delegate = Delegate {
            client,
            service: service_name(version),
            binary,
            address: address.to_string(),
            pid: None,
        };
        // its pid, for cleanup should agentbox die first
        let connect: ttrpc::Result<ConnectResponse> = delegate
            .call(
                0,
                "Connect",
                &ConnectRequest {
                    id: id.to_string(),
                    ..Default::default()
                },
            )
            .await;
        delegate.pid = connect.ok().map(|c| c.shim_pid as i32).filter(|p| *p > 1);
        tracing::info!(delegate = %delegate.binary.display(), %address, version, pid = ?delegate.pid, "delegate shim connected");
        Ok(delegate)
    }

    /// Whether the delegate reports the container's init as running.
    pub async fn running(&self, id: &str) -> bool {
        let req = StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let state: ttrpc::Result<StateResponse> = self.call(0, "State", &req).await;
        matches!(state, Ok(s) if s.status.value() == containerd_shim_protos::api::Status::RUNNING as i32)
    }

    /// Whether the delegate reports the task stopped.
    pub async fn stopped(&self, id: &str) -> bool {
        let req = StateRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let state: ttrpc::Result<StateResponse> = self.call(0, "State", &req).await;
        matches!(state, Ok(s) if s.status.value() == containerd_shim_protos::api::Status::STOPPED as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn start_output_forms() {
        assert_eq!(
            parse_start_output("unix:///run/containerd/s/abc\n").unwrap(),
            ("unix:///run/containerd/s/abc".into(), 2)
        );
        assert_eq!(
            parse_start_output(r#"{"version":3,"address":"unix:///x","protocol":"ttrpc"}"#)
                .unwrap(),
            ("unix:///x".into(), 3)
        );
        assert!(parse_start_output("").is_err());
        assert!(
            parse_start_output(r#"{"version":3,"address":"unix:///x","protocol":"grpc"}"#).is_err()
        );
        assert!(parse_start_output("{bad").is_err());
        assert_eq!(service_name(2), "containerd.task.v2.Task");
        assert_eq!(service_name(3), "containerd.task.v3.Task");
    }

    #[test]
    fn delegate_lookup() {
        assert!(find_delegate("/nonexistent/shim").is_err());
        assert!(find_delegate("a/b").is_err());
        assert_eq!(find_delegate("/bin/sh").unwrap(), PathBuf::from("/bin/sh"));
        assert!(find_delegate("sh").unwrap().is_absolute());
    }
}
