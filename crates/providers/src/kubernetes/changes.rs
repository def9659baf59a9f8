//! Changes of the Deployments in one namespace, as a policy namespace's deployer sees them.
//!
//! A watch made with the deployer's impersonating client: the controller learns of a change only
//! where the deployer may read it, exactly as its reads do. Reconcilers waiting for a workload are
//! woken by these changes instead of polling it, and what the watch shows is kept, trimmed, in the
//! [`DeploymentCache`](super::DeploymentCache) of the [`Reach`] for the reads that only look.

use std::collections::HashMap;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::Result;
use crate::authz::Reach;

/// What a watch of one namespace's Deployments reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The watch listed the namespace: from now on every change is reported. Also after a relist
    /// (a watch expired, the API server restarted); what changed while the watch was down is
    /// reported right before it, as [`Change::Changed`], so a relist wakes nobody else.
    Listed,
    /// The Deployment of this name was created, changed (spec or status) or deleted.
    Changed(String),
    /// The watch failed (it is retried with backoff): changes may be missed until the next
    /// [`Change::Listed`].
    Failed(String),
}

/// Sources of workload changes, one stream per (policy namespace, target namespace).
pub trait WorkloadChanges: Send + Sync {
    /// Changes of the Deployments in `target_namespace`, seen as the deployer of
    /// `policy_namespace`. The stream runs until dropped.
    fn deployments(
        &self,
        policy_namespace: &str,
        target_namespace: &str,
    ) -> Result<futures::stream::BoxStream<'static, Change>>;
}

impl WorkloadChanges for Reach {
    fn deployments(
        &self,
        policy_namespace: &str,
        target_namespace: &str,
    ) -> Result<futures::stream::BoxStream<'static, Change>> {
        let api: Api<Deployment> = Api::namespaced(self.client(policy_namespace)?, target_namespace);
        // The cache takes each event before it is reported: a woken reconciler reads the change.
        let feed = self.deployment_cache().feed(policy_namespace, target_namespace);
        let config = watcher::Config::default().timeout(watch_timeout(policy_namespace, target_namespace));
        let events = watcher::watcher(api, config).default_backoff().inspect(move |e| feed.take(e));
        Ok(changes(events).boxed())
    }
}

/// Seconds the API server keeps one watch request of the pair open (the watch is then opened
/// again from where it was): between 240 and 289 (kube requires less than 295), fixed per pair
/// and spread over the pairs. Watches started together (a controller's start, a thousand new
/// policies) would otherwise all be opened again in the same second, every time.
fn watch_timeout(policy_namespace: &str, target_namespace: &str) -> u32 {
    // FNV-1a, stable across builds and processes, then MurmurHash3's finalizer: FNV's low bits
    // alone follow the parity of the bytes, and names such as `a-01`/`a-01-staging` share it.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in policy_namespace.bytes().chain([b'/']).chain(target_namespace.bytes()) {
        hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
    }
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^= hash >> 16;
    240 + hash % 50
}

/// The resource version of every Deployment seen, by name.
type Versions = HashMap<String, Option<String>>;

