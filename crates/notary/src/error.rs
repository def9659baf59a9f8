//! Error types. Every message is meant to be read by a person in a Kubernetes condition.

use jiff::Timestamp;
use std::path::PathBuf;

/// The validation a verification failure belongs to, as the trust policy specification groups
/// them. A trust policy decides per kind whether a failure is enforced or only logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValidationKind {
    /// Trust policy selection or the artifact reference: always enforced.
    Policy,
    /// The envelope parses, is supported, and its signature verifies; the certificate chain is
    /// well formed and valid at signing time; the payload names the expected digest. Always
    /// enforced.
    Integrity,
    /// The chain leads to a trusted certificate and the signer is a trusted identity.
    Authenticity,
    /// The certificates are valid now (no authentic timestamp is used).
    AuthenticTimestamp,
    /// The signature's own expiry (`io.cncf.notary.expiry`) has not passed.
    Expiry,
    /// The certificates are not revoked.
    Revocation,
}

/// Why a signature was rejected. Verification fails closed: any failure of an enforced
/// validation is returned as one of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The envelope is not a well-formed flattened JWS JSON Notary Project envelope.
    #[error("malformed signature envelope: {0}")]
    MalformedEnvelope(String),
    /// The `alg` protected header is not one of PS256/PS384/PS512/ES256/ES384/ES512.
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The `alg` protected header does not correspond to the signing certificate's key.
    #[error("signature algorithm {alg} does not match the signing certificate's {key} key")]
    AlgorithmMismatch {
        /// The `alg` header value.
        alg: String,
        /// The key of the signing certificate.
        key: String,
    },
    /// The signing scheme is not `notary.x509`. The specification's other scheme,
    /// `notary.x509.signingAuthority`, is not supported: it needs the authentic signing time of
    /// a verified RFC 3161 timestamp.
    #[error("{}", unsupported_scheme_message(.0))]
    UnsupportedSigningScheme(String),
    /// The `cty` protected header is not the Notary Project payload type.
    #[error("unsupported payload content type {0:?}")]
    UnsupportedContentType(String),
    /// A header marked critical is not understood (for example a verification plugin).
    #[error("unsupported critical header {0:?}")]
    UnsupportedCriticalHeader(String),
    /// The `crit` header is missing or inconsistent with the headers present.
    #[error("invalid critical headers: {0}")]
    InvalidCriticalHeaders(String),
    /// The signature does not verify with the signing certificate's key: the payload or the
    /// protected header was altered, or the signature was replaced.
    #[error(
        "the signature does not verify with the signing certificate: the payload, the signed \
         headers or the signature were altered"
    )]
    SignatureInvalid,
    /// A certificate in `x5c` cannot be decoded.
    #[error("certificate {index} of the chain cannot be parsed: {reason}")]
    MalformedCertificate {
        /// Position in the chain (0 = signing certificate).
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// The chain is not an ordered chain from the signing certificate to a self-signed root.
    #[error("invalid certificate chain: {0}")]
    InvalidCertificateChain(String),
    /// A certificate violates the Notary Project certificate requirements (key usage, basic
    /// constraints, key type or size).
    #[error("certificate {subject:?} does not meet the Notary Project requirements: {reason}")]
    CertificateRequirement {
        /// Certificate subject.
        subject: String,
        /// The violated requirement.
        reason: String,
    },
    /// The signing certificate has an extended key usage extension without `codeSigning` (a
    /// certificate without the extension is accepted).
    #[error(
        "signing certificate {subject:?} has an extended key usage extension without codeSigning: \
         it is not issued for signing code"
    )]
    MissingCodeSigningEku {
        /// Certificate subject.
        subject: String,
    },
    /// A certificate of the chain was not valid at the time the signature claims to be made.
    #[error(
        "certificate {subject:?} was not valid at signing time {signing_time} \
         (valid from {not_before} to {not_after})"
    )]
    CertificateNotValidAtSigningTime {
        /// Certificate subject.
        subject: String,
        /// The signing time from the envelope.
        signing_time: Timestamp,
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
    },
    /// A certificate of the chain has expired (or is not yet valid) at verification time.
    #[error("certificate {subject:?} is not valid at {now}: it is valid from {not_before} to {not_after}")]
    CertificateExpired {
        /// Certificate subject.
        subject: String,
        /// Verification time.
        now: Timestamp,
        /// Start of validity.
        not_before: Timestamp,
        /// End of validity.
        not_after: Timestamp,
    },
    /// The signature's expiry time has passed.
    #[error("the signature expired at {expiry} (verification time {now})")]
    SignatureExpired {
        /// `io.cncf.notary.expiry`.
        expiry: Timestamp,
        /// Verification time.
        now: Timestamp,
    },
    /// No certificate of the chain is one of the trusted certificates.
    #[error("the certificate chain does not lead to a trusted certificate (its root is {root_subject:?})")]
    UntrustedChain {
        /// Subject of the last certificate of the chain.
        root_subject: String,
    },
    /// The signing certificate's subject matches no trusted identity of the trust policy.
    #[error(
        "signing certificate {subject:?} matches no trusted identity of trust policy {policy:?}{}",
        detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
    )]
    UntrustedIdentity {
        /// Signing certificate subject.
        subject: String,
        /// Trust policy statement name.
        policy: String,
        /// Why the subject could not be evaluated, if it could not.
        detail: Option<String>,
    },
    /// A trust store named by the trust policy is missing or empty.
    #[error("trust store {0:?} named by the trust policy does not exist or holds no certificate")]
    TrustStoreNotFound(String),
    /// A certificate names an OCSP responder and no CRL distribution point: its revocation
    /// status cannot be checked, since OCSP is not implemented (CRLs are).
    #[error(
        "revocation status of certificate {subject:?} cannot be checked: it names only an OCSP \
         responder (no CRL distribution point), and OCSP is not supported"
    )]
    RevocationUnchecked {
        /// Certificate subject.
        subject: String,
    },
    /// A certificate of the chain is listed on its issuer's valid CRL.
    #[error(
        "certificate {subject:?} (serial {serial}) is revoked since {revoked_at}{}: the CRL at \
         {crl} lists it",
        reason.as_deref().map(|r| format!(" (reason {r})")).unwrap_or_default()
    )]
    Revoked {
        /// Certificate subject.
        subject: String,
        /// Serial number, colon-separated hex.
        serial: String,
        /// The CRL entry's reason code (RFC 5280 name), if it has one.
        reason: Option<String>,
        /// The CRL entry's revocation date.
        revoked_at: Timestamp,
        /// The URL of the CRL that lists it.
        crl: String,
    },
    /// The revocation status of a certificate with CRL distribution points could not be
    /// determined: a CRL could not be fetched or is not valid ("revocation unavailable").
    #[error("revocation status of certificate {subject:?} is unknown: {reason}")]
    RevocationUnknown {
        /// Certificate subject.
        subject: String,
        /// Why, naming each CRL URL tried.
        reason: String,
    },
    /// The signed payload names another artifact than the one being verified.
    #[error("the signature is for {actual}, not for the expected digest {expected}")]
    DigestMismatch {
        /// The digest the caller expects.
        expected: String,
        /// The digest in the signed payload.
        actual: String,
    },
    /// The artifact reference cannot be used to select a trust policy.
    #[error("artifact reference {reference:?} is not valid: {reason}")]
    InvalidArtifactReference {
        /// The reference.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The trust policy statement asks for what this implementation does not verify (a
    /// `TrustPolicyDocument` built by hand; [`crate::TrustPolicyDocument::parse`] refuses it).
    #[error("{0}")]
    UnsupportedTrustPolicy(TrustPolicyError),
    /// No trust policy statement applies to the artifact.
    #[error("no trust policy statement applies to {reference:?}")]
    NoApplicableTrustPolicy {
        /// The artifact reference.
        reference: String,
    },
}

