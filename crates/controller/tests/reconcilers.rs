//! The reconcilers against in-memory doubles of every provider (`tidegate_test_support::fakes`):
//! no API server, registry or cluster, so each rule of the approval gate is checked in
//! milliseconds, and every write the controller makes is seen: the Promotion reconciler (the
//! gate), the Release pipeline and the ImagePolicy triggers and drift. The same reconcilers run against
//! the real control plane in the other integration tests.

use kube::ResourceExt;
use serde_json::json;
use tidegate_api::{
    ANNOTATION_APPROVED_BY, ANNOTATION_APPROVER_GROUPS, ANNOTATION_CREATED_BY, ImagePolicy, Promotion, PromotionPhase,
    Release,
};
use tidegate_core::{Digest, ImageRef};
use tidegate_providers::Signer;
use tidegate_test_support::fakes::{CONTROLLER, World, Write};

const NS: &str = "shop";
const POLICY: &str = "shop-app";
const RELEASE: &str = "shop-app-1";
const IMAGE: &str = "registry.example.com/shop/app";
/// The production workload, as the targets display it.
const PRODUCTION: &str = "Deployment shop/web";

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn pinned(digest: &str) -> String {
    let digest: Digest = digest.parse().expect("digest");
    IMAGE.parse::<ImageRef>().expect("image").pinned(&digest)
}

/// The documented example policy, with its `web` workload only.
fn policy() -> ImagePolicy {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/20-imagepolicy.yaml"))
        .expect("the example policy");
    let mut policy: ImagePolicy = serde_yaml::from_str(&yaml).expect("an ImagePolicy");
    policy.spec.workloads.retain(|w| w.name == "web");
    policy.spec.tests = Default::default();
    policy
}

/// A world where production runs `before`, the Release is Verified with `candidate` and signed,
/// its Promotion (opened by the controller) waits, and alice may approve in `shop`.
async fn world(before: &str, candidate: &str) -> World {
    let w = World::new("2026-12-03T10:00:00Z".parse().expect("time"));
    w.policies.put(policy());
    w.targets.running(PRODUCTION, &pinned(before));
    let signature = w.signer.sign(&pinned(candidate), &candidate.parse().expect("digest")).await.expect("signed");
    let release: Release = serde_json::from_value(json!({
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": RELEASE, "namespace": NS, "annotations": {ANNOTATION_CREATED_BY: "ci-bot"}},
        "spec": {"policy": POLICY, "reason": {"type": "BaseImageUpdated"}},
        "status": {"phase": "Verified", "digest": candidate, "image": pinned(candidate),
                   "signature": {"reference": signature}},
    }))
    .expect("a Release");
    w.releases.put(release);
    w.promotions.put(promotion(candidate));
    w.authorizer.grant("alice", "approve", "promotions", NS);
    w
}

fn promotion(digest: &str) -> Promotion {
    serde_json::from_value(json!({
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "Promotion",
        "metadata": {"name": RELEASE, "namespace": NS},
        "spec": {"policy": POLICY, "release": RELEASE, "digest": digest, "requestedBy": CONTROLLER},
    }))
    .expect("a Promotion")
}

/// `user` (in `groups`, as admission recorded them) approves.
fn approve(w: &World, user: &str, groups: &str) {
    w.promotions.edit(NS, RELEASE, |p| {
        p.annotations_mut().insert(ANNOTATION_APPROVED_BY.into(), user.into());
        p.annotations_mut().insert(ANNOTATION_APPROVER_GROUPS.into(), groups.into());
    });
}

fn phase(w: &World) -> PromotionPhase {
    w.promotions.find(NS, RELEASE).and_then(|p| p.status).map(|s| s.phase).unwrap_or_default()
}

/// Reconciles the Promotion until a pass writes nothing; returns the phases it went through.
async fn settle(w: &World) -> Vec<PromotionPhase> {
    let mut phases = vec![phase(w)];
    for _ in 0..12 {
        let before = w.promotions.status_writes();
        w.reconcile_promotion(NS, RELEASE).await.expect("the reconcile succeeds");
        if phases.last() != Some(&phase(w)) {
            phases.push(phase(w));
        }
        if w.promotions.status_writes() == before {
            return phases;
        }
    }
    panic!("the Promotion never settled: {phases:?}");
}

