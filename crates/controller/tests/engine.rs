//! The promotion engine end to end on the real local control plane: the controller binary, the
//! shipped RBAC and approval policy, users with real client certificates.

mod common;

use std::time::Duration;

use common::{BEFORE, CLEAN_REPORT, MINUTE, Scenario, http_server, pinned};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tidegate_api::{PromotionPhase, ReleasePhase};

/// Trigger → Release Verified → Promotion waits (production untouched) → two approvals →
/// production runs the exact digest with the right strategy per kind → Succeeded.
#[tokio::test]
async fn approved_promotion_reaches_production_with_the_right_strategy_per_kind() {
    let s = Scenario::new("engine-happy").await;
    let (url, hits) = http_server(200).await;
    s.test_job_template("smoke-test").await;
    s.policy(json!({
        "tests": {
            "http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}],
            "job": {"templateConfigMap": "smoke-test"}
        },
        "promotion": {"requiredApprovals": 2, "monitorWindow": "1m"}
    }))
    .await;
    let controller = s.controller();
    s.trigger("first").await;
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let release = s.release_in(ReleasePhase::Verified, MINUTE).await;
    assert_eq!(release.status.as_ref().and_then(|st| st.image.clone()), Some(pinned(&digest)));
    assert!(hits.load(std::sync::atomic::Ordering::SeqCst) > 0, "the staging HTTP check ran");
    let tests = release.status.as_ref().map(|st| st.tests.clone()).unwrap_or_default();
    assert!(tests.iter().any(|t| t.name == "job" && t.passed), "the test Job ran and passed: {tests:?}");
    let job = Api::<k8s_openapi::api::batch::v1::Job>::namespaced(s.admin.clone(), &s.staging)
        .get(&format!("{}-test", release.metadata.name.clone().unwrap_or_default()))
        .await
        .expect("test Job in the staging namespace");
    let env = job
        .spec
        .and_then(|j| j.template.spec)
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(
        env.iter().any(|e| e.name == "TIDEGATE_IMAGE" && e.value.as_deref() == Some(pinned(&digest).as_str())),
        "{env:?}"
    );
    assert_eq!(s.deployment_image(&s.staging, "web").await, Some(pinned(&digest)), "staging runs the candidate");
    assert_eq!(s.cronjob_image(&s.staging, "nightly-report").await, Some(pinned(&digest)));

    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    let name = promotion.metadata.name.clone().expect("name");
    assert_eq!(promotion.spec.digest, digest);
    assert_eq!(promotion.spec.requested_by.as_deref(), Some(common::CONTROLLER_USER));
    // The controller wrote AwaitingApproval, so it has looked; production is what it was.
    let untouched = (Some(pinned(BEFORE)), Some(pinned(BEFORE)), Some(pinned(BEFORE)));
    assert_eq!(s.production().await, untouched, "production stays untouched while the promotion waits");

    let alice = s.user("alice", &["tidegate-approvers"]).await;
    let bob = s.user("bob", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("alice approves");
    // The controller has seen alice's approval (the condition counts it) and still waits.
    s.approval_says(&name, "1 of 2 approvals").await;
    let waiting = s.promotions().get(&name).await.expect("promotion");
    assert_eq!(
        waiting.status.map(|st| st.phase),
        Some(PromotionPhase::AwaitingApproval),
        "one of two approvals is not enough"
    );
    assert_eq!(s.production().await, untouched);
    s.approve(&bob, &name, "bob").await.expect("bob approves");

    let done = s.promotion_in(PromotionPhase::Succeeded, 3 * MINUTE).await;
    let status = done.status.expect("status");
    assert_eq!(status.approved_by, ["alice", "bob"]);
    assert_eq!(status.previous_digest.as_deref(), Some(BEFORE));
    let want = Some(pinned(&digest));
    assert_eq!(
        s.production().await,
        (want.clone(), want.clone(), want.clone()),
        "every production workload runs the digest"
    );
    // http: blue-green — the new slot took the traffic, the previous one stays up for rollback.
    assert_eq!(s.service_slot(&s.ns, "web").await.as_deref(), Some("green"));
    assert_eq!(s.deployment_image(&s.ns, "web").await, Some(pinned(BEFORE)), "previous colour kept");
    assert_eq!(s.deployment(&s.ns, "web").await.and_then(|d| d.spec?.replicas), Some(2));
    // worker: replace — the previous one is scaled down.
    assert_eq!(s.deployment(&s.ns, "worker").await.and_then(|d| d.spec?.replicas), Some(0));
    assert_eq!(s.deployment(&s.ns, "worker-green").await.and_then(|d| d.spec?.replicas), Some(1));

    let policy = Api::<tidegate_api::ImagePolicy>::namespaced(s.admin.clone(), &s.ns);
    common::wait("the policy to report the production digest", MINUTE, || {
        let policy = policy.clone();
        let digest = digest.clone();
        async move { (policy.get("shop-app").await.ok()?.status?.production_digest? == digest).then_some(()) }
    })
    .await;
    let history = policy.get("shop-app").await.expect("policy").status.expect("status").production_history;
    assert_eq!(history.first().map(|r| r.digest.as_str()), Some(BEFORE), "the replaced digest heads the history");
    let metrics = common::http(&format!("{}/metrics", controller.metrics), None).await;
    assert!(metrics.contains("tidegate_phase_transitions_total"), "metrics are served");

    // The Promotion settles once its promotion record is accounted for: the test doubles have no
    // Notary key, so the controller writes down once that none could be attached, and why.
    let record = common::wait("the Promoted record entry", MINUTE, || async {
        let status = s.promotions().get(&name).await.ok()?.status?;
        status.records.into_iter().find(|r| r.event == tidegate_api::RecordEvent::Promoted)
    })
    .await;
    assert!(record.record.is_none(), "{record:?}");
    assert!(record.message.as_deref().is_some_and(|m| m.contains("signing is not configured")), "{record:?}");

    // An idle cluster makes no writes: the controller looks at every object again (a no-op
    // annotation wakes each) and writes no status, because nothing changed.
    let before = controller.metric("tidegate_status_writes_total", "").await;
    let looked = [
        controller.reconciles("Promotion").await,
        controller.reconciles("Release").await,
        controller.reconciles("ImagePolicy").await,
    ];
    s.wake(&s.promotions(), &name).await;
    s.wake(&s.releases(), &release.metadata.name.clone().expect("release name")).await;
    s.wake(&policy, "shop-app").await;
    controller.reconciled_since("Promotion", looked[0]).await;
    controller.reconciled_since("Release", looked[1]).await;
    controller.reconciled_since("ImagePolicy", looked[2]).await;
    let after = controller.metric("tidegate_status_writes_total", "").await;
    assert_eq!(before, after, "status writes while idle");

    // A manual rollback by an approver restores the previous digest.
    s.request_rollback(&alice, &name, "alice").await.expect("alice asks for a rollback");
    s.promotion_in(PromotionPhase::RolledBack, MINUTE).await;
    common::wait("production restored by the manual rollback", MINUTE, || async {
        let before = Some(pinned(BEFORE));
        (s.production().await == (before.clone(), before.clone(), before)).then_some(())
    })
    .await;
    drop(controller);
}

/// A staging test that fails ends the Release Rejected, and no Promotion is opened.
#[tokio::test]
async fn failing_staging_test_rejects_the_release() {
    let s = Scenario::new("engine-reject").await;
    let (url, _) = http_server(500).await;
    s.policy(json!({"tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]}}))
        .await;
    let controller = s.controller();
    s.trigger("bad").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    // Another change to the policy makes it reconcile again with the same token: nothing new starts.
    let policies = Api::<tidegate_api::ImagePolicy>::namespaced(s.admin.clone(), &s.ns);
    let touch = json!({"metadata": {"annotations": {"example.com/touched": "yes"}}});
    policies.patch("shop-app", &PatchParams::default(), &Patch::Merge(&touch)).await.expect("touch policy");
    s.trigger("bad").await;
    let rejected = s.release_in(ReleasePhase::Rejected, MINUTE).await;
    let rejected_name = rejected.metadata.name.clone().expect("name");
    let ready =
        rejected.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Ready").expect("Ready condition");
    assert_eq!(ready.reason, "StagingTestsFailed");
    assert!(ready.message.contains("500"), "{}", ready.message);
    // The controller looks at the rejected Release again and still opens no Promotion.
    let looked = controller.reconciles("Release").await;
    s.wake(&s.releases(), &rejected_name).await;
    controller.reconciled_since("Release", looked).await;
    assert!(
        s.promotions().list(&Default::default()).await.expect("list").items.is_empty(),
        "no promotion for a rejected release"
    );
    let names: Vec<String> = s
        .releases()
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    assert_eq!(names.len(), 1, "a trigger token starts one Release, however often the policy reconciles: {names:?}");
    assert_eq!(s.production().await.0, Some(pinned(BEFORE)));
    drop(controller);
}

/// Blocking vulnerabilities in the scan report reject the Release before staging.
#[tokio::test]
async fn blocking_findings_reject_the_release_before_staging() {
    let s = Scenario::new("engine-vulns").await;
    let (url, hits) = http_server(200).await;
    s.policy(json!({"tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]}}))
        .await;
    let controller = s.controller();
    s.trigger("vulnerable").await;
    s.upload_scan_report(
        r#"{"SchemaVersion":2,"Results":[{"Vulnerabilities":[
        {"VulnerabilityID":"CVE-2099-0001","Severity":"CRITICAL","FixedVersion":"1.0.1"},
        {"VulnerabilityID":"CVE-2024-0727","Severity":"HIGH","FixedVersion":"3.0.13"}]}]}"#,
    )
    .await;
    let rejected = s.release_in(ReleasePhase::Rejected, MINUTE).await;
    let scan = rejected.status.expect("status").scan.expect("scan summary");
    assert_eq!(scan.blocking_ids, ["CVE-2099-0001"], "CVE-2024-0727 has a live exception in the policy");
    assert_eq!(s.deployment_image(&s.staging, "web").await, Some(pinned(BEFORE)), "staging untouched");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    drop(controller);
}

/// Restarts during the monitor window make production unhealthy: it is rolled back to exactly
/// the previous digest.
#[tokio::test]
async fn failing_monitor_window_rolls_production_back() {
    let s = Scenario::new("engine-rollback").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"monitorWindow": "5m"}
    }))
    .await;
    let controller = s.controller();
    s.trigger("unstable").await;
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    let name = promotion.metadata.name.expect("name");
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("approve");
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    assert_eq!(s.production().await.0, Some(pinned(&digest)));

    // A container of the new web Pods restarts.
    let pods: Api<Pod> = Api::namespaced(s.admin.clone(), &s.ns);
    let list = pods
        .list(&ListParams::default().labels("tidegate.dev/slot=green,app.kubernetes.io/name=web"))
        .await
        .expect("pods");
    let pod = list.items.first().expect("a green web pod");
    let mut statuses = pod.status.clone().and_then(|st| st.container_statuses).unwrap_or_default();
    assert!(!statuses.is_empty(), "kwok reports container statuses");
    statuses[0].restart_count = 3;
    let patch = json!({"status": {"containerStatuses": statuses}});
    pods.patch_status(pod.metadata.name.as_deref().expect("pod name"), &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("simulate restarts");

    let rolled_back = s.promotion_in(PromotionPhase::RolledBack, MINUTE).await;
    common::wait("production restored", MINUTE, || async {
        let before = Some(pinned(BEFORE));
        (s.production().await == (before.clone(), before.clone(), before)).then_some(())
    })
    .await;
    assert_eq!(s.service_slot(&s.ns, "web").await.as_deref(), Some("blue"), "traffic back on the previous colour");
    let why = rolled_back
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "RolledBack")
        .expect("RolledBack condition");
    assert!(why.message.contains("restarted") && why.message.contains("automatically"), "{}", why.message);
    drop(controller);
}

