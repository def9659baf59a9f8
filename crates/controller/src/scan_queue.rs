//! Scans that run in this controller (a local Trivy, or Trivy through a server) run in the
//! background. A Release whose candidate waits for such a scan does not hold one of the bounded
//! reconciles while the scan waits its turn or runs: its reconcile queues the scan and returns,
//! and the scan's end wakes it (and every other Release that waits for the same scan). The next
//! reconcile takes the result.
//!
//! One scan per [`ScanKey`] at a time: Releases of a hundred policies that built the same digest
//! share one scan. A result is kept for [`KEEP_RESULT`] so that every waiter finds it; a failure
//! only for [`KEEP_FAILURE`], so that the waiters woken by it see it (and back off), and the next
//! attempt scans again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use prometheus_client::metrics::gauge::Gauge;
use tidegate_api::Release;
use tidegate_core::Digest;
use tidegate_providers::{ProviderError, ScanReport, ScanRequest, Scanner};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::vulnerabilities::ScanKey;

/// How long a finished scan's findings are handed to the Releases that ask for them.
pub const KEEP_RESULT: Duration = Duration::from_secs(600);
/// How long a failed scan's error is handed out before the next attempt scans again.
pub const KEEP_FAILURE: Duration = Duration::from_secs(30);
/// At most this many scans are remembered; finished ones are forgotten first, oldest first.
const CAPACITY: usize = 4096;

/// What a Release asks to be scanned, owned so that the scan outlives the reconcile.
#[derive(Clone, Debug)]
pub struct Request {
    /// The policy's namespace.
    pub namespace: String,
    /// The image, pinned to `digest`.
    pub image: String,
    /// The candidate.
    pub digest: Digest,
    /// Namespaces of the workloads that will run it.
    pub workload_namespaces: Vec<String>,
    /// `spec.scan.maxReportAge`.
    pub max_age: jiff::SignedDuration,
    /// When it was asked for.
    pub now: jiff::Timestamp,
    /// When waiting for a first result ends.
    pub deadline: Option<jiff::Timestamp>,
}

impl Request {
    /// An owned copy of `request`.
    pub fn of(request: &ScanRequest<'_>) -> Self {
        Self {
            namespace: request.namespace.to_string(),
            image: request.image.to_string(),
            digest: request.digest.clone(),
            workload_namespaces: request.workload_namespaces.to_vec(),
            max_age: request.max_age,
            now: request.now,
            deadline: request.deadline,
        }
    }

    fn borrowed(&self) -> ScanRequest<'_> {
        ScanRequest {
            namespace: &self.namespace,
            image: &self.image,
            digest: &self.digest,
            workload_namespaces: &self.workload_namespaces,
            max_age: self.max_age,
            now: self.now,
            deadline: self.deadline,
        }
    }
}

/// A scan's answer as the waiters get it.
pub type Answer = Result<Option<ScanReport>, ProviderError>;

/// Scans running in the background, and the answers of those that ended.
pub struct ScanQueue {
    scans: Mutex<HashMap<ScanKey, Scan>>,
    wake: mpsc::Sender<ObjectRef<Release>>,
    pending: Gauge,
}

enum Scan {
    /// Queued or running; these Releases wait for it.
    Pending { waiters: Vec<ObjectRef<Release>> },
    /// Ended at `at`.
    Ended { at: Instant, answer: Kept },
}

/// An answer that can be handed to several waiters ([`ProviderError`] is not `Clone`).
#[derive(Clone)]
enum Kept {
    Report(Option<ScanReport>),
    Transient(String),
    Permanent(String),
    NotConfigured(String),
    NotAllowed(String),
}

impl Kept {
    fn of(answer: Answer) -> Self {
        match answer {
            Ok(report) => Self::Report(report),
            Err(ProviderError::Permanent(m)) => Self::Permanent(m),
            Err(ProviderError::NotConfigured(m)) => Self::NotConfigured(m),
            Err(ProviderError::NotAllowed(m)) => Self::NotAllowed(m),
            Err(e) if !e.is_transient() => Self::Permanent(e.to_string()),
            Err(e) => Self::Transient(e.to_string()),
        }
    }

