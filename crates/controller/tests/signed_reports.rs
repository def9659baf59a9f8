//! `spec.scan.scanner: trivyReport` end to end, with the product binary signing with a Notary
//! Project key: CI attaches its Trivy report to the candidate digest and signs the report with
//! the real `notation sign` and its own key, which the controller's trust policy trusts. An
//! unsigned report leaves the Release waiting in Scanning; once signed, its findings decide the
//! gate. A report pushed to the repository and named as a candidate is never signed by the
//! controller, so it cannot become a trusted report.

mod common;

// The provider tests' helpers: a registry where CI attaches reports and signs them with notation.
#[allow(dead_code)]
#[path = "../../providers/tests/common/mod.rs"]
mod provider_common;

use common::{CLEAN_REPORT, MINUTE, Scenario, http_server};
use kube::api::PostParams;
use provider_common::{Setup, notation_sign};
use serde_json::json;
use tidegate_api::{PromotionPhase, Release, ReleasePhase};
use tidegate_providers::signed_report::REPORT_ARTIFACT_TYPE;
use tidegate_testenv::pki::write_code_signing_identity;
use tidegate_testenv::registry::RegistryKind;

/// `artifactType` of Notary Project signatures.
const NOTARY_SIGNATURE: &str = "application/vnd.cncf.notary.signature";

/// Creates Release `name` of the externally built `image`.
async fn release(s: &Scenario, name: &str, image: &str) {
    let release: Release = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"policy": "shop-app", "reason": {"type": "Manual"}, "source": {"image": image}}
    }))
    .expect("release");
    s.releases().create(&PostParams::default(), &release).await.expect("create release");
}

/// Waits until Release `name` is in `phase`.
async fn release_in(s: &Scenario, name: &str, phase: ReleasePhase) -> Release {
    common::wait(&format!("release {name} in {phase:?}"), 2 * MINUTE, || async {
        let r = s.releases().get(name).await.ok()?;
        (r.status.as_ref()?.phase == phase).then_some(r)
    })
    .await
}

/// A Trivy report of `image` made now, with `vulnerabilities`.
fn report(image: &str, vulnerabilities: serde_json::Value) -> String {
    let mut report: serde_json::Value = serde_json::from_str(CLEAN_REPORT).expect("report");
    report["ArtifactName"] = json!(image);
    report["CreatedAt"] = json!(jiff::Timestamp::now().to_string());
    report["Results"][0]["Vulnerabilities"] = vulnerabilities;
    report.to_string()
}

#[tokio::test]
async fn only_reports_signed_by_a_trusted_ci_key_decide_the_gate() {
    let registry = Setup::new(RegistryKind::Distribution).await;
    let (client, repo, host) = (&registry.client, &registry.repo, registry.registry.host().to_string());
    let plain_http = registry.registry.plain_http_hosts();
    let before = registry.image("1.0", 1024).await;
    let clean = registry.image("1.1", 1500).await;
    let vulnerable = registry.image("1.2", 1700).await;

    let s = Scenario::new("signed-reports").await;
    s.set_workload_images(&format!("{host}/shop/app@{before}")).await;
    let (url, _) = http_server(200).await;
    let policy = |scanner: &str| {
        json!({
            "image": format!("{host}/shop/app"),
            "triggers": {"rescan": null},
            "scan": {"scanner": scanner},
            "workloads": [{"name": "web", "kind": "http",
                "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
                "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
            "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
            "promotion": {"requiredApprovals": 1}
        })
    };
    s.policy(policy("trivyReport")).await;

    // The controller's key, and CI's key whose root the controller's trust store also holds.
    let keys = tempfile::tempdir().expect("keys");
    let identity = write_code_signing_identity(&keys.path().join("controller"), "tidegate", "tidegate").expect("id");
    let ci = write_code_signing_identity(&keys.path().join("ci"), "ci", "ci").expect("ci identity");
    let store = identity.root.parent().expect("store").join("ci-root.pem");
    std::fs::copy(&ci.root, store).expect("trust CI's root");
    let args = common::notary_args(&identity, &plain_http);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let controller = s.product(&args);

    // An unsigned report of the clean candidate: the controller reads it, does not count it,
    // and the Release waits in Scanning.
    let clean_image = registry.pinned(&clean);
    release(&s, "shop-app-clean", &clean_image).await;
    release_in(&s, "shop-app-clean", ReleasePhase::Scanning).await;
    let unsigned = registry.attach(&clean, &report(&clean_image, json!([])), "application/json").await;
    common::wait("the controller to refuse the unsigned report", MINUTE, || async {
        controller.logged(&unsigned).then_some(())
    })
    .await;
    assert!(controller.logged("not signed by a trusted key"), "{}", controller.log_tail());
    let waiting = s.releases().get("shop-app-clean").await.expect("release");
    assert_eq!(waiting.status.map(|st| st.phase), Some(ReleasePhase::Scanning), "{}", controller.log_tail());

    // CI signs it: the Release passes the gate, is signed and tested, and waits for approval.
    let (ok, out) = notation_sign(&ci, &format!("{repo}@{unsigned}"));
    assert!(ok, "notation sign: {out}");
    let verified = release_in(&s, "shop-app-clean", ReleasePhase::Verified).await;
    let scan = verified.status.expect("status").scan.expect("scan summary");
    assert_eq!((scan.scanner.as_deref(), scan.blocking), (Some("trivyReport"), 0), "{scan:?}");
    s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;

    // A signed report with a fixable HIGH finding rejects the vulnerable candidate.
    let vulnerable_image = registry.pinned(&vulnerable);
    release(&s, "shop-app-vulnerable", &vulnerable_image).await;
    release_in(&s, "shop-app-vulnerable", ReleasePhase::Scanning).await;
    let finding = json!([{"VulnerabilityID": "CVE-2023-5678", "PkgName": "openssl", "InstalledVersion": "3.1.0-r0",
        "FixedVersion": "3.1.4-r0", "Severity": "HIGH"}]);
    registry.attach_signed(&vulnerable, &report(&vulnerable_image, finding), &ci).await;
    let rejected = release_in(&s, "shop-app-vulnerable", ReleasePhase::Rejected).await;
    let status = rejected.status.expect("status");
    assert_eq!(status.scan.as_ref().map(|scan| scan.blocking_ids.clone()), Some(vec!["CVE-2023-5678".to_string()]));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "BlockingVulnerabilities", "{ready:?}");

    // Someone who may create Releases names an unsigned clean report of the vulnerable digest as
    // the candidate, in a namespace that accepts unsigned ConfigMap reports. It passes that gate,
    // but the controller refuses to sign a report: it never becomes a trusted one.
    let forged = registry.attach(&vulnerable, &report(&vulnerable_image, json!([])), "application/json").await;
    s.policy(policy("configMapReport")).await;
    release(&s, "shop-app-forged", &format!("{host}/shop/app@{forged}")).await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let failed = release_in(&s, "shop-app-forged", ReleasePhase::Failed).await;
    let ready = failed.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert!(ready.message.contains("refusing to sign") && ready.message.contains(REPORT_ARTIFACT_TYPE), "{ready:?}");
    let signatures = client.referrers(repo, &forged, Some(NOTARY_SIGNATURE)).await.expect("referrers");
    assert!(signatures.is_empty(), "the controller signed a report: {signatures:?}");
    drop(controller);
}
