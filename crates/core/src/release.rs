//! The Release pipeline: `Pending → Building → Scanning → Signing → Staging → Testing → Verified`,
//! or `Rejected` (a gate said no), `Failed` (infrastructure), `Superseded` (a newer Release).

use tidegate_api::ReleasePhase;

/// What the work of the current stage came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StageOutcome {
    /// The stage finished; move on.
    Done,
    /// Still running (a rollout, a test Job); look again later.
    InProgress(String),
    /// A gate said no (blocking findings, a failed test, a bad signature).
    Rejected {
        /// CamelCase reason for the condition and the Event.
        reason: &'static str,
        /// What a person needs to know.
        message: String,
    },
    /// The stage cannot complete for a reason retries will not fix (a missing target).
    Failed {
        /// What a person needs to know.
        message: String,
    },
}

/// The next state of a Release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseStep {
    /// Phase after this step.
    pub phase: ReleasePhase,
    /// CamelCase reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

/// Typed transitions of a Release phase.
pub trait ReleasePhaseExt {
    /// No further automatic change (Verified is not terminal: it can still be superseded).
    fn is_terminal(&self) -> bool;
    /// The stage after this one when it succeeds.
    fn on_success(self) -> ReleasePhase;
    /// Whether this phase does work (and so has an outcome).
    fn has_work(self) -> bool;
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
}

/// Decides the next phase from the current one, whether a newer Release supersedes this one, and
/// the outcome of the current stage's work.
pub fn step(phase: ReleasePhase, superseded_by: Option<&str>, outcome: &StageOutcome) -> ReleaseStep {
    if phase.is_terminal() {
        return ReleaseStep { phase, reason: "Finished", message: format!("release ended {phase:?}") };
    }
    if let Some(newer) = superseded_by {
        return ReleaseStep {
            phase: ReleasePhase::Superseded,
            reason: "Superseded",
            message: format!("release {newer} of the same policy replaces this one"),
        };
    }
    match outcome {
        StageOutcome::Done if phase == ReleasePhase::Verified => {
            ReleaseStep { phase, reason: "Verified", message: "every gate passed; waiting for a promotion".into() }
        }
        StageOutcome::Done => {
            let next = phase.on_success();
            ReleaseStep { phase: next, reason: stage_reason(next), message: format!("{phase:?} done") }
        }
        StageOutcome::InProgress(message) => {
            ReleaseStep { phase, reason: stage_reason(phase), message: message.clone() }
        }
        StageOutcome::Rejected { reason, message } => {
            ReleaseStep { phase: ReleasePhase::Rejected, reason, message: message.clone() }
        }
        StageOutcome::Failed { message } => {
            ReleaseStep { phase: ReleasePhase::Failed, reason: "StageFailed", message: message.clone() }
        }
    }
}

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
mod tests {
    use super::*;
    use ReleasePhase::*;

    #[test]
    fn walks_every_stage_to_verified() {
        let mut phase = Pending;
        let mut seen = vec![phase];
        while phase != Verified {
            phase = step(phase, None, &StageOutcome::Done).phase;
            seen.push(phase);
        }
        assert_eq!(seen, [Pending, Building, Scanning, Signing, Staging, Testing, Verified]);
        assert_eq!(step(Verified, None, &StageOutcome::Done).phase, Verified);
    }

    #[test]
    fn gates_and_supersession_end_the_pipeline() {
        let rejected =
            step(Testing, None, &StageOutcome::Rejected { reason: "TestsFailed", message: "health: 500".into() });
        assert_eq!((rejected.phase, rejected.reason), (Rejected, "TestsFailed"));
        assert_eq!(step(Staging, None, &StageOutcome::InProgress("rolling out".into())).phase, Staging);
        assert_eq!(step(Verified, Some("newer"), &StageOutcome::Done).phase, Superseded);
        assert_eq!(step(Building, None, &StageOutcome::Failed { message: "x".into() }).phase, Failed);
        for terminal in [Rejected, Failed, Superseded] {
            assert_eq!(step(terminal, Some("newer"), &StageOutcome::Done).phase, terminal, "terminal stays");
        }
    }
}
