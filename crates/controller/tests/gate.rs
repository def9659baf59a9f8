//! The approval gate, tried as an attacker would, against the real control plane, the shipped
//! `deploy/` manifests and the controller running as its own least-privilege ServiceAccount.
//! Each test names the property of `docs/security.md` it proves.

mod common;

use common::{BEFORE, CLEAN_REPORT, MINUTE, Scenario, http_server, pinned};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use tidegate_api::{AuditAction, ImagePolicy, PromotionPhase, ReleasePhase};

/// Reach: a policy whose staging target is another namespace's Deployment, in a namespace
/// nobody opted in, changes nothing there; the Release is rejected and says how to opt in.
#[tokio::test]
async fn a_policy_cannot_reach_a_namespace_nobody_opted_in() {
    let s = Scenario::new("gate-reach").await;
    let victim = "gate-reach-victim";
    s.workloads_namespace(victim).await;
    s.test_job_template("smoke-test").await;
    s.policy(json!({
        "workloads": [{
            "name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": victim, "name": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web"}}
        }],
        "tests": {"job": {"templateConfigMap": "smoke-test"}}
    }))
    .await;
    let _controller = s.controller();
    s.trigger("reach").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let release = s.release_in(ReleasePhase::Rejected, MINUTE).await;
    let condition = release
        .status
        .as_ref()
        .and_then(|st| st.conditions.iter().find(|c| c.reason == "OutOfReach").cloned())
        .unwrap_or_else(|| panic!("the rejection names the reach: {:?}", release.status));
    assert!(
        condition.message.contains("system:serviceaccount:gate-reach:tidegate-deployer")
            && condition.message.contains("ClusterRole tidegate-deployer"),
        "{}",
        condition.message
    );
    assert_eq!(s.deployment_image(victim, "web").await, Some(pinned(BEFORE)), "the other namespace is untouched");
    for ns in [victim, "tidegate-system"] {
        let jobs = Api::<Job>::namespaced(s.admin.clone(), ns).list(&ListParams::default()).await.expect("jobs");
        assert!(jobs.items.is_empty(), "no Job was created in {ns}");
    }
    assert!(s.promotions().list(&ListParams::default()).await.expect("list").items.is_empty());
}