    fn answer(self) -> Answer {
        match self {
            Self::Report(report) => Ok(report),
            Self::Transient(m) => Err(ProviderError::Transient(m)),
            Self::Permanent(m) => Err(ProviderError::Permanent(m)),
            Self::NotConfigured(m) => Err(ProviderError::NotConfigured(m)),
            Self::NotAllowed(m) => Err(ProviderError::NotAllowed(m)),
        }
    }

    fn kept_for(&self) -> Duration {
        match self {
            Self::Report(_) => KEEP_RESULT,
            _ => KEEP_FAILURE,
        }
    }
}

impl ScanQueue {
    /// A queue whose scans wake their waiting Releases through `wake`, and which counts the
    /// scans queued or running in `pending`.
    pub fn new(wake: mpsc::Sender<ObjectRef<Release>>, pending: Gauge) -> Self {
        Self { scans: Mutex::new(HashMap::new()), wake, pending }
    }

    /// The answer of the scan `key` names when one ended lately; else `None`, after queueing the
    /// scan of `request` with `scanner` unless it is already queued or running. `waiter` is woken
    /// when it ends.
    pub fn poll(
        self: &Arc<Self>,
        key: ScanKey,
        scanner: Arc<dyn Scanner>,
        request: Request,
        waiter: ObjectRef<Release>,
    ) -> Option<Answer> {
        let mut scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
        match scans.get_mut(&key) {
            Some(Scan::Ended { at, answer }) if at.elapsed() < answer.kept_for() => {
                return Some(answer.clone().answer());
            }
            Some(Scan::Pending { waiters }) => {
                if !waiters.contains(&waiter) {
                    waiters.push(waiter);
                }
                return None;
            }
            // Too old, or never asked for: scan.
            Some(Scan::Ended { .. }) | None => {}
        }
        forget_ended(&mut scans);
        scans.insert(key.clone(), Scan::Pending { waiters: vec![waiter] });
        drop(scans);
        self.pending.inc();
        let ending = Ending { queue: self.clone(), key: Some(key) };
        tokio::spawn(async move {
            let answer = scanner.scan(&request.borrowed()).await;
            ending.end(answer);
        });
        None
    }

    /// Records the answer of the scan `key` names and wakes its waiters.
    fn end(&self, key: ScanKey, answer: Answer) {
        let waiters = {
            let mut scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
            let ended = Scan::Ended { at: Instant::now(), answer: Kept::of(answer) };
            match scans.insert(key, ended) {
                Some(Scan::Pending { waiters }) => waiters,
                _ => Vec::new(),
            }
        };
        self.pending.dec();
        for waiter in waiters {
            // A full queue drops the wake: the Release looks again within QUEUED_POLL anyway.
            let _ = self.wake.try_send(waiter);
        }
    }
}

/// Ends a background scan exactly once: with its answer, or, when the task ends without one
/// (a panic in the scanner), with an error, so that its waiters never wait for a scan that is
/// gone.
struct Ending {
    queue: Arc<ScanQueue>,
    key: Option<ScanKey>,
}

impl Ending {
    fn end(mut self, answer: Answer) {
        if let Some(key) = self.key.take() {
            self.queue.end(key, answer);
        }
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let message = "the scan ended without an answer (the scanner failed); it runs again".to_string();
            self.queue.end(key, Err(ProviderError::Transient(message)));
        }
    }
}

