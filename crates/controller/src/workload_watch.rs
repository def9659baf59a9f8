//! Wakes the reconcilers when a Kubernetes Deployment they deploy to changes.
//!
//! The controller holds no rights on workloads. For every (policy namespace, target namespace)
//! pair that some policy's Deployment targets name, it keeps one watch of that namespace's
//! Deployments *as the policy namespace's deployer* (which the shipped `tidegate-deployer` role
//! allows: `list` and `watch` on Deployments). A change of a Deployment wakes the policies that
//! target it (or one of its colour slots), their Releases that roll staging out or test it, and
//! their Promotions that have not ended.
//! Nothing is written because of a change: woken reconcilers look at the workload again (from
//! what the same watch shows, [`tidegate_providers::kubernetes::DeploymentCache`], while it is
//! current) and decide; a step that changes a workload reads it from the API server first.
//!
//! A policy whose every target is a watched Deployment keeps what it last read of them (an
//! [`Observation`]) until a change is seen, its generation changes, or `--resync-interval-seconds`
//! pass: its periodic looks (`--observe-interval-seconds`) then read nothing from the API server.
//! Any other policy, or one whose watch is not listed (not yet, failed, or forbidden), reads its
//! workloads on every look, as before.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tidegate_api::image_policy::{KubernetesKind, Workload};
use tidegate_api::{ImagePolicy, Promotion, Release};
use tidegate_core::promotion::PromotionPhaseExt;
use tidegate_core::release::ReleasePhaseExt;
use tidegate_core::{Digest, drift};
use tidegate_providers::kubernetes::{Change, Resolved, WorkloadChanges};
use tokio::sync::mpsc;

use crate::stores::Stores;

/// (policy namespace, target namespace).
type Pair = (String, String);

/// How often the set of watches is brought in line with the policies.
const RECONCILE_WATCHES: Duration = Duration::from_secs(2);
/// Wakes queued per kind before further ones are dropped (the periodic looks still come).
pub const WAKE_BUFFER: usize = 4096;

/// Which (policy namespace, target namespace) pairs are watched right now (listed, and not failed
/// since), how many changes each policy's Deployments have had, and the last observation of each
/// watched policy's workloads.
#[derive(Debug, Default)]
pub struct WorkloadWatches {
    listed: RwLock<HashSet<Pair>>,
    /// Changes seen per policy (namespace, name), counted from this process's start.
    changes: RwLock<HashMap<Pair, u64>>,
    observations: Mutex<HashMap<Pair, Observation>>,
}

/// What a policy's last read of its workloads found.
#[derive(Clone, Debug)]
pub struct Observation {
    /// Every production workload's live version.
    pub production: Vec<drift::Observed>,
    /// The digest every staging workload runs, when they agree.
    pub staging: Option<Digest>,
    /// The policy's change count when the read started.
    changes: u64,
    /// The policy (uid, generation) it was read for: its targets may have changed since, or the
    /// policy may have been deleted and created again under the same name.
    read_for: (Option<String>, Option<i64>),
    at: Instant,
}

impl WorkloadWatches {
    /// Taken right before a policy reads its workloads: `Some` (its change count) when every
    /// target is watched, so that the observation may stand until the next change.
    pub fn token(&self, policy: &ImagePolicy) -> Option<u64> {
        if !self.cover(policy) {
            return None;
        }
        let changes = self.changes.read().unwrap_or_else(|e| e.into_inner());
        Some(changes.get(&key(policy)).copied().unwrap_or(0))
    }

    /// The observation kept for `policy` when no change of its Deployments was seen since it was
    /// made (`token` still current) and it is younger than `max_age`.
    pub fn reuse(&self, policy: &ImagePolicy, token: u64, max_age: Duration) -> Option<Observation> {
        let observations = self.observations.lock().unwrap_or_else(|e| e.into_inner());
        observations
            .get(&key(policy))
            .filter(|o| o.changes == token && o.read_for == read_for(policy) && o.at.elapsed() < max_age)
            .cloned()
    }

    /// Keeps what a read started at `token` found.
    pub fn keep(&self, policy: &ImagePolicy, token: u64, production: Vec<drift::Observed>, staging: Option<Digest>) {
        let observation =
            Observation { production, staging, changes: token, read_for: read_for(policy), at: Instant::now() };
        self.observations.lock().unwrap_or_else(|e| e.into_inner()).insert(key(policy), observation);
    }

