//! `spec.scan.scanner: trivy` end to end: the controller runs the real Trivy (built from its Go
//! module) on the exact candidate digest in the loopback registry, offline, with a vulnerability
//! database written from fixtures; the findings decide the gate, and what blocks is on the
//! Release.

mod common;

use common::{MINUTE, Scenario, http_server};
use kube::api::PostParams;
use serde_json::json;
use tidegate_api::{PromotionPhase, Release, ReleasePhase};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::scanner_tools::{
    Advisory, ImageOs, Package, ScannerTools, alpine_advisories, push_package_image, write_vulnerability_db,
};

/// Alpine 3.20's openssl: one fixed vulnerability (HIGH) and one without a fix (CRITICAL).
const OPENSSL: [Advisory; 2] = [
    Advisory {
        package: "openssl",
        id: "CVE-2023-5678",
        fixed: "3.1.4-r0",
        severity: "HIGH",
        title: "openssl: Generating excessively long X9.42 DH keys is slow",
    },
    Advisory {
        package: "openssl",
        id: "CVE-2024-0727",
        fixed: "",
        severity: "CRITICAL",
        title: "openssl: denial of service via null dereference",
    },
];

async fn release(s: &Scenario, name: &str, image: &str) {
    let release: Release = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"policy": "shop-app", "reason": {"type": "Manual"}, "source": {"image": image}}
    }))
    .expect("release");
    s.releases().create(&PostParams::default(), &release).await.expect("create release");
}

async fn release_ended(s: &Scenario, name: &str) -> Release {
    common::wait(&format!("release {name} to leave Scanning"), 2 * MINUTE, || async {
        let r = s.releases().get(name).await.ok()?;
        let phase = r.status.as_ref()?.phase;
        matches!(phase, ReleasePhase::Rejected | ReleasePhase::Verified).then_some(r)
    })
    .await
}

#[tokio::test]
async fn trivy_scans_the_candidate_digest_and_its_findings_decide() {
    let tools = ScannerTools::locate().expect("scanner tools (run `cargo xtask tools`)");
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let cache = tempfile::tempdir().expect("cache");
    write_vulnerability_db(&tools, &alpine_advisories(&OPENSSL), cache.path()).expect("vulnerability database");
    let vulnerable = push_package_image(
        &registry,
        "shop/app",
        "1.0",
        &ImageOs::alpine(),
        &[Package::new("musl", "1.2.5-r0"), Package::new("openssl", "3.1.0-r0")],
    )
    .await
    .expect("push");
    let fixed = push_package_image(
        &registry,
        "shop/app",
        "1.1",
        &ImageOs::alpine(),
        &[Package::new("musl", "1.2.5-r0"), Package::new("openssl", "3.1.4-r0")],
    )
    .await
    .expect("push");

    let s = Scenario::new("scan-trivy").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "triggers": {"rescan": null},
        "scan": {"scanner": "trivy", "blockSeverities": ["Critical", "High"], "onlyFixable": true, "exceptions": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]}
    }))
    .await;
    let controller = s.controller_with_trivy(&tools.trivy(), cache.path(), &host);

    // The vulnerable build: the fixable HIGH finding blocks; the CRITICAL one without a fix is
    // counted and shown, but does not block (onlyFixable).
    release(&s, "shop-app-vulnerable", &format!("{host}/shop/app@{vulnerable}")).await;
    let rejected = release_ended(&s, "shop-app-vulnerable").await;
    let status = rejected.status.expect("status");
    assert_eq!(status.phase, ReleasePhase::Rejected, "{status:?}\n{}", controller.log_tail());
    let scan = status.scan.expect("scan summary");
    assert_eq!(scan.scanner.as_deref(), Some("trivy"));
    assert_eq!((scan.critical, scan.high, scan.blocking), (1, 1, 1), "{scan:?}");
    assert_eq!(scan.blocking_ids, ["CVE-2023-5678"]);
    let top = &scan.top[0];
    assert!(top.blocking && top.id == "CVE-2023-5678", "blocking findings come first: {:?}", scan.top);
    assert_eq!((top.package.as_str(), top.installed_version.as_str()), ("openssl", "3.1.0-r0"));
    assert_eq!(top.fixed_version.as_deref(), Some("3.1.4-r0"));
    assert!(scan.top.iter().any(|f| f.id == "CVE-2024-0727" && !f.blocking && f.fixed_version.is_none()));
    let blocked = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert!(blocked.message.contains("CVE-2023-5678"), "{blocked:?}");

    // The fixed build passes the gate and waits for approval.
    release(&s, "shop-app-fixed", &format!("{host}/shop/app@{fixed}")).await;
    let verified = release_ended(&s, "shop-app-fixed").await;
    let status = verified.status.expect("status");
    assert_eq!(status.phase, ReleasePhase::Verified, "{status:?}\n{}", controller.log_tail());
    let scan = status.scan.expect("scan summary");
    assert_eq!((scan.critical, scan.high, scan.blocking), (1, 0, 0), "{scan:?}");
    s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    drop(controller);
}

