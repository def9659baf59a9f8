//! Notary Project signatures in the registry: candidates are signed as JWS envelopes (signing
//! scheme `notary.x509`) pushed as OCI artifacts (`artifactType`
//! `application/vnd.cncf.notary.signature`, `subject` = the signed manifest) through the referrers
//! API or the tag-schema fallback, and verified against a trust policy and trust store, as the
//! `notation` CLI does. Verification fails closed and says why.
//!
//! Revocation: a chain whose certificates name CRL distribution points is checked against their
//! CRLs, fetched by [`CrlFetcher`] once the chain is known to lead to the trust store (see
//! [`crate::crl_fetcher`] and [`tidegate_notary::revocation`]). A revoked certificate, or a CRL
//! that cannot be fetched or used, fails verification when the trust policy enforces revocation
//! (`strict`) and is logged as a warning when it only logs it.
//!
//! [`Signer::sign`] signs container images only (a manifest whose config is an image config, or
//! an index of such manifests, without an `artifactType`). The trust policy that accepts the
//! controller's signatures also decides which signed scan reports and promotion records count,
//! and whoever may create a Release names the digest to sign: signing whatever that digest is
//! would turn a report or record someone pushed into a trusted one. The controller's own records
//! are signed through [`NotarySigner::sign_artifact`], which is not reachable from a Release.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidegate_core::{Digest, ImageRef};
use tidegate_notary::{
    ENVELOPE_MEDIA_TYPE, FetchedCrls, PolicyOutcome, Progress, SIGNATURE_ARTIFACT_TYPE, SignOptions,
    Signer as NotaryKey, THUMBPRINT_ANNOTATION, TrustPolicyDocument, TrustStores, VerifyError,
};

use crate::crl_fetcher::CrlFetcher;
use crate::notary_key::SigningKey;

use crate::registry::artifact::Artifact;
use crate::registry::types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Descriptor, ImageManifest, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST,
};
use crate::registry::{RegistryClient, Repository};
use crate::{ProviderError, Result, Signer, Verification};

/// Signs with a key and certificate chain; verifies with a trust policy and trust store.
pub struct NotarySigner {
    registry: Arc<RegistryClient>,
    key: Option<SigningKey>,
    policy: TrustPolicyDocument,
    stores: TrustStores,
    crls: Arc<CrlFetcher>,
}

impl NotarySigner {
    /// A signer. `key` is `None` for a verify-only instance.
    pub fn new(
        registry: Arc<RegistryClient>,
        key: Option<NotaryKey>,
        policy: TrustPolicyDocument,
        stores: TrustStores,
    ) -> Self {
        Self {
            registry,
            key: key.map(|k| SigningKey::File(Box::new(k))),
            policy,
            stores,
            crls: Arc::new(CrlFetcher::default()),
        }
    }

    /// Signs with `key` (for example a key in Azure Key Vault) instead of the one given to
    /// [`NotarySigner::new`].
    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// Uses `crls` to fetch the CRLs revocation checking needs (default: a [`CrlFetcher`] that
    /// reuses a CRL for [`crate::crl_fetcher::DEFAULT_MAX_AGE`]).
    pub fn with_crl_fetcher(mut self, crls: Arc<CrlFetcher>) -> Self {
        self.crls = crls;
        self
    }

    /// Verifies one envelope for `reference` with the trust policy, fetching the CRLs the
    /// verifier asks for. Every round records at least one new URL, and the fetcher records at
    /// most [`crate::crl_fetcher::MAX_URLS_PER_VERIFICATION`] before failing the rest, so the
    /// loop ends.
    async fn verify_envelope(
        &self,
        envelope: &[u8],
        reference: &str,
    ) -> std::result::Result<PolicyOutcome, VerifyError> {
        let now = jiff::Timestamp::now();
        let mut crls = FetchedCrls::new();
        loop {
            match tidegate_notary::verify_with_policy_and_crls(
                envelope,
                &self.policy,
                &self.stores,
                reference,
                now,
                &crls,
            )? {
                Progress::Done(outcome) => return Ok(outcome),
                Progress::NeedCrls(urls) => {
                    let before = crls.len();
                    self.crls.fetch_into(&urls, &mut crls, now).await;
                    if crls.len() == before {
                        return Err(VerifyError::RevocationUnknown {
                            subject: String::new(),
                            reason: format!("the CRLs {} were asked for again after being fetched", urls.join(", ")),
                        });
                    }
                }
            }
        }
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

    /// Which key signs (for logs), when one does.
    pub fn signing_key_description(&self) -> Option<String> {
        self.key.as_ref().map(SigningKey::describe)
    }

    pub(crate) fn repository(image: &str) -> Result<Repository> {
        let reference: ImageRef = image.parse().map_err(|e| ProviderError::Permanent(format!("{image}: {e}")))?;
        Ok(Repository::from(&reference))
    }
}

/// Config media types of container images (OCI and Docker).
const IMAGE_CONFIGS: [&str; 2] = [OCI_CONFIG, "application/vnd.docker.container.image.v1+json"];
/// The most manifests an index to be signed may hold (each is fetched and checked).
const MAX_INDEX_MANIFESTS: usize = 64;

/// The parts of a manifest or index that say what it is.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Shape {
    #[serde(default)]
    artifact_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

impl NotarySigner {
    /// Signs the artifact `digest` of `image` whatever it is: only for artifacts the controller
    /// composed itself (promotion records), never for a digest someone else names.
    pub(crate) async fn sign_artifact(&self, image: &str, digest: &Digest) -> Result<String> {
        let key = self.signing_key()?;
        let repo = Self::repository(image)?;
        let subject = self.subject(&repo, image, digest).await?;
        self.sign_subject(key, &repo, &subject).await
    }

