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
        }
    }
}

/// Result of reconcile steps.
pub type Result<T, E = Error> = std::result::Result<T, E>;
