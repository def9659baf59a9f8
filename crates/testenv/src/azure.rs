//! A local stand-in of Azure Resource Manager for Azure Container Apps, for the Azure adapters'
//! tests: `azure-standin` (Go source in `crates/testenv/go/azure`, see `docs/azure-standin.md`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), tidegate_testenv::Error> {
//! use tidegate_testenv::azure::{AzureStandIn, Health};
//! let azure = AzureStandIn::start().await?;
//! azure.add_client_secret("my-client", "my-secret").await?;
//! let app = format!(
//!     "/subscriptions/{}/resourceGroups/rg/providers/Microsoft.App/containerApps/web",
//!     azure.subscription_id()
//! );
//! azure.seed_container_app(&app, &serde_json::json!({"location": "East US", "properties": {
//!     "managedEnvironmentId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/env",
//!     "configuration": {"ingress": {"external": true, "targetPort": 8080}},
//!     "template": {"containers": [{"name": "web", "image": "registry.test/web@sha256:abc"}]}}})).await?;
//! // ... point the code under test at azure.arm_url() and azure.authority_host() ...
//! azure.set_revision_health(&app, "web--v2", Health::Unhealthy).await?;
//! # Ok(()) }
//! ```
//!
//! The stand-in listens on `127.0.0.1` with free ports over HTTPS, with a serving certificate
//! from a fresh test CA ([`crate::pki::Authority`]) that covers `127.0.0.1`, `localhost` and
//! `*.<domain>` (the ingress FQDNs). Clients must trust [`AzureStandIn::ca_pem`]. One listener
//! serves ARM (`/subscriptions/...`), the Entra ID token endpoints (`/{tenant}/oauth2/v2.0/token`
//! and discovery), the App Service managed identity endpoint (`/msi/token`) and the test-only
//! control API (`/_standin/...`); the other serves the apps' ingress, routed by `Host`.
//!
//! The process is stopped when the [`AzureStandIn`] is dropped, and killed by the kernel when
//! the thread that started it exits ([`Process`]). The binaries are built on first use (about a
//! minute, then cached) or by `cargo xtask tools` ([`crate::tools::build_azure_tools`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose, SanType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;
use crate::pki::{Authority, write_file};

mod acr;
use crate::process::{Process, tail};
use crate::tools::{AzureTools, build_azure_tools};
pub use acr::{AcrImage, AcrRunOutcome};

/// The environment's default domain unless [`AzureStandInOptions::domain`] says otherwise.
pub const DEFAULT_DOMAIN: &str = "standin.azurecontainerapps.test";
/// The tenant tokens are issued for.
pub const TENANT_ID: &str = "72f988bf-0000-4000-8000-000000000001";
/// The subscription the helpers and tests use. The stand-in accepts any subscription ID.
pub const SUBSCRIPTION_ID: &str = "00000000-0000-4000-8000-00000000c0de";
/// The API versions the stand-in accepts: the one `armappcontainers/v3` v3.1.0 sends, and the
/// one of the official REST examples.
pub const API_VERSIONS: [&str; 2] = ["2025-01-01", "2025-07-01"];
/// ARM's audience in the public cloud: scope `https://management.azure.com/.default`. The
/// stand-in's own [`AzureStandIn::arm_url`] is accepted as an audience too.
pub const ARM_AUDIENCE: &str = "https://management.azure.com";

/// The Key Vault DNS suffix the stand-in's vaults live under (`{vault}.vault.azure.net`).
pub const KEY_VAULT_DOMAIN: &str = "vault.azure.net";
/// Key Vault's token audience: scope `https://vault.azure.net/.default`.
pub const KEY_VAULT_AUDIENCE: &str = "https://vault.azure.net";

