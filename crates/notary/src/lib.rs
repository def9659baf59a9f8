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
//! Not implemented (and therefore refused where it matters): RFC 3161 timestamp countersignatures
//! (ignored, so certificates must still be valid at verification time), the
//! `notary.x509.signingAuthority` scheme, verification plugins, and revocation checking (a chain
//! that advertises CRL or OCSP endpoints fails when the policy enforces revocation).

mod algorithm;
mod descriptor;
mod dn;
mod envelope;
mod error;
mod sign;
mod trust_policy;
mod trust_store;
mod verify;
mod x509;

pub use algorithm::SignatureAlgorithm;
pub use descriptor::Descriptor;
pub use dn::DistinguishedName;
pub use error::{CertificateError, SignError, TrustPolicyError, TrustStoreError, ValidationKind, VerifyError};
pub use sign::{SignOptions, Signer, sign};
pub use trust_policy::{
    RegistryScopes, SignatureVerification, TrustPolicy, TrustPolicyDocument, TrustedIdentities, TrustedIdentity,
    ValidationAction, ValidationActions, VerificationLevel, VerifyTimestamp,
};
pub use trust_store::{TrustStoreRef, TrustStoreType, TrustStores};
pub use verify::{PolicyOutcome, VerifiedSignature, VerifyOptions, verify, verify_with_options, verify_with_policy};
pub use x509::{Certificate, thumbprint_annotation_value};

/// Media type of a JWS signature envelope (the signature manifest's layer media type).
pub const ENVELOPE_MEDIA_TYPE: &str = "application/jose+json";

/// Content type of the signed payload (`cty` protected header).
pub const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";

/// `artifactType` of a Notary Project signature manifest (also its config media type).
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";

/// The only signing scheme Tidegate produces and accepts.
pub const SIGNING_SCHEME_X509: &str = "notary.x509";

/// Signature manifest annotation holding the SHA-256 thumbprints of the certificate chain
/// (value: see [`thumbprint_annotation_value`]).
pub const THUMBPRINT_ANNOTATION: &str = "io.cncf.notary.x509chain.thumbprint#S256";
