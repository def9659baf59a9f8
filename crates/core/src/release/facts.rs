//! What the Release planner is told: the recorded status, the policy as it is now, whether a
//! newer Release replaces this one, and what this pass's work on the current stage came to.

use jiff::Timestamp;
use tidegate_api::release::{ReleaseStatus, TestResult};

use crate::gate::{Finding, GatePolicy};
use crate::promotion::Progress;
use crate::{Digest, ImageRef};

/// Everything the planner needs to know about one Release, observed by the controller.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleaseFacts {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`: the Promotion's name derives from it.
    pub name: String,
    /// `spec.policy`.
    pub policy_name: String,
    /// `metadata.generation`, recorded with the conditions.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`: the wait for a first scan counts from it when no build finish
    /// is recorded.
    pub created: Option<Timestamp>,
    /// The status as the API server has it now (not the watch cache). A record of where the
    /// pipeline stands; every stage re-derives what it acts on (see [`crate::release`]).
    pub status: ReleaseStatus,
    /// The ImagePolicy named by `spec.policy`, as it is now.
    pub policy: PolicyState,
    /// The name of a newer Release of the same policy that is still in the running, if any.
    pub superseded_by: Option<String>,
    /// A Promotion of this Release that approvers let through and that is changing production
    /// now (`Approved` or `Promoting`), if any. Looked up only when `superseded_by` is set.
    pub rolling_out: Option<String>,
    /// `spec.reason.vulnerabilities`: what a `VulnerabilitiesFound` Release was started to fix.
    pub fixes: Vec<String>,
    /// What the work of the current stage came to in this pass (empty until the controller has
    /// carried out the work the plan asked for).
    pub observed: Observed,
    /// Whether a change of any staging workload wakes this Release (every one is a Kubernetes
    /// Deployment watched as the policy namespace's deployer): a staging rollout is then looked at
    /// when it changes, and polled only every [`super::WATCHED_POLL`] besides.
    pub watched: bool,
    /// The time of this decision.
    pub now: Timestamp,
}

/// The Release's ImagePolicy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyState {
    /// No ImagePolicy of that name in the Release's namespace.
    Missing,
    /// The policy exists.
    Present {
        /// `spec.image` parsed, or why it does not parse.
        repository: Result<ImageRef, String>,
        /// Names of `spec.workloads`, in order: each one's staging target gets the candidate.
        workloads: Vec<String>,
    },
}

/// Outcomes of the work a plan asked for, filled in by the controller as it carries it out.
/// Each is `None` until that work was done in this pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// [`super::Effect::StartBuild`] or [`super::Effect::FollowBuild`].
    pub build: Option<BuildObservation>,
    /// [`super::Effect::Scan`].
    pub scan: Option<ScanObservation>,
    /// [`super::Effect::Sign`].
    pub sign: Option<SignObservation>,
    /// [`super::Effect::VerifySignature`]: whether the recorded signature verifies now.
    pub signature: Option<SignatureCheck>,
    /// [`super::Effect::DeployStaging`], one per workload in the order they were carried out.
    /// The controller stops at the first workload that fails or is out of reach.
    pub staging: Vec<StagingObservation>,
    /// [`super::Effect::RunTests`].
    pub tests: Option<TestsObservation>,
    /// The work could not be done, and retrying will not help (an invalid spec, a permanent
    /// provider error): what a person needs to know.
    pub failure: Option<String>,
}

impl Observed {
    /// Whether anything was observed.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Where the build of the candidate stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildObservation {
    /// The candidate exists.
    Done {
        /// Its exact digest, as the builder found it in the registry.
        digest: Digest,
        /// The build run, for people.
        run: String,
        /// The run's ID in the system that ran it.
        run_id: Option<String>,
        /// Where the run's log can be read.
        log_link: Option<String>,
    },
    /// Work was started elsewhere (a CI dispatch, a Job).
    Started {
        /// What was started, for people.
        run: String,
        /// The run's ID in the system that runs it.
        run_id: Option<String>,
    },
    /// Still waiting for the work started earlier.
    Waiting(String),
}

/// What the scanner said about the candidate.
#[derive(Clone, Debug, PartialEq)]
pub enum ScanObservation {
    /// The scanner cannot be used for this policy (not configured, or not allowed for its
    /// namespace): nothing scanned, nothing passes.
    Refused {
        /// CamelCase reason (`ScannerNotConfigured`, `UnsignedReportsNotAllowed`, `OutOfReach`).
        reason: &'static str,
        /// What a person needs to know.
        message: String,
    },
    /// No result yet.
    Waiting(String),
    /// A scan of the candidate runs in this controller, or waits its turn there. Its end wakes
    /// the Release, which is looked at only every [`QUEUED_POLL`](super::QUEUED_POLL) besides, and
    /// holds no reconcile while it waits.
    Queued(String),
    /// The findings, and the gate that applies to them.
    Report {
        /// Every finding of the candidate.
        findings: Vec<Finding>,
        /// The policy's gate, with production's findings when `noRegression` is on.
        gate: GatePolicy,
        /// The scanner as the API spells it.
        scanner: Option<String>,
        /// When the scanner produced the findings, when known.
        produced_at: Option<Timestamp>,
        /// Which vulnerability data the scan used, when known.
        database: Option<String>,
    },
}

/// What signing the candidate came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignObservation {
    /// Signed; a reference to the signature.
    Signed(String),
    /// The controller has no signing configuration: nothing is signed.
    NotConfigured(String),
}

/// Whether the recorded signature of the candidate verifies now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureCheck {
    /// A trusted key signed exactly this digest.
    Valid,
    /// It does not verify, and why.
    Invalid(String),
}

/// One staging workload's convergence towards the candidate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StagingObservation {
    /// The workload's name in the policy.
    pub workload: String,
    /// How far it got.
    pub outcome: StagingOutcome,
}

/// How far one staging target got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StagingOutcome {
    /// Convergence of the target (done, still rolling out, or failed for good).
    Progress(Progress),
    /// The policy's namespace may not write that target: what a person needs to know.
    OutOfReach(String),
}

/// What the staging tests came to.
#[derive(Clone, Debug, PartialEq)]
pub enum TestsObservation {
    /// The test Job still runs.
    JobRunning,
    /// Every check finished, with its result.
    Finished(Vec<TestResult>),
    /// The test Job may not run where the policy asks: what a person needs to know.
    OutOfReach(String),
}
