//! The controller acts on workloads only as the policy namespace's `tidegate-deployer`.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::kubernetes::KubernetesTargets;
use crate::{ProviderError, Result};

/// Name of the ServiceAccount, in each policy's namespace, whose rights bound what Tidegate does
/// for that namespace's policies.
pub const DEPLOYER_SERVICE_ACCOUNT: &str = "tidegate-deployer";

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
}

impl Reach {
    /// Impersonating clients derived from the controller's own `config`.
    pub fn new(config: kube::Config, manager: impl Into<String>) -> Self {
        Self { config, manager: manager.into(), clients: Mutex::default() }
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
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(deployer_user(policy_namespace));
        // The API server derives a ServiceAccount's groups itself when none are given.
        config.auth_info.impersonate_groups = None;
        let client = kube::Client::try_from(config)
            .map_err(|e| ProviderError::Permanent(format!("cannot build the deployer client: {e}")))?;
        clients.insert(policy_namespace.to_string(), client.clone());
        Ok(client)
    }

    /// Kubernetes deploy targets changed as the deployer of `policy_namespace`.
    pub fn targets(&self, policy_namespace: &str) -> Result<KubernetesTargets> {
        Ok(KubernetesTargets::new(self.client(policy_namespace)?, self.manager.clone()))
    }
}
