//! Notary Project signing with a key in Azure Key Vault, end to end: the product binary started
//! with `--notary-key-vault-certificate-id` (and the CA chain in `--notary-cert-file`) signs an
//! externally built candidate with the vault's key, verifies it and stages it; with the key
//! disabled in the vault, the Release stops at signing, says the key is disabled, and staging is
//! untouched. The vault is the Azure stand-in's, reached as `tidegate.vault.azure.net` through
//! its CONNECT proxy (`ALL_PROXY`, with `NO_PROXY` for the loopback endpoints; kube-client, built
//! without its `http-proxy` feature, refuses to start when `HTTPS_PROXY` is set).

mod common;

use common::azure::{Azure, CLIENT, SECRET, quick};
use common::{CLEAN_REPORT, MINUTE, Scenario, http_server};
use kube::api::PostParams;
use serde_json::json;
use tidegate_api::{Release, ReleasePhase};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};

const VAULT: &str = "tidegate";

struct Setup {
    s: Scenario,
    azure: Azure,
    registry: Registry,
    before: String,
    candidate: String,
    args: Vec<String>,
}

/// A registry with the running image and a candidate, a policy whose staging is a Deployment,
/// and a P-256 key with its certificate in the stand-in's vault; `args` starts the product
/// binary signing with that key.
async fn setup(name: &str) -> Setup {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let before = registry.push_test_image("shop/app", "1.0", &[1024], &[]).await.expect("push");
    let candidate = registry.push_test_image("shop/app", "1.1", &[1500], &[]).await.expect("push");

    let s = Scenario::new(name).await;
    s.set_workload_images(&format!("{host}/shop/app@{before}")).await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "image": format!("{host}/shop/app"),
        "triggers": {"rescan": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"requiredApprovals": 1, "monitorWindow": "1m"}
    }))
    .await;

    let azure = Azure::empty("shop", quick()).await;
    azure.standin.create_key_vault_key(VAULT, "signer", "EC", Some("P-256"), None, None).await.expect("key");
    let certificate =
        azure.standin.issue_key_vault_certificate(VAULT, "signer", "signer", "release signer").await.expect("cert");
    let ca = certificate["caPem"].as_str().expect("CA").to_string();
    let store = s.path("trust-store");
    std::fs::create_dir_all(store.join("x509/ca/keyvault")).expect("store");
    std::fs::write(store.join("x509/ca/keyvault/ca.pem"), &ca).expect("ca");
    std::fs::write(s.path("ca-chain.pem"), &ca).expect("chain");
    std::fs::write(
        s.path("trustpolicy.json"),
        r#"{"version": "1.0", "trustPolicies": [{"name": "keyvault", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"}, "trustStores": ["ca:keyvault"], "trustedIdentities": ["*"]}]}"#,
    )
    .expect("policy");
    std::fs::write(s.path("azure-client-secret"), SECRET).expect("secret");
    let path = |p: &str| s.path(p).display().to_string();
    let mut args: Vec<String> = [
        "--azure-credential",
        "client-secret",
        "--azure-tenant-id",
        azure.standin.tenant_id(),
        "--azure-client-id",
        CLIENT,
        "--azure-client-secret-file",
        &path("azure-client-secret"),
        "--azure-authority-host",
        &azure.standin.authority_host(),
        "--azure-resource-manager",
        &azure.standin.arm_url(),
        "--azure-ca-file",
        &azure.standin.ca_file().display().to_string(),
        "--notary-key-vault-certificate-id",
        certificate["id"].as_str().expect("id"),
        "--notary-cert-file",
        &path("ca-chain.pem"),
        "--trust-policy-file",
        &path("trustpolicy.json"),
        "--trust-store-dir",
        &path("trust-store"),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(registry.plain_http_hosts().into_iter().flat_map(|h| ["--plain-http-registry".to_string(), h]));
    Setup { s, azure, registry, before, candidate, args }
}

impl Setup {
    /// The product binary, reaching `*.vault.azure.net` through the stand-in's proxy.
    fn start(&self) -> common::ControllerProcess {
        let proxy = self.azure.standin.key_vault_proxy();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        self.s.product_with_env(
            &args,
            &[("ALL_PROXY", proxy.as_str()), ("NO_PROXY", "127.0.0.1,localhost,::1"), ("RUST_BACKTRACE", "0")],
        )
    }

