//! Staging tests that run real code: the test Job's Pod lands on the real node (kubelet,
//! containerd, runc), runs a program from the loopback registry, and when that program fails the
//! Release is rejected with what the program said (the end of its log, as its termination
//! message).
//!
//! Needs root (the real node changes host state); skipped otherwise, or with
//! `TIDEGATE_REAL_NODE=0`.

mod common;

use common::{CLEAN_REPORT, MINUTE, Scenario};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tidegate_api::{PromotionPhase, Release, ReleasePhase};
use tidegate_testenv::real_node::{RealNode, RealNodeOptions, push_test_server_image, push_test_server_image_as};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};

#[tokio::test]
async fn a_failing_test_program_on_the_real_node_rejects_the_release_with_its_log() {
    if !tidegate_testenv::real_node::available() {
        return;
    }
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    // The candidate, and the test program (the test server in its failing mode).
    let candidate = push_test_server_image(&registry, "shop/app").await.expect("candidate image");
    let program = push_test_server_image(&registry, "tools/smoke").await.expect("test program image");

    let s = Scenario::new("realnode-job").await;
    let node =
        RealNode::start(s.env, &RealNodeOptions { plain_http_registries: vec![host.clone()], ..Default::default() })
            .await
            .expect("real node");
    let job = format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: smoke\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      \
         restartPolicy: Never\n      nodeSelector: {{tidegate.dev/real-node: \"true\"}}\n      tolerations:\n      - {{key: \
         tidegate.dev/real-node, operator: Exists, effect: NoSchedule}}\n      containers:\n      - name: smoke\n        \
         image: {}\n        args: [crash]\n        env:\n        - {{name: TESTSERVER_CRASH_AFTER, value: 100ms}}\n",
        program.reference
    );
    let template: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "real-smoke"}, "data": {"job.yaml": job}}))
            .expect("template");
    Api::<ConfigMap>::namespaced(s.admin.clone(), &s.ns)
        .create(&PostParams::default(), &template)
        .await
        .expect("create the template");
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web"}}}],
        "tests": {"http": null, "job": {"templateConfigMap": "real-smoke"}}
    }))
    .await;
    let controller = s.controller_with(&["--plain-http-registry", &host]);
    let release: Release = serde_json::from_value(json!({
        "metadata": {"name": "shop-app-real"},
        "spec": {"policy": "shop-app", "reason": {"type": "Manual"}, "source": {"image": candidate.reference}}
    }))
    .expect("release");
    s.releases().create(&PostParams::default(), &release).await.expect("create release");
    s.upload_scan_report(CLEAN_REPORT).await;

    let ended = common::wait("the Release to end", 3 * MINUTE, || async {
        let r = s.releases().get("shop-app-real").await.ok()?;
        matches!(r.status.as_ref()?.phase, ReleasePhase::Rejected | ReleasePhase::Failed | ReleasePhase::Verified)
            .then_some(r)
    })
    .await;
    let status = ended.status.expect("status");
    assert_eq!(status.phase, ReleasePhase::Rejected, "{status:?}\n{}", controller.log_tail());
    let failed = status.tests.iter().find(|t| t.name == "job").expect("the job's result");
    let message = failed.message.clone().unwrap_or_default();
    assert!(!failed.passed, "{message}");
    // The program's own words, from its log, on the node where it ran.
    assert!(message.contains("container smoke exited 3"), "{message}");
    assert!(message.contains("crashing on purpose"), "{message}");
    assert!(s.promotions().list(&Default::default()).await.expect("list").items.is_empty(), "nothing to approve");
    drop(controller);
    let left = node.stop().await.expect("stop the node");
    assert!(left.is_clean(), "the real node left {left:?}");
}

/// The monitor window sees real restarts: production runs a real server on the real node; the
/// approved candidate really crashes there; the Promotion rolls back, and real Pods run the
/// previous digest again behind the Service.
#[tokio::test]
async fn a_candidate_that_crashes_on_the_real_node_is_rolled_back() {
    if !tidegate_testenv::real_node::available() {
        return;
    }
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let serving = push_test_server_image(&registry, "shop/app").await.expect("serving image");
    let crashing = push_test_server_image_as(&registry, "shop/app", "crash").await.expect("crashing image");
    assert_ne!(serving.digest, crashing.digest);

    let s = Scenario::new("realnode-rollback").await;
    let node =
        RealNode::start(s.env, &RealNodeOptions { plain_http_registries: vec![host.clone()], ..Default::default() })
            .await
            .expect("real node");
    // Production's web runs the serving image, for real, on the real node.
    let deployments: Api<Deployment> = Api::namespaced(s.admin.clone(), &s.ns);
    let patch = json!({"spec": {"replicas": 1, "template": {"spec": {
        "nodeSelector": {"tidegate.dev/real-node": "true"},
        "tolerations": [{"key": "tidegate.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "app", "image": serving.reference}]
    }}}});
    deployments.patch("web", &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("production web");
    let pods: Api<Pod> = Api::namespaced(s.admin.clone(), &s.ns);
    let running = |image: String| {
        let pods = pods.clone();
        let node = node.name().to_string();
        async move {
            let list = pods.list(&ListParams::default().labels("app.kubernetes.io/name=web")).await.ok()?;
            list.items
                .into_iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str()))
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .find(|p| {
                    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|c| {
                        c.iter().any(|c| c.image_id.ends_with(image.rsplit('@').next().unwrap_or_default()) && c.ready)
                    })
                })
        }
    };
    common::wait("production web running the serving image", 2 * MINUTE, || running(serving.reference.clone())).await;

    let (url, _) = common::http_server(200).await;
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}], "job": null},
        "promotion": {"monitorWindow": "3m"}
    }))
    .await;
    let controller = s.controller_with(&["--plain-http-registry", &host]);
    let release: Release = serde_json::from_value(json!({
        "metadata": {"name": "shop-app-crashing"},
        "spec": {"policy": "shop-app", "reason": {"type": "Manual"}, "source": {"image": crashing.reference}}
    }))
    .expect("release");
    s.releases().create(&PostParams::default(), &release).await.expect("create release");
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 2 * MINUTE).await;
    let name = promotion.metadata.name.expect("name");
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("approve");

    // The crashing candidate reaches production, restarts for real, and is rolled back.
    let rolled_back = s.promotion_in(PromotionPhase::RolledBack, 4 * MINUTE).await;
    let why = rolled_back.status.expect("status").conditions.into_iter().find(|c| c.type_ == "RolledBack");
    // Whichever the controller sees first: the container's restarts, or the new colour never
    // becoming Available because of them.
    assert!(
        why.as_ref().is_some_and(|c| c.message.contains("restart") || c.message.contains("web-green is not Available")),
        "{why:?}\n{}",
        controller.log_tail()
    );
    assert_eq!(s.service_slot(&s.ns, "web").await.as_deref(), Some("blue"), "traffic back on the previous colour");
    // Real Pods run the previous digest behind the Service.
    common::wait("the serving image running again", 2 * MINUTE, || running(serving.reference.clone())).await;
    drop(controller);
    let left = node.stop().await.expect("stop the node");
    assert!(left.is_clean(), "the real node left {left:?}");
}
