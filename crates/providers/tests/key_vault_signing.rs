//! Notary Project signatures made with a key in Azure Key Vault, against the Azure stand-in's
//! Key Vault (real EC and RSA keys, Key Vault's challenge, `{vault}.vault.azure.net` reached
//! through its CONNECT proxy): the real `notation verify` accepts them; a disabled key signs
//! nothing; a key that is not the certificate's is refused before anything is signed.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tidegate_core::Digest;
use tidegate_providers::azure::identity::{AzureConfig, AzureCredentialKind};
use tidegate_providers::azure::key_vault::KeyVault;
use tidegate_providers::azure::key_vault_key::{KeyVaultSigningConfig, KeyVaultSigningKey};
use tidegate_providers::azure::transport::ReqwestTransport;
use tidegate_providers::notary_key::SigningKey;
use tidegate_providers::notary_signer::NotarySigner;
use tidegate_providers::registry::{ClientOptions, RegistryClient};
use tidegate_providers::{ProviderError, Signer};
use tidegate_testenv::azure::AzureStandIn;
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::tools::SupplyChainTools;

const CLIENT: &str = "tidegate-controller";
const SECRET: &str = "client-secret-for-the-stand-in";
const VAULT: &str = "tidegate";

struct Setup {
    azure: AzureStandIn,
    dir: tempfile::TempDir,
    config: AzureConfig,
    transport: ReqwestTransport,
}

async fn setup() -> Setup {
    let azure = AzureStandIn::start().await.expect("the Azure stand-in starts");
    azure.add_client_secret(CLIENT, SECRET).await.expect("client");
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, SECRET).expect("secret");
    let config = AzureConfig {
        credential: AzureCredentialKind::ClientSecret,
        tenant_id: Some(azure.tenant_id().to_string()),
        client_id: Some(CLIENT.into()),
        client_secret_file: Some(secret),
        authority_host: azure.authority_host().parse().expect("url"),
        resource_manager: azure.arm_url().parse().expect("url"),
        ca_file: Some(azure.ca_file().to_path_buf()),
        ..AzureConfig::default()
    };
    // Vault hosts through the stand-in's proxy, everything else (the token endpoint) directly.
    let proxy = reqwest::Url::parse(&azure.key_vault_proxy()).expect("proxy url");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(azure.ca_pem().as_bytes()).expect("ca")])
        .redirect(reqwest::redirect::Policy::none())
        .proxy(reqwest::Proxy::custom(move |url| {
            url.host_str().is_some_and(|h| h.ends_with(".vault.azure.net")).then(|| proxy.clone())
        }))
        .build()
        .expect("client");
    Setup { azure, dir, config, transport: ReqwestTransport::from_client(client) }
}

impl Setup {
    async fn vault(&self) -> KeyVault {
        let transport = self.transport.transport();
        let credential = self.config.credential(&transport).await.expect("credential");
        let url = self.azure.key_vault_url(VAULT).parse().expect("url");
        KeyVault::new(&url, transport, credential, self.config.describe(), 2, 50.0)
    }

    /// A key and a code-signing certificate for it; returns (certificate view, CA PEM).
    async fn key_with_certificate(
        &self,
        name: &str,
        kty: &str,
        curve: Option<&str>,
        size: Option<u32>,
    ) -> serde_json::Value {
        self.azure.create_key_vault_key(VAULT, name, kty, curve, size, None).await.expect("create key");
        self.azure
            .issue_key_vault_certificate(VAULT, name, name, &format!("{name}.tidegate.test"))
            .await
            .expect("certificate")
    }

    /// A trust policy and store that trust the stand-in's Key Vault CA.
    async fn trust(&self) -> (std::path::PathBuf, std::path::PathBuf) {
        let ca = self.azure.key_vault_ca_pem().await.expect("CA");
        let store = self.dir.path().join("store");
        std::fs::create_dir_all(store.join("x509/ca/keyvault")).expect("store");
        std::fs::write(store.join("x509/ca/keyvault/ca.pem"), &ca).expect("ca");
        std::fs::write(self.dir.path().join("ca.pem"), &ca).expect("ca file");
        let policy = self.dir.path().join("trustpolicy.json");
        std::fs::write(
            &policy,
            r#"{"version": "1.0", "trustPolicies": [{"name": "keyvault", "registryScopes": ["*"],
                "signatureVerification": {"level": "strict"}, "trustStores": ["ca:keyvault"], "trustedIdentities": ["*"]}]}"#,
        )
        .expect("policy");
        (policy, store)
    }
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

