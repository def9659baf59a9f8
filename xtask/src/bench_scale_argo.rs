//! `cargo xtask bench scale --peer argo`: Argo Rollouts on the control plane of Tidegate's run,
//! right after Tidegate's measurement, so that both are measured on the same machine, control
//! plane and load.
//!
//! The release's CRDs and ClusterRole are installed, and `rollouts-controller` (built from the
//! pinned Go module, [`tidegate_testenv::argo_rollouts`]) runs as a local process with that role
//! (ServiceAccount `argo-rollouts/argo-rollouts`, leader election on, as the release installs it).
//! N blue-green Rollouts, each with an active and a preview Service and `autoPromotionEnabled:
//! false`, one replica on kwok's nodes like the Tidegate bench's Deployments, are rolled to a new
//! image; once every one is paused for promotion with its preview ready, all are promoted at once
//! the way `kubectl argo rollouts promote` does it (`pkg/kubectl-argo-rollouts/cmd/promote`: a
//! merge patch of `status.pauseConditions: null` on the status subresource, since `spec.paused`
//! is false). Per Rollout, from the API server's answer to that write until the active Service's
//! `rollouts-pod-template-hash` selects the new ReplicaSet (seen on a watch of the Services).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt as _;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use tidegate_testenv::argo_rollouts::ArgoRollouts;
use tidegate_testenv::tools::ARGO_ROLLOUTS_VERSION;
use tidegate_testenv::{TestEnv, apply};

use crate::bench_scale_peer::PeerRun;

/// The namespace the controller considers its own (leader-election Lease, configuration).
const NAMESPACE: &str = "argo-rollouts";
/// The identity it runs as: the ServiceAccount of the release's install.
const USER: &str = "system:serviceaccount:argo-rollouts:argo-rollouts";
/// Label on the bench's active Services (value `active`) and preview Services (`preview`).
const SERVICE_LABEL: &str = "bench.tidegate.dev/argo-service";
/// The selector key Argo Rollouts sets on a Service to pick a ReplicaSet.
const HASH_LABEL: &str = "rollouts-pod-template-hash";
/// The pause a blue-green Rollout takes before promotion when auto-promotion is off.
const BLUE_GREEN_PAUSE: &str = "BlueGreenPause";
/// How many API creates and patches run at once while setting up.
const PARALLEL: usize = 8;
const FIELD_MANAGER: &str = "tidegate-bench";

/// Per active Service (`namespace/name`), each selector hash it was seen with and when first.
type Selections = BTreeMap<String, Vec<(String, Instant)>>;

/// The peer's name in the report.
pub(crate) fn name() -> String {
    format!("Argo Rollouts {ARGO_ROLLOUTS_VERSION}")
}

/// Extra kwok nodes for `n` Rollouts: two Pods each while both ReplicaSets run.
pub(crate) fn nodes_for(n: usize) -> usize {
    (2 * n).div_ceil(100)
}

