//! Findings from unsigned Trivy JSON reports (SchemaVersion 2) stored in ConfigMaps: the
//! `configMapReport` scanner of `spec.scan.scanner`, and the report checks every Trivy report
//! goes through.
//!
//! Anyone who may write ConfigMaps in the namespace could pass the gate with such a report, so
//! they count only where the namespace's deployer holds `trust` on
//! `unsignedscanreports.tidegate.dev` in the policy's namespace ([`OPT_IN_RESOURCE`]; the shipped
//! ClusterRole `tidegate-unsigned-scan-reports` grants it), checked with a SubjectAccessReview
//! before every read. Without that grant the Release stops, naming the grant.
//!
//! A ConfigMap in the policy's namespace labelled `tidegate.dev/scan-report=true`, annotated
//! `tidegate.dev/digest: sha256:…` and holding the report under `report.json` is the scan result
//! of that digest (CI runs `trivy image --format json repo@sha256:…` and uploads the report).
//! Without a report the scan is not finished, and the Release waits: a missing scan never passes
//! the gate.
//!
//! A report counts only when it is a Trivy report of exactly the candidate: `SchemaVersion` 2,
//! `ArtifactType` `container_image` (when present), `ArtifactName` the candidate `repo@sha256:…`
//! (or the candidate listed in `Metadata.RepoDigests`, for a scan by tag), and `Results` present.
//! Anything else — `{}` included — fails the Release with the reason rather than passing as clean.
//! A report whose `CreatedAt` is older than [`MAX_REPORT_AGE`] is stale: it does not count, and
//! the Release keeps waiting in `Scanning` for a fresh one.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use tidegate_api::image_policy::Severity;
use tidegate_core::Digest;
use tidegate_core::gate::Finding;

use crate::{ProviderError, Result, ScanReport, ScanRequest, Scanner};

/// Label that marks a scan report ConfigMap.
pub const LABEL_REPORT: &str = "tidegate.dev/scan-report";
/// Annotation naming the digest a report is for.
pub const ANNOTATION_DIGEST: &str = "tidegate.dev/digest";
/// The key of the report in the ConfigMap.
pub const REPORT_KEY: &str = "report.json";
/// The default oldest a report may be (by its `CreatedAt`) and still count: vulnerability databases move
/// daily, so an older report says little about the image today.
pub const MAX_REPORT_AGE: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);
/// How far in the future a report's `CreatedAt` may be (clocks of CI and controller differ).
pub const MAX_CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_mins(5);

/// The resource (group `tidegate.dev`, verb [`OPT_IN_VERB`]) a namespace's deployer must hold in
/// the policy's namespace for unsigned ConfigMap reports to count there.
pub const OPT_IN_RESOURCE: &str = "unsignedscanreports";
/// The verb of the opt-in.
pub const OPT_IN_VERB: &str = "trust";
/// The ClusterRole that grants the opt-in, bound to the deployer in the policy's namespace.
pub const OPT_IN_CLUSTER_ROLE: &str = "tidegate-unsigned-scan-reports";

/// Reads reports from ConfigMaps.
#[derive(Clone)]
pub struct ReportScanner {
    reach: std::sync::Arc<crate::authz::Reach>,
    access: crate::authz::Access,
}

impl ReportScanner {
    /// A scanner reading the policy namespace's ConfigMaps as that namespace's deployer (the
    /// controller itself reads no ConfigMaps), where the opt-in is granted (asked through `access`).
    pub fn new(reach: std::sync::Arc<crate::authz::Reach>, access: crate::authz::Access) -> Self {
        Self { reach, access }
    }

