//! Scanning shared by the two reconcilers: the gate settings of a policy, the findings of the
//! digest production runs (no-regression mode, rescans), and a cache that scans each digest once
//! however many policies run it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use tidegate_api::ImagePolicy;
use tidegate_api::image_policy::Scanner as ScannerKind;
use tidegate_core::gate::{Exception, GatePolicy};
use tidegate_core::{Digest, parse_duration};
use tidegate_providers::{ScanReport, ScanRequest, Scanner};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::observe;

/// `spec.scan.maxReportAge`.
pub fn max_age(policy: &ImagePolicy) -> Result<SignedDuration> {
    let age = parse_duration(&policy.spec.scan.max_report_age)
        .map_err(|e| Error::Invalid(format!("spec.scan.maxReportAge: {e}")))?;
    SignedDuration::try_from(age).map_err(|e| Error::Invalid(format!("spec.scan.maxReportAge: {e}")))
}

/// `spec.triggers.rescan.interval`, when rescans are on.
pub fn rescan_interval(policy: &ImagePolicy) -> Result<Option<Duration>> {
    policy
        .spec
        .triggers
        .rescan
        .as_ref()
        .map(|r| parse_duration(&r.interval).map_err(|e| Error::Invalid(format!("spec.triggers.rescan.interval: {e}"))))
        .transpose()
}

/// The scanner that watches production: `spec.triggers.rescan.scanner`, else `spec.scan.scanner`.
pub fn rescan_scanner(policy: &ImagePolicy) -> ScannerKind {
    policy.spec.triggers.rescan.as_ref().and_then(|r| r.scanner).unwrap_or(policy.spec.scan.scanner)
}

/// The namespaces of the policy's staging or production workloads, sorted and unique.
pub fn workload_namespaces(policy: &ImagePolicy, production: bool, namespace: &str) -> Result<Vec<String>> {
    let mut namespaces = policy
        .spec
        .workloads
        .iter()
        .map(|w| observe::kubernetes(w, production, namespace).map(|t| t.namespace))
        .collect::<Result<Vec<_>>>()?;
    namespaces.sort();
    namespaces.dedup();
    Ok(namespaces)
}

/// The gate of `spec.scan`; `production` lists the findings of what runs (no-regression mode).
pub fn gate_policy(policy: &ImagePolicy, production: Option<Vec<String>>) -> GatePolicy {
    let scan = &policy.spec.scan;
    GatePolicy {
        block: scan.block_severities.clone(),
        only_fixable: scan.only_fixable,
        exceptions: scan.exceptions.iter().map(|e| Exception { id: e.id.clone(), expires: e.expires.0 }).collect(),
        production,
    }
}

/// The ids of the findings of the digest production runs now, scanned with `scanner` (no
/// regression compares against them). `None` when production runs no single digest or no
/// result exists: then every blocking finding blocks.
pub async fn production_findings(
    ctx: &Context,
    policy: &ImagePolicy,
    scanner: &dyn Scanner,
    max_age: SignedDuration,
    now: Timestamp,
) -> Result<Option<Vec<String>>> {
    let Some(digest) = policy.status.as_ref().and_then(|s| s.production_digest.as_deref()).and_then(|d| d.parse().ok())
    else {
        return Ok(None);
    };
    let namespace = policy.namespace().unwrap_or_default();
    let image = observe::repository(policy)?.pinned(&digest);
    let workloads = workload_namespaces(policy, true, &namespace)?;
    let request = ScanRequest {
        namespace: &namespace,
        image: &image,
        digest: &digest,
        workload_namespaces: &workloads,
        max_age,
        now,
    };
    let key = ScanKey::new(policy.spec.scan.scanner, &namespace, &digest);
    let fresh_for = max_age.unsigned_abs();
    let report = ctx.scans.scan(key, scanner, &request, fresh_for).await?;
    Ok(report.map(|r| r.findings.iter().flat_map(|f| std::iter::once(f.id.clone()).chain(f.aliases.clone())).collect()))
}

/// What a cached result is the scan of.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScanKey {
    kind: ScannerKind,
    /// The policy's namespace, for scanners that read reports as its deployer; empty for those
    /// that scan the registry with the controller's own credentials.
    namespace: String,
    digest: String,
}

impl ScanKey {
    /// The key of a scan of `digest` with `kind` for a policy in `namespace`.
    pub fn new(kind: ScannerKind, namespace: &str, digest: &Digest) -> Self {
        let scoped = matches!(kind, ScannerKind::ConfigMapReport | ScannerKind::TrivyOperator);
        Self { kind, namespace: if scoped { namespace.to_string() } else { String::new() }, digest: digest.to_string() }
    }
}

