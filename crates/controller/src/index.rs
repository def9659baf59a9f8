//! Indexes over a watch: the names of the objects that share a key (their policy, their
//! Release) within a namespace, kept up to date from the same watch events that fill the
//! reflector store, so that a change wakes only the objects it concerns and a reconcile finds
//! its siblings without listing the namespace.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, RwLock};

use kube::ResourceExt;
use kube::runtime::watcher::Event;

/// Where an object is filed: its namespace and its key.
type Slot = (String, String);

#[derive(Debug, Default)]
struct Entries {
    /// Names by (namespace, key).
    by_key: HashMap<Slot, BTreeSet<String>>,
    /// The key each (namespace, name) is filed under, to move or remove it.
    key_of: HashMap<Slot, String>,
}

impl Entries {
    fn insert(&mut self, namespace: String, name: String, key: String) {
        let id = (namespace.clone(), name.clone());
        if let Some(old) = self.key_of.get(&id)
            && *old != key
        {
            let old = (namespace.clone(), old.clone());
            self.remove_from(&old, &name);
        }
        self.by_key.entry((namespace, key.clone())).or_default().insert(name);
        self.key_of.insert(id, key);
    }

    fn remove(&mut self, namespace: String, name: String) {
        if let Some(key) = self.key_of.remove(&(namespace.clone(), name.clone())) {
            self.remove_from(&(namespace, key), &name);
        }
    }

    fn remove_from(&mut self, slot: &Slot, name: &str) {
        if let Some(names) = self.by_key.get_mut(slot) {
            names.remove(name);
            if names.is_empty() {
                self.by_key.remove(slot);
            }
        }
    }
}

/// Names of objects of kind `K` by (namespace, key), where `key` is read from the object (e.g.
/// `spec.policy`).
pub struct Index<K> {
    key: fn(&K) -> String,
    entries: RwLock<Entries>,
    /// Entries of a relist in progress; they replace [`Self::entries`] when it completes, as
    /// the reflector store's do.
    relisting: Mutex<Option<Entries>>,
}

impl<K: ResourceExt> Index<K> {
    /// An empty index filing each object under `key(object)`.
    pub fn new(key: fn(&K) -> String) -> Self {
        Self { key, entries: RwLock::default(), relisting: Mutex::default() }
    }

    /// Applies one watch event, exactly as the reflector store applies it.
    pub fn apply(&self, event: &Event<K>) {
        let place = |object: &K| (object.namespace().unwrap_or_default(), object.name_any(), (self.key)(object));
        match event {
            Event::Apply(object) => {
                let (namespace, name, key) = place(object);
                self.write().insert(namespace, name, key);
            }
            Event::Delete(object) => {
                let (namespace, name, _) = place(object);
                self.write().remove(namespace, name);
            }
            Event::Init => *self.relisting() = Some(Entries::default()),
            Event::InitApply(object) => {
                let (namespace, name, key) = place(object);
                self.relisting().get_or_insert_with(Entries::default).insert(namespace, name, key);
            }
            Event::InitDone => {
                if let Some(fresh) = self.relisting().take() {
                    *self.write() = fresh;
                }
            }
        }
    }

    /// Names filed under `key` in `namespace`, in name order.
    pub fn get(&self, namespace: &str, key: &str) -> Vec<String> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .by_key
            .get(&(namespace.to_string(), key.to_string()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many objects are filed.
    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).key_of.len()
    }

    /// Whether nothing is filed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    fn relisting(&self) -> std::sync::MutexGuard<'_, Option<Entries>> {
        self.relisting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn object(namespace: &str, name: &str, key: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                labels: Some([("key".to_string(), key.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn key(object: &ConfigMap) -> String {
        object.labels().get("key").cloned().unwrap_or_default()
    }

    #[test]
    fn files_objects_by_namespace_and_key() {
        let index = Index::new(key);
        index.apply(&Event::Apply(object("a", "r1", "web")));
        index.apply(&Event::Apply(object("a", "r2", "web")));
        index.apply(&Event::Apply(object("a", "r3", "api")));
        index.apply(&Event::Apply(object("b", "r1", "web")));
        assert_eq!(index.get("a", "web"), ["r1", "r2"]);
        assert_eq!(index.get("a", "api"), ["r3"]);
        assert_eq!(index.get("b", "web"), ["r1"]);
        assert!(index.get("c", "web").is_empty());
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn a_changed_key_moves_the_object_and_a_delete_removes_it() {
        let index = Index::new(key);
        index.apply(&Event::Apply(object("a", "r1", "web")));
        index.apply(&Event::Apply(object("a", "r1", "api")));
        assert!(index.get("a", "web").is_empty());
        assert_eq!(index.get("a", "api"), ["r1"]);
        index.apply(&Event::Delete(object("a", "r1", "api")));
        assert!(index.get("a", "api").is_empty());
        assert!(index.is_empty());
    }

    #[test]
    fn a_relist_replaces_everything_when_it_completes() {
        let index = Index::new(key);
        index.apply(&Event::Apply(object("a", "gone", "web")));
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(object("a", "kept", "web")));
        // Until the relist completes, lookups answer from the previous state.
        assert_eq!(index.get("a", "web"), ["gone"]);
        index.apply(&Event::InitDone);
        assert_eq!(index.get("a", "web"), ["kept"]);
        assert_eq!(index.len(), 1);
    }
}