/// The condition `type_` of the Promotion: (status, message).
fn condition(w: &World, type_: &str) -> Option<(String, String)> {
    let status = w.promotions.find(NS, RELEASE)?.status?;
    status.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.message.clone()))
}

#[tokio::test]
async fn without_an_approval_production_is_never_written() {
    let w = world(&digest('0'), &digest('1')).await;
    assert_eq!(settle(&w).await.last(), Some(&PromotionPhase::AwaitingApproval));
    assert_eq!(w.targets.writes(), vec![], "nothing was written to production");
    assert_eq!(w.targets.image(PRODUCTION), Some(pinned(&digest('0'))));
    let (status, message) = condition(&w, "Approved").expect("an Approved condition");
    assert_eq!(status, "False");
    assert!(message.contains("0 of 1 approvals"), "{message}");
}

#[tokio::test]
async fn an_approval_by_a_holder_of_approve_deploys_exactly_that_digest() {
    let (before, candidate) = (digest('0'), digest('1'));
    let w = world(&before, &candidate).await;
    settle(&w).await;
    approve(&w, "alice", "team-shop");
    let phases = settle(&w).await;
    assert!(phases.contains(&PromotionPhase::Promoting), "{phases:?}");
    assert_eq!(phases.last(), Some(&PromotionPhase::Monitoring), "{phases:?}");
    assert_eq!(
        w.targets.writes(),
        vec![Write {
            target: PRODUCTION.into(),
            image: pinned(&candidate),
            promotion: Some(RELEASE.into()),
            namespace: NS.into(),
        }],
        "one production write, of the approved digest, as the namespace's deployer for this Promotion"
    );
    let status = w.promotions.find(NS, RELEASE).and_then(|p| p.status).expect("status");
    assert_eq!(status.approved_by, vec!["alice".to_string()]);
    assert_eq!(status.previous_digest.as_deref(), Some(before.as_str()), "the rollback target is recorded");
    assert!(w.authorizer.asked().contains(&format!("alice approve promotions {NS}/{RELEASE}")));
    assert!(w.events.reasons().contains(&"ApprovalRecorded".to_string()), "{:?}", w.events.reasons());

    // The monitor window ends healthy: the Promotion succeeds and a signed record is attached.
    w.clock.advance(jiff::SignedDuration::from_mins(11));
    assert_eq!(settle(&w).await.last(), Some(&PromotionPhase::Succeeded));
    assert_eq!(w.targets.writes().len(), 1, "success writes nothing more to production");
    let attached = w.attestor.attached();
    assert_eq!(attached.len(), 1, "one promotion record");
    assert_eq!(attached[0].0, pinned(&candidate));
}

#[tokio::test]
async fn an_approval_reaches_production_in_the_reconcile_that_records_it() {
    let w = world(&digest('0'), &digest('1')).await;
    settle(&w).await;
    approve(&w, "alice", "team-shop");
    w.reconcile_promotion(NS, RELEASE).await.expect("the reconcile succeeds");
    assert_eq!(w.targets.writes().len(), 1, "recorded as Approved and written to production in one reconcile");
    assert_ne!(phase(&w), PromotionPhase::Approved);
    let asked = w.authorizer.asked();
    let proofs = asked.iter().filter(|q| q.starts_with("alice approve promotions")).count();
    assert_eq!(proofs, 2, "alice's right was proven by both passes, right before each decided: {asked:?}");
}

/// The approval lane's pass over the watch's copy of the Promotion.
async fn lane(w: &World) {
    w.sync();
    let promotion = w.promotions.find(NS, RELEASE).expect("the Promotion");
    tidegate_controller::approval_lane::reconcile(std::sync::Arc::new(promotion), w.context.clone())
        .await
        .expect("the lane's pass succeeds");
}

