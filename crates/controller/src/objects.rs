//! The controller's reads and writes of its own objects (ImagePolicies, Releases, Promotions) and
//! its Events, behind traits: [`KubeObjects`] and [`Recorded`] talk to the API server, tests use
//! in-memory doubles (crate `tidegate-test-support`). Reconcilers hold no client.

use std::marker::PhantomData;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, Recorder};
use kube::{Resource, core::NamespaceResourceScope};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tidegate_api::{ImagePolicy, Promotion, Release};

use crate::context::MANAGER;
use crate::error::Result;

/// Reads and writes of one kind of the controller's objects.
#[async_trait::async_trait]
pub trait ObjectApi<K>: Send + Sync {
    /// The object `name` in `namespace` as the API server has it now (not from a cache).
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<K>>;
    /// Applies `status` (the whole status this controller owns) to `name` in `namespace` with
    /// server-side apply under [`MANAGER`], taking over conflicting fields. Returns the object
    /// as written.
    async fn apply_status(&self, namespace: &str, name: &str, status: serde_json::Value) -> Result<K>;
    /// Creates `object` in `namespace`.
    async fn create(&self, namespace: &str, object: &K) -> Result<K>;
}

/// The three kinds the controller reads and writes.
#[derive(Clone)]
pub struct Objects {
    /// ImagePolicies.
    pub policies: Arc<dyn ObjectApi<ImagePolicy>>,
    /// Releases.
    pub releases: Arc<dyn ObjectApi<Release>>,
    /// Promotions.
    pub promotions: Arc<dyn ObjectApi<Promotion>>,
}

impl Objects {
    /// The product's: each kind through `client`.
    pub fn kube(client: &kube::Client) -> Self {
        Self {
            policies: Arc::new(KubeObjects::new(client.clone())),
            releases: Arc::new(KubeObjects::new(client.clone())),
            promotions: Arc::new(KubeObjects::new(client.clone())),
        }
    }
}

/// [`ObjectApi`] through the API server.
pub struct KubeObjects<K> {
    client: kube::Client,
    kind: PhantomData<fn() -> K>,
}

impl<K> KubeObjects<K> {
    /// Reads and writes through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client, kind: PhantomData }
    }
}

#[async_trait::async_trait]
impl<K> ObjectApi<K> for KubeObjects<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    async fn get(&self, namespace: &str, name: &str) -> Result<Option<K>> {
        Ok(Api::<K>::namespaced(self.client.clone(), namespace).get_opt(name).await?)
    }

    async fn apply_status(&self, namespace: &str, name: &str, status: serde_json::Value) -> Result<K> {
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let api = Api::<K>::namespaced(self.client.clone(), namespace);
        Ok(api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?)
    }

    async fn create(&self, namespace: &str, object: &K) -> Result<K> {
        let params = PostParams { field_manager: Some(MANAGER.into()), ..Default::default() };
        Ok(Api::<K>::namespaced(self.client.clone(), namespace).create(&params, object).await?)
    }
}

/// Where the controller's Events go.
#[async_trait::async_trait]
pub trait EventSink: Send + Sync {
    /// Publishes `event` about `object`; `Err` says why it could not.
    async fn publish(&self, event: &Event, object: &ObjectReference) -> std::result::Result<(), String>;
}

/// The product's [`EventSink`]: `events.k8s.io` Events through kube's recorder.
pub struct Recorded(pub Recorder);

#[async_trait::async_trait]
impl EventSink for Recorded {
    async fn publish(&self, event: &Event, object: &ObjectReference) -> std::result::Result<(), String> {
        self.0.publish(event, object).await.map_err(|e| e.to_string())
    }
}
