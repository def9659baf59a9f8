//! What the deployer watches of Deployments show, kept trimmed, so that reads which only look
//! (a policy's view of what runs, a Promotion's look at production before it changes it, a
//! monitored rollout's health) cost no request.
//!
//! Kept per (policy namespace, target namespace): what a watch made as the policy namespace's
//! deployer listed. A read for a policy of namespace `a` is answered only from what `a`'s deployer
//! watch saw, never from what another namespace's deployer may see. An answer is given only while
//! that watch is listed and has not failed since; otherwise the caller reads the API server, as
//! before. Writes never rest on it: a rollout step reads the object it changes fresh.
//!
//! Each Deployment is kept without what no read here uses: managed fields, annotations other
//! than Tidegate's, the pod template beyond its labels and its containers' names and images.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;

/// Annotations kept: Tidegate's own (the live slot, slot replicas, break-glass marks).
const KEPT_ANNOTATIONS: &str = "tidegate.dev/";

/// (policy namespace, target namespace).
type Pair = (String, String);

/// Trimmed Deployments by (policy namespace, target namespace), as each pair's watch saw them.
#[derive(Debug, Default)]
pub struct DeploymentCache {
    pairs: RwLock<HashMap<Pair, Watched>>,
    next_watch: AtomicU64,
    hits: AtomicU64,
}

/// One pair's watch: what it last listed and saw since, and whether that can be believed.
#[derive(Debug, Default)]
struct Watched {
    /// The watch that feeds this entry (a newer watch of the same pair replaces an older one).
    watch: u64,
    /// Listed, and no failure since.
    current: bool,
    objects: HashMap<String, Arc<Deployment>>,
    /// A list under way.
    listing: HashMap<String, Arc<Deployment>>,
}

impl DeploymentCache {
    /// The Deployment `name` in `target_namespace` as the watch made as `policy_namespace`'s
    /// deployer shows it: `Some(None)` when that watch is current and has no such Deployment,
    /// `None` when the cache cannot tell (no such watch, not listed yet, or failed since).
    pub fn get(&self, policy_namespace: &str, target_namespace: &str, name: &str) -> Option<Option<Deployment>> {
        let pairs = self.pairs.read().unwrap_or_else(|e| e.into_inner());
        let watched = pairs.get(&(policy_namespace.to_string(), target_namespace.to_string()))?;
        if !watched.current {
            return None;
        }
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(watched.objects.get(name).map(|d| d.as_ref().clone()))
    }

    /// Reads answered from the cache since the process started.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// A feed for a new watch of `pair`; the pair's entry lives as long as the feed does.
    pub(super) fn feed(self: &Arc<Self>, policy_namespace: &str, target_namespace: &str) -> Feed {
        let watch = self.next_watch.fetch_add(1, Ordering::Relaxed);
        let pair = (policy_namespace.to_string(), target_namespace.to_string());
        self.pairs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pair.clone(), Watched { watch, ..Default::default() });
        Feed { cache: self.clone(), pair, watch }
    }
}

/// Feeds one watch's events into the cache; dropping it (the watch ended) forgets the pair.
pub(super) struct Feed {
    cache: Arc<DeploymentCache>,
    pair: Pair,
    watch: u64,
}