impl VerifyError {
    /// The validation this failure belongs to.
    pub fn kind(&self) -> ValidationKind {
        use VerifyError as E;
        match self {
            E::InvalidArtifactReference { .. } | E::NoApplicableTrustPolicy { .. } | E::UnsupportedTrustPolicy(_) => {
                ValidationKind::Policy
            }
            E::UntrustedChain { .. } | E::UntrustedIdentity { .. } | E::TrustStoreNotFound(_) => {
                ValidationKind::Authenticity
            }
            E::CertificateExpired { .. } => ValidationKind::AuthenticTimestamp,
            E::SignatureExpired { .. } => ValidationKind::Expiry,
            E::RevocationUnchecked { .. } | E::Revoked { .. } | E::RevocationUnknown { .. } => {
                ValidationKind::Revocation
            }
            E::MalformedEnvelope(_)
            | E::UnsupportedAlgorithm(_)
            | E::AlgorithmMismatch { .. }
            | E::UnsupportedSigningScheme(_)
            | E::UnsupportedContentType(_)
            | E::UnsupportedCriticalHeader(_)
            | E::InvalidCriticalHeaders(_)
            | E::SignatureInvalid
            | E::MalformedCertificate { .. }
            | E::InvalidCertificateChain(_)
            | E::CertificateRequirement { .. }
            | E::MissingCodeSigningEku { .. }
            | E::CertificateNotValidAtSigningTime { .. }
            | E::DigestMismatch { .. } => ValidationKind::Integrity,
        }
    }
}

