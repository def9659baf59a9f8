//! The Promotion pipeline: `AwaitingApproval → Approved → Promoting → Monitoring → Succeeded`, or
//! `RolledBack`, `Rejected`, `Expired`, `Superseded`, `Failed`.
//!
//! [`plan`] is the only place that decides to change production. It does so only for a Promotion
//! that was `Approved` with valid approvals of its own digest, whose Release is `Verified` with that
//! same digest and whose signature still verifies, and only the digest in its spec.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tidegate_api::{PromotionPhase, RecordEvent, ReleasePhase};

use crate::approval::ApprovalDecision;
use crate::digest::Digest;

/// The Release a Promotion points at, as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseState {
    /// No Release of that name (yet).
    Missing,
    /// The Release, its phase and its digest.
    Present {
        /// Its phase.
        phase: ReleasePhase,
        /// Its digest, once built.
        digest: Option<Digest>,
    },
}

/// Convergence of production towards a digest, as observed on the targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every workload runs the digest and is available.
    Done,
    /// Still converging.
    InProgress(String),
    /// Cannot converge (the target is gone, the rollout timed out).
    Failed(String),
}

/// Health of production during the monitor window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Available, no restarts.
    Healthy,
    /// Unavailable or restarting, with what was seen.
    Unhealthy(String),
}

/// Everything the planner needs to know, observed by the controller. Time is `now`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionFacts {
    /// Current phase.
    pub phase: PromotionPhase,
    /// `spec.digest`.
    pub digest: Digest,
    /// The Release named by `spec.release`.
    pub release: ReleaseState,
    /// The approval rules applied to the annotation at `now`.
    pub approval: ApprovalDecision,
    /// A valid rejection (by a user with the approve verb), if any.
    pub rejected_by: Option<String>,
    /// A valid rollback request, if any.
    pub rollback_requested_by: Option<String>,
    /// Whether the digest's signature verifies now (checked right before production changes).
    pub signature_valid: bool,
    /// A newer Promotion of the same policy was approved or changed production since.
    pub superseded: bool,
    /// The digest production runs now, when all its workloads agree.
    pub production: Option<Digest>,
    /// `status.previousDigest`: the rollback target recorded when promoting started.
    pub previous_digest: Option<Digest>,
    /// Convergence of production towards `digest`.
    pub rollout: Progress,
    /// Convergence of production back to `previous_digest`.
    pub rollback: Progress,
    /// Health of production (meaningful while Monitoring).
    pub health: Health,
    /// `status.monitorUntil`.
    pub monitor_until: Option<Timestamp>,
    /// `spec.promotion.monitorWindow` of the policy.
    pub monitor_window: Duration,
    /// `spec.promotion.autoRollback` of the policy.
    pub auto_rollback: bool,
    /// Events whose promotion record was already attached (or given up on): `status.records`.
    pub recorded: Vec<RecordEvent>,
    /// Whether a change of any production workload wakes this Promotion (every one is a
    /// Kubernetes Deployment watched as the namespace's deployer): a rollout in progress is then
    /// looked at when it changes, and polled only every [`WATCHED_POLL`] besides.
    pub watched: bool,
    /// The time of this decision.
    pub now: Timestamp,
}

/// A change to the outside world. Every effect is idempotent: executing it again when the world
/// already matches writes nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Converge every production workload to `digest` with its strategy.
    DeployProduction {
        /// The approved digest.
        digest: Digest,
    },
    /// Converge every production workload back to `to`.
    RollbackProduction {
        /// The digest production ran before this Promotion.
        to: Digest,
    },
    /// Stop the previous version kept running during the monitor window (`overlap`).
    RetirePrevious,
    /// Attach the signed promotion record of `event` to the digest (see [`crate::provenance`]).
    /// Not a production write.
    Record {
        /// What the record says happened.
        event: RecordEvent,
    },
}

/// Status fields the plan sets (others are kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Approvers accepted.
    pub approved_by: Option<Vec<String>>,
    /// When the approvals became sufficient.
    pub approved_at: Option<Timestamp>,
    /// The rollback target.
    pub previous_digest: Option<Digest>,
    /// When production changed.
    pub promoted_at: Option<Timestamp>,
    /// End of the monitor window.
    pub monitor_until: Option<Timestamp>,
}

/// The decision for one reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionPlan {
    /// Phase after this step.
    pub phase: PromotionPhase,
    /// What to change in the world, at most one production write.
    pub effects: Vec<Effect>,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Status fields to set.
    pub record: Record,
    /// Look again after this long even if nothing changes (monitor window end, rollout progress).
    pub requeue_after: Option<Duration>,
}

