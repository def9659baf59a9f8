//! `cargo xtask bench scale --history K`: a cluster that has kept its history. Before the
//! controller starts, K ended Releases (`Superseded`) and K ended Promotions (`Superseded`) are
//! spread over the bench's policies, so the controller lists, caches and reconciles them all
//! next to the live pipeline. After the run's idle window the controller is killed and started
//! again: the time until it leads (the killed leader's Lease must expire first), then until it
//! has reconciled every Release and Promotion once (its own reconcile counter), the requests it
//! sent meanwhile, and its peak memory for that full relist.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use futures::{StreamExt as _, TryStreamExt as _};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tidegate_api::{Promotion, Release};

use crate::bench_scale_setup::Slot;

/// Label on every history object (the run's own watches leave them out).
pub(crate) const LABEL: &str = "bench.tidegate.dev/history";

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

/// Waits until the restarted controller leads: its `/readyz` answers 200 once it holds the
/// Lease and its controllers start. The killed leader's Lease is taken only after it went
/// unrenewed for its duration, as this replica observes it (15 s).
pub(crate) async fn until_leading(metrics_addr: &str, timeout: Duration) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        // Before the metrics server listens, the connection is refused: not leading yet.
        if let Ok((200, _)) = http_get(metrics_addr, "/readyz").await {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!("the restarted controller did not lead within {timeout:?} (its /readyz never answered 200)");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the controller has run at least `releases` Release reconciles and `promotions`
/// Promotion reconciles (its `tidegate_reconciles_total`): once each object was looked at after
/// the relist.
pub(crate) async fn until_reconciled(
    metrics_addr: &str,
    releases: u64,
    promotions: u64,
    timeout: Duration,
) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = http_get(metrics_addr, "/metrics").await?;
        ensure!(status == 200, "the controller's /metrics answered {status}");
        let (done_releases, done_promotions) = (reconciles(&body, "Release"), reconciles(&body, "Promotion"));
        if done_releases >= releases && done_promotions >= promotions {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            bail!(
                "after {timeout:?} the controller had reconciled {done_releases} of {releases} Releases and {done_promotions} of {promotions} Promotions"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of `tidegate_reconciles_total{kind="<kind>"}` in a metrics text (0 if absent).
fn reconciles(metrics: &str, kind: &str) -> u64 {
    let series = format!("tidegate_reconciles_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// `GET path` on the controller's metrics listener (plain HTTP/1.1 on loopback): status and body.
async fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("GET {path} on {addr}: not an HTTP answer"))?;
    let body = answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A restarted controller with the history in place.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Relist {
    /// Releases and Promotions in the cluster when it restarted.
    pub(crate) objects: u64,
    /// From the restart until it led (the killed leader's Lease expired by observation).
    pub(crate) lease_wait: Duration,
    /// From leading until every Release and Promotion was reconciled once.
    pub(crate) relist: Duration,
    /// Requests from the restart until then, leader election's left out.
    pub(crate) requests: u64,
    /// Of them, reads of single Releases and Promotions (a history costs none).
    pub(crate) object_reads: u64,
    /// Of them, status writes.
    pub(crate) status_writes: u64,
    /// VmHWM of the new process once every object was reconciled: its peak while it listed
    /// and looked at everything.
    pub(crate) hwm_kib: u64,
    /// VmRSS some seconds later.
    pub(crate) rss_kib: u64,
}

impl Relist {
    /// One line for the report.
    pub(crate) fn describe(&self) -> String {
        format!(
            "restart with {} Releases and Promotions (history included): led after {:.1} s (the killed leader's Lease expiring), every object reconciled {:.1} s later; {} requests besides the Lease ones ({} reads of one Release or Promotion, {} status writes); VmHWM {} MiB by then, VmRSS {} MiB {} s later",
            self.objects,
            self.lease_wait.as_secs_f64(),
            self.relist.as_secs_f64(),
            self.requests,
            self.object_reads,
            self.status_writes,
            self.hwm_kib / 1024,
            self.rss_kib / 1024,
            RSS_AFTER.as_secs()
        )
    }
}

/// How long after the relist the restarted controller's VmRSS is read.
pub(crate) const RSS_AFTER: Duration = Duration::from_secs(5);

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
    fn reconciles_are_read_by_kind_from_the_metrics_text() {
        let text = "# TYPE tidegate_reconciles counter\ntidegate_reconciles_total{kind=\"Release\"} 2010\ntidegate_reconciles_total{kind=\"Promotion\"} 7\n# EOF\n";
        assert_eq!(reconciles(text, "Release"), 2010);
        assert_eq!(reconciles(text, "Promotion"), 7);
        assert_eq!(reconciles(text, "ImagePolicy"), 0, "a kind not reconciled yet has no series");
    }
}
