//! The controller's reads and writes of its own objects (ImagePolicies, Releases, Promotions) and
//! its Events, behind traits: [`KubeObjects`] and [`Published`] talk to the API server, tests use
//! in-memory doubles (crate `tidegate-test-support`). Reconcilers hold no client.

use std::marker::PhantomData;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
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

/// The product's [`EventSink`]: one `events.k8s.io` Event per transition, each with its own note.
///
/// kube's `Recorder` folds a repeat of the same reason and action about the same object, within
/// minutes, into the first Event's series and keeps the first note: a policy's second drift (who
/// broke glass this time) or its second Release started would read as the first one. Tidegate
/// publishes only on transitions, so nothing is folded.
///
/// A reconcile does not wait for its Events: [`EventSink::publish`] hands the Event to a queue
/// of [`EVENT_QUEUE`] that [`EVENT_SENDERS`] senders empty, so a Promotion's next request (the
/// production write, after the approval's Events) does not queue behind them at a busy API server.
/// A full queue makes the reconcile wait for room; nothing is dropped. A failed create is logged,
/// as before; Events still queued when the process ends are lost (the status history keeps what
/// they said).
pub struct Published {
    queue: tokio::sync::mpsc::Sender<k8s_openapi::api::events::v1::Event>,
    controller: String,
    instance: String,
    sequence: std::sync::atomic::AtomicU64,
}

/// Events waiting to be sent, at most.
pub const EVENT_QUEUE: usize = 1024;
/// Events being sent at once, at most.
pub const EVENT_SENDERS: usize = 16;

impl Published {
    /// Events reported as `controller` (`reportingController`) by `instance`
    /// (`reportingInstance`, this replica), sent through `client` by a task this starts.
    pub fn new(client: kube::Client, controller: impl Into<String>, instance: impl Into<String>) -> Self {
        let (queue, queued) = tokio::sync::mpsc::channel(EVENT_QUEUE);
        tokio::spawn(send_events(client, queued));
        Self { queue, controller: controller.into(), instance: instance.into(), sequence: Default::default() }
    }

    fn event(&self, event: &Event, object: &ObjectReference) -> k8s_openapi::api::events::v1::Event {
        let now = jiff::Timestamp::now();
        let sequence = self.sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let about = object.name.as_deref().unwrap_or(&self.controller);
        k8s_openapi::api::events::v1::Event {
            metadata: kube::api::ObjectMeta {
                namespace: object.namespace.clone(),
                name: Some(format!("{about}.{:x}.{sequence:x}", now.as_nanosecond())),
                ..Default::default()
            },
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            note: event.note.clone(),
            type_: Some(match event.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            event_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now)),
            regarding: Some(object.clone()),
            related: event.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

#[async_trait::async_trait]
impl EventSink for Published {
    async fn publish(&self, event: &Event, object: &ObjectReference) -> std::result::Result<(), String> {
        self.queue.send(self.event(event, object)).await.map_err(|_| "the Event senders stopped".to_string())
    }
}

/// Creates the queued Events, [`EVENT_SENDERS`] at a time, until every [`Published`] is gone.
async fn send_events(
    client: kube::Client,
    mut queued: tokio::sync::mpsc::Receiver<k8s_openapi::api::events::v1::Event>,
) {
    futures::stream::poll_fn(move |cx| queued.poll_recv(cx))
        .for_each_concurrent(EVENT_SENDERS, |event| {
            let client = client.clone();
            async move {
                let namespace = event.metadata.namespace.as_deref().unwrap_or("default");
                let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client, namespace);
                if let Err(e) = api.create(&PostParams::default(), &event).await {
                    tracing::warn!(error = %e, reason = event.reason.as_deref(), "publishing an Event failed");
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn policy() -> ObjectReference {
        ObjectReference {
            kind: Some("ImagePolicy".into()),
            namespace: Some("shop".into()),
            name: Some("shop-app".into()),
            ..Default::default()
        }
    }

    fn drift(note: &str) -> Event {
        Event {
            type_: EventType::Warning,
            reason: "ProductionDrift".into(),
            note: Some(note.into()),
            action: "Observe".into(),
            secondary: None,
        }
    }

    #[tokio::test]
    async fn every_transition_is_an_event_of_its_own_with_its_own_note() {
        // A client that is never used: building the Event body sends nothing.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let published = Published::new(kube::Client::try_from(config).expect("client"), MANAGER, "replica-1");
        let policy = policy();
        let first = published.event(&drift("break-glass by alice"), &policy);
        let second = published.event(&drift("break-glass by oncall"), &policy);
        assert_ne!(first.metadata.name, second.metadata.name, "a second Event, not a series of the first");
        assert!(second.metadata.name.as_deref().is_some_and(|n| n.starts_with("shop-app.")));
        assert_eq!(second.note.as_deref(), Some("break-glass by oncall"));
        assert_eq!(second.series, None);
        assert_eq!(second.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(second.type_.as_deref(), Some("Warning"));
        assert_eq!((second.reason.as_deref(), second.action.as_deref()), (Some("ProductionDrift"), Some("Observe")));
        assert_eq!(second.reporting_controller.as_deref(), Some(MANAGER));
        assert_eq!(second.reporting_instance.as_deref(), Some("replica-1"));
        assert_eq!(second.regarding.as_ref(), Some(&policy));
        assert!(second.event_time.is_some());
    }

    #[tokio::test]
    async fn a_reconcile_does_not_wait_for_its_event_and_the_event_is_sent() {
        // An API server that takes the request and answers only once `publish` has returned.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (arrived, request) = tokio::sync::oneshot::channel();
        let (answer, answered) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let (mut seen, mut chunk) = (Vec::new(), [0u8; 4096]);
            while !String::from_utf8_lossy(&seen).contains("break-glass") {
                match socket.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => seen.extend_from_slice(&chunk[..read]),
                }
            }
            let _ = arrived.send(String::from_utf8_lossy(&seen).into_owned());
            let _ = answered.await;
            let _ = socket.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await;
        });
        let config = kube::Config::new(format!("http://{address}").parse().expect("url"));
        let published = Published::new(kube::Client::try_from(config).expect("client"), MANAGER, "replica-1");

        // Waiting for the answer would never end: the server answers after `publish` returns.
        tokio::time::timeout(Duration::from_secs(30), published.publish(&drift("break-glass by alice"), &policy()))
            .await
            .expect("publish returns before the API server answers")
            .expect("the Event is queued");
        let request = tokio::time::timeout(Duration::from_secs(30), request)
            .await
            .expect("the Event is sent")
            .expect("the server saw a request");
        assert!(request.starts_with("POST /apis/events.k8s.io/v1/namespaces/shop/events"), "{request}");
        assert!(request.contains("break-glass by alice"), "{request}");
        let _ = answer.send(());
    }
}
