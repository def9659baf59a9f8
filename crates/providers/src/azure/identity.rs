//! Which Azure identity Tidegate signs in as, chosen by configuration. There is no fallback
//! chain (azure_identity 1.x has no `DefaultAzureCredential`, and a controller should not guess
//! which identity it acts as): the configured kind is used, or startup fails naming the flag.
//!
//! What azure_identity 1.0.0 does, read from its source:
//!
//! - **Authority host.** Every Entra ID credential takes it from
//!   `ClientOptions::cloud` (`CloudConfiguration::Custom { authority_host, .. }`); only when
//!   `cloud` is `None` does it read the `AZURE_AUTHORITY_HOST` environment variable (default
//!   `https://login.microsoftonline.com`). The host must be `https` or the credential refuses to
//!   build. Tidegate always sets `cloud` from [`AzureConfig::authority_host`], so the environment
//!   variable is never consulted. Tokens are requested with
//!   `POST {authority}/{tenant}/oauth2/v2.0/token` (form: `client_id`, `scope`,
//!   `grant_type=client_credentials` and either `client_secret` or `client_assertion` +
//!   `client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`).
//! - **Client secret** (`ClientSecretCredential::new(tenant, client_id, secret, options)`): the
//!   secret is a value, not a file; Tidegate reads the mounted Secret file at start and again
//!   whenever a new token is needed (about hourly, and after a `401`), and builds a new credential
//!   when the file changed, so a rotated secret is picked up without a restart.
//! - **Workload identity** (`WorkloadIdentityCredential`): a client assertion credential whose
//!   assertion is the projected service-account token file, read at construction and re-read
//!   when older than 10 minutes. Tenant, client id and file default to `AZURE_TENANT_ID`,
//!   `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE` (what the AKS workload identity webhook
//!   injects); Tidegate passes all three explicitly, so the flags (which the controller may
//!   default from those variables) are the only source.
//! - **Managed identity** (`ManagedIdentityCredential`): the endpoint is chosen from the
//!   environment at construction: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER` → the App Service /
//!   Container Apps identity endpoint (`GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=…`
//!   with header `x-identity-header: {IDENTITY_HEADER}`); with `IDENTITY_SERVER_THUMBPRINT` too
//!   (Service Fabric), `IMDS_ENDPOINT` (Azure Arc) or `MSI_ENDPOINT` (Cloud Shell, Azure ML) it
//!   refuses as unsupported; otherwise IMDS at
//!   `http://169.254.169.254/metadata/identity/oauth2/token` (header `metadata: true`, retried on
//!   404/410/429/5xx up to 6 times over 72 s). A user-assigned identity is selected with
//!   `client_id=…`. The scope is turned into a `resource` (the `/.default` suffix dropped), and
//!   exactly one scope is allowed. The authority host is not used.
//!
//! Every credential gets the same transport as the ARM pipeline ([`super::transport`]), so token
//! requests trust the same roots and the extra CA.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::http::{ClientOptions, Transport};
use azure_identity::{
    ClientSecretCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use tokio::sync::Mutex;
use tracing::{info, warn};
use url::Url;

use super::error::AzureError;

/// Flag that selects the credential kind.
pub const FLAG_CREDENTIAL: &str = "--azure-credential";
/// Flag for the tenant id.
pub const FLAG_TENANT_ID: &str = "--azure-tenant-id";
/// Flag for the client (application) id.
pub const FLAG_CLIENT_ID: &str = "--azure-client-id";
/// Flag for the mounted client secret file.
pub const FLAG_CLIENT_SECRET_FILE: &str = "--azure-client-secret-file";
/// Flag for the federated (service account) token file.
pub const FLAG_FEDERATED_TOKEN_FILE: &str = "--azure-federated-token-file";
/// Flag for the Entra ID authority host.
pub const FLAG_AUTHORITY_HOST: &str = "--azure-authority-host";
/// Flag for the Azure Resource Manager endpoint.
pub const FLAG_RESOURCE_MANAGER: &str = "--azure-resource-manager";
/// Flag for the token scope.
pub const FLAG_SCOPE: &str = "--azure-scope";
/// Flag for the per-subscription request budget.
pub const FLAG_REQUESTS_PER_SECOND: &str = "--azure-requests-per-second";

/// Which identity Tidegate signs in to Azure as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AzureCredentialKind {
    /// Entra Workload Identity: a federated Kubernetes service-account token (AKS).
    #[default]
    WorkloadIdentity,
    /// The managed identity of the machine or app Tidegate runs on (IMDS, or the App Service /
    /// Container Apps identity endpoint).
    ManagedIdentity,
    /// A service principal with a client secret read from a mounted file.
    ClientSecret,
}

