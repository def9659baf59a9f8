//! The Release pipeline: `Pending → Building → Scanning → Signing → Staging → Testing → Verified`,
//! or `Rejected` (a gate said no), `Failed` (infrastructure), `Superseded` (a newer Release).
//!
//! [`plan`] decides everything about a Release from [`ReleaseFacts`]: which stage's work to do,
//! what it came to, the next phase, the status to keep, the conditions and the Event, and when to
//! look again. The controller only observes and carries out [`Effect`]s.
//!
//! Status is a record of where the pipeline stands, not an order. Each stage re-derives what it
//! acts on: the digest comes from the builder's observation, staging targets and tests from the
//! policy as it is now, and the signature recorded in status must verify again right before
//! anything is staged. No effect touches production; only an approved Promotion does.

mod facts;
mod plan;
mod scan;

use tidegate_api::ReleasePhase;

pub use facts::{
    BuildObservation, Observed, PolicyState, ReleaseFacts, ScanObservation, SignObservation, SignatureCheck,
    StagingObservation, StagingOutcome, TestsObservation,
};
pub use plan::{Effect, POLL, QUEUED_POLL, ReleasePlan, SIGNING_NOT_CONFIGURED, Transition, WATCHED_POLL, plan};
pub use scan::{ScanVerdict, verdict};

/// Typed transitions of a Release phase.
pub trait ReleasePhaseExt {
    /// No further automatic change (Verified is not terminal: it can still be superseded).
    fn is_terminal(&self) -> bool;
    /// The stage after this one when it succeeds.
    fn on_success(self) -> ReleasePhase;
    /// Whether this phase does work (and so has an outcome).
    fn has_work(self) -> bool;
    /// Position along the pipeline, `Pending` first; the terminal phases have none.
    fn order(self) -> Option<usize>;
    /// Whether a change of a workload the policy deploys to can move a Release in this phase on:
    /// only while it rolls staging out and tests it. A Verified Release waits for newer Releases
    /// and for its Promotion, never for a Deployment.
    fn waits_for_workloads(self) -> bool;
}

impl ReleasePhaseExt for ReleasePhase {
    fn is_terminal(&self) -> bool {
        matches!(self, ReleasePhase::Rejected | ReleasePhase::Failed | ReleasePhase::Superseded)
    }

    fn on_success(self) -> ReleasePhase {
        use ReleasePhase::*;
        match self {
            Pending => Building,
            Building => Scanning,
            Scanning => Signing,
            Signing => Staging,
            Staging => Testing,
            Testing | Verified => Verified,
            terminal @ (Rejected | Failed | Superseded) => terminal,
        }
    }

    fn has_work(self) -> bool {
        use ReleasePhase::*;
        matches!(self, Building | Scanning | Signing | Staging | Testing)
    }

    fn order(self) -> Option<usize> {
        use ReleasePhase::*;
        [Pending, Building, Scanning, Signing, Staging, Testing, Verified].iter().position(|p| *p == self)
    }

    fn waits_for_workloads(self) -> bool {
        matches!(self, ReleasePhase::Staging | ReleasePhase::Testing)
    }
}

/// The reason of the `Ready` condition while a Release is in `phase`.
fn stage_reason(phase: ReleasePhase) -> &'static str {
    use ReleasePhase::*;
    match phase {
        Pending => "Pending",
        Building => "Building",
        Scanning => "Scanning",
        Signing => "Signing",
        Staging => "DeployingToStaging",
        Testing => "Testing",
        Verified => "Verified",
        Rejected => "Rejected",
        Failed => "Failed",
        Superseded => "Superseded",
    }
}

#[cfg(test)]
mod tests;
