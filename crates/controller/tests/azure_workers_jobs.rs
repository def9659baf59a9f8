//! Azure workers and jobs end to end, against the local ARM stand-in and the local control plane.
//!
//! - A `worker` stages in a Container App of its own and, only after approval, gets a new
//!   revision in production: `replace` deactivates the previous revision once the new one is
//!   healthy, `overlap` keeps both active through the monitor window, and a Single revision mode
//!   app is switched by Azure itself.
//! - A `job` is updated directly: on staging one verification execution is started and awaited
//!   (a failed one stops the Release, production untouched), production gets the digest after
//!   approval and no execution.
//! - A controller killed in the middle of the production switch (slow, throttled ARM) resumes
//!   where Azure is: one revision for the candidate, all traffic on it.
//!
//! Every scenario reads Azure's own state (apps, revisions, jobs, executions, the request log).

mod common;

use std::time::Duration;

use common::azure::{Azure, image_in, on, quick};
use common::{BEFORE, CLEAN_REPORT, MINUTE, REPO, Scenario};
use serde_json::{Value, json};
use tidegate_api::{Promotion, PromotionPhase, ReleasePhase};
use tidegate_testenv::azure::{AzureStandInOptions, LoggedRequest};

/// The resource group granted to every scenario's namespace.
const GROUP: &str = "work";

fn start(s: &Scenario, azure: &Azure) -> common::ControllerProcess {
    let args = azure.args(s, GROUP);
    s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// One workload `name` of `kind` with `strategy` (or its default), staged in `staging` and
/// released to `production`; no staging tests; a one-minute monitor window.
fn policy(name: &str, kind: &str, strategy: Option<&str>, staging: Value, production: Value) -> Value {
    let mut workload = json!({"name": name, "kind": kind, "staging": staging, "production": production});
    if let Some(strategy) = strategy {
        workload["strategy"] = json!({"type": strategy});
    }
    json!({
        "workloads": [workload],
        "tests": null,
        "promotion": {"requiredApprovals": 1, "monitorWindow": "1m"}
    })
}

fn app_target(id: &str) -> Value {
    json!({"containerApp": {"resourceId": id, "container": "app"}})
}

/// Triggers a Release, passes its scan, and waits for its Promotion to await approval.
async fn awaiting_approval(s: &Scenario) -> Promotion {
    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    s.promotion_in(PromotionPhase::AwaitingApproval, 3 * MINUTE).await
}

async fn approve(s: &Scenario, promotion: &Promotion) {
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &promotion.metadata.name.clone().expect("name"), "alice").await.expect("approve");
}

/// The candidate image and the revision name Tidegate gives it in app `app`.
fn candidate(promotion: &Promotion, app: &str) -> (String, String) {
    let hex = promotion.spec.digest.trim_start_matches("sha256:");
    (format!("{REPO}@{}", promotion.spec.digest), format!("{app}--tg-{}", &hex[..12]))
}

fn time(request: &LoggedRequest) -> jiff::Timestamp {
    request.time.parse().expect("RFC 3339 time")
}

fn writes_on<'a>(requests: &'a [LoggedRequest], resource: &str) -> Vec<&'a LoggedRequest> {
    requests.iter().filter(|r| r.method != "GET" && on(r, resource)).collect()
}

fn is_active(revision: &Value) -> bool {
    revision["properties"]["active"].as_bool() == Some(true)
}

