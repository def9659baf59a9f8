//! One real node (kubelet + containerd + runc) next to the kwok nodes: a Pod from an image pushed
//! by digest to the loopback registry really runs, answers HTTP at its Pod IP from the host, a
//! crashing container is restarted, Pods reach Services by name (cluster DNS + kube-proxy) and the
//! API server at `kubernetes.default.svc`, and teardown leaves nothing behind.
//!
//! Changes host state (a bridge, sysctls, cgroups, mounts), so it needs root; one real node per
//! machine (a lock file serialises starts). Set `TIDEGATE_REAL_NODE=0` to skip it.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams, PostParams};
use tidegate_testenv::real_node::{
    DNS_IP, REAL_NODE_LABEL, REAL_NODE_TAINT, RealNode, RealNodeOptions, TEST_SERVER_PORT, push_test_server_image,
};
use tidegate_testenv::registry::{Registry, RegistryOptions, send};
use tidegate_testenv::{Options, TestEnv};

const NAMESPACE: &str = "real-node";
/// Where the Service checks run (a Deployment `web` behind a Service `web`).
const SHOP: &str = "shop-staging";

/// Scheduling onto the real node.
fn on_real_node() -> serde_json::Value {
    serde_json::json!({
        "nodeSelector": {REAL_NODE_LABEL: "true"},
        "tolerations": [{"key": REAL_NODE_TAINT, "operator": "Equal", "value": "true", "effect": "NoSchedule"}],
        "terminationGracePeriodSeconds": 1
    })
}

fn with_spec(mut spec: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(spec), serde_json::Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    spec
}

fn pod(name: &str, image: &str, mode: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": with_spec(on_real_node(), serde_json::json!({
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
        }))
    }))
    .expect("pod")
}

/// A Deployment `web` of the test server on the real node, a Service `web` (80 → 8080) in front of
/// it, and a Service `idle` whose selector matches no Pod.
fn web(image: &str) -> (Deployment, Service, Service) {
    let labels = serde_json::json!({"app": "web"});
    let deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web", "namespace": SHOP},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": with_spec(on_real_node(), serde_json::json!({
                    "containers": [{
                        "name": "web",
                        "image": image,
                        "args": ["serve"],
                        "ports": [{"containerPort": TEST_SERVER_PORT}],
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": TEST_SERVER_PORT}, "periodSeconds": 1}
                    }]
                }))
            }
        }
    }))
    .expect("deployment");
    let service = |name: &str, selector: serde_json::Value| -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": SHOP},
            "spec": {"selector": selector, "ports": [{"port": 80, "targetPort": TEST_SERVER_PORT}]}
        }))
        .expect("service")
    };
    (deployment, service("web", labels.clone()), service("idle", serde_json::json!({"app": "nobody"})))
}

/// Runs `testserver get url` as a Job on the real node (no retries) and returns whether it
/// succeeded, and what its Pod printed.
async fn get_from_a_pod(client: &kube::Client, image: &str, name: &str, url: &str) -> (bool, String) {
    let jobs: Api<Job> = Api::namespaced(client.clone(), SHOP);
    let job: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": SHOP},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": with_spec(on_real_node(), serde_json::json!({
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "get",
                        "image": image,
                        "args": ["get", url],
                        "terminationMessagePolicy": "FallbackToLogsOnError"
                    }]
                }))
            }
        }
    }))
    .expect("job");
    jobs.create(&PostParams::default(), &job).await.expect("job created");
    let succeeded = wait_for(&format!("Job {name} to finish"), Duration::from_secs(120), async || {
        let status = jobs.get(name).await.ok()?.status?;
        if status.succeeded.unwrap_or(0) > 0 { Some(true) } else { (status.failed.unwrap_or(0) > 0).then_some(false) }
    })
    .await;
    // What the container printed, from its termination message (the API server cannot reach the
    // kubelet for logs: the node's name does not resolve on the host).
    let pods: Api<Pod> = Api::namespaced(client.clone(), SHOP);
    let selector = ListParams::default().labels(&format!("job-name={name}"));
    let log = pods
        .list(&selector)
        .await
        .expect("job pods")
        .items
        .into_iter()
        .filter_map(|pod| pod.status?.container_statuses?.first()?.state.clone()?.terminated?.message)
        .collect::<Vec<_>>()
        .join("\n");
    (succeeded, log)
}

