//! Trivy Operator `VulnerabilityReport`s (`aquasecurity.github.io/v1alpha1`), read into the
//! findings model: a report is of one container image (`report.artifact`: repository, tag and,
//! in recent versions, digest) and was produced at `report.updateTimestamp`.
//!
//! [`OperatorScanner`] is the `trivyOperator` scanner of `spec.triggers.rescan.scanner`: the
//! operator scans what runs, so its reports live next to the workloads, in the production
//! namespaces. They are read as the policy namespace's deployer, never with the controller's own
//! rights: the owner of each workload namespace decides, by binding ClusterRole
//! `tidegate-vulnerability-reports` to the policy namespace's deployer there, whether a policy
//! may read that namespace's reports.

use std::sync::Arc;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use serde::Deserialize;
use tidegate_core::gate::Finding;
use tidegate_core::{Digest, ImageRef};

use crate::authz::{DEPLOYER_SERVICE_ACCOUNT, Reach};
use crate::report::{MAX_CLOCK_SKEW, severity};
use crate::{ProviderError, Result, ScanReport, ScanRequest, Scanner};

/// API group and version of the Trivy Operator's reports.
pub const API_VERSION: &str = "aquasecurity.github.io/v1alpha1";
/// The API group of the Trivy Operator's reports.
pub const GROUP: &str = "aquasecurity.github.io";
/// The resource the reports are served as.
pub const RESOURCE: &str = "vulnerabilityreports";
/// Reports listed per request; a namespace with more is read in pages.
const PAGE_SIZE: u32 = 100;

/// The served resource of `VulnerabilityReport`s.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1alpha1", "VulnerabilityReport"), RESOURCE)
}

/// Reads the Trivy Operator's reports of a digest from the namespaces of the workloads that run it.
pub struct OperatorScanner {
    reach: Arc<Reach>,
}

impl OperatorScanner {
    /// A scanner reading reports as the deployer of each policy's namespace (through `reach`).
    pub fn new(reach: Arc<Reach>) -> Self {
        Self { reach }
    }
}

#[async_trait::async_trait]
impl Scanner for OperatorScanner {
    /// The newest report of exactly `request.digest` (same registry and repository) in any of
    /// `request.workload_namespaces` that is at most `request.max_age` old; `None` when there is
    /// none (yet). A report that cannot be read is skipped with a warning.
    async fn scan(&self, request: &ScanRequest<'_>) -> Result<Option<ScanReport>> {
        let image: ImageRef = request
            .image
            .parse()
            .map_err(|e| ProviderError::Permanent(format!("{} is not an image reference: {e}", request.image)))?;
        let client = self.reach.client(request.namespace)?;
        let mut namespaces: Vec<&str> = request.workload_namespaces.iter().map(String::as_str).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        let mut matching = Vec::new();
        for namespace in namespaces {
            // An empty namespace would list every namespace's reports.
            if namespace.is_empty() {
                tracing::warn!(image = request.image, "a workload without a namespace: no reports read for it");
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &api_resource());
            let mut params = ListParams::default().limit(PAGE_SIZE);
            loop {
                let page = api.list(&params).await.map_err(|e| list_error(e, request.namespace, namespace))?;
                for object in page.items {
                    let name = format!("{namespace}/{}", object.metadata.name.as_deref().unwrap_or_default());
                    match read(object) {
                        Ok(report) if is_of(&report, &image, request.digest) => matching.push((name, report)),
                        Ok(_) => {}
                        Err(why) => tracing::warn!(report = %name, "VulnerabilityReport skipped: {why}"),
                    }
                }
                match page.metadata.continue_.filter(|token| !token.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
        }
        Ok(newest_fresh(matching, request.now, request.max_age))
    }
}

/// What a failed list of `namespace`'s reports, as the deployer of `policy_namespace`, means.
fn list_error(error: kube::Error, policy_namespace: &str, namespace: &str) -> ProviderError {
    let kube::Error::Api(status) = &error else { return ProviderError::Kube(error) };
    match status.code {
        404 => ProviderError::NotConfigured(format!(
            "the Trivy Operator is not installed: no {RESOURCE}.{GROUP} in this cluster (listing them in namespace \
             {namespace} answered: {}); install the operator, or use another spec.triggers.rescan.scanner",
            status.message
        )),
        403 => ProviderError::NotAllowed(format!(
            "ServiceAccount {policy_namespace}/{DEPLOYER_SERVICE_ACCOUNT} may not read the Trivy Operator's reports \
             in namespace {namespace}: an administrator of {namespace} must grant it get and list on \
             {RESOURCE}.{GROUP} there, as ClusterRole tidegate-vulnerability-reports has (kubectl create \
             rolebinding tidegate-vulnerability-reports-from-{policy_namespace} -n {namespace} \
             --clusterrole=tidegate-vulnerability-reports --serviceaccount={policy_namespace}:{DEPLOYER_SERVICE_ACCOUNT})"
        )),
        // The continue token of a long list expired: list again.
        410 => ProviderError::Transient(format!("listing VulnerabilityReports in {namespace}: {}", status.message)),
        _ => ProviderError::Kube(error),
    }
}

/// A listed object as a report; produced at its `report.updateTimestamp`, else its creation.
fn read(object: DynamicObject) -> std::result::Result<OperatorReport, String> {
    let created = object.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let mut value = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    // Items of a list may come without their type.
    if let Some(fields) = value.as_object_mut() {
        fields.entry("apiVersion").or_insert_with(|| API_VERSION.into());
        fields.entry("kind").or_insert_with(|| "VulnerabilityReport".into());
    }
    let mut report = parse(value)?;
    report.produced_at = report.produced_at.or(created);
    Ok(report)
}

/// Whether `report` is of `image`'s registry and repository at exactly `digest`. A report without
/// a digest or a registry server is of no digest.
pub fn is_of(report: &OperatorReport, image: &ImageRef, digest: &Digest) -> bool {
    if report.digest.as_deref() != Some(digest.as_str()) {
        return false;
    }
    let Ok(reported) = report.repository.parse::<ImageRef>() else { return false };
    canonical(&reported) == canonical(image)
}

/// `(registry, repository)` with Docker Hub's spellings made one: the operator writes
/// `index.docker.io` and `library/nginx` where a reference may say `docker.io/nginx`.
fn canonical(image: &ImageRef) -> (&str, String) {
    match image.registry.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" if !image.repository.contains('/') => {
            ("docker.io", format!("library/{}", image.repository))
        }
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => ("docker.io", image.repository.clone()),
        registry => (registry, image.repository.clone()),
    }
}

