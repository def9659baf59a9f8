//! The controller in front of a registry that fails for a while: a base-image update whose
//! rebuild meets `503`s from the registry neither fails the Release nor hammers the registry
//! (the registry client's bounded retries, then the controller's per-object backoff), and once
//! the registry answers again the Release carries on to Verified and its Promotion waits for
//! approval. Every registry request goes through a fault-injecting proxy on loopback that counts
//! them.

mod common;

use std::time::Duration;

use common::{CLEAN_REPORT, MINUTE, Scenario, http_server};
use serde_json::json;
use tidegate_api::{PromotionPhase, ReleasePhase};
use tidegate_providers::rebase::{BASE_DIGEST, BASE_NAME};
use tidegate_testenv::registry::{
    Fault, FaultProxy, Registry, RegistryAuth, RegistryKind, RegistryOptions, Scope, pseudo_random_bytes,
};

/// How long the registry keeps failing. Not an assertion: the requests counted over it are.
const FAULT_WINDOW: Duration = Duration::from_secs(20);
/// The most requests for the failing repository the controller may send over [`FAULT_WINDOW`].
/// Each failed reconcile is at most three requests (the client's attempts), and the Release's
/// backoff doubles from half a second: about six failed reconciles fit in the window. A
/// controller that retried at once would send well over a hundred.
const MAX_REQUESTS_IN_WINDOW: usize = 45;

#[tokio::test]
async fn a_registry_failing_for_a_while_delays_the_release_without_failing_it_or_hammering_the_registry() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let proxy = FaultProxy::start(registry.host()).expect("fault proxy");
    // Every image reference names the proxy; the test itself pushes to the registry directly.
    let host = proxy.host();
    let base_ref = format!("{host}/base/runtime:3.20");
    let upstream = registry.client();
    let base_v1 = [pseudo_random_bytes("faults-os-1", 4096), pseudo_random_bytes("faults-libs-1", 2048)];
    let old_base = upstream.push_layered("base/runtime", "3.20", &base_v1, &[]).await.expect("push base v1");
    let app_digest = upstream
        .push_layered(
            "shop/app",
            "1.0",
            &[base_v1[0].clone(), base_v1[1].clone(), pseudo_random_bytes("faults-app", 1024)],
            &[(BASE_NAME, base_ref.as_str()), (BASE_DIGEST, old_base.as_str())],
        )
        .await
        .expect("push app");

    let s = Scenario::new("registry-faults").await;
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
    let identity = tidegate_testenv::pki::write_code_signing_identity(&s.path("notary"), "registry faults", "tidegate")
        .expect("identity");
    let args = [
        "--plain-http-registry".to_string(),
        host.clone(),
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

    let policies = kube::Api::<tidegate_api::ImagePolicy>::namespaced(s.admin.clone(), &s.ns);
    common::wait("the baseline base digest", MINUTE, || {
        let policies = policies.clone();
        let old_base = old_base.clone();
        async move { (policies.get("shop-app").await.ok()?.status?.base_digest? == old_base).then_some(()) }
    })
    .await;

    // The base image's repository fails for a while: the policy says so, naming the registry,
    // and says nothing of it once a check succeeds again.
    proxy.fail(Fault::Status(503), Scope::PathPrefix("/v2/base/runtime/".into()));
    let again = json!({"events": [{"action": "push", "target": {"repository": "base/runtime", "tag": "3.20", "digest": old_base}, "request": {"host": host}}]});
    let answer = common::http(&format!("{}/webhooks/registry", controller.metrics), Some(&again.to_string())).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let ready = common::wait("the policy to report the failing base image", MINUTE, || {
        let policies = policies.clone();
        async move {
            let status = policies.get("shop-app").await.ok()?.status?;
            status.conditions.into_iter().find(|c| c.type_ == "Ready" && c.reason == "BaseImageUnavailable")
        }
    })
    .await;
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains(&host) && ready.message.contains("503"), "{}", ready.message);
    proxy.clear();

    // The application's repository starts failing with 503; the base image is still served, so
    // the update is noticed and a Release is started, whose rebuild then meets the failures.
    let failing = "/v2/shop/app/";
    proxy.fail(Fault::Status(503), Scope::PathPrefix(failing.into()));
    let base_v2 = [pseudo_random_bytes("faults-os-2", 4096), pseudo_random_bytes("faults-libs-2", 3072)];
    let new_base = upstream.push_layered("base/runtime", "3.20", &base_v2, &[]).await.expect("push base v2");
    let notification = json!({"events": [{"action": "push", "target": {"repository": "base/runtime", "tag": "3.20", "digest": new_base}, "request": {"host": host}}]});
    let answer =
        common::http(&format!("{}/webhooks/registry", controller.metrics), Some(&notification.to_string())).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    common::wait("the policy to report the base image checked again", MINUTE, || {
        let policies = policies.clone();
        async move {
            let status = policies.get("shop-app").await.ok()?.status?;
            status.conditions.iter().any(|c| c.type_ == "Ready" && c.reason != "BaseImageUnavailable").then_some(())
        }
    })
    .await;
    let release = common::wait("the rebuild to meet the failing registry", MINUTE, || async {
        let failed = proxy.count(&Fault::Status(503)) > 0;
        let releases = s.releases().list(&Default::default()).await.ok()?.items;
        failed.then(|| releases.into_iter().next()).flatten()
    })
    .await;
    let release_name = release.metadata.name.clone().expect("name");
    let window_start = std::time::Instant::now();
    tokio::time::sleep(FAULT_WINDOW).await;
    let in_window: Vec<_> =
        proxy.requests_since(window_start).into_iter().filter(|r| r.path.starts_with(failing)).collect();

    // Not hammered: bounded requests over the window, all of them answered 503.
    assert!(!in_window.is_empty(), "the controller kept trying during the window");
    assert!(
        in_window.len() <= MAX_REQUESTS_IN_WINDOW,
        "{} requests for {failing} in {FAULT_WINDOW:?}: {:?}",
        in_window.len(),
        in_window.iter().map(|r| format!("{} {}", r.method, r.path)).collect::<Vec<_>>()
    );
    assert!(in_window.iter().all(|r| r.fault == Some(Fault::Status(503))));
    // The failures were transient: the Release is still building, not Failed, and the
    // controller says which registry failed and how.
    let during = s.releases().get(&release_name).await.expect("release").status.expect("status");
    assert_eq!(during.phase, ReleasePhase::Building, "{during:?}");
    assert!(controller.metric("tidegate_reconcile_failures_total", "category=\"ProviderTransient\"").await > 0);
    assert_eq!(controller.metric("tidegate_reconcile_failures_total", "category=\"ProviderPermanent\"").await, 0);
    let said = format!("registry {host} answered 503 Service Unavailable");
    assert!(
        controller.logged(&said),
        "the controller's log names the registry and its answer:\n{}",
        controller.log_tail()
    );

    // The registry recovers: the same Release carries on to Verified and waits for approval.
    proxy.clear();
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let verified = s.release_in(ReleasePhase::Verified, 2 * MINUTE).await;
    assert_eq!(verified.metadata.name.as_deref(), Some(release_name.as_str()));
    assert_eq!(verified.status.as_ref().and_then(|st| st.digest.clone()), Some(digest.clone()));
    let reason = verified.spec.reason.base_image.expect("a base image update");
    assert_eq!((reason.old_digest, reason.new_digest), (Some(old_base), new_base));
    s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    assert_eq!(
        s.deployment_image(&s.ns, "web").await,
        Some(format!("{host}/shop/app@{app_digest}")),
        "production untouched"
    );
    drop(controller);
}