#[tokio::test]
async fn ec_and_rsa_key_vault_keys_sign_what_notation_verifies() {
    let s = setup().await;
    let (policy, store) = s.trust().await;
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Referrers, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let plain_http = registry.plain_http_hosts().into_iter().collect();
    let client = Arc::new(RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client"));
    let ca = std::fs::read(s.dir.path().join("ca.pem")).expect("ca");

    let ec = s.key_with_certificate("signer-ec", "EC", Some("P-256"), None).await;
    let rsa = s.key_with_certificate("signer-rsa", "RSA", None, Some(3072)).await;
    // EC: the vault's certificate gives the leaf and the key, the file the CA chain.
    let ec_config = KeyVaultSigningConfig {
        key_id: None,
        certificate_id: Some(ec["id"].as_str().expect("id").to_string()),
        chain_pem: Some(ca.clone()),
    };
    // RSA: the key by name (current version), the whole chain from the file.
    let mut chain = rsa["pem"].as_str().expect("pem").as_bytes().to_vec();
    chain.extend_from_slice(&ca);
    let rsa_config = KeyVaultSigningConfig {
        key_id: Some(format!("{}/keys/signer-rsa", s.azure.key_vault_url(VAULT))),
        certificate_id: None,
        chain_pem: Some(chain),
    };
    for (name, config, alg) in [("signer-ec", ec_config, "ES256"), ("signer-rsa", rsa_config, "PS384")] {
        let key = KeyVaultSigningKey::connect(s.vault().await, &config).await.expect("the key and certificate match");
        assert!(key.describe().contains(alg), "{}", key.describe());
        assert_eq!(key.key_id().name, name);
        assert!(key.key_id().version.is_some(), "the version is pinned");
        let signer = NotarySigner::from_files(client.clone(), None, &policy, &store)
            .expect("signer")
            .with_signing_key(SigningKey::KeyVault(Box::new(key)));
        let repo = format!("shop/{name}");
        let digest: Digest =
            registry.push_test_image(&repo, "v1", &[1024], &[]).await.expect("push").parse().expect("digest");
        let reference = format!("{}/{repo}@{digest}", registry.host());
        signer.sign(&reference, &digest).await.expect("signed with the Key Vault key");
        assert!(signer.verify(&reference, &digest, "").await.expect("verify").is_valid());

        let home = tempfile::tempdir().expect("home");
        let ca_file = s.dir.path().join("ca.pem").display().to_string();
        let (ok, out) = notation(home.path(), &["cert", "add", "--type", "ca", "--store", "keyvault", &ca_file]);
        assert!(ok, "{out}");
        let (ok, out) = notation(home.path(), &["policy", "import", "--force", &policy.display().to_string()]);
        assert!(ok, "{out}");
        let (ok, out) = notation(home.path(), &["verify", "--insecure-registry", &reference]);
        assert!(ok && out.contains("Successfully verified"), "notation verify ({name}): {out}");
    }

    // What went over the wire: a challenge answered, tokens for Key Vault's audience only, and
    // digests signed with the pinned versions.
    let log = s.azure.requests().await.expect("log");
    assert!(log.iter().any(|r| r.path.starts_with("/keys/") && r.status == 401), "the challenge was elicited");
    let tokens: Vec<_> = log.iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).collect();
    assert!(
        !tokens.is_empty() && tokens.iter().all(|r| r.body.contains("scope=https%3A%2F%2Fvault.azure.net%2F.default")),
        "{tokens:?}"
    );
    let signs: Vec<_> = log.iter().filter(|r| r.path.ends_with("/sign") && r.status == 200).collect();
    assert_eq!(signs.len(), 2, "{signs:?}");
    for sign in signs {
        let body = sign.json().expect("JSON");
        assert!(body["alg"] == "ES256" || body["alg"] == "PS384", "{body}");
        assert_eq!(sign.path.split('/').count(), 5, "a versioned key path: {}", sign.path);
    }
}

