//! Registry errors that say what went wrong and where.

use super::Repository;

/// What talking to a registry can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The repository does not exist (`NAME_UNKNOWN`).
    #[error("repository {repository} does not exist in the registry")]
    UnknownRepository {
        /// `host/name`.
        repository: String,
    },
    /// A manifest, tag or blob does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The credentials were refused or lack a permission.
    #[error("access to {repository} denied: {message}; check the pull secret's credentials and their scope")]
    Denied {
        /// `host/name`.
        repository: String,
        /// What the registry said.
        message: String,
    },
    /// Content does not match its digest.
    #[error("digest mismatch in {repository}: expected {expected}, got {actual}")]
    BadDigest {
        /// `host/name`.
        repository: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what was served.
        actual: String,
    },
    /// Still rate-limited after the retries.
    #[error("{repository} keeps answering 429 Too Many Requests")]
    RateLimited {
        /// `host/name`.
        repository: String,
    },
    /// The registry could not be reached.
    #[error("cannot reach registry {host}: {message}")]
    Transport {
        /// Registry host.
        host: String,
        /// The error.
        message: String,
    },
    /// The client refused to do something that would expose credentials or content: send
    /// credentials over plain HTTP, follow a redirect from HTTPS to HTTP, use another scheme.
    #[error("refused for {repository}: {message}")]
    Insecure {
        /// `host/name`.
        repository: String,
        /// What was refused, and why.
        message: String,
    },
    /// The registry answered something the protocol does not allow.
    #[error("unexpected answer from {repository}: {message}")]
    Protocol {
        /// `host/name`.
        repository: String,
        /// What was wrong.
        message: String,
    },
}

impl RegistryError {
    /// Whether retrying later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Transport { .. })
    }
}

impl From<RegistryError> for crate::ProviderError {
    fn from(e: RegistryError) -> Self {
        if e.is_transient() { Self::Transient(e.to_string()) } else { Self::Permanent(e.to_string()) }
    }
}

/// Turns an error response into a [`RegistryError`], reading the distribution error codes.
pub(super) async fn from_response(repo: &Repository, response: reqwest::Response) -> RegistryError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let code = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    let repository = repo.to_string();
    match (code.as_str(), status.as_u16()) {
        ("NAME_UNKNOWN", _) => RegistryError::UnknownRepository { repository },
        ("MANIFEST_UNKNOWN" | "BLOB_UNKNOWN", _) | (_, 404) => {
            RegistryError::NotFound { what: format!("{repository}: {message}") }
        }
        ("DENIED" | "UNAUTHORIZED", _) | (_, 401 | 403) => {
            RegistryError::Denied { repository, message: format!("{status}: {message}") }
        }
        ("DIGEST_INVALID", _) => RegistryError::BadDigest { repository, expected: message, actual: String::new() },
        ("TOOMANYREQUESTS", _) | (_, 429) => RegistryError::RateLimited { repository },
        _ => RegistryError::Protocol { repository, message: format!("{status}: {message}") },
    }
}
