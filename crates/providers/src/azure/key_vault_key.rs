//! A Notary Project signing key held in Azure Key Vault: the private key never leaves the vault;
//! Tidegate prepares each envelope, has the vault sign its digest and adds the signature only
//! when it verifies with the signing certificate's key ([`tidegate_notary::SigningChain`]).
//!
//! Checked once, at construction (the controller fails to start otherwise): the key's type is
//! one the Notary Project allows (EC P-256/P-384/P-521, RSA 2048/3072/4096), it permits `sign`,
//! and its public key is the signing certificate's. The key version is then pinned: a rotated
//! key (a new version, a new public key) is not used until the controller is restarted with a
//! certificate for it. Checked at every signature: the pinned version is enabled and within its
//! validity; a disabled key fails closed with [`KeyVaultError::KeyDisabled`].

use tidegate_notary::{Certificate, Descriptor, RawPublicKey, SignOptions, SignatureAlgorithm, SigningChain};

use super::key_vault::{Attributes, Collection, JsonWebKey, KeyBundle, KeyVault, KeyVaultError, ObjectId, base64url};
use crate::ProviderError;

/// Where the signing key and its certificate come from.
#[derive(Clone, Debug, Default)]
pub struct KeyVaultSigningConfig {
    /// `https://VAULT/keys/NAME[/VERSION]`; with only a certificate, the certificate's key.
    pub key_id: Option<String>,
    /// `https://VAULT/certificates/NAME[/VERSION]`: its `cer` is the signing certificate and its
    /// `kid` the key.
    pub certificate_id: Option<String>,
    /// PEM certificates: with a certificate id, the CA chain above the signing certificate (up to
    /// the root); with a key id only, the whole chain, signing certificate first.
    pub chain_pem: Option<Vec<u8>>,
}

/// A signing key in Azure Key Vault with its certificate chain.
pub struct KeyVaultSigningKey {
    vault: KeyVault,
    /// The key version that signs.
    key: ObjectId,
    chain: SigningChain,
}

impl std::fmt::Debug for KeyVaultSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultSigningKey").field("key", &self.key.to_string()).finish_non_exhaustive()
    }
}

/// The key's public part, or why it cannot sign Notary Project signatures.
pub(crate) fn public_key(key: &JsonWebKey) -> Result<(RawPublicKey, SignatureAlgorithm), String> {
    let field = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .ok_or_else(|| format!("the key has no {name}"))
            .and_then(|v| base64url(v).map_err(|e| format!("the key's {name} is {e}")))
    };
    match key.kty.as_str() {
        "EC" | "EC-HSM" => {
            let curve = key.crv.clone().unwrap_or_default();
            let alg = match curve.as_str() {
                "P-256" => SignatureAlgorithm::Es256,
                "P-384" => SignatureAlgorithm::Es384,
                "P-521" => SignatureAlgorithm::Es512,
                other => {
                    return Err(format!(
                        "the EC key is on curve {other:?}; Notary Project signatures need P-256, P-384 or P-521"
                    ));
                }
            };
            Ok((RawPublicKey::Ec { curve, x: field("x", &key.x)?, y: field("y", &key.y)? }, alg))
        }
        "RSA" | "RSA-HSM" => {
            let n = field("n", &key.n)?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            let alg = match significant * 8 {
                2048 => SignatureAlgorithm::Ps256,
                3072 => SignatureAlgorithm::Ps384,
                4096 => SignatureAlgorithm::Ps512,
                bits => {
                    return Err(format!(
                        "the RSA key has {bits} bits; Notary Project signatures need 2048, 3072 or 4096"
                    ));
                }
            };
            Ok((RawPublicKey::Rsa { n, e: field("e", &key.e)? }, alg))
        }
        other => Err(format!("the key type is {other:?}; Notary Project signatures need an EC or RSA key")),
    }
}

/// Why the attributes forbid use at `now` (Unix seconds), if they do.
fn unusable(attributes: &Attributes, now: i64) -> Option<String> {
    if attributes.enabled == Some(false) {
        return Some("attributes.enabled is false".into());
    }
    if let Some(nbf) = attributes.nbf
        && now < nbf
    {
        return Some(format!("it is not valid before {}", time(nbf)));
    }
    if let Some(exp) = attributes.exp
        && now >= exp
    {
        return Some(format!("it expired at {}", time(exp)));
    }
    None
}

fn time(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map_or_else(|_| seconds.to_string(), |t| t.to_string())
}