/// How long startup may take.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How the stand-in is started.
#[derive(Clone, Debug)]
pub struct AzureStandInOptions {
    /// The managed environment's default domain: apps answer at `{app}.{domain}`.
    pub domain: String,
    /// How long a long-running operation stays `InProgress`.
    pub lro_delay: Duration,
    /// How long a new revision stays `Provisioning`.
    pub provisioning_delay: Duration,
    /// How long a job execution stays `Running`.
    pub execution_delay: Duration,
    /// Items per page of revision and job execution lists.
    pub page_size: usize,
}

impl Default for AzureStandInOptions {
    fn default() -> Self {
        Self {
            domain: DEFAULT_DOMAIN.to_string(),
            lro_delay: Duration::from_secs(1),
            provisioning_delay: Duration::from_secs(1),
            execution_delay: Duration::from_secs(1),
            page_size: 2,
        }
    }
}

/// A revision's simulated health, set through the control API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Replicas ready; the revision serves traffic.
    Healthy,
    /// Replicas not ready: `healthState: Unhealthy`, `runningState: Degraded` (or a failed
    /// provisioning if it was still provisioning); the ingress answers `503`.
    Unhealthy,
    /// Like [`Health::Unhealthy`], and the containers' `restartCount` grows by one a second.
    Crashing,
}

impl Health {
    fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
            Self::Crashing => "crashing",
        }
    }
}

/// One ARM or token request the stand-in received (the control API is not logged).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// URL path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Status the stand-in answered.
    pub status: u16,
    /// Request body as sent.
    pub body: String,
    /// When it arrived (RFC 3339).
    pub time: String,
}

impl LoggedRequest {
    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// A revision to seed with [`AzureStandIn::seed_container_app_with_revisions`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeedRevision {
    /// Full revision name, e.g. `web--v1`.
    pub name: String,
    /// Whether it is active (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Replica names (default: generated from `scale.minReplicas`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
    /// Its health (default: from the health rules, else healthy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Its template, when it differs from the app's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
}

/// A job execution to seed with [`AzureStandIn::seed_job`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeedExecution {
    /// Execution name.
    pub name: String,
    /// `Running`, `Succeeded`, `Failed`, ... (default `Succeeded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A running stand-in. Dropping it stops the process and removes its directory.
pub struct AzureStandIn {
    // Field order is drop order: the process stops before its directory goes away.
    process: Process,
    tools: AzureTools,
    arm: SocketAddr,
    ingress: SocketAddr,
    /// The Key Vault listener and the CONNECT proxy in front of it.
    vault: SocketAddr,
    vault_proxy: SocketAddr,
    domain: String,
    tenant: String,
    token_key: String,
    ca_pem: String,
    ca_file: PathBuf,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for AzureStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStandIn")
            .field("arm", &self.arm)
            .field("ingress", &self.ingress)
            .field("domain", &self.domain)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl AzureStandIn {
    /// Starts a stand-in with [`AzureStandInOptions::default`] (building it first if needed)
    /// and waits until it listens.
    pub async fn start() -> Result<Self, Error> {
        Self::start_with(AzureStandInOptions::default()).await
    }

    /// Starts a stand-in with `options`.
    pub async fn start_with(options: AzureStandInOptions) -> Result<Self, Error> {
        let tools = tokio::task::spawn_blocking(|| build_azure_tools(&mut |line| tracing::info!("{line}")))
            .await
            .map_err(|e| Error::Tool(format!("building azure-standin: {e}")))??;
        let dir = tempfile::Builder::new()
            .prefix("tidegate-azure-")
            .tempdir()
            .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
        let (ca_pem, cert_pem, key_pem) = certificates(dir.path(), &options.domain)?;
        let ca_file = dir.path().join("ca.crt");
        let cert_file = dir.path().join("tls.crt");
        let key_file = dir.path().join("tls.key");
        write_file(&ca_file, &ca_pem)?;
        write_file(&cert_file, &cert_pem)?;
        write_file(&key_file, &key_pem)?;
        let ready = dir.path().join("ready.json");
        let token_key = random_hex(32);
        let args = vec![
            "--listen=127.0.0.1:0".to_string(),
            "--ingress-listen=127.0.0.1:0".to_string(),
            format!("--cert={}", cert_file.display()),
            format!("--key={}", key_file.display()),
            format!("--ready-file={}", ready.display()),
            format!("--domain={}", options.domain),
            format!("--tenant={TENANT_ID}"),
            format!("--lro-delay={}ms", options.lro_delay.as_millis()),
            format!("--provisioning-delay={}ms", options.provisioning_delay.as_millis()),
            format!("--execution-delay={}ms", options.execution_delay.as_millis()),
            format!("--page-size={}", options.page_size.max(1)),
            format!("--token-key={token_key}"),
        ];
        let mut process = Process::spawn("azure-standin", &tools.standin(), &args, dir.path())?;
        let deadline = Instant::now() + START_TIMEOUT;
        let line = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break text;
            }
            process.check_running()?;
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "azure-standin to listen; last lines of {}:\n{}",
                    process.log().display(),
                    tail(process.log(), 20)
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        let ready: Value = serde_json::from_str(line.trim()).map_err(|e| start_error(format!("ready file: {e}")))?;
        let addr = |key: &str| -> Result<SocketAddr, Error> {
            ready[key].as_str().and_then(|a| a.parse().ok()).ok_or_else(|| start_error(format!("ready file: {line}")))
        };
        let (arm, ingress) = (addr("arm")?, addr("ingress")?);
        let (vault, vault_proxy) = (addr("vault")?, addr("vaultProxy")?);
        let http = https_client(&ca_pem, &[])?;
        Ok(Self {
            process,
            tools,
            arm,
            ingress,
            vault,
            vault_proxy,
            domain: options.domain,
            tenant: TENANT_ID.to_string(),
            token_key,
            ca_pem,
            ca_file,
            http,
            dir,
        })
    }