impl PromotionPlan {
    fn stay(phase: PromotionPhase, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            phase,
            effects: Vec::new(),
            reason,
            message: message.into(),
            record: Record::default(),
            requeue_after: None,
        }
    }

    fn to(phase: PromotionPhase, reason: &'static str, message: impl Into<String>) -> Self {
        Self::stay(phase, reason, message)
    }

    fn with(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }

    fn requeue(mut self, after: Duration) -> Self {
        self.requeue_after = Some(after);
        self
    }
}

/// Typed facts about a Promotion phase.
pub trait PromotionPhaseExt {
    /// No automatic change will follow (a manual rollback can still follow `Succeeded`).
    fn is_terminal(&self) -> bool;
    /// Production may have been changed by this Promotion.
    fn touched_production(self) -> bool;
}

impl PromotionPhaseExt for PromotionPhase {
    fn is_terminal(&self) -> bool {
        use PromotionPhase::*;
        matches!(self, Succeeded | RolledBack | Rejected | Expired | Superseded | Failed)
    }

    fn touched_production(self) -> bool {
        use PromotionPhase::*;
        matches!(self, Promoting | Monitoring | Succeeded | RolledBack)
    }
}

const POLL: Duration = Duration::from_secs(2);

/// How often a rollout whose workloads wake the Promotion when they change is looked at besides
/// ([`PromotionFacts::watched`]).
pub const WATCHED_POLL: Duration = Duration::from_secs(10);

/// The promotion record a Promotion in `phase` owes, if it does not have it yet: `Promoted` once
/// it `Succeeded`, `RolledBack` once the rollback is complete, `Rejected` once it is rejected.
pub fn record_due(phase: PromotionPhase, rollback: &Progress, recorded: &[RecordEvent]) -> Option<RecordEvent> {
    let event = match phase {
        PromotionPhase::Succeeded => RecordEvent::Promoted,
        PromotionPhase::RolledBack if *rollback == Progress::Done => RecordEvent::RolledBack,
        PromotionPhase::Rejected => RecordEvent::Rejected,
        _ => return None,
    };
    (!recorded.contains(&event)).then_some(event)
}

/// Decides the next step of a Promotion.
pub fn plan(facts: &PromotionFacts) -> PromotionPlan {
    let mut plan = decide(facts);
    if let Some(event) = record_due(facts.phase, &facts.rollback, &facts.recorded) {
        plan.effects.push(Effect::Record { event });
    }
    // A new phase that says nothing of when to look again is looked at at once (an ended
    // Promotion owes its record): the watch event of the status write that enters it starts no
    // pass of its own.
    if plan.phase != facts.phase && plan.requeue_after.is_none() {
        plan.requeue_after = Some(Duration::ZERO);
    }
    // A rollout (or rollback) converging watched workloads is woken by their changes.
    if facts.watched
        && matches!(plan.phase, PromotionPhase::Promoting | PromotionPhase::RolledBack)
        && plan.requeue_after == Some(POLL)
    {
        plan.requeue_after = Some(WATCHED_POLL);
    }
    plan
}

fn decide(facts: &PromotionFacts) -> PromotionPlan {
    use PromotionPhase::*;
    match facts.phase {
        AwaitingApproval | Approved => before_production(facts),
        Promoting => promoting(facts),
        Monitoring => monitoring(facts),
        Succeeded if facts.superseded => PromotionPlan::stay(
            Succeeded,
            "Succeeded",
            "a newer promotion changed production since; roll back that one instead",
        ),
        Succeeded => match (&facts.rollback_requested_by, &facts.previous_digest) {
            (Some(user), Some(previous)) => roll_back(previous, format!("rollback requested by {user}")),
            (Some(user), None) => PromotionPlan::stay(
                Succeeded,
                "NoRollbackTarget",
                format!("rollback requested by {user}, but no previous digest is recorded"),
            ),
            (None, _) => PromotionPlan::stay(Succeeded, "Succeeded", "production runs the promoted digest"),
        },
        RolledBack => match (&facts.rollback, &facts.previous_digest) {
            (Progress::Done, Some(previous)) => {
                PromotionPlan::stay(RolledBack, "RolledBack", format!("production restored to {previous}"))
            }
            (Progress::Failed(why), _) => {
                PromotionPlan::stay(RolledBack, "RollbackFailed", format!("rollback could not complete: {why}"))
            }
            (_, Some(previous)) => roll_back(previous, "rolling back".to_string()),
            (_, None) => PromotionPlan::stay(RolledBack, "NoRollbackTarget", "no previous digest is recorded"),
        },
        Rejected | Expired | Superseded | Failed => {
            PromotionPlan::stay(facts.phase, "Finished", format!("promotion ended {:?}", facts.phase))
        }
    }
}

