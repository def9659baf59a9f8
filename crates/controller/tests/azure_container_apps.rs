//! Azure Container Apps end to end, against the local ARM stand-in (`crates/testenv/go/azure`,
//! request models from Microsoft's Go SDK, unknown fields rejected) and the local control plane:
//! a new digest becomes a zero-weight revision labelled `staging` in the production app, the
//! staging check calls that label's URL over HTTPS, and only an approved Promotion moves the
//! traffic. The previous revision stays active for an instant rollback and is deactivated when
//! the monitor window ends healthy; an unhealthy candidate puts 100 % back on exactly the
//! previous revision. Every write Tidegate sends changes only the image and the traffic.

mod common;

use common::azure::Azure;
use common::{BEFORE, CLEAN_REPORT, MINUTE, REPO, Scenario};
use serde_json::{Value, json};
use tidegate_api::PromotionPhase;
use tidegate_testenv::azure::Health;

fn policy(s: &Scenario, app: &str) -> Value {
    let _ = s;
    json!({
        "triggers": {"rescan": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"containerApp": {"resourceId": app, "container": "app"}},
            "production": {"containerApp": {"resourceId": app, "container": "app"}}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz"}]},
        "promotion": {"requiredApprovals": 1, "monitorWindow": "1m"}
    })
}

#[tokio::test]
async fn a_container_app_is_staged_at_zero_weight_and_switched_only_after_approval() {
    let s = Scenario::new("azure-blue-green").await;
    let azure = Azure::start("shop").await;
    s.policy(policy(&s, &azure.app)).await;
    let args = azure.args(&s, "shop");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());

    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 3 * MINUTE).await;
    let candidate = format!("{REPO}@{}", promotion.spec.digest);
    let hex = promotion.spec.digest.trim_start_matches("sha256:");
    let revision = format!("web--tg-{}", &hex[..12]);

    // Staging: the candidate runs as a labelled revision at 0 %; production traffic is untouched.
    let traffic = azure.traffic().await;
    assert!(traffic.contains(&("web--v1".to_string(), 100, None)), "{traffic:?}\n{}", controller.log_tail());
    assert!(traffic.contains(&(revision.clone(), 0, Some("staging".to_string()))), "{traffic:?}");
    let release = s.releases().list(&Default::default()).await.expect("releases").items;
    let tests = release.iter().flat_map(|r| r.status.iter().flat_map(|st| st.tests.iter())).collect::<Vec<_>>();
    assert!(
        tests.iter().any(|t| t.passed
            && t.message
                .as_deref()
                .is_some_and(|m| m.contains(&format!("https://web---staging.{}/healthz", azure.standin.domain())))),
        "the staging check called the label's URL: {tests:?}"
    );

    // Approval moves all traffic; the previous revision stays active through the window.
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &promotion.metadata.name.clone().expect("name"), "alice").await.expect("approve");
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    let traffic = azure.traffic().await;
    assert!(traffic.iter().any(|(r, w, _)| *r == revision && *w == 100), "{traffic:?}");
    assert!(azure.active("web--v1").await, "the previous revision is kept for an instant rollback");
    s.promotion_in(PromotionPhase::Succeeded, 3 * MINUTE).await;
    common::wait("the previous revision to be deactivated", MINUTE, || async {
        (!azure.active("web--v1").await).then_some(())
    })
    .await;
    let app = azure.get(&azure.app).await;
    assert_eq!(app["properties"]["template"]["containers"][0]["image"], json!(candidate));
    azure.assert_only_image_and_traffic_written().await;
    drop(controller);
}

