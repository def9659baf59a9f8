//! The environment's certificate authority: the API server's serving certificate, client
//! certificates for the control-plane components and for any user, and the service-account key.

use std::fs;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::Error;

/// A PEM certificate and its PEM private key.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// The environment's CA. Kept on disk so that `cargo xtask env kubeconfig` can sign user
/// certificates for an environment started by another process.
pub struct Authority {
    ca: CertifiedKey,
    issuer: Issuer<'static, KeyPair>,
}

impl Authority {
    /// Creates a new self-signed CA.
    pub fn generate() -> Result<Self, Error> {
        let key = KeyPair::generate().map_err(pki)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
        params.distinguished_name = name("tidegate-testenv-ca", &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).map_err(pki)?;
        let ca = CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(Self { ca, issuer: Issuer::new(params, key) })
    }

    /// Loads a CA written by [`Authority::write`].
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        let cert_pem = fs::read_to_string(&cert_path).map_err(|e| Error::io(&cert_path, e))?;
        let key_pem = fs::read_to_string(&key_path).map_err(|e| Error::io(&key_path, e))?;
        let key = KeyPair::from_pem(&key_pem).map_err(pki)?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(pki)?;
        Ok(Self { ca: CertifiedKey { cert_pem, key_pem }, issuer })
    }

    /// Writes `ca.crt` and `ca.key` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        write_file(&dir.join("ca.crt"), &self.ca.cert_pem)?;
        write_file(&dir.join("ca.key"), &self.ca.key_pem)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// A serving certificate for loopback.
    pub fn serving(&self, common_name: &str) -> Result<CertifiedKey, Error> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(pki)?;
        params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
        // The in-cluster `kubernetes` Service address, which the API server also answers on.
        params.subject_alt_names.push(SanType::IpAddress([10, 0, 0, 1].into()));
        for dns in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
            params.subject_alt_names.push(SanType::DnsName(dns.try_into().map_err(pki)?));
        }
        params.distinguished_name = name(common_name, &[]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        self.sign(params)
    }

    /// A client certificate: Kubernetes reads the user name from the common name and the groups
    /// from the organisations. At most [`MAX_GROUPS`] groups fit in one certificate.
    pub fn client(&self, user: &str, groups: &[&str]) -> Result<CertifiedKey, Error> {
        if groups.len() > MAX_GROUPS {
            return Err(Error::Pki(format!(
                "a client certificate carries at most {MAX_GROUPS} groups, {} were asked for {user}; bind roles to the user instead",
                groups.len()
            )));
        }
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
        params.distinguished_name = name(user, groups);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Result<CertifiedKey, Error> {
        let key = KeyPair::generate().map_err(pki)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(pki)?;
        Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// A key pair for signing service-account tokens (private and public key, PEM).
pub fn service_account_key() -> Result<CertifiedKey, Error> {
    let key = KeyPair::generate().map_err(pki)?;
    Ok(CertifiedKey { cert_pem: key.public_key_pem(), key_pem: key.serialize_pem() })
}

/// Writes a file readable only by its owner (keys live here).
pub fn write_file(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(contents.as_bytes()).map_err(|e| Error::io(path, e))
}

/// Groups one client certificate can carry.
pub const MAX_GROUPS: usize = 2;

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    // rcgen keeps one value per attribute type; the second organisation goes in under the same
    // OID (2.5.4.10) spelled as a custom type, which encodes to an identical attribute.
    let mut dn = DistinguishedName::new();
    let types = [DnType::OrganizationName, DnType::CustomDnType(vec![2, 5, 4, 10])];
    for (org, ty) in organizations.iter().zip(types) {
        dn.push(ty, *org);
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn pki(e: rcgen::Error) -> Error {
    Error::Pki(e.to_string())
}

/// Files of a Notary Project signing identity for tests and the demo: a root CA, a code-signing
/// leaf, a trust store holding the root (`store/x509/ca/<store>/root.pem`) and a strict trust
/// policy that trusts that store for every repository.
#[derive(Clone, Debug)]
pub struct CodeSigningFiles {
    /// The leaf's private key (PEM).
    pub key: std::path::PathBuf,
    /// The chain, leaf first (PEM).
    pub chain: std::path::PathBuf,
    /// `trustpolicy.json`.
    pub trust_policy: std::path::PathBuf,
    /// The trust store directory (holds `x509/ca/<store>/`).
    pub trust_store: std::path::PathBuf,
    /// The root certificate (PEM).
    pub root: std::path::PathBuf,
}

/// Writes a fresh code-signing identity named `name` into `dir` (trust store name `store`).
pub fn write_code_signing_identity(dir: &Path, name: &str, store: &str) -> Result<CodeSigningFiles, Error> {
    let root_key = KeyPair::generate().map_err(pki)?;
    let mut root = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    root.distinguished_name = code_signing_name(&format!("{name} root"));
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let root_cert = root.self_signed(&root_key).map_err(pki)?;
    let issuer = Issuer::new(root, root_key);
    let leaf_key = KeyPair::generate().map_err(pki)?;
    let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
    leaf.distinguished_name = code_signing_name(&format!("{name} signer"));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(pki)?;
    let files = CodeSigningFiles {
        key: dir.join("tls.key"),
        chain: dir.join("tls.crt"),
        trust_policy: dir.join("trustpolicy.json"),
        trust_store: dir.join("store"),
        root: dir.join("store").join("x509").join("ca").join(store).join("root.pem"),
    };
    if let Some(parent) = files.root.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    write_file(&files.key, &leaf_key.serialize_pem())?;
    write_file(&files.chain, &format!("{}{}", leaf_cert.pem(), root_cert.pem()))?;
    write_file(&files.root, &root_cert.pem())?;
    let policy = format!(
        r#"{{"version": "1.0", "trustPolicies": [{{"name": "{store}", "registryScopes": ["*"], "signatureVerification": {{"level": "strict"}}, "trustStores": ["ca:{store}"], "trustedIdentities": ["*"]}}]}}"#
    );
    write_file(&files.trust_policy, &policy)?;
    Ok(files)
}

fn code_signing_name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tidegate");
    dn.push(DnType::CommonName, common_name);
    dn
}
