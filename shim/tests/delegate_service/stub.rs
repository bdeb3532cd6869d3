//! The stub delegate: a shim v2 Task service that answers like a runtime
//! with one running container `c1` and records what it was asked.

use std::path::Path;
use std::sync::{Arc, Mutex};

use agentbox_shim::options::{from_any, RuntimeOptions};
use async_trait::async_trait;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::ttrpc::{self, Code};
use serde_json::Value;

/// What the stub delegate saw.
#[derive(Default)]
pub struct Seen {
    /// Method names in call order.
    pub calls: Vec<String>,
    /// Each Create: the spec in the bundle at that moment, and the options.
    pub creates: Vec<(Value, Option<RuntimeOptions>)>,
    /// Each Exec's process spec.
    pub execs: Vec<Value>,
    pub kills: Vec<(String, u32, bool)>,
}

/// A delegate shim v2: answers like a runtime with one running container
/// `c1`; `missing` is unknown to it.
#[derive(Clone, Default)]
pub struct Stub {
    pub seen: Arc<Mutex<Seen>>,
    /// Whether `c1`'s init runs (Kill ends it).
    pub running: Arc<Mutex<bool>>,
}

pub fn code(c: Code, msg: &str) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(c, msg))
}

impl Stub {
    fn note(&self, m: &str) {
        self.seen.lock().unwrap().calls.push(m.to_string());
    }
}

#[async_trait]
impl Task for Stub {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> ttrpc::Result<CreateTaskResponse> {
        self.note("Create");
        let spec: Value = serde_json::from_slice(
            &std::fs::read(Path::new(&req.bundle).join("config.json")).unwrap(),
        )
        .unwrap();
        let opts = req
            .options
            .as_ref()
            .and_then(|a| from_any(a).ok().flatten());
        self.seen.lock().unwrap().creates.push((spec, opts));
        *self.running.lock().unwrap() = true;
        Ok(CreateTaskResponse {
            pid: 777,
            ..Default::default()
        })
    }
    async fn start(&self, _: &TtrpcContext, _: StartRequest) -> ttrpc::Result<StartResponse> {
        self.note("Start");
        Ok(StartResponse {
            pid: 777,
            ..Default::default()
        })
    }
    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> ttrpc::Result<StateResponse> {
        self.note("State");
        if req.id != "c1" {
            return Err(code(Code::NOT_FOUND, "no such container in the stub"));
        }
        let running = *self.running.lock().unwrap();
        Ok(StateResponse {
            id: req.id,
            pid: 777,
            status: if running {
                Status::RUNNING
            } else {
                Status::STOPPED
            }
            .into(),
            ..Default::default()
        })
    }
    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> ttrpc::Result<Empty> {
        self.note("Exec");
        let spec: Value = serde_json::from_slice(&req.spec.value).unwrap();
        self.seen.lock().unwrap().execs.push(spec);
        Ok(Empty::new())
    }
    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> ttrpc::Result<Empty> {
        self.note("Kill");
        self.seen
            .lock()
            .unwrap()
            .kills
            .push((req.id.clone(), req.signal, req.all));
        if req.signal == 9 {
            *self.running.lock().unwrap() = false;
        }
        Ok(Empty::new())
    }
    async fn wait(&self, _: &TtrpcContext, _: WaitRequest) -> ttrpc::Result<WaitResponse> {
        self.note("Wait");
        Ok(WaitResponse {
            exit_status: 3,
            ..Default::default()
        })
    }
    async fn delete(&self, _: &TtrpcContext, _: DeleteRequest) -> ttrpc::Result<DeleteResponse> {
        self.note("Delete");
        Ok(DeleteResponse {
            exit_status: 3,
            ..Default::default()
        })
    }
    async fn connect(&self, _: &TtrpcContext, _: ConnectRequest) -> ttrpc::Result<ConnectResponse> {
        self.note("Connect");
        Ok(ConnectResponse {
            shim_pid: 4_000_000,
            task_pid: 777,
            ..Default::default()
        })
    }
    async fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> ttrpc::Result<Empty> {
        self.note("Shutdown");
        Ok(Empty::new())
    }
}