fn unsupported_scheme_message(scheme: &str) -> String {
    if scheme == crate::SIGNING_SCHEME_SIGNING_AUTHORITY {
        format!(
            "signing scheme {scheme:?} is not supported: it needs the authentic signing time of a \
             verified RFC 3161 timestamp, which is not implemented; only notary.x509 signatures \
             are verified"
        )
    } else {
        format!("unsupported signing scheme {scheme:?}: only notary.x509 signatures are verified")
    }
}

/// A certificate or PEM bundle could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The PEM text cannot be decoded.
    #[error("invalid PEM: {0}")]
    Pem(String),
    /// The input holds no certificate.
    #[error("no certificate found")]
    NoCertificate,
    /// The DER bytes are not an X.509 certificate.
    #[error("invalid X.509 certificate: {0}")]
    Der(String),
}

/// Signing failed; nothing was signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The private key cannot be read.
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    /// The key type or size is not allowed by the Notary Project.
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    /// The certificate chain cannot be read.
    #[error("invalid certificate chain: {0}")]
    Certificate(#[from] CertificateError),
    /// The private key is not the key of the first certificate of the chain.
    #[error("the private key does not belong to the signing certificate {subject:?}")]
    KeyCertificateMismatch {
        /// Subject of the first certificate.
        subject: String,
    },
    /// The chain would not verify (the same checks as verification, at signing time).
    #[error("the certificate chain cannot sign: {0}")]
    InvalidChain(VerifyError),
    /// The expiry is not after the signing time.
    #[error("expiry {expiry} must be later than signing time {signing_time}")]
    ExpiryNotAfterSigningTime {
        /// Requested expiry.
        expiry: Timestamp,
        /// Requested signing time.
        signing_time: Timestamp,
    },
    /// The target descriptor is not valid.
    #[error("invalid target descriptor: {0}")]
    InvalidDescriptor(String),
    /// The cryptographic operation failed.
    #[error("signing failed: {0}")]
    Crypto(String),
    /// A signature made elsewhere (a key vault, an HSM) does not verify with the signing
    /// certificate's public key: the wrong key signed, or the signer misbehaved. No envelope is
    /// produced.
    #[error(
        "the {alg} signature returned by the signer does not verify with the public key of the signing \
         certificate {subject:?}: the signing key is not the certificate's key, or the signer returned a wrong \
         signature"
    )]
    SignatureDoesNotVerify {
        /// The algorithm the signature was asked for.
        alg: crate::SignatureAlgorithm,
        /// Subject of the signing certificate.
        subject: String,
    },
}

