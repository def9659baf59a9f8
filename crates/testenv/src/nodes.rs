//! Simulated nodes: plain Node objects that kwok manages, so the scheduler places Pods on them
//! and kwok moves those Pods to Running/Ready (or Succeeded, for Jobs).

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};

use crate::Error;

/// Annotation that tells kwok a node is its to manage.
pub const KWOK_ANNOTATION: &str = "kwok.x-k8s.io/node";
/// The `--manage-nodes-with-annotation-selector` value kwok is started with.
pub const KWOK_ANNOTATION_SELECTOR: &str = "kwok.x-k8s.io/node=fake";

/// Creates `count` simulated nodes named `kwok-node-<i>` (existing ones are left alone).
pub async fn create(client: &kube::Client, count: usize) -> Result<(), Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..count {
        let name = format!("kwok-node-{i}");
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "annotations": {
                    KWOK_ANNOTATION: "fake",
                    "node.alpha.kubernetes.io/ttl": "0"
                },
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok"
                }
            },
            "status": {
                "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}
            }
        }))
        .map_err(|e| Error::Client(e.to_string()))?;
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(())
}

/// Whether a node reports `Ready=True`.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether every node is Ready (and there is at least one).
pub async fn all_ready(client: &kube::Client) -> Result<bool, Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&Default::default()).await?;
    Ok(!list.items.is_empty() && list.items.iter().all(is_ready))
}