/// (name, active, image, traffic weight) of every revision of `app`, oldest first.
async fn revisions(azure: &Azure, app: &str) -> Vec<(String, bool, Option<String>, i64)> {
    let mut list = azure.revisions(app).await;
    list.sort_by_key(|r| r["properties"]["createdTime"].as_str().unwrap_or_default().to_string());
    list.iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default().to_string(),
                is_active(r),
                image_in(&r["properties"]["template"]),
                r["properties"]["trafficWeight"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// Every write to a worker app changed only the image of container `app` (its env and resources
/// sent back as they were) and the revision suffix.
fn assert_only_image_written(requests: &[LoggedRequest], app: &str) {
    for write in requests.iter().filter(|r| (r.method == "PATCH" || r.method == "PUT") && on(r, app)) {
        let body = write.json().expect("JSON body");
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "only properties: {body}");
        let template = &body["properties"]["template"];
        assert_eq!(body["properties"].as_object().map(|o| o.len()), Some(1), "only the template: {body}");
        let keys: Vec<&String> = template.as_object().expect("template").keys().collect();
        assert!(keys.iter().all(|k| *k == "containers" || *k == "revisionSuffix"), "{keys:?}");
        let containers = template["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "{template}");
        assert!(containers[0]["env"].is_array() && containers[0]["resources"]["memory"] == "1Gi", "{template}");
    }
}

/// Staging and production worker apps in the granted group, neither with ingress: staging in
/// Single revision mode, production in Multiple (`multiple`) or Single revision mode.
async fn worker_apps(azure: &Azure, multiple: bool) -> (String, String) {
    let staging = azure.seed_app(GROUP, "orders-staging", false, false).await;
    let production = azure.seed_app(GROUP, "orders", multiple, false).await;
    (staging, production)
}

/// Staging ran the candidate as its only active revision, and production was not written to.
async fn assert_staged_only(azure: &Azure, staging: &str, production: &str, image: &str) {
    let staged = revisions(azure, staging).await;
    let active: Vec<_> = staged.iter().filter(|r| r.1).collect();
    assert_eq!(active.len(), 1, "one active staging revision: {staged:?}");
    assert_eq!(active[0].2.as_deref(), Some(image), "{staged:?}");
    let live = revisions(azure, production).await;
    assert_eq!(
        live,
        [("orders--v1".to_string(), true, Some(format!("{REPO}@{BEFORE}")), 100)],
        "production as it was before approval"
    );
    let requests = azure.requests().await;
    assert!(writes_on(&requests, production).is_empty(), "nothing written to production before approval");
}

#[tokio::test]
async fn a_replaced_worker_stops_its_previous_revision_once_the_new_one_is_healthy() {
    let s = Scenario::new("azure-worker-replace").await;
    let provisioning = Duration::from_millis(1500);
    let azure = Azure::empty(GROUP, AzureStandInOptions { provisioning_delay: provisioning, ..quick() }).await;
    let (staging, production) = worker_apps(&azure, true).await;
    s.policy(policy("orders", "worker", Some("replace"), app_target(&staging), app_target(&production))).await;
    let controller = start(&s, &azure);

    let promotion = awaiting_approval(&s).await;
    let (image, revision) = candidate(&promotion, "orders");
    assert_staged_only(&azure, &staging, &production, &image).await;

    // Throughout the switch some revision is active and healthy: the worker never stops consuming.
    let watch = azure.watch_list(&format!("{production}/revisions"), assert_serving).await;
    approve(&s, &promotion).await;
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    watch.abort();
    if let Err(e) = watch.await
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
    let live = revisions(&azure, &production).await;
    assert_eq!(
        live,
        [
            ("orders--v1".to_string(), false, Some(format!("{REPO}@{BEFORE}")), 0),
            (revision.clone(), true, Some(image.clone()), 100)
        ],
        "the candidate is the only active revision while monitored\n{}",
        controller.log_tail()
    );
    let health = azure.revision(&production, &revision).await;
    assert_eq!(health["properties"]["healthState"], "Healthy", "{health}");

    // One revision created; the previous one deactivated only after the new one was provisioned
    // and healthy (the stand-in provisions it `provisioning` after the write).
    let requests = azure.requests().await;
    let writes = writes_on(&requests, &production);
    let creates: Vec<_> = writes.iter().filter(|r| r.method == "PATCH" && r.status == 202).collect();
    assert_eq!(creates.len(), 1, "{writes:#?}");
    let suffix = &revision["orders--".len()..];
    assert_eq!(creates[0].json().expect("body")["properties"]["template"]["revisionSuffix"], json!(suffix));
    let deactivate = writes
        .iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/revisions/orders--v1/deactivate") && r.status == 200)
        .unwrap_or_else(|| panic!("the previous revision was deactivated: {writes:#?}"));
    let waited = time(deactivate).duration_since(time(creates[0]));
    assert!(
        waited >= jiff::SignedDuration::try_from(provisioning).expect("duration"),
        "deactivated {waited:?} after the candidate was written, before it could be healthy"
    );
    assert!(!writes.iter().any(|r| r.path.contains(&format!("{revision}/deactivate"))), "{writes:#?}");
    assert_only_image_written(&requests, &production);

    let done = s.promotion_in(PromotionPhase::Succeeded, 3 * MINUTE).await;
    assert_eq!(done.status.and_then(|st| st.previous_digest), Some(BEFORE.to_string()));
    let live = revisions(&azure, &production).await;
    assert_eq!(live.iter().filter(|r| r.1).map(|r| r.0.as_str()).collect::<Vec<_>>(), [revision.as_str()]);
    assert_eq!(live.iter().filter(|r| r.2.as_deref() == Some(&image)).count(), 1, "{live:?}");
    drop(controller);
}

#[tokio::test]
async fn an_overlapping_worker_keeps_both_revisions_through_the_monitor_window() {
    let s = Scenario::new("azure-worker-overlap").await;
    let azure = Azure::empty(GROUP, quick()).await;
    let (staging, production) = worker_apps(&azure, true).await;
    s.policy(policy("orders", "worker", Some("overlap"), app_target(&staging), app_target(&production))).await;
    let controller = start(&s, &azure);

    let promotion = awaiting_approval(&s).await;
    let (image, revision) = candidate(&promotion, "orders");
    assert_staged_only(&azure, &staging, &production, &image).await;

    approve(&s, &promotion).await;
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    let live = revisions(&azure, &production).await;
    assert_eq!(
        live.iter().map(|r| (r.0.as_str(), r.1)).collect::<Vec<_>>(),
        [("orders--v1", true), (revision.as_str(), true)],
        "both consume during the monitor window\n{}",
        controller.log_tail()
    );
    let requests = azure.requests().await;
    assert!(!requests.iter().any(|r| r.path.ends_with("/deactivate")), "nothing deactivated yet");

    s.promotion_in(PromotionPhase::Succeeded, 2 * MINUTE).await;
    common::wait("the previous revision to be deactivated", MINUTE, || async {
        (!is_active(&azure.revision(&production, "orders--v1").await)).then_some(())
    })
    .await;
    let requests = azure.requests().await;
    let writes = writes_on(&requests, &production);
    let create = writes.iter().find(|r| r.method == "PATCH" && r.status == 202).expect("the revision was created");
    let deactivate = writes.iter().find(|r| r.path.ends_with("/revisions/orders--v1/deactivate")).expect("deactivated");
    let waited = time(deactivate).duration_since(time(create));
    assert!(
        waited >= jiff::SignedDuration::from_secs(55),
        "deactivated {waited:?} after the switch: before the window ended"
    );
    let live = revisions(&azure, &production).await;
    assert_eq!(live.iter().filter(|r| r.1).map(|r| r.0.as_str()).collect::<Vec<_>>(), [revision.as_str()]);
    assert_eq!(live.last().and_then(|r| r.2.clone()), Some(image));
    assert_only_image_written(&requests, &production);
    drop(controller);
}

#[tokio::test]
async fn a_single_revision_worker_is_switched_by_azure_itself() {
    let s = Scenario::new("azure-worker-single").await;
    let azure = Azure::empty(GROUP, quick()).await;
    let (staging, production) = worker_apps(&azure, false).await;
    s.policy(policy("orders", "worker", Some("replace"), app_target(&staging), app_target(&production))).await;
    let controller = start(&s, &azure);

    let promotion = awaiting_approval(&s).await;
    let (image, revision) = candidate(&promotion, "orders");
    assert_staged_only(&azure, &staging, &production, &image).await;

    approve(&s, &promotion).await;
    s.promotion_in(PromotionPhase::Succeeded, 3 * MINUTE).await;
    let live = revisions(&azure, &production).await;
    assert_eq!(
        live,
        [
            ("orders--v1".to_string(), false, Some(format!("{REPO}@{BEFORE}")), 0),
            (revision.clone(), true, Some(image.clone()), 100)
        ],
        "Azure moved everything to the new revision\n{}",
        controller.log_tail()
    );
    let app = azure.get(&production).await;
    assert_eq!(app["properties"]["latestRevisionName"], json!(revision), "{app}");
    assert_eq!(app["properties"]["latestReadyRevisionName"], json!(revision), "{app}");
    assert_eq!(app["properties"]["configuration"]["activeRevisionsMode"], "Single", "the mode was left alone");
    // Tidegate wrote the image once and left the switch to Azure: no activation, no deactivation.
    let requests = azure.requests().await;
    let writes = writes_on(&requests, &production);
    assert_eq!(writes.iter().filter(|r| r.method == "PATCH" && r.status == 202).count(), 1, "{writes:#?}");
    assert!(!writes.iter().any(|r| r.method == "POST"), "{writes:#?}");
    assert_only_image_written(&requests, &production);
    drop(controller);
}

/// At least one revision in a snapshot is active and healthy.
fn assert_serving(revisions: &[Value]) {
    let serving = revisions.iter().filter(|r| is_active(r) && r["properties"]["healthState"] == "Healthy").count();
    assert!(serving > 0, "no revision active and healthy: {revisions:#?}");
}

fn job_policy(staging: &str, production: &str) -> Value {
    policy(
        "report",
        "job",
        None,
        json!({"containerAppsJob": {"resourceId": staging, "container": "app", "verifyExecution": true}}),
        json!({"containerAppsJob": {"resourceId": production, "container": "app"}}),
    )
}

/// (name, status, image) of every execution of `job`.
async fn executions(azure: &Azure, job: &str) -> Vec<(String, String, Option<String>)> {
    azure
        .executions(job)
        .await
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["properties"]["status"].as_str().unwrap_or_default().to_string(),
                image_in(&e["properties"]["template"]),
            )
        })
        .collect()
}

