//! The supply chain against a registry that demands Azure Container Registry's token exchange,
//! with the controller's Azure identity as its only credential (`--acr-login-server`, no registry
//! Secret): a base-image update is rebased in that registry, signed (the signature is a referrer
//! there), staged, and after approval verified again and promoted.

mod common;

use std::time::Duration;

use common::{CLEAN_REPORT, Scenario, http_server};
use serde_json::json;
use tidegate_api::{PromotionPhase, ReleasePhase};
use tidegate_providers::rebase::{BASE_DIGEST, BASE_NAME};
use tidegate_testenv::azure::{AzureStandIn, TENANT_ID};
use tidegate_testenv::registry::{
    AcrTrust, Registry, RegistryAuth, RegistryKind, RegistryOptions, pseudo_random_bytes,
};

const MINUTE: Duration = Duration::from_secs(60);
const CLIENT_ID: &str = "tidegate-controller";
const SECRET: &str = "controller-secret";

async fn push(registry: &Registry, repo: &str, tag: &str, layers: &[Vec<u8>], annotations: &[(&str, &str)]) -> String {
    registry.client().push_layered(repo, tag, layers, annotations).await.expect("push image")
}

#[tokio::test]
async fn a_release_is_rebased_signed_and_promoted_in_an_acr_with_the_azure_identity() {
    let azure = AzureStandIn::start().await.expect("azure stand-in");
    azure.add_client_secret(CLIENT_ID, SECRET).await.expect("client");
    let trust = AcrTrust {
        token_key: azure.token_key().to_string(),
        tenant: TENANT_ID.to_string(),
        allowed: vec![CLIENT_ID.to_string()],
    };
    // The admin user only seeds the registry; the controller never sees it.
    let registry = Registry::start(RegistryOptions {
        kind: RegistryKind::Distribution,
        auth: RegistryAuth::acr("admin", "admin-password", trust),
    })
    .await
    .expect("registry");
    let host = registry.host().to_string();
    let base_ref = format!("{host}/base/runtime:3.20");
    let base_v1 = [pseudo_random_bytes("os-1", 2048), pseudo_random_bytes("libs-1", 1024)];
    let old_base = push(&registry, "base/runtime", "3.20", &base_v1, &[]).await;
    let app_digest = push(
        &registry,
        "shop/app",
        "1.0",
        &[base_v1[0].clone(), base_v1[1].clone(), pseudo_random_bytes("app", 512)],
        &[(BASE_NAME, &base_ref), (BASE_DIGEST, &old_base)],
    )
    .await;

    let s = Scenario::new("acr-registry").await;
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
    let identity =
        tidegate_testenv::pki::write_code_signing_identity(&s.path("notary"), "acr", "tidegate").expect("identity");
    let secret_file = s.path("azure-client-secret");
    std::fs::write(&secret_file, SECRET).expect("secret file");
    let args = [
        "--plain-http-registry".to_string(),
        host.clone(),
        "--acr-login-server".into(),
        host.clone(),
        "--azure-credential".into(),
        "client-secret".into(),
        "--azure-tenant-id".into(),
        TENANT_ID.into(),
        "--azure-client-id".into(),
        CLIENT_ID.into(),
        "--azure-client-secret-file".into(),
        secret_file.display().to_string(),
        "--azure-authority-host".into(),
        azure.authority_host(),
        "--azure-resource-manager".into(),
        azure.arm_url(),
        "--azure-ca-file".into(),
        azure.ca_file().display().to_string(),
        "--notary-key-file".into(),
        identity.key.display().to_string(),
        "--notary-cert-file".into(),
        identity.chain.display().to_string(),
        "--trust-policy-file".into(),
        identity.trust_policy.display().to_string(),
        "--trust-store-dir".into(),
        identity.trust_store.display().to_string(),
    ];
    let controller = s.product(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // The baseline is read through the token exchange.
    let policies = kube::Api::<tidegate_api::ImagePolicy>::namespaced(s.admin.clone(), &s.ns);
    common::wait("the baseline base digest", MINUTE, || {
        let policies = policies.clone();
        let old_base = old_base.clone();
        async move { (policies.get("shop-app").await.ok()?.status?.base_digest? == old_base).then_some(()) }
    })
    .await;
    let acr = registry.acr().expect("an ACR front");
    assert!(acr.exchanges() >= 1, "the controller signed in with its Azure identity");

    let new_base = push(&registry, "base/runtime", "3.20", &[pseudo_random_bytes("os-2", 2048)], &[]).await;
    let notification = json!({"events": [{"action": "push", "target": {"repository": "base/runtime", "tag": "3.20", "digest": new_base}, "request": {"host": host}}]});
    let answer =
        common::http(&format!("{}/webhooks/registry", controller.metrics), Some(&notification.to_string())).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    s.upload_scan_report(CLEAN_REPORT).await;
    let release = s.release_in(ReleasePhase::Verified, 2 * MINUTE).await;
    let status = release.status.expect("status");
    let digest = status.digest.clone().expect("digest");
    assert!(status.signature.and_then(|sig| sig.reference).is_some(), "signed");
    assert_eq!(s.deployment_image(&s.staging, "web").await, Some(format!("{host}/shop/app@{digest}")));

    // Approved: the signature is read back from the registry and verified, then production moves.
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, promotion.metadata.name.as_deref().expect("name"), "alice").await.expect("approve");
    // Blue-green: the new production Deployment runs the digest (the switch follows).
    common::wait("production to run the rebased digest", 2 * MINUTE, || {
        let s = &s;
        let expected = format!("{host}/shop/app@{digest}");
        async move { (s.deployment_image(&s.ns, "web-green").await? == expected).then_some(()) }
    })
    .await;
    assert_eq!(acr.refused_exchanges(), 0);
    assert!(acr.refresh_grants() >= 3, "pull, push and referrer scopes came from the refresh token");
    drop(controller);
}
