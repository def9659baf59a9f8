//! The `defender` scanner: Microsoft Defender for Cloud's vulnerability assessment of an image in
//! Azure Container Registry, read through Azure Resource Graph.
//!
//! Defender (Microsoft Defender Vulnerability Management) scans images in the registries of the
//! subscriptions where it is enabled and publishes one sub-assessment per vulnerability and
//! image to Resource Graph's `securityresources` table, under assessment
//! [`ASSESSMENT_KEY`] ("Azure registry container images should have vulnerabilities resolved").
//! Tidegate asks Resource Graph for the sub-assessments of exactly one digest, in one registry
//! and repository ([`query`]), and reads them into the findings model.
//!
//! **Whose data.** The controller holds one Azure credential for every namespace, so a policy
//! reads Defender data only within the Azure scopes its namespace was granted
//! (`--azure-grant`): the query goes to the subscriptions of those grants only, and a row counts
//! only when the registry it belongs to lies within a granted subscription or resource group.
//! Without such a grant nothing is sent and the Release stops, naming the flag.
//!
//! **Nothing known is not clean.** A digest without any sub-assessment is one Defender has not
//! assessed (it scans within hours of a push), or does not watch at all. That is never read as
//! "no findings": the scanner answers "no result yet", and once the request's deadline
//! (`spec.scan.defender.assessmentTimeout` after the candidate was built) has passed it answers
//! with an error naming the digest, which fails the Release. Rows with status `Healthy` are not
//! findings, but they show that the digest was assessed. Rows with status `NotApplicable` (an
//! exemption or a disabled recommendation in Defender) still count as findings: the package is
//! in the image, and Tidegate's exceptions (`spec.scan.exceptions`, with an owner and an expiry)
//! are where a policy accepts a finding.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use tidegate_core::gate::Finding;
use tidegate_core::{Digest, ImageRef};

use crate::azure::arm::Arm;
use crate::azure::resource_id::path_segments;
use crate::azure_targets::AzureScopes;
use crate::{ProviderError, Result, ScanReport, ScanRequest, Scanner};

/// Resource Graph's query endpoint.
pub const RESOURCE_GRAPH_PATH: &str = "/providers/Microsoft.ResourceGraph/resources";
/// The Resource Graph API version (of the REST examples in `shared/fixtures/azure/resourcegraph`).
pub const RESOURCE_GRAPH_API_VERSION: &str = "2024-04-01";
/// "Azure registry container images should have vulnerabilities resolved (powered by Microsoft
/// Defender Vulnerability Management)".
pub const ASSESSMENT_KEY: &str = "c0b7cfc6-3172-465a-b378-53c7ff2cc0d5";
/// Rows asked for per page.
pub const PAGE_SIZE: u32 = 1000;
/// The most pages one digest may have (a loop guard: 100 000 findings).
const MAX_PAGES: usize = 100;
/// Where findings come from, as the findings model records it.
pub const SOURCE: &str = "defender (Microsoft Defender Vulnerability Management)";

/// The image Defender is asked about, checked so that each part can be written into a query
/// literal as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageKey {
    /// Registry host (`myregistry.azurecr.io`), compared case-insensitively.
    pub registry: String,
    /// Repository inside the registry (`shop/app`).
    pub repository: String,
    /// `sha256:` and 64 lowercase hex digits.
    pub digest: String,
}

impl ImageKey {
    /// The key of `image` (`registry/repository@sha256:…`) pinned to `digest`; refused unless
    /// every part has only the characters its grammar allows.
    pub fn new(image: &str, digest: &Digest) -> std::result::Result<Self, String> {
        let reference: ImageRef = image.parse().map_err(|e| format!("{e}"))?;
        if reference.digest.as_ref() != Some(digest) {
            return Err(format!("{image} is not pinned to {digest}; only digests are scanned"));
        }
        let digest = digest.as_str().to_string();
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("{digest} is not sha256:<64 lowercase hex digits>"));
        }
        let host_ok = |h: &str| {
            !h.is_empty() && h.len() <= 253 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
        };
        if !host_ok(&reference.registry) {
            return Err(format!("registry host {:?} has characters a host cannot have", reference.registry));
        }
        let repo_ok = |r: &str| {
            !r.is_empty()
                && r.len() <= 255
                && r.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
        };
        if !repo_ok(&reference.repository) {
            return Err(format!("repository {:?} has characters a repository cannot have", reference.repository));
        }
        Ok(Self { registry: reference.registry, repository: reference.repository, digest })
    }
}

