//! A CVE in what runs starts the fix: production runs an application image on a base image; the
//! vulnerability database (real Trivy, offline, database written from fixtures) gains a CVE for
//! one of its packages; the rescan finds it; a Release of type `VulnerabilitiesFound` rebases
//! onto the fixed base; the candidate passes every gate and its Promotion waits for approval,
//! production untouched. And when no fix exists, or the rebuild does not fix it: a clear status,
//! and no Release loop.

mod common;

use std::time::Duration;

use common::{MINUTE, Scenario, http_server};
use kube::api::{Api, ListParams};
use serde_json::json;
use tidegate_api::release::ReasonKind;
use tidegate_api::{ImagePolicy, PromotionPhase, Release, ReleasePhase};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::scanner_tools::{
    Advisory, ImageOs, Package, ScannerTools, alpine_advisories, file_layer, package_image_layers, push_package_image,
    write_vulnerability_db,
};

/// Alpine 3.20 data with nothing about the packages the images carry.
fn nothing_known() -> String {
    alpine_advisories(&[Advisory {
        package: "zlib",
        id: "CVE-2022-37434",
        fixed: "1.2.12-r2",
        severity: "CRITICAL",
        title: "zlib: heap-based buffer over-read",
    }])
}

/// Advisories `(id, fixed version, severity)` for openssl.
fn database_with(advisories: &[(&'static str, &'static str, &'static str)]) -> String {
    let advisories: Vec<Advisory> = advisories
        .iter()
        .map(|&(id, fixed, severity)| Advisory { package: "openssl", id, fixed, severity, title: id })
        .collect();
    alpine_advisories(&advisories)
}

/// The registry, a base image `base/runtime:3.20` with `openssl` at `old_openssl`, and the
/// application `shop/app:1.0` built on it (base annotations, base layers + its own layer). The
/// base tag then moves to `new_openssl`, when given. Returns (registry, host, app digest).
async fn images(old_openssl: &str, new_openssl: Option<&str>) -> (Registry, String, String) {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let packages = |openssl: &str| vec![Package::new("musl", "1.2.5-r0"), Package::new("openssl", openssl)];
    let base = push_package_image(&registry, "base/runtime", "3.20", &ImageOs::alpine(), &packages(old_openssl))
        .await
        .expect("push base");
    let mut layers = package_image_layers(&ImageOs::alpine(), &packages(old_openssl));
    layers.push(file_layer("app/server", b"the shop application\n"));
    let base_name = format!("{host}/base/runtime:3.20");
    let annotations =
        [("org.opencontainers.image.base.name", base_name.as_str()), ("org.opencontainers.image.base.digest", &base)];
    let app = registry.client().push_layered("shop/app", "1.0", &layers, &annotations).await.expect("push app");
    if let Some(new) = new_openssl {
        push_package_image(&registry, "base/runtime", "3.20", &ImageOs::alpine(), &packages(new))
            .await
            .expect("push fixed base");
    }
    (registry, host, app)
}

/// The policy: Trivy scans, production is rescanned, rebuilds rebase onto the base tag.
async fn policy(s: &Scenario, host: &str, url: &str) {
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "triggers": {
            "baseImage": {"ref": format!("{host}/base/runtime:3.20"), "interval": "1m"},
            "rescan": {"interval": "24h"}
        },
        "build": {"strategy": "rebase"},
        "scan": {"scanner": "trivy", "blockSeverities": ["Critical", "High"], "onlyFixable": true, "exceptions": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]}
    }))
    .await;
}

/// Waits until the policy's last rescan used a database other than `not` and satisfies `check`.
async fn rescanned(
    s: &Scenario,
    not: Option<&str>,
    timeout: Duration,
    check: impl Fn(&tidegate_api::image_policy::ProductionScan) -> bool,
) -> ImagePolicy {
    let api: Api<ImagePolicy> = Api::namespaced(s.admin.clone(), &s.ns);
    common::wait("a rescan of production", timeout, || async {
        let policy = api.get("shop-app").await.ok()?;
        let scan = policy.status.as_ref()?.production_scan.as_ref()?;
        (scan.database.as_deref() != not && check(scan)).then_some(policy.clone())
    })
    .await
}

fn condition(policy: &ImagePolicy, kind: &str) -> (String, String, String) {
    let c = policy
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == kind))
        .unwrap_or_else(|| panic!("no {kind} condition: {:?}", policy.status));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

async fn releases(s: &Scenario) -> Vec<Release> {
    s.releases().list(&ListParams::default()).await.expect("list releases").items
}

