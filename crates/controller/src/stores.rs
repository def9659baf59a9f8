//! One watch per kind, shared by every reconciler: the reflector stores the reconcilers read
//! from, the indexes that find an object's siblings, and the trigger streams of the three
//! controllers. Reconcilers never list a namespace; a change wakes only the objects it concerns.
//!
//! Reading from a watch cache can lag behind the API server, and a reconciler that acted on a
//! copy older than its own last write could repeat a step it already took. So the freshness rule
//! ([`Versions`], [`latest`]): a Release or Promotion is taken from the store only when the store
//! holds the very version this process last wrote or read from the API server, or a version the
//! watch delivered after that one. While the store is behind (a pass right after its own status
//! write), the reconcile waits briefly for the watch; otherwise, and when nothing is known yet,
//! the object is read afresh (and that version remembered).

use std::collections::HashMap;
use std::future::ready;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher as kube_watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tidegate_api::{ImagePolicy, Promotion, Release};
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::index::Index;
use crate::objects::ObjectApi;

/// How many changes a subscriber may fall behind before the watch waits for it.
const SUBSCRIBER_BUFFER: usize = 1024;
/// How long a reconcile waits for the watches' first lists before it is retried later.
const SYNC_WAIT: Duration = Duration::from_secs(10);

/// The stores and indexes of the three kinds.
pub struct Stores {
    /// Every watched ImagePolicy.
    pub policies: Store<ImagePolicy>,
    /// Every watched Release.
    pub releases: Store<Release>,
    /// Every watched Promotion.
    pub promotions: Store<Promotion>,
    /// Release names by (namespace, `spec.policy`).
    pub releases_by_policy: Arc<Index<Release>>,
    /// Promotion names by (namespace, `spec.policy`).
    pub promotions_by_policy: Arc<Index<Promotion>>,
    /// Promotion names by (namespace, `spec.release`).
    pub promotions_by_release: Arc<Index<Promotion>>,
    /// Versions this process last wrote or read from the API server.
    pub versions: Arc<Versions>,
}

/// What the controllers are triggered by: each a subscription to one shared watch.
pub struct Triggers {
    /// Releases, for the Release controller.
    pub releases: ReflectHandle<Release>,
    /// Releases, for the Promotion controller (a Release's change wakes its Promotions).
    pub releases_for_promotions: ReflectHandle<Release>,
    /// Releases, for the ImagePolicy controller (a Release's change wakes its policy).
    pub releases_for_policies: ReflectHandle<Release>,
    /// Promotions, for the Promotion controller.
    pub promotions: ReflectHandle<Promotion>,
    /// Promotions, for the ImagePolicy controller.
    pub promotions_for_policies: ReflectHandle<Promotion>,
    /// Promotions, for the approval lane.
    pub promotions_for_approvals: ReflectHandle<Promotion>,
    /// ImagePolicies, for the ImagePolicy controller.
    pub policies: ReflectHandle<ImagePolicy>,
    /// ImagePolicies, for the Release controller (a policy's change wakes its Releases).
    pub policies_for_releases: ReflectHandle<ImagePolicy>,
}

