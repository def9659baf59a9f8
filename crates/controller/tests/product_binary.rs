//! Nothing test-only ships: the product binary `tidegate-controller` offers no test double (no
//! in-process builder, no HMAC signer), does not depend on `tidegate-test-support`, and without
//! signing configuration signs and trusts nothing: a Release stops before staging with
//! `SigningNotConfigured`, and an approved Promotion does not reach production.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{CLEAN_REPORT, REPO, Scenario, http_server};
use kube::api::PostParams;
use serde_json::json;
use tidegate_api::{PromotionPhase, Release, ReleasePhase};

const MINUTE: Duration = Duration::from_secs(60);
const PRODUCT: &str = env!("CARGO_BIN_EXE_tidegate-controller");

/// `--help` of `binary`.
fn help(binary: &std::path::Path) -> String {
    let out = Command::new(binary).arg("--help").output().expect("run --help");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_product_binary_has_no_test_double_flags() {
    let product = help(PRODUCT.as_ref());
    assert!(product.contains("--trust-policy-file"), "{product}");
    for double in ["in-process", "--builder", "--signing-key-file"] {
        assert!(!product.contains(double), "the product offers {double}:\n{product}");
    }
    for args in [&["--builder", "in-process"][..], &["--signing-key-file", "/dev/null"]] {
        let out = Command::new(PRODUCT).args(args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("unexpected argument"), "{args:?}: {stderr}");
    }
    // The same words do name the doubles in the fakes binary, so their absence above means something.
    let fakes = help(common::fakes_binary());
    for double in ["in-process", "--builder", "--signing-key-file", "--trust-policy-file"] {
        assert!(fakes.contains(double), "tidegate-controller-fakes lacks {double}:\n{fakes}");
    }
}

#[test]
fn the_product_does_not_depend_on_test_support() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "-p", "tidegate-controller", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .output()
        .expect("run cargo tree");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.lines().any(|l| l.starts_with("tidegate-providers ")), "{tree}");
    assert!(!tree.contains("tidegate-test-support"), "the product depends on the test doubles:\n{tree}");
}

/// A policy on the scenario's registry name with no trigger that would reach a registry, and a
/// staging check that passes.
async fn quiet_policy(s: &Scenario) {
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "triggers": {"baseImage": null, "rescan": null},
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]}
    }))
    .await;
}

#[tokio::test]
async fn without_signing_configuration_a_release_stops_before_staging() {
    let s = Scenario::new("product-unsigned").await;
    quiet_policy(&s).await;
    let staging_before = s.deployment_image(&s.staging, "web").await;
    let controller = s.product(&[]);
    // An externally built candidate, pinned by digest: the registry builder needs no registry.
    let source = format!("{REPO}@sha256:{}", "5".repeat(64));
    let release: Release = serde_json::from_value(json!({
        "metadata": {"name": "shop-app-external-1"},
        "spec": {"policy": "shop-app", "reason": {"type": "Manual"}, "source": {"image": source}}
    }))
    .expect("release");
    s.releases().create(&PostParams::default(), &release).await.expect("create release");
    s.upload_scan_report(CLEAN_REPORT).await;

    let rejected = s.release_in(ReleasePhase::Rejected, MINUTE).await;
    let status = rejected.status.expect("status");
    for type_ in ["Signed", "Ready", "Blocked"] {
        let condition = status.conditions.iter().find(|c| c.type_ == type_).expect(type_);
        assert_eq!(condition.reason, "SigningNotConfigured", "{condition:?}\n{}", controller.log_tail());
        for flag in ["--trust-policy-file", "--trust-store-dir", "--notary-key-file", "--notary-cert-file"] {
            assert!(condition.message.contains(flag), "{}", condition.message);
        }
    }
    assert_eq!(status.conditions.iter().find(|c| c.type_ == "Signed").map(|c| c.status.as_str()), Some("False"));
    assert!(status.signature.is_none() && status.staging.is_none(), "{status:?}");
    assert_eq!(s.deployment_image(&s.staging, "web").await, staging_before, "staging untouched");
    assert!(s.promotions().list(&Default::default()).await.expect("list").items.is_empty(), "no Promotion");
    drop(controller);
}

#[tokio::test]
async fn without_signing_configuration_an_approved_promotion_does_not_reach_production() {
    let s = Scenario::new("product-unverified").await;
    quiet_policy(&s).await;
    // A Release signed by the fakes (HMAC) waits for approval ...
    let fakes = s.controller();
    s.trigger("signed-by-fakes").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    s.release_in(ReleasePhase::Verified, MINUTE).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    drop(fakes);
    let production = s.production().await;

    // ... and the product, which has no signing configuration, cannot verify it: no production write.
    let controller = s.product(&[]);
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, promotion.metadata.name.as_deref().expect("name"), "alice").await.expect("approve");
    let failed = s.promotion_in(PromotionPhase::Failed, MINUTE).await;
    let condition = failed
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "SignatureVerified")
        .expect("SignatureVerified");
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("signing is not configured"),
        "{}\n{}",
        condition.message,
        controller.log_tail()
    );
    assert_eq!(s.production().await, production, "production untouched");
    drop(controller);
}
