//! The controller as a product: the image `cargo xtask image` builds, pushed to a loopback
//! registry by digest, installed with the Helm chart, runs as Pods on the real node (kubelet,
//! containerd, runc). It reaches the API server through the in-cluster configuration and the
//! registry through the node's address for it, elects a leader among its two replicas, and
//! carries one whole pipeline with the chart's least-privilege RBAC: a base image update, the
//! rebuild, the scan report, the Notary Project signature, staging on real Pods, a real test Job,
//! a human approval, production on real Pods and the monitor window, while `helm upgrade` rolls
//! the controller to another image in the middle of the Promotion.
//!
//! Needs root (the real node changes host state); skipped otherwise, or with
//! `TIDEGATE_REAL_NODE=0`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;
use tidegate_api::{ImagePolicy, Promotion, PromotionPhase, Release, ReleasePhase};
use tidegate_testenv::real_node::{RealNode, RealNodeOptions, push_test_server_image, push_test_server_on_base};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::scanner_tools::file_layer;
use tidegate_testenv::{Options, TestEnv, apply, helm_tool, pki};

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

/// `cargo xtask image --push REPO --plain-http [extra]`: the release build (cached after the
/// first) packed into the image and pushed by digest; returns `repo@sha256:…`.
fn build_and_push_image(repository: &str, extra: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(repo_path(""))
        .args(["run", "--quiet", "-p", "xtask", "--", "image", "--push", repository, "--plain-http"])
        .args(extra)
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

/// The real node's selector and toleration, for a Pod template.
fn on_the_real_node() -> serde_json::Value {
    json!({
        "nodeSelector": {"tidegate.dev/real-node": "true"},
        "tolerations": [{"key": "tidegate.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}]
    })
}

/// Deployment `web` in `namespace` running `image` (the test server) on the real node, ready
/// when it answers `/healthz`, and Service `web` (port 80) in front of it.
fn web_workload(namespace: &str, image: &str) -> String {
    let placement = on_the_real_node();
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": placement["nodeSelector"],
                    "tolerations": placement["tolerations"],
                    "containers": [{
                        "name": "app", "image": image,
                        "ports": [{"containerPort": 8080, "name": "http"}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 2}
                    }]
                }
            }
        }
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http", "name": "http"}]}
    });
    format!("{deployment}\n---\n{service}\n")
}

/// The container statuses of the Pods of `app` in `namespace` that are running and ready.
async fn ready_images(pods: &Api<Pod>, app: &str) -> Vec<String> {
    let list =
        pods.list(&ListParams::default().labels(&format!("app={app}"))).await.map(|l| l.items).unwrap_or_default();
    list.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|c| c.ready)
        .map(|c| c.image_id.clone())
        .collect()
}

/// POSTs JSON `body` to `path` on `address` (a Pod, over the node's bridge); the answer is not
/// needed (the base trigger's interval notices the push too).
fn post(address: &str, path: &str, body: &str) {
    use std::io::{Read, Write};
    let Ok(address) = address.parse::<std::net::SocketAddr>() else { return };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5)) else { return };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(request.as_bytes());
    let _ = stream.read_to_end(&mut Vec::new());
}

