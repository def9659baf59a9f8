//! The Azure Key Vault data plane, the operations signing needs: read a key
//! (`GET {vault}/keys/{name}[/{version}]`), sign a digest with it
//! (`POST {vault}/keys/{name}/{version}/sign`) and read a certificate
//! (`GET {vault}/certificates/{name}[/{version}]`), api-version [`API_VERSION`].
//!
//! Requests go through the same azure_core pipeline pieces as the ARM client (Tidegate's
//! transport and CA trust, retry policy, request budget and logging). Authentication follows Key
//! Vault's challenge ([`super::key_vault_auth`]): the first request is sent without a token (and
//! without a body), the `401` names the resource, which must be the vault's own domain, and the
//! token for it comes from the controller's Azure credential. The token is sent to the vault's
//! origin only.
//!
//! `azure_security_keyvault_keys` is not used: Tidegate needs three operations, and its own
//! pipeline (transport, CA file, retries, budget, observability) rather than a second one.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::Policy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, RawResponse, Request, RetryOptions,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use url::Url;

use super::error::{AzureError, excerpt};
use super::identity::AzureConfig;
use super::key_vault_auth::challenge_for;
use super::policies::{ArmRetry, ObservePolicy, REQUEST_ID};
use super::transport::ReqwestTransport;
use crate::ProviderError;

/// The Key Vault data-plane API version Tidegate sends.
pub const API_VERSION: &str = "7.4";

const WWW_AUTHENTICATE: azure_core::http::headers::HeaderName =
    azure_core::http::headers::HeaderName::from_static("www-authenticate");

/// Which collection of a vault an identifier names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    /// `/keys/`.
    Keys,
    /// `/certificates/`.
    Certificates,
}

impl Collection {
    fn segment(self) -> &'static str {
        match self {
            Self::Keys => "keys",
            Self::Certificates => "certificates",
        }
    }
}

/// A key or certificate identifier: `https://{vault}/keys/{name}[/{version}]` or
/// `https://{vault}/certificates/{name}[/{version}]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectId {
    /// The vault's origin, e.g. `https://myvault.vault.azure.net`.
    pub vault: Url,
    /// Keys or certificates.
    pub collection: Collection,
    /// The object's name.
    pub name: String,
    /// The version, or `None` for the current one.
    pub version: Option<String>,
}

impl ObjectId {
    /// Parses an identifier of `collection`. Only `https`, no user information, query or
    /// fragment; names of 1 to 127 letters, digits and `-`; versions of letters and digits.
    pub fn parse(text: &str, collection: Collection) -> Result<Self, String> {
        let what = collection.segment();
        let expected = format!("https://VAULT/{what}/NAME[/VERSION]");
        let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e}); expected {expected}"))?;
        if url.scheme() != "https"
            || url.host_str().is_none()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!("{text:?} is not of the form {expected}"));
        }
        let segments: Vec<&str> = url.path().trim_end_matches('/').split('/').skip(1).collect();
        let (name, version) = match segments.as_slice() {
            [c, name] if *c == what => (*name, None),
            [c, name, version] if *c == what => (*name, Some(*version)),
            _ => return Err(format!("{text:?} is not of the form {expected}")),
        };
        if name.is_empty() || name.len() > 127 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(format!("{text:?}: {name:?} is not a Key Vault name (1 to 127 letters, digits and -)"));
        }
        if let Some(v) = version
            && (v.is_empty() || v.len() > 64 || !v.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            return Err(format!("{text:?}: {v:?} is not a Key Vault version"));
        }
        let mut vault = url.clone();
        vault.set_path("/");
        Ok(Self { vault, collection, name: name.to_string(), version: version.map(str::to_string) })
    }

    /// The object's path in the vault, `/keys/{name}[/{version}]`.
    pub fn path(&self) -> String {
        match &self.version {
            Some(v) => format!("/{}/{}/{v}", self.collection.segment(), self.name),
            None => format!("/{}/{}", self.collection.segment(), self.name),
        }
    }

    /// The same object in another collection of the same vault (a certificate's key).
    pub fn with_version(&self, version: Option<String>) -> Self {
        Self { version, ..self.clone() }
    }

    /// Whether `other` names the same vault, collection and name (versions not compared).
    pub fn same_object(&self, other: &Self) -> bool {
        self.vault.origin() == other.vault.origin()
            && self.collection == other.collection
            && self.name.eq_ignore_ascii_case(&other.name)
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.vault.as_str().trim_end_matches('/'), self.path())
    }
}