impl Feed {
    /// Takes one watch event (`Err` for a failed request) before it is reported further, so
    /// that a reconciler woken by a change reads the changed object.
    pub(super) fn take<E>(&self, event: &std::result::Result<Event<Deployment>, E>) {
        let mut pairs = self.cache.pairs.write().unwrap_or_else(|e| e.into_inner());
        let Some(watched) = pairs.get_mut(&self.pair).filter(|w| w.watch == self.watch) else { return };
        let name = |d: &Deployment| d.metadata.name.clone().unwrap_or_default();
        match event {
            Ok(Event::Apply(d)) => {
                watched.objects.insert(name(d), Arc::new(trim(d)));
            }
            Ok(Event::Delete(d)) => {
                watched.objects.remove(&name(d));
            }
            Ok(Event::Init) => watched.listing.clear(),
            Ok(Event::InitApply(d)) => {
                watched.listing.insert(name(d), Arc::new(trim(d)));
            }
            Ok(Event::InitDone) => {
                watched.objects = std::mem::take(&mut watched.listing);
                watched.current = true;
            }
            Err(_) => watched.current = false,
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let mut pairs = self.cache.pairs.write().unwrap_or_else(|e| e.into_inner());
        if pairs.get(&self.pair).is_some_and(|w| w.watch == self.watch) {
            pairs.remove(&self.pair);
        }
    }
}

/// What the reads of a Deployment use, and nothing more.
pub(super) fn trim(deployment: &Deployment) -> Deployment {
    let meta = &deployment.metadata;
    let annotations: BTreeMap<String, String> = meta
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(KEPT_ANNOTATIONS))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let spec = deployment.spec.as_ref().map(|spec| DeploymentSpec {
        replicas: spec.replicas,
        selector: spec.selector.clone(),
        template: PodTemplateSpec {
            metadata: spec
                .template
                .metadata
                .as_ref()
                .map(|m| ObjectMeta { labels: m.labels.clone(), ..Default::default() }),
            spec: spec.template.spec.as_ref().map(|pod| PodSpec {
                containers: pod
                    .containers
                    .iter()
                    .map(|c| Container { name: c.name.clone(), image: c.image.clone(), ..Default::default() })
                    .collect(),
                ..Default::default()
            }),
        },
        ..Default::default()
    });
    Deployment {
        metadata: ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            generation: meta.generation,
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        spec,
        status: deployment.status.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(name: &str, image: &str) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {
                "name": name, "namespace": "prod", "resourceVersion": "7", "generation": 3,
                "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsV1": {"f:spec": {}}}],
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"a very\": \"long text\"}",
                    "tidegate.dev/active-slot": "green",
                    "tidegate.dev/break-glass": "INC-1"
                },
                "labels": {"app": name}
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}, "annotations": {"x": "y"}},
                    "spec": {"containers": [{"name": "app", "image": image, "env": [{"name": "SECRET_NAME", "value": "v"}],
                             "args": ["--serve"]}], "volumes": [{"name": "v", "emptyDir": {}}]}
                }
            },
            "status": {"observedGeneration": 3, "replicas": 2, "availableReplicas": 2,
                       "conditions": [{"type": "Available", "status": "True"}]}
        }))
        .expect("deployment")
    }

    type Taken = std::result::Result<Event<Deployment>, String>;

    fn listed(feed: &Feed, objects: &[Deployment]) {
        feed.take::<String>(&Ok(Event::Init));
        for d in objects {
            feed.take::<String>(&Ok(Event::InitApply(d.clone())));
        }
        feed.take::<String>(&Ok(Event::InitDone));
    }

    #[test]
    fn a_kept_deployment_has_what_reads_use_and_nothing_else() {
        let full = deployment("web", "registry.example/shop@sha256:aa");
        let kept = trim(&full);
        assert_eq!(kept.metadata.managed_fields, None);
        assert_eq!(kept.metadata.labels, None);
        let annotations = kept.metadata.annotations.clone().expect("annotations");
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["tidegate.dev/active-slot", "tidegate.dev/break-glass"]);
        assert_eq!((kept.metadata.generation, kept.metadata.resource_version.as_deref()), (Some(3), Some("7")));
        let spec = kept.spec.clone().expect("spec");
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(spec.selector, full.spec.as_ref().expect("spec").selector);
        let template = spec.template;
        assert_eq!(template.metadata.as_ref().and_then(|m| m.annotations.clone()), None);
        assert_eq!(
            template.metadata.and_then(|m| m.labels).and_then(|l| l.get("app").cloned()).as_deref(),
            Some("web")
        );
        let pod = template.spec.expect("pod");
        assert_eq!(pod.volumes, None);
        assert_eq!(
            pod.containers,
            [Container {
                name: "app".into(),
                image: Some("registry.example/shop@sha256:aa".into()),
                ..Default::default()
            }]
        );
        assert_eq!(kept.status, full.status);
    }

    #[test]
    fn a_watch_answers_only_while_it_is_listed_and_has_not_failed_since() {
        let cache = Arc::new(DeploymentCache::default());
        let feed = cache.feed("team", "prod");
        assert_eq!(cache.get("team", "prod", "web"), None, "not listed yet");
        listed(&feed, &[deployment("web", "a")]);
        let image =
            |d: Option<Option<Deployment>>| d.map(|d| d.and_then(|d| super::super::deployment::image_of(&d, None)));
        assert_eq!(image(cache.get("team", "prod", "web")), Some(Some("a".into())));
        assert_eq!(cache.get("team", "prod", "gone"), Some(None), "a listed namespace without it");

        feed.take::<String>(&Ok(Event::Apply(deployment("web", "b"))));
        assert_eq!(image(cache.get("team", "prod", "web")), Some(Some("b".into())));
        feed.take::<String>(&Ok(Event::Delete(deployment("web", "b"))));
        assert_eq!(cache.get("team", "prod", "web"), Some(None));

        let failed: Taken = Err("410 Gone".into());
        feed.take(&failed);
        assert_eq!(cache.get("team", "prod", "web"), None, "changes may be missed until the next list");
        feed.take::<String>(&Ok(Event::Init));
        feed.take::<String>(&Ok(Event::InitApply(deployment("web", "c"))));
        assert_eq!(cache.get("team", "prod", "web"), None, "a list under way is not an answer");
        feed.take::<String>(&Ok(Event::InitDone));
        assert_eq!(image(cache.get("team", "prod", "web")), Some(Some("c".into())));
        assert_eq!(cache.hits(), 5);

        drop(feed);
        assert_eq!(cache.get("team", "prod", "web"), None, "an ended watch is forgotten");
    }

    #[test]
    fn a_namespace_is_answered_only_from_what_its_own_deployer_watched() {
        let cache = Arc::new(DeploymentCache::default());
        let feed = cache.feed("team-a", "prod");
        listed(&feed, &[deployment("web", "a")]);
        assert!(cache.get("team-a", "prod", "web").is_some());
        assert_eq!(cache.get("team-b", "prod", "web"), None, "team-b's deployer may not read prod");
        assert_eq!(cache.get("team-a", "other", "web"), None);
    }

    #[test]
    fn an_older_watch_of_the_same_pair_neither_feeds_nor_forgets_the_newer_one() {
        let cache = Arc::new(DeploymentCache::default());
        let older = cache.feed("team", "prod");
        let newer = cache.feed("team", "prod");
        listed(&newer, &[deployment("web", "new")]);
        older.take::<String>(&Ok(Event::Apply(deployment("web", "old"))));
        let failed: Taken = Err("closed".into());
        older.take(&failed);
        drop(older);
        let kept = cache.get("team", "prod", "web").flatten().expect("the newer watch's object");
        assert_eq!(super::super::deployment::image_of(&kept, None).as_deref(), Some("new"));
    }
}