/// Measures Argo Rollouts with `n` Rollouts, `per_namespace` to a namespace, on `env`; the
/// controller's log and kubeconfig go to `dir`; memory is read after `idle`.
pub(crate) async fn measure(
    env: &TestEnv,
    client: &kube::Client,
    argo: &ArgoRollouts,
    n: usize,
    per_namespace: usize,
    idle: Duration,
    dir: &Path,
) -> Result<PeerRun> {
    install(env, client, argo).await?;
    let rollouts = slots(n, per_namespace);
    let mut namespaces: Vec<&str> = rollouts.iter().map(|(ns, _)| ns.as_str()).collect();
    namespaces.dedup();
    for ns in namespaces {
        env.create_namespace(ns).await.with_context(|| format!("creating namespace {ns}"))?;
    }
    let mut controller = ArgoController::spawn(env, argo, dir)?;
    create_rollouts(client, &rollouts).await?;
    let api = rollouts_api(client);
    wait_rollouts(&api, "every Rollout Healthy on its first ReplicaSet", 120 + 2 * n, &mut controller, n, |s| {
        s.phase == "Healthy" && !s.stable.is_empty() && s.active == s.stable
    })
    .await?;
    eprintln!("[bench scale] argo: {n} Rollouts Healthy; rolling each to a new image");

    // The active Services, watched from here on: selector hash and when it was first seen.
    let seen: Arc<Mutex<Selections>> = Arc::default();
    let watch = spawn_service_watch(client, &seen);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap_or_else(|e| e.into_inner()).len() < n {
        if Instant::now() > deadline {
            bail!("the watch on the active Services did not list all {n} within a minute");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let rolled = Instant::now();
    futures::stream::iter(rollouts.iter().map(|(ns, name)| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource());
        let patch = json!({"spec": {"template": {"spec": {"containers": [container(name, "2.0")]}}}});
        async move {
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("rolling Rollout {ns}/{name} to a new image"))
        }
    }))
    .buffer_unordered(PARALLEL)
    .try_collect::<Vec<_>>()
    .await?;
    let paused = wait_rollouts(&api, "every Rollout paused for promotion", 120 + 2 * n, &mut controller, n, |s| {
        s.paused_for_promotion && !s.current.is_empty() && s.current != s.stable
    })
    .await?;
    let to_paused = rolled.elapsed();
    eprintln!("[bench scale] argo: all {n} paused for promotion after {:.1} s; promoting all", to_paused.as_secs_f64());

    // Promote every Rollout at once, as `kubectl argo rollouts promote` does.
    let promote = json!({"status": {"pauseConditions": null}});
    let answers = futures::future::join_all(rollouts.iter().map(|(ns, name)| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource());
        let promote = &promote;
        async move {
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(promote))
                .await
                .with_context(|| format!("promoting Rollout {ns}/{name}"))?;
            anyhow::Ok((format!("{ns}/{name}"), Instant::now()))
        }
    }))
    .await;
    let promoted: BTreeMap<String, Instant> = answers.into_iter().collect::<Result<_>>()?;
    let targets: BTreeMap<String, String> = paused.into_iter().map(|(k, s)| (k, s.current)).collect();

    let deadline = Instant::now() + Duration::from_secs(60 + n as u64);
    let to_switch = loop {
        let switched = {
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            switch_latencies(&promoted, &targets, &seen)
        };
        match switched {
            Ok(latencies) => break latencies,
            Err(waiting) if Instant::now() > deadline => {
                bail!("active Services not switched within the deadline ({waiting}); log {}", controller.log.display())
            }
            Err(_) => {}
        }
        controller.check()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    watch.abort();
    eprintln!(
        "[bench scale] argo: every active Service switched: p50 {:.2} s, p99 {:.2} s after the promote",
        crate::bench_scale_report::percentile(&to_switch, 50.0).unwrap_or_default().as_secs_f64(),
        crate::bench_scale_report::percentile(&to_switch, 99.0).unwrap_or_default().as_secs_f64()
    );
    wait_rollouts(&api, "every Rollout Healthy on its new ReplicaSet", 120 + n, &mut controller, n, |s| {
        s.phase == "Healthy" && !s.stable.is_empty() && s.stable == s.current && s.active == s.current
    })
    .await?;
    tokio::time::sleep(idle).await;
    controller.check()?;
    let (rss_kib, hwm_kib) = crate::bench_scale::memory(controller.child.id())?;
    Ok(PeerRun { name: name(), rollouts: n, to_paused, to_switch, rss_kib, hwm_kib })
}

