//! How a new digest reaches a workload, by kind and strategy.

use tidegate_api::image_policy::{StrategyKind, Workload, WorkloadKind};

/// The strategy a workload is released with: the policy's, or the kind's default.
pub fn strategy(workload: &Workload) -> StrategyKind {
    workload.strategy.as_ref().map(|s| s.kind).unwrap_or(match workload.kind {
        WorkloadKind::Http => StrategyKind::BlueGreen,
        WorkloadKind::Worker => StrategyKind::Replace,
        WorkloadKind::Job => StrategyKind::Direct,
    })
}

/// Whether `strategy` suits `kind`. Admission enforces the same rule; the controller checks again
/// so that an object admitted before the rule existed still fails closed.
pub fn fits(kind: WorkloadKind, strategy: StrategyKind) -> bool {
    use StrategyKind::*;
    match kind {
        WorkloadKind::Http => matches!(strategy, BlueGreen | Canary | Rolling),
        WorkloadKind::Worker => matches!(strategy, Replace | Overlap),
        WorkloadKind::Job => matches!(strategy, Direct),
    }
}

/// What a deploy target must do for one workload, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolloutPlan {
    /// The strategy.
    pub strategy: StrategyKind,
    /// Bring the new version up beside the current one (a second revision or Deployment),
    /// instead of changing the current one in place.
    pub side_by_side: bool,
    /// Move traffic to the new version once it is available (blue-green, canary).
    pub switch_traffic: bool,
    /// When the previous version stops: right after the switch (`replace`), at the end of the
    /// monitor window (`overlap`), or never, kept idle for instant rollback (`blueGreen`).
    pub retire_previous: Retire,
}

/// When the previous version of a side-by-side rollout stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retire {
    /// Nothing to retire (in-place update).
    NotApplicable,
    /// Scale it down as soon as the new version is available.
    WhenAvailable,
    /// Keep it running until the monitor window ends healthy.
    AfterMonitoring,
    /// Keep it, without traffic, for instant rollback.
    KeepIdle,
}

/// The rollout plan for `kind` and `strategy`, or `None` when they do not fit.
pub fn plan(kind: WorkloadKind, strategy: StrategyKind) -> Option<RolloutPlan> {
    if !fits(kind, strategy) {
        return None;
    }
    let plan = |side_by_side, switch_traffic, retire_previous| RolloutPlan {
        strategy,
        side_by_side,
        switch_traffic,
        retire_previous,
    };
    Some(match strategy {
        StrategyKind::BlueGreen | StrategyKind::Canary => plan(true, true, Retire::KeepIdle),
        StrategyKind::Replace => plan(true, false, Retire::WhenAvailable),
        StrategyKind::Overlap => plan(true, false, Retire::AfterMonitoring),
        StrategyKind::Rolling | StrategyKind::Direct => plan(false, false, Retire::NotApplicable),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use StrategyKind::*;

    #[test]
    fn every_kind_has_a_default_that_fits() {
        for kind in [WorkloadKind::Http, WorkloadKind::Worker, WorkloadKind::Job] {
            let workload: Workload = serde_json::from_value(serde_json::json!({
                "name": "w", "kind": kind,
                "staging": {"kubernetes": {"kind": "Deployment", "name": "w"}},
                "production": {"kubernetes": {"kind": "Deployment", "name": "w"}}
            }))
            .unwrap();
            assert!(plan(kind, strategy(&workload)).is_some(), "{kind:?}");
        }
    }

    #[test]
    fn no_traffic_split_for_jobs_and_workers() {
        for s in [BlueGreen, Canary, Rolling, Replace, Overlap] {
            assert_eq!(plan(WorkloadKind::Job, s), None);
        }
        assert_eq!(plan(WorkloadKind::Worker, BlueGreen), None);
        assert_eq!(plan(WorkloadKind::Http, Direct), None);
        let bg = plan(WorkloadKind::Http, BlueGreen).unwrap();
        assert!(bg.side_by_side && bg.switch_traffic && bg.retire_previous == Retire::KeepIdle);
        assert_eq!(plan(WorkloadKind::Worker, Replace).unwrap().retire_previous, Retire::WhenAvailable);
        assert_eq!(plan(WorkloadKind::Worker, Overlap).unwrap().retire_previous, Retire::AfterMonitoring);
        assert!(!plan(WorkloadKind::Job, Direct).unwrap().side_by_side);
    }
}
