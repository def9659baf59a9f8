//! The supply chain end to end: a base image update pushed to a real registry on loopback is
//! noticed (one `HEAD` per interval however many policies share the base), rebased natively,
//! scanned, signed, staged and tested with no human step, and waits for approval.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{CLEAN_REPORT, Scenario, http_server};
use kube::api::Api;
use serde_json::json;
use tidegate_api::{PromotionPhase, ReleasePhase};
use tidegate_providers::rebase::{BASE_DIGEST, BASE_NAME};
use tidegate_providers::registry::types::ImageManifest;
use tidegate_providers::registry::{ClientOptions, RegistryClient, Repository, sha256};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions, pseudo_random_bytes};

const MINUTE: Duration = Duration::from_secs(60);

/// Pushes an image with exactly these layers (see testenv's `push_layered`); returns its digest.
async fn push(
    registry: &Registry,
    repo: &Repository,
    tag: &str,
    layers: &[Vec<u8>],
    annotations: BTreeMap<String, String>,
) -> String {
    let annotations: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    registry.client().push_layered(&repo.name, tag, layers, &annotations).await.expect("push image")
}

/// `HEAD` requests for `path` in the registry's access log (one line per request).
fn head_requests(registry: &Registry, path: &str) -> usize {
    let needle = format!("\"HEAD {path} HTTP/");
    std::fs::read_to_string(registry.log()).unwrap_or_default().lines().filter(|l| l.contains(&needle)).count()
}

