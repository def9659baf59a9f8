//! Scans that run in this controller (a local Trivy, or Trivy through a server) run in the
//! background. A Release whose candidate waits for such a scan does not hold one of the bounded
//! reconciles while the scan waits its turn or runs: its reconcile queues the scan and returns,
//! and the scan's end wakes it (and every other Release that waits for the same scan). The next
//! reconcile takes the result.
//!
//! One scan per [`ScanKey`] and image at a time: Releases of policies that built the same digest in
//! the same repository share one scan. The same digest in another repository is scanned on its
//! own: a namespace that copies someone's candidate into a registry of its own (which may fail or
//! stall) never makes the other's Release wait for, or take, that scan's failure. An answer is kept until every Release it woke took it, and at most
//! [`KEEP_RESULT`] (a failure at most [`KEEP_FAILURE`]): the waiters woken by a failure see it
//! (and back off), and the next attempt scans again.

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

/// How long a finished scan's findings are kept at most for the Releases it woke.
pub const KEEP_RESULT: Duration = Duration::from_secs(600);
/// How long a failed scan's error is kept at most for the Releases it woke.
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

/// What one scan is of: the scan's key and the image (pinned) it reads.
type Key = (ScanKey, String);

/// Scans running in the background, and the answers of those that ended.
pub struct ScanQueue {
    scans: Mutex<HashMap<Key, Scan>>,
    wake: mpsc::Sender<ObjectRef<Release>>,
    pending: Gauge,
}

enum Scan {
    /// Queued or running; these Releases wait for it.
    Pending { waiters: Vec<ObjectRef<Release>> },
    /// Ended at `at`; these Releases, woken by its end, have not taken the answer yet.
    Ended { at: Instant, answer: Kept, waiting: Vec<ObjectRef<Release>> },
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