#[tokio::test]
async fn an_unhealthy_container_app_revision_rolls_back_to_exactly_the_previous_revision() {
    let s = Scenario::new("azure-rollback").await;
    let azure = Azure::start("shop").await;
    s.policy(policy(&s, &azure.app)).await;
    let args = azure.args(&s, "shop");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());

    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 3 * MINUTE).await;
    let candidate = format!("{REPO}@{}", promotion.spec.digest);
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &promotion.metadata.name.clone().expect("name"), "alice").await.expect("approve");
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    azure.standin.set_image_health(&candidate, Health::Crashing).await.expect("make the candidate crash");
    let rolled_back = s.promotion_in(PromotionPhase::RolledBack, 2 * MINUTE).await;
    let traffic = azure.traffic().await;
    assert!(traffic.contains(&("web--v1".to_string(), 100, None)), "{traffic:?}\n{}", controller.log_tail());
    assert_eq!(traffic.iter().map(|(_, w, _)| w).sum::<i64>(), 100, "{traffic:?}");
    assert_eq!(rolled_back.status.and_then(|st| st.previous_digest), Some(BEFORE.to_string()));
    azure.assert_only_image_and_traffic_written().await;
    drop(controller);
}

#[tokio::test]
async fn a_namespace_without_an_azure_grant_reaches_no_container_app() {
    let s = Scenario::new("azure-no-grant").await;
    let azure = Azure::start("shop").await;
    s.policy(policy(&s, &azure.app)).await;
    // The grant names another resource group: the policy's app is out of reach.
    let args = azure.args(&s, "other-team");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let release = common::wait("the Release to stop at staging", 3 * MINUTE, || async {
        let list = s.releases().list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|r| {
            r.status.as_ref().is_some_and(|st| st.conditions.iter().any(|c| c.message.contains("--azure-grant")))
        })
    })
    .await;
    let message = release.status.expect("status").conditions.iter().map(|c| c.message.clone()).collect::<Vec<_>>();
    assert!(message.iter().any(|m| m.contains("out of reach")), "{message:?}\n{}", controller.log_tail());
    let writes = azure.standin.requests().await.expect("log");
    assert!(
        !writes
            .iter()
            .any(|r| r.method == "PATCH" || r.method == "PUT" || r.method == "POST" && r.path.contains("/revisions/")),
        "nothing was written: {writes:?}"
    );
    drop(controller);
}

/// The policy of these tests with a canary switch: 25 %, then 50 %, each held 10 s.
fn canary_policy(s: &Scenario, app: &str) -> Value {
    let mut policy = policy(s, app);
    policy["workloads"][0]["strategy"] =
        json!({"type": "canary", "canarySteps": [25, 50], "canaryStepDuration": "10s"});
    policy
}

/// The candidate's weights as the traffic moves, sampled until it reaches 100 % or `stop`.
async fn weights_until(azure: &Azure, revision: &str, stop: impl Fn(i64) -> bool) -> Vec<i64> {
    let deadline = std::time::Instant::now() + 3 * MINUTE;
    let mut seen = Vec::new();
    loop {
        let traffic = azure.traffic().await;
        let weight = traffic.iter().filter(|(r, _, _)| r == revision).map(|(_, w, _)| *w).sum::<i64>();
        if seen.last() != Some(&weight) {
            seen.push(weight);
        }
        if weight == 100 || stop(weight) {
            return seen;
        }
        assert!(std::time::Instant::now() < deadline, "the canary did not finish: {seen:?} {traffic:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_canary_moves_traffic_in_held_steps_after_approval() {
    let s = Scenario::new("azure-canary").await;
    let azure = Azure::start("shop").await;
    s.policy(canary_policy(&s, &azure.app)).await;
    let args = azure.args(&s, "shop");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 3 * MINUTE).await;
    let revision = format!("web--tg-{}", &promotion.spec.digest.trim_start_matches("sha256:")[..12]);
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &promotion.metadata.name.clone().expect("name"), "alice").await.expect("approve");

    let seen = weights_until(&azure, &revision, |_| false).await;
    assert_eq!(
        seen.iter().filter(|w| **w > 0).copied().collect::<Vec<_>>(),
        [25, 50, 100],
        "{seen:?}\n{}",
        controller.log_tail()
    );
    // Each step was held: the traffic writes after the approval are at least 10 s apart.
    let writes: Vec<jiff::Timestamp> = azure
        .requests()
        .await
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.json().is_some_and(|b| {
                    b["properties"]["configuration"]["ingress"]["traffic"].as_array().is_some_and(|t| {
                        t.iter().any(|e| {
                            e["weight"].as_i64().is_some_and(|w| w > 0 && e["revisionName"] == json!(revision))
                        })
                    })
                })
        })
        .map(|r| r.time.parse().expect("time"))
        .collect();
    assert_eq!(writes.len(), 3, "25 %, 50 %, 100 %");
    for pair in writes.windows(2) {
        assert!(pair[1].duration_since(pair[0]).as_secs() >= 10, "a step was not held: {writes:?}");
    }
    let done = s.promotion_in(PromotionPhase::Succeeded, 3 * MINUTE).await;
    let record = done.status.expect("status").canary;
    assert_eq!(record.iter().map(|c| (c.workload.as_str(), c.weight)).collect::<Vec<_>>(), [("web", 100)]);
    azure.assert_only_image_and_traffic_written().await;
    drop(controller);
}

