//! Publishing task events to containerd, behind a trait so the Task service is
//! tested in-process with a recording sink.

use async_trait::async_trait;
use containerd_shim::event::Event;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::ttrpc::context::Context;

#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    async fn publish(&self, topic: String, event: Box<dyn MessageDyn>);
}

/// The real sink: containerd's events service over ttrpc.
pub struct Containerd {
    pub publisher: RemotePublisher,
    pub namespace: String,
}

#[async_trait]
impl EventSink for Containerd {
    async fn publish(&self, topic: String, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .publisher
            .publish(Context::default(), &topic, &self.namespace, event)
            .await
        {
            tracing::warn!(%topic, error = %e, "cannot publish event to containerd");
        }
    }
}

/// Publish a typed event on its topic.
pub async fn send<E: Event + 'static>(sink: &dyn EventSink, e: E) {
    let topic = e.topic();
    tracing::debug!(%topic, "publish event");
    sink.publish(topic, Box::new(e)).await;
}

/// A sink that remembers topics (tests).
#[derive(Default)]
pub struct Recorder {
    pub topics: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl EventSink for Recorder {
    async fn publish(&self, topic: String, _event: Box<dyn MessageDyn>) {
        self.topics.lock().unwrap().push(topic);
    }
}

/// The current time as a protobuf timestamp (exit and event times).
pub fn now() -> containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut t = containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp::new();
    t.seconds = d.as_secs() as i64;
    t.nanos = d.subsec_nanos() as i32;
    t
}
