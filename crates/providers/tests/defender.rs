//! The `defender` scanner against the Azure stand-in's Resource Graph (real KQL evaluation of
//! the query Tidegate sends, `$skipToken` paging): Defender's sub-assessments read into the
//! findings model, only within the namespace's Azure grants; a digest Defender has not assessed
//! is never clean; malformed rows fail with the reason.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tidegate_api::image_policy::Severity;
use tidegate_core::Digest;
use tidegate_providers::azure::{Arm, AzureConfig, AzureCredentialKind};
use tidegate_providers::azure_targets::AzureScopes;
use tidegate_providers::defender::{ASSESSMENT_KEY, DefenderScanner};
use tidegate_providers::{ProviderError, ScanRequest, Scanner};
use tidegate_testenv::azure::AzureStandIn;

const CLIENT: &str = "tidegate-defender";
const SECRET: &str = "defender-secret";

fn digest(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64)).parse().expect("digest")
}

fn registry(sub: &str, group: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/shopacr")
}

/// A sub-assessment row in the shape Microsoft documents for MDVM (Resource Graph `securityresources`).
fn row(registry: &str, cve: &str, digest: &Digest, code: &str, severity: &str, fixed: &str) -> Value {
    let sub = registry.split('/').nth(2).unwrap_or_default();
    json!({
        "id": format!("{registry}/providers/Microsoft.Security/assessments/{ASSESSMENT_KEY}/subassessments/{}-{}", cve.to_lowercase(), &digest.as_str()[7..15]),
        "name": cve.to_lowercase(),
        "type": "microsoft.security/assessments/subassessments",
        "tenantId": "t", "kind": "", "location": "global", "resourceGroup": "shop", "subscriptionId": sub,
        "properties": {
            "id": cve, "displayName": cve,
            "additionalData": {
                "assessedResourceType": "AzureContainerRegistryVulnerability",
                "vulnerabilityDetails": {"severity": severity, "cveId": cve, "publishedDate": "2026-01-01T00:00:00Z"},
                "artifactDetails": {
                    "lastPushedToRegistryUTC": "2026-12-01T16:05:32.8223098Z", "repositoryName": "shop/app",
                    "registryHost": "shopacr.azurecr.io", "artifactType": "ContainerImage",
                    "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest.as_str(), "tags": ["1.0"]
                },
                "softwareDetails": {
                    "category": "OS", "language": "", "fixedVersion": fixed, "version": "3.0.1-r0", "vendor": "alpine",
                    "packageName": "openssl", "osDetails": {"osPlatform": "linux", "osVersion": "alpine_3.20"},
                    "fixStatus": if fixed.is_empty() { "NoFixAvailable" } else { "FixAvailable" }, "evidence": []
                },
                "cvssV30Score": 7.5
            },
            "resourceDetails": {"id": format!("/repositories/shop/app/images/{}", digest.as_str()), "source": "Azure"},
            "timeGenerated": jiff::Timestamp::now().to_string(),
            "status": {"severity": severity, "code": code}
        }
    })
}

struct Setup {
    azure: AzureStandIn,
    scanner: DefenderScanner,
    _dir: tempfile::TempDir,
}

async fn setup(grants: &[String]) -> Setup {
    let azure = AzureStandIn::start().await.expect("starting azure-standin");
    azure.add_client_secret(CLIENT, SECRET).await.expect("client");
    let dir = tempfile::tempdir().expect("dir");
    let secret_file: PathBuf = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).expect("secret");
    let config = AzureConfig {
        credential: AzureCredentialKind::ClientSecret,
        tenant_id: Some(azure.tenant_id().to_string()),
        client_id: Some(CLIENT.into()),
        client_secret_file: Some(secret_file),
        authority_host: azure.authority_host().parse().expect("url"),
        resource_manager: azure.arm_url().parse().expect("url"),
        ca_file: Some(azure.ca_file().to_path_buf()),
        operation_timeout: Duration::from_secs(60),
        ..AzureConfig::default()
    };
    let arm = Arc::new(Arm::new(&config).await.expect("arm"));
    let scopes = AzureScopes::parse(grants).expect("grants");
    Setup { azure, scanner: DefenderScanner::new(arm, scopes), _dir: dir }
}