    /// The answer of the scan of `request`'s image that `key` names, when one ended lately; else
    /// `None`, after queueing the scan with `scanner` unless it is already queued or running.
    /// `waiter` is woken when it ends.
    pub fn poll(
        self: &Arc<Self>,
        key: ScanKey,
        scanner: Arc<dyn Scanner>,
        request: Request,
        waiter: ObjectRef<Release>,
    ) -> Option<Answer> {
        let key = (key, request.image.clone());
        let mut scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
        match scans.get_mut(&key) {
            Some(Scan::Ended { at, answer, waiting }) if at.elapsed() < answer.kept_for() => {
                let taken = answer.clone().answer();
                // Forgotten once every Release it woke took it: findings are not kept in memory
                // longer than someone waits for them.
                waiting.retain(|w| w != &waiter);
                if waiting.is_empty() {
                    scans.remove(&key);
                }
                return Some(taken);
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
    fn end(&self, key: Key, answer: Answer) {
        let waiters = {
            let mut scans = self.scans.lock().unwrap_or_else(|e| e.into_inner());
            let waiters = match scans.remove(&key) {
                Some(Scan::Pending { waiters }) => waiters,
                _ => Vec::new(),
            };
            let ended = Scan::Ended { at: Instant::now(), answer: Kept::of(answer), waiting: waiters.clone() };
            scans.insert(key, ended);
            waiters
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
    key: Option<Key>,
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
fn forget_ended(scans: &mut HashMap<Key, Scan>) {
    if scans.len() < CAPACITY {
        return;
    }
    scans.retain(|_, s| match s {
        Scan::Pending { .. } => true,
        Scan::Ended { at, answer, .. } => at.elapsed() < answer.kept_for(),
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

    fn key(digest: &Digest) -> ScanKey {
        ScanKey::new(ScannerKind::Trivy, "shop", digest)
    }

    fn release(name: &str) -> ObjectRef<Release> {
        ObjectRef::new(name).within("shop")
    }

    /// What `waiter` gets now: `None` when the scan is queued or running.
    fn poll(queue: &Arc<ScanQueue>, scanner: &Arc<dyn Scanner>, digest: &Digest, waiter: &str) -> Option<Answer> {
        queue.poll(key(digest), scanner.clone(), request(digest), release(waiter))
    }

    /// The names of the next `count` Releases woken.
    async fn woken(rx: &mut mpsc::Receiver<ObjectRef<Release>>, count: usize) -> Vec<String> {
        let mut names = Vec::new();
        for _ in 0..count {
            let woken = tokio::time::timeout(Duration::from_secs(1), rx.recv()).await.expect("woken").expect("open");
            names.push(woken.name);
        }
        names
    }

    /// The answer `waiter` gets after the scan it queued ends.
    async fn answer(
        queue: &Arc<ScanQueue>,
        rx: &mut mpsc::Receiver<ObjectRef<Release>>,
        scanner: &Arc<dyn Scanner>,
        digest: &Digest,
        waiter: &str,
    ) -> Answer {
        assert!(poll(queue, scanner, digest, waiter).is_none(), "queued");
        assert_eq!(woken(rx, 1).await, [waiter], "its end wakes the waiter");
        poll(queue, scanner, digest, waiter).expect("an answer once woken")
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_goes_to_every_release_it_woke_and_is_then_forgotten() {
        let (wake, mut rx) = mpsc::channel(8);
        let pending = Gauge::default();
        let queue = Arc::new(ScanQueue::new(wake, pending.clone()));
        let flaky = Arc::new(Flaky { scans: AtomicUsize::new(0), panics: false });
        let scanner: Arc<dyn Scanner> = flaky.clone();
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().expect("digest");

        // Two Releases wait for one scan, which fails: both are woken and both see the failure.
        assert!(poll(&queue, &scanner, &digest, "a").is_none());
        assert!(poll(&queue, &scanner, &digest, "b").is_none());
        assert_eq!(pending.get(), 1);
        assert_eq!(woken(&mut rx, 2).await, ["a", "b"]);
        for waiter in ["a", "b"] {
            let failed = poll(&queue, &scanner, &digest, waiter).expect("answered").expect_err("the scan failed");
            assert!(failed.is_transient() && failed.to_string().contains("registry unavailable"), "{failed}");
        }
        assert_eq!(flaky.scans.load(Ordering::SeqCst), 1, "one scan for both");
        // Taken by both, the failure is forgotten: the next attempt scans again.
        let report = answer(&queue, &mut rx, &scanner, &digest, "a").await.expect("scanned again");
        assert_eq!(report, Some(ScanReport::default()));
        assert_eq!(flaky.scans.load(Ordering::SeqCst), 2);
        // So are findings: nothing is kept once its one waiter took it.
        assert!(answer(&queue, &mut rx, &scanner, &digest, "a").await.is_ok());
        assert_eq!(flaky.scans.load(Ordering::SeqCst), 3);
        assert_eq!(pending.get(), 0, "no scan is pending");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_a_woken_release_never_takes_is_kept_at_most_keep_result() {
        let (wake, mut rx) = mpsc::channel(8);
        let flaky = Arc::new(Flaky { scans: AtomicUsize::new(1), panics: false });
        let scanner: Arc<dyn Scanner> = flaky.clone();
        let queue = Arc::new(ScanQueue::new(wake, Gauge::default()));
        let digest: Digest = format!("sha256:{}", "c".repeat(64)).parse().expect("digest");
        assert!(poll(&queue, &scanner, &digest, "a").is_none());
        assert!(poll(&queue, &scanner, &digest, "gone").is_none());
        assert_eq!(woken(&mut rx, 2).await, ["a", "gone"]);
        assert!(poll(&queue, &scanner, &digest, "a").expect("answered").is_ok());
        // "gone" (deleted meanwhile) never takes it; another Release of the digest still may.
        tokio::time::advance(KEEP_RESULT - Duration::from_secs(1)).await;
        assert!(poll(&queue, &scanner, &digest, "c").expect("kept").is_ok());
        assert_eq!(flaky.scans.load(Ordering::SeqCst), 2, "one scan");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(poll(&queue, &scanner, &digest, "c").is_none(), "too old: scanned again");
    }

    /// Fails every scan of an image outside `registry.example.com`.
    struct Elsewhere(AtomicUsize);

    #[async_trait::async_trait]
    impl Scanner for Elsewhere {
        async fn scan(&self, request: &ScanRequest<'_>) -> tidegate_providers::Result<Option<ScanReport>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            match request.image.starts_with("registry.example.com/") {
                true => Ok(Some(ScanReport::default())),
                false => Err(ProviderError::Transient("attacker.example.com stalls".into())),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_same_digest_copied_into_another_repository_is_scanned_on_its_own() {
        let (wake, mut rx) = mpsc::channel(8);
        let queue = Arc::new(ScanQueue::new(wake, Gauge::default()));
        let elsewhere = Arc::new(Elsewhere(AtomicUsize::new(0)));
        let scanner: Arc<dyn Scanner> = elsewhere.clone();
        let digest: Digest = format!("sha256:{}", "d".repeat(64)).parse().expect("digest");
        // Another namespace's Release of a copy of the candidate, in a registry of its own, queues
        // first; the candidate's own Release does not join its scan.
        let copy = Request { image: format!("attacker.example.com/copy@{digest}"), ..request(&digest) };
        assert!(queue.poll(key(&digest), scanner.clone(), copy.clone(), release("copy")).is_none());
        assert!(poll(&queue, &scanner, &digest, "a").is_none());
        let mut woken = woken(&mut rx, 2).await;
        woken.sort();
        assert_eq!(woken, ["a", "copy"]);
        assert_eq!(elsewhere.0.load(Ordering::SeqCst), 2, "two scans");
        assert_eq!(
            poll(&queue, &scanner, &digest, "a").expect("answered").expect("its own scan"),
            Some(Default::default())
        );
        assert!(queue.poll(key(&digest), scanner, copy, release("copy")).expect("answered").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_scan_whose_task_dies_ends_with_an_error_instead_of_leaving_its_waiters_waiting() {
        let (wake, mut woken) = mpsc::channel(8);
        let queue = Arc::new(ScanQueue::new(wake, Gauge::default()));
        let scanner: Arc<dyn Scanner> = Arc::new(Flaky { scans: AtomicUsize::new(1), panics: true });
        let digest: Digest = format!("sha256:{}", "b".repeat(64)).parse().expect("digest");
        let failed = answer(&queue, &mut woken, &scanner, &digest, "a").await.expect_err("no answer");
        assert!(failed.is_transient() && failed.to_string().contains("without an answer"), "{failed}");
        assert_eq!(
            answer(&queue, &mut woken, &scanner, &digest, "a").await.expect("scanned again"),
            Some(Default::default())
        );
    }
}
