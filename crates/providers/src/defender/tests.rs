use super::*;

const DIGEST: &str = "sha256:4af8e6f002401a965bbe753a381af308b40d8947fad2b9e1f6a369aa81abee59";
const REGISTRY_ID: &str =
    "/subscriptions/s1/resourceGroups/shop/providers/Microsoft.ContainerRegistry/registries/shopacr";

fn digest() -> Digest {
    DIGEST.parse().expect("digest")
}

fn key() -> ImageKey {
    ImageKey::new(&format!("shopacr.azurecr.io/shop/app@{DIGEST}"), &digest()).expect("key")
}

/// A sub-assessment in the shape Microsoft documents for MDVM rows.
fn row(registry_id: &str, cve: &str, code: &str, severity: &str, fixed: &str, fix_status: &str) -> Value {
    json!({
        "id": format!("{registry_id}/providers/Microsoft.Security/assessments/{ASSESSMENT_KEY}/subassessments/{cve}-x"),
        "subscriptionId": "s1",
        "properties": {
            "id": cve,
            "displayName": cve,
            "additionalData": {
                "assessedResourceType": "AzureContainerRegistryVulnerability",
                "vulnerabilityDetails": {"cveId": cve, "severity": severity},
                "artifactDetails": {
                    "registryHost": "shopacr.azurecr.io", "repositoryName": "shop/app", "digest": DIGEST,
                    "artifactType": "ContainerImage", "tags": ["1.0"]
                },
                "softwareDetails": {
                    "category": "OS", "packageName": "openssl", "version": "3.0.1-r0",
                    "fixedVersion": fixed, "fixStatus": fix_status
                }
            },
            "timeGenerated": "2026-12-02T10:00:00.1234567Z",
            "status": {"code": code, "severity": severity}
        }
    })
}

fn request<'a>(
    digest: &'a Digest,
    image: &'a str,
    now: jiff::Timestamp,
    deadline: Option<jiff::Timestamp>,
) -> ScanRequest<'a> {
    ScanRequest {
        namespace: "shop",
        image,
        digest,
        workload_namespaces: &[],
        max_age: jiff::SignedDuration::from_hours(24),
        now,
        deadline,
    }
}

fn now() -> jiff::Timestamp {
    "2026-12-02T12:00:00Z".parse().expect("time")
}

#[test]
fn only_checked_text_reaches_the_query() {
    let text = query(&key()).expect("query");
    assert!(text.starts_with("securityresources\n| where type =~ \"microsoft.security/assessments/subassessments\""));
    assert!(text.contains(&format!("== \"{DIGEST}\"")) && text.contains("=~ \"shopacr.azurecr.io\""), "{text}");
    assert!(text.contains("repositoryName) == \"shop/app\"") && text.contains(ASSESSMENT_KEY), "{text}");
    let d = digest();
    for bad in [
        "shopacr.azurecr.io/shop/app:1.0".to_string(),
        format!("shopacr.azurecr.io/shop/app@sha256:{}", "b".repeat(64)),
        format!("shop\"acr.azurecr.io/shop/app@{DIGEST}"),
        format!("shopacr.azurecr.io/Shop/App@{DIGEST}"),
        format!("shopacr.azurecr.io/shop/app\" or true@{DIGEST}"),
    ] {
        assert!(ImageKey::new(&bad, &d).is_err(), "{bad}");
    }
    assert!(literal("a\"b").is_err() && literal("x | where 1==1").is_err());
}

#[test]
fn the_stand_in_fidelity_test_runs_exactly_this_query() {
    let go = include_str!("../../../testenv/go/azure/fidelity/resourcegraph_test.go");
    let text = query(&key()).expect("query");
    assert!(go.contains(&format!("const defenderQuery = `{text}`")), "resourcegraph_test.go must run:\n{text}");
}

