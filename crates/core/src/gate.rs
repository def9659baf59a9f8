//! The vulnerability gate: which findings block a Release.

use jiff::Timestamp;
use tidegate_api::image_policy::Severity;

/// One finding reported by a scanner, normalised: every scanner's report reads into this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Vulnerability ID (`CVE-…`, `GHSA-…`, a distribution's advisory id).
    pub id: String,
    /// Other ids of the same vulnerability.
    pub aliases: Vec<String>,
    /// Severity.
    pub severity: Severity,
    /// Whether a fixed version exists.
    pub fixable: bool,
    /// The affected package.
    pub package: String,
    /// The version installed in the image.
    pub installed_version: String,
    /// The first fixed version, when one exists.
    pub fixed_version: Option<String>,
    /// Where the finding comes from (scanner, and its data source when known).
    pub source: String,
}

impl Finding {
    /// A finding with only an id, a severity and whether it is fixable.
    pub fn new(id: impl Into<String>, severity: Severity, fixable: bool) -> Self {
        Self {
            id: id.into(),
            aliases: Vec::new(),
            severity,
            fixable,
            package: String::new(),
            installed_version: String::new(),
            fixed_version: None,
            source: String::new(),
        }
    }

    /// Whether this finding is `id`, or has it as an alias.
    pub fn is(&self, id: &str) -> bool {
        self.id == id || self.aliases.iter().any(|a| a == id)
    }
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
    /// No-regression mode: the ids of the findings of the digest production runs now. A finding
    /// production has as well does not block (the candidate is no worse); only new ones do.
    pub production: Option<Vec<String>>,
}

/// What the gate decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GateDecision {
    /// IDs of blocking findings, sorted and unique.
    pub blocking: Vec<String>,
    /// IDs let through by a live exception.
    pub excepted: Vec<String>,
    /// IDs whose exception expired: they block again, and people should hear of it.
    pub expired: Vec<String>,
    /// IDs let through because production has them too (no-regression mode).
    pub inherited: Vec<String>,
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
        let exception = policy.exceptions.iter().filter(|e| finding.is(&e.id)).max_by_key(|e| e.expires);
        match exception {
            Some(e) if e.expires > now => decision.excepted.push(finding.id.clone()),
            _ if policy.production.as_ref().is_some_and(|p| p.iter().any(|id| finding.is(id))) => {
                decision.inherited.push(finding.id.clone());
            }
            Some(_) => {
                decision.expired.push(finding.id.clone());
                decision.blocking.push(finding.id.clone());
            }
            None => decision.blocking.push(finding.id.clone()),
        }
    }
    for ids in [&mut decision.blocking, &mut decision.excepted, &mut decision.expired, &mut decision.inherited] {
        ids.sort();
        ids.dedup();
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: &str, severity: Severity, fixable: bool) -> Finding {
        Finding::new(id, severity, fixable)
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
            production: None,
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
        assert_eq!(decision.expired, ["CVE-3"], "an expired exception is reported");
        assert_eq!(decision.excepted, ["CVE-2"]);
        assert_eq!(decision.counts, [1, 3, 1, 0]);
        assert!(!decision.passes());
        assert!(evaluate(&[], &policy, now).passes());
    }

    #[test]
    fn exceptions_match_aliases_and_the_latest_expiry_wins() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mut aliased = finding("GHSA-aaaa", Severity::Critical, true);
        aliased.aliases = vec!["CVE-9".into()];
        let policy = GatePolicy {
            block: vec![Severity::Critical],
            only_fixable: false,
            exceptions: vec![
                Exception { id: "CVE-9".into(), expires: Timestamp::from_second(10).unwrap() },
                Exception { id: "CVE-9".into(), expires: Timestamp::from_second(5_000).unwrap() },
            ],
            production: None,
        };
        let decision = evaluate(&[aliased], &policy, now);
        assert_eq!(decision.excepted, ["GHSA-aaaa"]);
        assert!(decision.passes() && decision.expired.is_empty());
    }

    #[test]
    fn no_regression_blocks_only_what_production_does_not_have() {
        let now = Timestamp::from_second(1_000).unwrap();
        let findings = [finding("CVE-old", Severity::High, true), finding("CVE-new", Severity::High, true)];
        let mut policy =
            GatePolicy { block: vec![Severity::High], only_fixable: true, exceptions: Vec::new(), production: None };
        assert_eq!(evaluate(&findings, &policy, now).blocking, ["CVE-new", "CVE-old"], "off: both block");
        policy.production = Some(vec!["CVE-old".into(), "CVE-gone".into()]);
        let decision = evaluate(&findings, &policy, now);
        assert_eq!(decision.blocking, ["CVE-new"]);
        assert_eq!(decision.inherited, ["CVE-old"]);
        policy.production = Some(Vec::new());
        assert_eq!(evaluate(&findings, &policy, now).blocking, ["CVE-new", "CVE-old"], "a clean production");
    }
}