async fn job_image(azure: &Azure, job: &str) -> Option<String> {
    image_in(&azure.get(job).await["properties"]["template"])
}

#[tokio::test]
async fn a_job_is_verified_by_one_staging_execution_and_updated_directly_after_approval() {
    let s = Scenario::new("azure-job").await;
    let azure = Azure::empty(GROUP, AzureStandInOptions { execution_delay: Duration::from_secs(2), ..quick() }).await;
    let staging = azure.seed_job(GROUP, "report-staging", &["report-staging-earlier"]).await;
    let production = azure.seed_job(GROUP, "report", &["report-earlier"]).await;
    s.policy(job_policy(&staging, &production)).await;
    let controller = start(&s, &azure);

    let promotion = awaiting_approval(&s).await;
    let (image, _) = candidate(&promotion, "report");
    let before = format!("{REPO}@{BEFORE}");

    // Staging: the job runs the candidate, and exactly one execution of it ran and succeeded.
    assert_eq!(job_image(&azure, &staging).await, Some(image.clone()), "{}", controller.log_tail());
    let ran = executions(&azure, &staging).await;
    let verification: Vec<_> = ran.iter().filter(|e| e.2.as_deref() == Some(&image)).collect();
    assert_eq!(verification.len(), 1, "{ran:?}");
    assert_eq!(verification[0].1, "Succeeded", "{ran:?}");
    let requests = azure.requests().await;
    let starts: Vec<_> = requests.iter().filter(|r| r.method == "POST" && r.path.ends_with("/start")).collect();
    assert_eq!(starts.len(), 1, "one execution started: {starts:#?}");
    assert!(on(starts[0], &staging), "{starts:#?}");
    // The Release waited for the execution: it was Verified only after the execution ended.
    let release = s.release_in(ReleasePhase::Verified, MINUTE).await;
    let staged_at = release.status.and_then(|st| st.staging).and_then(|st| st.finished_at).expect("staging record");
    assert!(staged_at.0 >= time(starts[0]) + jiff::SignedDuration::from_secs(1), "staged at {staged_at:?}");
    // Production untouched until approval.
    assert_eq!(job_image(&azure, &production).await, Some(before.clone()));
    assert!(writes_on(&requests, &production).is_empty(), "nothing written to production before approval");

    approve(&s, &promotion).await;
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    assert_eq!(job_image(&azure, &production).await, Some(image.clone()));
    let job = azure.get(&production).await;
    assert_eq!(job["properties"]["template"]["containers"][0]["env"], json!([{"name": "REPORT", "value": "report"}]));
    assert_eq!(job["properties"]["configuration"]["triggerType"], "Manual", "{job}");
    assert_eq!(job["properties"]["provisioningState"], "Succeeded", "{job}");

    s.promotion_in(PromotionPhase::Succeeded, 2 * MINUTE).await;
    // Production got the digest and nothing else: one PATCH of the containers, no execution.
    let requests = azure.requests().await;
    let writes = writes_on(&requests, &production);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(writes[0].method, "PATCH");
    let body = writes[0].json().expect("JSON body");
    let containers = &body["properties"]["template"]["containers"];
    assert_eq!(body, json!({"properties": {"template": {"containers": containers}}}), "only the containers");
    assert_eq!(image_in(&body["properties"]["template"]), Some(image.clone()));
    assert_eq!(
        executions(&azure, &production).await,
        [("report-earlier".to_string(), "Succeeded".to_string(), Some(before))]
    );
    drop(controller);
}

