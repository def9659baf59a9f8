//! Signature algorithms, keys, and the raw sign / verify primitives (RustCrypto).

use crate::error::SignError;
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::signature::{RandomizedSigner, SignatureEncoding, Signer, Verifier};
use pkcs8::DecodePrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::rand_core::OsRng;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::fmt;
use x509_parser::x509::SubjectPublicKeyInfo;

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

/// Largest RSA modulus accepted in a certificate chain (signing keys are limited to 4096 bits).
const MAX_RSA_BITS: usize = 8192;

/// The JWS `alg` values the Notary Project allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlgorithm {
    /// RSASSA-PSS with SHA-256 (RSA 2048).
    Ps256,
    /// RSASSA-PSS with SHA-384 (RSA 3072).
    Ps384,
    /// RSASSA-PSS with SHA-512 (RSA 4096).
    Ps512,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// ECDSA P-521 with SHA-512.
    Es512,
}

impl SignatureAlgorithm {
    /// The JWS `alg` header value.
    pub fn jws_name(self) -> &'static str {
        match self {
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::Es512 => "ES512",
        }
    }

    /// Parses a JWS `alg` header value (case-sensitive, as JWS requires).
    pub fn from_jws_name(name: &str) -> Option<Self> {
        Some(match name {
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "ES512" => Self::Es512,
            _ => return None,
        })
    }
}

impl SignatureAlgorithm {
    /// The hash of `message` with this algorithm's hash function (SHA-256, SHA-384 or SHA-512):
    /// what a remote signer such as Azure Key Vault is given to sign.
    pub fn digest(self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ps256 | Self::Es256 => Hash::Sha256.digest(message),
            Self::Ps384 | Self::Es384 => Hash::Sha384.digest(message),
            Self::Ps512 | Self::Es512 => Hash::Sha512.digest(message),
        }
    }
}

/// A public key given by its parameters (big-endian unsigned integers), as a JSON Web Key or a
/// key management service describes it, to compare with a certificate's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawPublicKey {
    /// RSA: modulus `n` and public exponent `e`.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// An elliptic curve point on `curve` (`P-256`, `P-384` or `P-521`).
    Ec {
        /// The JWK curve name.
        curve: String,
        /// X coordinate.
        x: Vec<u8>,
        /// Y coordinate.
        y: Vec<u8>,
    },
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jws_name())
    }
}

/// The hash functions used in certificate signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub(crate) fn from_oid(oid: &str) -> Option<Self> {
        match oid {
            "2.16.840.1.101.3.4.2.1" => Some(Self::Sha256),
            "2.16.840.1.101.3.4.2.2" => Some(Self::Sha384),
            "2.16.840.1.101.3.4.2.3" => Some(Self::Sha512),
            _ => None,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }
}

