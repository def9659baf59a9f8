//! A production that accepts only promoted images, end to end: in a namespace labelled
//! `tidegate.dev/production=true` (`deploy/production-policy.yaml` installed as shipped),
//! Tidegate's own promotion passes, a person's `set image` is refused, a break-glass change goes
//! through and is reported on the ImagePolicy (status, condition, Event) and on the next
//! Promotion, which shows that production drifted from what was approved; approving that one
//! changes production again (an image UPDATE only Tidegate's identity may make) and the drift
//! resolves. The policy's periodic looks are an hour apart here: drift and its resolution are seen
//! through the watch of the Deployments made as the namespace's deployer.

mod common;

use common::{CLEAN_REPORT, MINUTE, REPO, Scenario, http_server};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Namespace};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tidegate_api::{ImagePolicy, PromotionPhase};

const OTHER: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const THIRD: &str = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn set_image(image: &str, break_glass: Option<&str>) -> serde_json::Value {
    let mut patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
    if let Some(reason) = break_glass {
        patch["metadata"] = json!({"annotations": {"tidegate.dev/break-glass": reason}});
    }
    patch
}

/// The controller, with the policy's own periodic looks an hour apart: within a test, a policy
/// learns of its Deployments' changes only from its watch of them (or from its own objects).
fn watched_only(s: &Scenario) -> common::ControllerProcess {
    s.controller_with(&[
        "--builder",
        "in-process",
        "--observe-interval-seconds",
        "3600",
        "--resync-interval-seconds",
        "3600",
    ])
}

