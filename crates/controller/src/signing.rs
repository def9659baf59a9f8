//! Which signer the controller uses. Candidates are signed and verified with Notary Project
//! signatures only; without that configuration the controller signs nothing and trusts nothing:
//! Releases stop before staging with the reason [`SIGNING_NOT_CONFIGURED`], and no Promotion
//! passes the signature check before production. Signed scan reports (`trivyReport`) are
//! verified with the same trust policy and store.

use std::sync::Arc;

use tidegate_core::Digest;
use tidegate_core::provenance::Statement;
use tidegate_providers::azure::key_vault::{Collection, KeyVault, ObjectId};
use tidegate_providers::azure::key_vault_key::{KeyVaultSigningConfig, KeyVaultSigningKey};
use tidegate_providers::crl_fetcher::CrlFetcher;
use tidegate_providers::notary_key::SigningKey;
use tidegate_providers::notary_signer::NotarySigner;
use tidegate_providers::provenance::{Attestor, FoundRecord};
use tidegate_providers::registry::RegistryClient;
use tidegate_providers::signed_report::SignedReportScanner;
use tidegate_providers::{ProviderError, Result, Scanner, Signer, Verification};

use crate::Config;

/// Condition reason of a Release that cannot be signed because signing is not configured.
pub const SIGNING_NOT_CONFIGURED: &str = "SigningNotConfigured";

/// What a controller without signing configuration says, and which flags fix it.
pub const NOT_CONFIGURED: &str = "signing is not configured: start the controller with --trust-policy-file and \
     --trust-store-dir (to verify) and --notary-key-file and --notary-cert-file, or an Azure Key Vault key \
     (--notary-key-vault-key-id or --notary-key-vault-certificate-id), to sign";

/// The signer of a controller started without a trust policy: it signs nothing and verifies
/// nothing, both with [`ProviderError::NotConfigured`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NotConfigured;

#[async_trait::async_trait]
impl Signer for NotConfigured {
    async fn sign(&self, _image: &str, _digest: &Digest) -> Result<String> {
        Err(ProviderError::NotConfigured(NOT_CONFIGURED.into()))
    }

    async fn verify(&self, _image: &str, _digest: &Digest, _signature: &str) -> Result<Verification> {
        Err(ProviderError::NotConfigured(NOT_CONFIGURED.into()))
    }
}

#[async_trait::async_trait]
impl Attestor for NotConfigured {
    async fn attach(&self, _image: &str, _digest: &Digest, _statement: &Statement) -> Result<String> {
        Err(ProviderError::NotConfigured(NOT_CONFIGURED.into()))
    }

    async fn records(&self, _image: &str, _digest: &Digest) -> Result<Vec<FoundRecord>> {
        Err(ProviderError::NotConfigured(NOT_CONFIGURED.into()))
    }
}

/// What signs candidates, and what attaches signed promotion records: the same key. Signed scan
/// reports are verified with the same trust policy.
#[derive(Clone)]
pub struct Signing {
    /// Signs and verifies candidates.
    pub signer: Arc<dyn Signer>,
    /// Attaches and reads promotion records.
    pub attestor: Arc<dyn Attestor>,
    /// Reads signed Trivy reports CI attaches to a digest (`trivyReport`); `None` without a
    /// trust policy to verify them with.
    pub reports: Option<Arc<dyn Scanner>>,
}

impl Signing {
    /// Neither signs nor attaches, and reads no signed reports.
    pub fn not_configured() -> Self {
        Self { signer: Arc::new(NotConfigured), attestor: Arc::new(NotConfigured), reports: None }
    }
}

/// The signer the flags configure:
/// - a trust policy and store, and a key (a key file, or a key in Azure Key Vault): signs and
///   verifies (Notary Project);
/// - a trust policy and store, no key: verifies only; signing fails with
///   [`ProviderError::NotConfigured`], so new Releases stop before staging;
/// - no trust policy: [`NotConfigured`]; a key without a trust policy is refused, since every
///   signature is verified before it is relied on.
pub async fn from_config(config: &Config, registry: Arc<RegistryClient>) -> anyhow::Result<Signing> {
    let key_vault = key_vault_config(config)?;
    match (&config.trust_policy_file, &config.trust_store_dir) {
        (Some(policy), Some(store)) => {
            let key_file = match (&config.notary_key_file, &config.notary_cert_file, &key_vault) {
                (Some(key), Some(chain), None) => Some((key.as_path(), chain.as_path())),
                (None, Some(_), None) => anyhow::bail!(
                    "--notary-cert-file needs a key: --notary-key-file, --notary-key-vault-key-id or \
                     --notary-key-vault-certificate-id"
                ),
                _ => None,
            };
            let mut signer = NotarySigner::from_files(registry, key_file, policy, store)
                .map_err(|e| anyhow::anyhow!(e))?
                .with_crl_fetcher(crl_fetcher(config));
            if let Some(key_vault) = key_vault {
                let key = key_vault_key(config, &key_vault).await?;
                signer = signer.with_signing_key(SigningKey::KeyVault(Box::new(key)));
            }
            match signer.signing_key_description() {
                Some(key) => tracing::info!(%key, "signing and verifying Notary Project signatures"),
                None => tracing::warn!(
                    "verifying Notary Project signatures only (no --notary-key-file or --notary-key-vault-key-id): \
                     new Releases stop before staging ({SIGNING_NOT_CONFIGURED}); Promotions of candidates signed \
                     elsewhere are verified"
                ),
            }
            let signer = Arc::new(signer);
            let reports: Arc<dyn Scanner> = Arc::new(SignedReportScanner::new(signer.clone()));
            Ok(Signing { signer: signer.clone(), attestor: signer, reports: Some(reports) })
        }
        _ if config.notary_key_file.is_some() || key_vault.is_some() => Err(anyhow::anyhow!(
            "a signing key (--notary-key-file or --notary-key-vault-*) needs --trust-policy-file and \
             --trust-store-dir: every signature is verified before staging and before production"
        )),
        _ => {
            tracing::warn!("{NOT_CONFIGURED}; Releases stop before staging and production is never changed");
            Ok(Signing::not_configured())
        }
    }
}

