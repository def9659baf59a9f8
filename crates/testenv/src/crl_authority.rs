//! A code-signing CA that publishes a CRL on loopback, for revocation tests: its signing
//! certificate names `http://127.0.0.1:<port>/ca.crl` as CRL distribution point, and
//! [`RevocableIdentity::revoke`] publishes a new CRL that lists it.
//!
//! The CRL is served by a small HTTP/1.1 server on its own thread, so that blocking callers (the
//! `notation` CLI run with `std::process::Command` from a test) and async ones are served alike.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};

use crate::Error;
use crate::pki::{CodeSigningFiles, write_file};

/// Serial number of the signing certificate.
pub const LEAF_SERIAL: u64 = 0x7a1d_e6a7;

/// What the CRL server answers.
struct Published {
    crl: Vec<u8>,
    /// `None`: 200 with the CRL; `Some(status)`: that status, no CRL.
    failure: Option<u16>,
}

/// A code-signing identity (root CA → signing certificate with a CRL distribution point) and
/// the loopback server publishing the root's CRL. Dropping it stops the server.
pub struct RevocableIdentity {
    /// Key, chain, trust store and strict trust policy, as [`crate::pki::write_code_signing_identity`]
    /// writes them.
    pub files: CodeSigningFiles,
    issuer: Issuer<'static, KeyPair>,
    crl_number: AtomicUsize,
    published: Arc<Mutex<Published>>,
    requests: Arc<AtomicUsize>,
    url: String,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RevocableIdentity {
    /// Writes a fresh identity named `name` into `dir` (trust store `store`), starts the CRL
    /// server and publishes a CRL that lists nothing.
    pub fn write(dir: &Path, name: &str, store: &str) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let addr = listener.local_addr().map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let url = format!("http://{addr}/ca.crl");

        let root_key = KeyPair::generate().map_err(pki)?;
        let mut root = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
        root.distinguished_name = subject(&format!("{name} root"));
        root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_cert = root.self_signed(&root_key).map_err(pki)?;
        let issuer = Issuer::new(root, root_key);
        let leaf_key = KeyPair::generate().map_err(pki)?;
        let mut leaf = CertificateParams::new(Vec::<String>::new()).map_err(pki)?;
        leaf.distinguished_name = subject(&format!("{name} signer"));
        leaf.serial_number = Some(SerialNumber::from(LEAF_SERIAL));
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        leaf.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![url.clone()] }];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(pki)?;

        let files = CodeSigningFiles {
            key: dir.join("tls.key"),
            chain: dir.join("tls.crt"),
            trust_policy: dir.join("trustpolicy.json"),
            trust_store: dir.join("store"),
            root: dir.join("store").join("x509").join("ca").join(store).join("root.pem"),
        };
        if let Some(parent) = files.root.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        write_file(&files.key, &leaf_key.serialize_pem())?;
        write_file(&files.chain, &format!("{}{}", leaf_cert.pem(), root_cert.pem()))?;
        write_file(&files.root, &root_cert.pem())?;
        write_file(&files.trust_policy, &trust_policy(store, "strict"))?;

        let published = Arc::new(Mutex::new(Published { crl: Vec::new(), failure: None }));
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (published, requests, stop) = (published.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || serve(&listener, &published, &requests, &stop))
        };
        let identity = Self {
            files,
            issuer,
            crl_number: AtomicUsize::new(0),
            published,
            requests,
            url,
            addr,
            stop,
            thread: Some(thread),
        };
        identity.publish(false)?;
        Ok(identity)
    }

    /// The CRL distribution point of the signing certificate.
    pub fn crl_url(&self) -> &str {
        &self.url
    }

    /// Publishes a new CRL that lists the signing certificate (reason `keyCompromise`).
    pub fn revoke(&self) -> Result<(), Error> {
        self.publish(true)
    }

    /// Makes the server answer `status` instead of the CRL (`None`: serve the CRL again).
    pub fn fail_with(&self, status: Option<u16>) {
        self.lock().failure = status;
    }

    /// How many requests the CRL server has answered.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Writes a trust policy for the identity's store with the given verification level
    /// (`strict`, `permissive`, `audit`) to `path`.
    pub fn write_trust_policy(&self, path: &Path, level: &str) -> Result<(), Error> {
        let store = self.files.root.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
        write_file(path, &trust_policy(&store.unwrap_or_default(), level))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Published> {
        self.published.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signs and publishes a CRL valid from a minute ago for a day.
    fn publish(&self, revoked: bool) -> Result<(), Error> {
        let now = rcgen::date_time_ymd(1970, 1, 1)
            + SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| Error::Pki(e.to_string()))?;
        let number = self.crl_number.fetch_add(1, Ordering::SeqCst) + 1;
        let revoked_certs = if revoked {
            vec![RevokedCertParams {
                serial_number: SerialNumber::from(LEAF_SERIAL),
                revocation_time: now - Duration::from_secs(1),
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            }]
        } else {
            Vec::new()
        };
        let params = CertificateRevocationListParams {
            this_update: now - Duration::from_secs(60),
            next_update: now + Duration::from_secs(24 * 3600),
            crl_number: SerialNumber::from(u64::try_from(number).unwrap_or(u64::MAX)),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).map_err(pki)?;
        self.lock().crl = crl.der().to_vec();
        Ok(())
    }
}

impl Drop for RevocableIdentity {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, published: &Mutex<Published>, requests: &AtomicUsize, stop: &AtomicBool) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if !read_request_head(&mut stream) {
            continue;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let (status, body) = {
            let published = published.lock().unwrap_or_else(|e| e.into_inner());
            match published.failure {
                Some(status) => (status, Vec::new()),
                None => (200, published.crl.clone()),
            }
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            if status == 200 { "OK" } else { "Unavailable" },
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
    }
}

/// Reads up to the end of the request head; `false` when the connection closed first.
fn read_request_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return false;
        }
    }
    true
}

fn trust_policy(store: &str, level: &str) -> String {
    format!(
        r#"{{"version": "1.0", "trustPolicies": [{{"name": "{store}", "registryScopes": ["*"], "signatureVerification": {{"level": "{level}"}}, "trustStores": ["ca:{store}"], "trustedIdentities": ["*"]}}]}}"#
    )
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tidegate");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn pki(e: rcgen::Error) -> Error {
    Error::Pki(e.to_string())
}
