//! Signed Trivy reports from CI: the `trivyReport` scanner of `spec.scan.scanner`.
//!
//! CI scans the exact digest (`trivy image --format json REPO@DIGEST`), attaches the JSON report
//! to that digest as an OCI referrer with artifact type [`REPORT_ARTIFACT_TYPE`] (the single
//! layer holds the report, media type `application/json` or the artifact type itself) and signs
//! the report's manifest with the Notary Project (`notation sign REPO@REPORT_DIGEST`).
//!
//! A report counts only when all of this holds: its manifest has that artifact type and names
//! the candidate as its `subject` (the referrers list, or a tag-schema index anyone may write,
//! is not taken on trust); a signature of the report manifest verifies against the controller's
//! trust policy; and the report is a Trivy report of exactly the candidate, fresh enough
//! ([`crate::report::check_report`]). The newest such report wins. Anything else does not count:
//! the reason is logged with the report's digest and the Release keeps waiting in `Scanning`, so
//! an unsigned, untrusted, misattached or stale report never passes the gate, and a missing one
//! never skips it. Registry trouble is [`ProviderError::Transient`].
//!
//! The controller's own signatures are trusted by the same policy, so it signs container images
//! only ([`crate::notary_signer`]): a report manifest named as a Release's candidate is refused,
//! never turned into a trusted report.

use std::sync::Arc;

use tidegate_core::Digest;

use crate::notary_signer::NotarySigner;
use crate::registry::Repository;
use crate::registry::types::ImageManifest;
use crate::report::{Checked, check_report};
use crate::{ProviderError, Result, ScanReport, ScanRequest, Scanner, Signer, Verification};

/// `artifactType` of a signed Trivy report attached to an image.
pub const REPORT_ARTIFACT_TYPE: &str = "application/vnd.tidegate.trivy.report.v1+json";
/// Media types accepted for the report layer.
pub const REPORT_LAYER_TYPES: [&str; 2] = ["application/json", REPORT_ARTIFACT_TYPE];
/// The largest report read (Trivy reports of big images run to a few MiB).
pub const MAX_REPORT_BYTES: u64 = 32 * 1024 * 1024;

/// Reads the signed reports attached to a digest, verifying each with the trust policy.
pub struct SignedReportScanner {
    verifier: Arc<NotarySigner>,
}

impl SignedReportScanner {
    /// A scanner that verifies report signatures with `verifier`'s trust policy and store, and
    /// reads the registry through its client.
    pub fn new(verifier: Arc<NotarySigner>) -> Self {
        Self { verifier }
    }

    /// The report `report` (a manifest digest among the candidate's referrers), checked: `Ok(Err)`
    /// says why it does not count; `Err` is registry trouble worth retrying.
    async fn check(
        &self,
        repo: &Repository,
        request: &ScanRequest<'_>,
        report: &str,
    ) -> Result<std::result::Result<Checked, String>> {
        let registry = self.verifier.registry();
        let report_digest: Digest = match report.parse() {
            Ok(digest) => digest,
            Err(e) => return Ok(Err(format!("not a report digest: {e}"))),
        };
        let fetched = match registry.get_manifest(repo, report_digest.as_str()).await {
            Ok(fetched) => fetched,
            Err(e) if e.is_transient() => return Err(ProviderError::Transient(e.to_string())),
            Err(e) => return Ok(Err(e.to_string())),
        };
        let manifest: ImageManifest = match serde_json::from_slice(&fetched.bytes) {
            Ok(manifest) => manifest,
            Err(e) => return Ok(Err(format!("unreadable report manifest: {e}"))),
        };
        if manifest.artifact_type.as_deref() != Some(REPORT_ARTIFACT_TYPE) {
            return Ok(Err(format!(
                "its manifest has artifactType {:?}, not {REPORT_ARTIFACT_TYPE}",
                manifest.artifact_type.unwrap_or_default()
            )));
        }
        let subject = manifest.subject.as_ref().map(|s| s.digest.as_str());
        if subject != Some(request.digest.as_str()) {
            return Ok(Err(format!(
                "it is attached to {}, not to {}",
                subject.unwrap_or("nothing (no subject)"),
                request.digest
            )));
        }
        let layer = match manifest.layers.as_slice() {
            [layer] if REPORT_LAYER_TYPES.contains(&layer.media_type.as_str()) => layer,
            _ => {
                return Ok(Err(format!(
                    "it does not hold exactly one layer of media type {}",
                    REPORT_LAYER_TYPES.join(" or ")
                )));
            }
        };
        if layer.size > MAX_REPORT_BYTES {
            return Ok(Err(format!("its report is {} bytes, more than {MAX_REPORT_BYTES} are read", layer.size)));
        }
        // The report manifest is the signed subject: its digest covers the layer's digest.
        match self.verifier.verify(&format!("{repo}@{report_digest}"), &report_digest, "").await {
            Ok(Verification::Valid { .. }) => {}
            Ok(Verification::Invalid(why)) => return Ok(Err(format!("not signed by a trusted key: {why}"))),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => return Ok(Err(format!("its signature cannot be checked: {e}"))),
        }
        let payload = match registry.get_blob(repo, &layer.digest).await {
            Ok(payload) => payload,
            Err(e) if e.is_transient() => return Err(ProviderError::Transient(e.to_string())),
            Err(e) => return Ok(Err(e.to_string())),
        };
        let Ok(text) = std::str::from_utf8(&payload) else {
            return Ok(Err("the report is not UTF-8 text".into()));
        };
        Ok(check_report(text, request.image, request.digest, request.now, request.max_age).map_err(|e| e.to_string()))
    }
}

#[async_trait::async_trait]
impl Scanner for SignedReportScanner {
    async fn scan(&self, request: &ScanRequest<'_>) -> Result<Option<ScanReport>> {
        let repo = NotarySigner::repository(request.image)?;
        let listed = self
            .verifier
            .registry()
            .referrers(&repo, request.digest.as_str(), Some(REPORT_ARTIFACT_TYPE))
            .await
            .map_err(|e| ProviderError::Transient(format!("listing the scan reports of {}: {e}", request.image)))?;
        let mut newest: Option<(Checked, String)> = None;
        for descriptor in listed {
            match self.check(&repo, request, &descriptor.digest).await? {
                Ok(checked) => {
                    let newer = newest.as_ref().is_none_or(|(best, best_digest)| {
                        (checked.created_at, &descriptor.digest) > (best.created_at, best_digest)
                    });
                    if newer {
                        newest = Some((checked, descriptor.digest));
                    }
                }
                Err(why) => tracing::warn!(
                    report = %descriptor.digest,
                    digest = %request.digest,
                    "signed scan report does not count, waiting for one that does: {why}"
                ),
            }
        }
        Ok(newest.map(|(checked, report)| {
            tracing::debug!(%report, digest = %request.digest, "using the signed scan report");
            ScanReport { findings: checked.findings, produced_at: Some(checked.created_at), database: None }
        }))
    }
}