    /// Forgets policies that are gone.
    fn retain(&self, alive: &HashSet<Pair>) {
        self.observations.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| alive.contains(k));
        self.changes.write().unwrap_or_else(|e| e.into_inner()).retain(|k, _| alive.contains(k));
    }

    fn changed(&self, policy: &ImagePolicy) {
        *self.changes.write().unwrap_or_else(|e| e.into_inner()).entry(key(policy)).or_default() += 1;
    }

    /// Whether every workload of `policy`, staging and production, is a Deployment in a namespace
    /// watched as the policy namespace's deployer.
    pub fn cover(&self, policy: &ImagePolicy) -> bool {
        let Some(pairs) = pairs(policy) else { return false };
        let listed = self.listed.read().unwrap_or_else(|e| e.into_inner());
        !pairs.is_empty() && pairs.iter().all(|pair| listed.contains(pair))
    }

    /// Whether a change of any production workload in `workloads` (a Promotion's frozen ones)
    /// wakes the Promotions of `policy`: the policy is [covered](Self::cover) and every one of
    /// them is a Deployment target of the policy as it is now.
    pub fn wakes_promotions(&self, policy: &ImagePolicy, workloads: &[&Workload]) -> bool {
        let namespace = policy.namespace().unwrap_or_default();
        self.cover(policy)
            && workloads.iter().all(|workload| {
                workload
                    .production
                    .kubernetes
                    .as_ref()
                    .filter(|k| k.kind == KubernetesKind::Deployment)
                    .is_some_and(|target| concerns(policy, &Resolved::new(target, &namespace).namespace, &target.name))
            })
    }

    /// Records whether `pair` is listed.
    fn set(&self, pair: &Pair, listed: bool) {
        let mut set = self.listed.write().unwrap_or_else(|e| e.into_inner());
        if listed {
            set.insert(pair.clone());
        } else {
            set.remove(pair);
        }
    }
}

/// What an observation of `policy` was read for.
fn read_for(policy: &ImagePolicy) -> (Option<String>, Option<i64>) {
    (policy.metadata.uid.clone(), policy.metadata.generation)
}

/// (namespace, name) of a policy.
fn key(policy: &ImagePolicy) -> Pair {
    (policy.namespace().unwrap_or_default(), policy.name_any())
}

/// The pairs `policy`'s Deployment targets need; `None` when some target is not a Kubernetes
/// Deployment (a CronJob or an Azure target, which no watch covers).
pub fn pairs(policy: &ImagePolicy) -> Option<HashSet<Pair>> {
    let namespace = policy.namespace().unwrap_or_default();
    let mut pairs = HashSet::new();
    for workload in &policy.spec.workloads {
        for side in [&workload.staging, &workload.production] {
            let target = side.kubernetes.as_ref().filter(|k| k.kind == KubernetesKind::Deployment)?;
            pairs.insert((namespace.clone(), Resolved::new(target, &namespace).namespace));
        }
    }
    Some(pairs)
}

/// Whether a change of the Deployment `name` in `target_namespace` concerns `policy`: one of its
/// Deployment targets is that Deployment, or that Deployment is one of a target's colour slots
/// (`<target>-green`).
pub fn concerns(policy: &ImagePolicy, target_namespace: &str, name: &str) -> bool {
    let namespace = policy.namespace().unwrap_or_default();
    policy.spec.workloads.iter().flat_map(sides).any(|target| {
        let resolved = Resolved::new(target, &namespace);
        resolved.namespace == target_namespace
            && (name == target.name || name.strip_prefix(target.name.as_str()).is_some_and(|s| s.starts_with('-')))
    })
}

fn sides(workload: &Workload) -> impl Iterator<Item = &tidegate_api::image_policy::KubernetesTarget> {
    [&workload.staging, &workload.production]
        .into_iter()
        .filter_map(|side| side.kubernetes.as_ref().filter(|k| k.kind == KubernetesKind::Deployment))
}

/// Where wakes go: one queue per reconciler.
#[derive(Clone)]
pub struct Wakes {
    policies: mpsc::Sender<ObjectRef<ImagePolicy>>,
    releases: mpsc::Sender<ObjectRef<Release>>,
    promotions: mpsc::Sender<ObjectRef<Promotion>>,
}

/// The receiving ends of [`Wakes`], for `Controller::reconcile_on`.
pub struct WakeStreams {
    /// Policies to look again.
    pub policies: mpsc::Receiver<ObjectRef<ImagePolicy>>,
    /// Releases to look again.
    pub releases: mpsc::Receiver<ObjectRef<Release>>,
    /// Promotions to look again.
    pub promotions: mpsc::Receiver<ObjectRef<Promotion>>,
}

