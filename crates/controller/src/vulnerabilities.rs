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

/// Until when a candidate built at `built` waits for its scanner's first result: for
/// `defender`, `spec.scan.defender.assessmentTimeout` (default 6h) after the build; the other
/// scanners wait as long as it takes.
pub fn scan_deadline(policy: &ImagePolicy, built: Timestamp) -> Result<Option<Timestamp>> {
    if policy.spec.scan.scanner != ScannerKind::Defender {
        return Ok(None);
    }
    let settings = policy.spec.scan.defender.clone().unwrap_or_default();
    let invalid = |e: String| Error::Invalid(format!("spec.scan.defender.assessmentTimeout: {e}"));
    let timeout = parse_duration(&settings.assessment_timeout).map_err(|e| invalid(e.to_string()))?;
    let timeout = SignedDuration::try_from(timeout).map_err(|e| invalid(e.to_string()))?;
    Ok(Some(built.checked_add(timeout).map_err(|e| invalid(e.to_string()))?))
}

/// The namespaces of the policy's staging or production workloads, sorted and unique.
pub fn workload_namespaces(policy: &ImagePolicy, production: bool, namespace: &str) -> Result<Vec<String>> {
    let mut namespaces = policy
        .spec
        .workloads
        .iter()
        .map(|w| observe::target(w, production, namespace).map(|t| t.namespace().to_string()))
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
        deadline: None,
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
        // Defender's answer depends on the namespace's Azure grants.
        let scoped = matches!(kind, ScannerKind::ConfigMapReport | ScannerKind::TrivyOperator | ScannerKind::Defender);
        Self { kind, namespace: if scoped { namespace.to_string() } else { String::new() }, digest: digest.to_string() }
    }
}