impl FromStr for AzureCredentialKind {
    type Err = AzureError;

    /// `workload-identity`, `managed-identity` or `client-secret`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "workload-identity" | "workloadidentity" => Ok(Self::WorkloadIdentity),
            "managed-identity" | "managedidentity" => Ok(Self::ManagedIdentity),
            "client-secret" | "clientsecret" => Ok(Self::ClientSecret),
            _ => Err(AzureError::Config(format!(
                "{FLAG_CREDENTIAL} {s:?} is unknown; use workload-identity, managed-identity or client-secret"
            ))),
        }
    }
}

impl fmt::Display for AzureCredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WorkloadIdentity => "workload-identity",
            Self::ManagedIdentity => "managed-identity",
            Self::ClientSecret => "client-secret",
        })
    }
}

/// How Tidegate reaches Azure: identity, endpoints, trust and request budget.
#[derive(Clone, Debug)]
pub struct AzureConfig {
    /// Which identity to sign in as ([`FLAG_CREDENTIAL`]).
    pub credential: AzureCredentialKind,
    /// Entra tenant id ([`FLAG_TENANT_ID`]); required for client secret and workload identity.
    pub tenant_id: Option<String>,
    /// Client (application) id ([`FLAG_CLIENT_ID`]); required for client secret and workload
    /// identity; for managed identity it selects a user-assigned identity.
    pub client_id: Option<String>,
    /// File holding the client secret (a mounted Kubernetes Secret), read at start and re-read
    /// when it changes ([`FLAG_CLIENT_SECRET_FILE`]).
    pub client_secret_file: Option<PathBuf>,
    /// The projected service-account token (`AZURE_FEDERATED_TOKEN_FILE`,
    /// [`FLAG_FEDERATED_TOKEN_FILE`]).
    pub federated_token_file: Option<PathBuf>,
    /// Entra ID authority ([`FLAG_AUTHORITY_HOST`]), `https://login.microsoftonline.com` by
    /// default.
    pub authority_host: Url,
    /// Azure Resource Manager ([`FLAG_RESOURCE_MANAGER`]), `https://management.azure.com` by
    /// default. The bearer token is sent to this origin only.
    pub resource_manager: Url,
    /// The token scope ([`FLAG_SCOPE`]), `https://management.azure.com/.default` by default.
    pub scope: String,
    /// Extra trusted CA certificates (PEM), for sovereign or private clouds and the local
    /// stand-in; the system roots stay trusted.
    pub ca_file: Option<PathBuf>,
    /// Requests per second each subscription may receive from this process
    /// ([`FLAG_REQUESTS_PER_SECOND`]); burst of one second's worth.
    pub requests_per_second: f64,
    /// Timeout of one HTTP request.
    pub request_timeout: std::time::Duration,
    /// How long to wait for a long-running operation.
    pub operation_timeout: std::time::Duration,
    /// Retries of one request answered with 408/429/5xx or failed in transport.
    pub max_retries: u32,
}

