//! The scan stage's decision: the gate applied to a scanner's findings, the summary the Release
//! keeps, and what a rejection says.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tidegate_api::release::{ScanSummary, TopFinding};

use crate::gate::{self, Finding, GateDecision, GatePolicy};
use crate::rescan;

/// How many ids a summary list keeps.
const LIST_MAX: usize = 50;
/// How many findings the summary shows in full.
const TOP_MAX: usize = 10;

/// What the gate made of a scan.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanVerdict {
    /// The summary to record on the Release.
    pub summary: ScanSummary,
    /// `None` when the candidate may continue; otherwise the reason and message of the rejection.
    pub rejection: Option<(&'static str, String)>,
}

/// Applies `gate` to `findings` at `now`. `fixes` are the ids the Release was started to fix: if
/// the candidate still carries one of them the rebuild did not help, and the rejection says so
/// (rescans start no second Release for the same findings on the same digest).
pub fn verdict(
    findings: &[Finding],
    gate: &GatePolicy,
    scanner: Option<String>,
    produced_at: Option<Timestamp>,
    database: Option<String>,
    fixes: &[String],
    now: Timestamp,
) -> ScanVerdict {
    let decision = gate::evaluate(findings, gate, now);
    let summary = ScanSummary {
        scanner,
        critical: decision.counts[0],
        high: decision.counts[1],
        medium: decision.counts[2],
        low: decision.counts[3],
        blocking: i32::try_from(decision.blocking.len()).unwrap_or(i32::MAX),
        blocking_ids: decision.blocking.iter().take(LIST_MAX).cloned().collect(),
        expired_exceptions: decision.expired.iter().take(LIST_MAX).cloned().collect(),
        top: top_findings(findings, &decision),
        inherited: decision.inherited.iter().take(LIST_MAX).cloned().collect(),
        produced_at: produced_at.map(Time),
        database,
        finished_at: Some(Time(now)),
    };
    if decision.passes() {
        return ScanVerdict { summary, rejection: None };
    }
    let mut message = format!("{} blocking finding(s): {}", decision.blocking.len(), decision.blocking.join(", "));
    if !decision.expired.is_empty() {
        message.push_str(&format!(
            "; the exception of {} expired, so it blocks again (renew it in spec.scan.exceptions or fix it)",
            decision.expired.join(", ")
        ));
    }
    let carried = rescan::still_carried(fixes, &decision.blocking);
    let rejection = if carried.is_empty() {
        ("BlockingVulnerabilities", message)
    } else {
        let message = format!(
            "the rebuilt image still carries {}, which this Release was started to fix: rebuilding onto the \
             current base does not fix it, so no new Release is started for it; a newer base image or an \
             application change must fix it. {message}",
            carried.join(", ")
        );
        ("FixNotEffective", message)
    };
    ScanVerdict { summary, rejection: Some(rejection) }
}

/// The findings worth showing on the Release: blocking ones first, then by severity, at most 10.
fn top_findings(findings: &[Finding], decision: &GateDecision) -> Vec<TopFinding> {
    let rank = |f: &Finding| (!decision.blocking.contains(&f.id), f.severity, f.id.clone());
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| rank(f));
    sorted.dedup_by_key(|f| (f.id.clone(), f.package.clone()));
    sorted
        .into_iter()
        .take(TOP_MAX)
        .map(|f| TopFinding {
            id: f.id.clone(),
            severity: format!("{:?}", f.severity).to_uppercase(),
            package: f.package.clone(),
            installed_version: f.installed_version.clone(),
            fixed_version: f.fixed_version.clone(),
            blocking: decision.blocking.contains(&f.id),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use tidegate_api::image_policy::Severity;

    use super::*;

    fn gate() -> GatePolicy {
        GatePolicy {
            block: vec![Severity::Critical, Severity::High],
            only_fixable: false,
            exceptions: Vec::new(),
            production: None,
        }
    }

    #[test]
    fn blocking_findings_lead_the_summary_and_name_the_rejection() {
        let now = Timestamp::from_second(1_000).unwrap();
        let mut findings: Vec<Finding> =
            (0..12).map(|i| Finding::new(format!("CVE-L{i:02}"), Severity::Low, true)).collect();
        findings.push(Finding::new("CVE-H", Severity::High, true));
        let verdict = verdict(&findings, &gate(), Some("trivy".into()), None, None, &[], now);
        assert_eq!(verdict.summary.top.len(), 10);
        assert_eq!(verdict.summary.top[0].id, "CVE-H");
        assert!(verdict.summary.top[0].blocking && !verdict.summary.top[1].blocking);
        assert_eq!((verdict.summary.high, verdict.summary.low, verdict.summary.blocking), (1, 12, 1));
        assert_eq!(verdict.rejection, Some(("BlockingVulnerabilities", "1 blocking finding(s): CVE-H".to_string())));
    }

    #[test]
    fn a_fix_that_did_not_take_is_named() {
        let now = Timestamp::from_second(1_000).unwrap();
        let findings = [Finding::new("CVE-1", Severity::Critical, true)];
        let (reason, message) =
            verdict(&findings, &gate(), None, None, None, &["CVE-1".into()], now).rejection.expect("rejected");
        assert_eq!(reason, "FixNotEffective");
        assert!(message.starts_with("the rebuilt image still carries CVE-1"), "{message}");
        assert!(verdict(&[], &gate(), None, None, None, &["CVE-1".into()], now).rejection.is_none());
    }
}