#[tokio::test]
async fn only_promotions_and_break_glass_change_production_and_drift_is_reported() {
    let s = Scenario::new("production-gate").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "triggers": {"rescan": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"requiredApprovals": 1, "monitorWindow": "1m"}
    }))
    .await;
    let label = json!({"metadata": {"labels": {"tidegate.dev/production": "true"}}});
    Api::<Namespace>::all(s.admin.clone())
        .patch(&s.ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("label production");

    // Tidegate's promotion passes the production policy. The policy never looks again on its own
    // within this test: what it reports below, it learns from its watch of the Deployments.
    let controller = watched_only(&s);
    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 2 * MINUTE).await;
    let name = promotion.metadata.name.clone().expect("name");
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("approve");
    let done = s.promotion_in(PromotionPhase::Succeeded, 3 * MINUTE).await;
    let promoted = format!("{REPO}@{}", done.spec.digest);
    assert_eq!(s.deployment_image(&s.ns, "web-green").await, Some(promoted.clone()), "{}", controller.log_tail());

    // A person with edit rights cannot change production's images, to a tag or another digest.
    s.bind("oncall-edit", "edit", "oncall", &s.ns).await;
    let oncall = Api::<Deployment>::namespaced(s.user("oncall", &[]).await, &s.ns);
    for image in [format!("{REPO}:hotfix"), format!("{REPO}@{OTHER}")] {
        let refused = oncall
            .patch("web-green", &PatchParams::default(), &Patch::Strategic(&set_image(&image, None)))
            .await
            .expect_err("production refuses a hand-made image change");
        let text = refused.to_string();
        assert!(text.contains("tidegate-production-images"), "{text}");
        assert!(text.contains("kubectl tidegate approve") && text.contains("tidegate.dev/break-glass"), "{text}");
    }

    // Break-glass: allowed, recorded with its author, reported as drift.
    let reason = "INC-4242 checkout down, pinning the last good build";
    oncall
        .patch(
            "web-green",
            &PatchParams::default(),
            &Patch::Strategic(&set_image(&format!("{REPO}@{OTHER}"), Some(reason))),
        )
        .await
        .expect("break-glass goes through");
    let policies: Api<ImagePolicy> = Api::namespaced(s.admin.clone(), &s.ns);
    let drift = common::wait("drift on the policy", MINUTE, || async {
        let status = policies.get("shop-app").await.ok()?.status?;
        status.drift.into_iter().next()
    })
    .await;
    assert_eq!(drift.workload, format!("Deployment {}/web", s.ns));
    assert_eq!(drift.image.as_deref(), Some(format!("{REPO}@{OTHER}").as_str()));
    assert_eq!(drift.approved_digest.as_deref(), Some(done.spec.digest.as_str()));
    assert_eq!(drift.break_glass.as_deref(), Some(reason));
    assert_eq!(drift.break_glass_by.as_deref(), Some("oncall"));
    let policy = policies.get("shop-app").await.expect("policy");
    let condition = policy.status.expect("status").conditions.into_iter().find(|c| c.type_ == "ProductionDrift");
    assert_eq!(condition.map(|c| c.status), Some("True".to_string()));
    let events = Api::<Event>::namespaced(s.admin.clone(), &s.ns);
    common::wait("a ProductionDrift Event", MINUTE, || async {
        let list = events.list(&ListParams::default().fields("reason=ProductionDrift")).await.ok()?;
        list.items.into_iter().find(|e| e.message.as_deref().is_some_and(|m| m.contains("break-glass by oncall")))
    })
    .await;

    // The same break-glass annotation does not open the gate a second time.
    let again = oncall
        .patch("web-green", &PatchParams::default(), &Patch::Strategic(&set_image(&promoted, Some(reason))))
        .await;
    assert!(again.is_err(), "a stale break-glass reason must not allow another change");

    // The next Promotion shows the drift to its approvers.
    s.trigger("second").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let next = common::wait("the next Promotion to show the drift", 3 * MINUTE, || async {
        let list = s.promotions().list(&Default::default()).await.ok()?;
        list.items.into_iter().filter(|p| p.metadata.name.as_deref() != Some(name.as_str())).find_map(|p| {
            let c = p.status?.conditions.into_iter().find(|c| c.type_ == "ProductionDrift")?;
            (c.status == "True").then_some(c)
        })
    })
    .await;
    assert!(next.message.contains(reason) && next.message.contains("oncall"), "{}", next.message);

    // Approving it changes an existing slot's image (an UPDATE the policy allows only to
    // Tidegate's impersonated deployer with the promotion extra), and the drift resolves.
    let next = common::wait("the next Promotion", MINUTE, || async {
        let list = s.promotions().list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|p| p.metadata.name.as_deref() != Some(name.as_str()))
    })
    .await;
    let next_name = next.metadata.name.clone().expect("name");
    s.approve(&alice, &next_name, "alice").await.expect("approve");
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    assert_eq!(
        s.deployment_image(&s.ns, "web").await,
        Some(format!("{REPO}@{}", next.spec.digest)),
        "{}",
        controller.log_tail()
    );
    common::wait("the drift to resolve", MINUTE, || async {
        let status = policies.get("shop-app").await.ok()?.status?;
        status.drift.is_empty().then_some(())
    })
    .await;
    drop(controller);
}

/// With the policy's own looks an hour apart and no Release or Promotion to wake it, a change of
/// its production Deployment made by someone else shows in its status within seconds: the
/// controller watches the target namespaces' Deployments as the policy namespace's deployer.
#[tokio::test]
async fn a_change_of_a_targeted_deployment_is_seen_through_the_deployers_watch() {
    let s = Scenario::new("workload-watch").await;
    s.policy(json!({
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
    }))
    .await;
    let deployments = Api::<Deployment>::namespaced(s.admin.clone(), &s.ns);
    let set = |digest: &'static str| {
        let deployments = deployments.clone();
        async move {
            let patch = set_image(&format!("{REPO}@{digest}"), None);
            deployments.patch("web", &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("set image");
        }
    };
    set(OTHER).await;
    let controller = watched_only(&s);
    let policies: Api<ImagePolicy> = Api::namespaced(s.admin.clone(), &s.ns);
    let recorded = |digest: &'static str| {
        let policies = policies.clone();
        async move {
            let status = policies.get("shop-app").await.ok()?.status?;
            (status.production_digest.as_deref() == Some(digest)).then_some(())
        }
    };
    common::wait("the first look to record production's digest", MINUTE, || recorded(OTHER)).await;
    // Give the watch of production a moment to list, then change production behind Tidegate.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    set(THIRD).await;
    common::wait("the change, seen through the watch", MINUTE / 2, || recorded(THIRD)).await;
    assert!(controller.logged("controller starting"), "{}", controller.log_tail());
}
