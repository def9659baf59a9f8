//! Trivy Operator `VulnerabilityReport`s (`aquasecurity.github.io/v1alpha1`), read into the
//! findings model: a report is of one container image (`report.artifact`: repository, tag and,
//! in recent versions, digest) and was produced at `report.updateTimestamp`.

use serde::Deserialize;
use tidegate_core::gate::Finding;

use crate::report::severity;

/// API group and version of the Trivy Operator's reports.
pub const API_VERSION: &str = "aquasecurity.github.io/v1alpha1";

/// What a `VulnerabilityReport` says.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorReport {
    /// `registry.server/artifact.repository`.
    pub repository: String,
    /// The image digest the report is of, when the operator recorded it.
    pub digest: Option<String>,
    /// When the scan ran.
    pub produced_at: Option<jiff::Timestamp>,
    /// The findings.
    pub findings: Vec<Finding>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Object {
    api_version: String,
    kind: String,
    report: Report,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    artifact: Artifact,
    #[serde(default)]
    registry: Option<Registry>,
    #[serde(default)]
    scanner: Option<ScannerInfo>,
    #[serde(default)]
    update_timestamp: Option<String>,
    #[serde(default)]
    vulnerabilities: Vec<Vulnerability>,
}

#[derive(Deserialize)]
struct Artifact {
    repository: String,
    #[serde(default)]
    digest: Option<String>,
}

#[derive(Deserialize)]
struct Registry {
    #[serde(default)]
    server: String,
}

#[derive(Deserialize)]
struct ScannerInfo {
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vulnerability {
    #[serde(rename = "vulnerabilityID")]
    vulnerability_id: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    installed_version: String,
    #[serde(default)]
    fixed_version: String,
    #[serde(default)]
    severity: String,
}

/// Reads a `VulnerabilityReport` (as JSON, or YAML converted to a JSON value).
pub fn parse(value: serde_json::Value) -> Result<OperatorReport, String> {
    let object: Object = serde_json::from_value(value).map_err(|e| format!("not a VulnerabilityReport: {e}"))?;
    if object.api_version != API_VERSION || object.kind != "VulnerabilityReport" {
        return Err(format!("{} {} is not a {API_VERSION} VulnerabilityReport", object.api_version, object.kind));
    }
    let report = object.report;
    let server = report.registry.map(|r| r.server).filter(|s| !s.is_empty());
    let repository = match server {
        Some(server) => format!("{server}/{}", report.artifact.repository),
        None => report.artifact.repository,
    };
    let source = match report.scanner {
        Some(s) if !s.name.is_empty() => format!("trivy-operator ({} {})", s.name, s.version).replace(" )", ")"),
        _ => "trivy-operator".to_string(),
    };
    let produced_at = match report.update_timestamp {
        Some(t) => Some(t.parse().map_err(|e| format!("report.updateTimestamp {t:?}: {e}"))?),
        None => None,
    };
    let findings = report
        .vulnerabilities
        .into_iter()
        .map(|v| Finding {
            severity: severity(&v.severity),
            fixable: !v.fixed_version.is_empty(),
            aliases: Vec::new(),
            package: v.resource,
            installed_version: v.installed_version,
            fixed_version: Some(v.fixed_version).filter(|f| !f.is_empty()),
            source: source.clone(),
            id: v.vulnerability_id,
        })
        .collect();
    Ok(OperatorReport { repository, digest: report.artifact.digest.filter(|d| !d.is_empty()), produced_at, findings })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_api::image_policy::Severity;

    #[test]
    fn reads_the_shared_trivy_operator_fixtures() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/scanners/trivy-operator");
        let mut read = 0;
        for entry in std::fs::read_dir(&dir).expect("fixtures present") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            let value: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
            let report = parse(value).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!report.findings.is_empty(), "{}", path.display());
            for f in &report.findings {
                assert!(!f.id.is_empty() && !f.package.is_empty() && !f.installed_version.is_empty(), "{f:?}");
                assert_eq!(f.fixable, f.fixed_version.is_some());
            }
            read += 1;
        }
        assert!(read > 0);
    }

    #[test]
    fn the_coredns_report_reads_as_written() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/scanners/trivy-operator/vulnerability-ttl.yaml");
        let value: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(path).expect("read")).expect("yaml");
        let report = parse(value).expect("report");
        assert_eq!(report.repository, "k8s.gcr.io/coredns/coredns");
        assert_eq!(report.produced_at, Some("2022-12-08T15:50:37Z".parse().expect("time")));
        let first = report.findings.iter().find(|f| f.id == "CVE-2021-3121").expect("CVE-2021-3121");
        assert_eq!(first.severity, Severity::High);
        assert_eq!((first.package.as_str(), first.installed_version.as_str()), ("github.com/gogo/protobuf", "v1.3.1"));
        assert_eq!(first.fixed_version.as_deref(), Some("1.3.2"));
        assert!(first.source.starts_with("trivy-operator (Trivy 0.35.0"), "{}", first.source);
    }

    #[test]
    fn other_objects_are_refused() {
        let configmap =
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "report": {"artifact": {"repository": "x"}}});
        assert!(parse(configmap).is_err());
        assert!(parse(serde_json::json!({})).is_err());
    }
}