/// Watch events as [`Change`]s: one per changed object, one per error, and when a list completes
/// one per object that is new, changed or gone since the list before (none after the first list),
/// then [`Change::Listed`].
fn changes<M, E>(events: impl Stream<Item = std::result::Result<Event<M>, E>>) -> impl Stream<Item = Change>
where
    M: kube::ResourceExt,
    E: std::fmt::Display,
{
    // What was seen (`None` until the first list completes), and the list under way.
    let state: (Option<Versions>, Versions) = (None, Versions::new());
    events
        .scan(state, |(known, listing), event| {
            let version = |object: &M| object.resource_version();
            let out = match event {
                Ok(Event::Apply(object)) => {
                    known.get_or_insert_with(Versions::new).insert(object.name_any(), version(&object));
                    vec![Change::Changed(object.name_any())]
                }
                Ok(Event::Delete(object)) => {
                    if let Some(known) = known.as_mut() {
                        known.remove(&object.name_any());
                    }
                    vec![Change::Changed(object.name_any())]
                }
                Ok(Event::Init) => {
                    listing.clear();
                    Vec::new()
                }
                Ok(Event::InitApply(object)) => {
                    listing.insert(object.name_any(), version(&object));
                    Vec::new()
                }
                Ok(Event::InitDone) => {
                    let listed = std::mem::take(listing);
                    let mut out: Vec<Change> = match known.as_ref() {
                        None => Vec::new(),
                        Some(before) => {
                            let mut names: Vec<&String> = listed
                                .iter()
                                .filter(|(name, version)| before.get(*name) != Some(version))
                                .map(|(name, _)| name)
                                .chain(before.keys().filter(|name| !listed.contains_key(*name)))
                                .collect();
                            names.sort();
                            names.into_iter().map(|name| Change::Changed(name.clone())).collect()
                        }
                    };
                    *known = Some(listed);
                    out.push(Change::Listed);
                    out
                }
                Err(e) => vec![Change::Failed(e.to_string())],
            };
            futures::future::ready(Some(futures::stream::iter(out)))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::PartialObjectMeta;

    fn named(name: &str) -> PartialObjectMeta<Deployment> {
        versioned(name, "1")
    }

    fn versioned(name: &str, version: &str) -> PartialObjectMeta<Deployment> {
        let mut meta = PartialObjectMeta::<Deployment>::default();
        meta.metadata.name = Some(name.into());
        meta.metadata.resource_version = Some(version.into());
        meta
    }

    #[test]
    fn the_watches_of_many_pairs_time_out_spread_over_fifty_seconds_each_always_the_same() {
        let timeouts: Vec<u32> =
            (0..200).map(|i| watch_timeout(&format!("bench-{i:02}"), &format!("bench-{i:02}-staging"))).collect();
        assert!(timeouts.iter().all(|t| (240..290).contains(t)), "{timeouts:?}");
        let distinct: std::collections::BTreeSet<u32> = timeouts.iter().copied().collect();
        assert!(distinct.len() >= 40, "200 pairs share only {} timeouts: {distinct:?}", distinct.len());
        assert_eq!(watch_timeout("a", "b"), watch_timeout("a", "b"));
        assert_ne!(watch_timeout("a", "b"), watch_timeout("b", "a"), "the pair is ordered");
    }

    #[tokio::test]
    async fn a_relist_reports_only_what_changed_while_the_watch_was_down() {
        let events: Vec<std::result::Result<Event<PartialObjectMeta<Deployment>>, String>> = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(versioned("a", "1"))),
            Ok(Event::InitApply(versioned("b", "2"))),
            Ok(Event::InitApply(versioned("c", "3"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(versioned("a", "4"))),
            Err("410 Gone".into()),
            // Meanwhile: b changed, c was deleted, d was created; a stayed as last seen.
            Ok(Event::Init),
            Ok(Event::InitApply(versioned("a", "4"))),
            Ok(Event::InitApply(versioned("b", "5"))),
            Ok(Event::InitApply(versioned("d", "6"))),
            Ok(Event::InitDone),
            // A relist that finds nothing new reports nothing but its end.
            Ok(Event::Init),
            Ok(Event::InitApply(versioned("a", "4"))),
            Ok(Event::InitApply(versioned("b", "5"))),
            Ok(Event::InitApply(versioned("d", "6"))),
            Ok(Event::InitDone),
        ];
        let seen: Vec<Change> = changes(futures::stream::iter(events)).collect().await;
        let changed = |n: &str| Change::Changed(n.into());
        assert_eq!(
            seen,
            vec![
                Change::Listed,
                changed("a"),
                Change::Failed("410 Gone".into()),
                changed("b"),
                changed("c"),
                changed("d"),
                Change::Listed,
                Change::Listed,
            ]
        );
    }

    #[tokio::test]
    async fn a_relist_reports_once_at_its_end_and_changes_report_their_object() {
        let events: Vec<std::result::Result<Event<PartialObjectMeta<Deployment>>, String>> = vec![
            Ok(Event::Init),
            Ok(Event::InitApply(named("a"))),
            Ok(Event::InitApply(named("b"))),
            Ok(Event::InitDone),
            Ok(Event::Apply(named("a"))),
            Err("410 Gone".into()),
            Ok(Event::Delete(named("b-green"))),
        ];
        let seen: Vec<Change> = changes(futures::stream::iter(events)).collect().await;
        assert_eq!(
            seen,
            vec![
                Change::Listed,
                Change::Changed("a".into()),
                Change::Failed("410 Gone".into()),
                Change::Changed("b-green".into()),
            ]
        );
    }
}
