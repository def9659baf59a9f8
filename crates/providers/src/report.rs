//! Findings from Trivy JSON reports (SchemaVersion 2) stored in ConfigMaps.
//!
//! A ConfigMap in the policy's namespace labelled `tidegate.dev/scan-report=true`, annotated
//! `tidegate.dev/digest: sha256:…` and holding the report under `report.json` is the scan result
//! of that digest (CI runs the scanner and uploads the report). Without a report the scan is not
//! finished, and the Release waits: a missing scan never passes the gate.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use tidegate_api::image_policy::Severity;
use tidegate_core::Digest;
use tidegate_core::gate::Finding;

use crate::{ProviderError, Result, Scanner};

/// Label that marks a scan report ConfigMap.
pub const LABEL_REPORT: &str = "tidegate.dev/scan-report";
/// Annotation naming the digest a report is for.
pub const ANNOTATION_DIGEST: &str = "tidegate.dev/digest";

/// Reads reports from ConfigMaps.
#[derive(Clone)]
pub struct ReportScanner {
    client: kube::Client,
}

impl ReportScanner {
    /// A scanner reading ConfigMaps with `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl Scanner for ReportScanner {
    async fn scan(&self, namespace: &str, _image: &str, digest: &Digest) -> Result<Option<Vec<Finding>>> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let reports = api.list(&ListParams::default().labels(&format!("{LABEL_REPORT}=true"))).await?;
        let Some(report) = reports.items.into_iter().find(|cm| {
            cm.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_DIGEST)).map(String::as_str)
                == Some(digest.as_str())
        }) else {
            return Ok(None);
        };
        let name = report.metadata.name.clone().unwrap_or_default();
        let text = report
            .data
            .as_ref()
            .and_then(|d| d.get("report.json"))
            .ok_or_else(|| ProviderError::Permanent(format!("ConfigMap {name} has no report.json")))?;
        parse_trivy(text).map(Some).map_err(|e| ProviderError::Permanent(format!("ConfigMap {name}: {e}")))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Report {
    #[serde(default)]
    results: Vec<ReportResult>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReportResult {
    #[serde(default)]
    vulnerabilities: Vec<Vulnerability>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Vulnerability {
    #[serde(rename = "VulnerabilityID")]
    vulnerability_id: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    fixed_version: String,
}

/// Findings of a Trivy JSON report.
pub fn parse_trivy(text: &str) -> std::result::Result<Vec<Finding>, serde_json::Error> {
    let report: Report = serde_json::from_str(text)?;
    Ok(report
        .results
        .into_iter()
        .flat_map(|r| r.vulnerabilities)
        .map(|v| Finding {
            severity: match v.severity.to_ascii_uppercase().as_str() {
                "CRITICAL" => Severity::Critical,
                "HIGH" => Severity::High,
                "MEDIUM" => Severity::Medium,
                "LOW" => Severity::Low,
                _ => Severity::Unknown,
            },
            fixable: !v.fixed_version.is_empty(),
            id: v.vulnerability_id,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        }
        assert!(total > 0, "the fixtures hold vulnerabilities");
    }

    #[test]
    fn severity_and_fixability() {
        let findings = parse_trivy(
            r#"{"SchemaVersion":2,"Results":[{"Vulnerabilities":[
            {"VulnerabilityID":"CVE-1","Severity":"CRITICAL","FixedVersion":"1.2"},
            {"VulnerabilityID":"CVE-2","Severity":"LOW"}]}]}"#,
        )
        .unwrap();
        assert_eq!(findings[0], Finding { id: "CVE-1".into(), severity: Severity::Critical, fixable: true });
        assert_eq!(findings[1], Finding { id: "CVE-2".into(), severity: Severity::Low, fixable: false });
        assert!(parse_trivy("{}").unwrap().is_empty());
        assert!(parse_trivy("not json").is_err());
    }
}
