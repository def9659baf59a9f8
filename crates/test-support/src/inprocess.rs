//! In-process build and signing: test doubles, never shipped.
//!
//! [`InProcessBuilder`] pushes nothing: a Release that names an exact source image uses that
//! digest; otherwise the candidate's digest is the SHA-256 of the build inputs (repository,
//! Release, reason), so the same Release always yields the same digest and a new trigger a new
//! one. [`HmacSigner`] signs a digest with a key only the controller holds and verifies it again
//! before every deployment, so a tampered record fails closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use tidegate_api::{ImagePolicy, Release};
use tidegate_core::{Digest, ImageRef};

use tidegate_providers::{BuildContext, BuildStep, Builder, Built, ProviderError, Result, Signer, Verification};

/// Computes candidates from their inputs; see the module docs.
#[derive(Clone, Debug, Default)]
pub struct InProcessBuilder;

#[async_trait::async_trait]
impl Builder for InProcessBuilder {
    async fn build(
        &self,
        _policy: &ImagePolicy,
        release: &Release,
        repository: &ImageRef,
        _context: &BuildContext,
    ) -> Result<BuildStep> {
        let name = release.metadata.name.clone().unwrap_or_default();
        if let Some(source) = &release.spec.source {
            let source: ImageRef =
                source.image.parse().map_err(|e| ProviderError::Permanent(format!("spec.source.image: {e}")))?;
            if source.repository_ref() != repository.repository_ref() {
                return Err(ProviderError::Permanent(format!(
                    "spec.source.image is in {}, but the policy promotes {}",
                    source.repository_ref(),
                    repository.repository_ref()
                )));
            }
            return match source.digest.clone() {
                Some(digest) => {
                    Ok(BuildStep::Done(Built { digest, run: format!("source:{source}"), run_id: None, log_link: None }))
                }
                None => Err(ProviderError::Permanent(format!(
                    "spec.source.image {source} is a tag; this build of Tidegate needs the digest (repo@sha256:…)"
                ))),
            };
        }
        let mut hasher = Sha256::new();
        hasher.update(repository.repository_ref().as_bytes());
        hasher.update([0]);
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(serde_json::to_vec(&release.spec.reason).unwrap_or_default());
        let digest: Digest = format!("sha256:{}", hex::encode(hasher.finalize()))
            .parse()
            .map_err(|e| ProviderError::Permanent(format!("{e}")))?;
        Ok(BuildStep::Done(Built { run: format!("in-process:{name}"), digest, run_id: None, log_link: None }))
    }
}

/// HMAC-SHA256 signatures with the controller's key.
#[derive(Clone)]
pub struct HmacSigner {
    key: Vec<u8>,
    verifications: Arc<AtomicUsize>,
}

impl std::fmt::Debug for HmacSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacSigner")
    }
}

impl HmacSigner {
    /// A signer with `key` (at least 16 bytes).
    pub fn new(key: Vec<u8>) -> Result<Self> {
        if key.len() < 16 {
            return Err(ProviderError::Permanent("the signing key must be at least 16 bytes".into()));
        }
        Ok(Self { key, verifications: Arc::default() })
    }

    /// How many verifications were asked of this signer (and its clones).
    pub fn verifications(&self) -> usize {
        self.verifications.load(Ordering::Relaxed)
    }

    fn mac(&self, image: &str, digest: &Digest) -> Result<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).map_err(|e| ProviderError::Permanent(e.to_string()))?;
        mac.update(image.as_bytes());
        mac.update(b"\0");
        mac.update(digest.as_str().as_bytes());
        Ok(format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes())))
    }
}

#[async_trait::async_trait]
impl Signer for HmacSigner {
    async fn sign(&self, image: &str, digest: &Digest) -> Result<String> {
        self.mac(image, digest)
    }

    async fn verify(&self, image: &str, digest: &Digest, signature: &str) -> Result<Verification> {
        self.verifications.fetch_add(1, Ordering::Relaxed);
        let Some(given) = signature.strip_prefix("hmac-sha256:").and_then(|h| hex::decode(h).ok()) else {
            return Ok(Verification::Invalid(format!("{signature:?} is not an HMAC signature")));
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).map_err(|e| ProviderError::Permanent(e.to_string()))?;
        mac.update(image.as_bytes());
        mac.update(b"\0");
        mac.update(digest.as_str().as_bytes());
        Ok(match mac.verify_slice(&given) {
            Ok(()) => Verification::Valid { signer: "the controller's key".into() },
            Err(_) => Verification::Invalid(format!(
                "the signature does not match {image}@{digest} under the controller's key"
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().expect("digest")
    }

    #[tokio::test]
    async fn signatures_verify_only_for_the_same_key_image_and_digest() {
        let signer = HmacSigner::new(vec![7; 32]).expect("key");
        let sig = signer.sign("r.io/app", &digest('a')).await.expect("sign");
        assert!(signer.verify("r.io/app", &digest('a'), &sig).await.expect("verify").is_valid());
        assert!(!signer.verify("r.io/app", &digest('b'), &sig).await.expect("verify").is_valid(), "another digest");
        assert!(
            !signer.verify("r.io/other", &digest('a'), &sig).await.expect("verify").is_valid(),
            "another repository"
        );
        let other = HmacSigner::new(vec![8; 32]).expect("key");
        assert!(!other.verify("r.io/app", &digest('a'), &sig).await.expect("verify").is_valid(), "another key");
        assert!(!signer.verify("r.io/app", &digest('a'), "garbage").await.expect("verify").is_valid());
        assert!(HmacSigner::new(vec![1; 4]).is_err());
    }
}