/// A public key usable by the Notary Project (RSA, or ECDSA on P-256 / P-384 / P-521).
#[derive(Clone)]
pub(crate) enum PublicKey {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Rsa(a), Self::Rsa(b)) => a == b,
            (Self::P256(a), Self::P256(b)) => a == b,
            (Self::P384(a), Self::P384(b)) => a == b,
            (Self::P521(a), Self::P521(b)) => a.to_encoded_point(false) == b.to_encoded_point(false),
            _ => false,
        }
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    /// Reads the key of a certificate.
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self, String> {
        let algorithm = spki.algorithm.algorithm.to_id_string();
        let key_bytes: &[u8] = &spki.subject_public_key.data;
        match algorithm.as_str() {
            OID_RSA_ENCRYPTION => {
                let parsed = spki.parsed().map_err(|e| format!("invalid RSA public key: {e}"))?;
                let x509_parser::public_key::PublicKey::RSA(rsa_key) = parsed else {
                    return Err("invalid RSA public key".into());
                };
                let n = BigUint::from_bytes_be(rsa_key.modulus);
                let e = BigUint::from_bytes_be(rsa_key.exponent);
                RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
                    .map(Self::Rsa)
                    .map_err(|e| format!("unsupported RSA public key: {e}"))
            }
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|oid| oid.to_id_string())
                    .ok_or_else(|| "EC public key without a named curve".to_string())?;
                let bad = |e: p256::ecdsa::Error| format!("invalid EC public key: {e}");
                match curve.as_str() {
                    OID_P256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).map(Self::P256).map_err(bad),
                    OID_P384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).map(Self::P384).map_err(bad),
                    OID_P521 => p521::ecdsa::VerifyingKey::from_sec1_bytes(key_bytes).map(Self::P521).map_err(bad),
                    other => Err(format!("unsupported elliptic curve {other}")),
                }
            }
            other => Err(format!("unsupported public key algorithm {other}")),
        }
    }

    /// Reads a key given by its parameters.
    pub(crate) fn from_raw(raw: &RawPublicKey) -> Result<Self, String> {
        match raw {
            RawPublicKey::Rsa { n, e } => {
                RsaPublicKey::new_with_max_size(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e), MAX_RSA_BITS)
                    .map(Self::Rsa)
                    .map_err(|e| format!("invalid RSA public key: {e}"))
            }
            RawPublicKey::Ec { curve, x, y } => {
                let size = match curve.as_str() {
                    "P-256" => 32,
                    "P-384" => 48,
                    "P-521" => 66,
                    other => {
                        return Err(format!("unsupported elliptic curve {other} (supported: P-256, P-384, P-521)"));
                    }
                };
                if x.len() > size || y.len() > size {
                    return Err(format!("the {curve} point's coordinates are longer than {size} bytes"));
                }
                // SEC 1 uncompressed point: 0x04 || X || Y, each coordinate left-padded to the field size.
                let mut point = vec![0x04];
                for coordinate in [x, y] {
                    point.extend(std::iter::repeat_n(0, size - coordinate.len()));
                    point.extend_from_slice(coordinate);
                }
                let bad = |e: p256::ecdsa::Error| format!("invalid {curve} public key: {e}");
                match curve.as_str() {
                    "P-256" => p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map(Self::P256).map_err(bad),
                    "P-384" => p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).map(Self::P384).map_err(bad),
                    _ => p521::ecdsa::VerifyingKey::from_sec1_bytes(&point).map(Self::P521).map_err(bad),
                }
            }
        }
    }

    /// A short description, e.g. `RSA 3072-bit` or `ECDSA P-256`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Rsa(key) => format!("RSA {}-bit", key.size() * 8),
            Self::P256(_) => "ECDSA P-256".into(),
            Self::P384(_) => "ECDSA P-384".into(),
            Self::P521(_) => "ECDSA P-521".into(),
        }
    }

    /// The only signature algorithm this key may be used with, per the Notary Project's
    /// algorithm selection table.
    pub(crate) fn signature_algorithm(&self) -> Result<SignatureAlgorithm, String> {
        match self {
            // Key size counted in whole bytes, as notation does.
            Self::Rsa(key) => match key.size() * 8 {
                2048 => Ok(SignatureAlgorithm::Ps256),
                3072 => Ok(SignatureAlgorithm::Ps384),
                4096 => Ok(SignatureAlgorithm::Ps512),
                bits => Err(format!("RSA key size {bits} bits is not supported (2048, 3072 or 4096)")),
            },
            Self::P256(_) => Ok(SignatureAlgorithm::Es256),
            Self::P384(_) => Ok(SignatureAlgorithm::Es384),
            Self::P521(_) => Ok(SignatureAlgorithm::Es512),
        }
    }

    /// Verifies a JWS signature (`alg` already checked to match this key).
    pub(crate) fn verify_jws(&self, alg: SignatureAlgorithm, message: &[u8], signature: &[u8]) -> bool {
        use SignatureAlgorithm as A;
        match (self, alg) {
            (Self::Rsa(key), A::Ps256) => verify_pss::<Sha256>(key, message, signature, 32),
            (Self::Rsa(key), A::Ps384) => verify_pss::<Sha384>(key, message, signature, 48),
            (Self::Rsa(key), A::Ps512) => verify_pss::<Sha512>(key, message, signature, 64),
            (Self::P256(key), A::Es256) => {
                p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            (Self::P384(key), A::Es384) => {
                p384::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            (Self::P521(key), A::Es512) => {
                p521::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            _ => false,
        }
    }

    /// Verifies an RSASSA-PKCS1-v1_5 certificate signature.
    pub(crate) fn verify_pkcs1v15(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let Self::Rsa(key) = self else { return false };
        let Ok(sig) = rsa::pkcs1v15::Signature::try_from(signature) else {
            return false;
        };
        match hash {
            Hash::Sha256 => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone()).verify(message, &sig).is_ok(),
            Hash::Sha384 => rsa::pkcs1v15::VerifyingKey::<Sha384>::new(key.clone()).verify(message, &sig).is_ok(),
            Hash::Sha512 => rsa::pkcs1v15::VerifyingKey::<Sha512>::new(key.clone()).verify(message, &sig).is_ok(),
        }
    }

    /// Verifies an RSASSA-PSS certificate signature (MGF1 with the same hash).
    pub(crate) fn verify_pss_cert(&self, hash: Hash, salt_len: usize, message: &[u8], signature: &[u8]) -> bool {
        let Self::Rsa(key) = self else { return false };
        match hash {
            Hash::Sha256 => verify_pss::<Sha256>(key, message, signature, salt_len),
            Hash::Sha384 => verify_pss::<Sha384>(key, message, signature, salt_len),
            Hash::Sha512 => verify_pss::<Sha512>(key, message, signature, salt_len),
        }
    }

    /// Verifies a DER-encoded ECDSA certificate signature made over `hash(message)`.
    pub(crate) fn verify_ecdsa_der(&self, hash: Hash, message: &[u8], signature: &[u8]) -> bool {
        let prehash = hash.digest(message);
        match self {
            Self::P256(key) => {
                p256::ecdsa::Signature::from_der(signature).is_ok_and(|sig| key.verify_prehash(&prehash, &sig).is_ok())
            }
            Self::P384(key) => {
                p384::ecdsa::Signature::from_der(signature).is_ok_and(|sig| key.verify_prehash(&prehash, &sig).is_ok())
            }
            Self::P521(key) => {
                p521::ecdsa::Signature::from_der(signature).is_ok_and(|sig| key.verify_prehash(&prehash, &sig).is_ok())
            }
            Self::Rsa(_) => false,
        }
    }
}

fn verify_pss<D>(key: &RsaPublicKey, message: &[u8], signature: &[u8], salt_len: usize) -> bool
where
    D: Digest + sha2::digest::FixedOutputReset,
{
    let Ok(sig) = rsa::pss::Signature::try_from(signature) else {
        return false;
    };
    rsa::pss::VerifyingKey::<D>::new_with_salt_len(key.clone(), salt_len).verify(message, &sig).is_ok()
}

/// A signing key read from PEM: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
/// (`EC PRIVATE KEY`).
pub(crate) enum PrivateKey {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

impl PrivateKey {
    pub(crate) fn from_pem(pem_text: &[u8]) -> Result<Self, SignError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| SignError::InvalidKey(format!("invalid PEM: {e}")))?;
        let keys: Vec<_> = blocks.iter().filter(|b| b.tag().ends_with("PRIVATE KEY")).collect();
        let [block] = keys.as_slice() else {
            return Err(SignError::InvalidKey(format!(
                "expected exactly one private key PEM block, found {}",
                keys.len()
            )));
        };
        let der = block.contents();
        let invalid = |e: &dyn fmt::Display| SignError::InvalidKey(e.to_string());
        match block.tag() {
            "PRIVATE KEY" => {
                let info = pkcs8::PrivateKeyInfo::try_from(der).map_err(|e| invalid(&e))?;
                match info.algorithm.oid.to_string().as_str() {
                    OID_RSA_ENCRYPTION => {
                        RsaPrivateKey::from_pkcs8_der(der).map(|k| Self::Rsa(Box::new(k))).map_err(|e| invalid(&e))
                    }
                    OID_EC_PUBLIC_KEY => {
                        let curve = info.algorithm.parameters_oid().map_err(|e| invalid(&e))?.to_string();
                        match curve.as_str() {
                            OID_P256 => p256::SecretKey::from_pkcs8_der(der)
                                .map(|k| Self::P256(k.into()))
                                .map_err(|e| invalid(&e)),
                            OID_P384 => p384::SecretKey::from_pkcs8_der(der)
                                .map(|k| Self::P384(k.into()))
                                .map_err(|e| invalid(&e)),
                            OID_P521 => p521::SecretKey::from_pkcs8_der(der).map_err(|e| invalid(&e)).and_then(|k| {
                                p521::ecdsa::SigningKey::from_bytes(&k.to_bytes())
                                    .map(Self::P521)
                                    .map_err(|e| invalid(&e))
                            }),
                            other => Err(SignError::UnsupportedKey(format!(
                                "elliptic curve {other} (supported: P-256, P-384, P-521)"
                            ))),
                        }
                    }
                    other => Err(SignError::UnsupportedKey(format!("key algorithm {other} (supported: RSA, ECDSA)"))),
                }
            }
            "RSA PRIVATE KEY" => {
                RsaPrivateKey::from_pkcs1_der(der).map(|k| Self::Rsa(Box::new(k))).map_err(|e| invalid(&e))
            }
            "EC PRIVATE KEY" => {
                let parsed = sec1::EcPrivateKey::try_from(der).map_err(|e| invalid(&e))?;
                let curve = parsed
                    .parameters
                    .and_then(|p| p.named_curve())
                    .map(|oid| oid.to_string())
                    .ok_or_else(|| SignError::InvalidKey("EC private key without a named curve".into()))?;
                match curve.as_str() {
                    OID_P256 => {
                        p256::SecretKey::from_sec1_der(der).map(|k| Self::P256(k.into())).map_err(|e| invalid(&e))
                    }
                    OID_P384 => {
                        p384::SecretKey::from_sec1_der(der).map(|k| Self::P384(k.into())).map_err(|e| invalid(&e))
                    }
                    OID_P521 => p521::SecretKey::from_sec1_der(der).map_err(|e| invalid(&e)).and_then(|k| {
                        p521::ecdsa::SigningKey::from_bytes(&k.to_bytes()).map(Self::P521).map_err(|e| invalid(&e))
                    }),
                    other => Err(SignError::UnsupportedKey(format!(
                        "elliptic curve {other} (supported: P-256, P-384, P-521)"
                    ))),
                }
            }
            "ENCRYPTED PRIVATE KEY" => {
                Err(SignError::UnsupportedKey("encrypted private keys are not supported".into()))
            }
            other => Err(SignError::UnsupportedKey(format!("PEM block {other:?}"))),
        }
    }

    pub(crate) fn public_key(&self) -> PublicKey {
        match self {
            Self::Rsa(key) => PublicKey::Rsa(key.to_public_key()),
            Self::P256(key) => PublicKey::P256(*key.verifying_key()),
            Self::P384(key) => PublicKey::P384(*key.verifying_key()),
            Self::P521(key) => PublicKey::P521(p521::ecdsa::VerifyingKey::from(key)),
        }
    }

    /// Signs the JWS signing input. ECDSA signatures are the fixed-size `r || s` form JWS uses.
    pub(crate) fn sign_jws(&self, alg: SignatureAlgorithm, message: &[u8]) -> Result<Vec<u8>, SignError> {
        use SignatureAlgorithm as A;
        let crypto = |e: p256::ecdsa::Error| SignError::Crypto(e.to_string());
        match (self, alg) {
            (Self::Rsa(key), A::Ps256) => sign_pss::<Sha256>(key, message),
            (Self::Rsa(key), A::Ps384) => sign_pss::<Sha384>(key, message),
            (Self::Rsa(key), A::Ps512) => sign_pss::<Sha512>(key, message),
            (Self::P256(key), A::Es256) => {
                let sig: p256::ecdsa::Signature = key.try_sign(message).map_err(crypto)?;
                Ok(sig.to_bytes().to_vec())
            }
            (Self::P384(key), A::Es384) => {
                let sig: p384::ecdsa::Signature = key.try_sign(message).map_err(crypto)?;
                Ok(sig.to_bytes().to_vec())
            }
            (Self::P521(key), A::Es512) => {
                let sig: p521::ecdsa::Signature = key.try_sign(message).map_err(crypto)?;
                Ok(sig.to_bytes().to_vec())
            }
            _ => Err(SignError::UnsupportedKey(format!(
                "{alg} cannot be used with a {} key",
                self.public_key().describe()
            ))),
        }
    }
}