/// The public Entra ID authority.
pub const PUBLIC_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The public Azure Resource Manager.
pub const PUBLIC_RESOURCE_MANAGER: &str = "https://management.azure.com";
/// The token scope for the public Azure Resource Manager.
pub const PUBLIC_SCOPE: &str = "https://management.azure.com/.default";

impl Default for AzureConfig {
    fn default() -> Self {
        Self {
            credential: AzureCredentialKind::default(),
            tenant_id: None,
            client_id: None,
            client_secret_file: None,
            federated_token_file: None,
            authority_host: Url::parse(PUBLIC_AUTHORITY_HOST).unwrap_or_else(|_| unreachable!("a valid URL")),
            resource_manager: Url::parse(PUBLIC_RESOURCE_MANAGER).unwrap_or_else(|_| unreachable!("a valid URL")),
            scope: PUBLIC_SCOPE.to_string(),
            ca_file: None,
            requests_per_second: 10.0,
            request_timeout: std::time::Duration::from_secs(60),
            operation_timeout: std::time::Duration::from_secs(15 * 60),
            max_retries: 6,
        }
    }
}

fn required<'a>(value: &'a Option<String>, flag: &str, kind: AzureCredentialKind) -> Result<&'a str, AzureError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(AzureError::Config(format!("{FLAG_CREDENTIAL}={kind} needs {flag}"))),
    }
}

fn required_file(value: &Option<PathBuf>, flag: &str, kind: AzureCredentialKind) -> Result<PathBuf, AzureError> {
    match value {
        Some(p) if !p.as_os_str().is_empty() => Ok(p.clone()),
        _ => Err(AzureError::Config(format!("{FLAG_CREDENTIAL}={kind} needs {flag}"))),
    }
}

fn check_https(url: &Url, flag: &str) -> Result<(), AzureError> {
    if url.scheme() != "https" || url.host_str().is_none() {
        return Err(AzureError::Config(format!("{flag} must be an https:// URL, not {url}")));
    }
    Ok(())
}