/// Results of scans of digests, shared by every policy, and one scan at a time: a digest that
/// a hundred policies run is scanned once per interval and database, not a hundred times.
#[derive(Default)]
pub struct ScanCache {
    results: std::sync::Mutex<HashMap<ScanKey, (Timestamp, ScanReport)>>,
    turn: tokio::sync::Mutex<()>,
}

/// Results kept at most this long, whatever the interval.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// At most this many results are kept; the oldest go first.
const CAPACITY: usize = 4096;

impl ScanCache {
    /// The result of scanning `request` with `scanner`: a cached one at most `fresh_for` old made
    /// with the database the scanner uses now, else a new scan.
    pub async fn scan(
        &self,
        key: ScanKey,
        scanner: &dyn Scanner,
        request: &ScanRequest<'_>,
        fresh_for: Duration,
    ) -> Result<Option<ScanReport>> {
        let fresh_for = fresh_for.min(KEEP);
        let _turn = self.turn.lock().await;
        let database = scanner.database();
        if let Some(report) = self.cached(&key, database.as_deref(), fresh_for, request.now) {
            return Ok(Some(report));
        }
        let report = scanner.scan(request).await?;
        if let Some(report) = &report {
            let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
            if results.len() >= CAPACITY
                && let Some(oldest) = results.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone())
            {
                results.remove(&oldest);
            }
            results.insert(key, (request.now, report.clone()));
        }
        Ok(report)
    }

    fn cached(&self, key: &ScanKey, database: Option<&str>, fresh_for: Duration, now: Timestamp) -> Option<ScanReport> {
        let results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        let (at, report) = results.get(key)?;
        let age = now.duration_since(*at);
        let fresh = !age.is_negative() && age.unsigned_abs() < fresh_for;
        (fresh && report.database.as_deref() == database).then(|| report.clone())
    }
}

/// A shared cache.
pub fn cache() -> Arc<ScanCache> {
    Arc::new(ScanCache::default())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Counting {
        scans: AtomicUsize,
        database: std::sync::Mutex<Option<String>>,
    }

    #[async_trait::async_trait]
    impl Scanner for Counting {
        async fn scan(&self, _: &ScanRequest<'_>) -> tidegate_providers::Result<Option<ScanReport>> {
            self.scans.fetch_add(1, Ordering::SeqCst);
            Ok(Some(ScanReport { database: self.database(), ..Default::default() }))
        }
        fn database(&self) -> Option<String> {
            self.database.lock().expect("lock").clone()
        }
    }

    #[tokio::test]
    async fn one_scan_per_digest_interval_and_database() {
        let scanner = Counting { scans: AtomicUsize::new(0), database: std::sync::Mutex::new(Some("db-1".into())) };
        let cache = ScanCache::default();
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().expect("digest");
        let t0 = Timestamp::from_second(1_700_000_000).expect("time");
        let request = |now| ScanRequest {
            namespace: "a",
            image: "r.io/app@sha256:aaaa",
            digest: &digest,
            workload_namespaces: &[],
            max_age: SignedDuration::from_hours(24),
            now,
        };
        let hour = Duration::from_secs(3600);
        // Two policies in different namespaces, same digest, registry scanner: one scan.
        for ns in ["a", "b"] {
            cache
                .scan(ScanKey::new(ScannerKind::Trivy, ns, &digest), &scanner, &request(t0), hour)
                .await
                .expect("scan");
        }
        assert_eq!(scanner.scans.load(Ordering::SeqCst), 1);
        // Namespace-scoped reports are read per namespace.
        cache
            .scan(ScanKey::new(ScannerKind::ConfigMapReport, "a", &digest), &scanner, &request(t0), hour)
            .await
            .expect("scan");
        assert_eq!(scanner.scans.load(Ordering::SeqCst), 2);
        // The interval passes: scan again.
        let key = ScanKey::new(ScannerKind::Trivy, "a", &digest);
        cache.scan(key.clone(), &scanner, &request(t0 + SignedDuration::from_hours(1)), hour).await.expect("scan");
        assert_eq!(scanner.scans.load(Ordering::SeqCst), 3);
        // The database updates: scan again at once.
        *scanner.database.lock().expect("lock") = Some("db-2".into());
        cache.scan(key, &scanner, &request(t0 + SignedDuration::from_hours(1)), hour).await.expect("scan");
        assert_eq!(scanner.scans.load(Ordering::SeqCst), 4);
    }
}
