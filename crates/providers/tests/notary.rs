//! Notary Project signatures in a real registry, both ways with the real `notation` CLI:
//! `notation verify` accepts Tidegate's signatures, and Tidegate verifies `notation sign`'s.
//! Untrusted, missing and mismatched signatures fail closed with a reason.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::Identity;
use tidegate_core::Digest;
use tidegate_providers::notary_signer::NotarySigner;
use tidegate_providers::registry::{ClientOptions, RegistryClient};
use tidegate_providers::{ProviderError, Signer, Verification};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::tools::SupplyChainTools;

fn write_policy(path: &Path, store: &str) {
    let policy = format!(
        r#"{{"version": "1.0", "trustPolicies": [{{"name": "tests", "registryScopes": ["*"],
            "signatureVerification": {{"level": "strict"}}, "trustStores": ["ca:{store}"], "trustedIdentities": ["*"]}}]}}"#
    );
    std::fs::write(path, policy).expect("policy");
}

/// Runs `notation` with its configuration in `home`; returns (success, output).
fn notation(home: &Path, args: &[&str]) -> (bool, String) {
    let tools = SupplyChainTools::locate().expect("supply-chain tools");
    let output = Command::new(tools.notation())
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .output()
        .expect("run notation");
    (
        output.status.success(),
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
    )
}

async fn image(registry: &Registry, repo: &str) -> (String, Digest) {
    let digest = registry.push_test_image(repo, "v1", &[2048], &[]).await.expect("push image");
    (format!("{}/{repo}@{digest}", registry.host()), digest.parse().expect("digest"))
}

#[tokio::test]
async fn notation_verifies_tidegate_signatures_through_referrers_and_the_fallback() {
    for kind in [RegistryKind::Referrers, RegistryKind::Distribution] {
        let registry =
            Registry::start(RegistryOptions { kind, auth: RegistryAuth::Anonymous }).await.expect("registry");
        let plain_http = registry.plain_http_hosts().into_iter().collect();
        let client = Arc::new(RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client"));
        let identity = Identity::new("tidegate");
        let signer = identity.signer(client.clone(), true);
        let (reference, digest) = image(&registry, "shop/app").await;
        signer.sign(&reference, &digest).await.expect("sign");
        assert!(
            signer.verify(&reference, &digest, "").await.expect("verify").is_valid(),
            "Tidegate verifies its own ({kind:?})"
        );

        // The real notation CLI, configured with the same trust store and policy.
        let home = tempfile::tempdir().expect("home");
        let store = identity.files.root.clone();
        let (ok, out) = notation(
            home.path(),
            &["cert", "add", "--type", "ca", "--store", "tidegate", &store.display().to_string()],
        );
        assert!(ok, "{out}");
        let (ok, out) =
            notation(home.path(), &["policy", "import", "--force", &identity.files.trust_policy.display().to_string()]);
        assert!(ok, "{out}");
        let (ok, out) = notation(home.path(), &["verify", "--insecure-registry", &reference]);
        assert!(ok && out.contains("Successfully verified"), "notation verify ({kind:?}): {out}");
    }
}

#[tokio::test]
async fn tidegate_verifies_notation_signatures_and_fails_closed_otherwise() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Referrers, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let plain_http = registry.plain_http_hosts().into_iter().collect();
    let client = Arc::new(RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client"));
    let (reference, digest) = image(&registry, "shop/app").await;
    let (unsigned_reference, unsigned) = image(&registry, "shop/unsigned").await;

    // notation signs with its own test certificate.
    let home = tempfile::tempdir().expect("home");
    let (ok, out) = notation(home.path(), &["cert", "generate-test", "--default", "notation-test"]);
    assert!(ok, "{out}");
    let (ok, out) = notation(home.path(), &["sign", "--insecure-registry", "--force-referrers-tag=false", &reference]);
    assert!(ok, "{out}");

    // Tidegate trusts notation's certificate: valid.
    let trusting = tempfile::tempdir().expect("dir");
    let store = trusting.path().join("store/x509/ca/notation");
    std::fs::create_dir_all(&store).expect("store");
    let cert = home.path().join("config/notation/localkeys/notation-test.crt");
    std::fs::copy(&cert, store.join("notation-test.crt")).expect("copy cert");
    write_policy(&trusting.path().join("trustpolicy.json"), "notation");
    let verifier = NotarySigner::from_files(
        client.clone(),
        None,
        &trusting.path().join("trustpolicy.json"),
        &trusting.path().join("store"),
    )
    .expect("verifier");
    match verifier.verify(&reference, &digest, "").await.expect("verify") {
        Verification::Valid { signer } => assert!(signer.contains("notation-test"), "{signer}"),
        Verification::Invalid(why) => panic!("notation's signature should verify: {why}"),
    }

    // Unsigned: fails closed and says so.
    match verifier.verify(&unsigned_reference, &unsigned, "").await.expect("verify") {
        Verification::Invalid(why) => assert!(why.contains("no Notary Project signature"), "{why}"),
        other => panic!("{other:?}"),
    }
    // A trust store that does not hold notation's root: untrusted.
    let other = Identity::new("someone else");
    match other.signer(client.clone(), false).verify(&reference, &digest, "").await.expect("verify") {
        Verification::Invalid(why) => assert!(why.contains("no signature of"), "{why}"),
        other => panic!("an untrusted signature must not verify: {other:?}"),
    }
    // Verification only (a trust policy, no key): signing is refused as not configured.
    match other.signer(client.clone(), false).sign(&reference, &digest).await {
        Err(ProviderError::NotConfigured(why)) => assert!(why.contains("--notary-key-file"), "{why}"),
        result => panic!("a verify-only signer must not sign: {result:?}"),
    }
    // A signature of one digest does not vouch for another: copy the signature manifest's
    // envelope to the unsigned image and it must not verify.
    let ours = Identity::new("tidegate");
    ours.signer(client.clone(), true).sign(&reference, &digest).await.expect("sign");
    let referrers = client
        .referrers(&tidegate_providers::registry::Repository::new(registry.host(), "shop/app"), digest.as_str(), None)
        .await
        .expect("referrers");
    assert_eq!(referrers.len(), 2, "notation's and Tidegate's signatures");
    match ours.signer(client.clone(), false).verify(&unsigned_reference, &unsigned, "").await.expect("verify") {
        Verification::Invalid(_) => {}
        other => panic!("{other:?}"),
    }
}
