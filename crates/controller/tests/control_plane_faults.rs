//! Control-plane faults in the middle of a pipeline, on the real local control plane: the API
//! server restarted, etcd frozen and killed, watches expiring (410 Gone). Each time the pipeline
//! completes, production is changed exactly once, and the controller relists each kind a bounded
//! number of times, without a hot loop. Requests are counted in the API server's audit log,
//! which records every request of the controller's user.
//!
//! The faults hit the whole shared control plane, so the tests of this binary run one at a time.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BEFORE, CLEAN_REPORT, CONTROLLER_USER, ControllerProcess, MINUTE, Scenario, http_server, pinned};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tidegate_api::{PromotionPhase, RecordEvent, ReleasePhase};
use tidegate_testenv::TestEnv;
use tidegate_testenv::faults::{self, CONTROLLER_MANAGER, ETCD};

/// The faults stop the control plane every test shares: one test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The kinds the controller watches, as the audit log names their resources.
const WATCHED: [&str; 3] = ["imagepolicies", "releases", "promotions"];

/// kube-apiserver restarted after the Release started and again during the production change:
/// the pipeline completes, production changes once, and each kind is relisted at most once per
/// restart (the resumed watches find their history gone from the new server's cache), plus once
/// per start of the controller (it exits when the API server stays away longer than its renew
/// deadline, and its Deployment starts it again).
#[tokio::test]
async fn apiserver_restarts_mid_pipeline_converge_without_relist_storm_or_duplicate_change() {
    let _one = ONE_AT_A_TIME.lock().await;
    let audit = Audit::enable(&["--watch-cache=true"]).await;
    let s = Scenario::new("faults-apiserver").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"monitorWindow": "1m"}
    }))
    .await;
    let mut kubelet = Kubelet::new(&s);
    s.trigger("apiserver-restarts").await;

    kubelet.wait("the Release to wait for its scan", MINUTE, || release_in(&s, ReleasePhase::Scanning)).await;
    let first = Timestamp::now();
    s.env.restart_apiserver().await.expect("restart kube-apiserver while the Release waits for its scan");
    eprintln!("kube-apiserver was restarted in {}", since(first));
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let name = kubelet.wait("the Promotion to wait for approval", MINUTE, || awaiting_approval(&s)).await;
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("alice approves");
    kubelet.wait("the Promotion to change production", 2 * MINUTE, || changing_production(&s, &name)).await;
    let second = Timestamp::now();
    s.env.restart_apiserver().await.expect("restart kube-apiserver while production changes");
    eprintln!("kube-apiserver was restarted in {}", since(second));
    kubelet.wait("the Promotion to succeed", 2 * MINUTE, || promotion_is(&s, &name, PromotionPhase::Succeeded)).await;
    let end = Timestamp::now();

    production_changed_once(&s, &name, &digest).await;
    let requests = audit.requests(&s.ns);
    for (from, to, when) in [(first, second, "after the first restart"), (second, end, "after the second restart")] {
        let lists = lists(&requests, from, to);
        let starts = kubelet.starts_in(from, to);
        eprintln!("{when}: controller started again {starts} times; LISTs of the watched kinds: {lists:?}");
        for kind in WATCHED {
            let listed = lists.get(kind).copied().unwrap_or_default();
            assert!(
                listed.ok <= 1 + starts,
                "{kind} relisted {} times {when} (at most once, plus once per start of the controller: {starts}): {lists:?}",
                listed.ok
            );
            assert!(
                listed.failed <= 3 * (1 + starts),
                "{kind}: {} failed LISTs {when}, no backoff?: {lists:?}",
                listed.failed
            );
        }
    }
}