/// Results of scans of digests, shared by every policy, and one scan of each digest at a time: a
/// digest that a hundred policies run is scanned once per interval and database, not a hundred
/// times, while scans of different digests run as the scanner allows (Trivy: one at a time
/// locally, `--trivy-concurrency` through a server). "No
/// result yet" (a report scanner with no report of the digest) is kept too, for at most
/// [`NO_RESULT`], so a missing report is not asked for on every reconcile.
#[derive(Default)]
pub struct ScanCache {
    results: std::sync::Mutex<HashMap<ScanKey, Cached>>,
    /// The scans running or waiting now, one turn per key.
    turns: std::sync::Mutex<HashMap<ScanKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// One scan's answer, when it was made and with which database.
#[derive(Clone)]
struct Cached {
    at: Timestamp,
    database: Option<String>,
    report: Option<ScanReport>,
}

/// Results kept at most this long, whatever the interval.
const KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long "no result yet" is believed.
const NO_RESULT: Duration = Duration::from_secs(300);
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
        let database = scanner.database();
        if let Some(cached) = self.cached(&key, database.as_deref(), fresh_for, request.now) {
            return Ok(cached);
        }
        let turn = self.turn(&key);
        let answer = async {
            let _turn = turn.lock().await;
            // Another policy may have scanned the digest while this one waited for its turn.
            if let Some(cached) = self.cached(&key, database.as_deref(), fresh_for, request.now) {
                return Ok(cached);
            }
            let report = scanner.scan(request).await?;
            let database = report.as_ref().map_or(database, |r| r.database.clone());
            self.keep(key.clone(), Cached { at: request.now, database, report: report.clone() });
            Ok(report)
        }
        .await;
        self.end_turn(&key, turn);
        answer
    }

    /// The turn of `key`'s scans.
    fn turn(&self, key: &ScanKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.entry(key.clone()).or_default().clone()
    }

    /// Forgets `key`'s turn when nobody else holds or waits for it.
    fn end_turn(&self, key: &ScanKey, turn: Arc<tokio::sync::Mutex<()>>) {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        // Held by the map and by `turn` only: clones are taken under this lock, so none is coming.
        if Arc::strong_count(&turn) <= 2 {
            turns.remove(key);
        }
    }

    /// Keeps `cached` as the answer for `key`, making room first.
    fn keep(&self, key: ScanKey, cached: Cached) {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        if results.len() >= CAPACITY
            && let Some(oldest) = results.iter().min_by_key(|(_, c)| c.at).map(|(k, _)| k.clone())
        {
            results.remove(&oldest);
        }
        results.insert(key, cached);
    }

    /// `Some(answer)` when a fresh enough answer made with `database` is kept.
    fn cached(
        &self,
        key: &ScanKey,
        database: Option<&str>,
        fresh_for: Duration,
        now: Timestamp,
    ) -> Option<Option<ScanReport>> {
        let results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        let cached = results.get(key)?;
        let age = now.duration_since(cached.at);
        let limit = if cached.report.is_some() { fresh_for } else { fresh_for.min(NO_RESULT) };
        let fresh = !age.is_negative() && age.unsigned_abs() < limit;
        (fresh && cached.database.as_deref() == database).then(|| cached.report.clone())
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
            deadline: None,
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

    #[test]
    fn only_defender_candidates_stop_waiting_at_the_assessment_timeout() {
        let policy = |scan: serde_json::Value| -> ImagePolicy {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "tidegate.dev/v1alpha1", "kind": "ImagePolicy",
                "metadata": {"name": "p", "namespace": "shop"},
                "spec": {"image": "shopacr.azurecr.io/shop/app", "workloads": [], "scan": scan}
            }))
            .expect("policy")
        };
        let built = Timestamp::from_second(1_700_000_000).expect("time");
        let default = scan_deadline(&policy(serde_json::json!({"scanner": "defender"})), built).expect("deadline");
        assert_eq!(default, Some(built + SignedDuration::from_hours(6)));
        let set = policy(serde_json::json!({"scanner": "defender", "defender": {"assessmentTimeout": "90m"}}));
        assert_eq!(scan_deadline(&set, built).expect("deadline"), Some(built + SignedDuration::from_mins(90)));
        for scanner in ["trivy", "trivyReport", "configMapReport"] {
            assert_eq!(scan_deadline(&policy(serde_json::json!({"scanner": scanner})), built).expect("none"), None);
        }
        let broken = policy(serde_json::json!({"scanner": "defender", "defender": {"assessmentTimeout": "soon"}}));
        assert!(matches!(scan_deadline(&broken, built), Err(Error::Invalid(m)) if m.contains("assessmentTimeout")));
    }

    #[test]
    fn defender_results_are_kept_per_namespace() {
        let digest: Digest = format!("sha256:{}", "c".repeat(64)).parse().expect("digest");
        assert_ne!(
            ScanKey::new(ScannerKind::Defender, "a", &digest),
            ScanKey::new(ScannerKind::Defender, "b", &digest)
        );
        assert_eq!(ScanKey::new(ScannerKind::Trivy, "a", &digest), ScanKey::new(ScannerKind::Trivy, "b", &digest));
    }

    /// Answers only once two scans run at the same time (or fails after 5 s alone).
    struct Together(tokio::sync::Barrier, AtomicUsize);

    #[async_trait::async_trait]
    impl Scanner for Together {
        async fn scan(&self, _: &ScanRequest<'_>) -> tidegate_providers::Result<Option<ScanReport>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            tokio::time::timeout(Duration::from_secs(5), self.0.wait())
                .await
                .map_err(|_| tidegate_providers::ProviderError::Transient("scanned alone".into()))?;
            Ok(Some(ScanReport::default()))
        }
    }

    #[tokio::test]
    async fn different_digests_are_scanned_at_once_and_one_digest_once() {
        let scanner = Together(tokio::sync::Barrier::new(2), AtomicUsize::new(0));
        let cache = ScanCache::default();
        let digests: Vec<Digest> = ['d', 'e']
            .iter()
            .map(|c| format!("sha256:{}", c.to_string().repeat(64)).parse().expect("digest"))
            .collect();
        let t0 = Timestamp::from_second(1_700_000_000).expect("time");
        let request = |digest| ScanRequest {
            namespace: "a",
            image: "r.io/app@sha256:dddd",
            digest,
            workload_namespaces: &[],
            max_age: SignedDuration::from_hours(24),
            now: t0,
            deadline: None,
        };
        let (hour, ns) = (Duration::from_secs(3600), ["a", "b"]);
        let scan = |digest, ns| {
            let request = request(digest);
            let cache = &cache;
            let scanner = &scanner;
            async move { cache.scan(ScanKey::new(ScannerKind::Trivy, ns, digest), scanner, &request, hour).await }
        };
        // Two policies run digest d, a third runs e: d's second scan waits for its first and takes
        // its answer; e's runs beside d's.
        let (first, second, third) =
            tokio::join!(scan(&digests[0], ns[0]), scan(&digests[0], ns[1]), scan(&digests[1], ns[0]));
        for answer in [first, second, third] {
            assert_eq!(answer.expect("scanned beside another digest"), Some(ScanReport::default()));
        }
        assert_eq!(scanner.1.load(Ordering::SeqCst), 2, "one scan per digest");
        assert!(cache.turns.lock().expect("lock").is_empty(), "no turn is kept once its scans ended");
    }

    /// A report scanner without a report of the digest.
    struct Empty(AtomicUsize);

    #[async_trait::async_trait]
    impl Scanner for Empty {
        async fn scan(&self, _: &ScanRequest<'_>) -> tidegate_providers::Result<Option<ScanReport>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
    }

    #[tokio::test]
    async fn no_result_is_asked_for_again_only_after_a_while() {
        let scanner = Empty(AtomicUsize::new(0));
        let cache = ScanCache::default();
        let digest: Digest = format!("sha256:{}", "b".repeat(64)).parse().expect("digest");
        let t0 = Timestamp::from_second(1_700_000_000).expect("time");
        let request = |now| ScanRequest {
            namespace: "a",
            image: "r.io/app@sha256:bbbb",
            digest: &digest,
            workload_namespaces: &[],
            max_age: SignedDuration::from_hours(24),
            now,
            deadline: None,
        };
        let key = ScanKey::new(ScannerKind::TrivyReport, "a", &digest);
        let day = Duration::from_secs(86_400);
        for minutes in [0, 1, 4] {
            let now = t0 + SignedDuration::from_mins(minutes);
            assert_eq!(cache.scan(key.clone(), &scanner, &request(now), day).await.expect("scan"), None);
        }
        assert_eq!(scanner.0.load(Ordering::SeqCst), 1, "within five minutes, no result is remembered");
        cache.scan(key, &scanner, &request(t0 + SignedDuration::from_mins(6)), day).await.expect("scan");
        assert_eq!(scanner.0.load(Ordering::SeqCst), 2, "then asked again");
    }
}
