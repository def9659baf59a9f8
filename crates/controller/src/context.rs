//! What every reconcile shares: the client, the providers, metrics, backoff, the clock.

use std::sync::Arc;

use jiff::Timestamp;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use tidegate_providers::authz::{Access, AdmissionGuard, Reach};
use tidegate_providers::targets::Targets;
use tidegate_providers::{Builder, Signer};

use crate::backoff::Backoff;
use crate::metrics::Metrics;

/// Field manager of every write the controller makes.
pub const MANAGER: &str = "tidegate-controller";

/// Shared state of the reconcilers.
pub struct Context {
    /// The watched policies, Releases and Promotions, their indexes and the freshness record.
    pub stores: Arc<crate::stores::Stores>,
    /// The API client.
    pub client: kube::Client,
    /// Every workload write and Job goes through the policy namespace's deployer.
    pub reach: Arc<Reach>,
    /// Whether this replica still leads; checked right before every production write.
    pub leadership: Arc<crate::leader::Leadership>,
    /// SubjectAccessReviews for approvers.
    pub access: Access,
    /// Whether the admission policies that record identities are in force.
    pub admission: AdmissionGuard,
    /// Produces candidates.
    pub builder: Arc<dyn Builder>,
    /// Report findings, by `spec.scan.scanner`.
    pub scanners: crate::scanners::Scanners,
    /// Scan results of digests, shared by every policy.
    pub scans: Arc<crate::vulnerabilities::ScanCache>,
    /// Signs and verifies.
    pub signer: Arc<dyn Signer>,
    /// Verifications a Promotion's rollout may reuse for its next production write.
    pub signature_proofs: crate::signature_proofs::SignatureProofs,
    /// Attaches signed promotion records to digests.
    pub attestor: Arc<dyn tidegate_providers::provenance::Attestor>,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Per-object retry delays.
    pub backoff: Backoff,
    /// The controller's own user name (it creates Promotions as this user).
    pub identity: String,
    /// The clock; tests may move it.
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    /// Digests of watched base images.
    pub watcher: Arc<crate::watcher::BaseWatcher>,
    /// The registry client.
    pub registry: Arc<tidegate_providers::registry::RegistryClient>,
    /// Azure Container Apps and Jobs, when the controller has an Azure credential.
    pub azure: Option<Arc<tidegate_providers::azure_targets::AzureTargets>>,
    /// When each canary step started, kept in this process (never read from status).
    pub canary: crate::canary::CanaryClock,
    /// Trust roots and fixed addresses for staging HTTP checks.
    pub http_checks: tidegate_providers::staging_tests::HttpCheckOptions,
    /// How often an ImagePolicy looks again when nothing wakes it (`--observe-interval-seconds`).
    pub observe_interval: std::time::Duration,
}

impl Context {
    /// Deploy targets of `policy_namespace`'s policies: Kubernetes ones as its deployer, Azure
    /// ones within its granted scopes.
    pub fn targets(&self, policy_namespace: &str) -> tidegate_providers::Result<Targets> {
        Ok(Targets::new(self.reach.targets(policy_namespace)?, self.azure.clone()))
    }

    /// Production targets of `policy_namespace`'s policies, written for Promotion `promotion`.
    pub fn production_targets(&self, policy_namespace: &str, promotion: &str) -> tidegate_providers::Result<Targets> {
        Ok(Targets::new(self.reach.production_targets(policy_namespace, promotion)?, self.azure.clone()))
    }

    /// The time now.
    pub fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Publishes an Event about `object`; failures are logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: String,
        action: &str,
    ) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_string(),
            note: Some(note.chars().take(1000).collect()),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "publishing an Event failed");
        }
    }
}