/// A set of wake queues.
pub fn wakes() -> (Wakes, WakeStreams) {
    let (policies, policies_rx) = mpsc::channel(WAKE_BUFFER);
    let (releases, releases_rx) = mpsc::channel(WAKE_BUFFER);
    let (promotions, promotions_rx) = mpsc::channel(WAKE_BUFFER);
    (
        Wakes { policies, releases, promotions },
        WakeStreams { policies: policies_rx, releases: releases_rx, promotions: promotions_rx },
    )
}

/// A queue's receiver as a stream.
pub fn stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
}

impl Wakes {
    /// Where Releases to look again go.
    pub fn releases(&self) -> mpsc::Sender<ObjectRef<Release>> {
        self.releases.clone()
    }

    /// Wakes the policies of `pair` that a change of `name` concerns, with their Releases that
    /// roll staging out or test it and their Promotions that have not ended.
    fn wake(&self, watches: &WorkloadWatches, stores: &Stores, pair: &Pair, name: &str) {
        let (policy_namespace, target_namespace) = pair;
        for policy in stores.policies.state() {
            if policy.namespace().as_deref() != Some(policy_namespace.as_str())
                || !concerns(&policy, target_namespace, name)
            {
                continue;
            }
            watches.changed(&policy);
            // A full queue drops the wake: the reconciler's own periodic look still comes.
            let _ = self.policies.try_send(ObjectRef::from_obj(policy.as_ref()));
            for release in stores.release_refs_of(&policy) {
                if stores
                    .releases
                    .get(&release)
                    .is_some_and(|r| r.status.as_ref().is_some_and(|s| s.phase.waits_for_workloads()))
                {
                    let _ = self.releases.try_send(release);
                }
            }
            let name = policy.name_any();
            for promotion in stores.promotions_by_policy.get(policy_namespace, &name) {
                let promotion = ObjectRef::new(&promotion).within(policy_namespace);
                if stores
                    .promotions
                    .get(&promotion)
                    .is_some_and(|p| !p.status.as_ref().is_some_and(|s| s.phase.is_terminal()))
                {
                    let _ = self.promotions.try_send(promotion);
                }
            }
        }
    }
}

/// Keeps one watch per pair the policies need, until the process ends.
pub async fn run(changes: Arc<dyn WorkloadChanges>, watches: Arc<WorkloadWatches>, stores: Arc<Stores>, wakes: Wakes) {
    let mut running: HashMap<Pair, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let policies = stores.policies.state();
        let wanted: HashSet<Pair> = policies.iter().filter_map(|p| pairs(p)).flatten().collect();
        watches.retain(&policies.iter().map(|p| key(p)).collect());
        running.retain(|pair, task| {
            let keep = wanted.contains(pair) && !task.is_finished();
            if !keep {
                task.abort();
                watches.set(pair, false);
            }
            keep
        });
        for pair in wanted {
            if running.contains_key(&pair) {
                continue;
            }
            match changes.deployments(&pair.0, &pair.1) {
                Ok(stream) => {
                    let task = follow(pair.clone(), stream, watches.clone(), stores.clone(), wakes.clone());
                    running.insert(pair, tokio::spawn(task));
                }
                Err(e) => tracing::debug!(error = %e, policy_namespace = pair.0, "cannot watch Deployments"),
            }
        }
        tokio::time::sleep(RECONCILE_WATCHES).await;
    }
}

