//! Pushing the image by digest, its SBOM as a referrer, and its Notary Project signature.

use std::collections::BTreeMap;
use std::sync::Arc;

use tidegate_core::{Digest, ImageRef};
use tidegate_notary::{Certificate, Signer as NotaryKey, TrustPolicyDocument, TrustStoreRef, TrustStores};
use tidegate_providers::notary_signer::NotarySigner;
use tidegate_providers::registry::artifact::Artifact;
use tidegate_providers::registry::types::OCI_MANIFEST;
use tidegate_providers::registry::{RegistryClient, Repository};
use tidegate_providers::{Signer as _, Verification};

use crate::Error;
use crate::layout::Image;
use crate::sbom::SPDX_MEDIA_TYPE;

/// Where to push: `REGISTRY/REPO[:TAG]`, never a digest (the digest is the image's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The repository.
    pub repository: Repository,
    /// A tag to point at the image too, if given.
    pub tag: Option<String>,
}

impl std::str::FromStr for Target {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let reference: ImageRef = text.parse().map_err(|e| Error::Input(format!("--push {text}: {e}")))?;
        if reference.digest.is_some() {
            return Err(Error::Input(format!(
                "--push {text}: name a repository (and a tag), not a digest; the image's digest is what it is"
            )));
        }
        Ok(Self { repository: Repository::from(&reference), tag: reference.tag })
    }
}

/// What was pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// `REGISTRY/REPO@sha256:…`.
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    /// The SBOM artifact's manifest digest.
    pub sbom: String,
}

/// Pushes the blobs, the manifest by digest (and under the tag, if any), then the SBOM as an
/// artifact whose subject is the image (`artifactType` `application/spdx+json`).
pub async fn push(client: &RegistryClient, target: &Target, image: &Image, sbom: &[u8]) -> Result<Pushed, Error> {
    let repo = &target.repository;
    let registry = |e: tidegate_providers::registry::RegistryError| Error::Registry(format!("{repo}: {e}"));
    for blob in image.blobs() {
        client.push_blob(repo, blob).await.map_err(registry)?;
    }
    let digest = image.digest();
    client.put_manifest(repo, &digest, OCI_MANIFEST, &image.manifest).await.map_err(registry)?;
    if let Some(tag) = &target.tag {
        client.put_manifest(repo, tag, OCI_MANIFEST, &image.manifest).await.map_err(registry)?;
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&image.manifest).map_err(|e| Error::Input(format!("manifest: {e}")))?;
    let created = manifest["annotations"]["org.opencontainers.image.created"].as_str().unwrap_or_default();
    let artifact = Artifact {
        artifact_type: SPDX_MEDIA_TYPE,
        layer_media_type: SPDX_MEDIA_TYPE,
        payload: sbom,
        annotations: BTreeMap::from([("org.opencontainers.image.created".to_string(), created.to_string())]),
    };
    let sbom = client.push_artifact(repo, &image.descriptor(), &artifact).await.map_err(registry)?;
    Ok(Pushed { reference: format!("{repo}@{digest}"), digest, sbom })
}

/// Signs the pushed image with the Notary Project (`key_pem`, `chain_pem` leaf first), then
/// verifies the signature against the chain's root, as `notation verify` with that root in its
/// trust store would. Returns the signature's digest and the signer's subject.
pub async fn sign(
    client: Arc<RegistryClient>,
    pushed: &Pushed,
    key_pem: &[u8],
    chain_pem: &[u8],
) -> Result<(String, String), Error> {
    let signing = |what: String| Error::Signing(format!("{}: {what}", pushed.reference));
    let key = NotaryKey::from_pem(key_pem, chain_pem).map_err(|e| signing(format!("the key and certificate: {e}")))?;
    let chain = Certificate::parse_pem(chain_pem).map_err(|e| signing(format!("the certificate chain: {e}")))?;
    let root = chain.last().cloned().ok_or_else(|| signing("the certificate file holds no certificate".into()))?;
    let mut stores = TrustStores::new();
    stores.insert(TrustStoreRef::ca("image"), vec![root]).map_err(|e| signing(format!("the chain's root: {e}")))?;
    let policy = TrustPolicyDocument::parse(
        br#"{"version": "1.0", "trustPolicies": [{"name": "image", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"}, "trustStores": ["ca:image"], "trustedIdentities": ["*"]}]}"#,
    )
    .map_err(|e| signing(format!("trust policy: {e}")))?;
    let signer = NotarySigner::new(client, Some(key), policy, stores);
    let digest: Digest = pushed.digest.parse().map_err(|e| signing(format!("{e}")))?;
    let signature = signer.sign(&pushed.reference, &digest).await.map_err(|e| signing(e.to_string()))?;
    match signer.verify(&pushed.reference, &digest, &signature).await.map_err(|e| signing(e.to_string()))? {
        Verification::Valid { signer } => Ok((signature, signer)),
        Verification::Invalid(why) => Err(signing(format!("the signature just pushed does not verify: {why}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_a_repository_with_an_optional_tag_and_never_a_digest() {
        let target: Target = "registry.example.com:5000/team/tidegate-controller:0.1.0".parse().unwrap();
        assert_eq!(target.repository.to_string(), "registry.example.com:5000/team/tidegate-controller");
        assert_eq!(target.tag.as_deref(), Some("0.1.0"));
        let untagged: Target = "127.0.0.1:5000/tidegate".parse().unwrap();
        assert_eq!(untagged.tag, None);
        let err = format!("127.0.0.1:5000/tidegate@sha256:{}", "a".repeat(64)).parse::<Target>().unwrap_err();
        assert!(err.to_string().contains("not a digest"), "{err}");
        assert!("tidegate".parse::<Target>().is_err(), "a registry host is required");
    }
}
