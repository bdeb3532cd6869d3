//! The Kubernetes API calls of agentbox-node against a local HTTP fake of
//! exactly those calls (no API server runs here): the node label merge
//! patch, and the uninstall hook's DaemonSet polling. The fake records every
//! request; the tests assert method, path, headers and body.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_node::label;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

type Responder = Arc<dyn Fn(&Req, usize) -> (u16, String) + Send + Sync>;

/// Serves HTTP/1.1 on 127.0.0.1 (keep-alive, Content-Length bodies only).
async fn fake(respond: Responder) -> (String, Arc<Mutex<Vec<Req>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let log = Arc::new(Mutex::new(vec![]));
    let log2 = log.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let log = log2.clone();
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut buf = vec![];
                loop {
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap().split_whitespace();
                    let (method, path) = (
                        first.next().unwrap().to_string(),
                        first.next().unwrap().to_string(),
                    );
                    let headers: BTreeMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                    buf.drain(..head_end + len);
                    let req = Req {
                        method,
                        path,
                        headers,
                        body,
                    };
                    let n = {
                        let mut l = log.lock().unwrap();
                        l.push(req.clone());
                        l.len()
                    };
                    let (code, body) = respond(&req, n);
                    let resp = format!(
                        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, log)
}

fn client(url: &str, token_file: &std::path::Path) -> kube::Client {
    let mut cfg = kube::Config::new(url.parse().unwrap());
    cfg.auth_info.token_file = Some(token_file.display().to_string());
    kube::Client::try_from(cfg).unwrap()
}

fn node_json(labels: serde_json::Value) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-a", "labels": labels}})
        .to_string()
}

#[tokio::test]
async fn labels_are_one_merge_patch_of_the_own_node() {
    let (url, log) = fake(Arc::new(|_r: &Req, _| {
        (
            200,
            node_json(serde_json::json!({"agentbox.dev/runtime": "true"})),
        )
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cr3t-token").unwrap();
    let c = client(&url, &token);
    let set: BTreeMap<String, String> =
        [("agentbox.dev/runtime".to_string(), "true".to_string())].into();
    label::patch_labels(&c, "node-a", &set, &["agentbox.dev/kata".to_string()])
        .await
        .unwrap();
    // nothing to change: no call at all
    label::patch_labels(&c, "node-a", &BTreeMap::new(), &[])
        .await
        .unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    let r = &log[0];
    assert_eq!(r.method, "PATCH");
    assert_eq!(r.path.split('?').next().unwrap(), "/api/v1/nodes/node-a");
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        r.headers.get("authorization").map(String::as_str),
        Some("Bearer s3cr3t-token")
    );
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"metadata": {"labels": {"agentbox.dev/runtime": "true", "agentbox.dev/kata": null}}})
    );
}

#[tokio::test]
async fn a_refused_patch_is_an_error() {
    let (url, _log) = fake(Arc::new(|_r: &Req, _| {
        (
            403,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "nodes \"node-a\" is forbidden", "reason": "Forbidden", "code": 403}).to_string(),
        )
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let c = client(&url, &token);
    let set: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
    let e = label::patch_labels(&c, "node-a", &set, &[])
        .await
        .unwrap_err();
    assert!(e.to_string().contains("forbidden"), "{e}");
}

fn ds(generation: i64, observed: i64, desired: i32, ready: i32, updated: i32) -> String {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agentbox-uninstall", "namespace": "agentbox", "generation": generation},
        "spec": {"selector": {}, "template": {}},
        "status": {"observedGeneration": observed, "desiredNumberScheduled": desired, "numberReady": ready,
                   "updatedNumberScheduled": updated, "currentNumberScheduled": desired, "numberMisscheduled": 0}
    })
    .to_string()
}

#[tokio::test]
async fn the_uninstall_hook_waits_until_every_node_is_done() {
    let (url, log) = fake(Arc::new(|_r: &Req, n| match n {
        1 => (200, ds(1, 0, 0, 0, 0)),
        2 => (200, ds(1, 1, 3, 1, 3)),
        _ => (200, ds(1, 1, 3, 3, 3)),
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let c = client(&url, &token);
    label::wait_daemonset(
        &c,
        "agentbox",
        "agentbox-uninstall",
        Duration::from_secs(10),
        Duration::from_millis(10),
    )
    .await
    .unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 3);
    for r in &log {
        assert_eq!(r.method, "GET");
        assert_eq!(
            r.path.split('?').next().unwrap(),
            "/apis/apps/v1/namespaces/agentbox/daemonsets/agentbox-uninstall"
        );
    }
    // never done: a time-out that says how far it got
    let (url, _) = fake(Arc::new(|_r: &Req, _| (200, ds(2, 2, 3, 2, 3)))).await;
    let c = client(&url, &token);
    let e = label::wait_daemonset(
        &c,
        "agentbox",
        "agentbox-uninstall",
        Duration::from_millis(100),
        Duration::from_millis(20),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 of 3 node(s) done"), "{e}");
}
