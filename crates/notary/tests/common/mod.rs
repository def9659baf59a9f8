//! Test PKI built with rcgen, and helpers to craft envelopes by hand.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::Timestamp;
use p256::ecdsa::signature::Signer as _;
use pkcs8::{DecodePrivateKey, EncodePublicKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SubjectPublicKeyInfo, date_time_ymd,
};
use tidegate_notary::{Certificate, Descriptor};

pub const SUBJECT_O: &str = "Tidegate Test";

pub fn ts(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

pub fn descriptor() -> Descriptor {
    Descriptor::new("application/vnd.oci.image.manifest.v1+json", format!("sha256:{}", "ab".repeat(32)), 1234)
}

pub fn key_file(name: &str) -> String {
    let path = format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).expect("test key file")
}

/// Leaf key kinds used by the tests.
#[derive(Clone, Copy, Debug)]
pub enum KeyKind {
    P256,
    P384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Rsa2048Pkcs1,
    P256Sec1,
}

/// A private key PEM and the SPKI of its public key.
pub struct LeafKey {
    pub pem: String,
    pub spki: SubjectPublicKeyInfo,
}

pub fn leaf_key(kind: KeyKind) -> LeafKey {
    let from_spki_der =
        |pem: String, der: Vec<u8>| LeafKey { pem, spki: SubjectPublicKeyInfo::from_der(&der).expect("spki") };
    match kind {
        KeyKind::P256 | KeyKind::P384 => {
            let alg = match kind {
                KeyKind::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
                _ => &rcgen::PKCS_ECDSA_P384_SHA384,
            };
            let kp = KeyPair::generate_for(alg).expect("key");
            from_spki_der(kp.serialize_pem(), kp.subject_public_key_info())
        }
        KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096 => {
            let bits = match kind {
                KeyKind::Rsa2048 => 2048,
                KeyKind::Rsa3072 => 3072,
                _ => 4096,
            };
            let pem = key_file(&format!("rsa-{bits}.pem"));
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).expect("rsa key");
            let der = key.to_public_key().to_public_key_der().expect("der").into_vec();
            from_spki_der(pem, der)
        }
        KeyKind::Rsa2048Pkcs1 => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            let pem = key_file("rsa-2048-pkcs1.pem");
            let key = rsa::RsaPrivateKey::from_pkcs1_pem(&pem).expect("rsa key");
            let der = key.to_public_key().to_public_key_der().expect("der").into_vec();
            from_spki_der(pem, der)
        }
        KeyKind::P256Sec1 => {
            let pem = key_file("ec-p256-sec1.pem");
            let key = p256::SecretKey::from_sec1_pem(&pem).expect("sec1 key");
            let der = key.public_key().to_public_key_der().expect("der").into_vec();
            from_spki_der(pem, der)
        }
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "WA");
    dn.push(DnType::LocalityName, "Seattle");
    dn.push(DnType::OrganizationName, SUBJECT_O);
    dn.push(DnType::CommonName, cn);
    dn
}

pub fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    params
}

pub fn leaf_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    params.not_before = date_time_ymd(2021, 1, 1);
    params.not_after = date_time_ymd(2035, 1, 1);
    params
}

/// A CA that can issue certificates.
pub struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    pub cert: Certificate,
}

impl Ca {
    pub fn root(cn: &str) -> Self {
        Self::root_with(ca_params(cn))
    }