#[tokio::test]
async fn a_failed_staging_execution_stops_the_release_and_production_is_untouched() {
    let s = Scenario::new("azure-job-fails").await;
    let azure = Azure::empty(GROUP, quick()).await;
    let staging = azure.seed_job(GROUP, "report-staging", &[]).await;
    let production = azure.seed_job(GROUP, "report", &[]).await;
    azure.standin.fail_next_execution(&staging).await.expect("fail the next execution");
    s.policy(job_policy(&staging, &production)).await;
    let controller = start(&s, &azure);

    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let release = common::wait("the Release to stop", 3 * MINUTE, || async {
        let list = s.releases().list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|r| {
            r.status.as_ref().is_some_and(|st| matches!(st.phase, ReleasePhase::Failed | ReleasePhase::Rejected))
        })
    })
    .await;
    let ran = executions(&azure, &staging).await;
    assert_eq!(ran.len(), 1, "{ran:?}\n{}", controller.log_tail());
    let (execution, status, image) = &ran[0];
    assert_eq!(status, "Failed");
    assert!(image.as_deref().is_some_and(|i| i.starts_with(&format!("{REPO}@sha256:")) && !i.ends_with(BEFORE)));
    let status = release.status.expect("status");
    let messages: Vec<&str> = status.conditions.iter().map(|c| c.message.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains(execution.as_str()) && m.contains("Failed")),
        "the Release names the failed execution {execution}: {messages:?}"
    );

    // Nothing reached production: no Promotion, no write, the job as it was.
    let promotions = s.promotions().list(&Default::default()).await.expect("promotions").items;
    assert!(promotions.is_empty(), "{promotions:?}");
    assert_eq!(job_image(&azure, &production).await, Some(format!("{REPO}@{BEFORE}")));
    assert!(executions(&azure, &production).await.is_empty());
    let requests = azure.requests().await;
    assert!(writes_on(&requests, &production).is_empty(), "{:#?}", writes_on(&requests, &production));
    // And the failed verification is not retried by starting more executions.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(executions(&azure, &staging).await.len(), 1);
    drop(controller);
}