#[tokio::test]
async fn a_policy_naming_trivy_stops_when_the_controller_does_not_run_it() {
    let s = Scenario::new("scan-trivy-missing").await;
    s.policy(json!({"triggers": {"rescan": null}, "scan": {"scanner": "trivy"}})).await;
    let controller = s.controller();
    s.trigger("first").await;
    let rejected = s.release_in(ReleasePhase::Rejected, MINUTE).await;
    let ready = rejected.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "ScannerNotConfigured", "{ready:?}\n{}", controller.log_tail());
    assert!(ready.message.contains("--trivy-binary"), "{}", ready.message);
    drop(controller);
}

/// `spec.scan.noRegression`: the digest production runs is scanned too; a candidate that carries
/// only what production already carries passes, one with a new blocking finding does not.
#[tokio::test]
async fn no_regression_blocks_only_findings_production_does_not_have() {
    let tools = ScannerTools::locate().expect("scanner tools (run `cargo xtask tools`)");
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let cache = tempfile::tempdir().expect("cache");
    let zlib = Advisory {
        package: "zlib",
        id: "CVE-2022-37434",
        fixed: "1.2.12-r2",
        severity: "CRITICAL",
        title: "zlib: heap-based buffer over-read",
    };
    let fixtures = alpine_advisories(&[OPENSSL[0].clone(), OPENSSL[1].clone(), zlib]);
    write_vulnerability_db(&tools, &fixtures, cache.path()).expect("vulnerability database");
    let os = ImageOs::alpine();
    let openssl = Package::new("openssl", "3.1.0-r0");
    let production =
        push_package_image(&registry, "shop/app", "1.0", &os, &[Package::new("musl", "1.2.5-r0"), openssl.clone()])
            .await
            .expect("push");
    // The same vulnerable openssl, another musl: no new finding.
    let same =
        push_package_image(&registry, "shop/app", "1.1", &os, &[Package::new("musl", "1.2.5-r1"), openssl.clone()])
            .await
            .expect("push");
    // And a vulnerable zlib on top: one new CRITICAL finding.
    let worse = push_package_image(
        &registry,
        "shop/app",
        "1.2",
        &os,
        &[Package::new("musl", "1.2.5-r0"), openssl, Package::new("zlib", "1.2.12-r0")],
    )
    .await
    .expect("push");

    let s = Scenario::new("scan-noregression").await;
    s.set_workload_images(&format!("{host}/shop/app@{production}")).await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "scan": {"scanner": "trivy", "noRegression": true, "exceptions": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]}
    }))
    .await;
    let controller = s.controller_with_trivy(&tools.trivy(), cache.path(), &host);
    // No-regression compares with what the policy's status says production runs.
    let policies: kube::Api<tidegate_api::ImagePolicy> = kube::Api::namespaced(s.admin.clone(), &s.ns);
    common::wait("the production digest in the policy's status", MINUTE, || async {
        let p = policies.get("shop-app").await.ok()?;
        (p.status?.production_digest.as_deref() == Some(production.as_str())).then_some(())
    })
    .await;

    release(&s, "shop-app-worse", &format!("{host}/shop/app@{worse}")).await;
    let status = release_ended(&s, "shop-app-worse").await.status.expect("status");
    assert_eq!(status.phase, ReleasePhase::Rejected, "{status:?}\n{}", controller.log_tail());
    let scan = status.scan.expect("scan summary");
    assert_eq!(scan.blocking_ids, ["CVE-2022-37434"], "only the new finding blocks: {scan:?}");
    assert_eq!(scan.high, 1, "production's own HIGH finding is still counted: {scan:?}");

    release(&s, "shop-app-same", &format!("{host}/shop/app@{same}")).await;
    let status = release_ended(&s, "shop-app-same").await.status.expect("status");
    assert_eq!(status.phase, ReleasePhase::Verified, "{status:?}\n{}", controller.log_tail());
    let scan = status.scan.expect("scan summary");
    assert_eq!((scan.high, scan.blocking), (1, 0), "no worse than production: {scan:?}");
    assert_eq!(scan.inherited, ["CVE-2023-5678"], "what production has too is named: {scan:?}");
    assert!(scan.database.is_some() && scan.produced_at.is_some(), "which data, and when: {scan:?}");
    drop(controller);
}