/// etcd frozen (SIGSTOP) while the Release waits for its scan, then killed (SIGKILL) and started
/// again on the same data during the production change: the controller's failures are transient
/// and backed off, and the pipeline completes with one production change.
#[tokio::test]
async fn etcd_outages_mid_pipeline_are_ridden_out_with_backoff_and_one_production_change() {
    let _one = ONE_AT_A_TIME.lock().await;
    let audit = Audit::enable(&["--watch-cache=true"]).await;
    let s = Scenario::new("faults-etcd").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"monitorWindow": "1m"}
    }))
    .await;
    let mut kubelet = Kubelet::new(&s);
    s.trigger("etcd-outages").await;

    kubelet.wait("the Release to wait for its scan", MINUTE, || release_in(&s, ReleasePhase::Scanning)).await;
    let frozen = Timestamp::now();
    let paused = s.env.pause_component(ETCD).expect("freeze etcd");
    tokio::time::sleep(OUTAGE).await;
    paused.resume();
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let name = kubelet.wait("the Promotion to wait for approval", MINUTE, || awaiting_approval(&s)).await;
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("alice approves");
    kubelet.wait("the Promotion to change production", 2 * MINUTE, || changing_production(&s, &name)).await;
    let killed = Timestamp::now();
    s.env.kill_component(ETCD).await.expect("kill etcd");
    tokio::time::sleep(OUTAGE).await;
    s.env.start_component(ETCD, &[]).await.expect("start etcd again on its data");
    let back = Timestamp::now();
    // Longer than the Promotion's own steps need: after etcd comes back, the API server's cache
    // lags its writes for a while, and the controller-manager's ReplicaSet syncs (and kwok's pod
    // stages) fail meanwhile ("read version … is not as new as written version") and back off,
    // so the new slot's Pods can come a minute or more later than usual.
    kubelet.wait("the Promotion to succeed", 4 * MINUTE, || promotion_is(&s, &name, PromotionPhase::Succeeded)).await;
    let end = Timestamp::now();

    production_changed_once(&s, &name, &digest).await;
    let requests = audit.requests(&s.ns);
    for (from, to, when) in [(frozen, killed, "after the freeze"), (killed, end, "after the kill")] {
        let window: Vec<_> = requests.iter().filter(|r| r.at >= from && r.at < to).collect();
        let starts = kubelet.starts_in(from, to);
        eprintln!("{when}: controller started again {starts} times; requests: {:?}", by_verb(window.iter().copied()));
        // The API server's own failures (5xx, 429): a reconcile or a watch retrying without
        // backoff would send hundreds of them.
        let failed = window.iter().filter(|r| r.code >= 500 || r.code == 429).count();
        assert!(failed <= 30, "{failed} failed requests {when}: no backoff? {:?}", by_verb(window.iter().copied()));
        let lists = lists(&requests, from, to);
        for kind in WATCHED {
            let listed = lists.get(kind).copied().unwrap_or_default();
            assert!(listed.ok <= 1 + starts, "{kind} relisted {} times {when}: {lists:?}", listed.ok);
        }
    }
    let down: Vec<_> = requests.iter().filter(|r| r.at >= killed && r.at < back).collect();
    let outage = back.duration_since(killed).as_secs_f64();
    eprintln!("while etcd was down ({outage:.1} s): {:?}", by_verb(down.iter().copied()));
}

/// The controller's connections cut while etcd's history is compacted (the watch cache off, so
/// watches are served from etcd): each resumed watch ends with 410 Gone, each kind is relisted
/// exactly once, and the pipeline goes on to one production change.
#[tokio::test]
async fn expired_watches_relist_each_kind_once_and_the_pipeline_goes_on() {
    let _one = ONE_AT_A_TIME.lock().await;
    let audit = Audit::enable(&["--watch-cache=false"]).await;
    let s = Scenario::new("faults-gone").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"monitorWindow": "1m"}
    }))
    .await;
    let link = Link::start(s.env.server()).await;
    link.controller_kubeconfig(&s);
    let controller = s.controller();
    s.trigger("expired-watches").await;
    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    let name = promotion.metadata.name.clone().expect("name");

    let cut = Timestamp::now();
    link.cut();
    // Writes the controller does not watch move etcd's revision past every version it has seen.
    let marker: Api<ConfigMap> = Api::namespaced(s.admin.clone(), &s.ns);
    for n in 0..3 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "faults-marker"}, "data": {"n": n.to_string()}});
        marker.patch("faults-marker", &PatchParams::apply("scenario"), &Patch::Apply(&cm)).await.expect("marker");
    }
    let revision = s.env.compact_etcd().await.expect("compact etcd");
    eprintln!("etcd compacted at revision {revision}");
    link.restore();
    let relisted = common::wait("each kind to be relisted after the 410", MINUTE, || async {
        let lists = lists(&audit.requests(&s.ns), cut, Timestamp::now());
        WATCHED.iter().all(|kind| lists.get(*kind).is_some_and(|l| l.ok >= 1)).then_some(lists)
    })
    .await;
    eprintln!("LISTs after the cut: {relisted:?}");
    for kind in ["ImagePolicy", "Release", "Promotion"] {
        let gone = controller.log_lines_with(&["watch failed", &format!("kind={kind}"), "Expired"]);
        assert!(!gone.is_empty(), "the {kind} watch ended with 410 Gone:\n{}", controller.log_tail());
    }

    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &name, "alice").await.expect("alice approves");
    s.promotion_in(PromotionPhase::Succeeded, 2 * MINUTE).await;
    let end = Timestamp::now();
    production_changed_once(&s, &name, &digest).await;
    still_leading(&controller).await;
    let lists = lists(&audit.requests(&s.ns), cut, end);
    eprintln!("LISTs from the cut to the end: {lists:?}");
    for kind in WATCHED {
        assert_eq!(lists.get(kind).map(|l| l.ok), Some(1), "{kind} relisted once after its watch expired: {lists:?}");
    }
}