#[test]
fn rows_read_into_the_findings_model() {
    let k = key();
    let (high, at) =
        read_row(&row(REGISTRY_ID, "CVE-2024-0001", "Unhealthy", "High", "3.0.2-r0", "FixAvailable"), &k).expect("row");
    assert_eq!(at, Some("2026-12-02T10:00:00.1234567Z".parse().expect("time")));
    let Assessed::Finding(f) = high else { panic!("{high:?}") };
    assert_eq!(
        (f.id.as_str(), f.severity, f.fixable),
        ("CVE-2024-0001", tidegate_api::image_policy::Severity::High, true)
    );
    assert_eq!(
        (f.package.as_str(), f.installed_version.as_str(), f.fixed_version.as_deref()),
        ("openssl", "3.0.1-r0", Some("3.0.2-r0"))
    );
    assert_eq!(f.source, SOURCE);
    for (severity, expected) in [
        ("Critical", tidegate_api::image_policy::Severity::Critical),
        ("Medium", tidegate_api::image_policy::Severity::Medium),
        ("Low", tidegate_api::image_policy::Severity::Low),
        ("Informational", tidegate_api::image_policy::Severity::Unknown),
    ] {
        let (a, _) =
            read_row(&row(REGISTRY_ID, "CVE-1", "Unhealthy", severity, "", "NoFixAvailable"), &k).expect("row");
        let Assessed::Finding(f) = a else { panic!() };
        assert_eq!((f.severity, f.fixable, f.fixed_version), (expected, false, None));
    }
    // Defender documents rows with fixStatus FixAvailable and an empty fixedVersion.
    let (a, _) = read_row(&row(REGISTRY_ID, "CVE-2", "Unhealthy", "High", "", "FixAvailable"), &k).expect("row");
    assert!(matches!(a, Assessed::Finding(Finding { fixable: true, fixed_version: None, .. })));
    // Exempted or disabled in Defender: still in the image, still a finding.
    let (a, _) = read_row(&row(REGISTRY_ID, "CVE-3", "NotApplicable", "High", "1", "FixAvailable"), &k).expect("row");
    assert!(matches!(a, Assessed::Finding(_)));
    let (a, _) = read_row(&row(REGISTRY_ID, "CVE-4", "Healthy", "High", "1", "FixAvailable"), &k).expect("row");
    assert_eq!(a, Assessed::Healthy);
}

#[test]
fn malformed_rows_are_errors_that_name_the_row() {
    let k = key();
    let good = row(REGISTRY_ID, "CVE-2024-0001", "Unhealthy", "High", "3.0.2-r0", "FixAvailable");
    let broken = |pointer: &str, value: Value| {
        let mut r = good.clone();
        *r.pointer_mut(pointer).expect(pointer) = value;
        r
    };
    for (r, expect) in [
        (json!({"id": "x"}), "not a sub-assessment"),
        (json!(42), "not a sub-assessment"),
        (broken("/properties/status", json!({})), "not a sub-assessment"),
        (broken("/properties/status/code", json!("Unknown")), "unknown status code"),
        (broken("/properties/additionalData", Value::Null), "no properties.additionalData"),
        (
            broken("/properties/additionalData/artifactDetails/digest", json!(format!("sha256:{}", "c".repeat(64)))),
            "not the image asked about",
        ),
        (
            broken("/properties/additionalData/artifactDetails/repositoryName", json!("other/app")),
            "not the image asked about",
        ),
        (broken("/properties/additionalData/softwareDetails", Value::Null), "no additionalData.softwareDetails"),
        (broken("/properties/additionalData/softwareDetails/packageName", json!("")), "no packageName"),
        (broken("/properties/timeGenerated", json!("yesterday")), "timeGenerated"),
        (broken("/properties/additionalData/vulnerabilityDetails/cveId", Value::Null), ""),
    ] {
        match read_row(&r, &k) {
            Err(why) => assert!(why.contains(expect) && why.starts_with("Resource Graph row "), "{why}"),
            Ok(_) if expect.is_empty() => {}
            Ok(other) => panic!("{r}: {other:?}"),
        }
    }
    // Without cveId, the sub-assessment's own id names the vulnerability; without either, error.
    let mut r = broken("/properties/additionalData/vulnerabilityDetails/cveId", Value::Null);
    *r.pointer_mut("/properties/id").expect("id") = Value::Null;
    assert!(read_row(&r, &k).unwrap_err().contains("no vulnerability id"));
    let mut r = good.clone();
    *r.pointer_mut("/properties/status/severity").expect("s") = Value::Null;
    *r.pointer_mut("/properties/additionalData/vulnerabilityDetails/severity").expect("s") = Value::Null;
    assert!(read_row(&r, &k).unwrap_err().contains("no severity"));
}

