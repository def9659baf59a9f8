//! The key that signs Notary Project signatures: a PEM key file mounted into the controller, or
//! a key in Azure Key Vault that never leaves the vault. Either way every envelope is checked to
//! verify with the signing certificate before it is pushed.

use tidegate_notary::{Descriptor, SignOptions, Signer as NotaryKey};

use crate::ProviderError;
use crate::azure::key_vault_key::KeyVaultSigningKey;

/// A signing key and its certificate chain.
pub enum SigningKey {
    /// A private key read from a file (`--notary-key-file`).
    File(Box<NotaryKey>),
    /// A key in Azure Key Vault (`--notary-key-vault-key-id` / `--notary-key-vault-certificate-id`).
    KeyVault(Box<KeyVaultSigningKey>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SigningKey {
    /// Signs `target` into a JWS envelope.
    pub async fn sign(&self, target: &Descriptor, options: &SignOptions) -> Result<Vec<u8>, ProviderError> {
        match self {
            Self::File(key) => key
                .sign(target, options)
                .map_err(|e| ProviderError::Permanent(format!("signing {}: {e}", target.digest))),
            Self::KeyVault(key) => key.sign(target, options).await,
        }
    }

    /// The value of the signature manifest's certificate thumbprint annotation.
    pub fn thumbprint_annotation_value(&self) -> String {
        match self {
            Self::File(key) => key.thumbprint_annotation_value(),
            Self::KeyVault(key) => key.chain().thumbprint_annotation_value(),
        }
    }

    /// For logs: which key signs, with which algorithm and certificate.
    pub fn describe(&self) -> String {
        match self {
            Self::File(key) => {
                let subject = key.certificate_chain().first().map(|c| c.subject().to_string()).unwrap_or_default();
                format!("key file ({}, certificate {subject:?})", key.algorithm())
            }
            Self::KeyVault(key) => key.describe(),
        }
    }
}
