//! Notary Project signatures in the registry: candidates are signed as JWS envelopes (signing
//! scheme `notary.x509`) pushed as OCI artifacts (`artifactType`
//! `application/vnd.cncf.notary.signature`, `subject` = the signed manifest) through the referrers
//! API or the tag-schema fallback, and verified against a trust policy and trust store, as the
//! `notation` CLI does. Verification fails closed and says why.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidegate_core::{Digest, ImageRef};
use tidegate_notary::{
    ENVELOPE_MEDIA_TYPE, PolicyOutcome, SIGNATURE_ARTIFACT_TYPE, SignOptions, Signer as NotaryKey,
    THUMBPRINT_ANNOTATION, TrustPolicyDocument, TrustStores,
};

use crate::registry::artifact::Artifact;
use crate::registry::types::ImageManifest;
use crate::registry::{RegistryClient, Repository};
use crate::{ProviderError, Result, Signer, Verification};

/// Signs with a key and certificate chain; verifies with a trust policy and trust store.
pub struct NotarySigner {
    registry: Arc<RegistryClient>,
    key: Option<NotaryKey>,
    policy: TrustPolicyDocument,
    stores: TrustStores,
}

impl NotarySigner {
    /// A signer. `key` is `None` for a verify-only instance.
    pub fn new(
        registry: Arc<RegistryClient>,
        key: Option<NotaryKey>,
        policy: TrustPolicyDocument,
        stores: TrustStores,
    ) -> Self {
        Self { registry, key, policy, stores }
    }

    /// Reads the key and chain (PEM), the trust policy (`trustpolicy.json`) and the trust store
    /// directory (`x509/ca/<name>/*.pem`).
    pub fn from_files(
        registry: Arc<RegistryClient>,
        key: Option<(&std::path::Path, &std::path::Path)>,
        policy: &std::path::Path,
        store: &std::path::Path,
    ) -> std::result::Result<Self, String> {
        let key = match key {
            Some((key, chain)) => {
                let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
                let chain_pem = std::fs::read(chain).map_err(|e| format!("{}: {e}", chain.display()))?;
                Some(NotaryKey::from_pem(&key_pem, &chain_pem).map_err(|e| format!("signing key: {e}"))?)
            }
            None => None,
        };
        let text = std::fs::read(policy).map_err(|e| format!("{}: {e}", policy.display()))?;
        let policy = TrustPolicyDocument::parse(&text).map_err(|e| format!("{}: {e}", policy.display()))?;
        let stores = TrustStores::load_dir(store).map_err(|e| format!("{}: {e}", store.display()))?;
        Ok(Self::new(registry, key, policy, stores))
    }

    /// The registry client.
    pub(crate) fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// Whether this instance can sign (it has a key), or only verifies.
    pub fn can_sign(&self) -> bool {
        self.key.is_some()
    }

    pub(crate) fn repository(image: &str) -> Result<Repository> {
        let reference: ImageRef = image.parse().map_err(|e| ProviderError::Permanent(format!("{image}: {e}")))?;
        Ok(Repository::from(&reference))
    }
}

#[async_trait::async_trait]
impl Signer for NotarySigner {
    async fn sign(&self, image: &str, digest: &Digest) -> Result<String> {
        let key = self.key.as_ref().ok_or_else(|| {
            ProviderError::NotConfigured(
                "signing is not configured: this controller only verifies Notary Project signatures (it has a \
                 trust policy but no signing key); set --notary-key-file and --notary-cert-file to sign"
                    .into(),
            )
        })?;
        let repo = Self::repository(image)?;
        let subject = self
            .registry
            .head_manifest(&repo, digest.as_str())
            .await?
            .ok_or_else(|| ProviderError::Permanent(format!("cannot sign {image}: {digest} is not in {repo}")))?;
        let target = tidegate_notary::Descriptor::new(subject.media_type.clone(), subject.digest.clone(), subject.size);
        let options = SignOptions {
            signing_time: jiff::Timestamp::now(),
            expiry: None,
            signing_agent: format!("tidegate/{}", env!("CARGO_PKG_VERSION")),
        };
        let envelope =
            key.sign(&target, &options).map_err(|e| ProviderError::Permanent(format!("signing {digest}: {e}")))?;

        let annotations = BTreeMap::from([
            (THUMBPRINT_ANNOTATION.to_string(), key.thumbprint_annotation_value()),
            (
                "org.opencontainers.image.created".to_string(),
                options.signing_time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            ),
        ]);
        let artifact = Artifact {
            artifact_type: SIGNATURE_ARTIFACT_TYPE,
            layer_media_type: ENVELOPE_MEDIA_TYPE,
            payload: &envelope,
            annotations,
        };
        Ok(self.registry.push_artifact(&repo, &subject, &artifact).await?)
    }

    async fn verify(&self, image: &str, digest: &Digest, _signature: &str) -> Result<Verification> {
        let repo = Self::repository(image)?;
        let reference = format!("{repo}@{digest}");
        let signatures = self.registry.referrers(&repo, digest.as_str(), Some(SIGNATURE_ARTIFACT_TYPE)).await?;
        if signatures.is_empty() {
            return Ok(Verification::Invalid(format!("no Notary Project signature refers to {reference}")));
        }
        let mut reasons = Vec::new();
        for signature in signatures {
            let fetched = match self.registry.get_manifest(&repo, &signature.digest).await {
                Ok(fetched) => fetched,
                Err(e) if !e.is_transient() => {
                    reasons.push(format!("{}: {e}", signature.digest));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let manifest: ImageManifest = match serde_json::from_slice(&fetched.bytes) {
                Ok(m) => m,
                Err(e) => {
                    reasons.push(format!("{}: unreadable signature manifest: {e}", signature.digest));
                    continue;
                }
            };
            let Some(layer) = manifest.layers.iter().find(|l| l.media_type == ENVELOPE_MEDIA_TYPE) else {
                reasons.push(format!("{}: no JWS envelope", signature.digest));
                continue;
            };
            let envelope = match self.registry.get_blob(&repo, &layer.digest).await {
                Ok(envelope) => envelope,
                Err(e) if !e.is_transient() => {
                    reasons.push(format!("{}: {e}", signature.digest));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match tidegate_notary::verify_with_policy(
                &envelope,
                &self.policy,
                &self.stores,
                &reference,
                jiff::Timestamp::now(),
            ) {
                Ok(PolicyOutcome::Verified(verified)) => {
                    return Ok(Verification::Valid { signer: verified.signer_subject.to_string() });
                }
                Ok(PolicyOutcome::Skipped { policy }) => {
                    // Skipping verification would let an unsigned digest through: fail closed.
                    reasons.push(format!("trust policy {policy} skips verification, which Tidegate does not accept"));
                }
                Err(e) => reasons.push(format!("{}: {e}", signature.digest)),
            }
        }
        Ok(Verification::Invalid(format!("no signature of {reference} verifies: {}", reasons.join("; "))))
    }
}
