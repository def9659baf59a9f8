//! Named trust stores (`ca:NAME`, `signingAuthority:NAME`, `tsa:NAME`) and a loader for the
//! Notation directory layout `x509/<type>/<name>/*.{pem,crt,cer}`.

use crate::error::TrustStoreError;
use crate::x509::{Certificate, is_ca_or_self_signed};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// The kind of a named trust store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrustStoreType {
    /// `ca`: roots for signatures with the `notary.x509` signing scheme.
    Ca,
    /// `signingAuthority`: roots for the `notary.x509.signingAuthority` scheme. That scheme is
    /// not verified here: trust policies naming such a store are refused.
    SigningAuthority,
    /// `tsa`: timestamping authority roots. Timestamps are not verified here: trust policies
    /// naming such a store are refused. (Stores of both kinds still load from a directory.)
    Tsa,
}

impl TrustStoreType {
    /// The name used in trust policies and directory names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ca => "ca",
            Self::SigningAuthority => "signingAuthority",
            Self::Tsa => "tsa",
        }
    }

    /// Parses `ca`, `signingAuthority` or `tsa`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ca" => Some(Self::Ca),
            "signingAuthority" => Some(Self::SigningAuthority),
            "tsa" => Some(Self::Tsa),
            _ => None,
        }
    }

    const ALL: [Self; 3] = [Self::Ca, Self::SigningAuthority, Self::Tsa];
}

/// A reference to a named trust store, written `type:name` in trust policies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustStoreRef {
    /// The store type.
    pub store_type: TrustStoreType,
    /// The store name (`[a-zA-Z0-9_.-]+`).
    pub name: String,
}

impl TrustStoreRef {
    /// A reference to a `ca` store.
    pub fn ca(name: impl Into<String>) -> Self {
        Self { store_type: TrustStoreType::Ca, name: name.into() }
    }
}

impl fmt::Display for TrustStoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.store_type.as_str(), self.name)
    }
}

/// Whether a trust store name is valid: `[a-zA-Z0-9_.-]+`.
pub(crate) fn is_valid_store_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A set of named trust stores, each a non-empty list of CA or self-signed certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStores {
    stores: BTreeMap<TrustStoreRef, Vec<Certificate>>,
}

impl TrustStores {
    /// No store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a store. Every certificate must be a CA certificate or self-signed.
    pub fn insert(&mut self, store: TrustStoreRef, certificates: Vec<Certificate>) -> Result<(), TrustStoreError> {
        if !is_valid_store_name(&store.name) {
            return Err(TrustStoreError::InvalidName(store.name));
        }
        if certificates.is_empty() {
            return Err(TrustStoreError::Empty(store.to_string()));
        }
        if let Some(bad) = certificates.iter().find(|c| !is_ca_or_self_signed(c)) {
            return Err(TrustStoreError::NotCaOrSelfSigned {
                store: store.to_string(),
                subject: bad.subject().to_string(),
            });
        }
        self.stores.insert(store, certificates);
        Ok(())
    }

    /// Adds (or replaces) a store from PEM text holding one or more certificates.
    pub fn insert_pem(&mut self, store: TrustStoreRef, pem: &[u8]) -> Result<(), TrustStoreError> {
        let certs = Certificate::parse_pem(pem)
            .map_err(|source| TrustStoreError::Certificate { path: store.to_string().into(), source })?;
        self.insert(store, certs)
    }

    /// The certificates of a store.
    pub fn get(&self, store: &TrustStoreRef) -> Option<&[Certificate]> {
        self.stores.get(store).map(Vec::as_slice)
    }

    /// The stores, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&TrustStoreRef, &[Certificate])> {
        self.stores.iter().map(|(k, v)| (k, v.as_slice()))
    }

    /// Loads the Notation trust store layout under `root`:
    /// `root/x509/{ca,signingAuthority,tsa}/<name>/<file>`, where each file with extension
    /// `.pem`, `.crt` or `.cer` holds PEM or DER certificates. Sub-directories of a named store
    /// and other files are ignored, as are directories whose name is not a valid store name;
    /// named stores without certificates are left out. Symbolic links are refused.
    pub fn load_dir(root: &Path) -> Result<Self, TrustStoreError> {
        let mut stores = Self::new();
        for store_type in TrustStoreType::ALL {
            let type_dir = root.join("x509").join(store_type.as_str());
            let Some(entries) = read_dir_if_exists(&type_dir)? else {
                continue;
            };
            for (name, path, meta) in entries {
                if meta.file_type().is_symlink() {
                    return Err(TrustStoreError::Symlink(path));
                }
                if !meta.is_dir() || !is_valid_store_name(&name) {
                    continue;
                }
                let store = TrustStoreRef { store_type, name };
                let certs = load_named_store(&path)?;
                if !certs.is_empty() {
                    stores.insert(store, certs)?;
                }
            }
        }
        Ok(stores)
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> TrustStoreError {
    TrustStoreError::Io { path: path.to_path_buf(), message: e.to_string() }
}

type DirEntries = Vec<(String, std::path::PathBuf, std::fs::Metadata)>;

/// Lists a directory (sorted by name), or `None` if it does not exist.
fn read_dir_if_exists(dir: &Path) -> Result<Option<DirEntries>, TrustStoreError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(dir, &e)),
    };
    if meta.file_type().is_symlink() {
        return Err(TrustStoreError::Symlink(dir.to_path_buf()));
    }
    if !meta.is_dir() {
        return Ok(None);
    }
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, &e))? {
        let entry = entry.map_err(|e| io_error(dir, &e))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io_error(&path, &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        entries.push((name, path, meta));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(entries))
}

fn load_named_store(dir: &Path) -> Result<Vec<Certificate>, TrustStoreError> {
    let mut certs = Vec::new();
    for (_, path, meta) in read_dir_if_exists(dir)?.unwrap_or_default() {
        if meta.file_type().is_symlink() {
            return Err(TrustStoreError::Symlink(path));
        }
        let is_cert_file = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "pem" | "crt" | "cer"));
        if !meta.is_file() || !is_cert_file {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| io_error(&path, &e))?;
        let parsed = Certificate::parse_pem_or_der(&bytes)
            .map_err(|source| TrustStoreError::Certificate { path: path.clone(), source })?;
        certs.extend(parsed);
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_names() {
        assert!(is_valid_store_name("valid-trust-store"));
        assert!(is_valid_store_name("wabbit-networks.io"));
        assert!(is_valid_store_name("invalid_store"));
        assert!(!is_valid_store_name(""));
        assert!(!is_valid_store_name("a/b"));
        assert!(!is_valid_store_name("*"));
    }

    #[test]
    fn refs_display() {
        assert_eq!(TrustStoreRef::ca("e2e").to_string(), "ca:e2e");
        assert_eq!(TrustStoreType::parse("signingAuthority"), Some(TrustStoreType::SigningAuthority));
        assert_eq!(TrustStoreType::parse("CA"), None);
    }
}