#[tokio::test]
async fn a_disabled_key_signs_nothing() {
    let s = setup().await;
    let (policy, store) = s.trust().await;
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Referrers, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let plain_http = registry.plain_http_hosts().into_iter().collect();
    let client = Arc::new(RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client"));
    let cert = s.key_with_certificate("signer", "EC", Some("P-384"), None).await;
    let ca = std::fs::read(s.dir.path().join("ca.pem")).expect("ca");
    let config = KeyVaultSigningConfig {
        key_id: None,
        certificate_id: Some(cert["id"].as_str().expect("id").to_string()),
        chain_pem: Some(ca),
    };
    let key = KeyVaultSigningKey::connect(s.vault().await, &config).await.expect("connect");
    let kid = key.key_id().to_string();
    let signer = NotarySigner::from_files(client, None, &policy, &store)
        .expect("signer")
        .with_signing_key(SigningKey::KeyVault(Box::new(key)));
    s.azure.set_key_vault_key_enabled(VAULT, "signer", None, false).await.expect("disable");
    let digest: Digest =
        registry.push_test_image("shop/app", "v1", &[1024], &[]).await.expect("push").parse().expect("digest");
    let reference = format!("{}/shop/app@{digest}", registry.host());
    match signer.sign(&reference, &digest).await {
        Err(ProviderError::Permanent(why)) => {
            assert!(why.contains("is disabled") && why.contains(&kid), "{why}");
        }
        other => panic!("a disabled key must not sign: {other:?}"),
    }
    assert!(!signer.verify(&reference, &digest, "").await.expect("verify").is_valid(), "nothing was pushed");
    let log = s.azure.requests().await.expect("log");
    assert!(!log.iter().any(|r| r.path.ends_with("/sign") && r.status == 200), "nothing was signed");

    // Enabled again, the same signer signs.
    s.azure.set_key_vault_key_enabled(VAULT, "signer", None, true).await.expect("enable");
    signer.sign(&reference, &digest).await.expect("signs once enabled");
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_is_refused_at_construction() {
    let s = setup().await;
    let ec = s.key_with_certificate("signer", "EC", Some("P-256"), None).await;
    s.azure.create_key_vault_key(VAULT, "other", "EC", Some("P-256"), None, None).await.expect("other key");
    let ca = ec["caPem"].as_str().expect("CA").as_bytes().to_vec();
    let mut chain = ec["pem"].as_str().expect("pem").as_bytes().to_vec();
    chain.extend_from_slice(&ca);
    let other = format!("{}/keys/other", s.azure.key_vault_url(VAULT));
    let config = KeyVaultSigningConfig { key_id: Some(other.clone()), certificate_id: None, chain_pem: Some(chain) };
    let err = KeyVaultSigningKey::connect(s.vault().await, &config).await.expect_err("mismatch");
    assert!(err.contains(&other) && err.contains("signer.tidegate.test") && err.contains("is not the key"), "{err}");

    // The certificate's own key, named next to another certificate's key id: refused too.
    let config = KeyVaultSigningConfig {
        key_id: Some(other.clone()),
        certificate_id: Some(ec["id"].as_str().expect("id").to_string()),
        chain_pem: Some(ca.clone()),
    };
    let err = KeyVaultSigningKey::connect(s.vault().await, &config).await.expect_err("different key");
    assert!(err.contains("is not the key of --notary-key-vault-certificate-id"), "{err}");

    // An RSA 2048 key with an EC certificate: refused, naming both.
    s.azure.create_key_vault_key(VAULT, "rsa", "RSA", None, Some(2048), None).await.expect("rsa key");
    let mut chain = ec["pem"].as_str().expect("pem").as_bytes().to_vec();
    chain.extend_from_slice(&ca);
    let rsa = format!("{}/keys/rsa", s.azure.key_vault_url(VAULT));
    let config = KeyVaultSigningConfig { key_id: Some(rsa.clone()), certificate_id: None, chain_pem: Some(chain) };
    let err = KeyVaultSigningKey::connect(s.vault().await, &config).await.expect_err("mismatch");
    assert!(err.contains(&rsa) && err.contains("ECDSA P-256"), "{err}");
    // Nothing was signed.
    let log = s.azure.requests().await.expect("log");
    assert!(!log.iter().any(|r| r.path.ends_with("/sign")), "{log:?}");
}
