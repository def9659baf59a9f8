//! The other providers a reconcile may call, in memory: a registry's tags, staging test Jobs,
//! scanners and the promotion-record attestor.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tidegate_core::Digest;
use tidegate_core::provenance::Statement;
use tidegate_providers::provenance::{Attestor, FoundRecord};
use tidegate_providers::registry::types::Descriptor;
use tidegate_providers::registry::{RegistryError, Repository, Resolver};
use tidegate_providers::staging_tests::{JobOutcome, TestJobs};
use tidegate_providers::{Result, ScanReport, ScanRequest, Scanner};

/// Tags of repositories (`host/path`) and the digests they point at.
#[derive(Default)]
pub struct FakeRegistry {
    tags: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl FakeRegistry {
    /// `repository:tag` points at `digest`.
    pub fn tag(&self, repository: &str, tag: &str, digest: &str) {
        self.tags
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(repository.into())
            .or_default()
            .insert(tag.into(), digest.into());
    }

    fn of(&self, repo: &Repository) -> BTreeMap<String, String> {
        let key = format!("{}/{}", repo.host, repo.name);
        self.tags.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned().unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl Resolver for FakeRegistry {
    async fn tags(&self, repo: &Repository) -> std::result::Result<Vec<String>, RegistryError> {
        Ok(self.of(repo).into_keys().collect())
    }

    async fn head_manifest(
        &self,
        repo: &Repository,
        reference: &str,
    ) -> std::result::Result<Option<Descriptor>, RegistryError> {
        let tags = self.of(repo);
        let digest = tags.get(reference).cloned().or_else(|| tags.values().find(|d| *d == reference).cloned());
        Ok(digest.map(|digest| Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest,
            size: 0,
            artifact_type: None,
            annotations: None,
            platform: None,
        }))
    }
}

/// Test Jobs that finish as the test says (default: they pass), every start kept.
#[derive(Default)]
pub struct FakeTestJobs {
    failing: Mutex<Option<String>>,
    started: Mutex<Vec<(String, String)>>,
}

impl FakeTestJobs {
    /// From now on the Job fails with `why`.
    pub fn fail(&self, why: &str) {
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.into());
    }

    /// `(namespace/name, image)` of every Job asked for.
    pub fn started(&self) -> Vec<(String, String)> {
        self.started.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl TestJobs for FakeTestJobs {
    async fn test_job(
        &self,
        _policy_namespace: &str,
        _template: &str,
        namespace: &str,
        name: &str,
        image: &str,
        _labels: &[(&str, &str)],
    ) -> Result<JobOutcome> {
        self.started.lock().unwrap_or_else(|e| e.into_inner()).push((format!("{namespace}/{name}"), image.into()));
        Ok(match self.failing.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(why) => JobOutcome::Failed(why),
            None => JobOutcome::Succeeded,
        })
    }
}

/// A scanner that reports the findings the test set (default: none) for every digest. It reads
/// reports (answers at once) unless told to [scan itself](Self::scan_itself), as Trivy does.
pub struct FakeScanner {
    report: Mutex<ScanReport>,
    scanned: Mutex<Vec<String>>,
    itself: std::sync::atomic::AtomicBool,
    open: tokio::sync::watch::Sender<bool>,
}

impl Default for FakeScanner {
    fn default() -> Self {
        Self {
            report: Mutex::default(),
            scanned: Mutex::default(),
            itself: Default::default(),
            open: tokio::sync::watch::Sender::new(true),
        }
    }
}

impl FakeScanner {
    /// From now on it scans itself ([`Scanner::scans_itself`]): the controller runs its scans
    /// in the background.
    pub fn scan_itself(&self) {
        self.itself.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Scans started from now on wait until [`Self::finish_scans`].
    pub fn hold_scans(&self) {
        self.open.send_replace(false);
    }

    /// Held scans end.
    pub fn finish_scans(&self) {
        self.open.send_replace(true);
    }

    /// From now on every scan reports `report`.
    pub fn report(&self, report: ScanReport) {
        *self.report.lock().unwrap_or_else(|e| e.into_inner()) = report;
    }

    /// Every image scanned so far.
    pub fn scanned(&self) -> Vec<String> {
        self.scanned.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl Scanner for FakeScanner {
    async fn scan(&self, request: &ScanRequest<'_>) -> Result<Option<ScanReport>> {
        self.scanned.lock().unwrap_or_else(|e| e.into_inner()).push(request.image.into());
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|open| *open).await;
        let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner()).clone();
        report.produced_at.get_or_insert(request.now);
        Ok(Some(report))
    }

    fn scans_itself(&self) -> bool {
        self.itself.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Keeps every promotion record it is asked to attach.
#[derive(Default)]
pub struct FakeAttestor {
    attached: Mutex<Vec<(String, Statement)>>,
}

impl FakeAttestor {
    /// `(image, statement)` of every record attached so far.
    pub fn attached(&self) -> Vec<(String, Statement)> {
        self.attached.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl Attestor for FakeAttestor {
    async fn attach(&self, image: &str, _digest: &Digest, statement: &Statement) -> Result<String> {
        let mut attached = self.attached.lock().unwrap_or_else(|e| e.into_inner());
        attached.push((image.into(), statement.clone()));
        Ok(format!("record-{}", attached.len()))
    }

    async fn records(&self, _image: &str, _digest: &Digest) -> Result<Vec<FoundRecord>> {
        Ok(Vec::new())
    }
}