impl KeyVaultSigningKey {
    /// Reads the certificate (when configured) and the key from `vault`, and checks that they
    /// can sign together. Every error names the key, the certificate and what to fix.
    pub async fn connect(vault: KeyVault, config: &KeyVaultSigningConfig) -> Result<Self, String> {
        let parse_pem = |pem: &[u8]| Certificate::parse_pem(pem).map_err(|e| format!("--notary-cert-file: {e}"));
        let (mut key_id, chain) = match &config.certificate_id {
            Some(text) => {
                let id = ObjectId::parse(text, Collection::Certificates)
                    .map_err(|e| format!("--notary-key-vault-certificate-id {e}"))?;
                let bundle =
                    vault.get_certificate(&id).await.map_err(|e| format!("reading the certificate {id}: {e}"))?;
                let leaf = Certificate::from_der(bundle.der()?).map_err(|e| format!("the certificate {id}: {e}"))?;
                let kid = bundle.kid.as_deref().ok_or_else(|| format!("the certificate {id} names no key (kid)"))?;
                let kid =
                    ObjectId::parse(kid, Collection::Keys).map_err(|e| format!("the certificate {id}'s kid {e}"))?;
                let mut chain = vec![leaf];
                if let Some(pem) = &config.chain_pem {
                    let cas = parse_pem(pem)?;
                    // A file that repeats the signing certificate first is accepted as the full chain.
                    let skip = usize::from(cas.first().is_some_and(|c| c.der() == chain[0].der()));
                    chain.extend(cas.into_iter().skip(skip));
                }
                if let Some(text) = &config.key_id {
                    let wanted = ObjectId::parse(text, Collection::Keys)
                        .map_err(|e| format!("--notary-key-vault-key-id {e}"))?;
                    if !wanted.same_object(&kid)
                        || wanted.version.as_ref().is_some_and(|v| Some(v) != kid.version.as_ref())
                    {
                        return Err(format!(
                            "--notary-key-vault-key-id {wanted} is not the key of --notary-key-vault-certificate-id \
                             {id} (its key is {kid})"
                        ));
                    }
                }
                (kid, chain)
            }
            None => {
                let text = config.key_id.as_deref().ok_or("no Key Vault key or certificate configured")?;
                let id =
                    ObjectId::parse(text, Collection::Keys).map_err(|e| format!("--notary-key-vault-key-id {e}"))?;
                let pem = config.chain_pem.as_deref().ok_or_else(|| {
                    format!("--notary-key-vault-key-id {id} needs --notary-cert-file: the certificate chain of the key, signing certificate first")
                })?;
                (id, parse_pem(pem)?)
            }
        };
        let chain = SigningChain::new(chain).map_err(|e| format!("the signing certificate of {key_id}: {e}"))?;
        let subject = chain.certificate_chain().first().map(|c| c.subject().to_string()).unwrap_or_default();

        let bundle: KeyBundle = vault.get_key(&key_id).await.map_err(|e| format!("reading the key {key_id}: {e}"))?;
        let (public, alg) = public_key(&bundle.key).map_err(|e| format!("the key {key_id} cannot sign: {e}"))?;
        if let Some(ops) = &bundle.key.key_ops
            && !ops.iter().any(|op| op == "sign")
        {
            return Err(format!("the key {key_id} does not permit sign (key_ops {ops:?})"));
        }
        let matches = chain.has_public_key(&public).map_err(|e| format!("the key {key_id}: {e}"))?;
        if !matches || alg != chain.algorithm() {
            return Err(format!(
                "the Key Vault key {key_id} ({}) is not the key of the signing certificate {subject:?} ({}): every \
                 signature would fail verification; configure the certificate issued for this key",
                bundle.key.kty,
                chain.key_description()
            ));
        }
        // Pin the version that was checked.
        let pinned = ObjectId::parse(&bundle.key.kid, Collection::Keys)
            .map_err(|e| format!("the key {key_id}: Key Vault answered with kid {e}"))?;
        if !pinned.same_object(&key_id) || pinned.version.is_none() {
            return Err(format!("the key {key_id}: Key Vault answered with another key, {}", bundle.key.kid));
        }
        key_id = pinned;
        if let Some(why) = unusable(&bundle.attributes, jiff::Timestamp::now().as_second()) {
            tracing::warn!(key = %key_id, "the Key Vault signing key cannot sign now ({why}); Releases stop at signing until it can");
        }
        Ok(Self { vault, key: key_id, chain })
    }