#[tokio::test]
async fn base_image_update_becomes_a_verified_rebased_release_without_a_human() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let plain_http = registry.plain_http_hosts().into_iter().collect();
    let client = RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client");
    let base = Repository::new(&host, "base/runtime");
    let app = Repository::new(&host, "shop/app");
    let base_ref = format!("{host}/base/runtime:3.20");

    // Base v1, and the app built on it (its first layers are the base's, and it says so).
    let base_v1 = [pseudo_random_bytes("os-1", 4096), pseudo_random_bytes("libs-1", 2048)];
    let old_base = push(&registry, &base, "3.20", &base_v1, BTreeMap::new()).await;
    let annotations =
        BTreeMap::from([(BASE_NAME.to_string(), base_ref.clone()), (BASE_DIGEST.to_string(), old_base.clone())]);
    let app_digest = push(
        &registry,
        &app,
        "1.0",
        &[base_v1[0].clone(), base_v1[1].clone(), pseudo_random_bytes("app", 1024)],
        annotations,
    )
    .await;

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
    // Candidates are signed with a Notary Project key and verified against its trust policy, by
    // the product binary exactly as shipped.
    let identity = tidegate_testenv::pki::write_code_signing_identity(&s.path("notary"), "supply chain", "tidegate")
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

    // The policy records the base digest it starts from; nothing is built for it.
    let policies = kube::Api::<tidegate_api::ImagePolicy>::namespaced(s.admin.clone(), &s.ns);
    common::wait("the baseline base digest", MINUTE, || {
        let policies = policies.clone();
        let old_base = old_base.clone();
        async move { (policies.get("shop-app").await.ok()?.status?.base_digest? == old_base).then_some(()) }
    })
    .await;
    assert!(
        s.releases().list(&Default::default()).await.expect("list").items.is_empty(),
        "no release for the baseline"
    );
    let heads_at_start = head_requests(&registry, "/v2/base/runtime/manifests/3.20");
    assert_eq!(heads_at_start, 1, "eleven policies, one HEAD for their shared base");

    // Base v2 is pushed and the registry notifies the controller.
    let base_v2 = [pseudo_random_bytes("os-2", 4096), pseudo_random_bytes("libs-2", 3072)];
    let new_base = push(&registry, &base, "3.20", &base_v2, BTreeMap::new()).await;
    let notification = json!({"events": [{"action": "push", "target": {"repository": "base/runtime", "tag": "3.20", "digest": new_base}, "request": {"host": host}}]});
    let answer =
        common::http(&format!("{}/webhooks/registry", controller.metrics), Some(&notification.to_string())).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");

    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let release = s.release_in(ReleasePhase::Verified, 2 * MINUTE).await;
    let reason = &release.spec.reason;
    assert_eq!(
        reason.base_image.as_ref().map(|b| (b.old_digest.clone(), b.new_digest.clone())),
        Some((Some(old_base.clone()), new_base.clone()))
    );
    // The candidate is a real rebased image in the registry.
    let manifest: ImageManifest =
        serde_json::from_slice(&client.get_manifest(&app, &digest).await.expect("rebased image").bytes)
            .expect("manifest");
    assert_eq!(manifest.layers[0].digest, sha256(&base_v2[0]));
    assert_eq!(manifest.layers[2].digest, sha256(&pseudo_random_bytes("app", 1024)));
    assert_eq!(manifest.annotations.unwrap_or_default().get(BASE_DIGEST), Some(&new_base));
    let signature = release
        .status
        .as_ref()
        .and_then(|st| st.signature.as_ref())
        .and_then(|sig| sig.reference.clone())
        .expect("signed");
    let referrers =
        client.referrers(&app, &digest, Some("application/vnd.cncf.notary.signature")).await.expect("referrers");
    assert_eq!(
        referrers.iter().map(|d| d.digest.clone()).collect::<Vec<_>>(),
        [signature],
        "the signature is a referrer of the candidate"
    );
    assert_eq!(
        s.deployment_image(&s.staging, "web").await,
        Some(format!("{host}/shop/app@{digest}")),
        "staging runs the rebased digest"
    );
    s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    assert_eq!(
        s.deployment_image(&s.ns, "web").await,
        Some(format!("{host}/shop/app@{app_digest}")),
        "production untouched"
    );

    // Within one interval the shared base was looked at once more (the notification), not per policy.
    let heads = head_requests(&registry, "/v2/base/runtime/manifests/3.20") - heads_at_start;
    assert!(heads <= 2, "{heads} HEADs for 11 policies after the push");

    // The signature is verified again right before production changes: with a trust store that
    // no longer trusts the signer, the approved Promotion fails closed and production stays.
    drop(controller);
    let rotated = tidegate_testenv::pki::write_code_signing_identity(&s.path("rotated"), "another team", "tidegate")
        .expect("identity");
    let args = [
        "--plain-http-registry".to_string(),
        host.clone(),
        "--trust-policy-file".into(),
        rotated.trust_policy.display().to_string(),
        "--trust-store-dir".into(),
        rotated.trust_store.display().to_string(),
    ];
    let controller = s.product(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, promotion.metadata.name.as_deref().expect("name"), "alice").await.expect("approve");
    let failed = s.promotion_in(PromotionPhase::Failed, MINUTE).await;
    let condition = failed
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "SignatureVerified")
        .expect("SignatureVerified");
    assert_eq!(condition.status, "False");
    assert!(condition.message.contains("no signature of"), "{}", condition.message);
    assert_eq!(
        s.deployment_image(&s.ns, "web").await,
        Some(format!("{host}/shop/app@{app_digest}")),
        "production untouched"
    );
    drop(controller);
}

/// A registry with base v1 and an app built on it, a scenario whose web workloads run the app,
/// and the digests: (registry, scenario, client, app digest, base ref).
async fn registry_scenario(name: &str, auth: RegistryAuth) -> (Registry, Scenario, RegistryClient, String, String) {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth }).await.expect("registry");
    let host = registry.host().to_string();
    let plain_http = registry.plain_http_hosts().into_iter().collect();
    let client = RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client");
    let base_ref = format!("{host}/base/runtime:3.20");
    let base_v1 = [pseudo_random_bytes("os-1", 1024), pseudo_random_bytes("libs-1", 512)];
    let old_base = push(&registry, &Repository::new(&host, "base/runtime"), "3.20", &base_v1, BTreeMap::new()).await;
    let annotations = BTreeMap::from([(BASE_NAME.to_string(), base_ref.clone()), (BASE_DIGEST.to_string(), old_base)]);
    let app = push(
        &registry,
        &Repository::new(&host, "shop/app"),
        "1.0.0",
        &[base_v1[0].clone(), base_v1[1].clone(), pseudo_random_bytes("app", 256)],
        annotations,
    )
    .await;
    let s = Scenario::new(name).await;
    s.set_workload_images(&format!("{host}/shop/app@{app}")).await;
    (registry, s, client, app, base_ref)
}