#[tokio::test]
async fn the_approval_lane_carries_an_approval_to_production_and_leaves_what_was_done_alone() {
    let w = world(&digest('0'), &digest('1')).await;
    w.targets.rolls_out_slowly(PRODUCTION, 3);
    settle(&w).await;
    lane(&w).await;
    assert_eq!(w.promotions.status_writes(), 1, "nobody approved: the lane has nothing to do");

    approve(&w, "alice", "team-shop");
    lane(&w).await;
    assert_eq!(w.targets.writes().len(), 1, "the lane wrote production");
    assert_eq!(phase(&w), PromotionPhase::Promoting);
    // The Promotion controller, woken by the same approval, goes on with the rollout.
    w.reconcile_promotion(NS, RELEASE).await.expect("the reconcile succeeds");
    assert_eq!(phase(&w), PromotionPhase::Promoting, "still rolling out");
    assert!(w.targets.writes().iter().all(|write| write.image == pinned(&digest('1'))), "only the approved digest");

    // Where the Promotion controller got to an approval first, the lane's pass finds it done.
    let w = world(&digest('0'), &digest('1')).await;
    settle(&w).await;
    approve(&w, "mallory", "team-shop");
    w.reconcile_promotion(NS, RELEASE).await.expect("the reconcile succeeds");
    let (asked, writes) = (w.authorizer.asked(), w.promotions.status_writes());
    lane(&w).await;
    assert_eq!(w.authorizer.asked(), asked, "the lane asked nothing again");
    assert_eq!(w.promotions.status_writes(), writes);
    assert_eq!(phase(&w), PromotionPhase::AwaitingApproval);
    // A later approval is the lane's again.
    approve(&w, "alice", "team-shop");
    lane(&w).await;
    assert_eq!(w.targets.writes().len(), 1, "alice's approval went to production");
}

#[tokio::test]
async fn an_approval_by_someone_without_the_right_moves_nothing() {
    let w = world(&digest('0'), &digest('1')).await;
    approve(&w, "mallory", "team-shop");
    assert_eq!(settle(&w).await.last(), Some(&PromotionPhase::AwaitingApproval));
    assert_eq!(w.targets.writes(), vec![]);
    let (_, message) = condition(&w, "Approved").expect("an Approved condition");
    assert!(message.contains("mallory may not approve"), "{message}");
}

#[tokio::test]
async fn a_group_grant_counts_only_for_the_groups_admission_recorded() {
    let w = world(&digest('0'), &digest('1')).await;
    w.authorizer.grant("release-managers", "approve", "promotions", NS);
    approve(&w, "bob", "developers");
    assert_eq!(settle(&w).await.last(), Some(&PromotionPhase::AwaitingApproval));
    assert_eq!(w.targets.writes(), vec![]);
    approve(&w, "bob", "developers,release-managers");
    assert_eq!(settle(&w).await.last(), Some(&PromotionPhase::Monitoring));
    assert_eq!(w.targets.writes().len(), 1);
}

#[tokio::test]
async fn whoever_produced_the_candidate_cannot_approve_it() {
    let w = world(&digest('0'), &digest('1')).await;
    w.authorizer.grant("ci-bot", "approve", "promotions", NS);
    w.authorizer.grant(CONTROLLER, "approve", "promotions", NS);
    for user in ["ci-bot", CONTROLLER] {
        approve(&w, user, "team-shop");
        assert_eq!(settle(&w).await.last(), Some(&PromotionPhase::AwaitingApproval), "{user}");
    }
    assert_eq!(w.targets.writes(), vec![]);
}

#[tokio::test]
async fn approvals_count_only_while_the_admission_policies_are_in_force() {
    let w = world(&digest('0'), &digest('1')).await;
    w.authorizer.admission(Some("ValidatingAdmissionPolicy tidegate-approvals is not installed"));
    approve(&w, "alice", "team-shop");
    assert_eq!(settle(&w).await.last(), Some(&PromotionPhase::AwaitingApproval));
    assert_eq!(w.targets.writes(), vec![]);
    let (_, message) = condition(&w, "Approved").expect("an Approved condition");
    assert!(message.contains("cannot be verified") && message.contains("not installed"), "{message}");
}