    /// The HMAC-SHA256 key of the access tokens the stand-in issues (HS256 JWTs), for other
    /// loopback test servers that must accept them, such as an ACR front
    /// ([`crate::registry::AcrTrust`]).
    pub fn token_key(&self) -> &str {
        &self.token_key
    }

    /// `https://127.0.0.1:PORT`: ARM's endpoint (`/subscriptions/...`).
    pub fn arm_url(&self) -> String {
        format!("https://{}", self.arm)
    }

    /// The Entra ID authority host (the same server): tokens come from
    /// `{authority_host}/{tenant}/oauth2/v2.0/token`.
    pub fn authority_host(&self) -> String {
        self.arm_url()
    }

    /// `{authority_host}/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.authority_host(), self.tenant)
    }

    /// The App Service style managed identity endpoint, the value for `IDENTITY_ENDPOINT`
    /// (with `IDENTITY_HEADER` set to the header of [`AzureStandIn::set_managed_identity`]).
    pub fn managed_identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.arm_url())
    }

    /// `https://{vault}.vault.azure.net`: a vault's URL. It is reached through
    /// [`AzureStandIn::key_vault_proxy`] (`HTTPS_PROXY`), which tunnels it to the stand-in's Key
    /// Vault listener; the stand-in's serving certificate covers `*.vault.azure.net`.
    pub fn key_vault_url(&self, vault: &str) -> String {
        format!("https://{vault}.{KEY_VAULT_DOMAIN}")
    }

    /// `http://127.0.0.1:PORT`: the CONNECT proxy that tunnels `{vault}.vault.azure.net:443` to
    /// the Key Vault listener and refuses every other destination.
    pub fn key_vault_proxy(&self) -> String {
        format!("http://{}", self.vault_proxy)
    }

    /// Address of the Key Vault listener itself (it routes by `Host`).
    pub fn key_vault_addr(&self) -> SocketAddr {
        self.vault
    }

    /// Address of the ingress listener; connect here with the app's FQDN as TLS server name and
    /// `Host` (see [`AzureStandIn::ingress_get`]).
    pub fn ingress_addr(&self) -> SocketAddr {
        self.ingress
    }

    /// The environment's default domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The CA certificate (PEM) that signed the stand-in's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Path of [`AzureStandIn::ca_pem`] on disk.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The tenant ID ([`TENANT_ID`]).
    pub fn tenant_id(&self) -> &str {
        &self.tenant
    }

    /// The subscription ID to use ([`SUBSCRIPTION_ID`]; any other is accepted too).
    pub fn subscription_id(&self) -> &str {
        SUBSCRIPTION_ID
    }

    /// The stand-in's log file.
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// The binaries (the stand-in and its fidelity test).
    pub fn tools(&self) -> &AzureTools {
        &self.tools
    }

    /// An HTTPS client that trusts only the stand-in's CA, with no proxy.
    pub fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// `https://{arm}{path}` joined with `?api-version=2025-01-01` unless `path` has a query.
    pub fn arm(&self, path: &str) -> String {
        if path.contains('?') {
            format!("{}{path}", self.arm_url())
        } else {
            format!("{}{path}?api-version={}", self.arm_url(), API_VERSIONS[0])
        }
    }

    /// The command that runs the fidelity test (Microsoft's Go SDK clients and the official REST
    /// examples in `examples`) against this stand-in.
    pub fn fidelity_command(&self, examples: &Path) -> std::process::Command {
        let mut command = std::process::Command::new(self.tools.fidelity());
        command
            .env("AZURE_STANDIN_ARM_URL", self.arm_url())
            .env("AZURE_STANDIN_TENANT", &self.tenant)
            .env("AZURE_STANDIN_CA_FILE", &self.ca_file)
            .env("AZURE_STANDIN_INGRESS", self.ingress.to_string())
            .env("AZURE_STANDIN_DOMAIN", &self.domain)
            .env("AZURE_STANDIN_VAULT_PROXY", self.key_vault_proxy())
            .env("AZURE_STANDIN_EXAMPLES", examples)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy");
        command
    }

    /// Fetches a token with the client-credentials grant (scope `{ARM_AUDIENCE}/.default`).
    pub async fn token(&self, client_id: &str, secret: &str) -> Result<String, Error> {
        let body = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
            form_encode(client_id),
            form_encode(secret),
            form_encode(&format!("{ARM_AUDIENCE}/.default"))
        );
        let url = self.token_url();
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| http_error(&url, e))?;
        let value = json_response(&url, response).await?;
        value["access_token"].as_str().map(str::to_string).ok_or_else(|| http_error(&url, "no access_token"))
    }

    /// Stores a container app as provisioned (`provisioningState: Succeeded`) with one revision
    /// made from its template (`{name}--{revisionSuffix}`, or a random suffix), active and
    /// healthy. `app` is the ARM JSON (`location`, `properties`...), checked against the SDK model
    /// like a PUT. Returns the app as GET shows it.
    pub async fn seed_container_app(&self, resource_id: &str, app: &Value) -> Result<Value, Error> {
        self.seed_container_app_with_revisions(resource_id, app, &[]).await
    }

    /// Like [`AzureStandIn::seed_container_app`] with these revisions (oldest first; the last is
    /// the latest) instead of one from the template.
    pub async fn seed_container_app_with_revisions(
        &self,
        resource_id: &str,
        app: &Value,
        revisions: &[SeedRevision],
    ) -> Result<Value, Error> {
        self.control("POST", "apps", &json!({"id": resource_id, "app": app, "revisions": revisions})).await
    }

    /// Stores a job as provisioned, with these past executions.
    pub async fn seed_job(&self, resource_id: &str, job: &Value, executions: &[SeedExecution]) -> Result<Value, Error> {
        self.control("POST", "jobs", &json!({"id": resource_id, "job": job, "executions": executions})).await
    }

    /// Registers an application (client ID) with a client secret.
    pub async fn add_client_secret(&self, client_id: &str, secret: &str) -> Result<(), Error> {
        self.control("POST", "clients", &json!({"clientId": client_id, "secret": secret})).await.map(drop)
    }

    /// Adds a federated identity credential to an application: a client assertion whose `iss`,
    /// `sub` and `aud` match is accepted (workload identity). `audience` is usually
    /// `api://AzureADTokenExchange`. The assertion's signature is not checked.
    pub async fn add_federated_identity(
        &self,
        client_id: &str,
        issuer: &str,
        subject: &str,
        audience: &str,
    ) -> Result<(), Error> {
        let federated = json!([{"issuer": issuer, "subject": subject, "audience": audience}]);
        self.control("POST", "clients", &json!({"clientId": client_id, "federated": federated})).await.map(drop)
    }

    /// Enables the managed identity endpoint ([`AzureStandIn::managed_identity_endpoint`]):
    /// requests must carry `X-IDENTITY-HEADER: header`; tokens are issued for `client_id`.
    pub async fn set_managed_identity(&self, header: &str, client_id: &str) -> Result<(), Error> {
        self.control("POST", "managed-identity", &json!({"header": header, "clientId": client_id})).await.map(drop)
    }

    /// Sets the health of revision `revision` of the app `app_resource_id` (also of a revision
    /// created later under that name).
    pub async fn set_revision_health(
        &self,
        app_resource_id: &str,
        revision: &str,
        health: Health,
    ) -> Result<(), Error> {
        let body = json!({"appId": app_resource_id, "revision": revision, "health": health.as_str()});
        self.control("POST", "health", &body).await.map(drop)
    }

    /// Sets the health of every revision, existing or future, with a container whose image
    /// contains `image` (e.g. a digest).
    pub async fn set_image_health(&self, image: &str, health: Health) -> Result<(), Error> {
        self.control("POST", "health", &json!({"image": image, "health": health.as_str()})).await.map(drop)
    }

    /// Makes the next execution of job `job_id` end `Failed`.
    pub async fn fail_next_execution(&self, job_id: &str) -> Result<(), Error> {
        self.control("POST", "fail-next-execution", &json!({"jobId": job_id})).await.map(drop)
    }

    /// Answers the next `count` requests whose method is `method` (empty: any) and whose path
    /// starts with `path_prefix` with `429 TooManyRequests` and `Retry-After: retry_after_secs`.
    pub async fn throttle(
        &self,
        method: &str,
        path_prefix: &str,
        count: u32,
        retry_after_secs: u32,
    ) -> Result<(), Error> {
        let body =
            json!({"method": method, "pathPrefix": path_prefix, "count": count, "retryAfterSeconds": retry_after_secs});
        self.control("POST", "throttle", &body).await.map(drop)
    }

    /// Sets how long long-running operations and revision provisioning take from now on.
    pub async fn set_delays(&self, lro: Duration, provisioning: Duration) -> Result<(), Error> {
        let body = json!({"lroMillis": lro.as_millis() as u64, "provisioningMillis": provisioning.as_millis() as u64});
        self.control("POST", "delays", &body).await.map(drop)
    }

    /// Sets how long job executions run from now on.
    pub async fn set_execution_delay(&self, execution: Duration) -> Result<(), Error> {
        self.control("POST", "delays", &json!({"executionMillis": execution.as_millis() as u64})).await.map(drop)
    }

    /// Sets the page size of list operations.
    pub async fn set_page_size(&self, page_size: usize) -> Result<(), Error> {
        self.control("POST", "delays", &json!({"pageSize": page_size.max(1)})).await.map(drop)
    }

    /// Creates a new version of key `name` in `vault` (real keys): `kty` `EC` with `curve`
    /// `P-256`/`P-384`/`P-521`, or `RSA` with `size` 2048/3072/4096. `version` fixes the version
    /// (random when `None`). Returns the key as Key Vault's GET shows it.
    pub async fn create_key_vault_key(
        &self,
        vault: &str,
        name: &str,
        kty: &str,
        curve: Option<&str>,
        size: Option<u32>,
        version: Option<&str>,
    ) -> Result<Value, Error> {
        let mut body = json!({"vault": vault, "name": name, "kty": kty});
        if let Some(curve) = curve {
            body["curve"] = json!(curve);
        }
        if let Some(size) = size {
            body["size"] = json!(size);
        }
        if let Some(version) = version {
            body["version"] = json!(version);
        }
        self.control("POST", "keyvault/keys", &body).await
    }

    /// Enables or disables key `name` (its latest version, or `version`) in `vault`.
    pub async fn set_key_vault_key_enabled(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        enabled: bool,
    ) -> Result<(), Error> {
        let body = json!({"vault": vault, "name": name, "version": version.unwrap_or_default(), "enabled": enabled});
        self.control("POST", "keyvault/enabled", &body).await.map(drop)
    }

    /// Issues certificate `name` in `vault` for the latest version of key `key`: an X.509
    /// code-signing certificate (subject `CN={subject}, O=Tidegate Test`) signed by the
    /// stand-in's Key Vault test CA ([`AzureStandIn::key_vault_ca_pem`]). Returns Key Vault's
    /// view of it (`id`, `kid`, `cer`, …) plus `pem` and `caPem`.
    pub async fn issue_key_vault_certificate(
        &self,
        vault: &str,
        name: &str,
        key: &str,
        subject: &str,
    ) -> Result<Value, Error> {
        let body = json!({"vault": vault, "name": name, "key": key, "subject": subject});
        self.control("POST", "keyvault/certificates", &body).await
    }

    /// The PEM of the test CA that issues the stand-in's Key Vault certificates (a root).
    pub async fn key_vault_ca_pem(&self) -> Result<String, Error> {
        let value = self.control("GET", "keyvault/ca", &Value::Null).await?;
        value["pem"].as_str().map(str::to_string).ok_or_else(|| http_error("/_standin/keyvault/ca", "no pem"))
    }

    /// Every ARM and token request so far, oldest first.
    pub async fn requests(&self) -> Result<Vec<LoggedRequest>, Error> {
        let value = self.control("GET", "requests", &Value::Null).await?;
        serde_json::from_value(value).map_err(|e| http_error("/_standin/requests", e))
    }

    /// Forgets the requests logged so far.
    pub async fn clear_requests(&self) -> Result<(), Error> {
        self.control("DELETE", "requests", &Value::Null).await.map(drop)
    }

    /// Adds rows to a Resource Graph table (`securityresources` for Defender's sub-assessments).
    /// Each row needs `id`, `type`, `subscriptionId` and a `properties` object, in the shape
    /// Resource Graph returns them; queries evaluate over them (see `docs/azure-standin.md`).
    pub async fn seed_graph_rows(&self, table: &str, rows: &[Value]) -> Result<(), Error> {
        self.control("POST", "resourcegraph/rows", &json!({"table": table, "rows": rows})).await.map(drop)
    }

    /// Forgets every Resource Graph row.
    pub async fn clear_graph_rows(&self) -> Result<(), Error> {
        self.control("DELETE", "resourcegraph/rows", &Value::Null).await.map(drop)
    }

    /// Caps the rows of one Resource Graph page (whatever `$top` asks), to make queries page.
    pub async fn set_graph_page_size(&self, rows: usize) -> Result<(), Error> {
        self.control("POST", "resourcegraph/settings", &json!({"maxPageSize": rows.clamp(1, 1000)})).await.map(drop)
    }

    /// `GET https://{host}{path}` on the ingress listener (TLS server name and `Host` = `host`,
    /// e.g. `web---staging.{domain}`). Returns the status and the JSON body (the stand-in answers
    /// `{"app", "revision", "image", ...}` when a revision serves, an error object otherwise).
    pub async fn ingress_get(&self, host: &str, path: &str) -> Result<(u16, Value), Error> {
        let client = https_client(&self.ca_pem, &[(host, self.ingress)])?;
        let url = format!("https://{host}:{}{path}", self.ingress.port());
        let response = client.get(&url).send().await.map_err(|e| http_error(&url, e))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| http_error(&url, e))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    async fn control(&self, method: &str, path: &str, body: &Value) -> Result<Value, Error> {
        let url = format!("{}/_standin/{path}", self.arm_url());
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| http_error(&url, e))?;
        let mut request = self.http.request(method, &url);
        if !body.is_null() {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.map_err(|e| http_error(&url, e))?;
        json_response(&url, response).await
    }
}

