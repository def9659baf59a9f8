//! OCI artifacts that refer to another manifest (signatures, attestations): an empty config, one
//! layer with the payload, and a `subject`, pushed so that the subject's referrers list them.

use std::collections::BTreeMap;

use super::types::{Descriptor, ImageManifest, OCI_MANIFEST};
use super::{RegistryClient, RegistryError, Repository, Result, sha256};

/// Media type and content of the empty config of artifacts.
const EMPTY_CONFIG: (&str, &[u8]) = ("application/vnd.oci.empty.v1+json", b"{}");

/// An artifact to attach to a manifest.
#[derive(Clone, Debug)]
pub struct Artifact<'a> {
    /// `artifactType` of the manifest.
    pub artifact_type: &'a str,
    /// Media type of the single layer.
    pub layer_media_type: &'a str,
    /// The layer's content.
    pub payload: &'a [u8],
    /// Annotations of the manifest (also copied to its referrers descriptor).
    pub annotations: BTreeMap<String, String>,
}

impl RegistryClient {
    /// Pushes `artifact` with `subject` as its subject; returns the artifact manifest's digest.
    /// The same artifact pushed again is the same manifest (the registry stores it once).
    pub async fn push_artifact(
        &self,
        repo: &Repository,
        subject: &Descriptor,
        artifact: &Artifact<'_>,
    ) -> Result<String> {
        let payload_digest = self.push_blob(repo, artifact.payload).await?;
        let config_digest = self.push_blob(repo, EMPTY_CONFIG.1).await?;
        let descriptor = |media_type: &str, digest: String, size: usize| Descriptor {
            media_type: media_type.into(),
            digest,
            size: size as u64,
            artifact_type: None,
            annotations: None,
            platform: None,
        };
        let annotations = (!artifact.annotations.is_empty()).then(|| artifact.annotations.clone());
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            artifact_type: Some(artifact.artifact_type.into()),
            config: descriptor(EMPTY_CONFIG.0, config_digest, EMPTY_CONFIG.1.len()),
            layers: vec![descriptor(artifact.layer_media_type, payload_digest, artifact.payload.len())],
            subject: Some(subject.clone()),
            annotations: annotations.clone(),
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| RegistryError::Protocol { repository: repo.to_string(), message: e.to_string() })?;
        let referrer = Descriptor {
            artifact_type: Some(artifact.artifact_type.into()),
            annotations,
            ..descriptor(OCI_MANIFEST, sha256(&bytes), bytes.len())
        };
        self.push_referrer(repo, OCI_MANIFEST, &bytes, &subject.digest, referrer).await
    }

    /// The single payload layer of the artifact manifest `digest` whose layer has
    /// `layer_media_type`, with the manifest's annotations. The payload's digest is checked.
    pub async fn artifact_payload(
        &self,
        repo: &Repository,
        digest: &str,
        layer_media_type: &str,
    ) -> Result<(Vec<u8>, BTreeMap<String, String>)> {
        let fetched = self.get_manifest(repo, digest).await?;
        let protocol = |message: String| RegistryError::Protocol { repository: repo.to_string(), message };
        let manifest: ImageManifest =
            serde_json::from_slice(&fetched.bytes).map_err(|e| protocol(format!("artifact {digest}: {e}")))?;
        let layer = match manifest.layers.as_slice() {
            [layer] if layer.media_type == layer_media_type => layer,
            _ => return Err(protocol(format!("artifact {digest} does not hold exactly one {layer_media_type} layer"))),
        };
        let payload = self.get_blob(repo, &layer.digest).await?;
        Ok((payload, manifest.annotations.unwrap_or_default()))
    }
}
