//! A signing certificate revoked after signing: the product binary signs and stages the
//! candidate while its CA's CRL (served on loopback) lists nothing; the CA then revokes the
//! certificate; the approved Promotion fails closed at the signature check right before
//! production, naming the revoked certificate, and production keeps its image.

mod common;

use std::time::Duration;

use common::{CLEAN_REPORT, MINUTE, Scenario, http_server};
use kube::api::PostParams;
use serde_json::json;
use tidegate_api::{Promotion, PromotionPhase, Release, ReleasePhase};
use tidegate_testenv::crl_authority::RevocableIdentity;
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};

/// Starts a Release of the externally built `image` and waits until its Promotion waits for
/// approval.
async fn candidate(s: &Scenario, name: &str, image: &str) -> Promotion {
    let release: Release = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"policy": "shop-app", "reason": {"type": "Manual"}, "source": {"image": image}}
    }))
    .expect("release");
    s.releases().create(&PostParams::default(), &release).await.expect("create release");
    s.upload_scan_report(CLEAN_REPORT).await;
    common::wait("the Promotion of the release", 2 * MINUTE, || async {
        let list = s.promotions().list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|p| {
            p.spec.release == name && p.status.as_ref().is_some_and(|st| st.phase == PromotionPhase::AwaitingApproval)
        })
    })
    .await
}

#[tokio::test]
async fn a_certificate_revoked_after_signing_stops_the_promotion_before_production() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let plain_http: Vec<String> = registry.plain_http_hosts().into_iter().collect();
    let before = registry.push_test_image("shop/app", "1.0", &[1024], &[]).await.expect("push");
    let candidate_digest = registry.push_test_image("shop/app", "1.1", &[1500], &[]).await.expect("push");

    let s = Scenario::new("revocation").await;
    s.set_workload_images(&format!("{host}/shop/app@{before}")).await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "triggers": {"rescan": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"requiredApprovals": 1, "monitorWindow": "1m"}
    }))
    .await;
    let keys = tempfile::tempdir().expect("keys");
    let identity = RevocableIdentity::write(keys.path(), "revocable", "tidegate").expect("identity");
    let files = &identity.files;
    let mut args = common::notary_args(files, &plain_http);
    // Every verification fetches the CRL (no reuse), so the revocation is seen at the next one.
    args.extend(["--notary-crl-max-age-seconds".to_string(), "0".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let controller = s.product(&args);

    // Signed, verified (with the CRL) and staged while the certificate is good.
    let image = format!("{host}/shop/app@{candidate_digest}");
    let promotion = candidate(&s, "shop-app-revoked", &image).await;
    let name = promotion.metadata.name.clone().expect("name");
    // The Promotion is opened in the pass that verifies the Release, before its status write.
    let release = s.release_in(ReleasePhase::Verified, Duration::from_secs(30)).await;
    assert_eq!(release.metadata.name.as_deref(), Some("shop-app-revoked"));
    assert!(identity.requests() >= 1, "the signature was verified against the CRL before staging");
    assert_eq!(s.deployment_image(&s.staging, "web").await, Some(image.clone()), "staging runs the candidate");

    // The CA revokes the signing certificate; then alice approves.
    identity.revoke().expect("revoke");
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("approve");
    let failed = s.promotion_in(PromotionPhase::Failed, 2 * MINUTE).await;
    let condition = failed
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "SignatureVerified")
        .expect("SignatureVerified");
    assert_eq!(condition.status, "False");
    for part in ["revocable signer", "is revoked since", "keyCompromise", identity.crl_url()] {
        assert!(condition.message.contains(part), "{part:?} missing from: {}", condition.message);
    }
    assert_eq!(
        s.deployment_image(&s.ns, "web").await,
        Some(format!("{host}/shop/app@{before}")),
        "production untouched"
    );
    assert_ne!(s.deployment_image(&s.ns, "web-green").await, Some(image), "the candidate never ran in production");
    drop(controller);
}
