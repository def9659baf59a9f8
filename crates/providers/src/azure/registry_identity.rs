//! The controller's Azure identity as the credential of Azure Container Registries: Entra ID
//! access tokens for ACR's data plane, which the registry client exchanges for registry tokens
//! ([`crate::registry::acr`]).

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

use super::AzureError;
use super::identity::AzureConfig;
use super::transport::ReqwestTransport;
use crate::registry::acr::EntraTokenSource;

/// The flag that sets the Entra ID scope of registry tokens.
pub const FLAG_ACR_TOKEN_SCOPE: &str = "--acr-token-scope";

/// Entra ID tokens of the configured identity for the registry audience.
pub struct RegistryIdentity {
    credential: Arc<dyn TokenCredential>,
    scope: String,
    tenant: Option<String>,
    describe: String,
}

impl std::fmt::Debug for RegistryIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryIdentity").field("identity", &self.describe).field("scope", &self.scope).finish()
    }
}

impl RegistryIdentity {
    /// The identity `config` describes, asking for tokens with `scope`
    /// (`https://containerregistry.azure.net/.default` in the public cloud). Nothing is
    /// requested over the network here.
    pub async fn new(config: &AzureConfig, scope: &str) -> Result<Self, AzureError> {
        if !scope.ends_with("/.default")
            || !scope.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/'))
        {
            return Err(AzureError::Config(format!(
                "{FLAG_ACR_TOKEN_SCOPE} {scope:?} is not a scope like https://containerregistry.azure.net/.default"
            )));
        }
        let transport = ReqwestTransport::new(config.ca_file.as_deref(), config.request_timeout)?.transport();
        let credential = config.credential(&transport).await?;
        Ok(Self { credential, scope: scope.to_string(), tenant: config.tenant_id.clone(), describe: config.describe() })
    }
}

#[async_trait::async_trait]
impl EntraTokenSource for RegistryIdentity {
    async fn token(&self) -> Result<String, String> {
        self.credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map(|token| token.token.secret().to_string())
            .map_err(|e| format!("{e} (scope {})", self.scope))
    }

    fn tenant(&self) -> Option<String> {
        self.tenant.clone()
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}
