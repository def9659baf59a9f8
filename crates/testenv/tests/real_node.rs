//! One real node (kubelet + containerd + runc) next to the kwok nodes: a Pod from an image pushed
//! by digest to the loopback registry really runs, answers HTTP at its Pod IP from the host, a
//! crashing container is restarted, and teardown leaves nothing behind.
//!
//! Changes host state (a bridge, sysctls, cgroups, mounts), so it needs root; one real node per
//! machine (a lock file serialises starts). Set `TIDEGATE_REAL_NODE=0` to skip it.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use tidegate_testenv::real_node::{
    REAL_NODE_LABEL, REAL_NODE_TAINT, RealNode, RealNodeOptions, TEST_SERVER_PORT, push_test_server_image,
};
use tidegate_testenv::registry::{Registry, RegistryOptions, send};
use tidegate_testenv::{Options, TestEnv};

const NAMESPACE: &str = "real-node";

fn pod(name: &str, image: &str, mode: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "nodeSelector": {REAL_NODE_LABEL: "true"},
            "tolerations": [{"key": REAL_NODE_TAINT, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "server",
                "image": image,
                "args": [mode],
                "env": [{"name": "TESTSERVER_CRASH_AFTER", "value": "300ms"}],
                "ports": [{"containerPort": TEST_SERVER_PORT}],
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": TEST_SERVER_PORT},
                    "periodSeconds": 1
                }
            }]
        }
    }))
    .expect("pod")
}

async fn wait_for<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn real_node_runs_pods_from_the_loopback_registry() {
    if !tidegate_testenv::real_node::available() {
        return;
    }
    let started = Instant::now();
    let env = TestEnv::start_with(Options { nodes: 1, install_crds: false, ..Options::default() })
        .await
        .expect("control plane");
    let registry = Registry::start(RegistryOptions::default()).await.expect("registry");
    let image = push_test_server_image(&registry, "tidegate/testserver").await.expect("test image");
    eprintln!("control plane, registry and image after {:.1?}", started.elapsed());

    let node_started = Instant::now();
    let options = RealNodeOptions { plain_http_registries: vec![registry.host().to_string()], ..Default::default() };
    let node = RealNode::start(&env, &options).await.expect("real node");
    eprintln!("real node Ready after {:.1?}", node_started.elapsed());
    let client = env.client().await.expect("client");

    // The node is labelled and tainted, next to the kwok node.
    let nodes: Api<Node> = Api::all(client.clone());
    let real = nodes.get(node.name()).await.expect("node");
    assert_eq!(real.metadata.labels.as_ref().and_then(|l| l.get(REAL_NODE_LABEL)).map(String::as_str), Some("true"));
    let taints = real.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    assert!(taints.iter().any(|t| t.key == REAL_NODE_TAINT && t.effect == "NoSchedule"), "{taints:?}");
    assert_eq!(nodes.list(&Default::default()).await.expect("nodes").items.len(), 2);

    env.create_namespace(NAMESPACE).await.expect("namespace");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    pods.create(&PostParams::default(), &pod("server", &image.reference, "serve")).await.expect("server pod");
    pods.create(&PostParams::default(), &pod("crasher", &image.reference, "crash")).await.expect("crasher pod");

    // The server really runs, from the image by digest, and answers at its Pod IP.
    let pods_started = Instant::now();
    let server = wait_for("the server Pod to be Running and Ready", Duration::from_secs(90), async || {
        let pod = pods.get("server").await.ok()?;
        let status = pod.status.clone()?;
        let container = status.container_statuses.as_ref()?.first()?.clone();
        (status.phase.as_deref() == Some("Running") && container.started == Some(true) && container.ready)
            .then_some(pod)
    })
    .await;
    eprintln!("server Pod Running and Ready after {:.1?}", pods_started.elapsed());
    assert_eq!(server.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some(node.name()));
    let status = server.status.clone().expect("status");
    let container = status.container_statuses.as_ref().and_then(|c| c.first()).expect("container status");
    assert!(container.image_id.ends_with(&image.digest), "{} ran, {} was pushed", container.image_id, image.digest);
    let ip = status.pod_ip.expect("pod IP");
    assert!(ip.starts_with("10.88."), "pod IP {ip} outside the real node's CIDR");
    let url = format!("http://{ip}:{TEST_SERVER_PORT}/healthz");
    let response = send(Method::GET, &url, &[], Vec::new()).await.expect("GET /healthz at the pod IP");
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.text().trim(), "ok");

    // The crashing container is restarted.
    let restarts = wait_for("the crasher to be restarted", Duration::from_secs(90), async || {
        let pod = pods.get("crasher").await.ok()?;
        let container = pod.status?.container_statuses?.first()?.clone();
        let exit = container.last_state.as_ref()?.terminated.as_ref()?.exit_code;
        (container.restart_count > 0).then_some((container.restart_count, exit))
    })
    .await;
    assert_eq!(restarts.1, 3, "the crasher exits with status 3");
    eprintln!("crasher restarted ({} restarts) after {:.1?}", restarts.0, pods_started.elapsed());

    // Teardown leaves no kubelet, containerd, shim or container behind.
    let pids = node.pids();
    let dir = node.dir().to_path_buf();
    let stop_started = Instant::now();
    let leftovers = node.stop().await.expect("stop");
    eprintln!("real node stopped after {:.1?}", stop_started.elapsed());
    assert!(leftovers.is_clean(), "{leftovers:?}");
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} still runs");
    }
    assert!(!dir.exists(), "{} was not removed", dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mounts.contains(&dir.display().to_string()), "mounts left under {}", dir.display());
    assert!(!std::path::Path::new("/sys/class/net/tidegate0").exists(), "bridge left behind");
    eprintln!("whole test {:.1?}", started.elapsed());
}