#[tokio::test]
async fn an_unhealthy_canary_step_puts_all_traffic_back_on_the_previous_revision() {
    let s = Scenario::new("azure-canary-bad").await;
    let azure = Azure::start("shop").await;
    s.policy(canary_policy(&s, &azure.app)).await;
    let args = azure.args(&s, "shop");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 3 * MINUTE).await;
    let candidate = format!("{REPO}@{}", promotion.spec.digest);
    let revision = format!("web--tg-{}", &promotion.spec.digest.trim_start_matches("sha256:")[..12]);
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &promotion.metadata.name.clone().expect("name"), "alice").await.expect("approve");

    // At the first step the candidate starts crashing: the step fails and traffic goes back.
    weights_until(&azure, &revision, |w| w == 25).await;
    azure.standin.set_image_health(&candidate, Health::Crashing).await.expect("crash");
    s.promotion_in(PromotionPhase::RolledBack, 2 * MINUTE).await;
    common::wait("all traffic back on web--v1", MINUTE, || async {
        let traffic = azure.traffic().await;
        traffic.contains(&("web--v1".to_string(), 100, None)).then_some(traffic)
    })
    .await;
    let weights: Vec<i64> =
        azure.traffic().await.iter().filter(|(r, _, _)| *r == revision).map(|(_, w, _)| *w).collect();
    assert!(weights.iter().all(|w| *w == 0), "{weights:?}\n{}", controller.log_tail());
    drop(controller);
}

#[tokio::test]
async fn a_production_app_named_as_staging_gets_no_unapproved_image() {
    let s = Scenario::new("azure-prod-as-staging").await;
    let azure = Azure::start("shop").await;
    // Another policy's production app is named as this policy's staging app.
    let mut policy = policy(&s, &azure.app);
    policy["workloads"][0]["production"]["containerApp"]["resourceId"] = json!(azure.app.replace("/web", "/web-next"));
    s.policy(policy).await;
    let mut args = azure.args(&s, "shop");
    args.extend(["--azure-production-scope".to_string(), azure.app.clone()]);
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let release = common::wait("the Release to stop at staging", 3 * MINUTE, || async {
        let list = s.releases().list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|r| {
            r.status
                .as_ref()
                .is_some_and(|st| st.conditions.iter().any(|c| c.message.contains("--azure-production-scope")))
        })
    })
    .await;
    let messages = release.status.expect("status").conditions.iter().map(|c| c.message.clone()).collect::<Vec<_>>();
    assert!(
        messages.iter().any(|m| m.contains("only an approved Promotion")),
        "{messages:?}\n{}",
        controller.log_tail()
    );
    let writes = azure.standin.requests().await.expect("log");
    assert!(
        !writes.iter().any(|r| r.method != "GET" && r.path.contains("/containerApps/")),
        "nothing was written: {writes:?}"
    );
    assert_eq!(azure.traffic().await, [("web--v1".to_string(), 100, None)]);
    drop(controller);
}
