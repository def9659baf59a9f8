//! The supply chain end to end: a base image update pushed to a real registry on loopback is
//! noticed (one `HEAD` per interval however many policies share the base), rebased natively,
//! scanned, signed, staged and tested with no human step, and waits for approval.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{http_server, Scenario, CLEAN_REPORT};
use serde_json::json;
use tidegate_api::{PromotionPhase, ReleasePhase};
use tidegate_providers::rebase::{BASE_DIGEST, BASE_NAME};
use tidegate_providers::registry::types::{Descriptor, ImageManifest, OCI_CONFIG, OCI_MANIFEST};
use tidegate_providers::registry::{sha256, ClientOptions, RegistryClient, Repository};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};

const MINUTE: Duration = Duration::from_secs(60);

fn bytes(seed: &str, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut block = sha256(seed.as_bytes()).into_bytes();
    while out.len() < size {
        out.extend_from_slice(&block);
        block = sha256(&block).into_bytes();
    }
    out.truncate(size);
    out
}

/// Pushes an uncompressed-layer image and returns its manifest digest.
async fn push(client: &RegistryClient, repo: &Repository, tag: &str, layers: &[Vec<u8>], annotations: BTreeMap<String, String>) -> String {
    let mut descriptors = Vec::new();
    for layer in layers {
        let digest = client.push_blob(repo, layer).await.expect("layer");
        descriptors.push(Descriptor { media_type: "application/vnd.oci.image.layer.v1.tar".into(), digest, size: layer.len() as u64, artifact_type: None, annotations: None, platform: None });
    }
    let ids: Vec<String> = descriptors.iter().map(|d| d.digest.clone()).collect();
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": ids}})).expect("config");
    let config_digest = client.push_blob(repo, &config).await.expect("config");
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor { media_type: OCI_CONFIG.into(), digest: config_digest, size: config.len() as u64, artifact_type: None, annotations: None, platform: None },
        layers: descriptors,
        subject: None,
        annotations: (!annotations.is_empty()).then_some(annotations),
    };
    client.put_manifest(repo, tag, OCI_MANIFEST, &serde_json::to_vec(&manifest).expect("json")).await.expect("manifest").0
}

/// `HEAD` requests for `path` in the registry's access log (one line per request).
fn head_requests(registry: &Registry, path: &str) -> usize {
    let needle = format!("\"HEAD {path} HTTP/");
    std::fs::read_to_string(registry.log()).unwrap_or_default().lines().filter(|l| l.contains(&needle)).count()
}

#[tokio::test]
async fn base_image_update_becomes_a_verified_rebased_release_without_a_human() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous }).await.expect("registry");
    let host = registry.host().to_string();
    let client = RegistryClient::new(ClientOptions::default()).expect("client");
    let base = Repository::new(&host, "base/runtime");
    let app = Repository::new(&host, "shop/app");
    let base_ref = format!("{host}/base/runtime:3.20");

    // Base v1, and the app built on it (its first layers are the base's, and it says so).
    let base_v1 = [bytes("os-1", 4096), bytes("libs-1", 2048)];
    let old_base = push(&client, &base, "3.20", &base_v1, BTreeMap::new()).await;
    let annotations = BTreeMap::from([(BASE_NAME.to_string(), base_ref.clone()), (BASE_DIGEST.to_string(), old_base.clone())]);
    let app_digest = push(&client, &app, "1.0", &[base_v1[0].clone(), base_v1[1].clone(), bytes("app", 1024)], annotations).await;

    let s = Scenario::new("supply-chain").await;
    s.set_workload_images(&format!("{host}/shop/app@{app_digest}")).await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "triggers": {"baseImage": {"ref": base_ref, "interval": "1m"}, "rescan": null},
        "build": {"strategy": "rebase"},
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "workloads": [
            {"name": "web", "kind": "http", "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
             "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}
        ]
    }))
    .await;
    // Ten more policies watch the same base.
    for i in 0..10 {
        s.extra_policy(&format!("sharer-{i}"), &format!("{host}/shop/sharer-{i}"), &base_ref).await;
    }
    let controller = s.controller_with(&["--builder", "registry"]);

    // The policy records the base digest it starts from; nothing is built for it.
    let policies = kube::Api::<tidegate_api::ImagePolicy>::namespaced(s.admin.clone(), &s.ns);
    common::wait("the baseline base digest", MINUTE, || {
        let policies = policies.clone();
        let old_base = old_base.clone();
        async move { (policies.get("shop-app").await.ok()?.status?.base_digest? == old_base).then_some(()) }
    })
    .await;
    assert!(s.releases().list(&Default::default()).await.expect("list").items.is_empty(), "no release for the baseline");
    let heads_at_start = head_requests(&registry, "/v2/base/runtime/manifests/3.20");
    assert_eq!(heads_at_start, 1, "eleven policies, one HEAD for their shared base");

    // Base v2 is pushed and the registry notifies the controller.
    let base_v2 = [bytes("os-2", 4096), bytes("libs-2", 3072)];
    let new_base = push(&client, &base, "3.20", &base_v2, BTreeMap::new()).await;
    let notification = json!({"events": [{"action": "push", "target": {"repository": "base/runtime", "tag": "3.20", "digest": new_base}, "request": {"host": host}}]});
    let answer = post(&format!("{}/webhooks/registry", controller.metrics), &notification.to_string()).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let release = s.release_in(ReleasePhase::Verified, 2 * MINUTE).await;
    let reason = &release.spec.reason;
    assert_eq!(reason.base_image.as_ref().map(|b| (b.old_digest.clone(), b.new_digest.clone())), Some((Some(old_base.clone()), new_base.clone())));
    // The candidate is a real rebased image in the registry.
    let manifest: ImageManifest = serde_json::from_slice(&client.get_manifest(&app, &digest).await.expect("rebased image").bytes).expect("manifest");
    assert_eq!(manifest.layers[0].digest, sha256(&base_v2[0]));
    assert_eq!(manifest.layers[2].digest, sha256(&bytes("app", 1024)));
    assert_eq!(manifest.annotations.unwrap_or_default().get(BASE_DIGEST), Some(&new_base));
    assert!(release.status.as_ref().and_then(|st| st.signature.as_ref()).is_some(), "signed");
    assert_eq!(s.deployment_image(&s.staging, "web").await, Some(format!("{host}/shop/app@{digest}")), "staging runs the rebased digest");
    s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    assert_eq!(s.deployment_image(&s.ns, "web").await, Some(format!("{host}/shop/app@{app_digest}")), "production untouched");

    // Within one interval the shared base was looked at once more (the notification), not per policy.
    let heads = head_requests(&registry, "/v2/base/runtime/manifests/3.20") - heads_at_start;
    assert!(heads <= 2, "{heads} HEADs for 11 policies after the push");
    drop(controller);
}

async fn post(url: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').expect("path");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}