impl AzureConfig {
    /// Checks that everything the chosen credential needs is configured; the error names the
    /// missing or invalid flag.
    pub fn validate(&self) -> Result<(), AzureError> {
        let kind = self.credential;
        match kind {
            AzureCredentialKind::ClientSecret => {
                required(&self.tenant_id, FLAG_TENANT_ID, kind)?;
                required(&self.client_id, FLAG_CLIENT_ID, kind)?;
                required_file(&self.client_secret_file, FLAG_CLIENT_SECRET_FILE, kind)?;
            }
            AzureCredentialKind::WorkloadIdentity => {
                required(&self.tenant_id, FLAG_TENANT_ID, kind)?;
                required(&self.client_id, FLAG_CLIENT_ID, kind)?;
                required_file(&self.federated_token_file, FLAG_FEDERATED_TOKEN_FILE, kind)?;
            }
            AzureCredentialKind::ManagedIdentity => {}
        }
        if let Some(tenant) = &self.tenant_id
            && !tenant.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        {
            return Err(AzureError::Config(format!("{FLAG_TENANT_ID} {tenant:?} is not a tenant id or domain")));
        }
        check_https(&self.authority_host, FLAG_AUTHORITY_HOST)?;
        check_https(&self.resource_manager, FLAG_RESOURCE_MANAGER)?;
        if self.resource_manager.path() != "/" || self.resource_manager.query().is_some() {
            return Err(AzureError::Config(format!(
                "{FLAG_RESOURCE_MANAGER} must be an origin like https://management.azure.com, not {}",
                self.resource_manager
            )));
        }
        if self.scope.is_empty()
            || !self.scope.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'))
        {
            return Err(AzureError::Config(format!("{FLAG_SCOPE} {:?} is not a valid scope", self.scope)));
        }
        if !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0) {
            return Err(AzureError::Config(format!("{FLAG_REQUESTS_PER_SECOND} must be a positive number")));
        }
        Ok(())
    }

    /// Which identity is used, for logs and conditions. Never includes the secret.
    pub fn describe(&self) -> String {
        let or_unset = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_string());
        let file = |v: &Option<PathBuf>| v.as_ref().map_or_else(|| "(unset)".to_string(), |p| p.display().to_string());
        match self.credential {
            AzureCredentialKind::ClientSecret => format!(
                "client secret for client {} in tenant {} (secret file {})",
                or_unset(&self.client_id),
                or_unset(&self.tenant_id),
                file(&self.client_secret_file)
            ),
            AzureCredentialKind::WorkloadIdentity => format!(
                "workload identity for client {} in tenant {} (federated token file {})",
                or_unset(&self.client_id),
                or_unset(&self.tenant_id),
                file(&self.federated_token_file)
            ),
            AzureCredentialKind::ManagedIdentity => {
                let which = match &self.client_id {
                    Some(id) => format!("client id {id}"),
                    None => "system-assigned".to_string(),
                };
                let endpoint =
                    if std::env::var_os("IDENTITY_ENDPOINT").is_some() { "IDENTITY_ENDPOINT" } else { "IMDS" };
                format!("managed identity ({which}, via {endpoint})")
            }
        }
    }

    /// Client options for the credentials: our transport, and the authority host set explicitly
    /// (so `AZURE_AUTHORITY_HOST` is not consulted).
    fn client_options(&self, transport: &Transport) -> ClientOptions {
        let mut cloud = CustomConfiguration::default();
        cloud.authority_host = self.authority_host.as_str().trim_end_matches('/').to_string();
        ClientOptions {
            transport: Some(transport.clone()),
            cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
            ..ClientOptions::default()
        }
    }

    /// Builds the configured credential. Nothing is requested over the network here.
    pub async fn credential(&self, transport: &Transport) -> Result<Arc<dyn TokenCredential>, AzureError> {
        self.validate()?;
        let describe = self.describe();
        let fail =
            |e: azure_core::Error| AzureError::Credential { credential: describe.clone(), message: e.to_string() };
        let options = self.client_options(transport);
        let kind = self.credential;
        let credential: Arc<dyn TokenCredential> = match kind {
            AzureCredentialKind::ClientSecret => {
                let path = required_file(&self.client_secret_file, FLAG_CLIENT_SECRET_FILE, kind)?;
                Arc::new(
                    SecretFileCredential::new(
                        required(&self.tenant_id, FLAG_TENANT_ID, kind)?.to_string(),
                        required(&self.client_id, FLAG_CLIENT_ID, kind)?.to_string(),
                        path,
                        options,
                    )
                    .await?,
                )
            }
            AzureCredentialKind::WorkloadIdentity => {
                let path = required_file(&self.federated_token_file, FLAG_FEDERATED_TOKEN_FILE, kind)?;
                let options = WorkloadIdentityCredentialOptions {
                    credential_options: azure_identity::ClientAssertionCredentialOptions { client_options: options },
                    client_id: Some(required(&self.client_id, FLAG_CLIENT_ID, kind)?.to_string()),
                    tenant_id: Some(required(&self.tenant_id, FLAG_TENANT_ID, kind)?.to_string()),
                    token_file_path: Some(path),
                };
                WorkloadIdentityCredential::new(Some(options)).map_err(fail)?
            }
            AzureCredentialKind::ManagedIdentity => {
                let options = ManagedIdentityCredentialOptions {
                    user_assigned_id: self.client_id.clone().map(UserAssignedId::ClientId),
                    client_options: options,
                };
                ManagedIdentityCredential::new(Some(options)).map_err(fail)?
            }
        };
        info!(credential = %describe, "Azure credential configured");
        Ok(credential)
    }
}

/// A client secret credential whose secret lives in a file that may be rotated: the file is read
/// again whenever a token is needed, and a changed secret gets a fresh credential (and token).
struct SecretFileCredential {
    tenant_id: String,
    client_id: String,
    path: PathBuf,
    options: ClientOptions,
    current: Mutex<(String, Arc<ClientSecretCredential>)>,
}