/// How long etcd stays frozen or down: shorter than the controller's renew deadline (10 s), so the
/// same process can ride the outage out (when recovery takes longer it steps down, and starts
/// again).
const OUTAGE: Duration = Duration::from_secs(4);

/// The controller as its Deployment runs it: started again when it exits. It exits when it
/// cannot renew its lease within the renew deadline, e.g. while the API server is away longer.
struct Kubelet {
    controller: ControllerProcess,
    starts: Vec<Timestamp>,
    objects: Objects,
}

impl Kubelet {
    fn new(s: &Scenario) -> Self {
        let objects = Objects {
            releases: s.releases(),
            promotions: s.promotions(),
            deployments: Api::namespaced(s.admin.clone(), &s.ns),
            pods: Api::namespaced(s.admin.clone(), &s.ns),
            logs: s.env.logs().into_iter().filter(|(name, _)| name != "kube-apiserver" && name != "etcd").collect(),
        };
        Self { controller: s.controller(), starts: Vec::new(), objects }
    }

    /// Polls `check` until it yields a value, starting the controller again whenever it exited.
    async fn wait<T, F, Fut>(&mut self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.controller.exited() {
                eprintln!("the controller exited; starting it again:\n{}", self.controller.log_tail());
                self.controller.kill_and_restart();
                self.starts.push(Timestamp::now());
            }
            if let Some(value) = check().await {
                return value;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; objects: {}\ncontroller log:\n{}",
                    self.objects.describe().await,
                    self.controller.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// How often the controller was started again in `[from, to)`.
    fn starts_in(&self, from: Timestamp, to: Timestamp) -> u64 {
        self.starts.iter().filter(|at| **at >= from && **at < to).count() as u64
    }
}

/// The scenario's Releases, Promotions, Deployments and Pods, and the logs of the components
/// that move Deployments on (controller-manager, scheduler, kwok), described for failure messages.
struct Objects {
    releases: Api<tidegate_api::Release>,
    promotions: Api<tidegate_api::Promotion>,
    deployments: Api<Deployment>,
    pods: Api<Pod>,
    logs: Vec<(String, PathBuf)>,
}

impl Objects {
    async fn describe(&self) -> String {
        let conditions = |conditions: &[tidegate_api::Condition]| {
            conditions
                .iter()
                .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                .collect::<Vec<_>>()
        };
        let mut out = Vec::new();
        for r in self.releases.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            let status = r.status.unwrap_or_default();
            out.push(format!("Release {:?} {:?} {:?}", r.metadata.name, status.phase, conditions(&status.conditions)));
        }
        for p in self.promotions.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            let status = p.status.unwrap_or_default();
            out.push(format!(
                "Promotion {:?} {:?} {:?}",
                p.metadata.name,
                status.phase,
                conditions(&status.conditions)
            ));
        }
        for d in self.deployments.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            let status = d.status.unwrap_or_default();
            let image = d.spec.and_then(|s| s.template.spec).and_then(|s| s.containers.first().cloned()?.image);
            out.push(format!(
                "Deployment {:?} generation {:?} observed {:?} replicas {:?} updated {:?} available {:?} terminating {:?} image {image:?}",
                d.metadata.name,
                d.metadata.generation,
                status.observed_generation,
                status.replicas,
                status.updated_replicas,
                status.available_replicas,
                status.terminating_replicas
            ));
        }
        for p in self.pods.list(&Default::default()).await.map(|l| l.items).unwrap_or_default() {
            let status = p.status.unwrap_or_default();
            let node = p.spec.and_then(|s| s.node_name);
            let deleting = p.metadata.deletion_timestamp.map(|t| t.0.to_string());
            out.push(format!("Pod {:?} {:?} on {node:?} deleting since {deleting:?}", p.metadata.name, status.phase));
        }
        for (name, path) in &self.logs {
            out.push(format!("--- {name} log, last lines:\n{}", tidegate_testenv::process::tail(path, 12)));
        }
        out.join("\n")
    }
}