/// The controller killed (SIGKILL) and restarted at every phase change ends in the same state as
/// an undisturbed run, with no duplicate production change.
#[tokio::test]
async fn controller_killed_in_every_phase_converges_without_duplicate_changes() {
    let s = Scenario::new("engine-restart").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"monitorWindow": "1m"}
    }))
    .await;
    let mut controller = s.controller();
    s.trigger("restarts").await;
    let alice = s.user("alice", &["tidegate-approvers"]).await;

    let mut seen = Vec::new();
    let mut approved = false;
    let mut reported = false;
    let deadline = std::time::Instant::now() + 5 * MINUTE;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no end state; phases seen {seen:?}; log:\n{}",
            controller.log_tail()
        );
        let release = s.releases().list(&Default::default()).await.expect("releases").items.into_iter().next();
        let promotion = s.promotions().list(&Default::default()).await.expect("promotions").items.into_iter().next();
        let phase = format!(
            "{:?}/{:?}",
            release.as_ref().and_then(|r| r.status.as_ref()).map(|st| st.phase),
            promotion.as_ref().and_then(|p| p.status.as_ref()).map(|st| st.phase)
        );
        if seen.last() != Some(&phase) {
            seen.push(phase.clone());
            controller.kill_and_restart();
        }
        if !reported
            && release.as_ref().and_then(|r| r.status.as_ref()).is_some_and(|st| st.phase == ReleasePhase::Scanning)
        {
            s.upload_scan_report(CLEAN_REPORT).await;
            reported = true;
        }
        if let Some(p) = &promotion {
            let phase = p.status.as_ref().map(|st| st.phase);
            if !approved && phase == Some(PromotionPhase::AwaitingApproval) {
                s.approve(&alice, p.metadata.name.as_deref().expect("name"), "alice").await.expect("approve");
                approved = true;
            }
            if phase == Some(PromotionPhase::Succeeded) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // How many short phases a poll catches depends on the machine; the long ones are always seen.
    for waited in ["Some(Scanning)", "Some(AwaitingApproval)", "Some(Monitoring)"] {
        assert!(seen.iter().any(|p| p.contains(waited)), "the controller was killed during {waited}: {seen:?}");
    }
    assert!(seen.len() >= 5, "the controller was killed in many phases: {seen:?}");
    let release = s.releases().list(&Default::default()).await.expect("releases").items.remove(0);
    let digest = release.status.and_then(|st| st.digest).expect("digest");
    let want = Some(pinned(&digest));
    assert_eq!(s.production().await, (want.clone(), want.clone(), want));
    assert_eq!(s.releases().list(&Default::default()).await.expect("list").items.len(), 1, "one release");
    assert_eq!(s.promotions().list(&Default::default()).await.expect("list").items.len(), 1, "one promotion");
    // One production change per workload: the green slots have exactly one ReplicaSet each, and
    // the job definition changed once (generation 2).
    let replicasets: Api<ReplicaSet> = Api::namespaced(s.admin.clone(), &s.ns);
    for name in ["web-green", "worker-green"] {
        let owned = replicasets
            .list(&Default::default())
            .await
            .expect("replicasets")
            .items
            .into_iter()
            .filter(|rs| rs.metadata.owner_references.as_ref().is_some_and(|o| o.iter().any(|r| r.name == name)))
            .count();
        assert_eq!(owned, 1, "{name} was rolled out once");
    }
    let cronjob = Api::<k8s_openapi::api::batch::v1::CronJob>::namespaced(s.admin.clone(), &s.ns)
        .get("nightly-report")
        .await
        .expect("cronjob");
    assert_eq!(cronjob.metadata.generation, Some(2), "the job definition changed exactly once");
}

