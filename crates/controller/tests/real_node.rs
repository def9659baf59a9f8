//! Staging tests that run real code: the test Job's Pod lands on the real node (kubelet,
//! containerd, runc), runs a program from the loopback registry, and when that program fails the
//! Release is rejected with what the program said (the end of its log, as its termination
//! message).
//!
//! Needs root (the real node changes host state); skipped otherwise, or with
//! `TIDEGATE_REAL_NODE=0`.

mod common;

use common::{CLEAN_REPORT, MINUTE, Scenario};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::json;
use tidegate_api::{Release, ReleasePhase};
use tidegate_testenv::real_node::{RealNode, RealNodeOptions, is_root, push_test_server_image};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};

#[tokio::test]
async fn a_failing_test_program_on_the_real_node_rejects_the_release_with_its_log() {
    if !is_root() || std::env::var("TIDEGATE_REAL_NODE").as_deref() == Ok("0") {
        eprintln!("skipped: the real node needs root (and TIDEGATE_REAL_NODE not 0)");
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
