//! X.509 certificates: parsing, certificate signature checks, and the Notary Project
//! code-signing chain requirements.

use crate::algorithm::{Hash, PublicKey};
use crate::error::{CertificateError, VerifyError};
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use std::fmt;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{OID_PKIX_ACCESS_DESCRIPTOR_OCSP, OID_X509_EXT_BASIC_CONSTRAINTS};
use x509_parser::x509::AlgorithmIdentifier;

/// An X.509 certificate (DER), checked to parse when it is created.
#[derive(Clone, PartialEq, Eq)]
pub struct Certificate {
    der: Vec<u8>,
    subject: String,
    not_before: Timestamp,
    not_after: Timestamp,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("subject", &self.subject)
            .field("sha256", &self.sha256_fingerprint())
            .finish()
    }
}

impl Certificate {
    /// Parses one DER-encoded certificate (no trailing bytes allowed).
    pub fn from_der(der: impl Into<Vec<u8>>) -> Result<Self, CertificateError> {
        let der = der.into();
        let (subject, not_before, not_after) = {
            let cert = parse_der(&der)?;
            let subject = cert.subject().to_string();
            let not_before = asn1_time(&cert.validity().not_before)?;
            let not_after = asn1_time(&cert.validity().not_after)?;
            (subject, not_before, not_after)
        };
        Ok(Self { der, subject, not_before, not_after })
    }

    /// Parses every `CERTIFICATE` block of a PEM text, in order. Other blocks are ignored; at
    /// least one certificate is required.
    pub fn parse_pem(pem_text: &[u8]) -> Result<Vec<Self>, CertificateError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| CertificateError::Pem(e.to_string()))?;
        let certs = blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| Self::from_der(b.contents()))
            .collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            return Err(CertificateError::NoCertificate);
        }
        Ok(certs)
    }

    /// Parses a certificate file as trust stores hold them: PEM, or one or more concatenated DER
    /// certificates.
    pub fn parse_pem_or_der(bytes: &[u8]) -> Result<Vec<Self>, CertificateError> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN") {
            return Self::parse_pem(bytes);
        }
        let mut certs = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (remaining, _) =
                x509_parser::parse_x509_certificate(rest).map_err(|e| CertificateError::Der(e.to_string()))?;
            let used = rest.len() - remaining.len();
            certs.push(Self::from_der(&rest[..used])?);
            rest = remaining;
        }
        if certs.is_empty() {
            return Err(CertificateError::NoCertificate);
        }
        Ok(certs)
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The subject, e.g. `C=US, ST=WA, O=Example, CN=signer`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> Timestamp {
        self.not_before
    }

    /// End of the validity period.
    pub fn not_after(&self) -> Timestamp {
        self.not_after
    }

    /// Lowercase hex SHA-256 of the DER encoding.
    pub fn sha256_fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.der))
    }

    /// PEM encoding.
    pub fn to_pem(&self) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", self.der.clone()))
    }

    pub(crate) fn parsed(&self) -> Result<X509Certificate<'_>, CertificateError> {
        parse_der(&self.der)
    }
}

/// The value of the signature manifest annotation [`crate::THUMBPRINT_ANNOTATION`]: a JSON array
/// of the lowercase hex SHA-256 fingerprints of the chain, signing certificate first.
pub fn thumbprint_annotation_value(chain: &[Certificate]) -> String {
    let prints: Vec<String> = chain.iter().map(Certificate::sha256_fingerprint).collect();
    serde_json::Value::from(prints).to_string()
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, CertificateError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| CertificateError::Der(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertificateError::Der("trailing bytes after the certificate".into()));
    }
    if cert.signature_algorithm != cert.tbs_certificate.signature {
        return Err(CertificateError::Der("inner and outer signature algorithms differ".into()));
    }
    Ok(cert)
}

fn asn1_time(time: &x509_parser::time::ASN1Time) -> Result<Timestamp, CertificateError> {
    Timestamp::from_second(time.timestamp())
        .map_err(|e| CertificateError::Der(format!("validity time out of range: {e}")))
}

/// A certificate of a chain being validated, with its parsed form and key.
pub(crate) struct ChainCert<'a> {
    pub(crate) cert: X509Certificate<'a>,
    pub(crate) source: &'a Certificate,
    pub(crate) key: Result<PublicKey, String>,
}

impl<'a> ChainCert<'a> {
    pub(crate) fn parse(source: &'a Certificate, index: usize) -> Result<Self, VerifyError> {
        let cert = source.parsed().map_err(|e| VerifyError::MalformedCertificate { index, reason: e.to_string() })?;
        let key = PublicKey::from_spki(cert.public_key());
        Ok(Self { cert, source, key })
    }

