//! The controller's errors. Each has a category: the metric label and the Event reason.

use tidegate_providers::ProviderError;

/// What a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A provider failed.
    #[error("{0}")]
    Provider(#[from] ProviderError),
    /// The object or its policy is invalid in a way admission could not catch.
    #[error("invalid: {0}")]
    Invalid(String),
    /// A watch has not completed its first list, so what the controller knows is incomplete.
    #[error("not synced: {0}")]
    NotSynced(String),
}

impl Error {
    /// A short, bounded label for metrics and Events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(s)) if s.code == 409 => "Conflict",
            Self::Kube(_) => "KubeApi",
            Self::Provider(p) if p.is_transient() => "ProviderTransient",
            Self::Provider(_) => "ProviderPermanent",
            Self::Invalid(_) => "InvalidSpec",
            Self::NotSynced(_) => "NotSynced",
        }
    }
}

/// When `error` is the API server refusing the policy namespace's deployer (403), what to tell
/// the user: the write is out of the policy's reach until a namespace owner grants it.
pub fn out_of_reach(error: &ProviderError, policy_namespace: &str, what: &str) -> Option<String> {
    match error {
        ProviderError::Kube(kube::Error::Api(status)) if status.code == 403 => Some(format!(
            "{what} is out of reach: {} may not do it ({}). The owner of that namespace opts in by binding \
             ClusterRole tidegate-deployer to ServiceAccount {policy_namespace}/{}",
            tidegate_providers::authz::deployer_user(policy_namespace),
            status.message,
            tidegate_providers::authz::DEPLOYER_SERVICE_ACCOUNT,
        )),
        ProviderError::NotAllowed(why) | ProviderError::NotConfigured(why) => {
            Some(format!("{what} is out of reach: {why}"))
        }
        _ => None,
    }
}

/// Result of reconcile steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;