async fn release_in(s: &Scenario, phase: ReleasePhase) -> Option<()> {
    let releases = s.releases().list(&Default::default()).await.ok()?.items;
    releases.iter().any(|r| r.status.as_ref().is_some_and(|st| st.phase == phase)).then_some(())
}

/// The name of the Promotion once it waits for approval.
async fn awaiting_approval(s: &Scenario) -> Option<String> {
    let promotions = s.promotions().list(&Default::default()).await.ok()?.items;
    promotions
        .into_iter()
        .find(|p| p.status.as_ref().is_some_and(|st| st.phase == PromotionPhase::AwaitingApproval))?
        .metadata
        .name
}

async fn promotion_is(s: &Scenario, name: &str, phase: PromotionPhase) -> Option<()> {
    (s.promotions().get(name).await.ok()?.status?.phase == phase).then_some(())
}

/// Whether the approved Promotion is changing production (Promoting or Monitoring).
async fn changing_production(s: &Scenario, name: &str) -> Option<()> {
    let phase = s.promotions().get(name).await.ok()?.status?.phase;
    matches!(phase, PromotionPhase::Promoting | PromotionPhase::Monitoring).then_some(())
}

fn since(from: Timestamp) -> String {
    let elapsed = Timestamp::now().duration_since(from);
    format!("{:.1} s", elapsed.as_secs_f64())
}

/// Production runs `digest`, and was changed once: one Release and one Promotion, one
/// ReplicaSet per new slot, the job definition changed once, one Promoted record.
async fn production_changed_once(s: &Scenario, promotion: &str, digest: &str) {
    let want = Some(pinned(digest));
    assert_eq!(s.production().await, (want.clone(), want.clone(), want));
    assert_ne!(digest, BEFORE);
    assert_eq!(s.releases().list(&Default::default()).await.expect("releases").items.len(), 1, "one Release");
    assert_eq!(s.promotions().list(&Default::default()).await.expect("promotions").items.len(), 1, "one Promotion");
    let replicasets: Api<ReplicaSet> = Api::namespaced(s.admin.clone(), &s.ns);
    let all = replicasets.list(&Default::default()).await.expect("replicasets").items;
    for name in ["web-green", "worker-green"] {
        let owned: Vec<_> = all
            .iter()
            .filter(|rs| rs.metadata.owner_references.as_ref().is_some_and(|o| o.iter().any(|r| r.name == name)))
            .filter_map(|rs| rs.metadata.name.clone())
            .collect();
        assert_eq!(owned.len(), 1, "{name} was rolled out once: {owned:?}");
    }
    let cronjob = Api::<CronJob>::namespaced(s.admin.clone(), &s.ns).get("nightly-report").await.expect("cronjob");
    assert_eq!(cronjob.metadata.generation, Some(2), "the job definition changed exactly once");
    let promoted = common::wait("the Promoted record entry", MINUTE, || async {
        let status = s.promotions().get(promotion).await.ok()?.status?;
        let promoted: Vec<_> = status.records.into_iter().filter(|r| r.event == RecordEvent::Promoted).collect();
        (!promoted.is_empty()).then_some(promoted)
    })
    .await;
    assert_eq!(promoted.len(), 1, "one Promoted record: {promoted:?}");
}

/// The controller that started the pipeline is the one that finished it: it never lost its
/// lease (it exits when it does) and still serves its health endpoint.
async fn still_leading(controller: &ControllerProcess) {
    assert!(!controller.logged("leadership lost"), "the controller stepped down:\n{}", controller.log_tail());
    let health = common::http(&format!("{}/healthz", controller.metrics), None).await;
    assert!(health.starts_with("HTTP/1.1 200"), "the controller is alive: {health:?}\n{}", controller.log_tail());
}

/// The API server's audit log of the controller's requests.
struct Audit {
    path: PathBuf,
}

