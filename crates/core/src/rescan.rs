//! A CVE in what runs: when the production digest is due for a rescan, and what a rescan's
//! findings start.
//!
//! A blocking finding (severity in `spec.scan.blockSeverities`, no live exception) that has a
//! fixed version starts one Release of type `VulnerabilitiesFound` naming the ids. Its name is
//! derived from the production digest and those ids, so the same findings on the same digest never
//! start a second Release: if the rebuild still carries them, that Release is rejected and says
//! so, and nothing loops. A blocking finding without a fix starts nothing and is reported as
//! unfixed.

use std::time::Duration;

use jiff::Timestamp;

use crate::Digest;
use crate::gate::{self, Finding, GatePolicy};
use crate::names;

/// The last rescan, as the policy's status records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastScan {
    /// The digest scanned.
    pub digest: String,
    /// When.
    pub at: Timestamp,
    /// The vulnerability data used, when known.
    pub database: Option<String>,
}

/// Why a rescan is due now, or `None` when it is not.
pub fn due(
    last: Option<&LastScan>,
    digest: &Digest,
    database: Option<&str>,
    interval: Duration,
    now: Timestamp,
) -> Option<&'static str> {
    let Some(last) = last else { return Some("never scanned") };
    if last.digest != digest.as_str() {
        return Some("production runs a new digest");
    }
    if database.is_some() && database != last.database.as_deref() {
        return Some("the vulnerability database was updated");
    }
    let elapsed = now.duration_since(last.at);
    (elapsed.is_negative() || elapsed.unsigned_abs() >= interval).then_some("the rescan interval passed")
}

/// What a rescan of the production digest found, and what it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RescanDecision {
    /// Blocking findings with a fix, sorted by severity then id.
    pub fixable: Vec<Finding>,
    /// Blocking-severity findings without a fix, sorted by severity then id.
    pub unfixed: Vec<Finding>,
    /// The Release to start, when something is fixable.
    pub release: Option<FixRelease>,
}

/// A Release that rebuilds production to fix findings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FixRelease {
    /// Its deterministic name.
    pub name: String,
    /// The ids it fixes, sorted and unique.
    pub ids: Vec<String>,
}

/// Decides what the findings of `digest` (the digest production runs) start, for `policy`.
/// `onlyFixable` is not applied here: a finding without a fix is still reported, as unfixed.
pub fn decide(
    policy: &str,
    digest: &Digest,
    findings: &[Finding],
    gate: &GatePolicy,
    now: Timestamp,
) -> RescanDecision {
    let all = GatePolicy { only_fixable: false, production: None, ..gate.clone() };
    // Each finding on its own: the same id can block in one package and not in another.
    let blocks = |f: &Finding| !gate::evaluate(std::slice::from_ref(f), &all, now).passes();
    let mut blocking: Vec<Finding> = findings.iter().filter(|f| blocks(f)).cloned().collect();
    // Sorted so that the result never depends on the scanner's order; of duplicates (one id in
    // one package), the fixable one stays.
    blocking.sort_by(|a, b| (&a.id, &a.package, !a.fixable).cmp(&(&b.id, &b.package, !b.fixable)));
    blocking.dedup_by(|a, b| a.id == b.id && a.package == b.package);
    blocking.sort_by(|a, b| (a.severity, &a.id, &a.package).cmp(&(b.severity, &b.id, &b.package)));
    let (fixable, unfixed): (Vec<Finding>, Vec<Finding>) = blocking.into_iter().partition(|f| f.fixable);
    let mut ids: Vec<String> = fixable.iter().map(|f| f.id.clone()).collect();
    ids.sort();
    ids.dedup();
    let release = (!ids.is_empty())
        .then(|| FixRelease { name: names::release_name(policy, "vuln", &format!("{digest} {}", ids.join(","))), ids });
    RescanDecision { fixable, unfixed, release }
}

/// The ids a Release of type `VulnerabilitiesFound` was started for that its candidate still
/// carries (as blocking findings): the rebuild did not fix them.
pub fn still_carried(reason_ids: &[String], blocking: &[String]) -> Vec<String> {
    let mut carried: Vec<String> = reason_ids.iter().filter(|id| blocking.contains(id)).cloned().collect();
    carried.sort();
    carried.dedup();
    carried
}

/// One line for people: what the rescan found.
pub fn describe(decision: &RescanDecision) -> String {
    let list = |findings: &[Finding]| {
        findings
            .iter()
            .take(5)
            .map(|f| match f.package.is_empty() {
                true => f.id.clone(),
                false => format!("{} ({} {})", f.id, f.package, f.installed_version),
            })
            .collect::<Vec<_>>()
            .join(", ")
            + if findings.len() > 5 { ", …" } else { "" }
    };
    let mut parts = Vec::new();
    if !decision.fixable.is_empty() {
        let started = match &decision.release {
            Some(release) => format!("; release {} fixes them", release.name),
            None => String::new(),
        };
        parts.push(format!(
            "{} fixable blocking finding(s) in production: {}{started}",
            decision.fixable.len(),
            list(&decision.fixable)
        ));
    }
    if !decision.unfixed.is_empty() {
        parts.push(format!(
            "{} blocking finding(s) with no fix yet: {} (nothing to rebuild for until a fix is published)",
            decision.unfixed.len(),
            list(&decision.unfixed)
        ));
    }
    if parts.is_empty() { "no blocking findings in production".to_string() } else { parts.join("; ") }
}

#[cfg(test)]
mod tests;