/// Per Rollout (`namespace/name`), the time from its promote's answer until its active Service
/// was first seen selecting `targets`' hash; `Err` naming how many are still waiting.
fn switch_latencies(
    promoted: &BTreeMap<String, Instant>,
    targets: &BTreeMap<String, String>,
    seen: &Selections,
) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::new();
    let mut waiting = Vec::new();
    for (key, at) in promoted {
        let target = targets.get(key).map(String::as_str).unwrap_or_default();
        let switched = seen.get(key).and_then(|hashes| hashes.iter().find(|(hash, _)| hash == target));
        match switched {
            Some((_, when)) => latencies.push(when.saturating_duration_since(*at)),
            None => waiting.push(key.as_str()),
        }
    }
    match waiting.first() {
        None => Ok(latencies),
        Some(first) => Err(format!("{} of {} not switched, e.g. {first}", waiting.len(), promoted.len())),
    }
}

/// The Rollouts: `(namespace, name)`, `argo-00/app-0` …, `per_namespace` to a namespace.
fn slots(n: usize, per_namespace: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("argo-{:02}", i / per_namespace.max(1)), format!("app-{i}"))).collect()
}

fn resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Rollout"), "rollouts")
}

fn rollouts_api(client: &kube::Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource())
}

/// The Rollouts' one container; kwok runs no containers, so the image is only a name that
/// changes (`tag`).
fn container(name: &str, tag: &str) -> Value {
    json!({"name": "app", "image": format!("bench.local/argo/{name}:{tag}"), "args": ["consume"]})
}

/// The release's CRDs and ClusterRole, its ServiceAccount bound to that role, its namespace and
/// the ConfigMap and Secret its install creates there.
async fn install(env: &TestEnv, client: &kube::Client, argo: &ArgoRollouts) -> Result<()> {
    tidegate_testenv::crds::install(client, &argo.crds()?).await.context("installing the Argo Rollouts CRDs")?;
    env.create_namespace(NAMESPACE).await?;
    apply::apply_yaml(client, &argo.cluster_role_yaml()?, NAMESPACE, FIELD_MANAGER).await?;
    let yaml = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: argo-rollouts, namespace: {NAMESPACE}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: argo-rollouts}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: argo-rollouts}}\nsubjects:\n- {{kind: ServiceAccount, name: argo-rollouts, namespace: {NAMESPACE}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: argo-rollouts-config, namespace: {NAMESPACE}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: argo-rollouts-notification-secret, namespace: {NAMESPACE}}}\n"
    );
    apply::apply_yaml(client, &yaml, NAMESPACE, FIELD_MANAGER).await?;
    Ok(())
}

/// Per Rollout a headless active and preview Service (the local control plane's Service range is
/// a /24; Argo Rollouts only rewrites their selectors) and the Rollout itself.
async fn create_rollouts(client: &kube::Client, rollouts: &[(String, String)]) -> Result<()> {
    let objects = rollouts.iter().flat_map(|(ns, name)| {
        [
            (ns.clone(), service(name, name, "active")),
            (ns.clone(), service(&format!("{name}-preview"), name, "preview")),
            (ns.clone(), rollout(name)),
        ]
    });
    futures::stream::iter(objects.map(|(ns, object)| {
        let client = client.clone();
        async move {
            let object: DynamicObject = serde_json::from_value(object)?;
            let name = object.name_any();
            let api: Api<DynamicObject> = if object.types.as_ref().is_some_and(|t| t.kind == "Rollout") {
                Api::namespaced_with(client, &ns, &resource())
            } else {
                Api::namespaced_with(client, &ns, &ApiResource::erase::<Service>(&()))
            };
            api.create(&PostParams::default(), &object).await.with_context(|| format!("creating {ns}/{name}"))?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(PARALLEL)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

fn service(name: &str, app: &str, role: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {SERVICE_LABEL: role}},
        "spec": {
            "clusterIP": "None",
            "selector": {"app.kubernetes.io/name": app},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}]
        }
    })
}

fn rollout(name: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": name}},
                "spec": {"containers": [container(name, "1.0")]}
            },
            "strategy": {"blueGreen": {
                "activeService": name,
                "previewService": format!("{name}-preview"),
                "autoPromotionEnabled": false
            }}
        }
    })
}

