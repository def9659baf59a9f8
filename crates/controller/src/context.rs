//! What every reconcile shares: the stores, the providers (each behind a trait, so reconcilers
//! hold no client and run against in-memory doubles in tests), metrics, backoff, the clock.

use std::sync::Arc;

use jiff::Timestamp;
use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tidegate_providers::authz::Authorizer;
use tidegate_providers::registry::Resolver;
use tidegate_providers::staging_tests::TestJobs;
use tidegate_providers::targets::{Deploy, Deployers};
use tidegate_providers::{Builder, Signer};

use crate::backoff::Backoff;
use crate::metrics::Metrics;

/// Field manager of every write the controller makes.
pub const MANAGER: &str = "tidegate-controller";

/// Shared state of the reconcilers.
pub struct Context {
    /// The watched policies, Releases and Promotions, their indexes and the freshness record.
    pub stores: Arc<crate::stores::Stores>,
    /// Reads and writes of ImagePolicies, Releases and Promotions.
    pub objects: crate::objects::Objects,
    /// Every workload write goes through the policy namespace's deployer.
    pub deployers: Arc<dyn Deployers>,
    /// Staging test Jobs, created as the policy namespace's deployer.
    pub test_jobs: Arc<dyn TestJobs>,
    /// Whether this replica still leads; checked right before every production write.
    pub leadership: Arc<crate::leader::Leadership>,
    /// Whether approvers hold the verb now, and whether the admission policies that record
    /// identities are in force.
    pub authorizer: Arc<dyn Authorizer>,
    /// Produces candidates.
    pub builder: Arc<dyn Builder>,
    /// Report findings, by `spec.scan.scanner`.
    pub scanners: crate::scanners::Scanners,
    /// Scan results of digests, shared by every policy.
    pub scans: Arc<crate::vulnerabilities::ScanCache>,
    /// Candidates' scans that run in this controller, in the background.
    pub scan_queue: Arc<crate::scan_queue::ScanQueue>,
    /// Signs and verifies.
    pub signer: Arc<dyn Signer>,
    /// Verifications a Promotion's rollout may reuse for its next production write.
    pub signature_proofs: crate::signature_proofs::SignatureProofs,
    /// Approvers' rights a Promotion's rollout may reuse while it goes on.
    pub right_proofs: crate::approvals::RightProofs,
    /// What production workloads were seen to run (rollback targets).
    pub known_runs: crate::known_runs::KnownRuns,
    /// One pass at a time per Promotion, across the Promotion controller and its approval lane.
    pub turns: crate::turns::Turns,
    /// Attaches signed promotion records to digests.
    pub attestor: Arc<dyn tidegate_providers::provenance::Attestor>,
    /// Publishes Events.
    pub events: Arc<dyn crate::objects::EventSink>,
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
    /// Tags and digests of repositories (`newBuild` triggers).
    pub registry: Arc<dyn Resolver>,
    /// When each canary step started, kept in this process (never read from status).
    pub canary: crate::canary::CanaryClock,
    /// Trust roots and fixed addresses for staging HTTP checks.
    pub http_checks: tidegate_providers::staging_tests::HttpCheckOptions,
    /// How often an ImagePolicy looks again when nothing wakes it (`--observe-interval-seconds`).
    pub observe_interval: std::time::Duration,
    /// Which target namespaces are watched as their policy namespace's deployer.
    pub workload_watches: Arc<crate::workload_watch::WorkloadWatches>,
    /// How long a watched policy's last read of its workloads stands when no change of them is
    /// seen (`--resync-interval-seconds`).
    pub resync_interval: std::time::Duration,
}

impl Context {
    /// Deploy targets of `policy_namespace`'s policies: Kubernetes ones as its deployer, Azure
    /// ones within its granted scopes.
    pub fn targets(&self, policy_namespace: &str) -> tidegate_providers::Result<Arc<dyn Deploy>> {
        self.deployers.targets(policy_namespace)
    }

    /// Production targets of `policy_namespace`'s policies, written for Promotion `promotion`.
    pub fn production_targets(
        &self,
        policy_namespace: &str,
        promotion: &str,
    ) -> tidegate_providers::Result<Arc<dyn Deploy>> {
        self.deployers.production_targets(policy_namespace, promotion)
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
            note: Some(fit_note(note)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.events.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "publishing an Event failed");
        }
    }
}

/// The API server refuses an Event whose note is longer than 1 KiB (in bytes: a note in a script
/// of 3-byte characters reaches it at 342 of them). A longer note keeps its first 1,021 bytes, cut
/// at a character, and ends with "…".
const NOTE_LIMIT: usize = 1024;

fn fit_note(mut note: String) -> String {
    if note.len() > NOTE_LIMIT {
        let ellipsis = "…";
        note.truncate(note.floor_char_boundary(NOTE_LIMIT - ellipsis.len()));
        note.push_str(ellipsis);
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_note_fits_the_api_server_s_limit_in_bytes_and_says_it_was_cut() {
        assert_eq!(fit_note("rolled out".into()), "rolled out");
        let exact = "a".repeat(NOTE_LIMIT);
        assert_eq!(fit_note(exact.clone()), exact, "1 KiB fits");
        for long in ["b".repeat(5000), "緊急対応".repeat(200), "é".repeat(700)] {
            let fitted = fit_note(long.clone());
            assert!(fitted.len() <= NOTE_LIMIT, "{} bytes", fitted.len());
            assert!(fitted.ends_with('…'));
            assert!(long.starts_with(fitted.trim_end_matches('…')), "a prefix, cut at a character");
            assert!(fitted.len() > NOTE_LIMIT - 4, "as much as fits");
        }
    }
}
