//! [`plan`]: from [`ReleaseFacts`] to the next phase, the work to do, the status to keep, the
//! conditions, the Event and when to look again.
//!
//! A stage's work (build, scan, sign, verify, deploy to staging, test) is asked for as an effect;
//! the controller carries it out, puts what it came to into [`ReleaseFacts::observed`] and asks
//! again. The second answer decides the phase. No effect writes production: there is no such
//! effect.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tidegate_api::ReleasePhase;
use tidegate_api::release::{ReleaseStatus, StageRecord};

use super::facts::{
    BuildObservation, PolicyState, ReleaseFacts, ScanObservation, SignObservation, SignatureCheck, StagingOutcome,
    TestsObservation,
};
use super::scan;
use super::{ReleasePhaseExt, stage_reason};
use crate::conditions::{self, Wanted};
use crate::promotion::Progress;
use crate::{Digest, ImageRef, names};

/// How often a stage that waits (a rollout, a test Job, a scan report, a build) is looked at
/// again.
pub const POLL: Duration = Duration::from_secs(2);

/// How often a staging rollout whose workloads wake the Release when they change is looked at
/// besides ([`super::ReleaseFacts::watched`]).
pub const WATCHED_POLL: Duration = Duration::from_secs(10);

/// How often a Release whose scan is queued in this controller is looked at besides the wake
/// its scan's end brings ([`ScanObservation::Queued`]).
pub const QUEUED_POLL: Duration = Duration::from_secs(30);

/// Reason of a Release that stops at signing because the controller has no signing key.
pub const SIGNING_NOT_CONFIGURED: &str = "SigningNotConfigured";

/// Something the controller does for a Release. None of them touches production.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Start building (or finding) the candidate; nothing was started before.
    StartBuild,
    /// Look at the build started earlier, as recorded in `status.build`.
    FollowBuild {
        /// `status.build.startedAt`.
        started_at: Option<jiff::Timestamp>,
        /// `status.build.runId`.
        run_id: Option<String>,
    },
    /// Ask the policy's scanner for the candidate's findings.
    Scan {
        /// The candidate.
        digest: Digest,
        /// When the candidate was built: the wait for a first result counts from then.
        built_at: jiff::Timestamp,
    },
    /// Sign the candidate with the controller's key.
    Sign {
        /// The candidate.
        digest: Digest,
    },
    /// Verify the recorded signature of the candidate, right before staging.
    VerifySignature {
        /// The candidate.
        digest: Digest,
        /// `status.signature.reference`.
        signature: String,
    },
    /// Converge one workload's staging target to the candidate (in place). Never its production
    /// target.
    DeployStaging {
        /// The workload's name in the policy.
        workload: String,
        /// The candidate, pinned: `repo@sha256:…`.
        image: String,
    },
    /// Run the policy's staging tests against the candidate.
    RunTests {
        /// The candidate.
        digest: Digest,
    },
    /// Create the Promotion that waits for approval of the candidate, unless it exists.
    OpenPromotion {
        /// Its deterministic name.
        name: String,
        /// The Verified digest it asks to promote.
        digest: Digest,
    },
}

impl Effect {
    /// Whether its outcome goes back into [`ReleaseFacts::observed`] and the plan is made again.
    pub fn is_work(&self) -> bool {
        !matches!(self, Effect::OpenPromotion { .. })
    }
}

/// A phase change, announced as an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// A warning (`Rejected`, `Failed`) or a normal Event.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What a person needs to know.
    pub message: String,
}

/// The decision for one Release.
#[derive(Clone, Debug, PartialEq)]
pub struct ReleasePlan {
    /// Phase after this step.
    pub phase: ReleasePhase,
    /// What to do, in order. While any is [`Effect::is_work`], the plan waits for its outcome:
    /// carry the work out, record it in the facts and plan again.
    pub effects: Vec<Effect>,
    /// CamelCase reason of the `Ready` condition.
    pub reason: &'static str,
    /// Message of the `Ready` condition.
    pub message: String,
    /// The status to keep (written only when it differs from the recorded one).
    pub status: ReleaseStatus,
    /// The Event to publish, when the phase changes.
    pub transition: Option<Transition>,
    /// Look again after this long even if nothing changes; `None`: wait for a change.
    pub requeue_after: Option<Duration>,
}