fn before_production(facts: &PromotionFacts) -> PromotionPlan {
    use PromotionPhase::*;
    if facts.superseded {
        return PromotionPlan::to(Superseded, "Superseded", "a newer promotion of this policy replaces this one");
    }
    if let Some(user) = &facts.rejected_by {
        return PromotionPlan::to(Rejected, "Rejected", format!("rejected by {user}"));
    }
    match &facts.release {
        ReleaseState::Missing => {
            return PromotionPlan::stay(facts.phase, "ReleaseNotFound", "waiting for the release to exist")
                .requeue(POLL * 5);
        }
        ReleaseState::Present { phase: ReleasePhase::Superseded, .. } => {
            return PromotionPlan::to(Superseded, "ReleaseSuperseded", "the release was superseded by a newer one");
        }
        ReleaseState::Present { phase: ReleasePhase::Rejected, .. } => {
            return PromotionPlan::to(Rejected, "ReleaseRejected", "the release was rejected by a gate");
        }
        ReleaseState::Present { phase: ReleasePhase::Failed, .. } => {
            return PromotionPlan::to(Failed, "ReleaseFailed", "the release failed");
        }
        ReleaseState::Present { digest: Some(d), .. } if d != &facts.digest => {
            return PromotionPlan::to(
                Failed,
                "DigestMismatch",
                format!("spec.digest {} is not the release's digest {d}", facts.digest),
            );
        }
        ReleaseState::Present { phase: ReleasePhase::Verified, digest: Some(_) } => {}
        ReleaseState::Present { phase, .. } => {
            return PromotionPlan::stay(
                AwaitingApproval,
                "ReleaseNotVerified",
                format!("the release is {phase:?}, not Verified"),
            )
            .requeue(POLL * 5);
        }
    }
    match &facts.approval {
        ApprovalDecision::Pending { valid, required, ignored } => {
            let mut message = format!("{} of {required} approvals", valid.len());
            if !ignored.is_empty() {
                let why: Vec<String> = ignored.iter().map(ToString::to_string).collect();
                message.push_str(&format!(" (not counted: {})", why.join("; ")));
            }
            PromotionPlan::stay(AwaitingApproval, "AwaitingApproval", message)
        }
        ApprovalDecision::Expired { user, approved_at } => PromotionPlan::to(
            Expired,
            "ApprovalExpired",
            format!("the approval by {user} (seen {approved_at}) is too old to act on; open a new promotion"),
        ),
        ApprovalDecision::Unprovable(why) => PromotionPlan::stay(
            facts.phase,
            "ApprovalsUnprovable",
            format!("approvals cannot be verified, production is not changed: {why}"),
        )
        .requeue(POLL * 15),
        ApprovalDecision::Approved { approvers, .. } if facts.phase == AwaitingApproval => {
            let mut plan = PromotionPlan::to(Approved, "Approved", format!("approved by {}", approvers.join(", ")));
            plan.record.approved_by = Some(approvers.clone());
            plan.record.approved_at = Some(facts.now);
            plan.requeue(Duration::ZERO)
        }
        ApprovalDecision::Approved { approvers, .. } => {
            if !facts.signature_valid {
                return PromotionPlan::to(
                    Failed,
                    "SignatureInvalid",
                    format!("the signature of {} does not verify; production untouched", facts.digest),
                );
            }
            let mut plan = PromotionPlan::to(
                Promoting,
                "Promoting",
                format!("deploying {} approved by {}", facts.digest, approvers.join(", ")),
            )
            .with(Effect::DeployProduction { digest: facts.digest.clone() })
            .requeue(POLL);
            plan.record.approved_by = Some(approvers.clone());
            plan.record.previous_digest = facts.production.clone().filter(|p| p != &facts.digest);
            plan.record.promoted_at = Some(facts.now);
            plan
        }
    }
}

