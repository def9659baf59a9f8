//! Conditions: `lastTransitionTime` changes only when a condition's status changes, so a status
//! computed twice from the same facts is identical and the controller does not write it again.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// A condition as the planner wants it, without timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Condition type (`Ready`, `Approved`, …).
    pub type_: &'static str,
    /// `True`, `False` or `Unknown`.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Wanted {
    /// A condition of `type_` with `status`, `reason` and `message`.
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { type_, status, reason: reason.into(), message: message.into() }
    }
}

/// Merges wanted conditions into the current ones. Conditions not mentioned are kept.
pub fn merge(current: &[Condition], wanted: &[Wanted], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    let mut out: Vec<Condition> = current.to_vec();
    for w in wanted {
        let status = if w.status { "True" } else { "False" }.to_string();
        match out.iter_mut().find(|c| c.type_ == w.type_) {
            Some(existing) => {
                if existing.status != status {
                    existing.last_transition_time = Time(now);
                }
                existing.status = status;
                existing.reason = w.reason.clone();
                existing.message = w.message.clone();
                existing.observed_generation = generation;
            }
            None => out.push(Condition {
                type_: w.type_.to_string(),
                status,
                reason: w.reason.clone(),
                message: w.message.clone(),
                observed_generation: generation,
                last_transition_time: Time(now),
            }),
        }
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_with_status() {
        let t0 = Timestamp::from_second(100).unwrap();
        let t1 = Timestamp::from_second(200).unwrap();
        let first = merge(&[], &[Wanted::new("Ready", false, "Waiting", "a")], Some(1), t0);
        let same = merge(&first, &[Wanted::new("Ready", false, "Waiting", "b")], Some(1), t1);
        assert_eq!(same[0].last_transition_time, Time(t0));
        assert_eq!(same[0].message, "b");
        let flipped = merge(&same, &[Wanted::new("Ready", true, "Done", "c")], Some(1), t1);
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(merge(&flipped, &[Wanted::new("Ready", true, "Done", "c")], Some(1), t0), flipped);
    }
}