#[tokio::test]
async fn a_signature_that_no_longer_verifies_stops_the_write() {
    let w = world(&digest('0'), &digest('1')).await;
    // The Release's signature now is one of another digest (a re-signed or swapped reference).
    let other = w.signer.sign(&pinned(&digest('2')), &digest('2').parse().expect("digest")).await.expect("signed");
    w.releases.edit(NS, RELEASE, |r| {
        r.status.as_mut().and_then(|s| s.signature.as_mut()).expect("a signature").reference = Some(other);
    });
    approve(&w, "alice", "team-shop");
    let phases = settle(&w).await;
    assert!(!phases.contains(&PromotionPhase::Promoting), "{phases:?}");
    assert_eq!(w.targets.writes(), vec![], "nothing written with an unverifiable signature");
    let (status, _) = condition(&w, "SignatureVerified").expect("a SignatureVerified condition");
    assert_eq!(status, "False");
}

#[tokio::test]
async fn a_promotion_of_a_digest_its_release_did_not_verify_moves_nothing() {
    let (release_digest, other) = (digest('1'), digest('e'));
    let w = world(&digest('0'), &release_digest).await;
    // Someone who may create Promotions names their own digest and the Verified Release.
    w.promotions.put(promotion(&other));
    approve(&w, "alice", "team-shop");
    settle(&w).await;
    assert_eq!(w.targets.writes(), vec![]);
    assert!(!w.targets.image(PRODUCTION).is_some_and(|i| i.contains(&other)));
}

#[tokio::test]
async fn a_settled_promotion_writes_no_status_and_changes_nothing() {
    let w = world(&digest('0'), &digest('1')).await;
    approve(&w, "alice", "team-shop");
    settle(&w).await;
    let (writes, production) = (w.promotions.status_writes(), w.targets.writes());
    for _ in 0..3 {
        w.reconcile_promotion(NS, RELEASE).await.expect("reconcile");
    }
    assert_eq!(w.promotions.status_writes(), writes, "no status write when nothing changed");
    assert_eq!(w.targets.writes(), production, "no production write either");
}

#[tokio::test]
async fn an_unhealthy_rollout_goes_back_to_what_ran_before() {
    let (before, candidate) = (digest('0'), digest('1'));
    let w = world(&before, &candidate).await;
    approve(&w, "alice", "team-shop");
    assert_eq!(settle(&w).await.last(), Some(&PromotionPhase::Monitoring));
    w.targets.unhealthy(PRODUCTION, "2 of 3 pods crash-looping");
    let phases = settle(&w).await;
    assert_eq!(phases.last(), Some(&PromotionPhase::RolledBack), "{phases:?}");
    let images: Vec<String> = w.targets.writes().into_iter().map(|w| w.image).collect();
    assert_eq!(images, vec![pinned(&candidate), pinned(&before)], "forward, then back to what ran before");
}

#[tokio::test]
async fn monitoring_asks_no_approver_reads_what_production_ran_once_and_still_refuses_a_forged_rollback_target() {
    let (before, candidate) = (digest('0'), digest('1'));
    let w = world(&before, &candidate).await;
    approve(&w, "alice", "team-shop");
    assert_eq!(settle(&w).await.last(), Some(&PromotionPhase::Monitoring));
    let (asked, approved) = (w.authorizer.asked().len(), condition(&w, "Approved"));
    for _ in 0..5 {
        w.clock.advance(jiff::SignedDuration::from_secs(5));
        w.reconcile_promotion(NS, RELEASE).await.expect("the reconcile succeeds");
    }
    assert_eq!(phase(&w), PromotionPhase::Monitoring);
    assert_eq!(w.targets.history_reads(), 1, "that production ran {before} is history: read once, then known");
    assert_eq!(w.authorizer.asked().len(), asked, "once production runs it, no approver is asked about again");
    assert_eq!(condition(&w, "Approved"), approved, "and the Approved condition says what it said");

    // A status rewritten to name a digest production never ran is not believed.
    w.promotions.edit(NS, RELEASE, |p| {
        if let Some(status) = p.status.as_mut() {
            status.previous_digest = Some(digest('9'));
        }
    });
    w.targets.unhealthy(PRODUCTION, "crash-looping");
    settle(&w).await;
    let images: Vec<String> = w.targets.writes().into_iter().map(|w| w.image).collect();
    assert_eq!(images, vec![pinned(&candidate)], "no write to a digest production never ran");
    assert_eq!(w.targets.history_reads(), 2, "the unknown digest was looked up");
}