/// What the bench reads of a Rollout's status.
#[derive(Clone, Debug, Default, PartialEq)]
struct RolloutState {
    phase: String,
    /// Pod template hash of the stable ReplicaSet.
    stable: String,
    /// Pod template hash of the ReplicaSet of the current template.
    current: String,
    /// The hash the active Service selects, as the controller last recorded it.
    active: String,
    /// Paused before promotion (a `BlueGreenPause` pause condition).
    paused_for_promotion: bool,
    message: String,
}

fn rollout_state(status: &Value) -> RolloutState {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    RolloutState {
        phase: text(&status["phase"]),
        stable: text(&status["stableRS"]),
        current: text(&status["currentPodHash"]),
        active: text(&status["blueGreen"]["activeSelector"]),
        paused_for_promotion: status["pauseConditions"]
            .as_array()
            .is_some_and(|conditions| conditions.iter().any(|c| c["reason"] == BLUE_GREEN_PAUSE)),
        message: text(&status["message"]),
    }
}

/// Lists the Rollouts every half second until all `n` satisfy `done`; returns their states by
/// `namespace/name`.
async fn wait_rollouts(
    api: &Api<DynamicObject>,
    what: &str,
    timeout_secs: usize,
    controller: &mut ArgoController,
    n: usize,
    done: impl Fn(&RolloutState) -> bool,
) -> Result<BTreeMap<String, RolloutState>> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs as u64);
    loop {
        let list = api.list(&Default::default()).await?;
        let states: BTreeMap<String, RolloutState> = list
            .items
            .iter()
            .map(|r| {
                (format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()), rollout_state(&r.data["status"]))
            })
            .collect();
        let ready = states.values().filter(|s| done(s)).count();
        if ready >= n {
            return Ok(states);
        }
        controller.check()?;
        if Instant::now() > deadline {
            let straggler = states.iter().find(|(_, s)| !done(s)).map(|(k, s)| format!("; e.g. {k}: {s:?}"));
            bail!(
                "argo: {what}: only {ready} of {n} within {timeout_secs} s{}; log {}",
                straggler.unwrap_or_default(),
                controller.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Watches the active Services (as the administrator), recording each new selector hash with
/// when it was first seen.
fn spawn_service_watch(client: &kube::Client, seen: &Arc<Mutex<Selections>>) -> tokio::task::JoinHandle<()> {
    let (seen, api) = (seen.clone(), Api::<Service>::all(client.clone()));
    tokio::spawn(async move {
        let config = watcher::Config::default().labels(&format!("{SERVICE_LABEL}=active"));
        let mut stream = watcher(api, config).default_backoff().applied_objects().boxed();
        while let Some(event) = stream.next().await {
            let Ok(service) = event else { continue };
            let now = Instant::now();
            let hash = service
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .and_then(|s| s.get(HASH_LABEL).cloned())
                .unwrap_or_default();
            let key = format!("{}/{}", service.namespace().unwrap_or_default(), service.name_any());
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            let hashes = seen.entry(key).or_default();
            if hashes.last().is_none_or(|(last, _)| *last != hash) {
                hashes.push((hash, now));
            }
        }
    })
}

/// `rollouts-controller` as a local process: the release's identity, its log in the run's
/// directory, metrics and health on free ports (it listens on every interface; nothing is sent
/// anywhere), killed on drop.
struct ArgoController {
    child: Child,
    log: PathBuf,
}

impl ArgoController {
    fn spawn(env: &TestEnv, argo: &ArgoRollouts, dir: &Path) -> Result<Self> {
        let kubeconfig = dir.join("argo-rollouts.kubeconfig");
        std::fs::write(&kubeconfig, env.user_kubeconfig(USER, &["system:serviceaccounts"])?)?;
        let log = dir.join("argo-rollouts.log");
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let port = || -> Result<String> { Ok(tidegate_testenv::free_port()?.to_string()) };
        let child = Command::new(argo.controller())
            .env_remove("KUBECONFIG")
            .env("POD_NAMESPACE", NAMESPACE)
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["--metricsPort", &port()?, "--healthzPort", &port()?, "--leader-elect=true", "--loglevel=info"])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", argo.controller().display()))?;
        Ok(Self { child, log })
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Fails with the end of the log when the controller has exited.
    fn check(&mut self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => bail!(
                "rollouts-controller exited ({status}); last lines of {}:\n{}",
                self.log.display(),
                tidegate_testenv::process::tail(&self.log, 20)
            ),
        }
    }
}

impl Drop for ArgoController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_blue_green_status_is_read() {
        let status = json!({
            "phase": "Paused",
            "message": "BlueGreenPause",
            "stableRS": "5d8f7c9b4",
            "currentPodHash": "6c7b8d9f5",
            "controllerPause": true,
            "pauseConditions": [{"reason": "BlueGreenPause", "startTime": "2026-12-03T06:00:00Z"}],
            "blueGreen": {"activeSelector": "5d8f7c9b4", "previewSelector": "6c7b8d9f5"}
        });
        let state = rollout_state(&status);
        assert!(state.paused_for_promotion);
        assert_eq!(
            (state.stable.as_str(), state.current.as_str(), state.active.as_str()),
            ("5d8f7c9b4", "6c7b8d9f5", "5d8f7c9b4")
        );
        assert_eq!(state.phase, "Paused");
        // Another pause (an inconclusive analysis) is not the promotion pause; no status at all
        // reads as empty.
        let other = json!({"pauseConditions": [{"reason": "InconclusiveAnalysis"}]});
        assert!(!rollout_state(&other).paused_for_promotion);
        assert_eq!(rollout_state(&Value::Null), RolloutState::default());
    }

    #[test]
    fn switch_latency_runs_from_the_promote_to_the_first_sight_of_the_new_hash() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let promoted: BTreeMap<String, Instant> =
            [("argo-00/app-0".to_string(), at(100)), ("argo-00/app-1".to_string(), at(110))].into();
        let targets: BTreeMap<String, String> =
            [("argo-00/app-0".to_string(), "new0".to_string()), ("argo-00/app-1".to_string(), "new1".to_string())]
                .into();
        let mut seen = Selections::new();
        seen.insert("argo-00/app-0".into(), vec![("old0".into(), at(0)), ("new0".into(), at(350))]);
        seen.insert("argo-00/app-1".into(), vec![("old1".into(), at(0))]);
        let waiting = switch_latencies(&promoted, &targets, &seen).unwrap_err();
        assert_eq!(waiting, "1 of 2 not switched, e.g. argo-00/app-1");
        seen.get_mut("argo-00/app-1").unwrap().push(("new1".into(), at(1110)));
        assert_eq!(
            switch_latencies(&promoted, &targets, &seen).unwrap(),
            [Duration::from_millis(250), Duration::from_millis(1000)]
        );
    }

    #[test]
    fn rollouts_are_blue_green_without_auto_promotion_and_ten_to_a_namespace() {
        let slots = slots(25, 10);
        assert_eq!(slots[0], ("argo-00".to_string(), "app-0".to_string()));
        assert_eq!(slots[24], ("argo-02".to_string(), "app-24".to_string()));
        let r = rollout("app-3");
        let strategy = &r["spec"]["strategy"]["blueGreen"];
        assert_eq!(strategy["autoPromotionEnabled"], false);
        assert_eq!(
            (strategy["activeService"].as_str(), strategy["previewService"].as_str()),
            (Some("app-3"), Some("app-3-preview"))
        );
        assert_ne!(container("app-3", "1.0")["image"], container("app-3", "2.0")["image"]);
        assert_eq!(service("app-3-preview", "app-3", "preview")["spec"]["clusterIP"], "None");
        // Two Pods a Rollout while both ReplicaSets run, at most 110 a node.
        for n in [1, 10, 100, 1000] {
            assert!(nodes_for(n) * 110 >= 2 * n);
        }
    }
}