#[tokio::test]
async fn a_cve_in_what_runs_starts_a_rebuild_onto_the_fixed_base_that_waits_for_approval() {
    let tools = ScannerTools::locate().expect("scanner tools (run `cargo xtask tools`)");
    let (_registry, host, app) = images("3.1.0-r0", Some("3.1.4-r0")).await;
    let cache = tempfile::tempdir().expect("cache");
    write_vulnerability_db(&tools, &nothing_known(), cache.path()).expect("database");

    let s = Scenario::new("rescan-fix").await;
    let production = format!("{host}/shop/app@{app}");
    s.set_workload_images(&production).await;
    let (url, _) = http_server(200).await;
    policy(&s, &host, &url).await;
    let controller = s.controller_with_trivy(&tools.trivy(), cache.path(), &host);

    // The first rescan: nothing known about what runs.
    let clean = rescanned(&s, None, 2 * MINUTE, |scan| scan.digest == app).await;
    let scan = clean.status.as_ref().and_then(|s| s.production_scan.clone()).expect("scan");
    assert!(scan.fixable.is_empty() && scan.unfixed.is_empty() && scan.release.is_none(), "{scan:?}");
    assert_eq!(condition(&clean, "VulnerableInProduction").0, "False");
    assert!(releases(&s).await.is_empty(), "a clean rescan starts nothing");

    // The database gains a fixable HIGH advisory for the openssl that production runs.
    write_vulnerability_db(&tools, &database_with(&[("CVE-2023-5678", "3.1.4-r0", "HIGH")]), cache.path())
        .expect("updated database");
    let found = rescanned(&s, scan.database.as_deref(), 2 * MINUTE, |scan| !scan.fixable.is_empty()).await;
    let scan = found.status.as_ref().and_then(|s| s.production_scan.clone()).expect("scan");
    assert_eq!(scan.fixable.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["CVE-2023-5678"], "{scan:?}");
    assert_eq!(scan.fixable[0].installed_version, "3.1.0-r0");
    let name = scan.release.clone().expect("a Release fixes it");
    let (vulnerable, reason, message) = condition(&found, "VulnerableInProduction");
    assert_eq!((vulnerable.as_str(), reason.as_str()), ("True", "FixStarted"), "{message}");
    assert!(message.contains("CVE-2023-5678") && message.contains(&name), "{message}");

    // The Release rebases production onto the fixed base, passes the scan and every gate, and
    // its Promotion waits for a person.
    let release = common::wait("the fix to be verified", 3 * MINUTE, || async {
        let r = s.releases().get(&name).await.ok()?;
        matches!(r.status.as_ref()?.phase, ReleasePhase::Verified | ReleasePhase::Rejected | ReleasePhase::Failed)
            .then_some(r)
    })
    .await;
    let status = release.status.clone().expect("status");
    assert_eq!(status.phase, ReleasePhase::Verified, "{status:?}\n{}", controller.log_tail());
    assert_eq!(release.spec.reason.kind, ReasonKind::VulnerabilitiesFound);
    assert_eq!(release.spec.reason.vulnerabilities.as_deref(), Some(&["CVE-2023-5678".to_string()][..]));
    let candidate = status.digest.clone().expect("candidate digest");
    assert_ne!(candidate, app, "a new image was built");
    let scanned = status.scan.expect("scan summary");
    assert_eq!((scanned.blocking, scanned.high), (0, 0), "the candidate carries the fixed openssl: {scanned:?}");
    assert!(status.build.and_then(|b| b.reference).is_some_and(|r| r.contains("rebased")));
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    assert_eq!(promotion.spec.digest, candidate);
    assert_eq!(s.deployment_image(&s.ns, "web").await, Some(production), "production waits for approval");
    assert_eq!(releases(&s).await.len(), 1, "one Release for one finding");
    drop(controller);
}

#[tokio::test]
async fn a_cve_without_a_fix_or_that_the_rebuild_cannot_fix_is_reported_without_a_release_loop() {
    let tools = ScannerTools::locate().expect("scanner tools (run `cargo xtask tools`)");
    // The base tag never moves: a rebuild lands on the same openssl.
    let (_registry, host, app) = images("3.1.0-r0", None).await;
    let cache = tempfile::tempdir().expect("cache");
    // A CRITICAL advisory with no fix published yet.
    write_vulnerability_db(&tools, &database_with(&[("CVE-2024-0727", "", "CRITICAL")]), cache.path())
        .expect("database");

    let s = Scenario::new("rescan-nofix").await;
    s.set_workload_images(&format!("{host}/shop/app@{app}")).await;
    let (url, _) = http_server(200).await;
    policy(&s, &host, &url).await;
    let controller = s.controller_with_trivy(&tools.trivy(), cache.path(), &host);

    let unfixed = rescanned(&s, None, 2 * MINUTE, |scan| !scan.unfixed.is_empty()).await;
    let scan = unfixed.status.as_ref().and_then(|s| s.production_scan.clone()).expect("scan");
    assert_eq!(scan.unfixed.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["CVE-2024-0727"], "{scan:?}");
    assert!(scan.fixable.is_empty() && scan.release.is_none(), "{scan:?}");
    let (vulnerable, reason, message) = condition(&unfixed, "VulnerableInProduction");
    assert_eq!((vulnerable.as_str(), reason.as_str()), ("True", "NoFixAvailable"), "{message}");
    assert!(message.contains("no fix yet"), "{message}");
    assert!(releases(&s).await.is_empty(), "nothing to rebuild for: no Release");

    // A fix is published for another advisory, but the base still carries the vulnerable
    // openssl: one Release tries, its rebuild still carries the finding, and it says so.
    let db = database_with(&[("CVE-2024-0727", "", "CRITICAL"), ("CVE-2023-5678", "3.1.4-r0", "HIGH")]);
    write_vulnerability_db(&tools, &db, cache.path()).expect("updated database");
    let found = rescanned(&s, scan.database.as_deref(), 2 * MINUTE, |scan| scan.release.is_some()).await;
    let name = found.status.and_then(|s| s.production_scan).and_then(|s| s.release).expect("release");
    let rejected = common::wait("the fix attempt to end", 3 * MINUTE, || async {
        let r = s.releases().get(&name).await.ok()?;
        matches!(r.status.as_ref()?.phase, ReleasePhase::Verified | ReleasePhase::Rejected | ReleasePhase::Failed)
            .then_some(r)
    })
    .await;
    let status = rejected.status.expect("status");
    assert_eq!(status.phase, ReleasePhase::Rejected, "{status:?}\n{}", controller.log_tail());
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "FixNotEffective", "{ready:?}");
    assert!(ready.message.contains("still carries CVE-2023-5678"), "{}", ready.message);

    // The database updates again with the same advisories: the rescan runs, and starts nothing new.
    let before = rescanned(&s, None, MINUTE, |_| true).await;
    let last = before.status.and_then(|s| s.production_scan).and_then(|s| s.database);
    write_vulnerability_db(&tools, &db, cache.path()).expect("same database again");
    rescanned(&s, last.as_deref(), 2 * MINUTE, |scan| scan.release.as_deref() == Some(name.as_str())).await;
    assert_eq!(releases(&s).await.len(), 1, "no Release loop");
    drop(controller);
}

