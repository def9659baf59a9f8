//! The local control plane is a real one: real versions, real TLS users, real RBAC, real
//! admission, and workloads that progress on simulated nodes.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tidegate_testenv::{TestEnv, shared, tools, workloads};

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("test object is well-formed")
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn api_server_reports_the_pinned_kubernetes_version() {
    let env = shared().expect("environment starts");
    let client = env.client().await.expect("admin client");
    let version = client.apiserver_version().await.expect("/version answers");
    assert_eq!(version.git_version, tools::KUBERNETES_VERSION);
    assert!(env.server().starts_with("https://127.0.0.1:"), "served over TLS on loopback: {}", env.server());
}

#[tokio::test]
async fn deployment_becomes_available_on_simulated_nodes() {
    let env = shared().expect("environment starts");
    env.create_namespace("apps").await.expect("namespace");
    let client = env.client().await.expect("admin client");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "apps");
    let deployment: Deployment = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "registry.example.com/web@sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc"}]}
            }
        }
    }));
    deployments.create(&PostParams::default(), &deployment).await.expect("create Deployment");
    eventually("Deployment apps/web to become Available", Duration::from_secs(90), || {
        let deployments = deployments.clone();
        async move { deployments.get("web").await.is_ok_and(|d| workloads::deployment_available(&d)) }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client, "apps");
    let pods = pods.list(&ListParams::default().labels("app=web")).await.expect("list pods");
    assert_eq!(pods.items.len(), 3);
    for pod in pods.items {
        let spec = pod.spec.expect("pod spec");
        assert!(spec.node_name.is_some_and(|n| n.starts_with("kwok-node-")), "scheduled onto a kwok node");
        assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    }
}

#[tokio::test]
async fn job_completes_on_simulated_nodes() {
    let env = shared().expect("environment starts");
    env.create_namespace("batch").await.expect("namespace");
    let client = env.client().await.expect("admin client");
    let jobs: Api<Job> = Api::namespaced(client, "batch");
    let job: Job = from_json(json!({
        "metadata": {"name": "report"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "app", "image": "registry.example.com/report@sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc"}]
                }
            }
        }
    }));
    jobs.create(&PostParams::default(), &job).await.expect("create Job");
    eventually("Job batch/report to complete", Duration::from_secs(90), || {
        let jobs = jobs.clone();
        async move { jobs.get("report").await.is_ok_and(|j| workloads::job_complete(&j)) }
    })
    .await;
}

#[tokio::test]
async fn user_without_rights_is_forbidden() {
    let env = shared().expect("environment starts");
    let mallory = env.client_for("mallory", &[]).await.expect("client for mallory");
    let pods: Api<Pod> = Api::namespaced(mallory, "default");
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("User \"mallory\""), "{}", status.message);
        }
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn role_binding_grants_a_certificate_user_exactly_its_rights() {
    let env = shared().expect("environment starts");
    env.create_namespace("rbac").await.expect("namespace");
    let admin = env.client().await.expect("admin client");
    tidegate_testenv::apply::apply_yaml(
        &admin,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: configmap-reader, namespace: rbac}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers, namespace: rbac}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: configmap-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: readers}
"#,
        "rbac",
        "test",
    )
    .await
    .expect("apply RBAC");
    let reader = env.client_for("rita", &["readers"]).await.expect("client for rita");
    let configmaps: Api<ConfigMap> = Api::namespaced(reader, "rbac");
    configmaps.list(&ListParams::default()).await.expect("a member of readers may list configmaps");
    let cm: ConfigMap = from_json(json!({"metadata": {"name": "x"}}));
    let err = configmaps.create(&PostParams::default(), &cm).await.expect_err("but may not create them");
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 403), "{err:?}");
}

#[tokio::test]
async fn client_certificate_carries_user_and_groups() {
    let env = shared().expect("environment starts");
    let client = env.client_for("alice", &["tidegate-approvers", "team-shop"]).await.expect("client for alice");
    let reviews: Api<SelfSubjectReview> = Api::all(client);
    let review: SelfSubjectReview = from_json(json!({}));
    let review = reviews.create(&PostParams::default(), &review).await.expect("SelfSubjectReview");
    let user = review.status.and_then(|s| s.user_info).expect("user info");
    assert_eq!(user.username.as_deref(), Some("alice"));
    let groups = user.groups.unwrap_or_default();
    for group in ["tidegate-approvers", "team-shop", "system:authenticated"] {
        assert!(groups.iter().any(|g| g == group), "{group} missing from {groups:?}");
    }
}

#[tokio::test]
async fn validating_admission_policy_is_enforced() {
    let env = shared().expect("environment starts");
    env.create_namespace("vap").await.expect("namespace");
    let admin = env.client().await.expect("admin client");
    tidegate_testenv::apply::apply_yaml(
        &admin,
        r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: no-forbidden-configmaps}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [configmaps]}
  validations:
  - expression: "!has(object.data) || !('forbidden' in object.data)"
    message: "data.forbidden is not allowed here"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: no-forbidden-configmaps}
spec:
  policyName: no-forbidden-configmaps
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: vap}
"#,
        "default",
        "test",
    )
    .await
    .expect("apply policy");
    let configmaps: Api<ConfigMap> = Api::namespaced(admin, "vap");
    // The policy takes effect once the API server has compiled it; until then creates succeed.
    let mut attempt = 0;
    eventually("the ValidatingAdmissionPolicy to deny", Duration::from_secs(30), || {
        attempt += 1;
        let configmaps = configmaps.clone();
        let cm: ConfigMap =
            from_json(json!({"metadata": {"name": format!("probe-{attempt}")}, "data": {"forbidden": "1"}}));
        async move {
            match configmaps.create(&PostParams::default(), &cm).await {
                Err(kube::Error::Api(s)) => s.message.contains("data.forbidden is not allowed here"),
                _ => false,
            }
        }
    })
    .await;
    let allowed: ConfigMap = from_json(json!({"metadata": {"name": "fine"}, "data": {"ok": "1"}}));
    configmaps.create(&PostParams::default(), &allowed).await.expect("a compliant ConfigMap is admitted");
}

/// Dropping an environment, also while a test panics, stops its processes and removes its files.
#[test]
fn environment_is_torn_down_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let env = runtime
            .block_on(TestEnv::start_with(tidegate_testenv::Options {
                nodes: 1,
                install_crds: false,
                ..Default::default()
            }))
            .expect("second environment starts");
        tx.send((env.pids(), env.dir().to_path_buf())).expect("send");
        panic!("simulated test failure with a running environment");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let (pids, dir) = rx.recv().expect("environment details");
    assert_eq!(pids.len(), 5, "etcd, kube-apiserver, controller-manager, scheduler, kwok");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(stat.is_empty() || stat.contains(") Z "), "process {pid} still runs: {stat}");
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
}