/// Starts nothing yet: returns the stores, the controllers' triggers, and the future that runs
/// the three watches (poll it for as long as the controllers run).
pub fn watch(
    client: &kube::Client,
    namespace: Option<&str>,
) -> (Arc<Stores>, Triggers, impl std::future::Future<Output = ()> + Send + 'static) {
    let versions = Arc::new(Versions::default());
    let releases_by_policy = Arc::new(Index::new(|r: &Release| r.spec.policy.clone()));
    let promotions_by_policy = Arc::new(Index::new(|p: &Promotion| p.spec.policy.clone()));
    let promotions_by_release = Arc::new(Index::new(|p: &Promotion| p.spec.release.clone()));

    let (policies, policy_writer) = reflector::store_shared::<ImagePolicy>(SUBSCRIBER_BUFFER);
    let (releases, release_writer) = reflector::store_shared::<Release>(SUBSCRIBER_BUFFER);
    let (promotions, promotion_writer) = reflector::store_shared::<Promotion>(SUBSCRIBER_BUFFER);
    let triggers = Triggers {
        releases: subscriber(&release_writer),
        releases_for_promotions: subscriber(&release_writer),
        releases_for_policies: subscriber(&release_writer),
        promotions: subscriber(&promotion_writer),
        promotions_for_policies: subscriber(&promotion_writer),
        promotions_for_approvals: subscriber(&promotion_writer),
        policies: subscriber(&policy_writer),
        policies_for_releases: subscriber(&policy_writer),
    };

    let policy_watch = shared_watch(api(client, namespace), policy_writer, Vec::new(), versions.clone());
    let release_watch =
        shared_watch(api(client, namespace), release_writer, vec![releases_by_policy.clone()], versions.clone());
    let promotion_watch = shared_watch(
        api(client, namespace),
        promotion_writer,
        vec![promotions_by_policy.clone(), promotions_by_release.clone()],
        versions.clone(),
    );
    let run = async move {
        futures::join!(policy_watch, release_watch, promotion_watch);
    };
    let stores = Arc::new(Stores {
        policies,
        releases,
        promotions,
        releases_by_policy,
        promotions_by_policy,
        promotions_by_release,
        versions,
    });
    (stores, triggers, run)
}

/// A subscription to a shared store's changes.
fn subscriber<K>(writer: &reflector::store::Writer<K>) -> ReflectHandle<K>
where
    K: reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    // `store_shared` makes a writer that always has a dispatcher.
    writer.subscribe().expect("a shared store accepts subscribers")
}

fn api<K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>>(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Api<K> {
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// One watch of `K` feeding its store (with subscribers), its indexes and the version record.
/// managedFields are dropped before anything keeps the object.
fn shared_watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    indexes: Vec<Arc<Index<K>>>,
    versions: Arc<Versions>,
) -> impl std::future::Future<Output = ()> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    // Lists are consistent reads (not the API server's watch cache, which may lag behind and, for
    // a CRD whose cache was just rebuilt, answer with a version its watch already expired): the
    // picture after a (re)list is never older than what this controller last wrote.
    let config = watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);
    let delivered = versions.clone();
    kube_watcher(api, config)
        .default_backoff()
        .modify(trim)
        .map(move |event| {
            if let Ok(event) = &event {
                for index in &indexes {
                    index.apply(event);
                }
                if let Event::Delete(object) = event {
                    versions.forget::<K>(object);
                }
            }
            event
        })
        .reflect_shared(writer)
        .for_each(move |event| {
            // The store holds the event's object by now.
            match &event {
                Ok(Event::Apply(object)) => delivered.delivered(object),
                Ok(Event::InitDone) => delivered.relisted(),
                Ok(_) => {}
                Err(e) => tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying with backoff"),
            }
            ready(())
        })
}

impl Stores {
    /// Waits until the first list of every kind is in the stores: a reconcile must not decide on
    /// an incomplete picture (no newer Release, no superseding Promotion). Gives up after
    /// [`SYNC_WAIT`] with an error, so the object is retried with backoff instead of holding a
    /// reconcile.
    pub async fn ready(&self) -> Result<()> {
        let all = async {
            futures::join!(
                self.policies.wait_until_ready(),
                self.releases.wait_until_ready(),
                self.promotions.wait_until_ready()
            )
        };
        match tokio::time::timeout(SYNC_WAIT, all).await {
            Ok((Ok(()), Ok(()), Ok(()))) => Ok(()),
            Ok(_) => Err(Error::NotSynced("the controller is shutting down".into())),
            Err(_) => {
                let waiting: Vec<&str> = [
                    ("ImagePolicies", self.policies.wait_until_ready().now_or_never().is_some()),
                    ("Releases", self.releases.wait_until_ready().now_or_never().is_some()),
                    ("Promotions", self.promotions.wait_until_ready().now_or_never().is_some()),
                ]
                .into_iter()
                .filter(|(_, ready)| !ready)
                .map(|(kind, _)| kind)
                .collect();
                Err(Error::NotSynced(format!("the watch of {} has not listed them yet", waiting.join(" and "))))
            }
        }
    }