/// The Key Vault signing settings, when `--notary-key-vault-key-id` or
/// `--notary-key-vault-certificate-id` is given (the chain file is read here).
fn key_vault_config(config: &Config) -> anyhow::Result<Option<KeyVaultSigningConfig>> {
    if config.notary_key_vault_key_id.is_none() && config.notary_key_vault_certificate_id.is_none() {
        return Ok(None);
    }
    let chain_pem = match &config.notary_cert_file {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| anyhow::anyhow!("--notary-cert-file {}: {e}", path.display()))?)
        }
        None => None,
    };
    Ok(Some(KeyVaultSigningConfig {
        key_id: config.notary_key_vault_key_id.clone(),
        certificate_id: config.notary_key_vault_certificate_id.clone(),
        chain_pem,
    }))
}

/// Connects to the vault with the controller's Azure identity and checks the key against its
/// certificate; the controller does not start otherwise.
async fn key_vault_key(config: &Config, key_vault: &KeyVaultSigningConfig) -> anyhow::Result<KeyVaultSigningKey> {
    let Some(azure) = config.azure.config()? else {
        anyhow::bail!(
            "--notary-key-vault-key-id and --notary-key-vault-certificate-id need --azure-credential: the Key Vault \
             key is used with the controller's Azure identity"
        );
    };
    let vault = match (&key_vault.certificate_id, &key_vault.key_id) {
        (Some(id), _) => {
            ObjectId::parse(id, Collection::Certificates)
                .map_err(|e| anyhow::anyhow!("--notary-key-vault-certificate-id {e}"))?
                .vault
        }
        (None, Some(id)) => {
            ObjectId::parse(id, Collection::Keys).map_err(|e| anyhow::anyhow!("--notary-key-vault-key-id {e}"))?.vault
        }
        (None, None) => anyhow::bail!("no Key Vault key configured"),
    };
    let client = KeyVault::from_config(&vault, &azure).await?;
    KeyVaultSigningKey::connect(client, key_vault).await.map_err(|e| anyhow::anyhow!("Notary signing key: {e}"))
}

/// Fetches the CRLs of signing chains, reusing each for `--notary-crl-max-age-seconds`.
fn crl_fetcher(config: &Config) -> Arc<CrlFetcher> {
    Arc::new(CrlFetcher::new(std::time::Duration::from_secs(config.notary_crl_max_age_seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, clap::Error> {
        crate::config_from(args)
    }

    fn registry() -> Arc<RegistryClient> {
        Arc::new(RegistryClient::new(Default::default()).expect("registry client"))
    }

    #[tokio::test]
    async fn a_key_vault_key_needs_the_azure_credential_and_a_trust_policy() {
        let dir = tempfile::tempdir().expect("dir");
        let policy = dir.path().join("trustpolicy.json");
        std::fs::write(
            &policy,
            r#"{"version": "1.0", "trustPolicies": [{"name": "p", "registryScopes": ["*"],
                "signatureVerification": {"level": "strict"}, "trustStores": ["ca:t"], "trustedIdentities": ["*"]}]}"#,
        )
        .expect("policy");
        let (policy, store) = (policy.display().to_string(), dir.path().display().to_string());
        let key = "https://myvault.vault.azure.net/keys/signer";

        let with_policy =
            config(&["--notary-key-vault-key-id", key, "--trust-policy-file", &policy, "--trust-store-dir", &store])
                .expect("flags");
        let err = from_config(&with_policy, registry()).await.err().expect("no Azure credential").to_string();
        assert!(err.contains("--azure-credential"), "{err}");

        let without_policy = config(&["--notary-key-vault-certificate-id", key]).expect("flags");
        let err = from_config(&without_policy, registry()).await.err().expect("no trust policy").to_string();
        assert!(err.contains("--trust-policy-file"), "{err}");

        // A chain without a key says which keys there are.
        let chain_only =
            config(&["--notary-cert-file", &policy, "--trust-policy-file", &policy, "--trust-store-dir", &store])
                .expect("flags");
        let err = from_config(&chain_only, registry()).await.err().expect("no key").to_string();
        assert!(err.contains("--notary-key-vault-key-id") && err.contains("--notary-key-file"), "{err}");

        // One key: a key file and a Key Vault key together are refused by the flags.
        assert!(
            config(&["--notary-key-file", "k", "--notary-cert-file", "c", "--notary-key-vault-key-id", key]).is_err()
        );
    }

    #[tokio::test]
    async fn not_configured_signs_and_verifies_nothing_and_names_the_flags() {
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().expect("digest");
        for result in [
            NotConfigured.sign("r.io/app", &digest).await.map(drop),
            NotConfigured.verify("r.io/app", &digest, "anything").await.map(drop),
        ] {
            match result {
                Err(ProviderError::NotConfigured(why)) => {
                    for flag in ["--trust-policy-file", "--trust-store-dir", "--notary-key-file", "--notary-cert-file"]
                    {
                        assert!(why.contains(flag), "{why}");
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(!ProviderError::NotConfigured(NOT_CONFIGURED.into()).is_transient());
    }
}