    fn signing_key(&self) -> Result<&SigningKey> {
        self.key.as_ref().ok_or_else(|| {
            ProviderError::NotConfigured(
                "signing is not configured: this controller only verifies Notary Project signatures (it has a \
                 trust policy but no signing key); set --notary-key-file and --notary-cert-file to sign"
                    .into(),
            )
        })
    }

    async fn subject(&self, repo: &Repository, image: &str, digest: &Digest) -> Result<Descriptor> {
        self.registry
            .head_manifest(repo, digest.as_str())
            .await?
            .ok_or_else(|| ProviderError::Permanent(format!("cannot sign {image}: {digest} is not in {repo}")))
    }

    /// `Ok` when `digest` is a container image: an image manifest, or an index of image
    /// manifests, none with an `artifactType`. Anything else is refused, permanently.
    /// `in_index`: `digest` is listed in an index (which may not list another index).
    async fn require_image(&self, repo: &Repository, image: &str, digest: &str, in_index: bool) -> Result<()> {
        let refuse = |why: String| {
            ProviderError::Permanent(format!(
                "refusing to sign {image}: {why}. Tidegate signs container images only, because the trust policy \
                 that accepts its signatures also decides which scan reports and promotion records count"
            ))
        };
        let fetched = self.registry.get_manifest(repo, digest).await?;
        let shape: Shape = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| refuse(format!("its manifest {digest} is not an OCI or Docker manifest ({e})")))?;
        if let Some(kind) = shape.artifact_type.as_deref() {
            return Err(refuse(format!("{digest} is an artifact of type {kind}, not a container image")));
        }
        match (fetched.media_type.as_str(), shape.manifests, shape.config) {
            (OCI_MANIFEST | DOCKER_MANIFEST, None, Some(config)) => {
                if IMAGE_CONFIGS.contains(&config.media_type.as_str()) {
                    Ok(())
                } else {
                    Err(refuse(format!(
                        "{digest} is an artifact (config media type {}), not a container image",
                        config.media_type
                    )))
                }
            }
            (OCI_INDEX | DOCKER_MANIFEST_LIST, Some(manifests), None) if !in_index => {
                if manifests.is_empty() || manifests.len() > MAX_INDEX_MANIFESTS {
                    return Err(refuse(format!(
                        "the index {digest} holds {} manifests (1 to {MAX_INDEX_MANIFESTS} are signed)",
                        manifests.len()
                    )));
                }
                for child in manifests {
                    if !matches!(child.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST) {
                        return Err(refuse(format!(
                            "the index {digest} lists {} of media type {}, not an image manifest",
                            child.digest, child.media_type
                        )));
                    }
                    Box::pin(self.require_image(repo, image, &child.digest, true)).await.map_err(|e| match e {
                        ProviderError::Permanent(why) => {
                            ProviderError::Permanent(format!("{why} (listed in the index {digest})"))
                        }
                        other => other,
                    })?;
                }
                Ok(())
            }
            (media_type, _, _) => Err(refuse(format!("{digest} ({media_type}) is not an image manifest or index"))),
        }
    }

    async fn sign_subject(&self, key: &SigningKey, repo: &Repository, subject: &Descriptor) -> Result<String> {
        let target = tidegate_notary::Descriptor::new(subject.media_type.clone(), subject.digest.clone(), subject.size);
        let options = SignOptions {
            signing_time: jiff::Timestamp::now(),
            expiry: None,
            signing_agent: format!("tidegate/{}", env!("CARGO_PKG_VERSION")),
        };
        let envelope = key.sign(&target, &options).await?;

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
        Ok(self.registry.push_artifact(repo, subject, &artifact).await?)
    }
}

#[async_trait::async_trait]
impl Signer for NotarySigner {
    /// Signs `digest` when it is a container image; any other artifact is refused with
    /// [`ProviderError::Permanent`] (see the module documentation).
    async fn sign(&self, image: &str, digest: &Digest) -> Result<String> {
        let key = self.signing_key()?;
        let repo = Self::repository(image)?;
        let subject = self.subject(&repo, image, digest).await?;
        self.require_image(&repo, image, &subject.digest, false).await?;
        self.sign_subject(key, &repo, &subject).await
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
            // The manifest was just fetched, so the signature exists; its envelope's bytes are
            // fixed by their digest, and the client may hold them already (it pushed them).
            let envelope = match self.registry.get_blob_by_digest(&repo, &layer.digest).await {
                Ok(envelope) => envelope,
                Err(e) if !e.is_transient() => {
                    reasons.push(format!("{}: {e}", signature.digest));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match self.verify_envelope(&envelope, &reference).await {
                Ok(PolicyOutcome::Verified(verified)) => {
                    for warning in &verified.warnings {
                        tracing::warn!(
                            reference = %reference,
                            signature = %signature.digest,
                            kind = ?warning.kind(),
                            "a validation the trust policy only logs failed: {warning}"
                        );
                    }
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