/// Follows one pair's changes: records whether it is listed and wakes whom a change concerns.
///
/// A failed watch wakes nobody: while it is down its policies read their workloads on every
/// look and their rollouts are polled every 2 s again (they are no longer covered). A relist
/// reports the Deployments that changed meanwhile one by one ([`Change`]), so it wakes only
/// their waiters, not every policy of the pair: a thousand policies whose watches expire
/// together would otherwise all read their workloads at once.
async fn follow(
    pair: Pair,
    mut changes: futures::stream::BoxStream<'static, Change>,
    watches: Arc<WorkloadWatches>,
    stores: Arc<Stores>,
    wakes: Wakes,
) {
    // Whether the current outage was reported (once per outage, and once if it never listed).
    let mut reported = false;
    while let Some(change) = changes.next().await {
        match change {
            Change::Listed => {
                watches.set(&pair, true);
                reported = false;
            }
            Change::Changed(name) => wakes.wake(&watches, &stores, &pair, &name),
            Change::Failed(error) => {
                watches.set(&pair, false);
                if !reported {
                    reported = true;
                    tracing::warn!(
                        %error,
                        policy_namespace = pair.0,
                        namespace = pair.1,
                        "watching Deployments as the deployer failed; the policies read them on every look until it recovers"
                    );
                }
            }
        }
    }
    watches.set(&pair, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> ImagePolicy {
        serde_yaml::from_str(yaml).unwrap()
    }

    const TWO_NAMESPACES: &str = r#"
apiVersion: tidegate.dev/v1alpha1
kind: ImagePolicy
metadata: {name: shop, namespace: team}
spec:
  image: registry.example/shop
  build: {strategy: rebase}
  scan: {scanner: trivy}
  workloads:
  - name: api
    kind: http
    staging: {kubernetes: {kind: Deployment, name: api, namespace: team-staging}}
    production: {kubernetes: {kind: Deployment, name: api}}
"#;

    #[test]
    fn a_policy_needs_a_watch_per_target_namespace_and_is_covered_only_when_all_are_listed() {
        let policy = policy(TWO_NAMESPACES);
        let wanted = pairs(&policy).unwrap();
        let staging = ("team".to_string(), "team-staging".to_string());
        let production = ("team".to_string(), "team".to_string());
        assert_eq!(wanted, HashSet::from([staging.clone(), production.clone()]));
        let watches = WorkloadWatches::default();
        assert!(!watches.cover(&policy));
        watches.set(&staging, true);
        assert!(!watches.cover(&policy), "production is not watched yet");
        watches.set(&production, true);
        assert!(watches.cover(&policy));
        watches.set(&staging, false);
        assert!(!watches.cover(&policy), "a failed watch puts the policy back on polling");
    }

    #[test]
    fn an_observation_stands_only_until_a_change_a_new_generation_or_its_age() {
        let mut policy = policy(TWO_NAMESPACES);
        policy.metadata.generation = Some(1);
        let watches = WorkloadWatches::default();
        assert_eq!(watches.token(&policy), None, "not watched: always read");
        for pair in pairs(&policy).unwrap() {
            watches.set(&pair, true);
        }
        let token = watches.token(&policy).expect("watched");
        watches.keep(&policy, token, Vec::new(), None);
        let hour = Duration::from_secs(3600);
        assert!(watches.reuse(&policy, token, hour).is_some());
        assert!(watches.reuse(&policy, token, Duration::ZERO).is_none(), "too old");
        watches.changed(&policy);
        let after = watches.token(&policy).expect("watched");
        assert!(watches.reuse(&policy, after, hour).is_none(), "a change since the read");
        watches.keep(&policy, after, Vec::new(), None);
        policy.metadata.generation = Some(2);
        assert!(watches.reuse(&policy, after, hour).is_none(), "the policy's targets may have changed");
        watches.keep(&policy, after, Vec::new(), None);
        policy.metadata.uid = Some("recreated".into());
        assert!(watches.reuse(&policy, after, hour).is_none(), "another policy under the same name");
    }

    #[test]
    fn a_promotion_is_woken_only_for_frozen_targets_the_policy_still_names() {
        let policy = policy(TWO_NAMESPACES);
        let watches = WorkloadWatches::default();
        for pair in pairs(&policy).unwrap() {
            watches.set(&pair, true);
        }
        let frozen = policy.spec.workloads.clone();
        assert!(watches.wakes_promotions(&policy, &frozen.iter().collect::<Vec<_>>()));
        // Frozen before the policy's production target was renamed: its changes wake nobody.
        let mut moved = frozen[0].clone();
        moved.production.kubernetes.as_mut().unwrap().name = "web".into();
        assert!(!watches.wakes_promotions(&policy, &[&moved]));
        moved.production.kubernetes.as_mut().unwrap().name = "api".into();
        moved.production.kubernetes.as_mut().unwrap().namespace = Some("elsewhere".into());
        assert!(!watches.wakes_promotions(&policy, &[&moved]), "another namespace");
        watches.set(&("team".to_string(), "team".to_string()), false);
        assert!(!watches.wakes_promotions(&policy, &frozen.iter().collect::<Vec<_>>()), "the watch failed");
    }

    #[test]
    fn a_cronjob_target_is_not_covered_by_any_watch() {
        let policy = policy(&TWO_NAMESPACES.replace(
            "production: {kubernetes: {kind: Deployment, name: api}}",
            "production: {kubernetes: {kind: CronJob, name: api}}",
        ));
        assert_eq!(pairs(&policy), None);
    }

    #[test]
    fn a_change_concerns_the_target_and_its_slots_in_its_namespace_only() {
        let policy = policy(TWO_NAMESPACES);
        assert!(concerns(&policy, "team", "api"));
        assert!(concerns(&policy, "team", "api-green"));
        assert!(concerns(&policy, "team-staging", "api"));
        assert!(!concerns(&policy, "team", "api2"), "another Deployment that merely shares the prefix");
        assert!(!concerns(&policy, "team", "web"));
        assert!(!concerns(&policy, "elsewhere", "api"));
    }

    /// A store of `objects` and the indexes given, as a watch's first list leaves them.
    fn listed<K>(indexes: &[&Arc<crate::index::Index<K>>], objects: Vec<K>) -> kube::runtime::reflector::Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        use kube::runtime::watcher::Event;
        let mut writer = kube::runtime::reflector::store::Writer::default();
        let events = std::iter::once(Event::Init)
            .chain(objects.into_iter().map(Event::InitApply))
            .chain(std::iter::once(Event::InitDone));
        for event in events {
            for index in indexes {
                index.apply(&event);
            }
            writer.apply_watcher_event(&event);
        }
        writer.as_reader()
    }

    /// The names woken so far, sorted.
    fn drain<K: kube::Resource<DynamicType = ()>>(rx: &mut mpsc::Receiver<ObjectRef<K>>) -> Vec<String> {
        let mut names = Vec::new();
        while let Ok(reference) = rx.try_recv() {
            names.push(reference.name);
        }
        names.sort();
        names
    }

    fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: serde_json::Value, phase: &str) -> K {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tidegate.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": "team"},
            "spec": spec, "status": {"phase": phase},
        }))
        .unwrap()
    }

    #[test]
    fn a_deployment_change_wakes_its_policy_the_releases_rolling_staging_and_the_open_promotions() {
        use crate::index::Index;
        let digest = format!("sha256:{}", "a".repeat(64));
        let release = |name: &str, phase: &str| -> Release {
            object(
                "Release",
                name,
                serde_json::json!({"policy": "shop", "reason": {"type": "BaseImageUpdated"}}),
                phase,
            )
        };
        let promotion = |name: &str, phase: &str| -> Promotion {
            let spec = serde_json::json!({"policy": "shop", "release": "r-verified", "digest": digest});
            object("Promotion", name, spec, phase)
        };
        let releases_by_policy = Arc::new(Index::new(|r: &Release| r.spec.policy.clone()));
        let promotions_by_policy = Arc::new(Index::new(|p: &Promotion| p.spec.policy.clone()));
        let promotions_by_release = Arc::new(Index::new(|p: &Promotion| p.spec.release.clone()));
        let releases = ["Staging", "Testing", "Verified", "Superseded", "Building"];
        let promotions = ["AwaitingApproval", "Promoting", "Succeeded", "RolledBack"];
        let stores = Stores {
            policies: listed(&[], vec![policy(TWO_NAMESPACES)]),
            releases: listed(
                &[&releases_by_policy],
                releases.iter().map(|p| release(&format!("r-{}", p.to_lowercase()), p)).collect(),
            ),
            promotions: listed(
                &[&promotions_by_policy, &promotions_by_release],
                promotions.iter().map(|p| promotion(&format!("p-{}", p.to_lowercase()), p)).collect(),
            ),
            releases_by_policy,
            promotions_by_policy,
            promotions_by_release,
            versions: Default::default(),
        };
        let (wakes, mut woken) = super::wakes();
        let watches = WorkloadWatches::default();
        let pair = ("team".to_string(), "team-staging".to_string());
        wakes.wake(&watches, &stores, &pair, "api");

        assert_eq!(drain(&mut woken.policies), vec!["shop"]);
        assert_eq!(
            drain(&mut woken.releases),
            vec!["r-staging", "r-testing"],
            "a Verified Release waits for no workload"
        );
        assert_eq!(drain(&mut woken.promotions), vec!["p-awaitingapproval", "p-promoting"]);

        wakes.wake(&watches, &stores, &pair, "unrelated");
        assert!(drain(&mut woken.policies).is_empty(), "a Deployment no policy targets wakes nobody");
    }
}
