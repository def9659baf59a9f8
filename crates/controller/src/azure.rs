//! The controller's Azure settings: which credential, which endpoints, and which Azure scopes
//! each namespace's policies may change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tidegate_providers::azure::arm::Arm;
use tidegate_providers::azure::container_apps::ContainerApps;
use tidegate_providers::azure::identity::{AzureConfig, PUBLIC_AUTHORITY_HOST, PUBLIC_RESOURCE_MANAGER, PUBLIC_SCOPE};
use tidegate_providers::azure::registry_identity::RegistryIdentity;
use tidegate_providers::azure_targets::{AzureScopes, AzureTargets};
use tidegate_providers::registry::acr::{DEFAULT_SCOPE, EntraTokenSource};
use tidegate_providers::staging_tests::HttpCheckOptions;

/// Azure Container Apps targets. Off unless `--azure-credential` is given.
#[derive(Clone, Debug, clap::Args)]
pub struct AzureArgs {
    /// How the controller signs in to Azure: `workload-identity` (a federated service-account
    /// token, as on AKS), `managed-identity` or `client-secret` (read from a mounted file). Without
    /// it, policies with Azure targets fail with a condition saying so.
    #[arg(long, env = "TIDEGATE_AZURE_CREDENTIAL")]
    pub azure_credential: Option<String>,
    /// Entra tenant id (client secret and workload identity).
    #[arg(long, env = "AZURE_TENANT_ID")]
    pub azure_tenant_id: Option<String>,
    /// Client (application) id; for managed identity, selects a user-assigned identity.
    #[arg(long, env = "AZURE_CLIENT_ID")]
    pub azure_client_id: Option<String>,
    /// File holding the client secret (mount a Secret; never put it in a policy).
    #[arg(long, env = "TIDEGATE_AZURE_CLIENT_SECRET_FILE")]
    pub azure_client_secret_file: Option<PathBuf>,
    /// The projected service-account token for workload identity.
    #[arg(long, env = "AZURE_FEDERATED_TOKEN_FILE")]
    pub azure_federated_token_file: Option<PathBuf>,
    /// Entra ID authority host (sovereign clouds; the local stand-in).
    #[arg(long, env = "AZURE_AUTHORITY_HOST", default_value = PUBLIC_AUTHORITY_HOST)]
    pub azure_authority_host: String,
    /// Azure Resource Manager endpoint; the bearer token is sent to this origin only.
    #[arg(long, env = "TIDEGATE_AZURE_RESOURCE_MANAGER", default_value = PUBLIC_RESOURCE_MANAGER)]
    pub azure_resource_manager: String,
    /// The token scope for Resource Manager.
    #[arg(long = "azure-scope", env = "TIDEGATE_AZURE_SCOPE", default_value = PUBLIC_SCOPE)]
    pub azure_token_scope: String,
    /// Extra CA certificates (PEM) trusted for Azure endpoints (private clouds, the stand-in).
    #[arg(long, env = "TIDEGATE_AZURE_CA_FILE")]
    pub azure_ca_file: Option<PathBuf>,
    /// Requests per second each subscription may receive from this controller.
    #[arg(long, default_value_t = 10.0)]
    pub azure_requests_per_second: f64,
    /// `NAMESPACE=SCOPE`: policies in NAMESPACE may change Container Apps and Jobs, and run ACR
    /// Tasks (`spec.build.strategy: acrTask`) in container registries, within SCOPE
    /// (`/subscriptions/S`, `/subscriptions/S/resourceGroups/RG`, or one app, job or registry
    /// id). Repeatable. A namespace without a grant reaches no Azure resource. Subscription and
    /// resource-group grants also bound whose Microsoft Defender for Cloud findings the
    /// namespace's policies read (`spec.scan.scanner: defender`).
    #[arg(long = "azure-grant")]
    pub azure_grants: Vec<String>,
    /// A production scope (subscription, resource group or resource): an app or job inside it
    /// changes only through an approved Promotion (or as a labelled 0 % staging revision of the
    /// production app itself), never as some policy's staging app. Repeatable.
    #[arg(long = "azure-production-scope")]
    pub azure_production_scopes: Vec<String>,
    /// An Azure Container Registry login server (`myregistry.azurecr.io`, as in image
    /// references) whose credentials are the controller's Azure identity: its Entra ID token is
    /// exchanged for registry tokens (`/oauth2/exchange`, then `/oauth2/token` on the registry
    /// itself). Pull, push, referrers and signatures then work without a registry secret; give the
    /// identity AcrPull (or AcrPush to rebase and sign) on the registry. Repeatable; needs
    /// --azure-credential.
    #[arg(long = "acr-login-server", value_name = "HOST")]
    pub acr_login_servers: Vec<String>,
    /// Entra ID scope of the tokens exchanged with ACR.
    #[arg(long, env = "TIDEGATE_ACR_TOKEN_SCOPE", default_value = DEFAULT_SCOPE)]
    pub acr_token_scope: String,
    /// Extra CA certificates (PEM) trusted by staging HTTP checks.
    #[arg(long, env = "TIDEGATE_STAGING_CA_FILE")]
    pub staging_ca_file: Option<PathBuf>,
    /// `SUFFIX=IP[:PORT]`: staging HTTP checks reach hosts under SUFFIX at that address instead
    /// of resolving them (an internal Container Apps environment without private DNS). Repeatable.
    #[arg(long = "staging-resolve")]
    pub staging_resolve: Vec<String>,
}