/// A key as Key Vault shows it (`KeyBundle`): the public JSON Web Key and its attributes.
#[derive(Clone, Debug, Deserialize)]
pub struct KeyBundle {
    /// The public key.
    pub key: JsonWebKey,
    /// Enabled, validity.
    #[serde(default)]
    pub attributes: Attributes,
}

/// The public part of a JSON Web Key (RFC 7517) as Key Vault returns it; binary values are
/// base64url.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct JsonWebKey {
    /// The key identifier with its version, `https://{vault}/keys/{name}/{version}`.
    #[serde(default)]
    pub kid: String,
    /// `EC`, `EC-HSM`, `RSA`, `RSA-HSM`, `oct`, `oct-HSM`.
    #[serde(default)]
    pub kty: String,
    /// Operations the key permits (`sign`, `verify`, …).
    #[serde(default)]
    pub key_ops: Option<Vec<String>>,
    /// EC curve (`P-256`, `P-384`, `P-521`, `P-256K`).
    #[serde(default)]
    pub crv: Option<String>,
    /// RSA modulus.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA public exponent.
    #[serde(default)]
    pub e: Option<String>,
    /// EC x coordinate.
    #[serde(default)]
    pub x: Option<String>,
    /// EC y coordinate.
    #[serde(default)]
    pub y: Option<String>,
}

/// The attributes of a key or certificate (times are Unix seconds).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Attributes {
    /// Whether the object may be used (absent: enabled).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Not before.
    #[serde(default)]
    pub nbf: Option<i64>,
    /// Expires.
    #[serde(default)]
    pub exp: Option<i64>,
}

/// A certificate as Key Vault shows it (`CertificateBundle`), the parts signing needs.
#[derive(Clone, Debug, Deserialize)]
pub struct CertificateBundle {
    /// The certificate identifier with its version.
    #[serde(default)]
    pub id: String,
    /// The key identifier of the certificate's key, with its version.
    #[serde(default)]
    pub kid: Option<String>,
    /// The certificate, base64 DER.
    #[serde(default)]
    pub cer: Option<String>,
    /// Enabled, validity.
    #[serde(default)]
    pub attributes: Attributes,
}

impl CertificateBundle {
    /// The DER bytes of the certificate.
    pub fn der(&self) -> Result<Vec<u8>, String> {
        let cer = self.cer.as_deref().ok_or_else(|| format!("the certificate {} has no cer", self.id))?;
        STANDARD
            .decode(cer)
            .or_else(|_| URL_SAFE_NO_PAD.decode(cer.trim_end_matches('=')))
            .map_err(|e| format!("the certificate {}'s cer is not base64: {e}", self.id))
    }
}

#[derive(Deserialize)]
struct SignResult {
    #[serde(default)]
    kid: String,
    #[serde(default)]
    value: String,
}

/// What the Key Vault client can fail with.
#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    /// Configuration, sign-in, transport, an unreadable answer or a refused challenge.
    #[error(transparent)]
    Azure(#[from] AzureError),
    /// The key is disabled (Key Vault said so, or its attributes do).
    #[error(
        "the Azure Key Vault key {key} is disabled ({message}); Tidegate signs nothing with it: enable the key \
         (or configure another one) and the Release is signed on its next attempt"
    )]
    KeyDisabled {
        /// The key identifier.
        key: String,
        /// What Key Vault or the attributes said.
        message: String,
    },
    /// Key Vault answered with an error.
    #[error(transparent)]
    Service(Box<ServiceError>),
}

/// An error answer of Key Vault, with what a person needs to act on it.
#[derive(Debug, thiserror::Error)]
#[error("Azure Key Vault refused {method} {url} ({status} {code}{inner}): {message}{request_id}{hint}")]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    /// Key Vault's error code (`Forbidden`, `KeyNotFound`, …).
    pub code: String,
    /// The inner error code, with its separator, when there is one.
    pub inner: String,
    /// Key Vault's message.
    pub message: String,
    /// The method.
    pub method: String,
    /// The URL without query.
    pub url: String,
    /// ` (request id …)` when Key Vault gave one.
    pub request_id: String,
    /// What to check.
    pub hint: &'static str,
}

impl KeyVaultError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Azure(e) => e.is_transient(),
            Self::KeyDisabled { .. } => false,
            Self::Service(e) => matches!(e.status, 408 | 429 | 500..=599),
        }
    }
}

impl From<KeyVaultError> for ProviderError {
    fn from(e: KeyVaultError) -> Self {
        if e.is_transient() { Self::Transient(e.to_string()) } else { Self::Permanent(e.to_string()) }
    }
}

#[derive(Default, Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default, alias = "innerError")]
    innererror: Option<Box<ErrorBody>>,
}

