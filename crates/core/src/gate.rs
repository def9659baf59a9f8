//! The vulnerability gate: which findings block a Release.

use jiff::Timestamp;
use tidegate_api::image_policy::Severity;

/// One finding reported by a scanner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Vulnerability ID.
    pub id: String,
    /// Severity.
    pub severity: Severity,
    /// Whether a fixed version exists.
    pub fixable: bool,
}

/// An accepted finding that lapses at `expires`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Vulnerability ID.
    pub id: String,
    /// When it lapses.
    pub expires: Timestamp,
}

/// The gate settings from `ImagePolicy.spec.scan`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatePolicy {
    /// Severities that block.
    pub block: Vec<Severity>,
    /// Count only fixable findings.
    pub only_fixable: bool,
    /// Accepted findings.
    pub exceptions: Vec<Exception>,
}

/// What the gate decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateDecision {
    /// IDs of blocking findings, sorted and unique.
    pub blocking: Vec<String>,
    /// IDs let through by a live exception.
    pub excepted: Vec<String>,
    /// Findings per severity: critical, high, medium, low.
    pub counts: [i32; 4],
}

impl GateDecision {
    /// Whether the Release may continue.
    pub fn passes(&self) -> bool {
        self.blocking.is_empty()
    }
}

/// Applies the gate at time `now`; an exception that expired no longer counts.
pub fn evaluate(findings: &[Finding], policy: &GatePolicy, now: Timestamp) -> GateDecision {
    let mut decision = GateDecision::default();
    for finding in findings {
        let index = match finding.severity {
            Severity::Critical => Some(0),
            Severity::High => Some(1),
            Severity::Medium => Some(2),
            Severity::Low => Some(3),
            Severity::Unknown => None,
        };
        if let Some(i) = index {
            decision.counts[i] += 1;
        }
        if !policy.block.contains(&finding.severity) || (policy.only_fixable && !finding.fixable) {
            continue;
        }
        if policy.exceptions.iter().any(|e| e.id == finding.id && e.expires > now) {
            decision.excepted.push(finding.id.clone());
        } else {
            decision.blocking.push(finding.id.clone());
        }
    }
    decision.blocking.sort();
    decision.blocking.dedup();
    decision.excepted.sort();
    decision.excepted.dedup();
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: Severity, fixable: bool) -> Finding {
        Finding { id: id.into(), severity, fixable }
    }

    #[test]
    fn blocks_by_severity_fixability_and_live_exceptions() {
        let now = Timestamp::from_second(1_000_000).unwrap();
        let policy = GatePolicy {
            block: vec![Severity::Critical, Severity::High],
            only_fixable: true,
            exceptions: vec![
                Exception { id: "CVE-2".into(), expires: Timestamp::from_second(2_000_000).unwrap() },
                Exception { id: "CVE-3".into(), expires: Timestamp::from_second(10).unwrap() },
            ],
        };
        let findings = [
            finding("CVE-1", Severity::Critical, true),
            finding("CVE-2", Severity::High, true),
            finding("CVE-3", Severity::High, true),
            finding("CVE-4", Severity::High, false),
            finding("CVE-5", Severity::Medium, true),
        ];
        let decision = evaluate(&findings, &policy, now);
        assert_eq!(decision.blocking, ["CVE-1", "CVE-3"], "CVE-3's exception expired");
        assert_eq!(decision.excepted, ["CVE-2"]);
        assert_eq!(decision.counts, [1, 3, 1, 0]);
        assert!(!decision.passes());
        assert!(evaluate(&[], &policy, now).passes());
    }
}
