//! Revocation with CRLs, against the real `notation` CLI: a signing certificate whose CRL
//! distribution point is served on loopback verifies in both before its CA revokes it, and
//! fails in both after; a CRL that cannot be fetched fails both under `strict`, and both only
//! log revocation under `permissive`.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use tidegate_core::Digest;
use tidegate_providers::crl_fetcher::CrlFetcher;
use tidegate_providers::notary_signer::NotarySigner;
use tidegate_providers::registry::{ClientOptions, RegistryClient};
use tidegate_providers::{Signer, Verification};
use tidegate_testenv::crl_authority::RevocableIdentity;
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::tools::SupplyChainTools;

/// `notation verify` in a fresh home (configuration and CRL cache) that trusts `identity`'s
/// root with the trust policy at `policy`. Returns (verified, output).
fn notation_verify(identity: &RevocableIdentity, policy: &Path, reference: &str) -> (bool, String) {
    let tools = SupplyChainTools::locate().expect("supply-chain tools");
    let home = tempfile::tempdir().expect("notation home");
    let run = |args: &[&str]| {
        let output = Command::new(tools.notation())
            .args(args)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            // notation caches CRLs here until their nextUpdate: a fresh cache per run.
            .env("XDG_CACHE_HOME", home.path().join("cache"))
            .output()
            .expect("run notation");
        (
            output.status.success(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        )
    };
    let root = identity.files.root.display().to_string();
    let (ok, out) = run(&["cert", "add", "--type", "ca", "--store", "tidegate", &root]);
    assert!(ok, "notation cert add: {out}");
    let (ok, out) = run(&["policy", "import", "--force", &policy.display().to_string()]);
    assert!(ok, "notation policy import: {out}");
    run(&["verify", "--verbose", "--insecure-registry", reference])
}

fn verifier(
    client: Arc<RegistryClient>,
    identity: &RevocableIdentity,
    policy: &Path,
    max_age: Duration,
) -> NotarySigner {
    NotarySigner::from_files(client, None, policy, &identity.files.trust_store)
        .expect("verifier")
        .with_crl_fetcher(Arc::new(CrlFetcher::new(max_age)))
}

async fn tidegate_verify(signer: &NotarySigner, reference: &str, digest: &Digest) -> Verification {
    signer.verify(reference, digest, "").await.expect("verification runs")
}

#[tokio::test]
async fn notation_and_tidegate_refuse_a_signing_certificate_once_its_ca_revokes_it() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Referrers, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let plain_http = registry.plain_http_hosts().into_iter().collect();
    let client = Arc::new(RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client"));
    let dir = tempfile::tempdir().expect("dir");
    let identity = RevocableIdentity::write(dir.path(), "revocable", "tidegate").expect("identity");
    let strict = identity.files.trust_policy.clone();
    let permissive = dir.path().join("permissive.json");
    identity.write_trust_policy(&permissive, "permissive").expect("permissive policy");

    let digest = registry.push_test_image("shop/app", "v1", &[2048], &[]).await.expect("push");
    let reference = format!("{}/shop/app@{digest}", registry.host());
    let digest: Digest = digest.parse().expect("digest");
    let signer = NotarySigner::from_files(
        client.clone(),
        Some((identity.files.key.as_path(), identity.files.chain.as_path())),
        &strict,
        &identity.files.trust_store,
    )
    .expect("signer");
    signer.sign(&reference, &digest).await.expect("sign");

    // Before revocation: both verify, and both fetched the CRL to do so.
    let fresh = verifier(client.clone(), &identity, &strict, Duration::ZERO);
    match tidegate_verify(&fresh, &reference, &digest).await {
        Verification::Valid { signer } => assert!(signer.contains("revocable signer"), "{signer}"),
        Verification::Invalid(why) => panic!("not revoked yet: {why}"),
    }
    let tidegate_requests = identity.requests();
    assert!(tidegate_requests >= 1, "Tidegate fetched the CRL");
    let (ok, out) = notation_verify(&identity, &strict, &reference);
    assert!(ok && out.contains("Successfully verified"), "notation before revocation: {out}");
    assert!(identity.requests() > tidegate_requests, "notation fetched the CRL");

    // A verifier that reuses CRLs fetches once for two verifications.
    let caching = verifier(client.clone(), &identity, &strict, Duration::from_secs(3600));
    let before = identity.requests();
    assert!(tidegate_verify(&caching, &reference, &digest).await.is_valid());
    assert!(tidegate_verify(&caching, &reference, &digest).await.is_valid());
    assert_eq!(identity.requests(), before + 1, "the second verification reuses the CRL");

    // The CA revokes the signing certificate.
    identity.revoke().expect("revoke");
    match tidegate_verify(&fresh, &reference, &digest).await {
        Verification::Invalid(why) => {
            for part in ["revocable signer", "is revoked since", "keyCompromise", identity.crl_url()] {
                assert!(why.contains(part), "{part:?} missing from: {why}");
            }
        }
        other => panic!("a revoked signing certificate must not verify: {other:?}"),
    }
    let (ok, out) = notation_verify(&identity, &strict, &reference);
    assert!(!ok && out.contains("revoked"), "notation after revocation: {out}");
    // Until it fetches again, the caching verifier still holds the CRL from before.
    assert!(tidegate_verify(&caching, &reference, &digest).await.is_valid(), "reused CRL (documented)");

    // `permissive` only logs revocation, in both.
    let logging = verifier(client.clone(), &identity, &permissive, Duration::ZERO);
    assert!(tidegate_verify(&logging, &reference, &digest).await.is_valid(), "permissive logs the revocation");
    let (ok, out) = notation_verify(&identity, &permissive, &reference);
    assert!(ok, "notation permissive: {out}");
}

#[tokio::test]
async fn an_unavailable_crl_fails_both_under_strict() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Referrers, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let plain_http = registry.plain_http_hosts().into_iter().collect();
    let client = Arc::new(RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client"));
    let dir = tempfile::tempdir().expect("dir");
    let identity = RevocableIdentity::write(dir.path(), "unreachable", "tidegate").expect("identity");
    let strict = identity.files.trust_policy.clone();
    let digest = registry.push_test_image("shop/app", "v1", &[1024], &[]).await.expect("push");
    let reference = format!("{}/shop/app@{digest}", registry.host());
    let digest: Digest = digest.parse().expect("digest");
    NotarySigner::from_files(
        client.clone(),
        Some((identity.files.key.as_path(), identity.files.chain.as_path())),
        &strict,
        &identity.files.trust_store,
    )
    .expect("signer")
    .sign(&reference, &digest)
    .await
    .expect("sign");

    identity.fail_with(Some(503));
    match tidegate_verify(&verifier(client.clone(), &identity, &strict, Duration::ZERO), &reference, &digest).await {
        Verification::Invalid(why) => {
            assert!(why.contains("revocation status") && why.contains("unknown") && why.contains("503"), "{why}");
        }
        other => panic!("an unknown revocation status must fail closed under strict: {other:?}"),
    }
    let (ok, out) = notation_verify(&identity, &strict, &reference);
    assert!(!ok && out.contains("revocation status is unknown"), "notation with the CRL unavailable: {out}");
}