/// Approvals the controller can prove, and frozen rules: an approver without the right in the
/// production namespace, the user who triggered the candidate, an approver whose right was
/// revoked, and a policy edit after the first approval all fail to move production; the
/// controller says why each time. Audit: deleting the Release does not stop the monitor window,
/// and the history keeps every action.
#[tokio::test]
async fn only_approvals_the_controller_proves_move_production_under_frozen_rules() {
    let s = Scenario::new("gate-approvals").await;
    let prod = "gate-approvals-prod";
    s.workloads_namespace(prod).await;
    s.opt_in(prod).await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "workloads": [{
            "name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": prod, "name": "web", "service": "web"}}
        }],
        "promotion": {"requiredApprovals": 2, "monitorWindow": "1m"}
    }))
    .await;
    // alice and bob may approve here and in production; carol only here; dave edits the policy
    // and may approve.
    for (user, namespaces) in [
        ("gate-alice", vec![&s.ns as &str, prod]),
        ("gate-bob", vec![&s.ns, prod]),
        ("gate-carol", vec![&s.ns]),
        ("gate-dave", vec![&s.ns, prod]),
    ] {
        for ns in namespaces {
            s.bind(&format!("{user}-approver"), "tidegate-approver", user, ns).await;
        }
    }
    s.bind("gate-dave-editor", "tidegate-editor", "gate-dave", &s.ns).await;
    let (alice, bob, carol, dave) = (
        s.user("gate-alice", &[]).await,
        s.user("gate-bob", &[]).await,
        s.user("gate-carol", &[]).await,
        s.user("gate-dave", &[]).await,
    );
    let controller = s.controller();

    // dave asks for the candidate by hand.
    let policies: Api<ImagePolicy> = Api::namespaced(dave.clone(), &s.ns);
    let trigger = json!({"metadata": {"annotations": {"tidegate.dev/trigger": "by-dave"}}});
    policies.patch("shop-app", &PatchParams::default(), &Patch::Merge(&trigger)).await.expect("dave triggers");
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    let name = promotion.metadata.name.clone().expect("name");
    // Blue-green: the base Deployment keeps its image; the live slot is what production runs.
    let production = || async {
        match s.service_slot(prod, "web").await.as_deref() {
            Some("green") => s.deployment_image(prod, "web-green").await,
            _ => s.deployment_image(prod, "web").await,
        }
    };

    // carol's approval is admitted (she may approve Promotions here) but does not count: she may
    // not approve Promotions in the production namespace.
    s.approve(&carol, &name, "gate-carol").await.expect("carol's approval is admitted");
    s.approval_says(&name, "gate-carol may not approve now").await;
    s.approval_says(&name, "production is there").await;
    // dave triggered the candidate: his approval does not count.
    s.approve(&dave, &name, "gate-dave").await.expect("dave's approval is admitted");
    s.approval_says(&name, "gate-dave requested this promotion or produced its candidate").await;
    s.approve(&alice, &name, "gate-alice").await.expect("alice approves");
    s.approval_says(&name, "1 of 2 approvals").await;

    // Lowering the policy's bar after the first approval changes nothing for this Promotion.
    let lower = json!({"spec": {"promotion": {"requiredApprovals": 1, "approvalValidFor": "720h"}}});
    Api::<ImagePolicy>::namespaced(s.admin.clone(), &s.ns)
        .patch("shop-app", &PatchParams::default(), &Patch::Merge(&lower))
        .await
        .expect("lower the bar");
    let wake = json!({"metadata": {"annotations": {"gate.test/wake": "1"}}});
    s.promotions().patch(&name, &PatchParams::default(), &Patch::Merge(&wake)).await.expect("wake");
    let rules = s.promotions().get(&name).await.expect("get").status.and_then(|st| st.rules).expect("frozen rules");
    assert_eq!(rules.required_approvals, 2, "the rules frozen when the Promotion opened");
    s.approval_says(&name, "1 of 2 approvals").await;
    assert_eq!(production().await, Some(pinned(BEFORE)), "production untouched with one valid approval");

    // alice loses the right in production before bob approves: her approval stops counting.
    s.admin_delete_binding(prod, "gate-alice-approver").await;
    s.approve(&bob, &name, "gate-bob").await.expect("bob approves");
    s.approval_says(&name, "gate-alice may not approve now").await;
    assert_eq!(production().await, Some(pinned(BEFORE)), "a revoked approver does not count");
    assert_eq!(
        s.promotions().get(&name).await.expect("get").status.map(|st| st.phase),
        Some(PromotionPhase::AwaitingApproval)
    );

    // Her right restored, the two proven approvals move production to the exact digest.
    s.bind("gate-alice-approver", "tidegate-approver", "gate-alice", prod).await;
    s.promotions()
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"gate.test/wake": "2"}}})),
        )
        .await
        .expect("wake");
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    assert_eq!(production().await, Some(pinned(&digest)), "production runs the approved digest");
    // The approvals were looked at in the approval lane too (which gives way where the Promotion
    // controller got there first): it is wired to the watch.
    assert!(controller.reconciles("Approval").await > 0, "the approval lane was woken by the approvals");

    // Deleting the Release neither deletes the Promotion nor stops its monitor window.
    let release = promotion.spec.release.clone();
    s.releases().delete(&release, &DeleteParams::default()).await.expect("delete the Release");
    let done = s.promotion_in(PromotionPhase::Succeeded, 2 * MINUTE).await;
    let history: Vec<(AuditAction, String)> =
        done.status.expect("status").history.into_iter().map(|e| (e.action, e.user)).collect();
    for user in ["gate-carol", "gate-dave", "gate-alice", "gate-bob"] {
        assert!(history.contains(&(AuditAction::Approved, user.to_string())), "{user} in {history:?}");
    }
}

