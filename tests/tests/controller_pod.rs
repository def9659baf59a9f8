//! The controller as a product: the image `cargo xtask image` builds, pushed to a loopback
//! registry by digest, installed with the Helm chart, runs as Pods on the real node (kubelet,
//! containerd, runc): it reaches the API server through the in-cluster configuration, elects a
//! leader among its two replicas, and reconciles an ImagePolicy with the chart's least-privilege
//! RBAC.
//!
//! Needs root (the real node changes host state); skipped otherwise, or with
//! `TIDEGATE_REAL_NODE=0`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tidegate_api::ImagePolicy;
use tidegate_testenv::real_node::{RealNode, RealNodeOptions};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::{Options, TestEnv, helm_tool};

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// `cargo xtask image --push REPO --plain-http`: the release build (cached after the first) packed
/// into the image and pushed by digest; returns `repo@sha256:…`.
fn build_and_push_image(repository: &str) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_path(""))
        .args(["run", "--quiet", "-p", "xtask", "--", "image", "--push", repository, "--plain-http"])
        .output()
        .expect("run cargo xtask image");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "cargo xtask image failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().last().expect("the pushed reference").trim().to_string()
}

async fn wait<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_chart_runs_the_controller_image_on_the_real_node() {
    if !tidegate_testenv::real_node::available() {
        return;
    }
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let pushed = build_and_push_image(&format!("{host}/tidegate/controller:test"));
    let (repository, digest) = pushed.split_once('@').expect("repo@digest");

    let env = TestEnv::start_with(Options { nodes: 1, install_crds: false, ..Default::default() })
        .await
        .expect("environment");
    let mut node =
        RealNode::start(&env, &RealNodeOptions { plain_http_registries: vec![host.clone()], ..Default::default() })
            .await
            .expect("real node");
    node.expose_api_server(&env).expect("the API server at the kubernetes Service address");

    let helm = helm_tool::locate().expect("helm (run `cargo xtask tools`)");
    let home = tempfile::tempdir().expect("helm home");
    let values = home.path().join("values.yaml");
    std::fs::write(
        &values,
        serde_yaml::to_string(&json!({
            "image": {"repository": repository, "digest": digest},
            // Offline: no vulnerability database download from this machine.
            "trivy": {"enabled": true, "offline": true},
            "nodeSelector": {"tidegate.dev/real-node": "true"},
            "tolerations": [{"key": "tidegate.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}]
        }))
        .expect("values"),
    )
    .expect("write values");
    let chart = repo_path("charts/tidegate").display().to_string();
    let values = values.display().to_string();
    let kubeconfig = env.admin_kubeconfig_path();
    let args = [
        "install",
        "tidegate",
        &chart,
        "-n",
        "tidegate-system",
        "--create-namespace",
        "-f",
        &values,
        "--wait",
        "--timeout",
        "3m",
    ];
    let (ok, out, err) = helm_tool::run(&helm, home.path(), Some(&kubeconfig), &args);
    let client = env.client().await.expect("client");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "tidegate-system");
    if !ok {
        let list = pods.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        let states: Vec<String> = list
            .iter()
            .map(|p| format!("{:?}: {:?}", p.metadata.name, p.status.as_ref().map(|s| &s.container_statuses)))
            .collect();
        panic!("helm install: {out}{err}\npods: {states:#?}");
    }

    // Both replicas run the image, on the real node, and become ready.
    let selector = ListParams::default().labels("app.kubernetes.io/component=controller");
    let running = wait("both replicas ready", Duration::from_secs(90), || async {
        let list = pods.list(&selector).await.ok()?;
        let ready = |p: &Pod| {
            p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).is_some_and(|c| c.iter().all(|c| c.ready))
        };
        (list.items.len() == 2 && list.items.iter().all(ready)).then_some(list)
    })
    .await;
    for pod in &running.items {
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some(node.name()), "on the real node");
        let status = pod.status.as_ref().expect("status");
        let container = &status.container_statuses.as_ref().expect("containers")[0];
        assert!(container.image_id.ends_with(digest), "runs the pushed digest: {}", container.image_id);
        assert_eq!(container.restart_count, 0, "{container:?}");
    }
    let names: Vec<String> = running.items.iter().filter_map(|p| p.metadata.name.clone()).collect();

    // One of them leads: the Lease names a replica (its POD_NAME).
    let leases: Api<Lease> = Api::namespaced(client.clone(), "tidegate-system");
    let holder = wait("a leader", Duration::from_secs(60), || async {
        leases.get("tidegate-controller").await.ok()?.spec?.holder_identity
    })
    .await;
    assert!(names.contains(&holder), "the leader {holder} is one of {names:?}");

    // The controller, in its Pod, reconciles a policy through the API server.
    env.create_namespace("shop").await.expect("namespace");
    let text = std::fs::read_to_string(repo_path("docs/examples/20-imagepolicy.yaml")).expect("example policy");
    let mut policy: serde_json::Value = serde_yaml::from_str(&text).expect("policy");
    policy["metadata"]["namespace"] = json!("shop");
    let policies: Api<ImagePolicy> = Api::namespaced(client.clone(), "shop");
    policies
        .patch("shop-app", &PatchParams::apply("test").force(), &Patch::Apply(&policy))
        .await
        .expect("apply policy");
    let observed = wait("the controller to reconcile the policy", Duration::from_secs(90), || async {
        let status = policies.get("shop-app").await.ok()?.status?;
        status.observed_generation.is_some().then_some(status)
    })
    .await;
    // Nobody opted the namespaces in: the controller says so, through its deployer identity.
    let ready = observed.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.status, "False", "{ready:?}");

    let (ok, out, err) = helm_tool::run(
        &helm,
        home.path(),
        Some(&kubeconfig),
        &["uninstall", "tidegate", "-n", "tidegate-system", "--wait"],
    );
    assert!(ok, "helm uninstall: {out}{err}");
    let left = node.stop().await.expect("stop the node");
    assert!(left.is_clean(), "the real node left {left:?}");
}