fn request<'a>(
    namespace: &'a str,
    image: &'a str,
    digest: &'a Digest,
    deadline: Option<jiff::Timestamp>,
) -> ScanRequest<'a> {
    ScanRequest {
        namespace,
        image,
        digest,
        workload_namespaces: &[],
        max_age: jiff::SignedDuration::from_hours(24),
        now: jiff::Timestamp::now(),
        deadline,
    }
}

fn image(digest: &Digest) -> String {
    format!("shopacr.azurecr.io/shop/app@{digest}")
}

async fn graph_requests(azure: &AzureStandIn) -> Vec<Value> {
    azure
        .requests()
        .await
        .expect("log")
        .into_iter()
        .filter(|r| r.path.eq_ignore_ascii_case("/providers/Microsoft.ResourceGraph/resources"))
        .map(|r| r.json().unwrap_or(Value::Null))
        .collect()
}

#[tokio::test]
async fn findings_are_read_across_pages_within_the_grants_only() {
    let sub = "00000000-0000-4000-8000-0000000000aa";
    let other_sub = "00000000-0000-4000-8000-0000000000bb";
    let s = setup(&[format!("shop=/subscriptions/{sub}/resourceGroups/shop")]).await;
    let (d, other) = (digest('a'), digest('b'));
    let mine = registry(sub, "shop");
    let mut rows = vec![
        row(&mine, "CVE-2026-0001", &d, "Unhealthy", "Critical", "3.0.2-r0"),
        row(&mine, "CVE-2026-0002", &d, "Unhealthy", "High", ""),
        row(&mine, "CVE-2026-0003", &d, "Unhealthy", "Medium", "3.0.3-r0"),
        row(&mine, "CVE-2026-0004", &d, "Unhealthy", "Low", "3.0.4-r0"),
        row(&mine, "CVE-2026-0005", &d, "Healthy", "High", ""),
        // Another digest, another team's resource group, another subscription: never read.
        row(&mine, "CVE-2026-0006", &other, "Unhealthy", "Critical", "1"),
        row(&registry(sub, "payments"), "CVE-2026-0007", &d, "Unhealthy", "Critical", "1"),
        row(&registry(other_sub, "shop"), "CVE-2026-0008", &d, "Unhealthy", "Critical", "1"),
    ];
    rows.push(json!({"id": "/subscriptions/x/resourceGroups/y/providers/Microsoft.Compute/virtualMachines/vm", "type": "microsoft.compute/virtualmachines", "subscriptionId": sub, "properties": {}}));
    s.azure.seed_graph_rows("securityresources", &rows).await.expect("seed");
    s.azure.set_graph_page_size(2).await.expect("page size");
    s.azure.clear_requests().await.expect("clear");

    let image = image(&d);
    let report = s.scanner.scan(&request("shop", &image, &d, None)).await.expect("scan").expect("a result");
    let mut ids: Vec<_> = report.findings.iter().map(|f| f.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["CVE-2026-0001", "CVE-2026-0002", "CVE-2026-0003", "CVE-2026-0004"]);
    let critical = report.findings.iter().find(|f| f.id == "CVE-2026-0001").expect("critical");
    assert_eq!(critical.severity, Severity::Critical);
    assert!(critical.fixable);
    assert_eq!((critical.package.as_str(), critical.installed_version.as_str()), ("openssl", "3.0.1-r0"));
    assert_eq!(critical.fixed_version.as_deref(), Some("3.0.2-r0"));
    let unfixed = report.findings.iter().find(|f| f.id == "CVE-2026-0002").expect("high");
    assert!(!unfixed.fixable && unfixed.fixed_version.is_none());
    assert!(report.produced_at.is_some());

    // Three pages (five rows of this image in the granted subscription, two per page), each a
    // query of the granted subscription only, the later ones with the $skipToken of the one before.
    let sent = graph_requests(&s.azure).await;
    assert_eq!(sent.len(), 3, "{sent:?}");
    for body in &sent {
        assert_eq!(body["subscriptions"], json!([sub]));
        assert_eq!(body["options"]["resultFormat"], "objectArray");
        assert!(body["query"].as_str().unwrap_or_default().contains(d.as_str()));
    }
    assert!(sent[0]["options"].get("$skipToken").is_none());
    assert!(sent[1]["options"]["$skipToken"].is_string() && sent[2]["options"]["$skipToken"].is_string());
}