/// A KQL string literal of `text`, which [`ImageKey::new`] or the constants here checked: only
/// characters that need no escaping. Anything else is a bug, refused rather than interpolated.
fn literal(text: &str) -> std::result::Result<String, String> {
    if text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b)) {
        Ok(format!("\"{text}\""))
    } else {
        Err(format!("{text:?} cannot be written into a query"))
    }
}

/// The Resource Graph query for the Defender sub-assessments of `key`: the only query text
/// Tidegate sends.
pub fn query(key: &ImageKey) -> std::result::Result<String, String> {
    Ok([
        "securityresources".to_string(),
        "| where type =~ \"microsoft.security/assessments/subassessments\"".to_string(),
        "| extend assessmentKey = extract(\"(?i)/providers/Microsoft.Security/assessments/([^/]+)/subassessments/\", 1, id)"
            .to_string(),
        format!("| where assessmentKey == {}", literal(ASSESSMENT_KEY)?),
        format!("| where tostring(properties.additionalData.artifactDetails.digest) == {}", literal(&key.digest)?),
        format!(
            "| where tostring(properties.additionalData.artifactDetails.registryHost) =~ {}",
            literal(&key.registry)?
        ),
        format!(
            "| where tostring(properties.additionalData.artifactDetails.repositoryName) == {}",
            literal(&key.repository)?
        ),
        "| project id, subscriptionId, properties".to_string(),
    ]
    .join("\n"))
}

/// The body of one query request.
pub fn request_body(subscriptions: &[String], query: &str, skip_token: Option<&str>) -> Value {
    let mut options = json!({"$top": PAGE_SIZE, "resultFormat": "objectArray"});
    if let Some(token) = skip_token {
        options["$skipToken"] = json!(token);
    }
    json!({"subscriptions": subscriptions, "query": query, "options": options})
}

/// One page of a query's answer (`resultFormat: objectArray`).
#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    data: Option<Value>,
    #[serde(rename = "$skipToken", default)]
    skip_token: Option<String>,
    #[serde(rename = "resultTruncated", default)]
    result_truncated: Option<Value>,
}