/// Whether kube-proxy has routed the ClusterIP `ip` to an endpoint (nat `KUBE-SERVICES` jumps to a
/// `KUBE-SVC-*` chain for it).
fn routed_by_kube_proxy(ip: &str) -> bool {
    let save = std::process::Command::new("iptables-save").args(["-t", "nat"]).output().expect("iptables-save");
    String::from_utf8_lossy(&save.stdout)
        .lines()
        .any(|l| l.starts_with("-A KUBE-SERVICES") && l.contains(&format!("-d {ip}/32")) && l.contains("-j KUBE-SVC-"))
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
    let mut node = RealNode::start(&env, &options).await.expect("real node");
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

    // Pods reach a Service by name: the cluster DNS resolves it, kube-proxy forwards its ClusterIP
    // to the ready endpoint Pod.
    let services_started = Instant::now();
    env.create_namespace(SHOP).await.expect("namespace");
    let (deployment, web_service, idle_service) = web(&image.reference);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), SHOP);
    deployments.create(&PostParams::default(), &deployment).await.expect("web deployment");
    let services: Api<Service> = Api::namespaced(client.clone(), SHOP);
    for service in [&web_service, &idle_service] {
        services.create(&PostParams::default(), service).await.expect("service");
    }
    wait_for("the web Deployment to be ready", Duration::from_secs(90), async || {
        let ready = deployments.get("web").await.ok()?.status?.ready_replicas?;
        (ready == 1).then_some(())
    })
    .await;
    let web_ip = services.get("web").await.expect("web service").spec.and_then(|s| s.cluster_ip).expect("ClusterIP");
    assert!(web_ip.starts_with("10.0.0."), "ClusterIP {web_ip}");
    wait_for("kube-proxy to route the web Service", Duration::from_secs(60), async || {
        routed_by_kube_proxy(&web_ip).then_some(())
    })
    .await;
    let url = format!("http://web.{SHOP}.svc/healthz");
    let (ok, log) = get_from_a_pod(&client, &image.reference, "get-web", &url).await;
    assert!(ok, "GET {url} from a Pod failed: {log}");
    assert!(log.contains("-> 200 ok"), "{log}");
    eprintln!("a Pod reached {url} after {:.1?}: {}", services_started.elapsed(), log.trim());

    // A Service without ready endpoints, and a name that is no Service, fail.
    let url = format!("http://idle.{SHOP}.svc/healthz");
    let (ok, log) = get_from_a_pod(&client, &image.reference, "get-idle", &url).await;
    assert!(!ok, "GET {url} (no endpoints) succeeded: {log}");
    eprintln!("no endpoints: {}", log.trim());
    let url = format!("http://missing.{SHOP}.svc/healthz");
    let (ok, log) = get_from_a_pod(&client, &image.reference, "get-missing", &url).await;
    assert!(!ok, "GET {url} (no such Service) succeeded: {log}");
    assert!(log.contains("lookup missing."), "{log}");
    eprintln!("no such Service: {}", log.trim());

    // The API server stays reachable at the kubernetes Service's address with kube-proxy running,
    // by name too, with the cluster CA of the Pod's service account.
    node.expose_api_server(&env).expect("the API server at the kubernetes Service address");
    let url = "https://kubernetes.default.svc/healthz";
    let (ok, log) = get_from_a_pod(&client, &image.reference, "get-api", url).await;
    assert!(ok, "GET {url} from a Pod failed: {log}");
    eprintln!("the API server from a Pod: {}", log.trim());

    // Without its Deployment, the web Pod is not recreated while the node stops.
    deployments.delete("web", &Default::default()).await.expect("web deployment deleted");

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
    let lo = std::process::Command::new("ip").args(["-o", "addr", "show", "dev", "lo"]).output().expect("ip addr");
    assert!(!String::from_utf8_lossy(&lo.stdout).contains(DNS_IP), "the DNS address is still on lo");
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let dns_roles = roles.list(&ListParams::default()).await.expect("cluster roles").items;
    let left: Vec<_> =
        dns_roles.iter().filter_map(|r| r.metadata.name.as_deref()).filter(|n| n.contains("coredns")).collect();
    assert!(left.is_empty(), "CoreDNS's ClusterRole is still there: {left:?}");
    eprintln!("whole test {:.1?}", started.elapsed());
}