impl AzureArgs {
    /// The Azure targets, when a credential is configured.
    pub async fn targets(&self) -> anyhow::Result<Option<Arc<AzureTargets>>> {
        let scopes = AzureScopes::parse(&self.azure_grants)
            .and_then(|s| s.with_production(&self.azure_production_scopes))
            .map_err(anyhow::Error::msg)?;
        let Some(config) = self.config()? else {
            if !scopes.is_empty() {
                anyhow::bail!(
                    "--azure-grant needs --azure-credential: without a credential no Azure target is reached"
                );
            }
            return Ok(None);
        };
        tracing::info!(credential = %config.describe(), resource_manager = %config.resource_manager, "Azure targets enabled");
        let arm = Arm::new(&config).await?;
        Ok(Some(AzureTargets::new(ContainerApps::new(Arc::new(arm)), scopes)))
    }

    /// The Azure identity and endpoints the flags configure, when `--azure-credential` is given.
    pub fn config(&self) -> anyhow::Result<Option<AzureConfig>> {
        let Some(kind) = &self.azure_credential else {
            return Ok(None);
        };
        let config = AzureConfig {
            credential: kind.parse()?,
            tenant_id: self.azure_tenant_id.clone(),
            client_id: self.azure_client_id.clone(),
            client_secret_file: self.azure_client_secret_file.clone(),
            federated_token_file: self.azure_federated_token_file.clone(),
            authority_host: self.azure_authority_host.parse()?,
            resource_manager: self.azure_resource_manager.parse()?,
            scope: self.azure_token_scope.clone(),
            ca_file: self.azure_ca_file.clone(),
            requests_per_second: self.azure_requests_per_second,
            ..AzureConfig::default()
        };
        config.validate()?;
        Ok(Some(config))
    }

    /// The registries (`--acr-login-server`) whose credentials are the Azure identity, through
    /// ACR's token exchange.
    pub async fn registry_identities(&self) -> anyhow::Result<BTreeMap<String, Arc<dyn EntraTokenSource>>> {
        if self.acr_login_servers.is_empty() {
            return Ok(BTreeMap::new());
        }
        let Some(config) = self.config()? else {
            anyhow::bail!(
                "--acr-login-server needs --azure-credential: the registry's credentials are the controller's Azure \
                 identity"
            );
        };
        let identity: Arc<dyn EntraTokenSource> =
            Arc::new(RegistryIdentity::new(&config, &self.acr_token_scope).await?);
        let mut hosts = BTreeMap::new();
        for host in &self.acr_login_servers {
            let host = host.trim().trim_end_matches('/').to_ascii_lowercase();
            if host.is_empty() || host.contains('/') || host.contains("://") || host.contains('@') {
                anyhow::bail!("--acr-login-server {host:?}: expected a registry host like myregistry.azurecr.io");
            }
            tracing::info!(registry = %host, identity = %identity.describe(), "registry credentials: Azure identity (ACR token exchange)");
            hosts.insert(host, identity.clone());
        }
        Ok(hosts)
    }

    /// How staging HTTP checks reach staging URLs.
    pub fn http_checks(&self) -> anyhow::Result<HttpCheckOptions> {
        let extra_roots_pem = match &self.staging_ca_file {
            Some(path) => {
                std::fs::read(path).map_err(|e| anyhow::anyhow!("--staging-ca-file {}: {e}", path.display()))?
            }
            None => Vec::new(),
        };
        let resolve = HttpCheckOptions::parse_resolve(&self.staging_resolve).map_err(anyhow::Error::msg)?;
        Ok(HttpCheckOptions { extra_roots_pem, resolve })
    }
}
