//! Verification, fail closed, in the order of the trust policy specification: integrity,
//! authenticity, authentic timestamp (certificates valid now: timestamp countersignatures are
//! not verified, as notation does when the policy names no `tsa` trust store), expiry,
//! revocation (CRLs, see [`crate::revocation`]).
//!
//! The `*_crls` functions take the CRLs the caller has fetched and may answer
//! [`Progress::NeedCrls`]; the others fetch nothing, so a certificate with CRL distribution
//! points has an unknown revocation status.

use crate::algorithm::SignatureAlgorithm;
use crate::descriptor::{Descriptor, Payload};
use crate::dn::DistinguishedName;
use crate::envelope;
use crate::error::{ValidationKind, VerifyError};
use crate::revocation::{ChainRevocation, CrlSource, NoCrlFetching, Progress, check_chain};
use crate::trust_policy::{
    TrustPolicyDocument, TrustedIdentities, ValidationAction, ValidationActions, VerificationLevel, split_reference,
};
use crate::trust_store::{TrustStoreType, TrustStores};
use crate::x509::{Certificate, ChainCert, validate_chain};
use jiff::Timestamp;

/// A signature that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The signed artifact.
    pub target: Descriptor,
    /// The signing algorithm.
    pub algorithm: SignatureAlgorithm,
    /// The (signer-asserted) signing time.
    pub signing_time: Timestamp,
    /// The signature's expiry, if any.
    pub expiry: Option<Timestamp>,
    /// Subject of the signing certificate, e.g. `C=US, ST=WA, O=Acme, CN=builder`.
    pub signer_subject: String,
    /// SHA-256 fingerprints (lowercase hex) of the certificate chain, signing certificate first.
    pub chain_fingerprints: Vec<String>,
    /// Subject of the trusted certificate the chain led to (`None` if authenticity was only
    /// logged and failed).
    pub trust_anchor_subject: Option<String>,
    /// The unsigned signing agent, for diagnostics only.
    pub signing_agent: Option<String>,
    /// The trust policy statement used, for [`verify_with_policy`].
    pub policy: Option<String>,
    /// Failures of validations the trust policy only logs. Always empty for strict
    /// verification.
    pub warnings: Vec<VerifyError>,
}

/// The result of verification against a trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOutcome {
    /// The applicable statement has level `skip`: nothing was verified.
    Skipped {
        /// The statement name.
        policy: String,
    },
    /// The signature verified (possibly with logged failures, see
    /// [`VerifiedSignature::warnings`]).
    Verified(Box<VerifiedSignature>),
}

/// Settings of [`verify_with_options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// What to do when each relaxable validation fails. Default: enforce everything.
    pub actions: ValidationActions,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self { actions: ValidationActions::strict() }
    }
}

/// Verifies an envelope against trust anchors, strictly: see [`verify_with_options`] with the
/// default options.
pub fn verify(
    envelope: &[u8],
    trust_anchors: &[Certificate],
    expected_digest: &str,
    now: Timestamp,
) -> Result<VerifiedSignature, VerifyError> {
    verify_with_options(envelope, trust_anchors, expected_digest, now, &VerifyOptions::default())
}

/// Verifies an envelope against trust anchors (any certificate of the chain must be one of them,
/// byte for byte), for the artifact with digest `expected_digest`, at time `now`. Every trusted
/// signer is accepted (no identity restriction).
pub fn verify_with_options(
    envelope: &[u8],
    trust_anchors: &[Certificate],
    expected_digest: &str,
    now: Timestamp,
    options: &VerifyOptions,
) -> Result<VerifiedSignature, VerifyError> {
    finished(verify_with_crls(envelope, trust_anchors, expected_digest, now, options, &NoCrlFetching)?)
}

/// [`verify_with_options`] with CRLs: answers [`Progress::NeedCrls`] while the chain needs a
/// CRL that `crls` does not hold yet.
pub fn verify_with_crls(
    envelope: &[u8],
    trust_anchors: &[Certificate],
    expected_digest: &str,
    now: Timestamp,
    options: &VerifyOptions,
    crls: &dyn CrlSource,
) -> Result<Progress<VerifiedSignature>, VerifyError> {
    let trust = Trust { anchors: Ok(trust_anchors.iter().collect()), identities: None };
    verify_core(envelope, &trust, expected_digest, now, options, crls)
}