impl fmt::Debug for SecretFileCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFileCredential")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SecretFileCredential {
    async fn new(
        tenant_id: String,
        client_id: String,
        path: PathBuf,
        options: ClientOptions,
    ) -> Result<Self, AzureError> {
        let secret = read_secret(&path).await?;
        let credential = build_secret_credential(&tenant_id, &client_id, &secret, &options)?;
        Ok(Self { tenant_id, client_id, path, options, current: Mutex::new((secret, credential)) })
    }

    /// The credential for the secret in the file now (the last good one if the file cannot be
    /// read).
    async fn fresh(&self) -> Arc<ClientSecretCredential> {
        let mut current = self.current.lock().await;
        match read_secret(&self.path).await {
            Ok(secret) if secret != current.0 => {
                match build_secret_credential(&self.tenant_id, &self.client_id, &secret, &self.options) {
                    Ok(credential) => {
                        info!(file = %self.path.display(), "Azure client secret changed; using the new one");
                        *current = (secret, credential);
                    }
                    Err(e) => warn!(error = %e, "cannot use the new Azure client secret; keeping the previous one"),
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot re-read the Azure client secret; keeping the previous one"),
        }
        current.1.clone()
    }
}

async fn read_secret(path: &std::path::Path) -> Result<String, AzureError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| AzureError::Config(format!("cannot read {FLAG_CLIENT_SECRET_FILE} {}: {e}", path.display())))?;
    let secret = text.trim().to_string();
    if secret.is_empty() {
        return Err(AzureError::Config(format!("{FLAG_CLIENT_SECRET_FILE} {} is empty", path.display())));
    }
    Ok(secret)
}

fn build_secret_credential(
    tenant_id: &str,
    client_id: &str,
    secret: &str,
    options: &ClientOptions,
) -> Result<Arc<ClientSecretCredential>, AzureError> {
    let options = azure_identity::ClientSecretCredentialOptions { client_options: options.clone() };
    ClientSecretCredential::new(tenant_id, client_id.to_string(), Secret::new(secret.to_string()), Some(options))
        .map_err(|e| AzureError::Config(format!("client secret credential: {e}")))
}