    pub(crate) fn subject(&self) -> &str {
        self.source.subject()
    }

    fn requirement(&self, reason: impl Into<String>) -> VerifyError {
        VerifyError::CertificateRequirement { subject: self.subject().to_string(), reason: reason.into() }
    }

    fn self_issued(&self) -> bool {
        self.cert.subject().as_raw() == self.cert.issuer().as_raw()
    }

    fn self_signed(&self) -> bool {
        self.self_issued() && self.key.as_ref().is_ok_and(|key| verify_certificate_signature(&self.cert, key).is_ok())
    }

    /// Whether `self` names `issuer` as issuer and carries its signature.
    fn issued_by(&self, issuer: &ChainCert<'_>) -> Result<(), String> {
        if self.cert.issuer().as_raw() != issuer.cert.subject().as_raw() {
            return Err(format!(
                "certificate {:?} names issuer {:?}, not {:?}",
                self.subject(),
                self.cert.issuer().to_string(),
                issuer.subject()
            ));
        }
        let key =
            issuer.key.as_ref().map_err(|e| format!("the key of issuer {:?} cannot be used: {e}", issuer.subject()))?;
        verify_certificate_signature(&self.cert, key)
            .map_err(|e| format!("certificate {:?} is not signed by {:?}: {e}", self.subject(), issuer.subject()))
    }

    /// Whether the certificate names an OCSP responder (authority information access).
    pub(crate) fn has_ocsp_responder(&self) -> bool {
        self.cert.extensions().iter().any(|ext| {
            matches!(ext.parsed_extension(), ParsedExtension::AuthorityInfoAccess(aia)
                    if aia.iter().any(|ad| ad.access_method == OID_PKIX_ACCESS_DESCRIPTOR_OCSP))
        })
    }

    fn basic_constraints(&self) -> Result<Option<(bool, bool, Option<u32>)>, VerifyError> {
        let ext = self
            .cert
            .get_extension_unique(&OID_X509_EXT_BASIC_CONSTRAINTS)
            .map_err(|e| self.requirement(format!("basic constraints: {e}")))?;
        match ext {
            None => Ok(None),
            Some(ext) => match ext.parsed_extension() {
                ParsedExtension::BasicConstraints(bc) => Ok(Some((ext.critical, bc.ca, bc.path_len_constraint))),
                _ => Err(self.requirement("basic constraints extension cannot be parsed")),
            },
        }
    }

    pub(crate) fn key_usage(&self) -> Result<x509_parser::extensions::KeyUsage, VerifyError> {
        let ku = self
            .cert
            .key_usage()
            .map_err(|e| self.requirement(format!("key usage: {e}")))?
            .ok_or_else(|| self.requirement("the key usage extension must be present"))?;
        if !ku.critical {
            return Err(self.requirement("the key usage extension must be marked critical"));
        }
        Ok(*ku.value)
    }

