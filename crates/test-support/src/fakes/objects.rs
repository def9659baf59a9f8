//! The controller's own objects and Events, in memory: what an API server would keep.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::runtime::events::Event;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tidegate_controller::error::{Error, Result};
use tidegate_controller::objects::{EventSink, ObjectApi};

/// Objects of one kind by (namespace, name), with resourceVersions, uids and creation times
/// assigned as an API server would, and every write counted.
pub struct FakeObjects<K> {
    objects: Mutex<BTreeMap<(String, String), K>>,
    version: AtomicU64,
    status_writes: AtomicU64,
    reads: AtomicU64,
    creates: AtomicU64,
    clock: crate::fakes::Clock,
}

impl<K> FakeObjects<K>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// An empty kind whose creation times come from `clock`.
    pub fn new(clock: crate::fakes::Clock) -> Self {
        Self {
            objects: Mutex::default(),
            version: AtomicU64::new(1),
            status_writes: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            creates: AtomicU64::new(0),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), K>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stamp(&self, object: &mut K) {
        let version = self.version.fetch_add(1, Ordering::SeqCst);
        let meta = object.meta_mut();
        meta.resource_version = Some(version.to_string());
        meta.uid.get_or_insert_with(|| format!("uid-{version}"));
        meta.creation_timestamp.get_or_insert_with(|| Time(self.clock.now()));
    }

    /// Puts `object` in place as a user's `kubectl apply` would (a new resourceVersion).
    pub fn put(&self, mut object: K) -> K {
        self.stamp(&mut object);
        let meta = object.meta();
        let key = (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default());
        self.lock().insert(key, object.clone());
        object
    }

    /// Changes the object `name` in `namespace` with `change` (a user's edit).
    pub fn edit(&self, namespace: &str, name: &str, change: impl FnOnce(&mut K)) -> K {
        let mut object = self.lock().get(&(namespace.into(), name.into())).cloned().expect("the object exists");
        change(&mut object);
        self.put(object)
    }

    /// The object `name` in `namespace`.
    pub fn find(&self, namespace: &str, name: &str) -> Option<K> {
        self.lock().get(&(namespace.into(), name.into())).cloned()
    }

    /// Every object, in (namespace, name) order.
    pub fn all(&self) -> Vec<K> {
        self.lock().values().cloned().collect()
    }

    /// How many status writes reached this kind.
    pub fn status_writes(&self) -> u64 {
        self.status_writes.load(Ordering::SeqCst)
    }

    /// How many reads of one object (GETs) reached this kind.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// How many creates reached this kind, refused ones included.
    pub fn creates(&self) -> u64 {
        self.creates.load(Ordering::SeqCst)
    }
}

fn refused(code: u16, reason: &str, message: String) -> Error {
    Error::Kube(kube::Error::Api(kube::core::Status::failure(&message, reason).with_code(code).boxed()))
}

#[async_trait::async_trait]
impl<K> ObjectApi<K> for FakeObjects<K>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<K>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.find(namespace, name))
    }

    async fn apply_status(&self, namespace: &str, name: &str, status: serde_json::Value) -> Result<K> {
        let Some(current) = self.find(namespace, name) else {
            return Err(refused(404, "NotFound", format!("{} {namespace}/{name} not found", K::kind(&()))));
        };
        let mut value = serde_json::to_value(&current).map_err(|e| Error::Invalid(e.to_string()))?;
        value["status"] = status;
        let written: K = serde_json::from_value(value).map_err(|e| Error::Invalid(format!("status: {e}")))?;
        self.status_writes.fetch_add(1, Ordering::SeqCst);
        Ok(self.put(written))
    }

    async fn create(&self, namespace: &str, object: &K) -> Result<K> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        let name = object.meta().name.clone().unwrap_or_default();
        if self.find(namespace, &name).is_some() {
            return Err(refused(409, "AlreadyExists", format!("{} {namespace}/{name} already exists", K::kind(&()))));
        }
        let mut object = object.clone();
        object.meta_mut().namespace = Some(namespace.to_string());
        Ok(self.put(object))
    }
}

/// One published Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedEvent {
    /// `Kind/namespace/name` of the object it is about.
    pub object: String,
    /// Its reason.
    pub reason: String,
    /// Its note.
    pub note: String,
    /// Whether it is a Warning.
    pub warning: bool,
}

/// Events, kept in order.
#[derive(Default)]
pub struct FakeEvents {
    events: Mutex<Vec<PublishedEvent>>,
}

impl FakeEvents {
    /// Every Event so far.
    pub fn all(&self) -> Vec<PublishedEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The reasons of every Event so far, in order.
    pub fn reasons(&self) -> Vec<String> {
        self.all().into_iter().map(|e| e.reason).collect()
    }
}

#[async_trait::async_trait]
impl EventSink for FakeEvents {
    async fn publish(&self, event: &Event, object: &ObjectReference) -> std::result::Result<(), String> {
        let about = format!(
            "{}/{}/{}",
            object.kind.clone().unwrap_or_default(),
            object.namespace.clone().unwrap_or_default(),
            object.name.clone().unwrap_or_default()
        );
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(PublishedEvent {
            object: about,
            reason: event.reason.clone(),
            note: event.note.clone().unwrap_or_default(),
            warning: event.type_ == kube::runtime::events::EventType::Warning,
        });
        Ok(())
    }
}