#[test]
fn grants_decide_the_subscriptions_and_the_rows() {
    let (scopes, subscriptions) = registry_scopes(&[
        "/subscriptions/s1/resourceGroups/shop".into(),
        "/subscriptions/S1/resourceGroups/shop-staging".into(),
        "/subscriptions/s2".into(),
        "/subscriptions/s3/resourceGroups/rg/providers/Microsoft.App/containerApps/web".into(),
    ]);
    assert_eq!(subscriptions, ["s1", "s2"], "an app grant holds no registry");
    assert_eq!(scopes.len(), 3);
    let id = |rid: &str| format!("{rid}/providers/Microsoft.Security/assessments/{ASSESSMENT_KEY}/subassessments/x");
    assert!(within_scopes(&id(REGISTRY_ID), &scopes));
    assert!(within_scopes(&id(&REGISTRY_ID.replace("resourceGroups/shop", "RESOURCEGROUPS/SHOP")), &scopes));
    assert!(
        !within_scopes(&id(&REGISTRY_ID.replace("/shop/", "/shop-prod/")), &scopes),
        "a name prefix is not a scope"
    );
    assert!(within_scopes(&id(&REGISTRY_ID.replace("s1/resourceGroups/shop", "s2/resourceGroups/any")), &scopes));
    assert!(!within_scopes("/subscriptions/s1/../s9/x", &scopes));
    assert_eq!(registry_scopes(&[]).1, Vec::<String>::new());
}

#[test]
fn nothing_known_is_not_clean() {
    let (k, d) = (key(), digest());
    let image = format!("shopacr.azurecr.io/shop/app@{DIGEST}");
    let scopes = vec!["/subscriptions/s1/resourceGroups/shop".to_string()];
    let later = now() + jiff::SignedDuration::from_hours(1);
    // No rows: wait; after the deadline: an error naming the digest and the setting.
    assert_eq!(decide(&k, &[], &scopes, &request(&d, &image, now(), None)).expect("decide"), None);
    assert_eq!(decide(&k, &[], &scopes, &request(&d, &image, now(), Some(later))).expect("decide"), None);
    let err = decide(&k, &[], &scopes, &request(&d, &image, later, Some(later))).unwrap_err().to_string();
    assert!(err.contains("has not assessed") && err.contains(DIGEST) && err.contains("assessmentTimeout"), "{err}");
    // Rows of another team's resource group do not count, not even as an assessment.
    let foreign = row(&REGISTRY_ID.replace("/shop/", "/other/"), "CVE-9", "Unhealthy", "Critical", "2", "FixAvailable");
    assert_eq!(decide(&k, &[foreign], &scopes, &request(&d, &image, now(), None)).expect("decide"), None);
    // Healthy rows only: assessed, no findings.
    let healthy = row(REGISTRY_ID, "CVE-5", "Healthy", "High", "", "");
    let report = decide(&k, std::slice::from_ref(&healthy), &scopes, &request(&d, &image, now(), None))
        .expect("decide")
        .expect("report");
    assert!(report.findings.is_empty());
    assert_eq!(report.produced_at, Some("2026-12-02T10:00:00.1234567Z".parse().expect("time")));
    // A stale assessment (older than maxReportAge) is not a result either.
    let old = now() + jiff::SignedDuration::from_hours(30);
    assert_eq!(
        decide(&k, std::slice::from_ref(&healthy), &scopes, &request(&d, &image, old, None)).expect("decide"),
        None
    );
    // Findings next to healthy rows.
    let finding = row(REGISTRY_ID, "CVE-6", "Unhealthy", "Critical", "2", "FixAvailable");
    let report =
        decide(&k, &[healthy, finding], &scopes, &request(&d, &image, now(), None)).expect("decide").expect("report");
    assert_eq!(report.findings.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["CVE-6"]);
    // A malformed row fails the scan with the reason.
    let bad = json!({"id": format!("{REGISTRY_ID}/providers/Microsoft.Security/assessments/{ASSESSMENT_KEY}/subassessments/z"), "properties": {}});
    assert!(matches!(decide(&k, &[bad], &scopes, &request(&d, &image, now(), None)), Err(ProviderError::Permanent(_))));
}

#[test]
fn request_bodies_page_with_the_skip_token() {
    let body = request_body(&["s1".into()], "q", None);
    assert_eq!(
        body,
        json!({"subscriptions": ["s1"], "query": "q", "options": {"$top": PAGE_SIZE, "resultFormat": "objectArray"}})
    );
    let body = request_body(&["s1".into()], "q", Some("tok"));
    assert_eq!(body["options"]["$skipToken"], "tok");
}
