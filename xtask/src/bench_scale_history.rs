//! `cargo xtask bench scale --history K`: a cluster that has kept its history. Before the
//! controller starts, K ended Releases (`Superseded`) and K ended Promotions (`Superseded`) are
//! spread over the bench's policies, so the controller lists, caches and reconciles them all
//! next to the live pipeline. After the run's idle window the controller is restarted and its
//! peak memory measured while it lists and looks at everything again (a full relist), then the
//! time until it is quiet again (nothing but leader election in the audit log).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tidegate_api::{Promotion, Release};

use crate::bench_scale_audit as audit;
use crate::bench_scale_setup::Slot;

/// Label on every history object (the run's own watches leave them out).
pub(crate) const LABEL: &str = "bench.tidegate.dev/history";

/// Longest a restarted controller waits for the killed leader's Lease (its duration, 15 s, and
/// a retry period).
const LEASE_WAIT: Duration = Duration::from_secs(20);

/// How many creates and status writes run at once.
const PARALLEL: usize = 16;

/// The `i`-th history object's policy, name and invented digest (never pulled: the objects have
/// ended, nothing deploys them).
fn history_object(slots: &[Slot], i: usize) -> (&Slot, String, String) {
    let slot = &slots[i % slots.len()];
    (slot, format!("{}-h{}", slot.name, i / slots.len()), format!("sha256:{i:064x}"))
}

/// The ended Release `name` of `slot`'s policy.
fn release(slot: &Slot, name: &str) -> Value {
    json!({
        "apiVersion": "tidegate.dev/v1alpha1",
        "kind": "Release",
        "metadata": {"name": name, "namespace": slot.namespace, "labels": {LABEL: "true"}},
        "spec": {"policy": slot.name, "reason": {"type": "Manual", "message": "bench history"}}
    })
}

/// The ended Promotion of Release `name`, promoting `digest`.
fn promotion(slot: &Slot, name: &str, digest: &str) -> Value {
    json!({
        "apiVersion": "tidegate.dev/v1alpha1",
        "kind": "Promotion",
        "metadata": {"name": name, "namespace": slot.namespace, "labels": {LABEL: "true"}},
        // The admission policies let a creator name only themselves as the requester.
        "spec": {"policy": slot.name, "release": name, "digest": digest,
                 "requestedBy": tidegate_testenv::ADMIN_USER}
    })
}