async fn json_response(url: &str, response: reqwest::Response) -> Result<Value, Error> {
    let status = response.status();
    let text = response.text().await.map_err(|e| http_error(url, e))?;
    if !status.is_success() {
        return Err(http_error(url, format!("{status}: {text}")));
    }
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| http_error(url, format!("{e}: {text}")))
}

/// An HTTPS client trusting only `ca_pem`, resolving `hosts` to the given addresses.
fn https_client(ca_pem: &str, hosts: &[(&str, SocketAddr)]) -> Result<reqwest::Client, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).map_err(|e| Error::Pki(e.to_string()))?;
    let mut builder = reqwest::Client::builder().tls_certs_only([ca]).no_proxy().timeout(Duration::from_secs(30));
    for (host, addr) in hosts {
        builder = builder.resolve(host, *addr);
    }
    builder.build().map_err(|e| start_error(format!("HTTPS client: {e}")))
}

/// A fresh CA from [`Authority`] and a serving certificate it signs for `127.0.0.1`, `::1`,
/// `localhost`, `domain` and `*.{domain}`.
fn certificates(dir: &Path, domain: &str) -> Result<(String, String, String), Error> {
    let authority = Authority::generate()?;
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).map_err(|e| Error::io(&ca_dir, e))?;
    authority.write(&ca_dir)?;
    let ca_key_path = ca_dir.join("ca.key");
    let ca_key = std::fs::read_to_string(&ca_key_path).map_err(|e| Error::io(&ca_key_path, e))?;
    let pki = |e: rcgen::Error| Error::Pki(e.to_string());
    let issuer =
        Issuer::from_ca_cert_pem(authority.cert_pem(), KeyPair::from_pem(&ca_key).map_err(pki)?).map_err(pki)?;
    let names =
        vec!["localhost".to_string(), domain.to_string(), format!("*.{domain}"), format!("*.{KEY_VAULT_DOMAIN}")];
    let mut params = CertificateParams::new(names).map_err(pki)?;
    params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    params.distinguished_name.push(DnType::CommonName, "azure-standin");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let key = KeyPair::generate().map_err(pki)?;
    let cert = params.signed_by(&key, &issuer).map_err(pki)?;
    Ok((authority.cert_pem().to_string(), cert.pem(), key.serialize_pem()))
}

