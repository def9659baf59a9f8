//! Promotion records in the registry: the in-toto statement of [`tidegate_core::provenance`]
//! pushed as an OCI artifact whose subject is the image (artifact type
//! `application/vnd.in-toto+json`), and a Notary Project signature whose subject is that
//! artifact, made with the same key as the image signatures. `notation verify REPO@RECORD`
//! accepts it; [`Attestor::records`] reads and verifies every record of a digest.

use std::collections::BTreeMap;

use tidegate_api::RecordEvent;
use tidegate_core::Digest;
use tidegate_core::provenance::{MEDIA_TYPE, Statement};

use crate::notary_signer::NotarySigner;
use crate::registry::artifact::Artifact;
use crate::{ProviderError, Result, Signer, Verification};

/// Annotation of a record manifest: the event it records.
pub const EVENT_ANNOTATION: &str = "dev.tidegate.record.event";
/// Annotation of a record manifest: the Promotion (`namespace/name`).
pub const PROMOTION_ANNOTATION: &str = "dev.tidegate.record.promotion";

/// A promotion record found in the registry.
#[derive(Clone, Debug, PartialEq)]
pub struct FoundRecord {
    /// Digest of the record's manifest.
    pub digest: String,
    /// Whether a trusted signature covers the record.
    pub verification: Verification,
    /// The statement, when it could be read and is about the digest asked for.
    pub statement: Option<Statement>,
    /// Why the statement could not be read.
    pub problem: Option<String>,
}

impl FoundRecord {
    /// Whether the record is readable, about the digest asked for, and signed by a trusted key.
    pub fn is_trusted(&self) -> bool {
        self.verification.is_valid() && self.statement.is_some()
    }
}

/// Attaches signed promotion records to digests and reads them back.
#[async_trait::async_trait]
pub trait Attestor: Send + Sync {
    /// Attaches `statement` (about `image`, `repo@sha256:…`, whose digest is `digest`) and signs
    /// it. Returns the record's manifest digest. Attaching the same statement again pushes
    /// nothing new and signs only if no trusted signature covers the record yet.
    async fn attach(&self, image: &str, digest: &Digest, statement: &Statement) -> Result<String>;
    /// Every promotion record that refers to `digest`, each verified.
    async fn records(&self, image: &str, digest: &Digest) -> Result<Vec<FoundRecord>>;
}

#[async_trait::async_trait]
impl Attestor for NotarySigner {
    async fn attach(&self, image: &str, digest: &Digest, statement: &Statement) -> Result<String> {
        if !self.can_sign() {
            return Err(ProviderError::NotConfigured(
                "promotion records are signed with the Notary Project signing key, which this controller does not \
                 have (--notary-key-file, --notary-cert-file)"
                    .into(),
            ));
        }
        let repo = Self::repository(image)?;
        let subject =
            self.registry().head_manifest(&repo, digest.as_str()).await?.ok_or_else(|| {
                ProviderError::Permanent(format!("cannot attach a record: {digest} is not in {repo}"))
            })?;
        let record = &statement.predicate;
        let annotations = BTreeMap::from([
            // The event's own time, so that attaching again produces the same manifest.
            ("org.opencontainers.image.created".to_string(), record.at.clone()),
            (EVENT_ANNOTATION.to_string(), format!("{:?}", record.event)),
            (PROMOTION_ANNOTATION.to_string(), format!("{}/{}", record.promotion.namespace, record.promotion.name)),
        ]);
        let payload = statement.to_bytes();
        let artifact =
            Artifact { artifact_type: MEDIA_TYPE, layer_media_type: MEDIA_TYPE, payload: &payload, annotations };
        let record_digest: Digest = self
            .registry()
            .push_artifact(&repo, &subject, &artifact)
            .await?
            .parse()
            .map_err(|e| ProviderError::Permanent(format!("record digest: {e}")))?;
        let record_image = format!("{repo}@{record_digest}");
        if !self.verify(&record_image, &record_digest, "").await?.is_valid() {
            // The record is the controller's own artifact, not an image: the artifact path signs it.
            self.sign_artifact(&record_image, &record_digest).await?;
        }
        Ok(record_digest.to_string())
    }

    async fn records(&self, image: &str, digest: &Digest) -> Result<Vec<FoundRecord>> {
        let repo = Self::repository(image)?;
        let mut found = Vec::new();
        for descriptor in self.registry().referrers(&repo, digest.as_str(), Some(MEDIA_TYPE)).await? {
            let unreadable = |why: String| FoundRecord {
                digest: descriptor.digest.clone(),
                verification: Verification::Invalid("not checked: the record is unreadable".into()),
                statement: None,
                problem: Some(why),
            };
            let record_digest: Digest = match descriptor.digest.parse() {
                Ok(d) => d,
                Err(e) => {
                    found.push(unreadable(format!("{}: {e}", descriptor.digest)));
                    continue;
                }
            };
            let payload = match self.registry().artifact_payload(&repo, record_digest.as_str(), MEDIA_TYPE).await {
                Ok((payload, _)) => payload,
                Err(e) if !e.is_transient() => {
                    found.push(unreadable(e.to_string()));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let (statement, problem) = match Statement::parse(&payload, digest) {
                Ok(statement) => (Some(statement), None),
                Err(e) => (None, Some(e.to_string())),
            };
            let verification = self.verify(&format!("{repo}@{record_digest}"), &record_digest, "").await?;
            found.push(FoundRecord { digest: record_digest.to_string(), verification, statement, problem });
        }
        Ok(found)
    }
}

/// How people read an event.
pub fn event_name(event: RecordEvent) -> &'static str {
    match event {
        RecordEvent::Promoted => "promoted",
        RecordEvent::RolledBack => "rolled back",
        RecordEvent::Rejected => "rejected",
    }
}