/// The result of a verification with [`NoCrlFetching`], which never asks for CRLs.
fn finished<T>(progress: Progress<T>) -> Result<T, VerifyError> {
    match progress {
        Progress::Done(done) => Ok(done),
        Progress::NeedCrls(urls) => Err(VerifyError::RevocationUnknown {
            subject: String::new(),
            reason: format!("CRLs {} were not fetched", urls.join(", ")),
        }),
    }
}

/// Verifies an envelope for `artifact_reference` (`registry/repository@digest`) with the trust
/// policy statement that applies to it and the trust stores it names. The digest of the
/// reference is the expected payload digest. Only `ca` trust stores are used: a statement that
/// names a `tsa` or `signingAuthority` store fails with [`VerifyError::UnsupportedTrustPolicy`]
/// ([`TrustPolicyDocument::parse`] refuses such documents already).
pub fn verify_with_policy(
    envelope: &[u8],
    policy_document: &TrustPolicyDocument,
    trust_stores: &TrustStores,
    artifact_reference: &str,
    now: Timestamp,
) -> Result<PolicyOutcome, VerifyError> {
    finished(verify_with_policy_and_crls(
        envelope,
        policy_document,
        trust_stores,
        artifact_reference,
        now,
        &NoCrlFetching,
    )?)
}