/// A `trustpolicy.json` document is invalid. Each variant names the statement and the rule it
/// breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustPolicyError {
    /// The document is not JSON of the expected shape.
    #[error("malformed trust policy: {0}")]
    Malformed(String),
    /// `version` is missing or empty.
    #[error("trust policy document has no version")]
    MissingVersion,
    /// `version` is not `1.0`.
    #[error("trust policy document uses unsupported version {0:?} (supported: \"1.0\")")]
    UnsupportedVersion(String),
    /// `trustPolicies` is missing or empty.
    #[error("trust policy document has no trust policy statement")]
    NoStatements,
    /// A statement has no name.
    #[error("a trust policy statement has no name; every statement requires a name")]
    MissingName,
    /// A statement asks for timestamp verification (a `tsa:` trust store or `verifyTimestamp`),
    /// which is not implemented: refused rather than ignored.
    #[error(
        "trust policy statement {statement:?} {setting}, but timestamp verification (RFC 3161 \
         timestamp countersignatures) is not supported yet; remove it (without timestamps, every \
         certificate of the signing chain must be valid at verification time)"
    )]
    TimestampVerificationUnsupported {
        /// Statement name.
        statement: String,
        /// What the statement sets, e.g. `names the timestamping authority trust store "tsa:acme"`.
        setting: String,
    },
    /// A statement names a `signingAuthority:` trust store; the
    /// `notary.x509.signingAuthority` signing scheme is not implemented: refused rather than
    /// ignored.
    #[error(
        "trust policy statement {statement:?} names trust store {store:?}, but the \
         notary.x509.signingAuthority signing scheme is not supported yet (it needs verified \
         RFC 3161 timestamps); only notary.x509 signatures verified against ca: trust stores are \
         supported"
    )]
    SigningAuthorityUnsupported {
        /// Statement name.
        statement: String,
        /// The trust store (`signingAuthority:<name>`).
        store: String,
    },
    /// Two statements share a name.
    #[error("several trust policy statements are named {0:?}; names must be unique")]
    DuplicateName(String),
    /// `signatureVerification` is missing or invalid.
    #[error("trust policy statement {statement:?} has an invalid signatureVerification: {reason}")]
    InvalidSignatureVerification {
        /// Statement name.
        statement: String,
        /// The problem.
        reason: String,
    },
    /// A `skip` statement also names trust stores or identities.
    #[error(
        "trust policy statement {0:?} skips verification but names trust stores or trusted \
         identities; remove them"
    )]
    SkipWithTrustConfiguration(String),
    /// A verifying statement lacks trust stores or trusted identities.
    #[error(
        "trust policy statement {0:?} is missing trust stores or trusted identities; both must \
         be specified"
    )]
    MissingTrustStoresOrIdentities(String),
    /// A trust store value is not `<type>:<name>`.
    #[error(
        "trust policy statement {statement:?} has malformed trust store {value:?} \
         (expected <type>:<name>)"
    )]
    MalformedTrustStore {
        /// Statement name.
        statement: String,
        /// The trust store value.
        value: String,
    },
    /// A trust store type is not `ca`, `signingAuthority` or `tsa`.
    #[error("trust policy statement {statement:?} uses unsupported trust store type in {value:?}")]
    UnsupportedTrustStoreType {
        /// Statement name.
        statement: String,
        /// The trust store value.
        value: String,
    },
    /// A trust store name does not match `[a-zA-Z0-9_.-]+`.
    #[error(
        "trust policy statement {statement:?} uses invalid trust store name in {value:?} \
         (names match [a-zA-Z0-9_.-]+)"
    )]
    InvalidTrustStoreName {
        /// Statement name.
        statement: String,
        /// The trust store value.
        value: String,
    },
    /// `*` is combined with other trusted identities.
    #[error("trust policy statement {0:?} combines the wildcard trusted identity '*' with other values")]
    WildcardIdentityWithOthers(String),
    /// A trusted identity is the empty string.
    #[error("trust policy statement {0:?} has an empty trusted identity")]
    EmptyTrustedIdentity(String),
    /// A trusted identity has no `<type>:` prefix.
    #[error("trust policy statement {statement:?} has trusted identity {identity:?} missing the ':' separator")]
    IdentityMissingSeparator {
        /// Statement name.
        statement: String,
        /// The identity.
        identity: String,
    },
    /// `x509.subject:` is not followed by a value.
    #[error("trust policy statement {statement:?} has trusted identity {identity:?} without a value")]
    EmptyIdentityValue {
        /// Statement name.
        statement: String,
        /// The identity.
        identity: String,
    },
    /// An `x509.subject` value is not a valid distinguished name or lacks C, ST or O.
    #[error("trust policy statement {statement:?} has invalid trusted identity {identity:?}: {reason}")]
    InvalidDistinguishedName {
        /// Statement name.
        statement: String,
        /// The identity.
        identity: String,
        /// The problem.
        reason: String,
    },
    /// Two `x509.subject` identities can match the same certificate.
    #[error("trust policy statement {statement:?} has overlapping trusted identities {first:?} and {second:?}")]
    OverlappingIdentities {
        /// Statement name.
        statement: String,
        /// The identity that is a subset of the other.
        first: String,
        /// The other identity.
        second: String,
    },
    /// A statement has no registry scope.
    #[error("trust policy statement {0:?} has no registry scope; at least one is required")]
    NoRegistryScopes(String),
    /// `*` is combined with other scopes.
    #[error("trust policy statement {0:?} combines the wildcard registry scope '*' with other scopes")]
    WildcardScopeWithOthers(String),
    /// A scope is not a fully qualified repository.
    #[error(
        "trust policy statement {statement:?} has invalid registry scope {scope:?}: it must be a \
         fully qualified repository without scheme, tag or digest, e.g. registry.example/team/app"
    )]
    InvalidRegistryScope {
        /// Statement name.
        statement: String,
        /// The scope.
        scope: String,
    },
    /// A scope appears more than once in the document.
    #[error("registry scope {0:?} appears more than once; a scope belongs to one statement only")]
    DuplicateRegistryScope(String),
}

/// A trust store could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustStoreError {
    /// A file or directory cannot be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// A named store directory or a certificate file is a symbolic link (not allowed).
    #[error("{0} is a symbolic link; trust store directories and files must not be symlinks")]
    Symlink(PathBuf),
    /// A certificate file cannot be parsed.
    #[error("trust store file {path}: {source}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: CertificateError,
    },
    /// A trust store certificate is neither a CA certificate nor self-signed.
    #[error("trust store {store}: certificate {subject:?} is neither a CA certificate nor self-signed")]
    NotCaOrSelfSigned {
        /// The store (`type:name`).
        store: String,
        /// Certificate subject.
        subject: String,
    },
    /// A store was given no certificate.
    #[error("trust store {0} holds no certificate")]
    Empty(String),
    /// A store name is not valid.
    #[error("invalid trust store name {0:?} (names match [a-zA-Z0-9_.-]+)")]
    InvalidName(String),
}