fn promoting(facts: &PromotionFacts) -> PromotionPlan {
    use PromotionPhase::*;
    if let Some(user) = &facts.rollback_requested_by {
        return match &facts.previous_digest {
            Some(previous) => roll_back(previous, format!("rollback requested by {user}")),
            None => PromotionPlan::to(
                Failed,
                "NoRollbackTarget",
                format!("rollback requested by {user}, but no previous digest is recorded"),
            ),
        };
    }
    // A rollout recorded as done counts only while production is seen running the digest: the
    // record in status is not proof.
    let rollout = match &facts.rollout {
        Progress::Done if facts.production.as_ref() != Some(&facts.digest) => {
            Progress::InProgress(format!("production does not run {} yet", facts.digest))
        }
        recorded => recorded.clone(),
    };
    if !matches!(rollout, Progress::Done)
        && let Err(why) = production_gate(facts)
    {
        // Every production write is re-derived: a phase in status is not an order.
        return failure(facts, format!("production write refused: {why}"));
    }
    match &rollout {
        Progress::Done => {
            let until = facts
                .now
                .checked_add(SignedDuration::try_from(facts.monitor_window).unwrap_or(SignedDuration::ZERO))
                .unwrap_or(facts.now);
            let mut plan = PromotionPlan::to(
                Monitoring,
                "Monitoring",
                format!("production runs {}; watching until {until}", facts.digest),
            )
            .requeue(facts.monitor_window.min(POLL * 5));
            plan.record.monitor_until = Some(until);
            plan
        }
        Progress::InProgress(message) => PromotionPlan::stay(Promoting, "Promoting", message.clone())
            .with(Effect::DeployProduction { digest: facts.digest.clone() })
            .requeue(POLL),
        Progress::Failed(why) => failure(facts, format!("rollout failed: {why}")),
    }
}

fn monitoring(facts: &PromotionFacts) -> PromotionPlan {
    use PromotionPhase::*;
    if let Some(user) = &facts.rollback_requested_by
        && let Some(previous) = &facts.previous_digest
    {
        return roll_back(previous, format!("rollback requested by {user}"));
    }
    if let Health::Unhealthy(why) = &facts.health {
        return failure(facts, format!("unhealthy during the monitor window: {why}"));
    }
    match facts.monitor_until {
        Some(until) if facts.now >= until => PromotionPlan::to(
            Succeeded,
            "Succeeded",
            format!("production healthy on {} for the whole monitor window", facts.digest),
        )
        .with(Effect::RetirePrevious),
        Some(until) => {
            let left = facts.now.duration_until(until).unsigned_abs();
            PromotionPlan::stay(Monitoring, "Monitoring", format!("healthy; watching until {until}"))
                .requeue(left.min(POLL * 5))
        }
        None => PromotionPlan::to(Failed, "MonitorWindowUnknown", "status.monitorUntil is missing"),
    }
}

/// What must hold for any write of `facts.digest` to production, checked before each one: valid
/// approvals proven now, the Release Verified with this very digest, and a signature that
/// verifies now.
pub fn production_gate(facts: &PromotionFacts) -> Result<(), String> {
    if let Some(user) = &facts.rejected_by {
        return Err(format!("rejected by {user}"));
    }
    if facts.superseded {
        return Err("a newer promotion of this policy replaced this one".into());
    }
    match &facts.approval {
        ApprovalDecision::Approved { .. } => {}
        ApprovalDecision::Pending { valid, required, ignored } => {
            let why: Vec<String> = ignored.iter().map(ToString::to_string).collect();
            return Err(format!("only {} of {required} approvals hold now ({})", valid.len(), why.join("; ")));
        }
        ApprovalDecision::Expired { user, .. } => return Err(format!("the approval by {user} expired")),
        ApprovalDecision::Unprovable(why) => return Err(format!("approvals cannot be verified: {why}")),
    }
    match &facts.release {
        ReleaseState::Present { phase: ReleasePhase::Verified, digest: Some(d) } if d == &facts.digest => {}
        ReleaseState::Present { phase, digest } => {
            return Err(format!(
                "the release is {phase:?} with digest {}, not Verified with {}",
                digest.as_ref().map(ToString::to_string).unwrap_or_else(|| "none".into()),
                facts.digest
            ));
        }
        ReleaseState::Missing => return Err("the release no longer exists".into()),
    }
    if !facts.signature_valid {
        return Err(format!("the signature of {} does not verify", facts.digest));
    }
    Ok(())
}

fn failure(facts: &PromotionFacts, why: String) -> PromotionPlan {
    match (&facts.previous_digest, facts.auto_rollback) {
        (Some(previous), true) => roll_back(previous, format!("{why}; rolling back automatically")),
        (Some(_), false) => {
            PromotionPlan::to(PromotionPhase::Failed, "Unhealthy", format!("{why}; automatic rollback is off"))
        }
        (None, _) => PromotionPlan::to(
            PromotionPhase::Failed,
            "NoRollbackTarget",
            format!("{why}; no previous digest to roll back to"),
        ),
    }
}

fn roll_back(previous: &Digest, why: String) -> PromotionPlan {
    PromotionPlan::to(PromotionPhase::RolledBack, "RollingBack", format!("{why}: restoring {previous}"))
        .with(Effect::RollbackProduction { to: previous.clone() })
        .requeue(POLL)
}
