//! The writer thread: records from the queue into the audit log, in batches
//! (one write per batch), each about its container.

use std::sync::mpsc::Receiver;
use std::time::SystemTime;

use agentbox_activity::Record;
use serde_json::Value;

use super::Containers;
use crate::audit::{AuditLog, Subject};

/// Most records written in one batch.
const BATCH: usize = 512;

pub(super) fn run(
    rx: Receiver<(SystemTime, Record)>,
    audit: &AuditLog,
    containers: &Containers,
    pod: &Subject,
) {
    let mut buf = Vec::new();
    let mut failed = false;
    while let Ok(first) = rx.recv() {
        buf.clear();
        line(&mut buf, first, containers, pod);
        for _ in 1..BATCH {
            match rx.try_recv() {
                Ok(r) => line(&mut buf, r, containers, pod),
                Err(_) => break,
            }
        }
        match audit.append_lines(&buf) {
            Ok(()) => failed = false,
            Err(e) if !failed => {
                failed = true;
                tracing::error!(error = %e, "activity records lost");
            }
            Err(_) => {}
        }
    }
}

fn line(buf: &mut Vec<u8>, (at, r): (SystemTime, Record), containers: &Containers, pod: &Subject) {
    let subject = if r.container_id.is_empty() {
        pod.clone()
    } else {
        containers.get(&r.container_id).unwrap_or_else(|| Subject {
            container_id: r.container_id.clone(),
            ..pod.clone()
        })
    };
    let mut fields = r.fields;
    // when the sink received it, not when the disk took it
    fields.insert("time".into(), Value::String(rfc3339(at)));
    fields.insert("source".into(), Value::String("gvisor".into()));
    buf.extend_from_slice(&AuditLog::line(r.event, &subject, Value::Object(fields)));
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}