    fn validate_leaf(&self) -> Result<(), VerifyError> {
        if let Some((_, true, _)) = self.basic_constraints()? {
            return Err(self.requirement("a signing certificate's basic constraints must not say CA=true"));
        }
        let ku = self.key_usage()?;
        if !ku.digital_signature() {
            return Err(self.requirement("key usage must include digitalSignature"));
        }
        let forbidden: Vec<&str> = [
            (ku.key_encipherment(), "keyEncipherment"),
            (ku.data_encipherment(), "dataEncipherment"),
            (ku.key_agreement(), "keyAgreement"),
            (ku.key_cert_sign(), "keyCertSign"),
            (ku.crl_sign(), "cRLSign"),
            (ku.encipher_only(), "encipherOnly"),
            (ku.decipher_only(), "decipherOnly"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if !forbidden.is_empty() {
            return Err(
                self.requirement(format!("key usage must be digitalSignature only, found {}", forbidden.join(", ")))
            );
        }
        self.validate_signing_eku()?;
        let key = self.key.as_ref().map_err(|e| self.requirement(e.clone()))?;
        key.signature_algorithm().map_err(|e| self.requirement(e))?;
        Ok(())
    }

    /// The extended key usage rule for signing certificates. The extension is optional (the
    /// Notary Project signature specification, "Leaf Certificates"); when it is present:
    ///
    /// - it must not contain `anyExtendedKeyUsage`, `serverAuth`, `clientAuth`,
    ///   `emailProtection` or `timeStamping` (the specification), nor `OCSPSigning` (which
    ///   notation also refuses);
    /// - it must contain `codeSigning`. The specification only says it MAY; RFC 5280 §4.2.1.12
    ///   restricts a certificate with this extension to the purposes it lists, so a certificate
    ///   that lists purposes but not code signing was not issued to sign artifacts.
    fn validate_signing_eku(&self) -> Result<(), VerifyError> {
        let eku = self.cert.extended_key_usage().map_err(|e| self.requirement(format!("extended key usage: {e}")))?;
        let Some(eku) = eku else {
            return Ok(());
        };
        let eku = eku.value;
        let forbidden: Vec<&str> = [
            (eku.any, "anyExtendedKeyUsage"),
            (eku.server_auth, "serverAuth"),
            (eku.client_auth, "clientAuth"),
            (eku.email_protection, "emailProtection"),
            (eku.time_stamping, "timeStamping"),
            (eku.ocsp_signing, "OCSPSigning"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect();
        if !forbidden.is_empty() {
            return Err(self.requirement(format!(
                "the extended key usage of a signing certificate must not contain {}",
                forbidden.join(", ")
            )));
        }
        if !eku.code_signing {
            return Err(VerifyError::MissingCodeSigningEku { subject: self.subject().to_string() });
        }
        Ok(())
    }

    fn validate_ca(&self, certs_below: u32) -> Result<(), VerifyError> {
        match self.basic_constraints()? {
            Some((true, true, path_len)) => {
                if let Some(max) = path_len
                    && max < certs_below
                {
                    return Err(self.requirement(format!(
                        "path length constraint {max} is exceeded by {certs_below} CA certificate(s) below it"
                    )));
                }
            }
            _ => {
                return Err(
                    self.requirement("a CA certificate needs a critical basic constraints extension with CA=true")
                );
            }
        }
        if !self.key_usage()?.key_cert_sign() {
            return Err(self.requirement("a CA certificate's key usage must include keyCertSign"));
        }
        Ok(())
    }

    fn check_valid_at_signing(&self, signing_time: Timestamp) -> Result<(), VerifyError> {
        let (not_before, not_after) = (self.source.not_before(), self.source.not_after());
        if signing_time < not_before || signing_time > not_after {
            return Err(VerifyError::CertificateNotValidAtSigningTime {
                subject: self.subject().to_string(),
                signing_time,
                not_before,
                not_after,
            });
        }
        Ok(())
    }

    pub(crate) fn check_valid_at(&self, now: Timestamp) -> Result<(), VerifyError> {
        let (not_before, not_after) = (self.source.not_before(), self.source.not_after());
        if now < not_before || now > not_after {
            return Err(VerifyError::CertificateExpired {
                subject: self.subject().to_string(),
                now,
                not_before,
                not_after,
            });
        }
        Ok(())
    }
}

/// Validates a signature's certificate chain per the Notary Project certificate requirements:
/// ordered from the signing certificate to a self-signed root, each certificate issued by the
/// next, CA and leaf constraints, and validity at signing time. A single certificate must be a
/// self-signed signing certificate.
pub(crate) fn validate_chain(chain: &[ChainCert<'_>], signing_time: Timestamp) -> Result<(), VerifyError> {
    let chain_error = VerifyError::InvalidCertificateChain;
    for cert in chain {
        if cert.cert.extensions_map().is_err() {
            return Err(cert.requirement("an extension appears more than once"));
        }
    }
    match chain {
        [] => Err(chain_error("the certificate chain is empty".into())),
        [single] => {
            if !single.self_signed() {
                return Err(chain_error(format!(
                    "certificate {:?} is alone in the chain but is not self-signed; the chain must \
                     end with a self-signed root certificate",
                    single.subject()
                )));
            }
            single.check_valid_at_signing(signing_time)?;
            single.validate_leaf()
        }
        _ => {
            let last = chain.len() - 1;
            for (i, cert) in chain.iter().enumerate() {
                cert.check_valid_at_signing(signing_time)?;
                if i == last {
                    if !cert.self_signed() {
                        return Err(chain_error(format!(
                            "root certificate {:?} is not self-signed; the chain must end with a \
                             self-signed root certificate",
                            cert.subject()
                        )));
                    }
                } else {
                    if cert.self_signed() {
                        let role = if i == 0 { "signing" } else { "intermediate" };
                        return Err(chain_error(format!(
                            "{role} certificate {:?} is self-signed; only the last certificate \
                             may be",
                            cert.subject()
                        )));
                    }
                    cert.issued_by(&chain[i + 1]).map_err(chain_error)?;
                }
                if i == 0 {
                    cert.validate_leaf()?;
                } else {
                    // `i - 1` CA certificates sit between this one and the signing certificate.
                    let below = u32::try_from(i - 1).unwrap_or(u32::MAX);
                    cert.validate_ca(below)?;
                }
            }
            Ok(())
        }
    }
}

/// Whether a trust store certificate is acceptable: a CA certificate or a self-signed one.
pub(crate) fn is_ca_or_self_signed(cert: &Certificate) -> bool {
    let Ok(parsed) = ChainCert::parse(cert, 0) else {
        return false;
    };
    let is_ca = matches!(parsed.basic_constraints(), Ok(Some((_, true, _))));
    is_ca || parsed.self_signed()
}

const OID_SHA256_RSA: &str = "1.2.840.113549.1.1.11";
const OID_SHA384_RSA: &str = "1.2.840.113549.1.1.12";
const OID_SHA512_RSA: &str = "1.2.840.113549.1.1.13";
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_MGF1: &str = "1.2.840.113549.1.1.8";
const OID_ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
const OID_ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
const OID_ECDSA_SHA512: &str = "1.2.840.10045.4.3.4";
const OID_SHA1_RSA: &str = "1.2.840.113549.1.1.5";
const OID_ECDSA_SHA1: &str = "1.2.840.10045.4.1";

/// Checks the signature of `cert` with the issuer key `key`.
fn verify_certificate_signature(cert: &X509Certificate<'_>, key: &PublicKey) -> Result<(), String> {
    verify_signed_data(cert.tbs_certificate.as_ref(), &cert.signature_algorithm, &cert.signature_value.data, key)
}

/// Checks a signature over `tbs` (a certificate's or a CRL's signed part) made with `algorithm`
/// by the holder of `key`. SHA-1 is refused.
pub(crate) fn verify_signed_data(
    tbs: &[u8],
    algorithm: &AlgorithmIdentifier<'_>,
    signature: &[u8],
    key: &PublicKey,
) -> Result<(), String> {
    let algorithm_oid = algorithm.algorithm.to_id_string();
    let ok = match algorithm_oid.as_str() {
        OID_SHA256_RSA => key.verify_pkcs1v15(Hash::Sha256, tbs, signature),
        OID_SHA384_RSA => key.verify_pkcs1v15(Hash::Sha384, tbs, signature),
        OID_SHA512_RSA => key.verify_pkcs1v15(Hash::Sha512, tbs, signature),
        OID_ECDSA_SHA256 => key.verify_ecdsa_der(Hash::Sha256, tbs, signature),
        OID_ECDSA_SHA384 => key.verify_ecdsa_der(Hash::Sha384, tbs, signature),
        OID_ECDSA_SHA512 => key.verify_ecdsa_der(Hash::Sha512, tbs, signature),
        OID_RSASSA_PSS => {
            let (hash, salt_len) = pss_parameters(algorithm)?;
            key.verify_pss_cert(hash, salt_len, tbs, signature)
        }
        OID_SHA1_RSA | OID_ECDSA_SHA1 => {
            return Err("SHA-1 signatures are not allowed".into());
        }
        other => {
            return Err(format!("unsupported signature algorithm {other}"));
        }
    };
    if ok { Ok(()) } else { Err("the signature does not verify".into()) }
}

fn pss_parameters(algorithm: &AlgorithmIdentifier<'_>) -> Result<(Hash, usize), String> {
    use x509_parser::signature_algorithm::SignatureAlgorithm as Alg;
    let parsed = Alg::try_from(algorithm).map_err(|e| format!("invalid RSASSA-PSS parameters: {e}"))?;
    let Alg::RSASSA_PSS(params) = parsed else {
        return Err("invalid RSASSA-PSS parameters".into());
    };
    let hash = Hash::from_oid(&params.hash_algorithm_oid().to_id_string())
        .ok_or("RSASSA-PSS signatures must use SHA-256, SHA-384 or SHA-512")?;
    let mgf = params.mask_gen_algorithm().map_err(|e| format!("invalid RSASSA-PSS mask generation: {e}"))?;
    if mgf.mgf.to_id_string() != OID_MGF1 || Hash::from_oid(&mgf.hash.to_id_string()) != Some(hash) {
        return Err("RSASSA-PSS signatures must use MGF1 with the signature hash".into());
    }
    if params.trailer_field() != 1 {
        return Err("invalid RSASSA-PSS trailer field".into());
    }
    let salt_len = usize::try_from(params.salt_length()).map_err(|e| e.to_string())?;
    Ok((hash, salt_len))
}