    /// The ImagePolicy `name` in `namespace`, as watched.
    pub async fn policy(&self, namespace: &str, name: &str) -> Result<Option<Arc<ImagePolicy>>> {
        self.ready().await?;
        Ok(self.policies.get(&ObjectRef::new(name).within(namespace)))
    }

    /// The Release `name` in `namespace`, as watched.
    pub async fn release(&self, namespace: &str, name: &str) -> Result<Option<Arc<Release>>> {
        self.ready().await?;
        Ok(self.releases.get(&ObjectRef::new(name).within(namespace)))
    }

    /// Releases of `policy` in `namespace`, as watched.
    pub async fn releases_of(&self, namespace: &str, policy: &str) -> Result<Vec<Arc<Release>>> {
        self.ready().await?;
        Ok(lookup(&self.releases, &self.releases_by_policy, namespace, policy, |r| r.spec.policy == policy))
    }

    /// Promotions of `policy` in `namespace`, as watched.
    pub async fn promotions_of(&self, namespace: &str, policy: &str) -> Result<Vec<Arc<Promotion>>> {
        self.ready().await?;
        Ok(lookup(&self.promotions, &self.promotions_by_policy, namespace, policy, |p| p.spec.policy == policy))
    }

    /// References to the Releases of the policy `policy` (to wake them when it changes).
    pub fn release_refs_of(&self, policy: &ImagePolicy) -> Vec<ObjectRef<Release>> {
        let namespace = policy.namespace().unwrap_or_default();
        refs(self.releases_by_policy.get(&namespace, &policy.name_any()), &namespace)
    }

    /// References to the Promotions of the Release `release` (to wake them when it changes).
    pub fn promotion_refs_of(&self, release: &Release) -> Vec<ObjectRef<Promotion>> {
        let namespace = release.namespace().unwrap_or_default();
        refs(self.promotions_by_release.get(&namespace, &release.name_any()), &namespace)
    }
}

fn refs<K: Resource<DynamicType = ()>>(names: Vec<String>, namespace: &str) -> Vec<ObjectRef<K>> {
    names.iter().map(|name| ObjectRef::new(name).within(namespace)).collect()
}

/// Objects of `store` that `index` files under `key` in `namespace` and that `matches` (the index
/// may run a moment ahead of or behind the store).
fn lookup<K>(
    store: &Store<K>,
    index: &Index<K>,
    namespace: &str,
    key: &str,
    matches: impl Fn(&K) -> bool,
) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + ResourceExt + 'static,
{
    index
        .get(namespace, key)
        .iter()
        .filter_map(|name| store.get(&ObjectRef::new(name).within(namespace)))
        .filter(|object| matches(object))
        .collect()
}

/// The resourceVersion of the newest copy of each object this process has written or read
/// from the API server (not from a watch), and whether the watch has shown that copy yet.
///
/// A watch delivers one object's changes in the order they were made, and a relist is a
/// consistent read. So once the store has held the version this process knows, whatever the
/// store holds later is that version or newer; until then, whatever it holds is older.
#[derive(Debug, Default)]
pub struct Versions {
    known: Mutex<HashMap<Id, Known>>,
    /// The version this process's last status write of each object produced.
    written: Mutex<HashMap<Id, String>>,
    /// Woken whenever the watch shows a known version.
    shown: Notify,
}

type Id = (String, String, String);

#[derive(Debug)]
struct Known {
    /// The newest version this process wrote or read.
    version: String,
    /// Whether the store has held `version` (so it now holds that version or a newer one).
    shown: bool,
    /// The last version the watch delivered, in case the watch shows a write before the write's
    /// answer arrives.
    delivered: Option<String>,
}

impl Versions {
    /// Remembers `object`'s version as current.
    pub fn record<K: Resource<DynamicType = ()>>(&self, object: &K) {
        if let Some(version) = object.meta().resource_version.clone() {
            let mut known = self.lock();
            match known.get_mut(&id(object)) {
                Some(entry) if entry.version == version => {}
                Some(entry) => {
                    entry.shown = entry.delivered.as_ref() == Some(&version);
                    entry.version = version;
                }
                None => {
                    known.insert(id(object), Known { version, shown: false, delivered: None });
                }
            }
        }
    }