    /// `Ok` when unsigned reports count in `namespace`, else why not.
    async fn allowed(&self, namespace: &str) -> Result<()> {
        let deployer = crate::authz::Subject {
            user: crate::authz::deployer_user(namespace),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        };
        match self.access.may(&deployer, OPT_IN_VERB, "tidegate.dev", OPT_IN_RESOURCE, namespace, None).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(ProviderError::NotAllowed(format!(
                "spec.scan.scanner is configMapReport, but unsigned scan reports are not allowed in namespace \
                 {namespace}: anyone who may write ConfigMaps there could pass the gate with one. Use trivy or a \
                 signed trivyReport, or have a namespace administrator accept that risk by binding ClusterRole \
                 {OPT_IN_CLUSTER_ROLE} to ServiceAccount {namespace}/{} in {namespace}",
                crate::authz::DEPLOYER_SERVICE_ACCOUNT
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Scanner for ReportScanner {
    async fn scan(&self, request: &ScanRequest<'_>) -> Result<Option<ScanReport>> {
        let (namespace, image, digest) = (request.namespace, request.image, request.digest);
        self.allowed(namespace).await?;
        let api: Api<ConfigMap> = Api::namespaced(self.reach.client(namespace)?, namespace);
        let reports = api.list(&ListParams::default().labels(&format!("{LABEL_REPORT}=true"))).await?;
        let mut reports: Vec<ConfigMap> = reports
            .items
            .into_iter()
            .filter(|cm| {
                cm.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_DIGEST)).map(String::as_str)
                    == Some(digest.as_str())
            })
            .collect();
        reports.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let verdicts = reports
            .iter()
            .map(|cm| {
                let name = cm.metadata.name.clone().unwrap_or_default();
                let verdict = match cm.data.as_ref().and_then(|d| d.get(REPORT_KEY)) {
                    Some(text) => check_report(text, image, digest, request.now, request.max_age),
                    None => Err(Unusable::Invalid(format!("it has no {REPORT_KEY}"))),
                };
                (name, verdict)
            })
            .collect();
        decide(namespace, digest, verdicts)
    }
}

/// What the reports of one digest amount to: the findings of the newest usable report; else a
/// permanent error naming every invalid report; else (only stale reports, or none) nothing yet.
fn decide(
    namespace: &str,
    digest: &Digest,
    verdicts: Vec<(String, std::result::Result<Checked, Unusable>)>,
) -> Result<Option<ScanReport>> {
    let mut usable: Vec<Checked> = Vec::new();
    let (mut invalid, mut stale) = (Vec::new(), Vec::new());
    for (name, verdict) in verdicts {
        match verdict {
            Ok(checked) => usable.push(checked),
            Err(Unusable::Invalid(why)) => invalid.push(format!("ConfigMap {namespace}/{name}: {why}")),
            Err(Unusable::Stale(why)) => stale.push(format!("ConfigMap {namespace}/{name}: {why}")),
        }
    }
    if let Some(newest) = usable.into_iter().max_by_key(|c| c.created_at) {
        return Ok(Some(ScanReport {
            findings: newest.findings,
            produced_at: Some(newest.created_at),
            database: None,
        }));
    }
    if !invalid.is_empty() {
        return Err(ProviderError::Permanent(format!(
            "no usable scan report of {digest}: {}",
            invalid.into_iter().chain(stale).collect::<Vec<_>>().join("; ")
        )));
    }
    for why in &stale {
        tracing::warn!(%digest, "scan report does not count, waiting for a fresh one: {why}");
    }
    Ok(None)
}

/// A report that counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    /// The report's `CreatedAt`.
    pub created_at: jiff::Timestamp,
    /// Its findings.
    pub findings: Vec<Finding>,
}

/// Why a report does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// It is not a Trivy report of the candidate; a new report of the digest is needed.
    Invalid(String),
    /// It was a report of the candidate, but is older than the policy allows.
    Stale(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(why) | Self::Stale(why) => f.write_str(why),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    artifact_name: Option<String>,
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    metadata: Option<ReportMetadata>,
    #[serde(default)]
    results: Option<Vec<ReportResult>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReportMetadata {
    #[serde(default)]
    repo_digests: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReportResult {
    #[serde(default)]
    vulnerabilities: Option<Vec<Vulnerability>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    #[serde(default, rename = "VendorIDs")]
    vendor_ids: Vec<String>,
    #[serde(default)]
    pkg_name: String,
    #[serde(default)]
    installed_version: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    fixed_version: String,
    #[serde(default)]
    data_source: Option<DataSource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataSource {
    #[serde(default, rename = "ID")]
    id: String,
}

/// A severity as scanners write it (`CRITICAL`, `High`, …).
pub fn severity(text: &str) -> Severity {
    match text.to_ascii_uppercase().as_str() {
        "CRITICAL" => Severity::Critical,
        "HIGH" => Severity::High,
        "MEDIUM" => Severity::Medium,
        "LOW" => Severity::Low,
        _ => Severity::Unknown,
    }
}

fn parse(text: &str) -> std::result::Result<Report, String> {
    let report: Report =
        serde_json::from_str(text).map_err(|e| format!("{REPORT_KEY} is not a Trivy JSON report: {e}"))?;
    match report.schema_version {
        Some(2) => {}
        Some(other) => {
            return Err(format!("{REPORT_KEY} has SchemaVersion {other}; only Trivy's SchemaVersion 2 is read"));
        }
        None => return Err(format!("{REPORT_KEY} has no SchemaVersion: it is not a Trivy JSON report")),
    }
    if report.results.is_none() {
        return Err(format!(
            "{REPORT_KEY} has no Results: Trivy found nothing it could scan, which is not the same as no vulnerabilities"
        ));
    }
    Ok(report)
}

fn findings(report: Report) -> Vec<Finding> {
    report
        .results
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.vulnerabilities.unwrap_or_default())
        .map(|v| Finding {
            severity: severity(&v.severity),
            fixable: !v.fixed_version.is_empty(),
            aliases: v.vendor_ids.into_iter().filter(|a| *a != v.vulnerability_id).collect(),
            package: v.pkg_name,
            installed_version: v.installed_version,
            fixed_version: Some(v.fixed_version).filter(|f| !f.is_empty()),
            source: match v.data_source {
                Some(ds) if !ds.id.is_empty() => format!("trivy ({})", ds.id),
                _ => "trivy".to_string(),
            },
            id: v.vulnerability_id,
        })
        .collect()
}

/// Findings of a Trivy JSON report (SchemaVersion 2, with `Results`), without checking which image
/// it is of or when it was made (see [`check_report`]).
pub fn parse_trivy(text: &str) -> std::result::Result<Vec<Finding>, String> {
    parse(text).map(findings)
}

/// Whether `text` is a Trivy report of exactly `image` (`repo@sha256:…` of `digest`), made at
/// most `max_age` before `now`, and if so its findings.
pub fn check_report(
    text: &str,
    image: &str,
    digest: &Digest,
    now: jiff::Timestamp,
    max_age: jiff::SignedDuration,
) -> std::result::Result<Checked, Unusable> {
    let report = parse(text).map_err(Unusable::Invalid)?;
    if let Some(kind) = report.artifact_type.as_deref().filter(|k| *k != "container_image") {
        return Err(Unusable::Invalid(format!(
            "{REPORT_KEY} is a report of a {kind}, not of a container image (run trivy image {image})"
        )));
    }
    let Some(name) = report.artifact_name.as_deref().filter(|n| !n.is_empty()) else {
        return Err(Unusable::Invalid(format!("{REPORT_KEY} has no ArtifactName, so it cannot be matched to {image}")));
    };
    let by_digest =
        report.metadata.as_ref().and_then(|m| m.repo_digests.as_ref()).is_some_and(|d| d.iter().any(|d| d == image));
    if name != image && !by_digest {
        return Err(Unusable::Invalid(format!(
            "{REPORT_KEY} is a report of {name}, not of {image} (its ArtifactName and Metadata.RepoDigests do not name the candidate {digest})"
        )));
    }
    let Some(created) = report.created_at.as_deref() else {
        return Err(Unusable::Invalid(format!("{REPORT_KEY} has no CreatedAt, so its age is unknown")));
    };
    let created_at: jiff::Timestamp =
        created.parse().map_err(|e| Unusable::Invalid(format!("{REPORT_KEY} CreatedAt {created:?}: {e}")))?;
    let age = now.duration_since(created_at);
    if age > max_age {
        return Err(Unusable::Stale(format!(
            "the report was created at {created_at}, more than {} ago (spec.scan.maxReportAge); scan {image} again and publish the new report",
            age_text(max_age)
        )));
    }
    if -age > MAX_CLOCK_SKEW {
        return Err(Unusable::Invalid(format!("{REPORT_KEY} CreatedAt {created_at} is in the future (now {now})")));
    }
    Ok(Checked { created_at, findings: findings(report) })
}

fn age_text(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs();
    if secs % 3600 == 0 { format!("{}h", secs / 3600) } else { format!("{}m", secs / 60) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";
    const IMAGE: &str =
        "registry.example.com/shop/app@sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";

    fn digest() -> Digest {
        DIGEST.parse().expect("digest")
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("timestamp")
    }

    /// A report of IMAGE created at 2025-06-01T12:00:00Z with `results`.
    fn report(results: &str) -> String {
        format!(
            r#"{{"SchemaVersion":2,"CreatedAt":"2025-06-01T12:00:00.000000005Z","ArtifactName":"{IMAGE}","ArtifactType":"container_image","Results":{results}}}"#
        )
    }

    fn check(text: &str, now: &str) -> std::result::Result<Checked, Unusable> {
        check_report(text, IMAGE, &digest(), at(now), MAX_REPORT_AGE)
    }

    fn invalid(text: &str) -> String {
        match check(text, "2025-06-01T13:00:00Z") {
            Err(Unusable::Invalid(why)) => why,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_shared_trivy_fixtures() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/scanners/trivy");
        let mut total = 0;
        for entry in std::fs::read_dir(&dir).expect("fixtures present") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let findings = parse_trivy(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            total += findings.len();
            assert!(findings.iter().all(|f| !f.id.is_empty()));
            // Every finding names its package and installed version, and a fix when it has one.
            for f in &findings {
                assert!(!f.package.is_empty() && !f.installed_version.is_empty(), "{}: {f:?}", path.display());
                assert_eq!(f.fixable, f.fixed_version.is_some(), "{f:?}");
                assert!(f.source.starts_with("trivy"), "{f:?}");
            }
            // A real report names its artifact: these are of tarballs, so they do not count for
            // an image in a registry.
            let why = match check_report(&text, IMAGE, &digest(), at("2021-08-25T13:00:00Z"), MAX_REPORT_AGE) {
                Err(Unusable::Invalid(why)) => why,
                other => panic!("{}: {other:?}", path.display()),
            };
            assert!(why.contains("testdata/fixtures/images/"), "{why}");
        }
        assert!(total > 0, "the fixtures hold vulnerabilities");
    }

    #[test]
    fn severity_and_fixability() {
        let checked = check(
            &report(
                r#"[{"Target":"app","Vulnerabilities":[
                {"VulnerabilityID":"CVE-1","Severity":"CRITICAL","FixedVersion":"1.2"},
                {"VulnerabilityID":"CVE-2","Severity":"LOW"}]},{"Target":"os"}]"#,
            ),
            "2025-06-01T13:00:00Z",
        )
        .expect("usable");
        assert_eq!(checked.created_at, at("2025-06-01T12:00:00.000000005Z"));
        let (first, second) = (&checked.findings[0], &checked.findings[1]);
        assert_eq!((first.id.as_str(), first.severity, first.fixable), ("CVE-1", Severity::Critical, true));
        assert_eq!(first.fixed_version.as_deref(), Some("1.2"));
        assert_eq!((second.id.as_str(), second.severity, second.fixable), ("CVE-2", Severity::Low, false));
        assert_eq!(second.fixed_version, None);
        assert_eq!(checked.findings.len(), 2);
    }

    #[test]
    fn a_clean_report_of_the_candidate_counts() {
        let checked =
            check(&report(r#"[{"Target":"app","Class":"os-pkgs"}]"#), "2025-06-01T12:30:00Z").expect("usable");
        assert!(checked.findings.is_empty());
        // Scanned by tag: the candidate is among the RepoDigests.
        let by_tag = format!(
            r#"{{"SchemaVersion":2,"CreatedAt":"2025-06-01T12:00:00Z","ArtifactName":"registry.example.com/shop/app:1.0","Metadata":{{"RepoDigests":["{IMAGE}"]}},"Results":[]}}"#
        );
        assert!(check(&by_tag, "2025-06-01T12:30:00Z").is_ok());
    }

    #[test]
    fn an_empty_object_is_not_clean() {
        assert!(parse_trivy("{}").is_err());
        assert!(invalid("{}").contains("no SchemaVersion"), "{}", invalid("{}"));
        assert!(invalid("not json").contains("not a Trivy JSON report"));
        assert!(invalid("[]").contains("not a Trivy JSON report"));
    }

    #[test]
    fn structure_is_required() {
        let v1 = format!(
            r#"{{"SchemaVersion":1,"CreatedAt":"2025-06-01T12:00:00Z","ArtifactName":"{IMAGE}","Results":[]}}"#
        );
        assert!(invalid(&v1).contains("SchemaVersion 1"));
        let no_results =
            format!(r#"{{"SchemaVersion":2,"CreatedAt":"2025-06-01T12:00:00Z","ArtifactName":"{IMAGE}"}}"#);
        assert!(invalid(&no_results).contains("no Results"));
        let filesystem = report("[]").replace("container_image", "filesystem");
        assert!(invalid(&filesystem).contains("not of a container image"));
    }

    #[test]
    fn the_report_must_name_the_candidate() {
        let unnamed = r#"{"SchemaVersion":2,"CreatedAt":"2025-06-01T12:00:00Z","Results":[]}"#;
        assert!(invalid(unnamed).contains("no ArtifactName"));
        let other_digest = report("[]").replace("sha256:ce1b", "sha256:0000");
        assert!(invalid(&other_digest).contains("not of registry.example.com/shop/app@sha256:ce1b"));
        let other_repo = report("[]").replace("shop/app", "shop/other");
        assert!(invalid(&other_repo).contains("a report of registry.example.com/shop/other@"));
        let by_tag_only = report("[]").replace(&format!("@{DIGEST}"), ":1.0");
        assert!(invalid(&by_tag_only).contains("do not name the candidate"));
    }

    #[test]
    fn reports_go_stale() {
        let text = report("[]");
        assert!(check(&text, "2025-06-02T12:00:00Z").is_ok(), "exactly 24h (minus a few ns) still counts");
        match check(&text, "2025-06-02T12:00:01Z") {
            Err(Unusable::Stale(why)) => {
                assert!(why.contains("more than 24h ago"), "{why}");
                assert!(why.contains("scan registry.example.com/shop/app@sha256:ce1b"), "{why}");
            }
            other => panic!("expected stale, got {other:?}"),
        }
        let undated = report("[]").replace(r#""CreatedAt":"2025-06-01T12:00:00.000000005Z","#, "");
        assert!(invalid(&undated).contains("no CreatedAt"));
        let garbled = report("[]").replace("2025-06-01T12:00:00.000000005Z", "yesterday");
        assert!(invalid(&garbled).contains("CreatedAt \"yesterday\""));
        let future = report("[]").replace("2025-06-01T12", "2025-06-01T14");
        assert!(invalid(&future).contains("in the future"));
    }

    #[test]
    fn decide_prefers_the_newest_usable_report_and_otherwise_fails_or_waits() {
        let d = digest();
        let usable = |id: &str, created: &str| {
            Ok(Checked { created_at: at(created), findings: vec![Finding::new(id, Severity::High, true)] })
        };
        let stale = || Err(Unusable::Stale("old".into()));
        let invalid = || Err(Unusable::Invalid("not a report".into()));

        let got = decide(
            "ns",
            &d,
            vec![
                ("a".into(), usable("OLD", "2025-06-01T10:00:00Z")),
                ("b".into(), invalid()),
                ("c".into(), usable("NEW", "2025-06-01T11:00:00Z")),
            ],
        )
        .expect("usable");
        assert_eq!(got.expect("findings").findings[0].id, "NEW");

        assert_eq!(decide("ns", &d, vec![]).expect("nothing yet"), None);
        assert_eq!(decide("ns", &d, vec![("a".into(), stale())]).expect("stale only: wait"), None);

        let err = decide("ns", &d, vec![("a".into(), stale()), ("b".into(), invalid())]).expect_err("invalid fails");
        assert!(matches!(err, ProviderError::Permanent(_)));
        let message = err.to_string();
        assert!(message.contains("no usable scan report of sha256:ce1b"), "{message}");
        assert!(message.contains("ConfigMap ns/b: not a report"), "{message}");
        assert!(message.contains("ConfigMap ns/a: old"), "{message}");
    }
}