/// The newest of `reports` (named, all of the digest) that is at most `max_age` old at `now`.
/// Reports of unknown age, or from further in the future than clocks differ, do not count.
pub fn newest_fresh(
    reports: Vec<(String, OperatorReport)>,
    now: jiff::Timestamp,
    max_age: jiff::SignedDuration,
) -> Option<ScanReport> {
    let fresh = reports.into_iter().filter_map(|(name, report)| {
        let Some(at) = report.produced_at else {
            tracing::warn!(report = %name, "VulnerabilityReport skipped: it says neither when it was updated nor created");
            return None;
        };
        let age = now.duration_since(at);
        if age > max_age {
            tracing::debug!(report = %name, %at, "VulnerabilityReport too old to count");
            return None;
        }
        if -age > MAX_CLOCK_SKEW {
            tracing::warn!(report = %name, %at, %now, "VulnerabilityReport skipped: updated in the future");
            return None;
        }
        Some((at, name, report))
    });
    let (at, name, report) = fresh.max_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)))?;
    tracing::debug!(report = %name, %at, "reading findings from the Trivy Operator");
    Some(ScanReport { findings: report.findings, produced_at: Some(at), database: None })
}

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

    const DIGEST: &str = "sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";
    const OTHER: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    fn digest() -> Digest {
        DIGEST.parse().expect("digest")
    }

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().expect("timestamp")
    }

    /// A report as the operator writes it, of `server/repository@digest`, updated at `updated`,
    /// with one fixable HIGH finding named `id`.
    fn object(server: &str, repository: &str, digest: &str, updated: &str, id: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "VulnerabilityReport",
            "metadata": {"name": "replicaset-app-1-app", "namespace": "prod", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "report": {
                "artifact": {"repository": repository, "digest": digest},
                "registry": {"server": server},
                "scanner": {"name": "Trivy", "vendor": "Aqua Security", "version": "0.74.0"},
                "updateTimestamp": updated,
                "vulnerabilities": [{"vulnerabilityID": id, "resource": "openssl", "installedVersion": "3.0.1",
                                     "fixedVersion": "3.0.2", "severity": "HIGH"}]
            }
        }))
        .expect("object")
    }

    fn report(server: &str, repository: &str, digest: &str, updated: &str, id: &str) -> OperatorReport {
        read(object(server, repository, digest, updated, id)).expect("report")
    }

    fn image(text: &str) -> ImageRef {
        text.parse().expect("image")
    }

    #[test]
    fn a_report_counts_only_for_its_registry_repository_and_digest() {
        let app = image(&format!("registry.example.com/shop/app@{DIGEST}"));
        let of = |server, repository, d| {
            is_of(&report(server, repository, d, "2025-06-01T12:00:00Z", "CVE-1"), &app, &digest())
        };
        assert!(of("registry.example.com", "shop/app", DIGEST));
        assert!(!of("registry.example.com", "shop/app", OTHER), "another digest of the repository");
        assert!(!of("registry.example.com", "shop/other", DIGEST), "another repository");
        assert!(!of("mirror.example.com", "shop/app", DIGEST), "another registry");
        assert!(!of("", "shop/app", DIGEST), "no registry server");
        assert!(!of("registry.example.com", "shop/app", ""), "no digest");
        // Docker Hub, as the operator names it, and as a reference may.
        let nginx = image(&format!("docker.io/nginx@{DIGEST}"));
        let hub = report("index.docker.io", "library/nginx", DIGEST, "2025-06-01T12:00:00Z", "CVE-1");
        assert!(is_of(&hub, &nginx, &digest()));
        assert!(is_of(&hub, &image(&format!("registry-1.docker.io/library/nginx@{DIGEST}")), &digest()));
        assert!(!is_of(&hub, &image(&format!("docker.io/bitnami/nginx@{DIGEST}")), &digest()));
    }

    #[test]
    fn the_newest_report_within_the_maximum_age_wins() {
        let hour = jiff::SignedDuration::from_hours(1);
        let now = at("2025-06-01T12:00:00Z");
        let named = |updated: &str, id: &str| {
            (format!("prod/{id}"), report("registry.example.com", "shop/app", DIGEST, updated, id))
        };
        let chosen = newest_fresh(
            vec![
                named("2025-06-01T11:10:00Z", "older"),
                named("2025-06-01T11:40:00Z", "newest"),
                named("2025-06-01T10:00:00Z", "stale"),
            ],
            now,
            hour,
        )
        .expect("a fresh report");
        assert_eq!(chosen.produced_at, Some(at("2025-06-01T11:40:00Z")));
        assert_eq!(chosen.findings.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["newest"]);
        assert!(chosen.findings[0].fixable && chosen.findings[0].severity == Severity::High);

        // Exactly as old as allowed still counts; a second more does not.
        assert!(newest_fresh(vec![named("2025-06-01T11:00:00Z", "edge")], now, hour).is_some());
        assert_eq!(newest_fresh(vec![named("2025-06-01T10:59:59Z", "stale")], now, hour), None);
        // A report from beyond clock skew in the future says nothing about now.
        assert_eq!(newest_fresh(vec![named("2025-06-01T12:10:00Z", "future")], now, hour), None);
        assert!(newest_fresh(vec![named("2025-06-01T12:04:00Z", "skewed")], now, hour).is_some());
        assert_eq!(newest_fresh(Vec::new(), now, hour), None);
    }

    #[test]
    fn a_report_without_update_time_is_as_old_as_the_object() {
        let mut value =
            serde_json::to_value(object("r.example.com", "a", DIGEST, "2025-06-01T12:00:00Z", "CVE-1")).expect("value");
        value["report"].as_object_mut().expect("report").remove("updateTimestamp");
        let report = read(serde_json::from_value(value).expect("object")).expect("report");
        assert_eq!(report.produced_at, Some(at("2025-01-01T00:00:00Z")));
    }

    #[test]
    fn malformed_reports_are_refused_not_panicked_on() {
        let mut value =
            serde_json::to_value(object("r.example.com", "a", DIGEST, "2025-06-01T12:00:00Z", "CVE-1")).expect("value");
        for broken in [
            serde_json::json!({"artifact": {"repository": 7}}),
            serde_json::json!({"artifact": {"repository": "a"}, "updateTimestamp": "yesterday"}),
            serde_json::json!({"artifact": {"repository": "a"}, "vulnerabilities": [{"severity": "HIGH"}]}),
            serde_json::json!("not an object"),
        ] {
            value["report"] = broken.clone();
            let object: DynamicObject = serde_json::from_value(value.clone()).expect("object");
            assert!(read(object).is_err(), "{broken}");
        }
        // Items listed without their type still read.
        let mut untyped = object("r.example.com", "a", DIGEST, "2025-06-01T12:00:00Z", "CVE-1");
        untyped.types = None;
        assert!(read(untyped).is_ok());
    }

    #[test]
    fn a_missing_crd_and_a_refusal_say_what_to_do() {
        let status = |code: u16, reason: &str| {
            kube::Error::Api(
                kube::core::Status::failure("the server could not find the requested resource", reason)
                    .with_code(code)
                    .boxed(),
            )
        };
        match list_error(status(404, "NotFound"), "shop", "shop-prod") {
            ProviderError::NotConfigured(why) => {
                assert!(
                    why.starts_with(
                        "the Trivy Operator is not installed: no vulnerabilityreports.aquasecurity.github.io"
                    ),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        match list_error(status(403, "Forbidden"), "shop", "shop-prod") {
            ProviderError::NotAllowed(why) => {
                for part in [
                    "ServiceAccount shop/tidegate-deployer",
                    "in namespace shop-prod",
                    "get and list",
                    "vulnerabilityreports.aquasecurity.github.io",
                    "ClusterRole tidegate-vulnerability-reports",
                ] {
                    assert!(why.contains(part), "{part:?} in {why}");
                }
            }
            other => panic!("{other:?}"),
        }
        assert!(list_error(status(500, "InternalError"), "shop", "shop-prod").is_transient());
        assert!(list_error(status(410, "Expired"), "shop", "shop-prod").is_transient());
    }

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