/// Controller arguments with the registry's credentials in a `.dockerconfigjson`, as mounted from a
/// `kubernetes.io/dockerconfigjson` Secret.
fn registry_args(s: &Scenario, registry: &Registry, user: &str, password: &str) -> Vec<String> {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = s.path("dockerconfig.json");
    std::fs::write(&path, json!({"auths": {registry.host(): {"auth": auth}}}).to_string()).expect("dockerconfigjson");
    let mut args =
        vec!["--builder".into(), "registry".into(), "--registry-credentials".into(), path.display().to_string()];
    args.extend(registry.plain_http_hosts().into_iter().flat_map(|h| ["--plain-http-registry".to_string(), h]));
    args
}

fn web_only(s: &Scenario) -> serde_json::Value {
    json!([{"name": "web", "kind": "http",
        "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
        "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}])
}

/// A new application build pushed with a matching tag becomes a Release pinned to the digest the
/// tag had then; moving the tag later changes nothing.
#[tokio::test]
async fn new_build_tag_becomes_a_release_pinned_to_its_digest() {
    let (registry, s, _, _, _) = registry_scenario("new-build", RegistryAuth::basic("ci", "s3cret")).await;
    let host = registry.host().to_string();
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "triggers": {"newBuild": {"tagPattern": "[0-9]+\\.[0-9]+\\.[0-9]+"}, "baseImage": null, "rescan": null},
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "workloads": web_only(&s)
    }))
    .await;
    let args = registry_args(&s, &registry, "ci", "s3cret");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let app = Repository::new(&host, "shop/app");
    push(&registry, &app, "not-a-release", &[pseudo_random_bytes("noise", 64)], BTreeMap::new()).await;
    let built = push(&registry, &app, "1.1.0", &[pseudo_random_bytes("build-110", 256)], BTreeMap::new()).await;
    let reported = s.upload_scan_report(CLEAN_REPORT).await;
    assert_eq!(reported, built, "the release's digest is the tag's digest");
    let release = s.release_in(ReleasePhase::Verified, MINUTE).await;
    assert_eq!(release.spec.source.as_ref().map(|src| src.image.clone()), Some(format!("{host}/shop/app@{built}")));
    assert_eq!(release.spec.reason.kind, tidegate_api::release::ReasonKind::NewBuild);
    // Moving the tag does not rebuild or re-pin.
    push(&registry, &app, "1.1.0", &[pseudo_random_bytes("moved", 256)], BTreeMap::new()).await;
    // The policy looks at the tags again (a reconcile lists them) and starts nothing new.
    let looked = controller.reconciles("ImagePolicy").await;
    s.wake(&Api::<tidegate_api::ImagePolicy>::namespaced(s.admin.clone(), &s.ns), "shop-app").await;
    controller.reconciled_since("ImagePolicy", looked).await;
    let releases = s.releases().list(&Default::default()).await.expect("list").items;
    assert_eq!(releases.len(), 1, "one release for tag 1.1.0");
    assert_eq!(releases[0].status.as_ref().and_then(|st| st.digest.clone()), Some(built));
    drop(controller);
}

