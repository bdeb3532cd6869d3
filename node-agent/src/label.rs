//! The Kubernetes API calls agentbox-node makes, and only these: a merge
//! patch of its own node's labels (the RuntimeClasses' `scheduling`
//! selects on them), and — for the uninstall hook — reading one DaemonSet's
//! status. In-cluster credentials (the pod's service account).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("no in-cluster Kubernetes credentials: {0}")]
    Config(String),
    #[error("Kubernetes API: {0}")]
    Api(String),
    #[error("label {0:?}: {1}")]
    Invalid(String, String),
    #[error("DaemonSet {namespace}/{name} not done within {timeout:?}: {last}")]
    Timeout {
        namespace: String,
        name: String,
        timeout: Duration,
        last: String,
    },
}

fn api(e: kube::Error) -> LabelError {
    LabelError::Api(e.to_string())
}

/// Parses `KEY=VALUE` node labels (Kubernetes' syntax, checked loosely).
pub fn parse_label(s: &str) -> Result<(String, String), LabelError> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| LabelError::Invalid(s.into(), "expected KEY=VALUE".into()))?;
    let name = k.rsplit('/').next().unwrap_or(k);
    let ok_chars = |x: &str| {
        x.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if name.is_empty() || name.len() > 63 || !ok_chars(name) || !ok_chars(v) || v.len() > 63 {
        return Err(LabelError::Invalid(
            s.into(),
            "not a valid Kubernetes label".into(),
        ));
    }
    Ok((k.into(), v.into()))
}

/// A client from the pod's service account (token file, CA, service env).
pub async fn in_cluster() -> Result<kube::Client, LabelError> {
    let cfg = kube::Config::incluster().map_err(|e| LabelError::Config(e.to_string()))?;
    kube::Client::try_from(cfg).map_err(|e| LabelError::Config(e.to_string()))
}

/// One merge patch of `node`'s labels: set `set`, remove `remove`.
pub async fn patch_labels(
    client: &kube::Client,
    node: &str,
    set: &BTreeMap<String, String>,
    remove: &[String],
) -> Result<(), LabelError> {
    let mut labels = serde_json::Map::new();
    for (k, v) in set {
        labels.insert(k.clone(), v.clone().into());
    }
    for k in remove {
        labels.insert(k.clone(), serde_json::Value::Null);
    }
    if labels.is_empty() {
        return Ok(());
    }
    let patch = serde_json::json!({ "metadata": { "labels": labels } });
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(api)?;
    Ok(())
}

/// Is the DaemonSet rolled out and every pod of it ready?
pub fn daemonset_done(ds: &DaemonSet) -> Result<bool, String> {
    let gen = ds.metadata.generation.unwrap_or(0);
    let Some(st) = &ds.status else {
        return Err("no status yet".into());
    };
    if st.observed_generation.unwrap_or(0) < gen {
        return Err(format!(
            "generation {gen} not observed yet ({:?})",
            st.observed_generation
        ));
    }
    let desired = st.desired_number_scheduled;
    let ready = st.number_ready;
    let updated = st.updated_number_scheduled.unwrap_or(0);
    if ready >= desired && updated >= desired {
        Ok(true)
    } else {
        Err(format!("{ready} of {desired} node(s) done"))
    }
}

/// Polls the DaemonSet until [`daemonset_done`] or `timeout`.
pub async fn wait_daemonset(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    every: Duration,
) -> Result<(), LabelError> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let end = Instant::now() + timeout;
    loop {
        let last = match api.get(name).await {
            Ok(ds) => match daemonset_done(&ds) {
                Ok(_) => return Ok(()),
                Err(why) => why,
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() >= end {
            return Err(LabelError::Timeout {
                namespace: namespace.into(),
                name: name.into(),
                timeout,
                last,
            });
        }
        tracing::info!(%last, "waiting for the uninstall DaemonSet");
        tokio::time::sleep(every).await;
    }
}

/// Runs `f` to completion on a small runtime of its own (callers are sync).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        assert_eq!(
            parse_label("agentbox.dev/runtime=true").unwrap(),
            ("agentbox.dev/runtime".into(), "true".into())
        );
        assert!(parse_label("x").is_err());
        assert!(parse_label("a b=c").is_err());
        assert!(parse_label("k=has space").is_err());
    }
}