/// A world with the policy and a new Release of it (as the policy reconciler opens one), no
/// Promotion yet; production runs `before`.
fn release_world(before: &str) -> World {
    let w = World::new("2026-12-03T10:00:00Z".parse().expect("time"));
    w.policies.put(policy());
    w.targets.running(PRODUCTION, &pinned(before));
    let release: Release = serde_json::from_value(json!({
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": "shop-app-2", "namespace": NS},
        "spec": {"policy": POLICY, "reason": {"type": "BaseImageUpdated"}},
    }))
    .expect("a Release");
    w.releases.put(release);
    w
}

/// Reconciles the Release until a pass writes nothing; returns its phases.
async fn settle_release(w: &World, name: &str) -> Vec<tidegate_api::ReleasePhase> {
    let phase = || w.releases.find(NS, name).and_then(|r| r.status).map(|s| s.phase).unwrap_or_default();
    let mut phases = vec![phase()];
    for _ in 0..20 {
        let (before, promotions) = (w.releases.status_writes(), w.promotions.all().len());
        w.reconcile_release(NS, name).await.expect("the reconcile succeeds");
        if phases.last() != Some(&phase()) {
            phases.push(phase());
        }
        if w.releases.status_writes() == before && w.promotions.all().len() == promotions {
            return phases;
        }
    }
    panic!("the Release never settled: {phases:?}");
}

#[tokio::test]
async fn a_release_is_built_scanned_signed_and_staged_then_waits_for_approval() {
    use tidegate_api::ReleasePhase::*;
    let w = release_world(&digest('0'));
    let phases = settle_release(&w, "shop-app-2").await;
    assert_eq!(phases.last(), Some(&Verified), "{phases:?}");
    let status = w.releases.find(NS, "shop-app-2").and_then(|r| r.status).expect("status");
    let built = status.digest.expect("a digest");
    assert_eq!(w.scanner.scanned(), vec![pinned(&built)], "the built digest was scanned, once");
    let signature = status.signature.and_then(|s| s.reference).expect("a signature");
    assert!(
        w.signer.verify(&pinned(&built), &built.parse().expect("digest"), &signature).await.expect("verify").is_valid()
    );
    let writes = w.targets.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!((writes[0].target.as_str(), writes[0].promotion.as_deref()), ("Deployment shop-staging/web", None));
    assert_eq!(writes[0].image, pinned(&built), "staging runs exactly the signed digest");
    assert_eq!(w.targets.image(PRODUCTION), Some(pinned(&digest('0'))), "production is untouched");
    let promotions = w.promotions.all();
    assert_eq!(promotions.len(), 1, "one Promotion is opened");
    assert_eq!(promotions[0].spec.digest, built);
    assert_eq!(promotions[0].spec.requested_by.as_deref(), Some(CONTROLLER));
    assert!(w.events.reasons().contains(&"PromotionOpened".to_string()), "{:?}", w.events.reasons());
}

