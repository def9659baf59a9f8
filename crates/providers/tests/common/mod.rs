//! Helpers shared by the provider tests.

use std::sync::Arc;

use tidegate_providers::notary_signer::NotarySigner;
use tidegate_providers::registry::RegistryClient;
use tidegate_testenv::pki::{CodeSigningFiles, write_code_signing_identity};

/// A code-signing identity with its trust store and policy (see testenv's pki).
pub struct Identity {
    _dir: tempfile::TempDir,
    pub files: CodeSigningFiles,
}

impl Identity {
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = write_code_signing_identity(dir.path(), name, "tidegate").expect("identity");
        Self { _dir: dir, files }
    }

    /// A signer that trusts this identity; it signs too when `with_key`.
    pub fn signer(&self, registry: Arc<RegistryClient>, with_key: bool) -> NotarySigner {
        let key = with_key.then_some((self.files.key.as_path(), self.files.chain.as_path()));
        NotarySigner::from_files(registry, key, &self.files.trust_policy, &self.files.trust_store).expect("signer")
    }
}