/// `spec.triggers.rescan.scanner: trivyOperator`: the Trivy Operator's report of the digest
/// production runs (read as the policy namespace's deployer, where the production namespace's
/// owner bound `tidegate-vulnerability-reports`) starts the fix like a Trivy rescan does.
#[tokio::test]
async fn the_trivy_operators_report_of_what_runs_starts_the_fix() {
    let s = Scenario::new("rescan-operator").await;
    s.apply(
        &format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: tidegate-vulnerability-reports-from-{ns}, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-vulnerability-reports}}
subjects:
- {{kind: ServiceAccount, name: tidegate-deployer, namespace: {ns}}}
"#,
            ns = s.ns
        ),
        &s.ns,
    )
    .await;
    // The operator's report of what production runs (registry.example.com/shop/app@BEFORE),
    // from the shared fixture: its first finding is a fixable HIGH (gogo/protobuf, fixed in 1.3.2).
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/scanners/trivy-operator/vulnerability-ttl.yaml");
    let mut report: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture yaml");
    let metadata = report["metadata"].as_object_mut().expect("metadata");
    for generated in ["creationTimestamp", "uid", "generation", "ownerReferences", "resourceVersion"] {
        metadata.remove(generated);
    }
    report["metadata"]["name"] = json!("replicaset-web-app");
    report["metadata"]["namespace"] = json!(s.ns);
    report["report"]["artifact"] = json!({"repository": "shop/app", "tag": "1.0", "digest": common::BEFORE});
    report["report"]["registry"] = json!({"server": "registry.example.com"});
    report["report"]["os"] = json!({"family": "alpine", "name": "3.20.3"});
    report["report"]["updateTimestamp"] =
        json!(jiff::Timestamp::now().round(jiff::Unit::Second).expect("round").to_string());
    for v in report["report"]["vulnerabilities"].as_array_mut().expect("vulnerabilities") {
        v["lastModifiedDate"] = json!("2022-01-01T00:00:00Z");
        v["publishedDate"] = json!("2021-01-01T00:00:00Z");
    }
    let object: kube::api::DynamicObject = serde_json::from_value(report).expect("report object");
    let reports: Api<kube::api::DynamicObject> =
        Api::namespaced_with(s.admin.clone(), &s.ns, &tidegate_providers::trivy_operator::api_resource());
    reports.create(&Default::default(), &object).await.expect("create the VulnerabilityReport");

    s.policy(json!({"triggers": {"rescan": {"interval": "1h", "scanner": "trivyOperator"}}})).await;
    let controller = s.controller();
    let found = rescanned(&s, Some("never"), 2 * MINUTE, |scan| !scan.fixable.is_empty()).await;
    let scan = found.status.as_ref().and_then(|s| s.production_scan.clone()).expect("scan");
    assert_eq!(scan.digest, common::BEFORE);
    assert!(
        scan.fixable.iter().any(|f| f.id == "CVE-2021-3121" && f.package == "github.com/gogo/protobuf"),
        "{scan:?}"
    );
    let name = scan.release.clone().expect("a Release");
    let release = s.releases().get(&name).await.expect("the Release exists");
    assert_eq!(release.spec.reason.kind, ReasonKind::VulnerabilitiesFound, "{}", controller.log_tail());
    assert!(release.spec.reason.vulnerabilities.unwrap_or_default().contains(&"CVE-2021-3121".to_string()));
    let (vulnerable, reason, _) = condition(&found, "VulnerableInProduction");
    assert_eq!((vulnerable.as_str(), reason.as_str()), ("True", "FixStarted"));
    drop(controller);
}