/// Key Vault's error answer, turned into [`KeyVaultError`]; a disabled key
/// (`innererror.code: KeyDisabled`, or a message saying so) is [`KeyVaultError::KeyDisabled`].
pub(crate) fn service_error(
    status: u16,
    body: &[u8],
    request_id: Option<String>,
    method: &str,
    url: &str,
    key: Option<&str>,
) -> KeyVaultError {
    let parsed: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    let (code, message, inner) = match parsed.error {
        Some(e) if !(e.code.is_empty() && e.message.is_empty()) => {
            (e.code, e.message, e.innererror.map(|i| i.code).unwrap_or_default())
        }
        _ => (format!("HttpStatus{status}"), excerpt(body), String::new()),
    };
    let disabled = inner.eq_ignore_ascii_case("KeyDisabled")
        || (status == 403 && message.to_ascii_lowercase().contains("disabled key"));
    if disabled && let Some(key) = key {
        return KeyVaultError::KeyDisabled { key: key.to_string(), message };
    }
    let hint = match status {
        401 | 403 => {
            " — check that Tidegate's Azure identity may use this key (role Key Vault Crypto User, or an access \
             policy with get and sign) and the vault's network rules"
        }
        404 => {
            " — check the key or certificate identifier (--notary-key-vault-key-id / --notary-key-vault-certificate-id)"
        }
        429 => " — Key Vault is throttling this identity",
        _ => "",
    };
    KeyVaultError::Service(Box::new(ServiceError {
        status,
        code,
        inner: if inner.is_empty() { String::new() } else { format!("/{inner}") },
        message,
        method: method.to_string(),
        url: url.to_string(),
        request_id: request_id.map(|id| format!(" (request id {id})")).unwrap_or_default(),
        hint,
    }))
}

/// A client of one vault.
pub struct KeyVault {
    vault: Url,
    pipeline: Pipeline,
    credential: Arc<dyn TokenCredential>,
    credential_name: String,
    /// The token scope the vault's challenge named, once known.
    scope: tokio::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVault")
            .field("vault", &self.vault.as_str())
            .field("credential", &self.credential_name)
            .finish()
    }
}