/// [`verify_with_policy`] with CRLs: answers [`Progress::NeedCrls`] while the chain needs a CRL
/// that `crls` does not hold yet. A caller fetches those URLs, records each result in `crls`
/// and calls again; every call verifies from the start, so the answer depends only on the
/// arguments.
pub fn verify_with_policy_and_crls(
    envelope: &[u8],
    policy_document: &TrustPolicyDocument,
    trust_stores: &TrustStores,
    artifact_reference: &str,
    now: Timestamp,
    crls: &dyn CrlSource,
) -> Result<Progress<PolicyOutcome>, VerifyError> {
    let policy = policy_document.applicable_policy(artifact_reference)?;
    let (_, digest) = split_reference(artifact_reference)?;
    if policy.signature_verification.level == VerificationLevel::Skip {
        return Ok(Progress::Done(PolicyOutcome::Skipped { policy: policy.name.clone() }));
    }
    // `parse` refuses these already; a document built by hand is checked here.
    policy.check_supported().map_err(VerifyError::UnsupportedTrustPolicy)?;
    let ca_stores: Vec<_> = policy.trust_stores.iter().filter(|s| s.store_type == TrustStoreType::Ca).collect();
    let anchors = if ca_stores.is_empty() {
        Err(VerifyError::TrustStoreNotFound("no ca trust store is named by the policy".into()))
    } else {
        ca_stores
            .iter()
            .map(|store| trust_stores.get(store).ok_or_else(|| VerifyError::TrustStoreNotFound(store.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(|stores| stores.into_iter().flatten().collect())
    };
    let trust = Trust { anchors, identities: Some((&policy.name, &policy.trusted_identities)) };
    let options = VerifyOptions { actions: policy.signature_verification.actions };
    Ok(match verify_core(envelope, &trust, digest, now, &options, crls)? {
        Progress::Done(mut verified) => {
            verified.policy = Some(policy.name.clone());
            Progress::Done(PolicyOutcome::Verified(Box::new(verified)))
        }
        Progress::NeedCrls(urls) => Progress::NeedCrls(urls),
    })
}

/// What authenticity is checked against.
struct Trust<'a> {
    /// Trusted certificates, or why they could not be gathered.
    anchors: Result<Vec<&'a Certificate>, VerifyError>,
    /// Policy name and trusted identities; `None` trusts every signer of the anchors.
    identities: Option<(&'a str, &'a TrustedIdentities)>,
}

/// Applies the policy action of a failed validation: enforce → error, log → warning.
fn apply(
    result: Result<(), VerifyError>,
    action: ValidationAction,
    warnings: &mut Vec<VerifyError>,
) -> Result<bool, VerifyError> {
    match (result, action) {
        (Ok(()), _) => Ok(true),
        (Err(_), ValidationAction::Skip) => Ok(false),
        (Err(e), ValidationAction::Log) => {
            warnings.push(e);
            Ok(false)
        }
        (Err(e), ValidationAction::Enforce) => Err(e),
    }
}

fn verify_core(
    envelope_bytes: &[u8],
    trust: &Trust<'_>,
    expected_digest: &str,
    now: Timestamp,
    options: &VerifyOptions,
    crls: &dyn CrlSource,
) -> Result<Progress<VerifiedSignature>, VerifyError> {
    let actions = options.actions;
    let mut warnings = Vec::new();

    // Integrity: envelope, algorithm, signature, chain, payload.
    let env = envelope::parse(envelope_bytes)?;
    let chain =
        env.certificates.iter().enumerate().map(|(i, c)| ChainCert::parse(c, i)).collect::<Result<Vec<_>, _>>()?;
    let leaf = chain.first().ok_or_else(|| VerifyError::MalformedEnvelope("the certificate chain is empty".into()))?;
    let leaf_key = leaf
        .key
        .as_ref()
        .map_err(|e| VerifyError::CertificateRequirement { subject: leaf.subject().to_string(), reason: e.clone() })?;
    let key_alg = leaf_key
        .signature_algorithm()
        .map_err(|reason| VerifyError::CertificateRequirement { subject: leaf.subject().to_string(), reason })?;
    if key_alg != env.alg {
        return Err(VerifyError::AlgorithmMismatch { alg: env.alg.to_string(), key: leaf_key.describe() });
    }
    if !leaf_key.verify_jws(env.alg, env.signing_input.as_bytes(), &env.signature) {
        return Err(VerifyError::SignatureInvalid);
    }
    let payload: Payload = serde_json::from_slice(&env.payload)
        .map_err(|e| VerifyError::MalformedEnvelope(format!("invalid signed payload: {e}")))?;
    let target = payload.target_artifact;
    target.validate().map_err(|e| VerifyError::MalformedEnvelope(format!("invalid signed payload: {e}")))?;
    validate_chain(&chain, env.signing_time)?;
    if target.digest != expected_digest {
        return Err(VerifyError::DigestMismatch { expected: expected_digest.to_string(), actual: target.digest });
    }

    // Authenticity: a certificate of the chain is trusted, and the signer is a trusted identity.
    let mut trust_anchor_subject = None;
    if actions.authenticity != ValidationAction::Skip {
        let anchored = trust.anchors.clone().and_then(|anchors| {
            chain
                .iter()
                .find(|c| anchors.iter().any(|a| a.der() == c.source.der()))
                .map(|c| c.subject().to_string())
                .ok_or_else(|| VerifyError::UntrustedChain {
                    root_subject: chain.last().map(|c| c.subject().to_string()).unwrap_or_default(),
                })
        });
        let result = anchored.map(|subject| trust_anchor_subject = Some(subject));
        if apply(result, actions.authenticity, &mut warnings)?
            && let Some((policy, identities)) = trust.identities
        {
            let subject = DistinguishedName::from_x509_name(leaf.cert.subject());
            let result = match identities.matches(subject.as_ref()) {
                Ok(true) => Ok(()),
                Ok(false) => Err(None),
                Err(detail) => Err(Some(detail)),
            }
            .map_err(|detail| VerifyError::UntrustedIdentity {
                subject: leaf.subject().to_string(),
                policy: policy.to_string(),
                detail,
            });
            apply(result, actions.authenticity, &mut warnings)?;
        }
    }

    // Authentic timestamp: without a trusted timestamp, every certificate must be valid now.
    if actions.authentic_timestamp != ValidationAction::Skip {
        let result = chain.iter().try_for_each(|c| c.check_valid_at(now));
        apply(result, actions.authentic_timestamp, &mut warnings)?;
    }

    // Expiry.
    if let Some(expiry) = env.expiry {
        let result = if now >= expiry { Err(VerifyError::SignatureExpired { expiry, now }) } else { Ok(()) };
        apply(result, actions.expiry, &mut warnings)?;
    }

    // Revocation, with CRLs; URLs are asked for only when the chain leads to a trusted
    // certificate.
    if actions.revocation != ValidationAction::Skip {
        match check_chain(&chain, trust_anchor_subject.is_some(), crls, now) {
            ChainRevocation::Need(urls) => return Ok(Progress::NeedCrls(urls)),
            ChainRevocation::Done(result) => {
                apply(result, actions.revocation, &mut warnings)?;
            }
        }
    }

    debug_assert!(warnings.iter().all(|w| w.kind() != ValidationKind::Integrity));
    Ok(Progress::Done(VerifiedSignature {
        target,
        algorithm: env.alg,
        signing_time: env.signing_time,
        expiry: env.expiry,
        signer_subject: leaf.subject().to_string(),
        chain_fingerprints: env.certificates.iter().map(Certificate::sha256_fingerprint).collect(),
        trust_anchor_subject,
        signing_agent: env.signing_agent,
        policy: None,
        warnings,
    }))
}