/// Status is a record, not an order: a phase written into status by whoever holds
/// `promotions/status` does not change production; and a rollback goes only to a digest the
/// workload's own history shows it ran.
#[tokio::test]
async fn a_phase_or_rollback_target_written_into_status_moves_nothing() {
    let s = Scenario::new("gate-status").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"requiredApprovals": 1, "monitorWindow": "1m"}
    }))
    .await;
    let controller = s.controller();
    s.trigger("status").await;
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    let name = promotion.metadata.name.clone().expect("name");

    let forge = |status: serde_json::Value| {
        let api = s.promotions();
        let name = name.clone();
        async move {
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status})))
                .await
                .expect("write status as its writer")
        }
    };
    // The forger writes until the controller acts on the forged phase (a reconcile that read the
    // status before the write may put the recorded phase back first).
    let failed = loop {
        let looked = controller.reconciles("Promotion").await;
        forge(json!({"phase": "Promoting"})).await;
        s.wake(&s.promotions(), &name).await;
        controller.reconciled_since("Promotion", looked).await;
        let current = s.promotions().get(&name).await.expect("get");
        match current.status.as_ref().map(|st| st.phase) {
            Some(PromotionPhase::AwaitingApproval) => continue,
            Some(PromotionPhase::Promoting) => break s.promotion_in(PromotionPhase::Failed, MINUTE).await,
            _ => break current,
        }
    };
    assert_eq!(failed.status.as_ref().map(|st| st.phase), Some(PromotionPhase::Failed));
    let ready = failed.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert!(ready.message.contains("production write refused"), "{}", ready.message);
    assert_eq!(s.production().await, (Some(pinned(BEFORE)), Some(pinned(BEFORE)), Some(pinned(BEFORE))));

    // A second candidate, approved for real, reaches production; then a forged rollback target.
    s.trigger("status-2").await;
    let second = s.upload_scan_report(CLEAN_REPORT).await;
    assert_ne!(second, digest);
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    let awaiting = common::wait("the second Promotion", MINUTE, || async {
        let list = s.promotions().list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|p| {
            p.spec.digest == second && p.status.as_ref().is_some_and(|st| st.phase == PromotionPhase::AwaitingApproval)
        })
    })
    .await;
    let second_name = awaiting.metadata.name.clone().expect("name");
    s.approve(&alice, &second_name, "alice").await.expect("alice approves");
    common::wait("the second Promotion to succeed", 3 * MINUTE, || async {
        let p = s.promotions().get(&second_name).await.ok()?;
        (p.status?.phase == PromotionPhase::Succeeded).then_some(())
    })
    .await;
    let never_ran = format!("sha256:{}", "e".repeat(64));
    let api = s.promotions();
    // The forger writes until its value survives a reconcile (a reconcile that read the status
    // before the write may put the recorded value back).
    loop {
        let looked = controller.reconciles("Promotion").await;
        api.patch_status(
            &second_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"previousDigest": never_ran}})),
        )
        .await
        .expect("forge the rollback target");
        s.wake(&api, &second_name).await;
        controller.reconciled_since("Promotion", looked).await;
        let recorded = api.get(&second_name).await.expect("get").status.and_then(|st| st.previous_digest);
        if recorded.as_deref() == Some(never_ran.as_str()) {
            break;
        }
    }
    // The controller looks at the rollback request (twice, so a write would have happened) and
    // refuses the target: production stays and the Promotion does not roll back.
    let looked = controller.reconciles("Promotion").await;
    s.request_rollback(&alice, &second_name, "alice").await.expect("alice asks for a rollback");
    controller.reconciled_since("Promotion", looked).await;
    let looked = controller.reconciles("Promotion").await;
    s.wake(&api, &second_name).await;
    controller.reconciled_since("Promotion", looked).await;
    let (web, _, _) = s.production().await;
    assert_eq!(web, Some(pinned(&second)), "production stays on the approved digest");
    assert_eq!(
        s.promotions().get(&second_name).await.expect("get").status.map(|st| st.phase),
        Some(PromotionPhase::Succeeded)
    );
}

/// Unsigned ConfigMap reports count only where a namespace administrator allowed them: without
/// the grant, no ConfigMap is read, the Release stops at the scan, and it says which grant is
/// missing.
#[tokio::test]
async fn an_unsigned_report_does_not_pass_where_nobody_allowed_unsigned_reports() {
    let s = Scenario::new("gate-unsigned").await;
    s.forbid_unsigned_reports().await;
    s.policy(json!({})).await;
    let controller = s.controller();
    s.trigger("unsigned").await;
    let rejected = s.release_in(ReleasePhase::Rejected, MINUTE).await;
    let status = rejected.status.expect("status");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "UnsignedReportsNotAllowed", "{ready:?}\n{}", controller.log_tail());
    assert!(ready.message.contains("tidegate-unsigned-scan-reports"), "{}", ready.message);
    assert!(status.scan.is_none() && status.signature.is_none(), "nothing scanned, nothing signed: {status:?}");
    assert!(s.promotions().list(&Default::default()).await.expect("list").items.is_empty());
    drop(controller);
}
