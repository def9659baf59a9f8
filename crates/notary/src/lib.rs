//! Notary Project signatures for Tidegate: a pure library (no I/O except the optional trust store
//! directory loader) that
//!
//! - signs an OCI descriptor into a JWS signature envelope (flattened JWS JSON serialization,
//!   media type `application/jose+json`, signing scheme `notary.x509`) that `notation verify`
//!   accepts ([`sign`], [`Signer`]);
//! - verifies such envelopes, fail closed, against trust anchors ([`verify`]) or against a
//!   `trustpolicy.json` document and named trust stores ([`verify_with_policy`]);
//! - parses and validates trust policies ([`TrustPolicyDocument`]) and loads trust stores laid out
//!   as `x509/<type>/<name>/*.pem` ([`TrustStores::load_dir`]).
//!
//! Supported keys: ECDSA P-256 (`ES256`), P-384 (`ES384`), P-521 (`ES512`) and RSA 2048 / 3072 /
//! 4096 with RSASSA-PSS (`PS256` / `PS384` / `PS512`). The algorithm always follows the signing
//! certificate's key, as the specification requires.
//!
//! ```no_run
//! use tidegate_notary::{Certificate, Descriptor, SignOptions, Signer, verify};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (key_pem, chain_pem, root_pem) = (b"", b"", b"");
//! let signer = Signer::from_pem(key_pem, chain_pem)?;
//! let target = Descriptor::new(
//!     "application/vnd.oci.image.manifest.v1+json",
//!     "sha256:73c803930ea3ba1e54bc25c2bdc53edd0284c62ed651fe7b00369da519a3c333",
//!     16724,
//! );
//! let now = jiff::Timestamp::now();
//! let options = SignOptions { signing_time: now, expiry: None, signing_agent: "tidegate/0.1.0".into() };
//! let envelope = signer.sign(&target, &options)?; // push as an `application/jose+json` layer
//!
//! let anchors = Certificate::parse_pem(root_pem)?;
//! let verified = verify(&envelope, &anchors, &target.digest, now)?;
//! println!("signed by {}", verified.signer_subject);
//! # Ok(())
//! # }
//! ```
//!
//! What is verified, fail closed (any failure of an enforced validation is an error):
//!
//! - the signing scheme `notary.x509` only. An envelope with the scheme
//!   `notary.x509.signingAuthority` fails with [`VerifyError::UnsupportedSigningScheme`]: that
//!   scheme needs the authentic signing time of a verified RFC 3161 timestamp;
//! - the certificate chain requirements of the signature specification. The signing
//!   certificate's extended key usage extension is optional; when present it must contain
//!   `codeSigning` (the specification says MAY; RFC 5280 limits such a certificate to the
//!   purposes it lists) and must not contain `anyExtendedKeyUsage`, `serverAuth`, `clientAuth`,
//!   `emailProtection`, `timeStamping` or `OCSPSigning`;
//! - authenticity against `ca` trust stores, and trusted identities (`x509.subject`);
//! - without timestamp verification, every certificate of the chain must be valid at
//!   verification time (the "authentic timestamp" validation);
//! - the signature's expiry;
//! - revocation of the signing certificate and intermediates with CRLs ([`revocation`]). The
//!   library does no I/O for it: [`verify_with_policy_and_crls`] and [`verify_with_crls`] answer
//!   [`Progress::NeedCrls`] with the URLs to fetch (only once the chain leads to a trusted
//!   certificate), and finish when called again with the fetched CRLs ([`FetchedCrls`]). A
//!   listed certificate fails with [`VerifyError::Revoked`]; a CRL that cannot be fetched or used
//!   gives [`VerifyError::RevocationUnknown`]. The functions without CRLs ([`verify`],
//!   [`verify_with_options`], [`verify_with_policy`]) fetch nothing, so a certificate with CRL
//!   distribution points has an unknown revocation status there.
//!
//! Not implemented, and refused rather than ignored:
//!
//! - RFC 3161 timestamp countersignatures. [`TrustPolicyDocument::parse`] refuses a statement
//!   that names a `tsa:` trust store or sets `verifyTimestamp`
//!   ([`TrustPolicyError::TimestampVerificationUnsupported`]). A timestamp token in an envelope
//!   (`io.cncf.notary.timestampSignature`) must be base64 but is otherwise not read and never
//!   extends trust, as in notation when the policy names no `tsa` store;
//! - the `notary.x509.signingAuthority` scheme: a statement that names a `signingAuthority:`
//!   trust store is refused ([`TrustPolicyError::SigningAuthorityUnsupported`]);
//! - verification plugins (an envelope that marks one critical is rejected);
//! - OCSP: a certificate that names an OCSP responder and no CRL distribution point fails with
//!   [`VerifyError::RevocationUnchecked`] when the policy enforces revocation (one that names
//!   both is checked with its CRL);
//! - indirect CRLs, and delta CRLs named only by the certificate (not by its complete CRL): they
//!   give an unknown revocation status.

mod algorithm;
mod descriptor;
mod dn;
mod envelope;
mod error;
pub mod revocation;
mod sign;
mod trust_policy;
mod trust_store;
mod verify;
mod x509;

pub use algorithm::{RawPublicKey, SignatureAlgorithm};
pub use descriptor::Descriptor;
pub use dn::DistinguishedName;
pub use error::{CertificateError, SignError, TrustPolicyError, TrustStoreError, ValidationKind, VerifyError};
pub use revocation::{CrlLookup, CrlSource, CrlValidity, FetchedCrls, NoCrlFetching, Progress, crl_validity};
pub use sign::{PreparedSignature, SignOptions, Signer, SigningChain, sign};
pub use trust_policy::{
    RegistryScopes, SignatureVerification, TrustPolicy, TrustPolicyDocument, TrustedIdentities, TrustedIdentity,
    ValidationAction, ValidationActions, VerificationLevel,
};
pub use trust_store::{TrustStoreRef, TrustStoreType, TrustStores};
pub use verify::{
    PolicyOutcome, VerifiedSignature, VerifyOptions, verify, verify_with_crls, verify_with_options, verify_with_policy,
    verify_with_policy_and_crls,
};
pub use x509::{Certificate, thumbprint_annotation_value};

/// Media type of a JWS signature envelope (the signature manifest's layer media type).
pub const ENVELOPE_MEDIA_TYPE: &str = "application/jose+json";

/// Content type of the signed payload (`cty` protected header).
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

/// `artifactType` of a Notary Project signature manifest (also its config media type).
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";

/// The only signing scheme Tidegate produces and accepts.
pub const SIGNING_SCHEME_X509: &str = "notary.x509";

/// The specification's other signing scheme, which Tidegate does not verify: envelopes that use
/// it fail with [`VerifyError::UnsupportedSigningScheme`].
pub const SIGNING_SCHEME_SIGNING_AUTHORITY: &str = "notary.x509.signingAuthority";

/// Signature manifest annotation holding the SHA-256 thumbprints of the certificate chain
/// (value: see [`thumbprint_annotation_value`]).
pub const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";