/// Two replicas: one leads (ready), the other waits (not ready) and takes over when the leader
/// dies.
#[tokio::test]
async fn two_replicas_elect_one_leader_and_fail_over() {
    let s = Scenario::new("engine-leader").await;
    let ready =
        |url: String| async move { common::http(&format!("{url}/readyz"), None).await.starts_with("HTTP/1.1 200") };
    let first = s.controller();
    let first_url = first.metrics.clone();
    common::wait("the first replica to lead", MINUTE, || {
        let url = first_url.clone();
        async move { ready(url).await.then_some(()) }
    })
    .await;
    let second = s.controller();
    // The follower has read the Lease and found it held.
    common::wait("the follower to find the lease held", MINUTE, || async {
        second.logged("another replica leads").then_some(())
    })
    .await;
    assert!(
        common::http(&format!("{}/healthz", second.metrics), None).await.starts_with("HTTP/1.1 200"),
        "the follower is alive"
    );
    assert!(!ready(second.metrics.clone()).await, "the follower is not ready while the leader holds the lease");
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(s.admin.clone(), "tidegate-system")
        .get("tidegate-engine-leader")
        .await
        .expect("lease");
    assert!(lease.spec.and_then(|l| l.holder_identity).is_some(), "the lease names its holder");
    drop(first);
    let second_url = second.metrics.clone();
    common::wait("the second replica to take over", 2 * MINUTE, || {
        let url = second_url.clone();
        async move { ready(url).await.then_some(()) }
    })
    .await;
}