#[tokio::test]
async fn a_verified_release_finds_its_promotion_in_the_watch_and_reads_nothing() {
    let w = release_world(&digest('0'));
    settle_release(&w, "shop-app-2").await;
    assert_eq!(w.promotions.all().len(), 1, "one Promotion is opened");
    let (reads, writes) = (w.promotions.reads(), w.releases.status_writes());
    for _ in 0..3 {
        w.reconcile_release(NS, "shop-app-2").await.expect("the reconcile succeeds");
    }
    assert_eq!(w.promotions.reads(), reads, "the watch shows the Promotion: no GET per pass");
    assert_eq!(w.releases.status_writes(), writes, "nothing changes");
    assert_eq!(w.promotions.all().len(), 1, "still one Promotion");
}

#[tokio::test]
async fn a_production_rollout_leans_on_its_approvers_recent_rights_instead_of_asking_every_poll() {
    let w = world(&digest('0'), &digest('1')).await;
    w.targets.rolls_out_slowly(PRODUCTION, 3);
    approve(&w, "alice", "team-shop");
    for _ in 0..4 {
        if phase(&w) == PromotionPhase::Promoting {
            break;
        }
        w.reconcile_promotion(NS, RELEASE).await.expect("the reconcile succeeds");
    }
    assert_eq!(phase(&w), PromotionPhase::Promoting, "production was written once and rolls out");
    let asked = w.authorizer.asked();
    assert!(!asked.is_empty(), "alice's right was proven before production was first written");
    for _ in 0..2 {
        w.reconcile_promotion(NS, RELEASE).await.expect("the reconcile succeeds");
    }
    assert_eq!(phase(&w), PromotionPhase::Promoting, "still rolling out");
    assert_eq!(w.authorizer.asked(), asked, "the rollout's polls lean on the right it proved a moment ago");

    // Another approver's right is not covered by alice's proof: it is asked about.
    approve(&w, "alice,bob", "team-shop|team-shop");
    w.reconcile_promotion(NS, RELEASE).await.expect("the reconcile succeeds");
    let now_asked = w.authorizer.asked();
    assert_eq!(now_asked.len(), asked.len() + 1, "{now_asked:?}");
    assert!(now_asked.last().is_some_and(|q| q.starts_with("bob approve promotions")), "{now_asked:?}");
}

#[tokio::test]
async fn a_staging_rollout_leans_on_its_own_recent_verification_instead_of_asking_every_poll() {
    use tidegate_api::ReleasePhase::*;
    let w = release_world(&digest('0'));
    w.targets.rolls_out_slowly("Deployment shop-staging/web", 3);
    let phase = || w.releases.find(NS, "shop-app-2").and_then(|r| r.status).map(|s| s.phase).unwrap_or_default();
    for _ in 0..12 {
        w.reconcile_release(NS, "shop-app-2").await.expect("the reconcile succeeds");
    }
    assert_eq!(phase(), Verified);
    let staging_writes = w.targets.writes().iter().filter(|w| w.target == "Deployment shop-staging/web").count();
    assert_eq!(staging_writes, 4, "three polls in progress, then done");
    assert_eq!(
        w.signer.verifications(),
        1,
        "one verification (before the first staging write) stands for the rest of the Release's own rollout"
    );
    assert_eq!(w.targets.image(PRODUCTION), Some(pinned(&digest('0'))), "production is untouched");
}