    /// Remembers `object` as what this process's status write produced (and as current).
    pub fn wrote<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.record(object);
        if let Some(version) = object.meta().resource_version.clone() {
            self.written.lock().unwrap_or_else(|e| e.into_inner()).insert(id(object), version);
        }
    }

    /// Whether `object` is the version this process's last status write of it produced.
    pub fn is_own_write<K: Resource<DynamicType = ()>>(&self, object: &K) -> bool {
        let version = object.meta().resource_version.as_deref();
        let written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        version.is_some() && written.get(&id(object)).map(String::as_str) == version
    }

    /// Forgets `object` (it was deleted).
    pub fn forget<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.lock().remove(&id(object));
        self.written.lock().unwrap_or_else(|e| e.into_inner()).remove(&id(object));
    }

    /// Whether `cached` is the version this process last wrote or read.
    pub fn is_current<K: Resource<DynamicType = ()>>(&self, cached: &K) -> bool {
        let version = cached.meta().resource_version.as_deref();
        version.is_some() && self.lock().get(&id(cached)).map(|k| k.version.as_str()) == version
    }

    /// The watch has put `object` in the store (call after the store holds it).
    pub fn delivered<K: Resource<DynamicType = ()>>(&self, object: &K) {
        let Some(version) = object.meta().resource_version.as_deref() else { return };
        let mut known = self.lock();
        if let Some(entry) = known.get_mut(&id(object)) {
            if entry.version == version && !entry.shown {
                entry.shown = true;
                self.shown.notify_waiters();
            }
            entry.delivered = Some(version.to_string());
        }
    }

    /// The watch has listed its kind again: whatever waits for a version looks at the store anew.
    pub fn relisted(&self) {
        self.shown.notify_waiters();
    }

    /// What the store's copy `cached` is, next to the version this process knows.
    fn compare<K: Resource<DynamicType = ()>>(&self, cached: Option<&K>, object: &K) -> InStore {
        let mut known = self.lock();
        let Some(entry) = known.get_mut(&id(object)) else { return InStore::Unknown };
        match cached.and_then(|c| c.meta().resource_version.as_deref()) {
            Some(version) if version == entry.version => {
                entry.shown = true;
                InStore::Current
            }
            Some(version) if entry.shown => {
                // The store went past the known version: someone else's change, newer.
                entry.version = version.to_string();
                InStore::Current
            }
            _ if entry.shown => InStore::Unknown,
            _ => InStore::Behind,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Known>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where the store's copy of an object stands against what this process knows of it.
#[derive(Debug, PartialEq, Eq)]
enum InStore {
    /// The known version, or a newer one: act on it.
    Current,
    /// Older than this process's own last write or read: the watch has not brought that yet.
    Behind,
    /// Nothing known to compare with (never read, or gone from the store): read afresh.
    Unknown,
}

fn id<K: Resource<DynamicType = ()>>(object: &K) -> Id {
    let meta = object.meta();
    (K::kind(&()).into_owned(), meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// The changes of `K` that start its own reconciler: all but those that are just what this
/// process's own status write produced. The reconcile that wrote had already decided when to
/// look again (the planners look again at once after a phase changes), so such a change would
/// only start a pass that finds nothing new. Anyone else's change, and every change of another
/// kind, still starts one.
pub fn changed_by_others<K>(
    changes: impl Stream<Item = Arc<K>> + Send + 'static,
    versions: Arc<Versions>,
) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
{
    changes.filter(move |object| ready(!versions.is_own_write(object.as_ref())))
}

/// How long a reconcile waits for the watch to bring this process's own last write (or read)
/// of an object before it reads the object from the API server instead. A reconcile that looks
/// again right after its status write usually starts before the watch has delivered that write.
const OWN_VERSION_WAIT: Duration = Duration::from_millis(500);

/// The Release changes that concern their ImagePolicy: of a policy's status only
/// `latestRelease` follows its Releases, and it changes only when a Release is created. So a
/// Release wakes its policy while the policy's status (as watched) does not name it as its
/// latest; the status changes of a Release it names (ten or so on the way to approval) do not.
/// A policy not in the store is woken too.
pub fn releases_new_to_their_policy(
    changes: impl Stream<Item = Arc<Release>> + Send + 'static,
    policies: Store<ImagePolicy>,
) -> impl Stream<Item = Arc<Release>> + Send + 'static {
    changes.filter(move |release| {
        let namespace = release.namespace().unwrap_or_default();
        let named = policies.get(&ObjectRef::new(&release.spec.policy).within(&namespace)).is_some_and(|policy| {
            policy.status.as_ref().and_then(|s| s.latest_release.as_deref()) == Some(release.name_any().as_str())
        });
        ready(!named)
    })
}

/// The latest copy of `object` this process can vouch for: `object` itself or the store's when it
/// is the version this process last wrote or read, or newer (the store held that version before);
/// while the store is behind this process's own last write or read, the store's once the watch
/// brings it (waiting at most [`OWN_VERSION_WAIT`]); otherwise read afresh from the API server
/// (and remembered). `None` once it is gone.
pub async fn latest<K>(
    api: &dyn ObjectApi<K>,
    store: &Store<K>,
    versions: &Versions,
    object: &Arc<K>,
) -> Result<Option<Arc<K>>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    if let Some(vouched) = vouched(store, versions, object).await {
        return Ok(Some(vouched));
    }
    let name = object.meta().name.clone().unwrap_or_default();
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    match api.get(&namespace, &name).await? {
        Some(fresh) => {
            versions.record(&fresh);
            Ok(Some(Arc::new(fresh)))
        }
        None => {
            versions.forget(object.as_ref());
            Ok(None)
        }
    }
}

/// The store's copy of `object` (or `object`), once it is at least what this process last wrote: for a
/// reconciler that must not repeat a status write it already made (an ImagePolicy's status is
/// derived from the world anew each time, so an older copy is safe to act on; it only costs a
/// write that changes nothing). Waits for the watch as [`latest`] does, and never reads.
pub async fn settled<K>(store: &Store<K>, versions: &Versions, object: Arc<K>) -> Arc<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    match vouched(store, versions, &object).await {
        Some(vouched) => vouched,
        None => store.get(&ObjectRef::from_obj(object.as_ref())).unwrap_or(object),
    }
}

/// `object` or the store's copy when this process can vouch for it (see [`latest`]), waiting at
/// most [`OWN_VERSION_WAIT`] for the watch to bring this process's own last write or read.
async fn vouched<K>(store: &Store<K>, versions: &Versions, object: &Arc<K>) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    if versions.is_current(object.as_ref()) {
        return Some(object.clone());
    }
    let key = ObjectRef::from_obj(object.as_ref());
    let deadline = tokio::time::Instant::now() + OWN_VERSION_WAIT;
    loop {
        // Registered before the store is looked at, so a delivery in between is not missed.
        let shown = versions.shown.notified();
        let mut shown = std::pin::pin!(shown);
        shown.as_mut().enable();
        let cached = store.get(&key);
        match (versions.compare(cached.as_deref(), object.as_ref()), cached) {
            (InStore::Current, Some(cached)) => return Some(cached),
            (InStore::Behind, _) if tokio::time::timeout_at(deadline, shown).await.is_ok() => continue,
            _ => return None,
        }
    }
}