/// `external`: Tidegate calls the CI webhook once and waits for the image built on the new base.
#[tokio::test]
async fn external_build_calls_the_webhook_and_waits_for_the_rebuilt_image() {
    let (registry, s, _, _, base_ref) =
        registry_scenario("external-build", RegistryAuth::token("robot", "t0ken")).await;
    let host = registry.host().to_string();
    let (url, _) = http_server(200).await;
    let (webhook, calls) = http_server(202).await;
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "triggers": {"baseImage": {"ref": base_ref, "interval": "1m"}, "rescan": null},
        "build": {"strategy": "external", "external": {"webhookUrl": format!("{webhook}/dispatch"), "timeout": "10m"}},
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "workloads": web_only(&s)
    }))
    .await;
    let args = registry_args(&s, &registry, "robot", "t0ken");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let policies = kube::Api::<tidegate_api::ImagePolicy>::namespaced(s.admin.clone(), &s.ns);
    common::wait("the baseline", MINUTE, || {
        let policies = policies.clone();
        async move { policies.get("shop-app").await.ok()?.status?.base_digest.map(|_| ()) }
    })
    .await;
    let base_v2 = [pseudo_random_bytes("os-2", 1024), pseudo_random_bytes("libs-2", 512)];
    let new_base = push(&registry, &Repository::new(&host, "base/runtime"), "3.20", &base_v2, BTreeMap::new()).await;
    common::http(&format!("{}/webhooks/registry", controller.metrics), Some(&json!({"events": [{"action": "push", "target": {"repository": "base/runtime", "tag": "3.20"}, "request": {"host": host}}]}).to_string())).await;
    let building = s.release_in(ReleasePhase::Building, MINUTE).await;
    common::wait("the CI webhook to be called", MINUTE, || {
        let calls = calls.clone();
        async move { (calls.load(std::sync::atomic::Ordering::SeqCst) > 0).then_some(()) }
    })
    .await;
    assert!(building.status.is_some());
    // CI pushes its rebuild, which names the new base.
    let annotations =
        BTreeMap::from([(BASE_NAME.to_string(), base_ref.clone()), (BASE_DIGEST.to_string(), new_base.clone())]);
    let rebuilt = push(
        &registry,
        &Repository::new(&host, "shop/app"),
        "ci-42",
        &[base_v2[0].clone(), base_v2[1].clone(), pseudo_random_bytes("app-ci", 256)],
        annotations,
    )
    .await;
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    assert_eq!(digest, rebuilt);
    s.release_in(ReleasePhase::Verified, MINUTE).await;
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "the webhook is called once");
    drop(controller);
}

/// `job`: a Job from the policy's template builds and reports the pushed digest as its
/// termination message.
#[tokio::test]
async fn job_build_reports_the_pushed_digest() {
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
    let (registry, s, _, _, base_ref) = registry_scenario("job-build", RegistryAuth::Anonymous).await;
    let host = registry.host().to_string();
    let (url, _) = http_server(200).await;
    // The builder Pod runs on a node nothing manages, so this test plays the builder.
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: build\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      nodeName: external-builder\n      containers:\n      - name: build\n        image: registry.example.com/tools/builder@sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26\n";
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "builder"}, "data": {"job.yaml": job}})).expect("cm");
    Api::<ConfigMap>::namespaced(s.admin.clone(), &s.ns).create(&PostParams::default(), &cm).await.expect("template");
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "triggers": {"baseImage": {"ref": base_ref, "interval": "1m"}, "rescan": null},
        "build": {"strategy": "job", "job": {"templateConfigMap": "builder", "timeout": "10m"}},
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "workloads": web_only(&s)
    }))
    .await;
    let controller = s.controller_with(&["--builder", "registry", "--plain-http-registry", &host]);
    s.trigger("rebuild-now").await;
    let pods: Api<Pod> = Api::namespaced(s.admin.clone(), &s.ns);
    let pod = common::wait("the build Pod", MINUTE, || {
        let pods = pods.clone();
        async move { pods.list(&ListParams::default().labels("job-name")).await.ok()?.items.into_iter().next() }
    })
    .await;
    let env = pod.spec.as_ref().map(|p| p.containers[0].env.clone().unwrap_or_default()).unwrap_or_default();
    let base_image = env
        .iter()
        .find(|e| e.name == "TIDEGATE_BASE_IMAGE")
        .and_then(|e| e.value.clone())
        .expect("TIDEGATE_BASE_IMAGE");
    assert!(base_image.starts_with(&format!("{host}/base/runtime@sha256:")), "{base_image}");
    // The "builder" pushes its image and reports the digest.
    let pushed = push(
        &registry,
        &Repository::new(&host, "shop/app"),
        "job-built",
        &[pseudo_random_bytes("job-built", 300)],
        BTreeMap::new(),
    )
    .await;
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": "Succeeded", "containerStatuses": [{
        "name": "build", "image": "registry.example.com/tools/builder", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": format!("{pushed}\n"), "startedAt": now, "finishedAt": now}}
    }]}});
    pods.patch_status(pod.metadata.name.as_deref().expect("name"), &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("builder finishes");
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    assert_eq!(digest, pushed, "the Job's reported digest is the candidate");
    s.release_in(ReleasePhase::Verified, MINUTE).await;
    drop(controller);
}