#[tokio::test]
async fn a_controller_killed_during_the_production_switch_creates_one_revision_and_finishes_it() {
    let s = Scenario::new("azure-restart").await;
    let azure = Azure::empty(GROUP, quick()).await;
    let staging = azure.seed_app(GROUP, "shop-staging", false, true).await;
    let production = azure.seed_app(GROUP, "shop", true, true).await;
    s.policy(policy("shop", "http", Some("blueGreen"), app_target(&staging), app_target(&production))).await;
    let mut controller = start(&s, &azure);

    let promotion = awaiting_approval(&s).await;
    let (image, revision) = candidate(&promotion, "shop");
    let before = azure.traffic_on(&production).await;
    assert_eq!(before, [("shop--v1".to_string(), 100, None)], "{}", controller.log_tail());
    assert!(writes_on(&azure.requests().await, &production).is_empty());

    // Slow operations (4 s, and 20 s until the new revision is provisioned) and three 429s on
    // the first writes to production.
    azure.standin.set_delays(Duration::from_secs(4), Duration::from_secs(20)).await.expect("delays");
    azure.standin.throttle("PATCH", &production, 3, 1).await.expect("throttle");
    approve(&s, &promotion).await;
    let accepted = common::wait("Azure to accept the production write", 2 * MINUTE, || async {
        let requests = azure.requests().await;
        requests.into_iter().find(|r| r.method == "PATCH" && r.status == 202 && on(r, &production))
    })
    .await;
    controller.kill_and_restart();
    let killed = jiff::Timestamp::now();
    // Killed in the middle: Azure is still creating the candidate's revision.
    let app = azure.get(&production).await;
    assert_eq!(app["properties"]["provisioningState"], "InProgress", "{app}");
    let pending = azure.revision(&production, &revision).await;
    assert_eq!(pending["properties"]["provisioningState"], "Provisioning", "{pending}");
    let body = accepted.json().expect("JSON body");
    assert_eq!(
        image_in(&body["properties"]["template"]),
        Some(image.clone()),
        "the first accepted write creates the revision"
    );

    let monitoring = s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    let traffic = azure.traffic_on(&production).await;
    assert!(traffic.contains(&(revision.clone(), 100, None)), "{traffic:?}\n{}", controller.log_tail());
    assert_eq!(traffic.iter().map(|t| t.1).sum::<i64>(), 100, "{traffic:?}");
    let requests = azure.requests().await;
    let writes = writes_on(&requests, &production);
    let creating: Vec<_> = writes
        .iter()
        .filter(|r| {
            r.status == 202 && r.json().is_some_and(|b| image_in(&b["properties"]["template"]) == Some(image.clone()))
        })
        .collect();
    assert_eq!(creating.len(), 1, "one accepted write of the candidate's template: {writes:#?}");
    assert_eq!(writes.iter().filter(|r| r.status == 429).count(), 3, "the throttle answered: {writes:#?}");
    assert!(!writes.iter().any(|r| r.status == 409), "no write while Azure was still busy: {writes:#?}");
    // The restarted controller did the rest: the traffic switch, and no second template write.
    let after: Vec<_> = writes.iter().filter(|r| time(r) > killed).collect();
    assert!(
        after.iter().any(|r| r.method == "PATCH"
            && r.status == 202
            && r.json().is_some_and(|b| b["properties"].get("template").is_none())),
        "the restarted controller switched the traffic: {after:#?}"
    );
    let live = revisions(&azure, &production).await;
    let running: Vec<_> = live.iter().filter(|r| r.2.as_deref() == Some(&image)).collect();
    assert_eq!(running.len(), 1, "exactly one revision runs the candidate: {live:?}");
    assert_eq!(running[0].0, revision, "{live:?}");
    assert_eq!(running[0].3, 100, "{live:?}");
    assert_eq!(monitoring.spec.digest, promotion.spec.digest);

    s.promotion_in(PromotionPhase::Succeeded, 2 * MINUTE).await;
    common::wait("the previous revision to be deactivated", MINUTE, || async {
        (!is_active(&azure.revision(&production, "shop--v1").await)).then_some(())
    })
    .await;
    let live = revisions(&azure, &production).await;
    assert_eq!(live.len(), 2, "{live:?}");
    drop(controller);
}