/// Creates `per_kind` ended Releases and as many ended Promotions over `slots` (status written
/// by the bench, as the controller once wrote it).
pub(crate) async fn create(client: &kube::Client, slots: &[Slot], per_kind: usize) -> Result<()> {
    if per_kind == 0 {
        return Ok(());
    }
    let started = Instant::now();
    futures::stream::iter((0..per_kind).map(|i| {
        let client = client.clone();
        async move {
            let (slot, name, digest) = history_object(slots, i);
            let releases: Api<Release> = Api::namespaced(client.clone(), &slot.namespace);
            let promotions: Api<Promotion> = Api::namespaced(client, &slot.namespace);
            let ended = |phase: &str| Patch::Merge(json!({"status": {"phase": phase}}));
            releases
                .create(&PostParams::default(), &serde_json::from_value(release(slot, &name))?)
                .await
                .with_context(|| format!("creating Release {}/{name}", slot.namespace))?;
            releases
                .patch_status(&name, &PatchParams::default(), &ended("Superseded"))
                .await
                .with_context(|| format!("ending Release {}/{name}", slot.namespace))?;
            promotions
                .create(&PostParams::default(), &serde_json::from_value(promotion(slot, &name, &digest))?)
                .await
                .with_context(|| format!("creating Promotion {}/{name}", slot.namespace))?;
            promotions
                .patch_status(&name, &PatchParams::default(), &ended("Superseded"))
                .await
                .with_context(|| format!("ending Promotion {}/{name}", slot.namespace))?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(PARALLEL)
    .try_collect::<Vec<()>>()
    .await?;
    eprintln!(
        "[bench scale] history: {per_kind} ended Releases and {per_kind} ended Promotions in {:.0?}",
        started.elapsed()
    );
    Ok(())
}

/// Waits until the controller has sent nothing but leader election requests for `quiet`
/// (audit log), counting from `since`; returns when its last other request was received.
pub(crate) async fn until_quiet(
    audit_log: &Path,
    user: &str,
    since: Timestamp,
    quiet: Duration,
    timeout: Duration,
) -> Result<Timestamp> {
    let deadline = Instant::now() + timeout;
    let mut last = since;
    let mut offset = 0usize;
    let mut pending = String::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let bytes = std::fs::read(audit_log).with_context(|| format!("reading {}", audit_log.display()))?;
        if bytes.len() > offset {
            pending.push_str(&String::from_utf8_lossy(&bytes[offset..]));
            offset = bytes.len();
        }
        // Complete lines only; a line still being written stays for the next read.
        let complete = pending.rfind('\n').map_or(0, |i| i + 1);
        let lines: String = pending.drain(..complete).collect();
        last = last_busy(&audit::parse(&lines, user), last);
        let now = Timestamp::now();
        // A restarted controller first waits for the old leader's Lease to expire (15 s): quiet
        // counts once it has started work. Nothing at all past that wait is an error, not a
        // figure.
        if last == since && now.duration_since(since).unsigned_abs() >= LEASE_WAIT + quiet {
            bail!("no request other than a Lease one in the audit log {:?} after the start", LEASE_WAIT + quiet);
        }
        if last > since && now.duration_since(last).unsigned_abs() >= quiet {
            return Ok(last);
        }
        if Instant::now() > deadline {
            bail!("the controller was still busy after {timeout:?} (last request other than a Lease at {last})");
        }
    }
}

/// The latest of `last` and the receipt of every request in `requests` other than a Lease one.
fn last_busy(requests: &[audit::Request], last: Timestamp) -> Timestamp {
    requests.iter().filter(|r| !r.is_lease()).map(|r| r.at).fold(last, Timestamp::max)
}

/// A restarted controller with the history in place.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Relist {
    /// From the restart until the controller was quiet again.
    pub(crate) settle: Duration,
    /// Requests in that time.
    pub(crate) requests: u64,
    /// Status writes in that time.
    pub(crate) status_writes: u64,
    /// VmHWM of the new process: its peak while it listed and looked at everything.
    pub(crate) hwm_kib: u64,
    /// VmRSS once quiet.
    pub(crate) rss_kib: u64,
}

impl Relist {
    /// One line for the report.
    pub(crate) fn describe(&self, objects: usize) -> String {
        format!(
            "restart with {objects} Releases and Promotions (history included): quiet again after {:.1} s, {} requests, {} status writes; VmHWM {} MiB during the relist, VmRSS {} MiB after",
            self.settle.as_secs_f64(),
            self.requests,
            self.status_writes,
            self.hwm_kib / 1024,
            self.rss_kib / 1024
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench_scale_setup::slots;

    #[test]
    fn history_is_spread_over_the_policies_with_valid_objects() {
        let slots = slots(3, 10);
        let (slot, name, digest) = history_object(&slots, 4);
        assert_eq!((slot.name.as_str(), name.as_str()), ("app-1", "app-1-h1"));
        let promotion: Promotion = serde_json::from_value(promotion(slot, &name, &digest)).expect("promotion");
        assert_eq!(promotion.spec.digest.len(), 71);
        assert!(promotion.spec.digest[7..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let release: Release = serde_json::from_value(release(slot, &name)).expect("release");
        assert_eq!(release.spec.policy, "app-1");
    }

    #[test]
    fn only_requests_other_than_leases_count_as_busy() {
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).expect("time");
        let request = |s, resource: &str| audit::Request {
            at: at(s),
            verb: "get".into(),
            resource: resource.into(),
            impersonated: false,
        };
        let requests = [request(5, "promotions"), request(9, "leases"), request(7, "deployments")];
        assert_eq!(last_busy(&requests, at(0)), at(7));
        assert_eq!(last_busy(&[], at(3)), at(3));
    }
}
