//! Registry errors that say what went wrong and where.

use std::time::Duration;

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
    /// Still rate-limited after the retries, or asked to wait longer than one request waits.
    #[error(
        "registry {host} answered 429 Too Many Requests for {repository}{}{}; Tidegate tries again later",
        after_attempts(*.attempts),
        asked_to_wait(*.retry_after)
    )]
    RateLimited {
        /// `host/name`.
        repository: String,
        /// Registry host (or the host of its token endpoint).
        host: String,
        /// Attempts made; 0 when the request was not sent because the registry had asked to be
        /// left alone for longer.
        attempts: u32,
        /// How long the registry asked to wait (`Retry-After`), from when the error was made.
        retry_after: Option<Duration>,
    },
    /// The registry answered with a server error (`5xx`) after the retries.
    #[error(
        "registry {host} answered {status} for {repository}{}{}: {message}; Tidegate tries again later",
        after_attempts(*.attempts),
        asked_to_wait(*.retry_after)
    )]
    Unavailable {
        /// `host/name`.
        repository: String,
        /// Registry host (or the host of its token endpoint).
        host: String,
        /// The status, e.g. `503 Service Unavailable`.
        status: String,
        /// Attempts made.
        attempts: u32,
        /// How long the registry asked to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
        /// What the registry said.
        message: String,
    },
    /// The registry did not answer in time.
    #[error("registry {host} did not answer {request} within {}s{}; Tidegate tries again later", .after.as_secs_f64(), after_attempts(*.attempts))]
    Timeout {
        /// Registry host (or the host of its token endpoint).
        host: String,
        /// `METHOD /path`.
        request: String,
        /// The per-request timeout.
        after: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// The registry could not be reached, or dropped the connection before answering.
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
        matches!(
            self,
            Self::RateLimited { .. } | Self::Unavailable { .. } | Self::Timeout { .. } | Self::Transport { .. }
        )
    }
}

impl From<RegistryError> for crate::ProviderError {
    fn from(e: RegistryError) -> Self {
        if e.is_transient() { Self::Transient(e.to_string()) } else { Self::Permanent(e.to_string()) }
    }
}

/// `" (after N attempts)"` when a request was tried more than once.
fn after_attempts(attempts: u32) -> String {
    match attempts {
        0 => " (not sent: the registry asked to be left alone)".into(),
        1 => String::new(),
        n => format!(" (after {n} attempts)"),
    }
}

/// `"; it asks to wait N s"` for a `Retry-After`.
fn asked_to_wait(retry_after: Option<Duration>) -> String {
    retry_after.map(|wait| format!("; it asks to wait {} s", wait.as_secs())).unwrap_or_default()
}

/// Turns an error response into a [`RegistryError`], reading the distribution error codes.
pub(super) async fn from_response(repo: &Repository, response: reqwest::Response) -> RegistryError {
    from_response_after(repo, &repo.host, response, 1, None).await
}

/// [`from_response`] for the answer to the `attempts`-th attempt, from `host` (the registry, or
/// its token endpoint), which asked to wait `retry_after`.
pub(super) async fn from_response_after(
    repo: &Repository,
    host: &str,
    response: reqwest::Response,
    attempts: u32,
    retry_after: Option<Duration>,
) -> RegistryError {
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
    let host = host.to_string();
    match (code.as_str(), status.as_u16()) {
        (_, 429) | ("TOOMANYREQUESTS", _) => RegistryError::RateLimited { repository, host, attempts, retry_after },
        (_, 500..=599) if super::retry::cause_of(status).is_some() => RegistryError::Unavailable {
            repository,
            host,
            status: status.to_string(),
            attempts,
            retry_after,
            message: if message.trim().is_empty() { "no details".into() } else { message },
        },
        ("NAME_UNKNOWN", _) => RegistryError::UnknownRepository { repository },
        ("MANIFEST_UNKNOWN" | "BLOB_UNKNOWN", _) | (_, 404) => {
            RegistryError::NotFound { what: format!("{repository}: {message}") }
        }
        ("DENIED" | "UNAUTHORIZED", _) | (_, 401 | 403) => {
            RegistryError::Denied { repository, message: format!("{status}: {message}") }
        }
        ("DIGEST_INVALID", _) => RegistryError::BadDigest { repository, expected: message, actual: String::new() },
        _ => RegistryError::Protocol { repository, message: format!("{status}: {message}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_name_the_registry_and_what_it_said() {
        let unavailable = RegistryError::Unavailable {
            repository: "r.io/shop/app".into(),
            host: "r.io".into(),
            status: "503 Service Unavailable".into(),
            attempts: 3,
            retry_after: None,
            message: "maintenance".into(),
        };
        assert!(unavailable.is_transient());
        assert_eq!(
            unavailable.to_string(),
            "registry r.io answered 503 Service Unavailable for r.io/shop/app (after 3 attempts): maintenance; \
             Tidegate tries again later"
        );
        let limited = RegistryError::RateLimited {
            repository: "r.io/shop/app".into(),
            host: "r.io".into(),
            attempts: 1,
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert!(limited.is_transient());
        assert!(limited.to_string().contains("429 Too Many Requests for r.io/shop/app; it asks to wait 3600 s"));
        let held = RegistryError::RateLimited {
            repository: "r.io/shop/app".into(),
            host: "r.io".into(),
            attempts: 0,
            retry_after: Some(Duration::from_secs(10)),
        };
        assert!(held.to_string().contains("not sent"), "{held}");
        let timeout = RegistryError::Timeout {
            host: "r.io".into(),
            request: "HEAD /v2/base/manifests/3".into(),
            after: Duration::from_millis(1500),
            attempts: 3,
        };
        assert!(timeout.is_transient());
        assert_eq!(
            timeout.to_string(),
            "registry r.io did not answer HEAD /v2/base/manifests/3 within 1.5s (after 3 attempts); Tidegate tries \
             again later"
        );
        assert!(matches!(crate::ProviderError::from(timeout), crate::ProviderError::Transient(_)));
        let denied = RegistryError::Denied { repository: "r.io/a".into(), message: "no".into() };
        assert!(matches!(crate::ProviderError::from(denied), crate::ProviderError::Permanent(_)));
    }
}