fn start_error(message: String) -> Error {
    Error::Start { component: "azure-standin".into(), message }
}

/// A failed request to the stand-in, as an I/O error on its URL (the crate's error type has no
/// Azure variant).
fn http_error(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Io { path: PathBuf::from(url), source: std::io::Error::other(e.to_string()) }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(byte as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// `n` random bytes, hex.
fn random_hex(n: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = vec![0u8; n];
    // The system's randomness does not fail on Linux; zeros would still be a valid (test) key.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_encoded() {
        assert_eq!(
            form_encode("https://management.azure.com/.default"),
            "https%3A%2F%2Fmanagement.azure.com%2F.default"
        );
        assert_eq!(form_encode("a b+c"), "a+b%2Bc");
    }

    #[test]
    fn the_serving_certificate_covers_the_ingress_domain() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = certificates(dir.path(), DEFAULT_DOMAIN).unwrap();
        assert!(ca.contains("BEGIN CERTIFICATE") && cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
        // DNS names are IA5 strings: the wildcard appears verbatim in the DER.
        use base64::Engine as _;
        let b64: String = cert.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let wildcard = format!("*.{DEFAULT_DOMAIN}");
        assert!(der.windows(wildcard.len()).any(|w| w == wildcard.as_bytes()));
    }
}
