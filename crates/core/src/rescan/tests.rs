use std::time::Duration;

use proptest::prelude::*;
use tidegate_api::image_policy::Severity;

use super::*;
use crate::gate::Exception;

fn digest(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64)).parse().expect("digest")
}

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).expect("time")
}

fn finding(id: &str, severity: Severity, fixed: Option<&str>) -> Finding {
    Finding {
        package: "openssl".into(),
        installed_version: "3.1.0-r0".into(),
        fixed_version: fixed.map(str::to_string),
        ..Finding::new(id, severity, fixed.is_some())
    }
}

fn gate() -> GatePolicy {
    GatePolicy {
        block: vec![Severity::Critical, Severity::High],
        only_fixable: true,
        exceptions: vec![],
        production: None,
    }
}

#[test]
fn a_rescan_is_due_for_a_new_digest_a_new_database_or_the_interval() {
    let day = Duration::from_secs(86_400);
    assert_eq!(due(None, &digest('a'), None, day, at(0)), Some("never scanned"));
    let last = LastScan { digest: digest('a').to_string(), at: at(0), database: Some("db-1".into()) };
    assert_eq!(due(Some(&last), &digest('a'), Some("db-1"), day, at(3600)), None);
    assert_eq!(due(Some(&last), &digest('b'), Some("db-1"), day, at(3600)), Some("production runs a new digest"));
    assert_eq!(
        due(Some(&last), &digest('a'), Some("db-2"), day, at(3600)),
        Some("the vulnerability database was updated")
    );
    // A scanner that cannot say which data it uses never counts as an update.
    assert_eq!(due(Some(&last), &digest('a'), None, day, at(3600)), None);
    assert_eq!(due(Some(&last), &digest('a'), Some("db-1"), day, at(86_400)), Some("the rescan interval passed"));
    // A clock that went backwards rescans rather than waiting for a time that may never come.
    assert_eq!(due(Some(&last), &digest('a'), Some("db-1"), day, at(-10)), Some("the rescan interval passed"));
}

#[test]
fn fixable_blocking_findings_start_one_release_and_unfixed_ones_are_reported() {
    let findings = vec![
        finding("CVE-2023-5678", Severity::High, Some("3.1.4-r0")),
        finding("CVE-2024-0727", Severity::Critical, None),
        finding("CVE-2024-1111", Severity::Medium, Some("3.1.5-r0")),
    ];
    let decision = decide("shop-app", &digest('a'), &findings, &gate(), at(0));
    assert_eq!(decision.fixable.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["CVE-2023-5678"]);
    assert_eq!(decision.unfixed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["CVE-2024-0727"]);
    let release = decision.release.clone().expect("a release");
    assert_eq!(release.ids, ["CVE-2023-5678"]);
    assert!(release.name.starts_with("shop-app-vuln-"), "{}", release.name);
    let text = describe(&decision);
    assert!(text.contains("CVE-2023-5678 (openssl 3.1.0-r0)") && text.contains("no fix yet"), "{text}");

    // The same findings on the same digest: the same name, so no second Release.
    let again = decide("shop-app", &digest('a'), &findings, &gate(), at(999));
    assert_eq!(again.release, decision.release);
    // Another digest, or another set of ids: another Release.
    assert_ne!(decide("shop-app", &digest('b'), &findings, &gate(), at(0)).release, decision.release);
    let more = [findings.clone(), vec![finding("CVE-2025-0001", Severity::High, Some("3.1.6-r0"))]].concat();
    assert_ne!(decide("shop-app", &digest('a'), &more, &gate(), at(0)).release, decision.release);
}

#[test]
fn exceptions_hold_until_they_expire_and_nothing_blocking_starts_nothing() {
    let findings = vec![finding("CVE-2023-5678", Severity::High, Some("3.1.4-r0"))];
    let excepted =
        GatePolicy { exceptions: vec![Exception { id: "CVE-2023-5678".into(), expires: at(100) }], ..gate() };
    let decision = decide("p", &digest('a'), &findings, &excepted, at(0));
    assert!(decision.release.is_none() && decision.fixable.is_empty());
    assert_eq!(describe(&decision), "no blocking findings in production");
    assert!(decide("p", &digest('a'), &findings, &excepted, at(100)).release.is_some(), "expired");
    let none = decide("p", &digest('a'), &[finding("CVE-1", Severity::Low, Some("2"))], &gate(), at(0));
    assert!(none.release.is_none() && none.unfixed.is_empty());
}

#[test]
fn a_rebuild_that_still_carries_the_finding_says_which() {
    let reason = vec!["CVE-2023-5678".to_string(), "CVE-2024-9999".to_string()];
    assert_eq!(still_carried(&reason, &["CVE-2023-5678".into(), "CVE-1".into()]), ["CVE-2023-5678"]);
    assert!(still_carried(&reason, &[]).is_empty());
}

fn severity() -> impl Strategy<Value = Severity> {
    prop_oneof![
        Just(Severity::Critical),
        Just(Severity::High),
        Just(Severity::Medium),
        Just(Severity::Low),
        Just(Severity::Unknown)
    ]
}

proptest! {
    /// Whatever the findings: a Release is started exactly when a blocking finding has a fix, it
    /// names exactly those ids, its name depends only on the digest and the ids (never on order
    /// or time), and every blocking-severity finding is reported as fixable or unfixed.
    #[test]
    fn releases_follow_fixable_blocking_findings(
        raw in proptest::collection::vec((0u8..6, severity(), any::<bool>()), 0..12),
        shift in 0i64..1_000_000,
    ) {
        let findings: Vec<Finding> = raw
            .iter()
            .map(|(n, s, fix)| finding(&format!("CVE-{n}"), *s, fix.then_some("9")))
            .collect();
        let policy = gate();
        let decision = decide("p", &digest('a'), &findings, &policy, at(0));
        let mut reversed = findings.clone();
        reversed.reverse();
        let later = decide("p", &digest('a'), &reversed, &policy, at(shift));
        prop_assert_eq!(&later.release, &decision.release);
        let blocking = |f: &Finding| policy.block.contains(&f.severity);
        let mut expected: Vec<String> = findings.iter().filter(|f| blocking(f) && f.fixable).map(|f| f.id.clone()).collect();
        expected.sort();
        expected.dedup();
        match &decision.release {
            Some(release) => prop_assert_eq!(&release.ids, &expected),
            None => prop_assert!(expected.is_empty()),
        }
        for f in findings.iter().filter(|f| blocking(f)) {
            // A fixable finding is listed as fixable; an unfixed one as unfixed, unless the same
            // package also reports it with a fix.
            let listed = if f.fixable { &decision.fixable } else { &decision.unfixed };
            prop_assert!(listed.iter().any(|g| g.id == f.id) || decision.fixable.iter().any(|g| g.id == f.id), "{} missing", f.id);
        }
    }
}