    pub fn root_with(params: CertificateParams) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
        let cert = params.self_signed(&key).expect("root");
        Self { cert: Certificate::from_der(cert.der().to_vec()).expect("parse root"), issuer: Issuer::new(params, key) }
    }

    pub fn intermediate(&self, cn: &str) -> Self {
        let params = ca_params(cn);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("intermediate");
        Self {
            cert: Certificate::from_der(cert.der().to_vec()).expect("parse intermediate"),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn issue(&self, params: &CertificateParams, key: &impl PublicKeyData) -> Certificate {
        let cert = params.signed_by(key, &self.issuer).expect("issue");
        Certificate::from_der(cert.der().to_vec()).expect("parse leaf")
    }
}

/// A signing identity: key PEM and chain.
pub struct Identity {
    pub key_pem: String,
    pub chain: Vec<Certificate>,
    pub root: Certificate,
}

impl Identity {
    pub fn chain_pem(&self) -> String {
        self.chain.iter().map(Certificate::to_pem).collect()
    }
}

/// root → leaf, with the given leaf key and leaf parameters.
pub fn identity_with(kind: KeyKind, params: &CertificateParams) -> Identity {
    let root = Ca::root("Tidegate Test Root");
    let key = leaf_key(kind);
    let leaf = root.issue(params, &key.spki);
    Identity { key_pem: key.pem, chain: vec![leaf, root.cert.clone()], root: root.cert }
}

pub fn identity(kind: KeyKind) -> Identity {
    identity_with(kind, &leaf_params("signer"))
}

/// Builds an envelope by hand: any protected header and payload, signed with a P-256 PKCS#8 key
/// (or given an arbitrary signature).
pub struct Crafted {
    pub protected: String,
    pub payload: String,
    pub x5c: Vec<Vec<u8>>,
    pub header_extra: Vec<(String, serde_json::Value)>,
}

impl Crafted {
    pub fn protected_header(signing_time: &str, expiry: Option<&str>) -> String {
        let mut header = serde_json::json!({
            "alg": "ES256",
            "cty": "application/vnd.cncf.notary.payload.v1+json",
            "io.cncf.notary.signingScheme": "notary.x509",
            "io.cncf.notary.signingTime": signing_time,
            "crit": ["io.cncf.notary.signingScheme"],
        });
        if let Some(expiry) = expiry {
            header["io.cncf.notary.expiry"] = expiry.into();
            header["crit"] = serde_json::json!(["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]);
        }
        header.to_string()
    }

    pub fn payload_for(descriptor: &Descriptor) -> String {
        serde_json::json!({ "targetArtifact": descriptor }).to_string()
    }

    pub fn sign_p256(&self, key_pem: &str) -> Vec<u8> {
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem).expect("p256 key");
        let input = self.signing_input();
        let sig: p256::ecdsa::Signature = key.sign(input.as_bytes());
        self.envelope(&sig.to_bytes())
    }

    pub fn signing_input(&self) -> String {
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&self.protected), URL_SAFE_NO_PAD.encode(&self.payload))
    }

    pub fn envelope(&self, signature: &[u8]) -> Vec<u8> {
        let mut header = serde_json::Map::new();
        header.insert("x5c".into(), self.x5c.iter().map(|d| STANDARD.encode(d)).collect::<Vec<_>>().into());
        for (k, v) in &self.header_extra {
            header.insert(k.clone(), v.clone());
        }
        serde_json::json!({
            "payload": URL_SAFE_NO_PAD.encode(&self.payload),
            "protected": URL_SAFE_NO_PAD.encode(&self.protected),
            "header": header,
            "signature": URL_SAFE_NO_PAD.encode(signature),
        })
        .to_string()
        .into_bytes()
    }
}

/// A crafted envelope for [`descriptor`] with the chain of `id` and the given protected header
/// (sign it with [`Crafted::sign_p256`] for an ES256 identity).
pub fn crafted(id: &Identity, protected: String) -> Crafted {
    Crafted {
        protected,
        payload: Crafted::payload_for(&descriptor()),
        x5c: id.chain.iter().map(|c| c.der().to_vec()).collect(),
        header_extra: Vec::new(),
    }
}

/// Decodes the members of an envelope produced by `sign`.
pub fn envelope_json(envelope: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_slice(envelope).expect("json") {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

pub fn b64url_json(text: &str) -> serde_json::Value {
    let bytes = URL_SAFE_NO_PAD.decode(text).expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

/// Replaces an envelope member (string value) and returns the new envelope bytes.
pub fn replace_member(envelope: &[u8], member: &str, value: serde_json::Value) -> Vec<u8> {
    let mut map = envelope_json(envelope);
    map.insert(member.into(), value);
    serde_json::Value::Object(map).to_string().into_bytes()
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
