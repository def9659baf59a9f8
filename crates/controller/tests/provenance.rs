//! Proof that travels with the image: the product binary, signing with a Notary Project key,
//! attaches a signed promotion record to the digest when a Promotion succeeds, when it is rolled
//! back and when it is rejected. The real `notation verify` accepts each record, and its content
//! is what happened (the Release and its tests, each approver, production before and after). A
//! status forged to `Succeeded` earns no record.

mod common;

use std::time::Duration;

use common::{CLEAN_REPORT, MINUTE, Scenario, http_server};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tidegate_api::{Promotion, PromotionPhase, RecordEntry, RecordEvent, Release, ReleasePhase};
use tidegate_core::Digest;
use tidegate_core::provenance::{MEDIA_TYPE, Statement};
use tidegate_providers::registry::{ClientOptions, RegistryClient, Repository};
use tidegate_testenv::pki::{CodeSigningFiles, write_code_signing_identity};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::tools::SupplyChainTools;

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

/// Waits until the Promotion `name` carries the record of `event`.
async fn record_of(s: &Scenario, name: &str, event: RecordEvent, timeout: Duration) -> RecordEntry {
    common::wait(&format!("the {event:?} record of {name}"), timeout, || async {
        let promotion = s.promotions().get(name).await.ok()?;
        promotion.status?.records.into_iter().find(|r| r.event == event)
    })
    .await
}

/// The statement of record `record` of `digest`, checked to be a trusted-signed record of it.
async fn verified_statement(
    client: &RegistryClient,
    repo: &Repository,
    identity: &CodeSigningFiles,
    digest: &str,
    record: &RecordEntry,
) -> Statement {
    let record_digest = record.record.clone().unwrap_or_else(|| panic!("no record attached: {record:?}"));
    let referrers = client.referrers(repo, digest, Some(MEDIA_TYPE)).await.expect("referrers");
    assert!(referrers.iter().any(|r| r.digest == record_digest), "the record refers to {digest}: {referrers:?}");
    let tools = SupplyChainTools::locate().expect("supply-chain tools");
    let (ok, out) = tools.notation_verify(identity, &format!("{repo}@{record_digest}"));
    assert!(ok && out.contains("Successfully verified"), "notation verify of the record: {out}");
    let (payload, _) = client.artifact_payload(repo, &record_digest, MEDIA_TYPE).await.expect("record payload");
    Statement::parse(&payload, &digest.parse::<Digest>().expect("digest")).expect("a record of the digest")
}

