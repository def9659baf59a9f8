//! Which signer the controller uses. Candidates are signed and verified with Notary Project
//! signatures only; without that configuration the controller signs nothing and trusts nothing:
//! Releases stop before staging with the reason [`SIGNING_NOT_CONFIGURED`], and no Promotion
//! passes the signature check before production. Signed scan reports (`trivyReport`) are
//! verified with the same trust policy and store.

use std::sync::Arc;

use tidegate_core::Digest;
use tidegate_core::provenance::Statement;
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
     --trust-store-dir (to verify) and --notary-key-file and --notary-cert-file (to sign)";

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
/// - a trust policy and store, and a key: signs and verifies (Notary Project);
/// - a trust policy and store, no key: verifies only; signing fails with
///   [`ProviderError::NotConfigured`], so new Releases stop before staging;
/// - no trust policy: [`NotConfigured`]; a key without a trust policy is refused, since every
///   signature is verified before it is relied on.
pub fn from_config(config: &Config, registry: Arc<RegistryClient>) -> anyhow::Result<Signing> {
    match (&config.trust_policy_file, &config.trust_store_dir) {
        (Some(policy), Some(store)) => {
            let key = config.notary_key_file.as_deref().zip(config.notary_cert_file.as_deref());
            let signer = NotarySigner::from_files(registry, key, policy, store).map_err(|e| anyhow::anyhow!(e))?;
            if signer.can_sign() {
                tracing::info!("signing and verifying Notary Project signatures");
            } else {
                tracing::warn!(
                    "verifying Notary Project signatures only (no --notary-key-file/--notary-cert-file): new \
                     Releases stop before staging ({SIGNING_NOT_CONFIGURED}); Promotions of candidates signed \
                     elsewhere are verified"
                );
            }
            let signer = Arc::new(signer);
            let reports: Arc<dyn Scanner> = Arc::new(SignedReportScanner::new(signer.clone()));
            Ok(Signing { signer: signer.clone(), attestor: signer, reports: Some(reports) })
        }
        _ if config.notary_key_file.is_some() => Err(anyhow::anyhow!(
            "--notary-key-file needs --trust-policy-file and --trust-store-dir: every signature is verified \
             before staging and before production"
        )),
        _ => {
            tracing::warn!("{NOT_CONFIGURED}; Releases stop before staging and production is never changed");
            Ok(Signing::not_configured())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
