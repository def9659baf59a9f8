//! Signing: a certificate chain and a key produce JWS envelopes. The key is either here (a PEM
//! private key, [`Signer`]) or elsewhere (a key vault or HSM, [`SigningChain`]): an envelope is
//! prepared ([`SigningChain::prepare`]), its signing input signed by whoever holds the key, and
//! finished ([`PreparedSignature::finish`]) only when the signature verifies with the signing
//! certificate's public key.

use crate::algorithm::{PrivateKey, PublicKey, RawPublicKey, SignatureAlgorithm};
use crate::descriptor::{Descriptor, Payload};
use crate::envelope::{self, EnvelopeContent, Unsigned};
use crate::error::{CertificateError, SignError, VerifyError};
use crate::x509::{Certificate, ChainCert, thumbprint_annotation_value, validate_chain};
use jiff::Timestamp;

/// A certificate chain (signing certificate first, ending with the root) whose private key is
/// held elsewhere. The algorithm follows the signing certificate's key, as the Notary Project
/// requires.
#[derive(Clone)]
pub struct SigningChain {
    chain: Vec<Certificate>,
    alg: SignatureAlgorithm,
    leaf_key: PublicKey,
}

impl std::fmt::Debug for SigningChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningChain").field("alg", &self.alg).field("chain", &self.chain).finish()
    }
}

impl SigningChain {
    /// A chain, signing certificate first. Its key must be one the Notary Project allows (RSA
    /// 2048/3072/4096, ECDSA P-256/P-384/P-521). The chain itself is validated when a signature
    /// is prepared, at the signing time.
    pub fn new(chain: Vec<Certificate>) -> Result<Self, SignError> {
        let leaf = chain.first().ok_or(SignError::Certificate(CertificateError::NoCertificate))?;
        let parsed = ChainCert::parse(leaf, 0).map_err(SignError::InvalidChain)?;
        let leaf_key = parsed.key.clone().map_err(|e| SignError::UnsupportedKey(format!("{}: {e}", leaf.subject())))?;
        let alg = leaf_key.signature_algorithm().map_err(SignError::UnsupportedKey)?;
        Ok(Self { chain, alg, leaf_key })
    }

    /// Reads the chain from PEM certificates, signing certificate first.
    pub fn from_pem(chain_pem: &[u8]) -> Result<Self, SignError> {
        Self::new(Certificate::parse_pem(chain_pem)?)
    }

    /// The signature algorithm the signing certificate's key dictates.
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

    /// A short description of the signing certificate's key, e.g. `ECDSA P-256`.
    pub fn key_description(&self) -> String {
        self.leaf_key.describe()
    }

    /// Whether `key` is the signing certificate's public key. A key in another form than the
    /// certificate's (an unsupported curve, an invalid point) is an error.
    pub fn has_public_key(&self, key: &RawPublicKey) -> Result<bool, SignError> {
        let key = PublicKey::from_raw(key).map_err(SignError::InvalidKey)?;
        Ok(key == self.leaf_key)
    }

    /// Prepares the envelope of `target`: checks the descriptor and the expiry, validates the
    /// chain as a verifier will (requirements, order, validity at the signing time, codeSigning
    /// usage), and encodes the protected header and payload. Sign
    /// [`PreparedSignature::signing_input`] (or its [`PreparedSignature::digest`]) with the
    /// key and pass the signature to [`PreparedSignature::finish`].
    pub fn prepare(&self, target: &Descriptor, options: &SignOptions) -> Result<PreparedSignature, SignError> {
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
        let content = EnvelopeContent { alg: self.alg, signing_time, expiry, payload: &payload };
        let unsigned = envelope::unsigned(&content)?;
        Ok(PreparedSignature {
            signing_input: unsigned.signing_input(),
            unsigned,
            chain: self.clone(),
            signing_agent: options.signing_agent.clone(),
        })
    }
}

/// An envelope waiting for its signature.
pub struct PreparedSignature {
    unsigned: Unsigned,
    signing_input: String,
    chain: SigningChain,
    signing_agent: String,
}

impl std::fmt::Debug for PreparedSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedSignature")
            .field("alg", &self.chain.alg)
            .field("signing_input", &self.signing_input)
            .finish_non_exhaustive()
    }
}

impl PreparedSignature {
    /// The algorithm the signature must be made with.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.chain.alg
    }

    /// The JWS signing input, `ASCII(BASE64URL(protected) || '.' || BASE64URL(payload))`.
    pub fn signing_input(&self) -> &[u8] {
        self.signing_input.as_bytes()
    }

    /// The hash of the signing input with the algorithm's hash function: what a key vault signs
    /// (ES256/PS256: SHA-256, ES384/PS384: SHA-384, ES512/PS512: SHA-512).
    pub fn digest(&self) -> Vec<u8> {
        self.chain.alg.digest(self.signing_input())
    }

    /// The envelope with `signature` (ECDSA: the fixed-size `r || s`; RSA: RSASSA-PSS with MGF1
    /// and a salt as long as the hash). The signature must verify with the signing certificate's
    /// public key, otherwise [`SignError::SignatureDoesNotVerify`] and no envelope.
    pub fn finish(self, signature: &[u8]) -> Result<Vec<u8>, SignError> {
        let alg = self.chain.alg;
        if !self.chain.leaf_key.verify_jws(alg, self.signing_input(), signature) {
            let subject = self.chain.chain.first().map(|c| c.subject().to_string()).unwrap_or_default();
            return Err(SignError::SignatureDoesNotVerify { alg, subject });
        }
        envelope::assemble(&self.unsigned, &self.chain.chain, Some(&self.signing_agent), signature)
    }
}

/// A signing identity: a private key and its certificate chain (signing certificate first,
/// ending with the root). Build it once, sign many descriptors.
pub struct Signer {
    key: PrivateKey,
    chain: SigningChain,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("chain", &self.chain).finish_non_exhaustive()
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
        public.signature_algorithm().map_err(SignError::UnsupportedKey)?;
        let leaf = chain.first().ok_or(SignError::Certificate(CertificateError::NoCertificate))?;
        let parsed = ChainCert::parse(leaf, 0).map_err(SignError::InvalidChain)?;
        if parsed.key.as_ref().ok() != Some(&public) {
            return Err(SignError::KeyCertificateMismatch { subject: leaf.subject().to_string() });
        }
        Ok(Self { key, chain: SigningChain::new(chain)? })
    }

    /// The signature algorithm the key dictates.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.chain.alg
    }

    /// The certificate chain, signing certificate first.
    pub fn certificate_chain(&self) -> &[Certificate] {
        self.chain.certificate_chain()
    }

    /// The value of the [`crate::THUMBPRINT_ANNOTATION`] signature manifest annotation.
    pub fn thumbprint_annotation_value(&self) -> String {
        self.chain.thumbprint_annotation_value()
    }

    /// Signs `target` and returns the envelope bytes (media type
    /// [`crate::ENVELOPE_MEDIA_TYPE`]). The chain is validated as a verifier will validate it
    /// (requirements, order, validity at the signing time, codeSigning usage), so a signature
    /// is never produced that a verifier must reject for its chain.
    pub fn sign(&self, target: &Descriptor, options: &SignOptions) -> Result<Vec<u8>, SignError> {
        let prepared = self.chain.prepare(target, options)?;
        let signature = self.key.sign_jws(prepared.algorithm(), prepared.signing_input())?;
        prepared.finish(&signature)
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