/// The annotation `kubectl apply` keeps a copy of the whole object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no reconciler reads before the watch cache keeps `object`: managedFields, labels,
/// owner references and `kubectl apply`'s copy of the object. A cluster's history of Releases
/// and Promotions stays in memory as long as the controller runs, so each is kept as small as
/// the decisions allow. Every other annotation stays (approvals, rejections, triggers and their
/// recorded identities are annotations).
pub fn trim<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    meta.owner_references = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// A stream of `()` from a channel, for `reconcile_all_on`.
pub fn stream_of(mut rx: tokio::sync::mpsc::Receiver<()>) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn release(name: &str, version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some(name.into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_cache_keeps_what_decisions_read_and_drops_the_rest() {
        let mut object = release("r1", "10");
        let meta = &mut object.metadata;
        meta.uid = Some("u-1".into());
        meta.labels = Some([("tidegate.dev/policy".to_string(), "web".to_string())].into());
        meta.annotations = Some(
            [
                (LAST_APPLIED.to_string(), "{\"a\": \"whole copy\"}".to_string()),
                ("tidegate.dev/approved-by".to_string(), "alice".to_string()),
            ]
            .into(),
        );
        meta.managed_fields = Some(vec![Default::default()]);
        meta.owner_references = Some(vec![Default::default()]);
        trim(&mut object);
        let meta = &object.metadata;
        assert_eq!(
            (meta.labels.as_ref(), meta.owner_references.as_ref(), meta.managed_fields.as_ref()),
            (None, None, None)
        );
        assert_eq!(
            meta.annotations,
            Some([("tidegate.dev/approved-by".to_string(), "alice".to_string())].into()),
            "approvals stay"
        );
        assert_eq!((meta.uid.as_deref(), meta.resource_version.as_deref()), (Some("u-1"), Some("10")));
        let mut only_last_applied = release("r2", "1");
        only_last_applied.metadata.annotations = Some([(LAST_APPLIED.to_string(), "{}".to_string())].into());
        trim(&mut only_last_applied);
        assert_eq!(only_last_applied.metadata.annotations, None);
    }

    #[test]
    fn only_the_version_last_written_or_read_is_current() {
        let versions = Versions::default();
        assert!(!versions.is_current(&release("r1", "10")), "never read: read it afresh");
        versions.record(&release("r1", "10"));
        assert!(versions.is_current(&release("r1", "10")));
        assert!(!versions.is_current(&release("r1", "9")), "an older cached copy is not current");
        assert!(!versions.is_current(&release("r1", "11")), "someone else's newer write is read afresh");
        assert!(!versions.is_current(&release("r2", "10")));
        versions.forget(&release("r1", "10"));
        assert!(!versions.is_current(&release("r1", "10")));
        let mut unversioned = release("r3", "1");
        versions.record(&unversioned);
        unversioned.metadata.resource_version = None;
        assert!(!versions.is_current(&unversioned));
    }

    /// The API server's copy of each ConfigMap, counting reads.
    #[derive(Default)]
    struct Server {
        objects: Mutex<HashMap<String, ConfigMap>>,
        gets: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl ObjectApi<ConfigMap> for Server {
        async fn get(&self, _namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(self.objects.lock().unwrap().get(name).cloned())
        }
        async fn apply_status(&self, _: &str, _: &str, _: serde_json::Value) -> Result<ConfigMap> {
            unreachable!("not written here")
        }
        async fn create(&self, _: &str, _: &ConfigMap) -> Result<ConfigMap> {
            unreachable!("not written here")
        }
    }

    impl Server {
        fn holds(&self, object: &ConfigMap) {
            self.objects.lock().unwrap().insert(object.name_any(), object.clone());
        }
        fn gets(&self) -> usize {
            self.gets.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    /// A watch that shows `object`: the store holds it, then the version record hears of it.
    fn show(writer: &mut reflector::store::Writer<ConfigMap>, versions: &Versions, object: &ConfigMap) {
        writer.apply_watcher_event(&Event::Apply(object.clone()));
        versions.delivered(object);
    }

    /// An API server, the version record, and a watch's store (with the writer that fills it).
    fn watched() -> (Server, Versions, reflector::store::Writer<ConfigMap>, Store<ConfigMap>) {
        let writer = reflector::store::Writer::<ConfigMap>::default();
        let store = writer.as_reader();
        (Server::default(), Versions::default(), writer, store)
    }

    fn version_of(object: Option<Arc<ConfigMap>>) -> Option<String> {
        object.and_then(|o| o.resource_version())
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_right_after_its_own_write_takes_that_write_from_the_watch_without_reading() {
        let (server, versions, mut writer, store) = watched();
        show(&mut writer, &versions, &release("r1", "10"));
        versions.record(&release("r1", "10"));
        assert_eq!(
            version_of(latest(&server, &store, &versions, &Arc::new(release("r1", "10"))).await.unwrap()),
            Some("10".into())
        );

        // The status write answers with version 11; the store still has 10.
        server.holds(&release("r1", "11"));
        versions.wrote(&release("r1", "11"));
        let stale = Arc::new(release("r1", "10"));
        let watch = async {
            tokio::time::sleep(Duration::from_millis(40)).await;
            show(&mut writer, &versions, &release("r1", "11"));
        };
        let (read, ()) = tokio::join!(latest(&server, &store, &versions, &stale), watch);
        assert_eq!(version_of(read.unwrap()), Some("11".into()), "the pass acts on its own write, not on 10");
        assert_eq!(server.gets(), 0, "the watch brought it: no read");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_that_does_not_bring_the_own_write_in_time_is_read_past() {
        let (server, versions, mut writer, store) = watched();
        show(&mut writer, &versions, &release("r1", "10"));
        server.holds(&release("r1", "11"));
        versions.wrote(&release("r1", "11"));
        let started = tokio::time::Instant::now();
        let read = latest(&server, &store, &versions, &Arc::new(release("r1", "10"))).await.unwrap();
        assert_eq!(version_of(read), Some("11".into()), "never the store's older copy");
        assert_eq!(server.gets(), 1);
        assert_eq!(started.elapsed(), OWN_VERSION_WAIT, "it waited for the watch, then read");
    }

    #[tokio::test(start_paused = true)]
    async fn someone_else_s_change_after_the_known_version_is_taken_from_the_store() {
        let (server, versions, mut writer, store) = watched();
        versions.wrote(&release("r1", "11"));
        show(&mut writer, &versions, &release("r1", "11"));
        // An approval (version 12) arrives on the watch.
        server.holds(&release("r1", "12"));
        show(&mut writer, &versions, &release("r1", "12"));
        let started = tokio::time::Instant::now();
        let read = latest(&server, &store, &versions, &Arc::new(release("r1", "12"))).await.unwrap();
        assert_eq!(version_of(read), Some("12".into()));
        assert_eq!((server.gets(), started.elapsed()), (0, Duration::ZERO), "no read, no wait");
        assert!(versions.is_current(&release("r1", "12")), "and it is now the version this process knows");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_that_shows_the_write_before_its_answer_arrives_still_counts() {
        let (server, versions, mut writer, store) = watched();
        versions.wrote(&release("r1", "10"));
        show(&mut writer, &versions, &release("r1", "10"));
        show(&mut writer, &versions, &release("r1", "11")); // the watch first,
        versions.wrote(&release("r1", "11")); // then the write's answer
        show(&mut writer, &versions, &release("r1", "12")); // then someone else
        server.holds(&release("r1", "12"));
        let read = latest(&server, &store, &versions, &Arc::new(release("r1", "12"))).await.unwrap();
        assert_eq!((version_of(read), server.gets()), (Some("12".into()), 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_object_never_read_and_one_gone_from_the_store_are_read_afresh() {
        let (server, versions, mut writer, store) = watched();
        // After a start, the store's copy comes from a list this process has not vouched for.
        server.holds(&release("r1", "10"));
        writer.apply_watcher_event(&Event::Apply(release("r1", "10")));
        let read = latest(&server, &store, &versions, &Arc::new(release("r1", "10"))).await.unwrap();
        assert_eq!((version_of(read), server.gets()), (Some("10".into()), 1));
        // Deleted: gone from the store after the store had held the known version.
        versions.delivered(&release("r1", "10"));
        writer.apply_watcher_event(&Event::Delete(release("r1", "10")));
        server.objects.lock().unwrap().clear();
        let read = latest(&server, &store, &versions, &Arc::new(release("r1", "9"))).await.unwrap();
        assert_eq!((read.is_none(), server.gets()), (true, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_policy_s_pass_takes_its_own_last_write_from_the_watch_and_never_reads() {
        let (_, versions, mut writer, store) = watched();
        show(&mut writer, &versions, &release("p", "3"));
        // Nothing known yet: the store's copy, at once.
        let started = tokio::time::Instant::now();
        let taken = settled(&store, &versions, Arc::new(release("p", "2"))).await;
        assert_eq!((taken.resource_version(), started.elapsed()), (Some("3".into()), Duration::ZERO));
        // Right after its own write (4), the write once the watch brings it.
        versions.wrote(&release("p", "4"));
        let watch = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            show(&mut writer, &versions, &release("p", "4"));
        };
        let (taken, ()) = tokio::join!(settled(&store, &versions, Arc::new(release("p", "3"))), watch);
        assert_eq!(taken.resource_version(), Some("4".into()));
        // A watch that does not bring it in time: the newest copy there is, after the wait.
        versions.wrote(&release("p", "5"));
        let started = tokio::time::Instant::now();
        let taken = settled(&store, &versions, Arc::new(release("p", "3"))).await;
        assert_eq!((taken.resource_version(), started.elapsed()), (Some("4".into()), OWN_VERSION_WAIT));
    }

    #[tokio::test]
    async fn a_release_wakes_its_policy_until_the_policy_names_it_as_its_latest() {
        let mut policies = reflector::store::Writer::<ImagePolicy>::default();
        let policy: ImagePolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "tidegate.dev/v1alpha1", "kind": "ImagePolicy",
            "metadata": {"name": "app", "namespace": "shop"},
            "spec": {"image": "registry.example/app", "build": {"strategy": "rebase"}, "workloads": []},
            "status": {"latestRelease": "app-2"},
        }))
        .expect("a policy");
        policies.apply_watcher_event(&Event::Apply(policy));
        let release = |name: &str, policy: &str, namespace: &str| {
            let mut release = Release::new(
                name,
                tidegate_api::ReleaseSpec {
                    policy: policy.into(),
                    reason: serde_json::from_value(serde_json::json!({"type": "Manual"})).expect("a reason"),
                    source: None,
                },
            );
            release.metadata.namespace = Some(namespace.into());
            Arc::new(release)
        };
        let changes = [
            release("app-2", "app", "shop"),  // named: its status changes concern nobody else
            release("app-3", "app", "shop"),  // new: latestRelease changes
            release("app-1", "app", "shop"),  // an older one: looked at (nothing changes)
            release("app-2", "app", "other"), // the same names in another namespace
            release("web-1", "web", "shop"),  // a policy not in the store
        ];
        let woken: Vec<String> = releases_new_to_their_policy(futures::stream::iter(changes), policies.as_reader())
            .map(|r| format!("{}/{}", r.namespace().unwrap_or_default(), r.name_any()))
            .collect()
            .await;
        assert_eq!(woken, ["shop/app-3", "shop/app-1", "other/app-2", "shop/web-1"]);
    }

    #[tokio::test]
    async fn only_what_this_process_s_own_status_write_produced_starts_no_reconcile() {
        let versions = Arc::new(Versions::default());
        versions.record(&release("read", "5"));
        versions.wrote(&release("written", "7"));
        versions.wrote(&release("gone", "8"));
        versions.forget(&release("gone", "8"));
        let changes = [
            release("read", "5"),    // read, not written: a reconcile may need it (a new object)
            release("written", "7"), // the status write's own event
            release("written", "9"), // someone's change after it
            release("other", "7"),   // another object with the same version string
            release("gone", "8"),    // deleted and forgotten
        ];
        let started: Vec<(String, String)> =
            changed_by_others(futures::stream::iter(changes.map(Arc::new)), versions.clone())
                .map(|c| (c.name_any(), c.resource_version().unwrap_or_default()))
                .collect()
                .await;
        let expected = [("read", "5"), ("written", "9"), ("other", "7"), ("gone", "8")];
        assert_eq!(started, expected.map(|(n, v)| (n.to_string(), v.to_string())));
        assert!(versions.is_current(&release("written", "7")), "a written version is also current");
    }
}