    /// The key version that signs.
    pub fn key_id(&self) -> &ObjectId {
        &self.key
    }

    /// The certificate chain, signing certificate first.
    pub fn chain(&self) -> &SigningChain {
        &self.chain
    }

    /// For logs: the key, its algorithm and the signing certificate.
    pub fn describe(&self) -> String {
        let subject = self.chain.certificate_chain().first().map(|c| c.subject().to_string()).unwrap_or_default();
        format!("Azure Key Vault key {} ({}, certificate {subject:?})", self.key, self.chain.algorithm())
    }

    /// Signs `target`: checks the key is enabled and valid, prepares the envelope, has the vault
    /// sign its digest and finishes it only when the signature verifies with the certificate.
    pub async fn sign(&self, target: &Descriptor, options: &SignOptions) -> Result<Vec<u8>, ProviderError> {
        let prepared = self
            .chain
            .prepare(target, options)
            .map_err(|e| ProviderError::Permanent(format!("signing {}: {e}", target.digest)))?;
        let bundle = self.vault.get_key(&self.key).await?;
        if let Some(message) = unusable(&bundle.attributes, jiff::Timestamp::now().as_second()) {
            if bundle.attributes.enabled == Some(false) {
                return Err(KeyVaultError::KeyDisabled { key: self.key.to_string(), message }.into());
            }
            return Err(ProviderError::Permanent(format!(
                "the Azure Key Vault key {} cannot sign: {message}; Tidegate signs nothing with it",
                self.key
            )));
        }
        let signature = self.vault.sign(&self.key, prepared.algorithm().jws_name(), &prepared.digest()).await?;
        prepared
            .finish(&signature)
            .map_err(|e| ProviderError::Permanent(format!("signing {} with {}: {e}", target.digest, self.key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwk(kty: &str, crv: Option<&str>, n_bytes: usize) -> JsonWebKey {
        let b = |len: usize| Some(URL_SAFE_NO_PAD.encode(vec![0x80u8; len]));
        JsonWebKey {
            kid: "https://v.vault.azure.net/keys/k/1".into(),
            kty: kty.into(),
            crv: crv.map(str::to_string),
            n: if n_bytes > 0 { b(n_bytes) } else { None },
            e: Some(URL_SAFE_NO_PAD.encode([1, 0, 1])),
            x: b(32),
            y: b(32),
            ..JsonWebKey::default()
        }
    }

    #[test]
    fn the_algorithm_follows_the_key_type() {
        assert_eq!(public_key(&jwk("EC", Some("P-256"), 0)).unwrap().1, SignatureAlgorithm::Es256);
        assert_eq!(public_key(&jwk("EC-HSM", Some("P-384"), 0)).unwrap().1, SignatureAlgorithm::Es384);
        assert_eq!(public_key(&jwk("EC", Some("P-521"), 0)).unwrap().1, SignatureAlgorithm::Es512);
        assert_eq!(public_key(&jwk("RSA", None, 256)).unwrap().1, SignatureAlgorithm::Ps256);
        assert_eq!(public_key(&jwk("RSA-HSM", None, 384)).unwrap().1, SignatureAlgorithm::Ps384);
        assert_eq!(public_key(&jwk("RSA", None, 512)).unwrap().1, SignatureAlgorithm::Ps512);
        for (key, why) in [
            (jwk("EC", Some("P-256K"), 0), "P-256K"),
            (jwk("RSA", None, 128), "1024 bits"),
            (jwk("oct", None, 0), "\"oct\""),
            (JsonWebKey { n: None, ..jwk("RSA", None, 0) }, "no n"),
        ] {
            let err = public_key(&key).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn disabled_expired_and_future_keys_are_unusable() {
        let now = 1_700_000_000;
        assert_eq!(unusable(&Attributes::default(), now), None);
        assert_eq!(unusable(&Attributes { enabled: Some(true), nbf: Some(now - 1), exp: Some(now + 1) }, now), None);
        assert!(
            unusable(&Attributes { enabled: Some(false), ..Attributes::default() }, now).unwrap().contains("enabled")
        );
        assert!(unusable(&Attributes { exp: Some(now), ..Attributes::default() }, now).unwrap().contains("expired"));
        assert!(
            unusable(&Attributes { nbf: Some(now + 60), ..Attributes::default() }, now).unwrap().contains("before")
        );
    }
}