#[tokio::test]
async fn every_outcome_leaves_a_signed_record_on_the_digest() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let plain_http: Vec<String> = registry.plain_http_hosts().into_iter().collect();
    let client =
        RegistryClient::new(ClientOptions { plain_http: plain_http.iter().cloned().collect(), ..Default::default() })
            .expect("client");
    let repo = Repository::new(&host, "shop/app");
    let push = |tag: &'static str, size: usize| {
        let registry = &registry;
        async move { registry.push_test_image("shop/app", tag, &[size], &[]).await.expect("push image") }
    };
    let before = push("1.0", 1024).await;
    let promoted = push("1.1", 1500).await;
    let refused = push("1.2", 1700).await;
    let forged = push("1.3", 1900).await;

    let s = Scenario::new("provenance").await;
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
    let identity = write_code_signing_identity(keys.path(), "tidegate", "tidegate").expect("identity");
    let args = common::notary_args(&identity, &plain_http);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let controller = s.product(&args);

    // Promoted: approved by alice, production switched, the monitor window closed healthy.
    let promotion = candidate(&s, "shop-app-promoted", &format!("{host}/shop/app@{promoted}")).await;
    let name = promotion.metadata.name.clone().expect("name");
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("approve");
    s.promotion_in(PromotionPhase::Succeeded, 3 * MINUTE).await;
    let entry = record_of(&s, &name, RecordEvent::Promoted, MINUTE).await;
    let statement = verified_statement(&client, &repo, &identity, &promoted, &entry).await;
    let record = &statement.predicate;
    assert_eq!(record.event, RecordEvent::Promoted);
    assert_eq!(statement.subject[0].name, format!("{host}/shop/app"));
    assert_eq!((record.policy.namespace.as_str(), record.policy.name.as_str()), (s.ns.as_str(), "shop-app"));
    assert_eq!(record.promotion.name, name);
    assert_eq!(record.approvals.iter().map(|a| a.user.as_str()).collect::<Vec<_>>(), ["alice"]);
    let release = record.release.as_ref().expect("release");
    assert_eq!((release.name.as_str(), release.trigger.as_str()), ("shop-app-promoted", "Manual"));
    assert_eq!(release.source.as_deref(), Some(format!("{host}/shop/app@{promoted}").as_str()));
    assert!(record.scan.as_ref().is_some_and(|scan| scan.blocking == 0), "{record:?}");
    assert_eq!(record.tests.iter().map(|t| (t.name.as_str(), t.passed)).collect::<Vec<_>>(), [("health", true)]);
    let production = record.production.as_ref().expect("production");
    assert_eq!(production.previous_digest.as_deref(), Some(before.as_str()));
    assert_eq!(production.workloads, [format!("Deployment {}/web", s.ns)]);
    assert!(production.running_since.is_some() && production.change_started_at.is_some(), "{production:?}");
    // Blue-green: the candidate runs in the green slot, which the Service now selects.
    assert_eq!(s.deployment_image(&s.ns, "web-green").await, Some(format!("{host}/shop/app@{promoted}")));

    // Rolled back on alice's request: a second record on the same digest says so.
    s.request_rollback(&alice, &name, "alice").await.expect("request rollback");
    let entry = record_of(&s, &name, RecordEvent::RolledBack, 2 * MINUTE).await;
    let statement = verified_statement(&client, &repo, &identity, &promoted, &entry).await;
    let rollback = statement.predicate.rollback.as_ref().expect("rollback");
    assert_eq!(rollback.requested_by.as_ref().map(|a| a.user.as_str()), Some("alice"));
    assert_eq!(rollback.restored_digest.as_deref(), Some(before.as_str()));
    assert_eq!(
        client.referrers(&repo, &promoted, Some(MEDIA_TYPE)).await.expect("referrers").len(),
        2,
        "one record per event"
    );

    // Rejected by bob before production: the refused digest carries that, with his reason.
    let promotion = candidate(&s, "shop-app-refused", &format!("{host}/shop/app@{refused}")).await;
    let refused_name = promotion.metadata.name.clone().expect("name");
    let bob = s.user("bob", &["tidegate-approvers"]).await;
    let patch = json!({"metadata": {"annotations": {
        "tidegate.dev/rejected-by": "bob", "tidegate.dev/rejection-reason": "changelog mentions a schema change"}}});
    kube::Api::<Promotion>::namespaced(bob, &s.ns)
        .patch(&refused_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("reject");
    let entry = record_of(&s, &refused_name, RecordEvent::Rejected, MINUTE).await;
    let statement = verified_statement(&client, &repo, &identity, &refused, &entry).await;
    let rejection = statement.predicate.rejection.as_ref().expect("rejection");
    assert_eq!(rejection.by.as_ref().map(|a| a.user.as_str()), Some("bob"));
    assert_eq!(rejection.reason, "changelog mentions a schema change");
    assert!(statement.predicate.production.is_none());

    // The record is written once: later reconciles add nothing.
    let records = s.promotions().get(&refused_name).await.expect("get").status.expect("status").records;
    assert_eq!(records.len(), 1, "{records:?}");
    let release = s.releases().get("shop-app-refused").await.expect("release");
    assert_eq!(release.status.map(|st| st.phase), Some(ReleasePhase::Verified));

    // A status forged to Succeeded earns no signed record: nobody approved this digest and
    // production does not run it. The controller writes down why, once.
    let promotion = candidate(&s, "shop-app-forged", &format!("{host}/shop/app@{forged}")).await;
    let forged_name = promotion.metadata.name.clone().expect("name");
    let status = json!({"status": {"phase": "Succeeded", "approvedBy": ["alice"], "conditions": [{"type": "Ready",
        "status": "True", "reason": "Succeeded", "message": "forged", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}});
    let entry = common::wait("the controller to judge the forged Succeeded", 2 * MINUTE, || async {
        let promotions = s.promotions();
        let current = promotions.get(&forged_name).await.ok()?;
        if current.status.as_ref().is_some_and(|st| st.phase == PromotionPhase::AwaitingApproval) {
            let _ = promotions.patch_status(&forged_name, &PatchParams::default(), &Patch::Merge(&status)).await;
        }
        current.status?.records.into_iter().find(|r| r.event == RecordEvent::Promoted)
    })
    .await;
    assert!(entry.record.is_none(), "a forged status got a signed record: {entry:?}");
    let why = entry.message.unwrap_or_default();
    assert!(why.contains("is not Verified") || why.contains("production does not run"), "{why}");
    assert!(client.referrers(&repo, &forged, Some(MEDIA_TYPE)).await.expect("referrers").is_empty());
    drop(controller);
}