impl KeyVault {
    /// A client of the vault at `vault` (its origin is used) over `transport`, signing in with
    /// `credential` (described as `credential_name` in errors), with the ARM client's retry
    /// policy (`max_retries`) and a budget of `requests_per_second`.
    pub fn new(
        vault: &Url,
        transport: azure_core::http::Transport,
        credential: Arc<dyn TokenCredential>,
        credential_name: String,
        max_retries: u32,
        requests_per_second: f64,
    ) -> Self {
        let observe: Arc<dyn Policy> = Arc::new(ObservePolicy::new(requests_per_second));
        let options = ClientOptions {
            transport: Some(transport),
            retry: RetryOptions::custom(Arc::new(ArmRetry::new(max_retries))),
            ..ClientOptions::default()
        };
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            options,
            Vec::new(),
            vec![observe],
            None,
        );
        let mut origin = vault.clone();
        origin.set_path("/");
        origin.set_query(None);
        Self { vault: origin, pipeline, credential, credential_name, scope: tokio::sync::Mutex::new(None) }
    }

    /// A client of `vault` with the transport and credential `config` configures (the same
    /// identity as the ARM client).
    pub async fn from_config(vault: &Url, config: &AzureConfig) -> Result<Self, KeyVaultError> {
        config.validate()?;
        let transport = ReqwestTransport::new(config.ca_file.as_deref(), config.request_timeout)?.transport();
        let credential = config.credential(&transport).await?;
        Ok(Self::new(vault, transport, credential, config.describe(), config.max_retries, config.requests_per_second))
    }

    /// The vault's origin.
    pub fn vault(&self) -> &Url {
        &self.vault
    }

    fn check_vault(&self, id: &ObjectId) -> Result<(), KeyVaultError> {
        if id.vault.origin() != self.vault.origin() {
            return Err(AzureError::Refused(format!("{id} is not in the vault {}", self.vault)).into());
        }
        Ok(())
    }

    /// Reads a key (the current version when `id` has none).
    pub async fn get_key(&self, id: &ObjectId) -> Result<KeyBundle, KeyVaultError> {
        self.check_vault(id)?;
        let body = self.call(Method::Get, &id.path(), None, Some(&id.to_string())).await?;
        parse(&body, "GET", &id.to_string())
    }

    /// Reads a certificate (the current version when `id` has none).
    pub async fn get_certificate(&self, id: &ObjectId) -> Result<CertificateBundle, KeyVaultError> {
        self.check_vault(id)?;
        let body = self.call(Method::Get, &id.path(), None, None).await?;
        parse(&body, "GET", &id.to_string())
    }

    /// Signs `digest` with key version `key` and JWS algorithm `alg` (`ES256`, `PS256`, …);
    /// returns the signature (ECDSA: `r || s`). The answer must name the same key.
    pub async fn sign(&self, key: &ObjectId, alg: &str, digest: &[u8]) -> Result<Vec<u8>, KeyVaultError> {
        self.check_vault(key)?;
        let name = key.to_string();
        if key.version.is_none() {
            return Err(AzureError::Refused(format!("signing needs a key version: {name}")).into());
        }
        let body = serde_json::json!({"alg": alg, "value": URL_SAFE_NO_PAD.encode(digest)});
        let path = format!("{}/sign", key.path());
        let answer = self.call(Method::Post, &path, Some(body.to_string().into_bytes()), Some(&name)).await?;
        let result: SignResult = parse(&answer, "POST", &format!("{name}/sign"))?;
        let protocol = |message: String| {
            KeyVaultError::from(AzureError::Protocol { method: "POST".into(), path: format!("{name}/sign"), message })
        };
        let answered = ObjectId::parse(&result.kid, Collection::Keys)
            .map_err(|e| protocol(format!("the answer's kid is not a key identifier: {e}")))?;
        if !answered.same_object(key) || answered.version.as_deref() != key.version.as_deref() {
            return Err(protocol(format!("the answer was signed by {}, not by {name}", result.kid)));
        }
        URL_SAFE_NO_PAD
            .decode(result.value.trim_end_matches('='))
            .map_err(|e| protocol(format!("the signature is not base64url: {e}")))
    }

    /// Sends a request with a token for the scope the vault's challenge names, eliciting the
    /// challenge first if it is not known yet. `key` names the key for a disabled-key error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> Result<Vec<u8>, KeyVaultError> {
        let scope = self.scope(method, path).await?;
        let token = self.credential.get_token(&[scope.as_str()], None).await.map_err(|e| AzureError::Credential {
            credential: self.credential_name.clone(),
            message: format!("token for {scope}: {e}"),
        })?;
        let response = self.send(method, path, body, Some(token.token.secret())).await?;
        let status = u16::from(response.status());
        if (200..300).contains(&status) {
            return Ok(response.into_body().to_vec());
        }
        let request_id = response.headers().get_optional_string(&REQUEST_ID);
        let url = self.url(path);
        Err(service_error(status, response.body(), request_id, method.as_ref(), url.as_str(), key))
    }

    /// The scope to ask a token for: from the first challenge of this vault.
    async fn scope(&self, method: Method, path: &str) -> Result<String, KeyVaultError> {
        let mut known = self.scope.lock().await;
        if let Some(scope) = known.as_ref() {
            return Ok(scope.clone());
        }
        // No token and no body: Key Vault answers 401 with its challenge.
        let response = self.send(method, path, None, None).await?;
        let status = u16::from(response.status());
        let refused = |message: String| KeyVaultError::from(AzureError::Refused(message));
        if status != 401 {
            return Err(refused(format!(
                "{} answered {status} to a request without a token; a Key Vault answers 401 with an authentication \
                 challenge",
                self.vault
            )));
        }
        let header = response
            .headers()
            .get_optional_str(&WWW_AUTHENTICATE)
            .ok_or_else(|| refused(format!("{} answered 401 without a WWW-Authenticate challenge", self.vault)))?;
        let challenge = challenge_for(&self.vault, header).map_err(refused)?;
        tracing::debug!(vault = %self.vault, scope = %challenge.scope, "Key Vault authentication challenge");
        *known = Some(challenge.scope.clone());
        Ok(challenge.scope)
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.vault.clone();
        url.set_path(path);
        url.query_pairs_mut().append_pair("api-version", API_VERSION);
        url
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<RawResponse, KeyVaultError> {
        let url = self.url(path);
        let mut request = Request::new(url.clone(), method);
        request.insert_header(azure_core::http::headers::ACCEPT, "application/json");
        if let Some(token) = token {
            request.insert_header(azure_core::http::headers::AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(body) = body {
            request.insert_header(azure_core::http::headers::CONTENT_TYPE, "application/json");
            request.set_body(body);
        }
        let options = PipelineSendOptions { skip_checks: true, ..PipelineSendOptions::default() };
        self.pipeline.send(&Context::new(), &mut request, Some(options)).await.map_err(|e| {
            AzureError::Transport {
                method: method.to_string(),
                path: format!("{}{}", self.vault.as_str().trim_end_matches('/'), path),
                message: e.to_string(),
            }
            .into()
        })
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], method: &str, what: &str) -> Result<T, KeyVaultError> {
    serde_json::from_slice(body).map_err(|e| {
        AzureError::Protocol {
            method: method.to_string(),
            path: what.to_string(),
            message: format!("{e} in {}", excerpt(body)),
        }
        .into()
    })
}

/// Base64url (with or without padding) to bytes.
pub(crate) fn base64url(text: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).map_err(|e| format!("not base64url: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_parsed_strictly() {
        let id = ObjectId::parse("https://myvault.vault.azure.net/keys/signer/0123abcd", Collection::Keys).unwrap();
        assert_eq!(id.vault.as_str(), "https://myvault.vault.azure.net/");
        assert_eq!((id.name.as_str(), id.version.as_deref()), ("signer", Some("0123abcd")));
        assert_eq!(id.to_string(), "https://myvault.vault.azure.net/keys/signer/0123abcd");
        let id = ObjectId::parse("https://myvault.vault.azure.net/keys/signer/", Collection::Keys).unwrap();
        assert_eq!(id.version, None);
        assert_eq!(id.path(), "/keys/signer");
        let cert =
            ObjectId::parse("https://myvault.vault.azure.net/certificates/tidegate", Collection::Certificates).unwrap();
        assert_eq!(cert.path(), "/certificates/tidegate");
        for bad in [
            "http://myvault.vault.azure.net/keys/signer",
            "https://myvault.vault.azure.net/secrets/signer",
            "https://myvault.vault.azure.net/keys",
            "https://myvault.vault.azure.net/keys/signer/v1/sign",
            "https://myvault.vault.azure.net/keys/sig_ner",
            "https://myvault.vault.azure.net/keys/signer?x=1",
            "https://user@myvault.vault.azure.net/keys/signer",
            "https://myvault.vault.azure.net/keys/signer/v-1",
            "myvault/keys/signer",
        ] {
            assert!(ObjectId::parse(bad, Collection::Keys).is_err(), "{bad}");
        }
        assert!(ObjectId::parse("https://v.vault.azure.net/keys/k", Collection::Certificates).is_err());
    }

    #[test]
    fn same_object_ignores_versions_and_name_case() {
        let a = ObjectId::parse("https://v.vault.azure.net/keys/Signer/1", Collection::Keys).unwrap();
        let b = ObjectId::parse("https://V.vault.azure.net/keys/signer/2", Collection::Keys).unwrap();
        let c = ObjectId::parse("https://w.vault.azure.net/keys/signer/1", Collection::Keys).unwrap();
        assert!(a.same_object(&b) && !a.same_object(&c));
    }

    #[test]
    fn a_disabled_key_is_told_apart_from_other_refusals() {
        let key = Some("https://v.vault.azure.net/keys/k/1");
        let body = br#"{"error":{"code":"Forbidden","message":"Operation sign is not allowed on a disabled key.","innererror":{"code":"KeyDisabled"}}}"#;
        let e = service_error(403, body, Some("r-1".into()), "POST", "https://v/keys/k/1/sign", key);
        assert!(matches!(&e, KeyVaultError::KeyDisabled { .. }), "{e}");
        assert!(e.to_string().contains("is disabled") && e.to_string().contains("https://v.vault.azure.net/keys/k/1"));
        assert!(!e.is_transient());
        let body = br#"{"error":{"code":"Forbidden","message":"The user, group or application does not have keys sign permission.","innererror":{"code":"ForbiddenByRbac"}}}"#;
        let e = service_error(403, body, None, "POST", "https://v/keys/k/1/sign", key);
        assert!(matches!(&e, KeyVaultError::Service(s) if s.status == 403), "{e}");
        assert!(e.to_string().contains("ForbiddenByRbac") && e.to_string().contains("Key Vault Crypto User"), "{e}");
        let e = service_error(503, b"<html>down</html>", None, "GET", "https://v/keys/k", key);
        assert!(e.is_transient() && e.to_string().contains("HttpStatus503"), "{e}");
        assert!(matches!(ProviderError::from(e), ProviderError::Transient(_)));
    }

    #[test]
    fn certificates_decode_from_standard_or_url_base64() {
        let bundle = |cer: &str| CertificateBundle {
            id: "c".into(),
            kid: None,
            cer: Some(cer.into()),
            attributes: Attributes::default(),
        };
        assert_eq!(bundle("MIIB+w==").der().unwrap(), vec![0x30, 0x82, 0x01, 0xfb]);
        assert_eq!(bundle("MIIB-w").der().unwrap(), vec![0x30, 0x82, 0x01, 0xfb]);
        assert!(bundle("***").der().is_err());
    }
}
