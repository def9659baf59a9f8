//! The Deployment cache against a real API server: the controller, with only its shipped rights
//! (ClusterRole `tidegate-controller`), watches a target namespace's Deployments as a policy
//! namespace's deployer, and the reads that only look are answered from what that watch saw,
//! only for that policy namespace, and only while the watch is current.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tidegate_api::image_policy::{KubernetesTarget, StrategyKind};
use tidegate_core::rollout::{Retire, RolloutPlan};
use tidegate_providers::authz::Reach;
use tidegate_providers::kubernetes::{Change, Resolved, WorkloadChanges};
use tidegate_testenv::{apply, shared};

mod shipped_rbac;

const CONTROLLER_USER: &str = "deployment-cache-test-controller";
const IMAGE: &str = "registry.example.com/shop/app@sha256:";

fn image(fill: char) -> String {
    format!("{IMAGE}{}", fill.to_string().repeat(64))
}

const IN_PLACE: RolloutPlan = RolloutPlan {
    strategy: StrategyKind::Rolling,
    side_by_side: false,
    switch_traffic: false,
    retire_previous: Retire::NotApplicable,
};

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": image}]}}
        }
    }))
    .expect("deployment")
}

/// Waits for the next change the watch reports that `wanted` accepts.
async fn next(changes: &mut futures::stream::BoxStream<'static, Change>, what: &str, wanted: impl Fn(&Change) -> bool) {
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(change) = changes.next().await {
            if wanted(&change) {
                return Some(change);
            }
        }
        None
    })
    .await;
    assert!(matches!(found, Ok(Some(_))), "{what}: {found:?}");
}

#[tokio::test]
async fn looks_are_answered_from_the_deployers_own_current_watch() {
    let env = shared().expect("environment starts");
    let admin = shipped_rbac::install(env, CONTROLLER_USER, "deployment-cache-test").await;
    let (team, other, prod) = ("cache-team", "cache-other", "cache-prod");
    for namespace in [team, other, prod] {
        env.create_namespace(namespace).await.expect("namespace");
    }
    for namespace in [team, other] {
        let deployer = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: tidegate-deployer, namespace: {namespace}}}\n"
        );
        apply::apply_yaml(&admin, &deployer, namespace, "deployment-cache-test").await.expect("deployer");
    }
    // Only `team`'s deployer is bound in `prod`.
    let bound = format!(
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: tidegate-deployer-from-{team}, namespace: {prod}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-deployer}}
subjects:
- {{kind: ServiceAccount, name: tidegate-deployer, namespace: {team}}}
"#
    );
    apply::apply_yaml(&admin, &bound, prod, "deployment-cache-test").await.expect("bind team's deployer");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), prod);
    deployments.create(&PostParams::default(), &deployment("web", &image('a'))).await.expect("create web");

    let config = shipped_rbac::config(env, CONTROLLER_USER).await;
    let reach = Arc::new(Reach::new(config, "deployment-cache-test"));
    let target: KubernetesTarget = serde_json::from_value(serde_json::json!({
        "kind": "Deployment", "namespace": prod, "name": "web"
    }))
    .expect("target");
    let hits = || reach.deployment_cache().hits();
    let look = |policy_namespace: &'static str| {
        let reach = reach.clone();
        let target = target.clone();
        async move {
            let targets = reach.targets(policy_namespace).expect("targets");
            targets.live(&Resolved::new(&target, policy_namespace), &IN_PLACE).await.map(|l| l.image)
        }
    };

    // Before any watch, a look reads the API server.
    assert_eq!(look(team).await.expect("team may read prod"), Some(image('a')));
    assert_eq!(hits(), 0);

    let mut changes = reach.deployments(team, prod).expect("watch");
    next(&mut changes, "the watch lists prod", |c| *c == Change::Listed).await;
    assert_eq!(look(team).await.expect("look"), Some(image('a')));
    assert_eq!(hits(), 1, "answered from the watch");

    // Someone changes production: once the change is reported, a look sees it.
    let patch =
        serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image('b')}]}}}});
    deployments.patch("web", &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("set image");
    // Earlier changes (the Deployment controller's status writes) may be reported first; each
    // look is answered from the watch, and the one after the patch's change shows it.
    let mut seen = None;
    for _ in 0..20 {
        next(&mut changes, "a change of web", |c| *c == Change::Changed("web".into())).await;
        let before = hits();
        seen = look(team).await.expect("look");
        assert_eq!(hits(), before + 1, "answered from the watch");
        if seen == Some(image('b')) {
            break;
        }
    }
    assert_eq!(seen, Some(image('b')), "the change, once reported");

    // Another namespace's deployer may not read prod: nothing is answered for it from team's
    // watch, its own read is refused by the API server, and so is its own watch.
    let refused = |before: u64| {
        let look = look(other);
        async move {
            let error = look.await.expect_err("other's deployer may not read prod");
            assert!(error.to_string().contains("forbidden"), "{error}");
            assert_eq!(hits(), before, "nothing answered from another deployer's watch");
        }
    };
    refused(hits()).await;
    let mut others = reach.deployments(other, prod).expect("watch");
    next(&mut others, "the other deployer's watch is refused", |c| matches!(c, Change::Failed(_))).await;
    refused(hits()).await;
    drop(others);

    // An ended watch answers nothing: the next look reads the API server again.
    drop(changes);
    let before = hits();
    assert_eq!(look(team).await.expect("look"), Some(image('b')));
    assert_eq!(hits(), before);
}
