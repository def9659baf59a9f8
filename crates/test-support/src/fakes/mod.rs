//! In-memory doubles of every provider in the controller's [`Context`], and [`World`], which
//! puts them together so that reconcilers run in a unit test: no API server, no registry, no
//! cluster. What each double saw (writes, questions, Events) is kept for the test to read.
//! The same reconcilers also run against the real control plane in the integration tests.

mod authz;
mod objects;
mod providers;
mod targets;

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use kube::{Resource, ResourceExt};
use tidegate_api::{ImagePolicy, Promotion, Release};
use tidegate_controller::context::Context;
use tidegate_controller::index::Index;
use tidegate_controller::stores::{Stores, Versions};
use tidegate_controller::{
    backoff, canary, leader, metrics, scan_queue, scanners, signature_proofs, vulnerabilities, watcher,
};

pub use authz::FakeAuthorizer;
pub use objects::{FakeEvents, FakeObjects, PublishedEvent};
pub use providers::{FakeAttestor, FakeRegistry, FakeScanner, FakeTestJobs};
pub use targets::{FakeTargets, Write};

use crate::inprocess::{HmacSigner, InProcessBuilder};

/// A clock the test moves.
#[derive(Clone)]
pub struct Clock(Arc<Mutex<Timestamp>>);

impl Clock {
    /// A clock standing at `now`.
    pub fn at(now: Timestamp) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    /// The time now.
    pub fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the clock `by` forward.
    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.checked_add(by).expect("the clock stays in range");
    }
}

/// The user the controller runs as in a [`World`].
pub const CONTROLLER: &str = "system:serviceaccount:tidegate-system:tidegate-controller";

/// The controller's whole world in memory, and a [`Context`] that acts on it.
pub struct World {
    /// The time.
    pub clock: Clock,
    /// ImagePolicies.
    pub policies: Arc<FakeObjects<ImagePolicy>>,
    /// Releases.
    pub releases: Arc<FakeObjects<Release>>,
    /// Promotions.
    pub promotions: Arc<FakeObjects<Promotion>>,
    /// Events.
    pub events: Arc<FakeEvents>,
    /// Approvers' rights and the admission proof.
    pub authorizer: Arc<FakeAuthorizer>,
    /// Deploy targets.
    pub targets: FakeTargets,
    /// Staging test Jobs.
    pub test_jobs: Arc<FakeTestJobs>,
    /// Registry tags.
    pub registry: Arc<FakeRegistry>,
    /// Findings every scanner reports.
    pub scanner: Arc<FakeScanner>,
    /// Promotion records.
    pub attestor: Arc<FakeAttestor>,
    /// Signs and verifies with a throwaway key.
    pub signer: Arc<HmacSigner>,
    /// Releases the controller's background scans woke when they ended.
    pub woken: Mutex<tokio::sync::mpsc::Receiver<kube::runtime::reflector::ObjectRef<Release>>>,
    watches: Mutex<Watches>,
    /// What the reconcilers get.
    pub context: Arc<Context>,
}

struct Watches {
    policies: Writer<ImagePolicy>,
    releases: Writer<Release>,
    promotions: Writer<Promotion>,
}

