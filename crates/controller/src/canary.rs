//! Canary holds: how long a workload's new revision has had its current share of traffic.
//!
//! The time is kept in this process, never read back from status: whoever can write
//! `promotions/status` must not be able to shorten a hold. `status.canary` shows the same values
//! as a record. A restarted or new leader starts the current hold again, which only ever waits
//! longer.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tidegate_api::image_policy::{StrategyKind, Workload};
use tidegate_api::promotion::CanaryProgress;
use tidegate_core::container_apps::Canary;

use crate::error::{Error, Result};

/// Canary entries kept at most (one per workload of a Promotion being switched in steps).
const MAX_ENTRIES: usize = 4096;

/// When each canary weight was first seen, by Promotion (`namespace/name/uid`) and workload.
#[derive(Default)]
pub struct CanaryClock {
    seen: Mutex<HashMap<(String, String), (i32, Timestamp)>>,
}

impl CanaryClock {
    /// How long `workload` of `promotion` has had `weight` (zero when it just changed), and the
    /// record to show in status.
    pub fn held(&self, promotion: &str, workload: &str, weight: i32, now: Timestamp) -> (Duration, CanaryProgress) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_ENTRIES {
            seen.clear();
        }
        let key = (promotion.to_string(), workload.to_string());
        let since = match seen.get(&key) {
            Some((w, since)) if *w == weight => *since,
            _ => {
                seen.insert(key, (weight, now));
                now
            }
        };
        let record = CanaryProgress { workload: workload.to_string(), weight, since: Time(since) };
        (now.duration_since(since).unsigned_abs(), record)
    }
}

/// The canary steps of a workload switched in steps, without the held time.
pub fn steps(workload: &Workload) -> Result<Option<Canary>> {
    let Some(strategy) = workload.strategy.as_ref().filter(|s| s.kind == StrategyKind::Canary) else {
        return Ok(None);
    };
    let hold = strategy.canary_step_duration.as_deref().unwrap_or("1m");
    let hold = tidegate_core::parse_duration(hold)
        .map_err(|e| Error::Invalid(format!("workload {}: canaryStepDuration: {e}", workload.name)))?;
    Ok(Some(Canary { steps: strategy.canary_steps.clone().unwrap_or_default(), hold, held: None }))
}

/// Replaces `workload`'s entry in `records` with `record`.
pub fn record(records: &mut Vec<CanaryProgress>, record: CanaryProgress) {
    records.retain(|r| r.workload != record.workload);
    records.push(record);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_starts_when_the_weight_changes_and_is_kept_per_promotion() {
        let clock = CanaryClock::default();
        let t0: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let later = |s: i64| t0.checked_add(jiff::SignedDuration::from_secs(s)).unwrap();
        assert_eq!(clock.held("p", "web", 10, t0).0, Duration::ZERO);
        assert_eq!(clock.held("p", "web", 10, later(30)).0, Duration::from_secs(30));
        assert_eq!(clock.held("other", "web", 10, later(30)).0, Duration::ZERO, "another Promotion");
        let (held, record) = clock.held("p", "web", 50, later(61));
        assert_eq!((held, record.weight, record.since), (Duration::ZERO, 50, Time(later(61))));
        assert_eq!(clock.held("p", "web", 50, later(100)).0, Duration::from_secs(39));
    }
}