/// A sub-assessment row as the query projects it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    properties: Properties,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Properties {
    #[serde(default)]
    id: Option<String>,
    status: Status,
    #[serde(default)]
    additional_data: Option<AdditionalData>,
    #[serde(default)]
    time_generated: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    code: String,
    #[serde(default)]
    severity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdditionalData {
    #[serde(default)]
    vulnerability_details: Option<VulnerabilityDetails>,
    #[serde(default)]
    artifact_details: Option<ArtifactDetails>,
    #[serde(default)]
    software_details: Option<SoftwareDetails>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VulnerabilityDetails {
    #[serde(default)]
    cve_id: Option<String>,
    #[serde(default)]
    severity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactDetails {
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    registry_host: Option<String>,
    #[serde(default)]
    repository_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SoftwareDetails {
    #[serde(default)]
    package_name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    fixed_version: Option<String>,
    #[serde(default)]
    fix_status: Option<String>,
}

/// What one row says.
#[derive(Clone, Debug, PartialEq)]
pub enum Assessed {
    /// Defender assessed the digest and this row is not a finding (`Healthy`).
    Healthy,
    /// A finding.
    Finding(Finding),
}

/// One row read into the findings model, checked against the image asked about. A row that
/// lacks what a finding needs, or belongs to another image, is an error, never skipped.
pub fn read_row(row: &Value, key: &ImageKey) -> std::result::Result<(Assessed, Option<jiff::Timestamp>), String> {
    let id = row.get("id").and_then(Value::as_str).unwrap_or("(no id)").to_string();
    let bad = |why: String| format!("Resource Graph row {id}: {why}");
    let row: Row = serde_json::from_value(row.clone()).map_err(|e| bad(format!("not a sub-assessment: {e}")))?;
    let p = row.properties;
    let data = p.additional_data.ok_or_else(|| bad("no properties.additionalData".into()))?;
    let artifact = data.artifact_details.ok_or_else(|| bad("no additionalData.artifactDetails".into()))?;
    if artifact.digest.as_deref() != Some(key.digest.as_str())
        || !artifact.registry_host.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(&key.registry))
        || artifact.repository_name.as_deref() != Some(key.repository.as_str())
    {
        return Err(bad(format!(
            "it is about {}/{}@{}, not the image asked about",
            artifact.registry_host.unwrap_or_default(),
            artifact.repository_name.unwrap_or_default(),
            artifact.digest.unwrap_or_default()
        )));
    }
    let generated = match p.time_generated.as_deref() {
        Some(t) => Some(t.parse::<jiff::Timestamp>().map_err(|e| bad(format!("timeGenerated {t:?}: {e}")))?),
        None => None,
    };
    match p.status.code.to_ascii_lowercase().as_str() {
        "healthy" => return Ok((Assessed::Healthy, generated)),
        "unhealthy" | "notapplicable" => {}
        other => return Err(bad(format!("unknown status code {other:?}"))),
    }
    let vulnerability = data.vulnerability_details;
    let cve = vulnerability.as_ref().and_then(|v| v.cve_id.clone()).filter(|c| !c.is_empty());
    let vuln_id = cve.or(p.id.filter(|i| !i.is_empty())).ok_or_else(|| bad("no vulnerability id".into()))?;
    let severity_text = p
        .status
        .severity
        .filter(|s| !s.is_empty())
        .or_else(|| vulnerability.and_then(|v| v.severity))
        .ok_or_else(|| bad("no severity".into()))?;
    let software = data.software_details.ok_or_else(|| bad("no additionalData.softwareDetails".into()))?;
    let package = software.package_name.filter(|p| !p.is_empty()).ok_or_else(|| bad("no packageName".into()))?;
    let fixed_version = software.fixed_version.filter(|v| !v.is_empty());
    let fixable = fixed_version.is_some()
        || software.fix_status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("FixAvailable"));
    Ok((
        Assessed::Finding(Finding {
            package,
            installed_version: software.version.unwrap_or_default(),
            fixed_version,
            source: SOURCE.to_string(),
            ..Finding::new(vuln_id, crate::report::severity(&severity_text), fixable)
        }),
        generated,
    ))
}

/// Whether the sub-assessment `row_id` belongs to a registry within one of `scopes`
/// (subscriptions or resource groups), segment by segment, case-insensitively.
pub fn within_scopes(row_id: &str, scopes: &[String]) -> bool {
    let Ok(own) = path_segments(row_id) else { return false };
    scopes.iter().any(|scope| {
        let Ok(scope) = path_segments(scope.trim_end_matches('/')) else { return false };
        scope.len() <= own.len() && scope.iter().zip(&own).all(|(a, b)| a.eq_ignore_ascii_case(b))
    })
}

/// The scopes of `granted` that can hold a registry (subscriptions and resource groups), and the
/// subscriptions to query for them.
pub fn registry_scopes(granted: &[String]) -> (Vec<String>, Vec<String>) {
    let mut scopes = Vec::new();
    let mut subscriptions: Vec<String> = Vec::new();
    for scope in granted {
        let Ok(segments) = path_segments(scope.trim_end_matches('/')) else { continue };
        if !matches!(segments.len(), 2 | 4) {
            continue;
        }
        scopes.push(scope.trim_end_matches('/').to_string());
        if !subscriptions.iter().any(|s| s.eq_ignore_ascii_case(segments[1])) {
            subscriptions.push(segments[1].to_string());
        }
    }
    (scopes, subscriptions)
}

/// What the rows of one digest amount to.
pub fn decide(
    key: &ImageKey,
    rows: &[Value],
    scopes: &[String],
    request: &ScanRequest<'_>,
) -> Result<Option<ScanReport>> {
    let mut findings = Vec::new();
    let mut assessed = false;
    let mut newest: Option<jiff::Timestamp> = None;
    for row in rows {
        let id = row.get("id").and_then(Value::as_str).unwrap_or_default();
        if !within_scopes(id, scopes) {
            tracing::debug!(row = id, "Defender row outside the namespace's Azure grants; not read");
            continue;
        }
        let (verdict, generated) = read_row(row, key).map_err(ProviderError::Permanent)?;
        assessed = true;
        newest = newest.max(generated);
        if let Assessed::Finding(finding) = verdict {
            findings.push(finding);
        }
    }
    let image = format!("{}/{}@{}", key.registry, key.repository, key.digest);
    let stale = newest.is_some_and(|t| request.now.duration_since(t) > request.max_age);
    if !assessed || stale {
        let why = if stale {
            format!(
                "Microsoft Defender for Cloud's newest assessment of {image} is from {}, older than spec.scan.maxReportAge",
                newest.map(|t| t.to_string()).unwrap_or_default()
            )
        } else {
            format!(
                "Microsoft Defender for Cloud has not assessed {image} (no sub-assessment of assessment {ASSESSMENT_KEY} \
                 in the subscriptions and resource groups granted to namespace {}); Defender scans an image in Azure \
                 Container Registry within hours of its push, and only where Defender for Containers (or Defender CSPM) \
                 with registry access is enabled",
                request.namespace
            )
        };
        return match request.deadline {
            Some(deadline) if request.now >= deadline => Err(ProviderError::Permanent(format!(
                "{why}; gave up at {deadline} (spec.scan.defender.assessmentTimeout): an image Defender knows nothing \
                 about is not treated as clean"
            ))),
            _ => {
                tracing::info!(%image, "{why}; waiting");
                Ok(None)
            }
        };
    }
    Ok(Some(ScanReport { findings, produced_at: newest, database: None }))
}

/// Reads Defender's findings through Resource Graph, within each namespace's Azure grants.
pub struct DefenderScanner {
    arm: Arc<Arm>,
    scopes: AzureScopes,
}

impl DefenderScanner {
    /// A scanner querying through `arm`, for namespaces granted scopes in `scopes`.
    pub fn new(arm: Arc<Arm>, scopes: AzureScopes) -> Self {
        Self { arm, scopes }
    }

    /// Every row of `query` in `subscriptions`, following `$skipToken`.
    async fn rows(&self, subscriptions: &[String], query: &str) -> Result<Vec<Value>> {
        let mut rows = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let body = request_body(subscriptions, query, token.as_deref());
            let page: Page = self.arm.query(RESOURCE_GRAPH_PATH, RESOURCE_GRAPH_API_VERSION, &body).await?;
            let data = match page.data {
                Some(Value::Array(data)) => data,
                other => {
                    return Err(ProviderError::Permanent(format!(
                        "Resource Graph answered without an objectArray data list ({})",
                        other.map(|v| v.to_string().chars().take(100).collect::<String>()).unwrap_or("none".into())
                    )));
                }
            };
            rows.extend(data);
            if page.result_truncated.as_ref().is_some_and(|t| t == &json!(true) || t == &json!("true")) {
                return Err(ProviderError::Permanent(
                    "Resource Graph truncated the answer (resultTruncated) although the query projects id".into(),
                ));
            }
            match page.skip_token.filter(|t| !t.is_empty()) {
                None => return Ok(rows),
                Some(next) => {
                    if !seen.insert(next.clone()) {
                        return Err(ProviderError::Permanent("Resource Graph repeated a $skipToken".into()));
                    }
                    token = Some(next);
                }
            }
        }
        Err(ProviderError::Permanent(format!("Resource Graph answered more than {MAX_PAGES} pages")))
    }
}

#[async_trait::async_trait]
impl Scanner for DefenderScanner {
    async fn scan(&self, request: &ScanRequest<'_>) -> Result<Option<ScanReport>> {
        let key = ImageKey::new(request.image, request.digest).map_err(ProviderError::Permanent)?;
        let namespace = request.namespace;
        let granted = self.scopes.granted(namespace);
        let (scopes, subscriptions) = registry_scopes(granted);
        if subscriptions.is_empty() {
            return Err(ProviderError::NotAllowed(format!(
                "spec.scan uses Microsoft Defender for Cloud, but namespace {namespace} was granted no Azure \
                 subscription or resource group to read Defender's findings in: the controller's operator grants them \
                 with --azure-grant {namespace}=/subscriptions/<subscription>[/resourceGroups/<group of the registry>] \
                 (chart value azure.grants); granted now: {}",
                if granted.is_empty() { "none".to_string() } else { granted.join(", ") }
            )));
        }
        let text = query(&key).map_err(ProviderError::Permanent)?;
        let rows = self.rows(&subscriptions, &text).await?;
        decide(&key, &rows, &scopes, request)
    }
}

#[cfg(test)]
mod tests;