#[tokio::test]
async fn a_scan_run_in_the_controller_holds_no_reconcile_and_wakes_every_release_that_waits_for_it() {
    use std::time::Duration;
    use tidegate_api::ReleasePhase::*;
    let w = release_world(&digest('0'));
    w.scanner.scan_itself();
    w.scanner.hold_scans();
    let status = |name: &str| w.releases.find(NS, name).and_then(|r| r.status).unwrap_or_default();
    // Reconciles return while the scan is held: they wait in the background, not in a slot.
    let reconcile = |name: &'static str| async {
        tokio::time::timeout(Duration::from_secs(5), w.reconcile_release(NS, name))
            .await
            .expect("a reconcile does not wait for a queued scan")
            .expect("the reconcile succeeds")
    };
    for _ in 0..3 {
        reconcile("shop-app-2").await;
    }
    assert_eq!(status("shop-app-2").phase, Scanning);
    let built = status("shop-app-2").digest.expect("a digest");
    // A Release of another policy that built the same candidate waits for the same scan.
    let mut other = policy();
    other.metadata.name = Some("shop-worker".into());
    w.policies.put(other);
    let mut twin = w.releases.find(NS, "shop-app-2").expect("the Release");
    twin.metadata.name = Some("shop-app-3".into());
    twin.metadata.uid = Some("uid-of-shop-app-3".into());
    twin.spec.policy = "shop-worker".into();
    w.releases.put(twin);
    for name in ["shop-app-2", "shop-app-3", "shop-app-2"] {
        reconcile(name).await;
        let waiting = status(name);
        assert_eq!(waiting.phase, Scanning);
        let ready = waiting.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert!(ready.message.contains("waits its turn"), "{}", ready.message);
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(w.scanner.scanned(), vec![pinned(&built)], "one scan of the candidate for both Releases");
    assert_eq!(w.woken_release(Duration::from_millis(50)).await, None, "nobody is woken before the scan ends");
    assert_eq!(w.context.metrics.scans_pending.get(), 1, "the metric counts the scan queued or running");

    w.scanner.finish_scans();
    let mut woken = Vec::new();
    for _ in 0..2 {
        woken.extend(w.woken_release(Duration::from_secs(5)).await);
    }
    assert_eq!(w.woken_release(Duration::from_millis(50)).await, None, "each once");
    assert_eq!(w.context.metrics.scans_pending.get(), 0);
    woken.sort();
    assert_eq!(woken, ["shop-app-2", "shop-app-3"], "its end wakes every Release that waits for it");
    for name in ["shop-app-2", "shop-app-3"] {
        w.reconcile_release(NS, name).await.expect("the reconcile succeeds");
        assert_eq!(status(name).phase, Signing, "{name} takes the scan's findings");
        assert_eq!(status(name).scan.map(|s| s.blocking), Some(0));
    }
    assert_eq!(w.scanner.scanned().len(), 1, "the answer was shared, not scanned again");
}

#[tokio::test]
async fn a_release_with_a_blocking_finding_is_rejected_before_staging() {
    use tidegate_api::image_policy::Severity;
    use tidegate_core::gate::Finding;
    let w = release_world(&digest('0'));
    w.scanner.report(tidegate_providers::ScanReport {
        findings: vec![Finding::new("CVE-2026-0001", Severity::Critical, true)],
        ..Default::default()
    });
    let phases = settle_release(&w, "shop-app-2").await;
    assert_eq!(phases.last(), Some(&tidegate_api::ReleasePhase::Rejected), "{phases:?}");
    assert_eq!(w.targets.writes(), vec![], "nothing deployed, not even to staging");
    assert_eq!(w.promotions.all().len(), 0, "no Promotion for a rejected candidate");
}

/// Reconciles the policy once, from the watch's copy.
async fn reconcile_policy(w: &World) {
    w.sync();
    let policy = w.policies.find(NS, POLICY).expect("the policy");
    tidegate_controller::policy::reconcile(std::sync::Arc::new(policy), w.context.clone()).await.expect("reconcile");
}

#[tokio::test]
async fn a_manual_trigger_starts_one_release_naming_who_asked_for_it() {
    use tidegate_api::{ANNOTATION_TRIGGER, ANNOTATION_TRIGGERED_BY};
    let w = release_world(&digest('0'));
    w.policies.edit(NS, POLICY, |p| {
        p.annotations_mut().insert(ANNOTATION_TRIGGER.into(), "2026-12-03-1".into());
        p.annotations_mut().insert(ANNOTATION_TRIGGERED_BY.into(), "bob".into());
    });
    for _ in 0..3 {
        reconcile_policy(&w).await;
    }
    let started: Vec<Release> = w.releases.all().into_iter().filter(|r| r.name_any() != "shop-app-2").collect();
    assert_eq!(started.len(), 1, "one Release per trigger value, however often the policy is reconciled");
    assert_eq!(started[0].annotations().get(ANNOTATION_TRIGGERED_BY).map(String::as_str), Some("bob"));
    assert_eq!(started[0].spec.reason.kind, tidegate_api::release::ReasonKind::Manual);
    assert_eq!(w.targets.writes(), vec![], "a trigger writes to no workload");

    // Created outright (a trigger that fires again finds it in the watch), and the new Release's
    // first reconcile acts on the version this process created: nothing is read.
    assert_eq!(w.releases.reads(), 0, "no Release was read to find out whether it exists");
    assert_eq!(w.releases.creates(), 1, "the passes after the first find it in the watch");
    w.sync();
    w.reconcile_release(NS, &started[0].name_any()).await.expect("the reconcile succeeds");
    assert_eq!(w.releases.reads(), 0, "the watch's copy is the version this process created");
}

