//! Signing: a private key and its certificate chain produce JWS envelopes.

use crate::algorithm::{PrivateKey, SignatureAlgorithm};
use crate::descriptor::{Descriptor, Payload};
use crate::envelope::{self, EnvelopeContent};
use crate::error::{SignError, VerifyError};
use crate::x509::{Certificate, ChainCert, thumbprint_annotation_value, validate_chain};
use jiff::Timestamp;

/// A signing identity: a private key and its certificate chain (signing certificate first,
/// ending with the root). Build it once, sign many descriptors.
pub struct Signer {
    key: PrivateKey,
    chain: Vec<Certificate>,
    alg: SignatureAlgorithm,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("alg", &self.alg).field("chain", &self.chain).finish_non_exhaustive()
    }
}

/// Per-signature settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    /// The signing time written to `io.cncf.notary.signingTime` (truncated to whole seconds).
    /// Every certificate of the chain must be valid at that time.
    pub signing_time: Timestamp,
    /// Optional expiry (`io.cncf.notary.expiry`, truncated to whole seconds), after the signing
    /// time.
    pub expiry: Option<Timestamp>,
    /// Identifier of the signing software, e.g. `tidegate/0.1.0` (unsigned; omitted if empty).
    pub signing_agent: String,
}

impl Signer {
    /// Reads the key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC) and the chain (PEM certificates, signing
    /// certificate first, root last), and checks that the key belongs to the signing certificate
    /// and that its type and size are allowed.
    pub fn from_pem(key_pem: &[u8], chain_pem: &[u8]) -> Result<Self, SignError> {
        let key = PrivateKey::from_pem(key_pem)?;
        let chain = Certificate::parse_pem(chain_pem)?;
        Self::new(key, chain)
    }

    fn new(key: PrivateKey, chain: Vec<Certificate>) -> Result<Self, SignError> {
        let public = key.public_key();
        let alg = public.signature_algorithm().map_err(SignError::UnsupportedKey)?;
        let leaf = chain.first().ok_or(SignError::Certificate(crate::error::CertificateError::NoCertificate))?;
        let parsed = ChainCert::parse(leaf, 0).map_err(SignError::InvalidChain)?;
        if parsed.key.as_ref().ok() != Some(&public) {
            return Err(SignError::KeyCertificateMismatch { subject: leaf.subject().to_string() });
        }
        Ok(Self { key, chain, alg })
    }

    /// The signature algorithm the key dictates.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.alg
    }

    /// The certificate chain, signing certificate first.
    pub fn certificate_chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The value of the [`crate::THUMBPRINT_ANNOTATION`] signature manifest annotation.
    pub fn thumbprint_annotation_value(&self) -> String {
        thumbprint_annotation_value(&self.chain)
    }

    /// Signs `target` and returns the envelope bytes (media type
    /// [`crate::ENVELOPE_MEDIA_TYPE`]). The chain is validated as a verifier will validate it
    /// (requirements, order, validity at the signing time, codeSigning usage), so a signature
    /// is never produced that a verifier must reject for its chain.
    pub fn sign(&self, target: &Descriptor, options: &SignOptions) -> Result<Vec<u8>, SignError> {
        target.validate().map_err(SignError::InvalidDescriptor)?;
        let signing_time = whole_seconds(options.signing_time);
        let expiry = options.expiry.map(whole_seconds);
        if let Some(expiry) = expiry
            && expiry <= signing_time
        {
            return Err(SignError::ExpiryNotAfterSigningTime { expiry, signing_time });
        }
        let parsed = self
            .chain
            .iter()
            .enumerate()
            .map(|(i, c)| ChainCert::parse(c, i))
            .collect::<Result<Vec<_>, VerifyError>>()
            .map_err(SignError::InvalidChain)?;
        validate_chain(&parsed, signing_time).map_err(SignError::InvalidChain)?;

        let payload = serde_json::to_vec(&Payload { target_artifact: target.clone() })
            .map_err(|e| SignError::InvalidDescriptor(e.to_string()))?;
        let content = EnvelopeContent {
            alg: self.alg,
            signing_time,
            expiry,
            payload: &payload,
            chain: &self.chain,
            signing_agent: Some(&options.signing_agent),
        };
        envelope::build(&content, |input| self.key.sign_jws(self.alg, input))
    }
}

fn whole_seconds(ts: Timestamp) -> Timestamp {
    Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

/// Signs `target` with a PEM key and PEM certificate chain; see [`Signer::from_pem`] and
/// [`Signer::sign`].
pub fn sign(
    target: &Descriptor,
    key_pem: &[u8],
    chain_pem: &[u8],
    signing_time: Timestamp,
    expiry: Option<Timestamp>,
    signing_agent: &str,
) -> Result<Vec<u8>, SignError> {
    Signer::from_pem(key_pem, chain_pem)?
        .sign(target, &SignOptions { signing_time, expiry, signing_agent: signing_agent.to_string() })
}