impl ReleasePlan {
    /// Whether the plan waits for the outcome of work it asked for.
    pub fn awaits_work(&self) -> bool {
        self.effects.iter().any(Effect::is_work)
    }
}

/// What the current stage came to.
enum Outcome {
    /// The stage is finished: move on.
    Done,
    /// Still running: look again later.
    InProgress(String),
    /// A gate said no.
    Rejected(&'static str, String),
    /// The stage cannot complete; retrying will not help.
    Failed(String),
    /// The stage's work must be done (or looked at) first.
    Work(Vec<Effect>),
}

/// Decides the next step of a Release.
pub fn plan(facts: &ReleaseFacts) -> ReleasePlan {
    let phase = facts.status.phase;
    let (repository, workloads) = match &facts.policy {
        PolicyState::Missing => {
            let mut status = facts.status.clone();
            let message = format!("ImagePolicy {}/{} does not exist", facts.namespace, facts.policy_name);
            let wanted = [Wanted::new("Ready", false, "PolicyNotFound", message.clone())];
            status.conditions = conditions::merge(&status.conditions, &wanted, facts.generation, facts.now);
            return unchanged(facts, status, "PolicyNotFound", message);
        }
        PolicyState::Present { repository, workloads } => (repository, workloads),
    };
    if phase.is_terminal() {
        return unchanged(facts, facts.status.clone(), "Finished", format!("release ended {phase:?}"));
    }
    if let Some(newer) = &facts.superseded_by {
        if let (ReleasePhase::Verified, Some(promotion)) = (phase, &facts.rolling_out) {
            // An approved rollout finishes first: superseding its Release now would fail the
            // rollout's next gate check and roll production back, on nobody's decision.
            let message = format!(
                "release {newer} of the same policy replaces this one once promotion {promotion} has changed production"
            );
            let mut plan = unchanged(facts, facts.status.clone(), "SupersessionHeld", message);
            plan.requeue_after = Some(POLL * 5);
            return plan;
        }
        let message = format!("release {newer} of the same policy replaces this one");
        return conclude(facts, ReleasePhase::Superseded, "Superseded", message, facts.status.clone(), Vec::new());
    }
    let mut status = facts.status.clone();
    let outcome = match repository {
        Err(why) => Outcome::Failed(why.clone()),
        Ok(_) if facts.observed.failure.is_some() => {
            Outcome::Failed(facts.observed.failure.clone().unwrap_or_default())
        }
        Ok(repository) => stage(facts, repository, workloads, &mut status),
    };
    let (next, reason, message) = match outcome {
        Outcome::Work(effects) => {
            return ReleasePlan {
                phase,
                effects,
                reason: stage_reason(phase),
                message: format!("{phase:?}: carrying out the stage's work"),
                status: facts.status.clone(),
                transition: None,
                requeue_after: Some(Duration::ZERO),
            };
        }
        Outcome::Done if phase == ReleasePhase::Verified => {
            (phase, "Verified", "every gate passed; waiting for a promotion".to_string())
        }
        Outcome::Done => {
            let next = phase.on_success();
            (next, stage_reason(next), format!("{phase:?} done"))
        }
        Outcome::InProgress(message) => (phase, stage_reason(phase), message),
        Outcome::Rejected(reason, message) => (ReleasePhase::Rejected, reason, message),
        Outcome::Failed(message) => (ReleasePhase::Failed, "StageFailed", message),
    };
    let mut effects = Vec::new();
    if next == ReleasePhase::Verified {
        match recorded_digest(&status) {
            Some(digest) => {
                effects.push(Effect::OpenPromotion { name: names::promotion_name(&facts.name, digest.hex()), digest })
            }
            None => {
                let message = missing_digest();
                return conclude(facts, ReleasePhase::Failed, "StageFailed", message, status, Vec::new());
            }
        }
    }
    conclude(facts, next, reason, message, status, effects)
}

/// The work of the current stage, or what it came to.
fn stage(facts: &ReleaseFacts, repository: &ImageRef, workloads: &[String], status: &mut ReleaseStatus) -> Outcome {
    let observed = &facts.observed;
    let now = facts.now;
    let phase = status.phase;
    if matches!(phase, ReleasePhase::Pending) {
        return Outcome::Done;
    }
    if phase == ReleasePhase::Building {
        let recorded = status.build.as_ref();
        let started_at = recorded.and_then(|b| b.started_at.as_ref()).map(|t| t.0);
        let run_id = recorded.and_then(|b| b.run_id.clone());
        return match &observed.build {
            None if started_at.is_none() && run_id.is_none() => Outcome::Work(vec![Effect::StartBuild]),
            None => Outcome::Work(vec![Effect::FollowBuild { started_at, run_id }]),
            Some(BuildObservation::Done { digest, run, run_id, log_link }) => {
                status.image = Some(repository.pinned(digest));
                status.digest = Some(digest.to_string());
                status.build = Some(StageRecord {
                    reference: Some(run.clone()),
                    started_at: started_at.map(Time),
                    finished_at: Some(Time(now)),
                    run_id: run_id.clone(),
                    log_link: log_link.clone(),
                });
                Outcome::Done
            }
            Some(BuildObservation::Started { run, run_id }) => {
                status.build = Some(StageRecord {
                    reference: Some(run.clone()),
                    started_at: Some(Time(now)),
                    finished_at: None,
                    run_id: run_id.clone(),
                    log_link: None,
                });
                Outcome::InProgress(run.clone())
            }
            Some(BuildObservation::Waiting(message)) => Outcome::InProgress(message.clone()),
        };
    }
    // Every later stage acts on the digest the build recorded, and only on that.
    let Some(digest) = recorded_digest(status) else {
        return Outcome::Failed(missing_digest());
    };
    match phase {
        ReleasePhase::Scanning => match &observed.scan {
            None => {
                let built = status.build.as_ref().and_then(|b| b.finished_at.as_ref()).map(|t| t.0);
                Outcome::Work(vec![Effect::Scan { digest, built_at: built.or(facts.created).unwrap_or(now) }])
            }
            Some(ScanObservation::Refused { reason, message }) => Outcome::Rejected(reason, message.clone()),
            Some(ScanObservation::Waiting(message) | ScanObservation::Queued(message)) => {
                Outcome::InProgress(message.clone())
            }
            Some(ScanObservation::Report { findings, gate, scanner, produced_at, database }) => {
                let verdict =
                    scan::verdict(findings, gate, scanner.clone(), *produced_at, database.clone(), &facts.fixes, now);
                status.scan = Some(verdict.summary);
                match verdict.rejection {
                    None => Outcome::Done,
                    Some((reason, message)) => Outcome::Rejected(reason, message),
                }
            }
        },
        ReleasePhase::Signing => match &observed.sign {
            None => Outcome::Work(vec![Effect::Sign { digest }]),
            Some(SignObservation::Signed(signature)) => {
                status.signature = Some(StageRecord {
                    reference: Some(signature.clone()),
                    finished_at: Some(Time(now)),
                    ..StageRecord::default()
                });
                Outcome::Done
            }
            // Nothing unsigned is staged: without signing configuration the Release stops here.
            Some(SignObservation::NotConfigured(why)) => {
                Outcome::Rejected(SIGNING_NOT_CONFIGURED, format!("{why}; staging untouched"))
            }
        },
        ReleasePhase::Staging => staging(facts, repository, workloads, &digest, status),
        ReleasePhase::Testing => match &observed.tests {
            None => Outcome::Work(vec![Effect::RunTests { digest }]),
            // Recorded results stay as they are while waiting, so status is not rewritten each poll.
            Some(TestsObservation::JobRunning) => Outcome::InProgress("waiting for the test Job".into()),
            Some(TestsObservation::OutOfReach(message)) => Outcome::Rejected("OutOfReach", message.clone()),
            Some(TestsObservation::Finished(results)) => {
                status.tests = results.clone();
                let failed: Vec<String> = results
                    .iter()
                    .filter(|t| !t.passed)
                    .map(|t| format!("{}: {}", t.name, t.message.clone().unwrap_or_default()))
                    .collect();
                match failed.is_empty() {
                    true => Outcome::Done,
                    false => Outcome::Rejected("StagingTestsFailed", failed.join("; ")),
                }
            }
        },
        ReleasePhase::Verified => Outcome::Done,
        ReleasePhase::Pending
        | ReleasePhase::Building
        | ReleasePhase::Rejected
        | ReleasePhase::Failed
        | ReleasePhase::Superseded => Outcome::Done,
    }
}

/// Staging: the recorded signature must verify now, then every workload's staging target
/// converges to the candidate.
fn staging(
    facts: &ReleaseFacts,
    repository: &ImageRef,
    workloads: &[String],
    digest: &Digest,
    status: &mut ReleaseStatus,
) -> Outcome {
    let observed = &facts.observed;
    // The signature in status is only a pointer: what counts is that it verifies now.
    let Some(signature) = status.signature.as_ref().and_then(|s| s.reference.clone()) else {
        return Outcome::Rejected("SignatureInvalid", format!("{digest} was never signed; staging untouched"));
    };
    match &observed.signature {
        None => return Outcome::Work(vec![Effect::VerifySignature { digest: digest.clone(), signature }]),
        Some(SignatureCheck::Invalid(why)) => {
            return Outcome::Rejected("SignatureInvalid", format!("{why}; staging untouched"));
        }
        Some(SignatureCheck::Valid) => {}
    }
    let image = repository.pinned(digest);
    let mut waiting = Vec::new();
    for seen in &observed.staging {
        match &seen.outcome {
            StagingOutcome::Progress(Progress::Done) => {}
            StagingOutcome::Progress(Progress::InProgress(message)) => waiting.push(message.clone()),
            StagingOutcome::Progress(Progress::Failed(message)) => return Outcome::Failed(message.clone()),
            StagingOutcome::OutOfReach(message) => return Outcome::Rejected("OutOfReach", message.clone()),
        }
    }
    let missing: Vec<Effect> = workloads
        .iter()
        .filter(|w| !observed.staging.iter().any(|s| &s.workload == *w))
        .map(|w| Effect::DeployStaging { workload: w.clone(), image: image.clone() })
        .collect();
    if !missing.is_empty() {
        return Outcome::Work(missing);
    }
    if !waiting.is_empty() {
        return Outcome::InProgress(waiting.join("; "));
    }
    status.staging =
        Some(StageRecord { reference: Some(image), finished_at: Some(Time(facts.now)), ..StageRecord::default() });
    Outcome::Done
}

/// The plan that moves the Release to `next`, or keeps it where it is.
fn conclude(
    facts: &ReleaseFacts,
    next: ReleasePhase,
    reason: &'static str,
    message: String,
    mut status: ReleaseStatus,
    effects: Vec<Effect>,
) -> ReleasePlan {
    let phase = facts.status.phase;
    let failed = matches!(next, ReleasePhase::Rejected | ReleasePhase::Failed);
    let mut wanted = vec![Wanted::new("Ready", next == ReleasePhase::Verified, reason, message.clone())];
    if failed || next == ReleasePhase::Superseded {
        wanted.push(Wanted::new("Blocked", failed, reason, message.clone()));
    }
    if phase == ReleasePhase::Signing {
        // Whether the candidate got signed, and if not why (`SigningNotConfigured` names the flags).
        match next {
            ReleasePhase::Staging => wanted.push(Wanted::new("Signed", true, "Signed", "the candidate is signed")),
            ReleasePhase::Rejected => wanted.push(Wanted::new("Signed", false, reason, message.clone())),
            ReleasePhase::Failed => wanted.push(Wanted::new("Signed", false, "SigningFailed", message.clone())),
            _ => {}
        }
    }
    status.phase = next;
    status.observed_generation = facts.generation;
    status.conditions = conditions::merge(&status.conditions, &wanted, facts.generation, facts.now);
    let transition = (next != phase).then(|| Transition { warning: failed, reason, message: message.clone() });
    let requeue_after = match next {
        _ if next != phase => Some(Duration::ZERO),
        ReleasePhase::Staging if facts.watched => Some(WATCHED_POLL),
        ReleasePhase::Scanning if matches!(facts.observed.scan, Some(ScanObservation::Queued(_))) => Some(QUEUED_POLL),
        p if p.has_work() => Some(POLL),
        _ => None,
    };
    ReleasePlan { phase: next, effects, reason, message, status, transition, requeue_after }
}

/// The plan that changes nothing but `status` and waits for a change.
fn unchanged(facts: &ReleaseFacts, status: ReleaseStatus, reason: &'static str, message: String) -> ReleasePlan {
    ReleasePlan {
        phase: facts.status.phase,
        effects: Vec::new(),
        reason,
        message,
        status,
        transition: None,
        requeue_after: None,
    }
}

fn recorded_digest(status: &ReleaseStatus) -> Option<Digest> {
    status.digest.as_deref().and_then(|d| d.parse().ok())
}

fn missing_digest() -> String {
    "status.digest is missing or malformed".into()
}
