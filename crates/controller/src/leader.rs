//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never both act.
//!
//! A replica acquires the Lease when it is free or expired, renews it every few seconds, and
//! exits the process if it cannot renew before the Lease would expire: a replica that may have
//! lost the lease must not keep changing production.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};

/// How long a Lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// A Lease to compete for.
#[derive(Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl LeaderElection {
    /// Competes for Lease `namespace/name` as `identity`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self { api: Api::namespaced(client, namespace), name: name.to_string(), identity: identity.to_string() }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        let mut logged = false;
        loop {
            if self.try_acquire_or_renew().await? {
                tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                return Ok(());
            }
            if !logged {
                tracing::info!(lease = %self.name, "another replica leads; waiting");
                logged = true;
            }
            tokio::time::sleep(RENEW_EVERY).await;
        }
    }

    /// Renews forever; returns when the Lease could not be renewed in time.
    pub async fn keep_renewing(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica took the lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "renewing the lease failed"),
            }
            if last_renewal.elapsed() >= LEASE_DURATION {
                tracing::error!(lease = %self.name, "could not renew the lease in time");
                return;
            }
        }
    }

    /// One attempt: take a free or expired Lease, or renew ours. Conflicts mean someone else
    /// wrote first; that attempt simply fails.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let duration = i32::try_from(LEASE_DURATION.as_secs()).unwrap_or(15);
        match self.api.get_opt(&self.name).await? {
            None => {
                let mut lease = Lease::default();
                lease.metadata.name = Some(self.name.clone());
                lease.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                });
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
                let expired = spec.renew_time.as_ref().is_none_or(|t| {
                    let valid =
                        jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(duration)));
                    t.0.checked_add(valid).map(|until| until < now).unwrap_or(true)
                });
                if !ours && !expired {
                    return Ok(false);
                }
                if !ours {
                    spec.holder_identity = Some(self.identity.clone());
                    spec.acquire_time = Some(MicroTime(now));
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                }
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(duration);
                match self.api.replace(&self.name, &PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }
}