    async fn release(&self, name: &str) {
        let image = format!("{}/shop/app@{}", self.registry.host(), self.candidate);
        let release: Release = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"policy": "shop-app", "reason": {"type": "Manual"}, "source": {"image": image}}
        }))
        .expect("release");
        self.s.releases().create(&PostParams::default(), &release).await.expect("create release");
        self.s.upload_scan_report(CLEAN_REPORT).await;
    }
}

/// Waits until the controller logged which key signs; panics with its log otherwise.
async fn started(controller: &common::ControllerProcess) {
    for _ in 0..200 {
        if controller.logged("signing and verifying Notary Project signatures") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    panic!("the controller did not start signing:\n{}", controller.log_tail());
}

#[tokio::test]
async fn a_key_vault_key_signs_the_candidate_and_it_reaches_staging() {
    let t = setup("kv-signing").await;
    let controller = t.start();
    started(&controller).await;
    assert!(
        controller.logged("Azure Key Vault key https://tidegate.vault.azure.net/keys/signer/")
            && controller.logged("ES256"),
        "{}",
        controller.log_tail()
    );

    t.release("shop-app-kv").await;
    let release = t.s.release_in(ReleasePhase::Verified, 2 * MINUTE).await;
    let image = format!("{}/shop/app@{}", t.registry.host(), t.candidate);
    assert_eq!(t.s.deployment_image(&t.s.staging, "web").await, Some(image), "staging runs the candidate");
    assert!(release.status.and_then(|st| st.signature).and_then(|sig| sig.reference).is_some(), "signed");
    let host = t.registry.host().to_string();
    assert_eq!(
        t.s.deployment_image(&t.s.ns, "web").await,
        Some(format!("{host}/shop/app@{}", t.before)),
        "production untouched"
    );
    // The vault signed exactly once, with the pinned key version, and tokens were for Key Vault.
    let log = t.azure.requests().await;
    let signs: Vec<_> = log.iter().filter(|r| r.path.ends_with("/sign")).collect();
    assert_eq!(signs.iter().filter(|r| r.status == 200).count(), 1, "{signs:?}");
    assert!(signs.iter().all(|r| r.path.starts_with("/keys/signer/") && r.path.split('/').count() == 5));
    assert!(
        log.iter()
            .filter(|r| r.path.ends_with("/oauth2/v2.0/token"))
            .all(|r| r.body.contains("scope=https%3A%2F%2Fvault.azure.net%2F.default")),
        "only Key Vault tokens were requested (no Azure targets configured)"
    );
    drop(controller);
}

#[tokio::test]
async fn a_disabled_key_vault_key_stops_the_release_before_staging() {
    let t = setup("kv-disabled").await;
    let controller = t.start();
    started(&controller).await;
    t.azure.standin.set_key_vault_key_enabled(VAULT, "signer", None, false).await.expect("disable");

    t.release("shop-app-kv-disabled").await;
    let release = common::wait("the Release to stop at signing", 2 * MINUTE, || async {
        let release = t.s.releases().get("shop-app-kv-disabled").await.ok()?;
        matches!(release.status.as_ref()?.phase, ReleasePhase::Failed | ReleasePhase::Rejected).then_some(release)
    })
    .await;
    let status = release.status.expect("status");
    let signed = status.conditions.iter().find(|c| c.type_ == "Signed").expect("Signed condition");
    assert_eq!(signed.status, "False");
    assert!(
        signed.message.contains("Azure Key Vault key https://tidegate.vault.azure.net/keys/signer/")
            && signed.message.contains("is disabled"),
        "{}\n{}",
        signed.message,
        controller.log_tail()
    );
    assert!(status.signature.is_none() && status.staging.is_none(), "nothing signed, nothing staged");
    let host = t.registry.host().to_string();
    assert_eq!(
        t.s.deployment_image(&t.s.staging, "web").await,
        Some(format!("{host}/shop/app@{}", t.before)),
        "staging untouched"
    );
    let log = t.azure.requests().await;
    assert!(!log.iter().any(|r| r.path.ends_with("/sign") && r.status == 200), "the vault signed nothing");
    drop(controller);
}