fn sign_pss<D>(key: &RsaPrivateKey, message: &[u8]) -> Result<Vec<u8>, SignError>
where
    D: Digest + sha2::digest::FixedOutputReset,
{
    // Salt length = hash length (RFC 7518 section 3.5); blinded private-key operation.
    let signer = rsa::pss::BlindedSigningKey::<D>::new(key.clone());
    signer.try_sign_with_rng(&mut OsRng, message).map(|sig| sig.to_vec()).map_err(|e| SignError::Crypto(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jws_names_round_trip() {
        for alg in [
            SignatureAlgorithm::Ps256,
            SignatureAlgorithm::Ps384,
            SignatureAlgorithm::Ps512,
            SignatureAlgorithm::Es256,
            SignatureAlgorithm::Es384,
            SignatureAlgorithm::Es512,
        ] {
            assert_eq!(SignatureAlgorithm::from_jws_name(alg.jws_name()), Some(alg));
        }
        assert_eq!(SignatureAlgorithm::from_jws_name("none"), None);
        assert_eq!(SignatureAlgorithm::from_jws_name("HS256"), None);
        assert_eq!(SignatureAlgorithm::from_jws_name("RS256"), None);
        assert_eq!(SignatureAlgorithm::from_jws_name("es256"), None);
    }

    #[test]
    fn rejects_non_key_pem() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(PrivateKey::from_pem(pem), Err(SignError::InvalidKey(_))));
        assert!(matches!(PrivateKey::from_pem(b"garbage"), Err(SignError::InvalidKey(_))));
    }
}