#[tokio::test]
async fn an_image_defender_has_not_assessed_waits_and_then_fails() {
    let sub = "00000000-0000-4000-8000-0000000000aa";
    let s = setup(&[format!("shop=/subscriptions/{sub}")]).await;
    let (d, assessed) = (digest('c'), digest('d'));
    s.azure
        .seed_graph_rows("securityresources", &[row(&registry(sub, "shop"), "CVE-1", &assessed, "Healthy", "High", "")])
        .await
        .expect("seed");
    let image_c = image(&d);
    // Not assessed: no result yet, never "no findings".
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(6);
    assert_eq!(s.scanner.scan(&request("shop", &image_c, &d, Some(soon))).await.expect("scan"), None);
    // Past the deadline: an error naming the digest.
    let past = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1);
    match s.scanner.scan(&request("shop", &image_c, &d, Some(past))).await {
        Err(ProviderError::Permanent(why)) => {
            assert!(why.contains("has not assessed") && why.contains(d.as_str()), "{why}")
        }
        other => panic!("{other:?}"),
    }
    // Assessed with only healthy rows: a result without findings.
    let image_d = image(&assessed);
    let report = s.scanner.scan(&request("shop", &image_d, &assessed, None)).await.expect("scan").expect("result");
    assert!(report.findings.is_empty());
}

#[tokio::test]
async fn a_namespace_without_a_grant_reads_nothing_and_sends_nothing() {
    let s = setup(&[
        "shop=/subscriptions/00000000-0000-4000-8000-0000000000aa".to_string(),
        "apps=/subscriptions/00000000-0000-4000-8000-0000000000aa/resourceGroups/rg/providers/Microsoft.App/containerApps/web"
            .to_string(),
    ])
    .await;
    s.azure.clear_requests().await.expect("clear");
    let d = digest('e');
    let image = image(&d);
    for namespace in ["other", "apps"] {
        match s.scanner.scan(&request(namespace, &image, &d, None)).await {
            Err(ProviderError::NotAllowed(why)) => {
                assert!(why.contains(&format!("--azure-grant {namespace}=")), "{why}")
            }
            other => panic!("{namespace}: {other:?}"),
        }
    }
    assert!(graph_requests(&s.azure).await.is_empty(), "a query was sent without a grant");
}

#[tokio::test]
async fn malformed_rows_fail_the_scan_with_the_reason() {
    let sub = "00000000-0000-4000-8000-0000000000aa";
    let s = setup(&[format!("shop=/subscriptions/{sub}")]).await;
    let d = digest('f');
    let mut bad = row(&registry(sub, "shop"), "CVE-2026-0100", &d, "Unhealthy", "High", "1");
    bad["properties"]["additionalData"]["softwareDetails"] = Value::Null;
    s.azure.seed_graph_rows("securityresources", &[bad]).await.expect("seed");
    let image = image(&d);
    match s.scanner.scan(&request("shop", &image, &d, None)).await {
        Err(ProviderError::Permanent(why)) => {
            assert!(why.contains("cve-2026-0100") && why.contains("softwareDetails"), "{why}")
        }
        other => panic!("{other:?}"),
    }
}