#[async_trait::async_trait]
impl TokenCredential for SecretFileCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.fresh().await.get_token(scopes, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: AzureCredentialKind) -> AzureConfig {
        AzureConfig {
            credential: kind,
            tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            client_id: Some("0c5c9b3a-1111-2222-3333-444455556666".into()),
            client_secret_file: Some("/var/run/secrets/azure/client-secret".into()),
            federated_token_file: Some("/var/run/secrets/azure/tokens/azure-identity-token".into()),
            ..AzureConfig::default()
        }
    }

    fn error(config: &AzureConfig) -> String {
        config.validate().unwrap_err().to_string()
    }

    #[test]
    fn each_kind_names_the_missing_flag() {
        let c = AzureConfig { client_secret_file: None, ..config(AzureCredentialKind::ClientSecret) };
        assert!(
            error(&c).contains("--azure-credential=client-secret needs --azure-client-secret-file"),
            "{}",
            error(&c)
        );
        let c = AzureConfig { tenant_id: Some(" ".into()), ..config(AzureCredentialKind::ClientSecret) };
        assert!(error(&c).contains("needs --azure-tenant-id"));
        let c = AzureConfig { client_id: None, ..config(AzureCredentialKind::WorkloadIdentity) };
        assert!(error(&c).contains("--azure-credential=workload-identity needs --azure-client-id"));
        let c = AzureConfig { federated_token_file: None, ..config(AzureCredentialKind::WorkloadIdentity) };
        assert!(error(&c).contains("needs --azure-federated-token-file"));
        let c = AzureConfig { credential: AzureCredentialKind::ManagedIdentity, ..AzureConfig::default() };
        c.validate().unwrap();
        config(AzureCredentialKind::ClientSecret).validate().unwrap();
        config(AzureCredentialKind::WorkloadIdentity).validate().unwrap();
    }

    #[test]
    fn endpoints_must_be_https_and_the_budget_positive() {
        let mut c = config(AzureCredentialKind::ClientSecret);
        c.authority_host = Url::parse("http://login.example").unwrap();
        assert!(error(&c).contains("--azure-authority-host must be an https:// URL"));
        let mut c = config(AzureCredentialKind::ClientSecret);
        c.resource_manager = Url::parse("https://management.example/api").unwrap();
        assert!(error(&c).contains("--azure-resource-manager must be an origin"));
        let c = AzureConfig { requests_per_second: 0.0, ..config(AzureCredentialKind::ClientSecret) };
        assert!(error(&c).contains("--azure-requests-per-second"));
        let c = AzureConfig { scope: "bad scope".into(), ..config(AzureCredentialKind::ClientSecret) };
        assert!(error(&c).contains("--azure-scope"));
        let c = AzureConfig { tenant_id: Some("t/../x".into()), ..config(AzureCredentialKind::ClientSecret) };
        assert!(error(&c).contains("--azure-tenant-id"));
    }

    #[test]
    fn describe_says_which_identity_without_secrets() {
        let c = config(AzureCredentialKind::ClientSecret);
        assert_eq!(
            c.describe(),
            "client secret for client 0c5c9b3a-1111-2222-3333-444455556666 in tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 \
             (secret file /var/run/secrets/azure/client-secret)"
        );
        let c = config(AzureCredentialKind::WorkloadIdentity);
        assert!(c.describe().starts_with("workload identity for client 0c5c9b3a"));
        assert!(c.describe().contains("federated token file /var/run/secrets/azure/tokens/azure-identity-token"));
        let c = config(AzureCredentialKind::ManagedIdentity);
        assert!(c.describe().starts_with("managed identity (client id 0c5c9b3a-1111-2222-3333-444455556666"));
        let c = AzureConfig { credential: AzureCredentialKind::ManagedIdentity, ..AzureConfig::default() };
        assert!(c.describe().starts_with("managed identity (system-assigned"));
    }

    #[test]
    fn kinds_parse_from_flag_values() {
        assert_eq!("client-secret".parse::<AzureCredentialKind>().unwrap(), AzureCredentialKind::ClientSecret);
        assert_eq!("Managed_Identity".parse::<AzureCredentialKind>().unwrap(), AzureCredentialKind::ManagedIdentity);
        assert_eq!("workload-identity".parse::<AzureCredentialKind>().unwrap(), AzureCredentialKind::WorkloadIdentity);
        assert!("default".parse::<AzureCredentialKind>().unwrap_err().to_string().contains("--azure-credential"));
    }

    #[tokio::test]
    async fn credentials_build_without_network() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "s3cr3t\n").unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "eyJ.fake.jwt").unwrap();
        let transport = super::super::transport::ReqwestTransport::new(None, std::time::Duration::from_secs(1))
            .unwrap()
            .transport();
        let mut c = config(AzureCredentialKind::ClientSecret);
        c.client_secret_file = Some(secret.clone());
        c.credential(&transport).await.unwrap();
        let mut c = config(AzureCredentialKind::WorkloadIdentity);
        c.federated_token_file = Some(token);
        c.credential(&transport).await.unwrap();
        // Managed identity picks its endpoint at construction; nothing is contacted until a token
        // is requested, which this test never does.
        config(AzureCredentialKind::ManagedIdentity).credential(&transport).await.unwrap();

        std::fs::write(&secret, "").unwrap();
        let mut c = config(AzureCredentialKind::ClientSecret);
        c.client_secret_file = Some(secret);
        assert!(c.credential(&transport).await.unwrap_err().to_string().contains("is empty"));
    }
}