/// Makes room for one more scan: finished ones past their keep go, then the oldest finished.
fn forget_ended(scans: &mut HashMap<ScanKey, Scan>) {
    if scans.len() < CAPACITY {
        return;
    }
    scans.retain(|_, s| match s {
        Scan::Pending { .. } => true,
        Scan::Ended { at, answer } => at.elapsed() < answer.kept_for(),
    });
    while scans.len() >= CAPACITY {
        let oldest = scans
            .iter()
            .filter_map(|(k, s)| match s {
                Scan::Ended { at, .. } => Some((k, *at)),
                Scan::Pending { .. } => None,
            })
            .min_by_key(|(_, at)| *at)
            .map(|(k, _)| k.clone());
        match oldest {
            Some(key) => scans.remove(&key),
            // Only pending scans: they are not dropped; the map grows past the bound.
            None => break,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tidegate_api::image_policy::Scanner as ScannerKind;

    use super::*;

    /// Fails its first scan, panics in its second when told to, then reports no findings.
    struct Flaky {
        scans: AtomicUsize,
        panics: bool,
    }

    #[async_trait::async_trait]
    impl Scanner for Flaky {
        async fn scan(&self, _: &ScanRequest<'_>) -> tidegate_providers::Result<Option<ScanReport>> {
            match self.scans.fetch_add(1, Ordering::SeqCst) {
                0 => Err(ProviderError::Transient("registry unavailable".into())),
                1 if self.panics => panic!("a scanner bug"),
                _ => Ok(Some(ScanReport::default())),
            }
        }
    }

    fn request(digest: &Digest) -> Request {
        Request {
            namespace: "shop".into(),
            image: format!("registry.example.com/shop/app@{digest}"),
            digest: digest.clone(),
            workload_namespaces: Vec::new(),
            max_age: jiff::SignedDuration::from_hours(24),
            now: jiff::Timestamp::UNIX_EPOCH,
            deadline: None,
        }
    }

    async fn answer(
        queue: &Arc<ScanQueue>,
        woken: &mut mpsc::Receiver<ObjectRef<Release>>,
        scanner: &Arc<dyn Scanner>,
        digest: &Digest,
    ) -> Answer {
        let waiter = ObjectRef::new("shop-app-1").within("shop");
        let key = ScanKey::new(ScannerKind::Trivy, "shop", digest);
        if let Some(answer) = queue.poll(key.clone(), scanner.clone(), request(digest), waiter.clone()) {
            return answer;
        }
        assert_eq!(woken.recv().await, Some(waiter.clone()), "its end wakes the waiter");
        queue.poll(key, scanner.clone(), request(digest), waiter).expect("an answer once woken")
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_handed_out_briefly_then_the_scan_runs_again_and_its_findings_are_kept() {
        let (wake, mut woken) = mpsc::channel(8);
        let pending = Gauge::default();
        let queue = Arc::new(ScanQueue::new(wake, pending.clone()));
        let flaky = Arc::new(Flaky { scans: AtomicUsize::new(0), panics: false });
        let scanner: Arc<dyn Scanner> = flaky.clone();
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().expect("digest");

        let failed = answer(&queue, &mut woken, &scanner, &digest).await.expect_err("the first scan fails");
        assert!(failed.is_transient() && failed.to_string().contains("registry unavailable"), "{failed}");
        // Every waiter woken by the failure sees it, without scanning again.
        assert!(answer(&queue, &mut woken, &scanner, &digest).await.is_err());
        assert_eq!(flaky.scans.load(Ordering::SeqCst), 1);

        tokio::time::advance(KEEP_FAILURE).await;
        let report = answer(&queue, &mut woken, &scanner, &digest).await.expect("the next attempt scans again");
        assert_eq!(report, Some(ScanReport::default()));
        assert_eq!(flaky.scans.load(Ordering::SeqCst), 2);
        tokio::time::advance(KEEP_RESULT - Duration::from_secs(1)).await;
        assert!(answer(&queue, &mut woken, &scanner, &digest).await.is_ok());
        assert_eq!(flaky.scans.load(Ordering::SeqCst), 2, "findings are kept for KEEP_RESULT");
        assert_eq!(pending.get(), 0, "no scan is pending");
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_whose_task_dies_ends_with_an_error_instead_of_leaving_its_waiters_waiting() {
        let (wake, mut woken) = mpsc::channel(8);
        let queue = Arc::new(ScanQueue::new(wake, Gauge::default()));
        let scanner: Arc<dyn Scanner> = Arc::new(Flaky { scans: AtomicUsize::new(1), panics: true });
        let digest: Digest = format!("sha256:{}", "b".repeat(64)).parse().expect("digest");
        let failed = answer(&queue, &mut woken, &scanner, &digest).await.expect_err("no answer");
        assert!(failed.is_transient() && failed.to_string().contains("without an answer"), "{failed}");
        tokio::time::advance(KEEP_FAILURE).await;
        assert_eq!(
            answer(&queue, &mut woken, &scanner, &digest).await.expect("scanned again"),
            Some(Default::default())
        );
    }
}