#[tokio::test]
async fn the_chart_installed_controller_carries_a_release_through_real_pods_to_production() {
    if !tidegate_testenv::real_node::available() {
        return;
    }
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let env = TestEnv::start_with(Options { nodes: 1, install_crds: false, ..Default::default() })
        .await
        .expect("environment");
    let mut node = RealNode::start(&env, &RealNodeOptions::default()).await.expect("real node");
    node.expose_api_server(&env).expect("the API server at the kubernetes Service address");
    // One name for the registry that the host (containerd) and the Pods (the controller) share.
    let reg = node.expose_registry(&registry).expect("the registry at the node's address for it");

    let pushed = build_and_push_image(&format!("{reg}/tidegate/controller:test"), &[]);
    let (repository, digest) = pushed.split_once('@').expect("repo@digest");

    // The images: a base of one file layer, and the app (the test server) built on it, whose
    // manifest records the base as a build does.
    let images = registry.client();
    let base_v1 = vec![file_layer("etc/base-release", b"1\n")];
    let old_base = images.push_layered("base/runtime", "1", &base_v1, &[]).await.expect("base v1");
    let base_ref = format!("{reg}/base/runtime:1");
    let app = push_test_server_on_base(&registry, "shop/app", "1.0", &base_v1, &base_ref, &old_base)
        .await
        .expect("app image");
    let running = format!("{reg}/shop/app@{}", app.digest);
    let program = push_test_server_image(&registry, "tools/smoke").await.expect("test program");
    let program = format!("{reg}/tools/smoke@{}", program.digest);

    // Signing: the chart mounts the key from a Secret and the trust policy from a ConfigMap.
    let client = env.client().await.expect("client");
    let home = tempfile::tempdir().expect("helm home");
    let identity =
        pki::write_code_signing_identity(&home.path().join("notary"), "tidegate chart test", "tidegate").expect("keys");
    let read = |path: &PathBuf| std::fs::read_to_string(path).expect("identity file");
    env.create_namespace("tidegate-system").await.expect("namespace");
    let signing = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "tidegate-signing", "namespace": "tidegate-system"},
        "stringData": {"tls.key": read(&identity.key), "tls.crt": read(&identity.chain)}
    });
    let trust = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "tidegate-trust", "namespace": "tidegate-system"},
        "data": {"trustpolicy.json": read(&identity.trust_policy), "ca.pem": read(&identity.root)}
    });
    for object in [signing, trust] {
        let yaml = serde_json::to_string(&object).expect("object");
        apply::apply_yaml(&client, &yaml, "tidegate-system", "test").await.expect("signing configuration");
    }

    let helm = helm_tool::locate().expect("helm (run `cargo xtask tools`)");
    let values = home.path().join("values.yaml");
    let placement = on_the_real_node();
    let write_values = |repository: &str, digest: &str| {
        std::fs::write(
            &values,
            serde_yaml::to_string(&json!({
                "image": {"repository": repository, "digest": digest},
                "registry": {"plainHttp": [reg]},
                "signing": {"keySecret": "tidegate-signing", "trustConfigMap": "tidegate-trust", "trustStoreName": "tidegate"},
                // Offline: no vulnerability database download from this machine.
                "trivy": {"enabled": true, "offline": true},
                "nodeSelector": placement["nodeSelector"],
                "tolerations": placement["tolerations"]
            }))
            .expect("values"),
        )
        .expect("write values")
    };
    write_values(repository, digest);
    let chart = repo_path("charts/tidegate").display().to_string();
    let values_arg = values.display().to_string();
    let kubeconfig = env.admin_kubeconfig_path();
    let helm_args = |verb: &'static str| {
        vec![
            verb,
            "tidegate",
            chart.as_str(),
            "-n",
            "tidegate-system",
            "-f",
            values_arg.as_str(),
            "--wait",
            "--timeout",
            "3m",
        ]
    };
    let (ok, out, err) = helm_tool::run(&helm, home.path(), Some(&kubeconfig), &helm_args("install"));
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
    let controllers = ListParams::default().labels("app.kubernetes.io/component=controller");
    let replicas_on = |digest: String| {
        let pods = pods.clone();
        let controllers = controllers.clone();
        async move {
            let list = pods.list(&controllers).await.ok()?;
            let serving = |p: &Pod| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .is_some_and(|c| c.iter().all(|c| c.ready && c.image_id.ends_with(&digest)))
            };
            (list.items.len() == 2 && list.items.iter().all(serving)).then_some(list)
        }
    };
    let running_controllers =
        wait("both replicas ready", Duration::from_secs(90), || replicas_on(digest.to_string())).await;
    for pod in &running_controllers.items {
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some(node.name()), "on the real node");
        let container = &pod.status.as_ref().and_then(|s| s.container_statuses.clone()).expect("containers")[0];
        assert_eq!(container.restart_count, 0, "{container:?}");
    }
    let names: Vec<String> = running_controllers.items.iter().filter_map(|p| p.metadata.name.clone()).collect();

    // One of them leads: the Lease names a replica (its POD_NAME).
    let leases: Api<Lease> = Api::namespaced(client.clone(), "tidegate-system");
    let holder = wait("a leader", Duration::from_secs(60), || async {
        leases.get("tidegate-controller").await.ok()?.spec?.holder_identity
    })
    .await;
    assert!(names.contains(&holder), "the leader {holder} is one of {names:?}");

    // The team's namespaces: staging and production run the app on the real node; the owners
    // opt in to Tidegate's deployer and to unsigned scan reports; a test Job template.
    for ns in ["shop", "shop-staging"] {
        env.create_namespace(ns).await.expect("namespace");
        apply::apply_yaml(&client, &web_workload(ns, &running), ns, "test").await.expect("workload");
        let binding = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: tidegate-deployer-from-shop, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-deployer}}\n\
             subjects: [{{kind: ServiceAccount, name: tidegate-deployer, namespace: shop}}]\n"
        );
        apply::apply_yaml(&client, &binding, ns, "test").await.expect("opt in");
    }
    let job = serde_yaml::to_string(&json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "nodeSelector": placement["nodeSelector"],
            "tolerations": placement["tolerations"],
            "containers": [{"name": "smoke", "image": program, "args": ["get", "http://web.shop-staging.svc/healthz"]}]
        }}}
    }))
    .expect("job");
    let shop = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: tidegate-deployer, namespace: shop}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: tidegate-unsigned-scan-reports, namespace: shop}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-unsigned-scan-reports}}\n\
         subjects: [{{kind: ServiceAccount, name: tidegate-deployer, namespace: shop}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: chart-test-approvers}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-approver}}\n\
         subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}}]\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: smoke, namespace: shop}}\ndata:\n  job.yaml: {}\n",
        serde_json::to_string(&job).expect("job text")
    );
    apply::apply_yaml(&client, &shop, "shop", "test").await.expect("the shop namespace");
    let shop_pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let staging_pods: Api<Pod> = Api::namespaced(client.clone(), "shop-staging");
    wait("the workloads to run the app", Duration::from_secs(90), || async {
        let (a, b) = (ready_images(&shop_pods, "web").await, ready_images(&staging_pods, "web").await);
        (a.len() == 1 && b.len() == 1 && a[0].ends_with(&app.digest) && b[0].ends_with(&app.digest)).then_some(())
    })
    .await;

    let policy = json!({
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "ImagePolicy",
        "metadata": {"name": "shop-app", "namespace": "shop"},
        "spec": {
            "image": format!("{reg}/shop/app"),
            "triggers": {"baseImage": {"ref": base_ref, "interval": "1m"}},
            "build": {"strategy": "rebase"},
            "scan": {"scanner": "configMapReport", "blockSeverities": ["Critical", "High"]},
            "workloads": [{
                "name": "web", "kind": "http", "strategy": {"type": "rolling"},
                "staging": {"kubernetes": {"kind": "Deployment", "namespace": "shop-staging", "name": "web", "container": "app", "service": "web"}},
                "production": {"kubernetes": {"kind": "Deployment", "namespace": "shop", "name": "web", "container": "app", "service": "web"}}
            }],
            // The controller, in its Pod, checks the staging Service by its cluster name
            // (http://web.shop-staging.svc); the test Job's program does the same from its own Pod.
            "tests": {
                "http": [{"name": "health", "workload": "web", "path": "/healthz", "expectStatus": 200}],
                "job": {"templateConfigMap": "smoke"}
            },
            "promotion": {"monitorWindow": "1m", "autoRollback": true}
        }
    });
    let policies: Api<ImagePolicy> = Api::namespaced(client.clone(), "shop");
    policies
        .patch("shop-app", &PatchParams::apply("test").force(), &Patch::Apply(&policy))
        .await
        .expect("apply policy");
    wait("the controller to record the base digest", Duration::from_secs(90), || async {
        let status = policies.get("shop-app").await.ok()?.status?;
        (status.base_digest.as_deref() == Some(old_base.as_str())).then_some(())
    })
    .await;

    // The base's maintainers push a new digest under the same tag, and the registry notifies
    // both replicas (only the leader acts on it; the 1m interval would notice it too).
    let base_v2 = vec![file_layer("etc/base-release", b"2\n")];
    let new_base = images.push_layered("base/runtime", "1", &base_v2, &[]).await.expect("base v2");
    let notification = json!({"events": [{"action": "push",
        "target": {"repository": "base/runtime", "tag": "1", "digest": new_base},
        "request": {"host": reg}}]});
    for pod in &running_controllers.items {
        if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
            post(&format!("{ip}:8080"), "/webhooks/registry", &notification.to_string());
        }
    }

    // The Release rebuilds onto the new base; CI's scan report for the candidate is published.
    let releases: Api<Release> = Api::namespaced(client.clone(), "shop");
    let scanning = wait("a Release scanning its candidate", Duration::from_secs(120), || async {
        releases
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|r| r.status.as_ref().is_some_and(|s| s.phase == ReleasePhase::Scanning && s.digest.is_some()))
    })
    .await;
    let release_name = scanning.metadata.name.clone().expect("name");
    let status = scanning.status.clone().expect("status");
    let candidate = status.digest.clone().expect("digest");
    assert_ne!(candidate, app.digest, "a rebuilt image");
    let report = json!({"SchemaVersion": 2, "ArtifactName": status.image.clone().expect("image"),
        "CreatedAt": jiff::Timestamp::now().to_string(), "Results": [{"Target": "app", "Vulnerabilities": []}]});
    let report_map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "scan-candidate", "namespace": "shop",
            "labels": {"tidegate.dev/scan-report": "true"}, "annotations": {"tidegate.dev/digest": candidate}},
        "data": {"report.json": report.to_string()}
    });
    apply::apply_yaml(&client, &serde_json::to_string(&report_map).expect("report"), "shop", "test")
        .await
        .expect("publish the scan report");

    // Signed, deployed to staging on real Pods, tested by a real Job: Verified.
    let verified = wait("the Release to be Verified", Duration::from_secs(240), || async {
        let release = releases.get(&release_name).await.ok()?;
        let phase = release.status.as_ref()?.phase;
        assert!(
            !matches!(phase, ReleasePhase::Rejected | ReleasePhase::Failed | ReleasePhase::Superseded),
            "the Release ended {phase:?}: {:#?}",
            release.status
        );
        (phase == ReleasePhase::Verified).then_some(release)
    })
    .await;
    let results = &verified.status.as_ref().expect("status").tests;
    let health = results.iter().find(|t| t.name == "health").expect("the HTTP check's result");
    assert!(health.passed, "the staging Service answered: {health:?}");
    let staged = ready_images(&staging_pods, "web").await;
    assert!(staged.iter().all(|i| i.ends_with(&candidate)) && !staged.is_empty(), "staging runs {staged:?}");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "shop-staging");
    let test_jobs = jobs.list(&ListParams::default()).await.expect("jobs").items;
    assert!(
        test_jobs.iter().any(|j| j.status.as_ref().and_then(|s| s.succeeded) == Some(1)),
        "a test Job ran to success: {test_jobs:#?}"
    );
    assert!(verified.status.as_ref().and_then(|s| s.signature.as_ref()).is_some(), "signed: {:#?}", verified.status);
    let production = ready_images(&shop_pods, "web").await;
    assert!(production.iter().all(|i| i.ends_with(&app.digest)), "production untouched: {production:?}");

    // A human approves; the controller is upgraded to another image while it promotes.
    let promotions: Api<Promotion> = Api::namespaced(client.clone(), "shop");
    let promotion = wait("a Promotion awaiting approval", Duration::from_secs(60), || async {
        promotions
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.status.as_ref().is_some_and(|s| s.phase == PromotionPhase::AwaitingApproval))
    })
    .await;
    let promotion_name = promotion.metadata.name.clone().expect("name");
    let alice = env.client_for("alice", &[]).await.expect("alice");
    Api::<Promotion>::namespaced(alice, "shop")
        .patch(
            &promotion_name,
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"tidegate.dev/approved-by": "alice"}}})),
        )
        .await
        .expect("alice approves");
    wait("the Promotion to start", Duration::from_secs(60), || async {
        let phase = promotions.get(&promotion_name).await.ok()?.status?.phase;
        matches!(phase, PromotionPhase::Promoting | PromotionPhase::Monitoring).then_some(())
    })
    .await;
    let upgraded = build_and_push_image(
        &format!("{reg}/tidegate/controller:upgrade"),
        &["--no-build", "--source", "https://github.com/tidegate/tidegate/tree/upgrade-test"],
    );
    let (new_repository, new_digest) = upgraded.split_once('@').expect("repo@digest");
    assert_ne!(new_digest, digest, "another image");
    write_values(new_repository, new_digest);
    let (ok, out, err) = helm_tool::run(&helm, home.path(), Some(&kubeconfig), &helm_args("upgrade"));
    assert!(ok, "helm upgrade: {out}{err}");
    wait("both replicas on the new image", Duration::from_secs(120), || replicas_on(new_digest.to_string())).await;

    // The Promotion in flight is carried to the end by the upgraded controller.
    let done = wait("the Promotion to succeed", Duration::from_secs(240), || async {
        let promotion = promotions.get(&promotion_name).await.ok()?;
        let phase = promotion.status.as_ref()?.phase;
        assert!(
            !matches!(phase, PromotionPhase::RolledBack | PromotionPhase::Failed | PromotionPhase::Rejected),
            "the Promotion ended {phase:?}: {:#?}",
            promotion.status
        );
        (phase == PromotionPhase::Succeeded).then_some(promotion)
    })
    .await;
    let production = ready_images(&shop_pods, "web").await;
    assert!(
        !production.is_empty() && production.iter().all(|i| i.ends_with(&candidate)),
        "production runs the approved digest: {production:?}"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let live = deployments.get("web").await.expect("production web");
    let image = live.spec.and_then(|s| s.template.spec).map(|s| s.containers[0].image.clone().unwrap_or_default());
    assert_eq!(image, Some(format!("{reg}/shop/app@{candidate}")), "{:#?}", done.status);

    let (ok, out, err) = helm_tool::run(
        &helm,
        home.path(),
        Some(&kubeconfig),
        &["uninstall", "tidegate", "-n", "tidegate-system", "--wait"],
    );
    assert!(ok, "helm uninstall: {out}{err}");
    for ns in ["shop", "shop-staging"] {
        let _ = Api::<Deployment>::namespaced(client.clone(), ns).delete("web", &Default::default()).await;
    }
    let left = node.stop().await.expect("stop the node");
    assert!(left.is_clean(), "the real node left {left:?}");
}
