//! Adapters behind Tidegate's provider traits. The controller only sees the traits; each adapter
//! is tested against a real server or tool.
//!
//! - [`Builder`]: produces the candidate image of a Release ([`registry_builder::RegistryBuilder`]:
//!   native rebase in the registry, external CI builds, build Jobs and ACR Tasks runs).
//! - [`Scanner`]: reports vulnerability findings ([`report::ReportScanner`]: Trivy JSON reports;
//!   [`signed_report::SignedReportScanner`]: signed Trivy reports CI attaches to the digest;
//!   [`defender::DefenderScanner`]: Microsoft Defender for Cloud's findings in Resource Graph).
//! - [`Signer`]: signs a digest and verifies it again before every deployment
//!   ([`notary_signer::NotarySigner`]: Notary Project signatures in the registry).
//! - [`provenance::Attestor`]: signed promotion records attached to digests
//!   ([`notary_signer::NotarySigner`]).
//! - [`kubernetes::KubernetesTargets`]: staging and production on Deployments and CronJobs.
//! - [`staging_tests`]: HTTP checks and test Jobs.

pub mod acr_tasks;
pub mod authz;
pub mod azure;
pub mod azure_targets;
pub mod crl_fetcher;
pub mod defender;
pub mod external_build;
pub mod job_build;
pub mod jobs;
pub mod kubernetes;
pub mod notary_key;
pub mod notary_signer;
pub mod provenance;
pub mod rebase;
pub mod registry;
pub mod registry_builder;
pub mod report;
pub mod signed_report;
pub mod staging_tests;
pub mod targets;
pub mod trivy;
pub mod trivy_operator;

use tidegate_api::{ImagePolicy, Release};
use tidegate_core::gate::Finding;
use tidegate_core::{Digest, ImageRef};

/// Makes sure a TLS crypto provider is installed for the process (ring, as kube uses). HTTP
/// clients of the providers call this before they are built; installing twice is harmless.
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What a provider call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying with backoff (network, conflicts, server errors).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help until something is fixed (a missing target, an invalid template).
    #[error("{0}")]
    Permanent(String),
    /// The provider cannot do this at all with the configuration it was given (signing without a
    /// signing key, verifying without a trust policy). Not retried; callers turn it into a
    /// condition that says what to configure.
    #[error("{0}")]
    NotConfigured(String),
    /// Nobody with the right to allow this has allowed it (a namespace administrator's grant is
    /// missing). Not retried until the grant exists; callers say who must grant what.
    #[error("{0}")]
    NotAllowed(String),
    /// The Kubernetes API answered with an error.
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

impl ProviderError {
    /// Whether retrying can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transient(_) => true,
            Self::Permanent(_) | Self::NotConfigured(_) | Self::NotAllowed(_) => false,
            Self::Kube(kube::Error::Api(status)) => status.code >= 500 || status.code == 409 || status.code == 429,
            Self::Kube(_) => true,
        }
    }
}

/// Result of provider calls.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// A finished build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    /// The exact digest of the candidate.
    pub digest: Digest,
    /// An identifier of the build run, for people.
    pub run: String,
    /// The run's ID in the system that ran it, when it has one (an ACR run ID).
    pub run_id: Option<String>,
    /// Where the run's log can be read, when known.
    pub log_link: Option<String>,
}

/// Where a build that takes a while (a webhook, a Job) stands, as recorded in the Release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BuildContext {
    /// When the build was started (`status.build.startedAt`), if it was.
    pub started_at: Option<jiff::Timestamp>,
    /// The run ID recorded when it was started (`status.build.runId`), if any.
    pub run_id: Option<String>,
    /// The time now.
    pub now: jiff::Timestamp,
}

/// One step of a build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildStep {
    /// The candidate exists.
    Done(Built),
    /// Work was started elsewhere (a CI dispatch, a Job); record it and look again later.
    Started {
        /// What was started, for people.
        run: String,
        /// The run's ID in the system that runs it, when it has one; handed back in
        /// [`BuildContext::run_id`].
        run_id: Option<String>,
    },
    /// Still waiting for the work started earlier.
    Waiting(String),
}

/// Produces the candidate image of a Release.
#[async_trait::async_trait]
pub trait Builder: Send + Sync {
    /// Builds (or finds) the candidate. Called again while it returns `Started` or `Waiting`;
    /// must be idempotent per Release.
    async fn build(
        &self,
        policy: &ImagePolicy,
        release: &Release,
        repository: &ImageRef,
        context: &BuildContext,
    ) -> Result<BuildStep>;
}

/// What to scan, for whom, and how fresh the answer must be.
#[derive(Clone, Debug)]
pub struct ScanRequest<'a> {
    /// The policy's namespace: reports are read as its deployer.
    pub namespace: &'a str,
    /// The image, pinned: `repo@sha256:…`.
    pub image: &'a str,
    /// Its digest.
    pub digest: &'a Digest,
    /// Namespaces of the workloads that run (or will run) the image, for scanners whose results
    /// live next to the workloads (the Trivy Operator).
    pub workload_namespaces: &'a [String],
    /// The oldest a report may be and still count (`spec.scan.maxReportAge`).
    pub max_age: jiff::SignedDuration,
    /// The time now.
    pub now: jiff::Timestamp,
    /// When waiting for a result ends: a scanner that still has none at this time (an outside
    /// scanner that has not assessed the digest) says so with an error instead of "no result
    /// yet", so a Release stops rather than waits forever. `None`: wait as long as it takes.
    pub deadline: Option<jiff::Timestamp>,
}

/// A scanner's answer about one digest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanReport {
    /// The findings.
    pub findings: Vec<Finding>,
    /// When the scan that produced them ran, when known.
    pub produced_at: Option<jiff::Timestamp>,
    /// Which vulnerability data the scan used (for Trivy, the database's update time).
    pub database: Option<String>,
}

/// Reports vulnerability findings for an exact image.
#[async_trait::async_trait]
pub trait Scanner: Send + Sync {
    /// Findings for the requested digest. `None`: no result yet (the scan is still running, or
    /// no fresh report exists yet).
    async fn scan(&self, request: &ScanRequest<'_>) -> Result<Option<ScanReport>>;

    /// The version of the vulnerability data this scanner would use now, when it knows; a change
    /// means what runs should be scanned again.
    fn database(&self) -> Option<String> {
        None
    }

    /// Whether this scanner does the scanning itself (it runs Trivy), so that one scan takes
    /// seconds and waits its turn behind others: callers then run it in the background rather than
    /// wait for it. Report readers, which answer from what exists, say `false`.
    fn scans_itself(&self) -> bool {
        false
    }
}

/// The outcome of verifying the signature of a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// A trusted signature of exactly this digest.
    Valid {
        /// Who signed (the certificate subject, or the key's name).
        signer: String,
    },
    /// No valid signature, and why (for the condition a person reads).
    Invalid(String),
}

impl Verification {
    /// Whether the signature is valid.
    pub fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. })
    }
}

/// Signs digests and verifies signatures.
#[async_trait::async_trait]
pub trait Signer: Send + Sync {
    /// Signs `digest` of `image` (`repo@sha256:…`); returns a reference to the signature.
    async fn sign(&self, image: &str, digest: &Digest) -> Result<String>;
    /// Verifies that a trusted key signed `digest`. `signature` is what [`Signer::sign`]
    /// returned, for signers that need it.
    async fn verify(&self, image: &str, digest: &Digest, signature: &str) -> Result<Verification>;
}