impl World {
    /// An empty world at `now`, signing with a throwaway key.
    pub fn new(now: Timestamp) -> Self {
        let clock = Clock::at(now);
        let policies = Arc::new(FakeObjects::new(clock.clone()));
        let releases = Arc::new(FakeObjects::new(clock.clone()));
        let promotions = Arc::new(FakeObjects::new(clock.clone()));
        let events = Arc::new(FakeEvents::default());
        let authorizer = Arc::new(FakeAuthorizer::default());
        let targets = FakeTargets::default();
        let test_jobs = Arc::new(FakeTestJobs::default());
        let registry = Arc::new(FakeRegistry::default());
        let scanner = Arc::new(FakeScanner::default());
        let attestor = Arc::new(FakeAttestor::default());
        let signer = Arc::new(HmacSigner::new(b"a throwaway key for unit tests only".to_vec()).expect("a key"));

        let watches =
            Watches { policies: Writer::default(), releases: Writer::default(), promotions: Writer::default() };
        let stores = Arc::new(Stores {
            policies: watches.policies.as_reader(),
            releases: watches.releases.as_reader(),
            promotions: watches.promotions.as_reader(),
            releases_by_policy: Arc::new(Index::new(|r: &Release| r.spec.policy.clone())),
            promotions_by_policy: Arc::new(Index::new(|p: &Promotion| p.spec.policy.clone())),
            promotions_by_release: Arc::new(Index::new(|p: &Promotion| p.spec.release.clone())),
            versions: Arc::new(Versions::default()),
        });
        let time = clock.clone();
        let (wake, woken) = tokio::sync::mpsc::channel(64);
        let metrics = Arc::new(metrics::Metrics::default());
        let context = Arc::new(Context {
            stores,
            objects: tidegate_controller::objects::Objects {
                policies: policies.clone(),
                releases: releases.clone(),
                promotions: promotions.clone(),
            },
            deployers: Arc::new(targets.clone()),
            test_jobs: test_jobs.clone(),
            leadership: leader::Leadership::unfenced(),
            authorizer: authorizer.clone(),
            builder: Arc::new(InProcessBuilder),
            scanners: scanners::Scanners {
                config_maps: scanner.clone(),
                signed_reports: Some(scanner.clone()),
                operator: Some(scanner.clone()),
                trivy: Some(scanner.clone()),
                defender: Some(scanner.clone()),
            },
            scans: vulnerabilities::cache(),
            scan_queue: Arc::new(scan_queue::ScanQueue::new(wake, metrics.scans_pending.clone())),
            signer: signer.clone(),
            signature_proofs: signature_proofs::SignatureProofs::default(),
            right_proofs: Default::default(),
            known_runs: Default::default(),
            turns: Default::default(),
            attestor: attestor.clone(),
            events: events.clone(),
            metrics,
            backoff: backoff::Backoff::default(),
            identity: CONTROLLER.into(),
            clock: Arc::new(move || time.now()),
            watcher: Arc::new(watcher::BaseWatcher::new(registry.clone())),
            registry: registry.clone(),
            canary: canary::CanaryClock::default(),
            http_checks: Default::default(),
            observe_interval: std::time::Duration::from_secs(30),
            workload_watches: Default::default(),
            resync_interval: std::time::Duration::from_secs(600),
        });
        Self {
            clock,
            policies,
            releases,
            promotions,
            events,
            authorizer,
            targets,
            test_jobs,
            registry,
            scanner,
            attestor,
            signer,
            woken: Mutex::new(woken),
            watches: Mutex::new(watches),
            context,
        }
    }

    /// The watches catch up: every store and index holds what the fakes hold now (a relist).
    pub fn sync(&self) {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let stores = &self.context.stores;
        relist(&mut watches.policies, &[], self.policies.all());
        relist(&mut watches.releases, &[&stores.releases_by_policy], self.releases.all());
        relist(
            &mut watches.promotions,
            &[&stores.promotions_by_policy, &stores.promotions_by_release],
            self.promotions.all(),
        );
    }

    /// Reconciles the Promotion `namespace/name` once, from the watch's copy.
    pub async fn reconcile_promotion(&self, namespace: &str, name: &str) -> tidegate_controller::error::Result<()> {
        self.sync();
        let promotion = self.promotions.find(namespace, name).expect("the Promotion exists");
        tidegate_controller::promotion::reconcile(Arc::new(promotion), self.context.clone()).await.map(|_| ())
    }

    /// Reconciles the Release `namespace/name` once, from the watch's copy.
    pub async fn reconcile_release(&self, namespace: &str, name: &str) -> tidegate_controller::error::Result<()> {
        self.sync();
        let release = self.releases.find(namespace, name).expect("the Release exists");
        tidegate_controller::release::reconcile(Arc::new(release), self.context.clone()).await.map(|_| ())
    }

    /// The next Release a background scan woke, waiting at most `within` for one.
    pub async fn woken_release(&self, within: std::time::Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(woken) = self.woken.lock().unwrap_or_else(|e| e.into_inner()).try_recv() {
                return Some(woken.name);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

fn relist<K>(writer: &mut Writer<K>, indexes: &[&Arc<Index<K>>], objects: Vec<K>)
where
    K: Resource<DynamicType = ()> + ResourceExt + Clone + 'static,
{
    let mut events = vec![Event::Init];
    events.extend(objects.into_iter().map(Event::InitApply));
    events.push(Event::InitDone);
    for event in &events {
        for index in indexes {
            index.apply(event);
        }
        writer.apply_watcher_event(event);
    }
}