#[tokio::test]
async fn the_status_write_after_a_trigger_names_the_release_it_started() {
    use tidegate_api::ANNOTATION_TRIGGER;
    let w = release_world(&digest('0'));
    reconcile_policy(&w).await;
    let writes = w.policies.status_writes();
    w.policies.edit(NS, POLICY, |p| {
        p.annotations_mut().insert(ANNOTATION_TRIGGER.into(), "2026-12-05-1".into());
    });
    // The watch does not show the new Release during the pass that creates it.
    w.clock.advance(jiff::SignedDuration::from_secs(1));
    reconcile_policy(&w).await;
    let started = w.releases.all().into_iter().max_by_key(|r| r.creation_timestamp().map(|t| t.0)).expect("started");
    assert_eq!(started.spec.reason.kind, tidegate_api::release::ReasonKind::Manual);
    let latest = w.policies.find(NS, POLICY).and_then(|p| p.status).and_then(|s| s.latest_release);
    assert_eq!(latest, Some(started.name_any()), "the same write names it");
    assert_eq!(w.policies.status_writes(), writes + 1);
    reconcile_policy(&w).await;
    assert_eq!(w.policies.status_writes(), writes + 1, "once the watch shows it, nothing is left to write");
}

#[tokio::test]
async fn a_new_build_tag_starts_a_release_of_the_digest_it_resolved_to() {
    let w = release_world(&digest('0'));
    w.policies.edit(NS, POLICY, |p| {
        p.spec.triggers.new_build =
            Some(serde_json::from_value(json!({"tagPattern": "[0-9]+\\.[0-9]+\\.[0-9]+"})).expect("a trigger"));
    });
    w.registry.tag("registry.example.com/shop/app", "1.2.3", &digest('5'));
    w.registry.tag("registry.example.com/shop/app", "1.10.0", &digest('6'));
    w.registry.tag("registry.example.com/shop/app", "latest", &digest('7'));
    reconcile_policy(&w).await;
    reconcile_policy(&w).await;
    let sources: Vec<String> =
        w.releases.all().into_iter().filter_map(|r| r.spec.source).map(|source| source.image).collect();
    assert_eq!(sources, vec![pinned(&digest('6'))], "the newest matching version, pinned, once");
}

#[tokio::test]
async fn production_changed_outside_an_approved_promotion_is_reported_as_drift() {
    let (before, candidate) = (digest('0'), digest('1'));
    let w = world(&before, &candidate).await;
    approve(&w, "alice", "team-shop");
    settle(&w).await;
    reconcile_policy(&w).await;
    let drift = |w: &World| w.policies.find(NS, POLICY).and_then(|p| p.status).map(|s| s.drift).unwrap_or_default();
    assert_eq!(drift(&w), vec![], "production runs what was approved");
    // Someone with write access to the Deployment sets another image by hand.
    w.targets.running(PRODUCTION, &pinned(&digest('9')));
    reconcile_policy(&w).await;
    assert_eq!(drift(&w).len(), 1, "{:?}", drift(&w));
    assert!(w.events.reasons().contains(&"ProductionDrift".to_string()), "{:?}", w.events.reasons());
    assert_eq!(w.targets.writes().len(), 1, "drift is reported, never 'repaired' without an approval");
}
