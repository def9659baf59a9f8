//! The controller acts on workloads only as the policy namespace's `tidegate-deployer`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::kubernetes::{DeploymentCache, KubernetesTargets};
use crate::{ProviderError, Result};

/// Name of the ServiceAccount, in each policy's namespace, whose rights bound what Tidegate does
/// for that namespace's policies.
pub const DEPLOYER_SERVICE_ACCOUNT: &str = "tidegate-deployer";

/// The user-extra key the controller sets, as impersonator, on every production write: its value
/// names the Promotion (`namespace/name`). Only an identity that may impersonate
/// `userextras/tidegate.dev/promotion` can send it, so the production admission policy
/// (`deploy/production-policy.yaml`) tells Tidegate's promotions apart from anyone else acting
/// with the deployer's ServiceAccount.
pub const PROMOTION_EXTRA: &str = "tidegate.dev/promotion";

/// Production clients kept at most (one per Promotion that writes production).
const MAX_PRODUCTION_CLIENTS: usize = 256;

/// The user name of the deployer of `namespace`.
pub fn deployer_user(namespace: &str) -> String {
    format!("system:serviceaccount:{namespace}:{DEPLOYER_SERVICE_ACCOUNT}")
}

/// Clients that impersonate a namespace's deployer. The controller's own role holds only
/// `impersonate` on ServiceAccounts named `tidegate-deployer`; what such a ServiceAccount may do
/// is what namespace owners bound to it, each in their own namespace. A policy in namespace `a`
/// whose staging target, test Job or build Job lies in namespace `b` works only when `b`'s owner
/// bound `a`'s deployer there.
pub struct Reach {
    config: kube::Config,
    manager: String,
    clients: Mutex<HashMap<String, kube::Client>>,
    production: Mutex<HashMap<(String, String), kube::Client>>,
    deployments: Arc<DeploymentCache>,
}

impl Reach {
    /// Impersonating clients derived from the controller's own `config`.
    pub fn new(config: kube::Config, manager: impl Into<String>) -> Self {
        Self {
            config,
            manager: manager.into(),
            clients: Mutex::default(),
            production: Mutex::default(),
            deployments: Arc::default(),
        }
    }

    /// A client acting as the deployer of `policy_namespace`.
    pub fn client(&self, policy_namespace: &str) -> Result<kube::Client> {
        if policy_namespace.is_empty() {
            return Err(ProviderError::Permanent("a policy without a namespace has no deployer".into()));
        }
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(policy_namespace) {
            return Ok(client.clone());
        }
        let client = self.build(policy_namespace, None)?;
        clients.insert(policy_namespace.to_string(), client.clone());
        Ok(client)
    }

    /// A client acting as the deployer of `policy_namespace` for the Promotion `promotion` of
    /// that namespace: its writes carry [`PROMOTION_EXTRA`], which production namespaces require.
    pub fn production_client(&self, policy_namespace: &str, promotion: &str) -> Result<kube::Client> {
        if policy_namespace.is_empty() || promotion.is_empty() {
            return Err(ProviderError::Permanent("a production write needs a Promotion and its namespace".into()));
        }
        let key = (policy_namespace.to_string(), promotion.to_string());
        let mut clients = self.production.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = self.build(policy_namespace, Some(&format!("{policy_namespace}/{promotion}")))?;
        if clients.len() >= MAX_PRODUCTION_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    fn build(&self, policy_namespace: &str, promotion: Option<&str>) -> Result<kube::Client> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(deployer_user(policy_namespace));
        // The API server derives a ServiceAccount's groups itself when none are given.
        config.auth_info.impersonate_groups = None;
        // kube sends it as the `Impersonate-Extra-` header, the key percent-encoded.
        config.auth_info.impersonate_user_extra =
            promotion.map(|p| [(PROMOTION_EXTRA.to_string(), vec![p.to_string()])].into_iter().collect());
        kube::Client::try_from(config)
            .map_err(|e| ProviderError::Permanent(format!("cannot build the deployer client: {e}")))
    }

    /// What the Deployment watches made through these clients show ([`crate::kubernetes::WorkloadChanges`]).
    pub fn deployment_cache(&self) -> &Arc<DeploymentCache> {
        &self.deployments
    }

    /// Production targets changed as the deployer of `policy_namespace` for `promotion`.
    pub fn production_targets(&self, policy_namespace: &str, promotion: &str) -> Result<KubernetesTargets> {
        Ok(KubernetesTargets::new(self.production_client(policy_namespace, promotion)?, self.manager.clone())
            .with_cache(self.deployments.clone(), policy_namespace))
    }

    /// Kubernetes deploy targets changed as the deployer of `policy_namespace`.
    pub fn targets(&self, policy_namespace: &str) -> Result<KubernetesTargets> {
        Ok(KubernetesTargets::new(self.client(policy_namespace)?, self.manager.clone())
            .with_cache(self.deployments.clone(), policy_namespace))
    }
}