impl Audit {
    /// Restarts kube-apiserver with an audit log of every request of the controller's user and
    /// `flags`, and waits until it is ready.
    async fn enable(flags: &[&str]) -> Self {
        let env: &TestEnv = tidegate_testenv::shared().expect("environment starts");
        let (policy, path) = (env.dir().join("faults-audit-policy.yaml"), env.dir().join("faults-audit.log"));
        std::fs::write(
            &policy,
            format!(
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
                 - level: Metadata\n  users: [\"{CONTROLLER_USER}\"]\n- level: None\n"
            ),
        )
        .expect("audit policy");
        let mut all = vec![
            format!("--audit-policy-file={}", policy.display()),
            format!("--audit-log-path={}", path.display()),
            "--audit-log-format=json".to_string(),
            "--audit-log-maxsize=0".to_string(),
            "--audit-log-mode=blocking".to_string(),
        ];
        all.extend(flags.iter().map(|f| f.to_string()));
        let now = env.apiserver_args().expect("kube-apiserver's flags");
        if faults::with_flags(&now, &all) != now {
            env.restart_apiserver_with(&all).await.expect("restart kube-apiserver with the audit log");
        }
        // The simulated nodes' lease renewals fail while kube-apiserver restarts, and kwok retries
        // only a lease duration later; kube-controller-manager would then mark every Pod not Ready,
        // and kwok never marks them Ready again (a kubelet would), so production would look
        // unhealthy for good. Give the nodes longer before they count as lost. (Restarted after
        // kube-apiserver is ready: the manager gives up when it cannot reach it at start.)
        let grace = ["--node-monitor-grace-period=5m".to_string()];
        let manager = env.component_args(CONTROLLER_MANAGER).expect("kube-controller-manager's flags");
        if faults::with_flags(&manager, &grace) != manager {
            env.stop_component(CONTROLLER_MANAGER).await.expect("stop kube-controller-manager");
            env.start_component(CONTROLLER_MANAGER, &grace).await.expect("start kube-controller-manager");
        }
        Self { path }
    }

    /// The controller's requests about objects in `namespace`, each once.
    fn requests(&self, namespace: &str) -> Vec<Request> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        text.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|e| e["user"]["username"] == CONTROLLER_USER && e["objectRef"]["namespace"] == namespace)
            // A watch is recorded when it starts and when it ends, under one audit ID.
            .filter(|e| e["auditID"].as_str().is_some_and(|id| seen.insert(id.to_string())))
            .filter_map(|e| {
                Some(Request {
                    at: e["requestReceivedTimestamp"].as_str()?.parse().ok()?,
                    verb: e["verb"].as_str()?.to_string(),
                    resource: e["objectRef"]["resource"].as_str()?.to_string(),
                    code: e["responseStatus"]["code"].as_u64().unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// One request of the controller, from the audit log.
#[derive(Clone, Debug)]
struct Request {
    at: Timestamp,
    verb: String,
    resource: String,
    code: u64,
}

impl Request {
    fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// LISTs of one kind: answered, and failed (or refused).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Lists {
    ok: u64,
    failed: u64,
}

/// The LISTs of the watched kinds received in `[from, to)`, by resource.
fn lists(requests: &[Request], from: Timestamp, to: Timestamp) -> BTreeMap<String, Lists> {
    let mut lists = BTreeMap::<String, Lists>::new();
    for r in requests.iter().filter(|r| r.at >= from && r.at < to && r.verb == "list") {
        if WATCHED.contains(&r.resource.as_str()) {
            let entry = lists.entry(r.resource.clone()).or_default();
            if r.ok() { entry.ok += 1 } else { entry.failed += 1 }
        }
    }
    lists
}

/// Requests counted by "verb resource code".
fn by_verb<'a>(requests: impl Iterator<Item = &'a Request>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for r in requests {
        *counts.entry(format!("{} {} {}", r.verb, r.resource, r.code)).or_default() += 1;
    }
    counts
}

/// A TCP relay on loopback between the controller and kube-apiserver (TLS passes through), whose
/// connections can be cut: a network partition between the two.
struct Link {
    url: String,
    cut: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Link {
    async fn start(server: &str) -> Self {
        let upstream = server.trim_start_matches("https://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (is_cut, connections) = (cut.clone(), open.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                // While cut, a connection is closed as soon as it is made.
                if is_cut.load(std::sync::atomic::Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections.lock().unwrap_or_else(|e| e.into_inner()).push(task.abort_handle());
            }
        });
        Self { url, cut, open }
    }

    /// The controller's kubeconfig, reaching the API server through this link.
    fn controller_kubeconfig(&self, s: &Scenario) {
        let yaml = s
            .env
            .user_kubeconfig(CONTROLLER_USER, &["system:serviceaccounts", "system:serviceaccounts:tidegate-system"])
            .expect("kubeconfig");
        assert!(yaml.contains(s.env.server()), "the kubeconfig names the API server");
        std::fs::write(s.path("controller.kubeconfig"), yaml.replace(s.env.server(), &self.url)).expect("kubeconfig");
    }

    /// Drops every open connection and refuses new ones until [`Link::restore`].
    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for connection in self.open.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            connection.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
