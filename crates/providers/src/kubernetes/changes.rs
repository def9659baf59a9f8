//! Changes of the Deployments in one namespace, as a policy namespace's deployer sees them.
//!
//! A metadata-only watch (names and resource versions; no pod templates are kept or even
//! received), made with the deployer's impersonating client: the controller learns of a change
//! only where the deployer may read it, exactly as its reads do. Reconcilers waiting for a
//! workload are woken by these changes instead of polling it.

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::Result;
use crate::authz::Reach;

/// What a watch of one namespace's Deployments reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The watch listed the namespace: from now on every change is reported. Also after a relist
    /// (a watch expired, the API server restarted), when changes may have been missed.
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
        // `Api<PartialObjectMeta<_>>` makes metadata-only list and watch requests.
        let api: Api<PartialObjectMeta<Deployment>> = Api::namespaced(self.client(policy_namespace)?, target_namespace);
        Ok(changes(watcher::watcher(api, watcher::Config::default()).default_backoff()).boxed())
    }
}

/// Watch events as [`Change`]s: one per changed object, one when a list completes, one per error.
fn changes<M, E>(events: impl Stream<Item = std::result::Result<Event<M>, E>>) -> impl Stream<Item = Change>
where
    M: kube::ResourceExt,
    E: std::fmt::Display,
{
    events.filter_map(|event| {
        futures::future::ready(match event {
            Ok(Event::Apply(object) | Event::Delete(object)) => Some(Change::Changed(object.name_any())),
            Ok(Event::InitDone) => Some(Change::Listed),
            // Objects of a (re)list: the list's end reports them all at once.
            Ok(Event::Init | Event::InitApply(_)) => None,
            Err(e) => Some(Change::Failed(e.to_string())),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> PartialObjectMeta<Deployment> {
        let mut meta = PartialObjectMeta::<Deployment>::default();
        meta.metadata.name = Some(name.into());
        meta
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
