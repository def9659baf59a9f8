//! What talking to Azure can fail with: ARM's own error answers ([`ArmError`]) and everything
//! around them ([`AzureError`]): configuration, credentials, the network, refused URLs, timeouts.

use std::fmt;

use serde::Deserialize;

use crate::ProviderError;

/// An error answer of Azure Resource Manager, or a long-running operation that ended `Failed` or
/// `Canceled`, with what a person needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArmError {
    /// The HTTP status of the answer (for a failed long-running operation: the status of the
    /// answer that carried the failure).
    pub status: u16,
    /// ARM's error code (`ContainerAppOperationInProgress`, `AuthorizationFailed`, …), or
    /// `HttpStatus<code>` when the body carried none.
    pub code: String,
    /// ARM's message, or the start of a non-JSON body.
    pub message: String,
    /// The part of the request the error is about, when ARM says.
    pub target: Option<String>,
    /// `x-ms-request-id` of the answer, for Azure support.
    pub request_id: Option<String>,
    /// The HTTP method of the request that was refused.
    pub method: String,
    /// The ARM path of the request that was refused (no query string).
    pub path: String,
    /// For a long-running operation that ended badly: its final status (`Failed`, `Canceled`).
    pub operation_status: Option<String>,
}

/// ARM's error envelope: `{"error": {"code", "message", "target", "details"}}`. Some services
/// answer with the inner object only; both are accepted.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    error: Option<ErrorDetail>,
    code: Option<String>,
    message: Option<String>,
    target: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorDetail {
    code: String,
    message: String,
    target: Option<String>,
    details: Vec<ErrorDetail>,
}

/// How much of a non-JSON body is kept in a message.
const BODY_EXCERPT: usize = 300;

impl ArmError {
    /// Parses an error answer. Non-JSON bodies (a gateway's HTML page, an empty body) still give
    /// an error with the status and the start of the body.
    pub fn from_response(status: u16, body: &[u8], request_id: Option<String>, method: &str, path: &str) -> Self {
        let (code, message, target) =
            parse_error_body(body).unwrap_or_else(|| (format!("HttpStatus{status}"), excerpt(body), None));
        Self {
            status,
            code,
            message,
            target,
            request_id,
            method: method.to_string(),
            path: path.to_string(),
            operation_status: None,
        }
    }

    /// Whether trying again later can help: throttling, server errors, timeouts, another
    /// operation still in progress on the resource, or an operation that was canceled.
    pub fn is_retryable(&self) -> bool {
        matches!(self.status, 408 | 429 | 500..=599)
            || self.operation_status.as_deref() == Some("Canceled")
            || self.code.contains("InProgress")
            || (self.is_conflict() && !self.code.contains("AlreadyExists"))
    }

    /// A conflict with the resource's current state (409, 412).
    pub fn is_conflict(&self) -> bool {
        matches!(self.status, 409 | 412)
    }

    /// The resource (or its parent) does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status == 404 || self.code == "ResourceNotFound" || self.code == "ResourceGroupNotFound"
    }

    /// The identity is not authenticated, or not authorized on this scope.
    pub fn is_auth(&self) -> bool {
        matches!(self.status, 401 | 403)
            || self.code.starts_with("Authorization")
            || self.code.starts_with("InvalidAuthentication")
    }

    fn hint(&self) -> &'static str {
        if self.is_auth() {
            " — check the role assignment of Tidegate's Azure identity on this scope"
        } else if self.is_not_found() {
            " — check that the resource id in the policy is right and the resource exists"
        } else if self.status == 429 {
            " — the subscription is throttled; lower --azure-requests-per-second"
        } else {
            ""
        }
    }
}

/// `(code, message, target)` from an ARM error body, when it is one.
fn parse_error_body(body: &[u8]) -> Option<(String, String, Option<String>)> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let (code, mut message, target, details) = match envelope.error {
        Some(detail) => (detail.code, detail.message, detail.target, detail.details),
        None => (envelope.code?, envelope.message.unwrap_or_default(), envelope.target, Vec::new()),
    };
    if code.is_empty() && message.is_empty() {
        return None;
    }
    // The details often say what exactly is wrong (which property, which revision).
    for detail in details.iter().take(3) {
        if !detail.message.is_empty() && !message.contains(&detail.message) {
            message.push_str(&format!("; {}: {}", detail.code, detail.message));
        }
    }
    Some((code, message, target))
}

/// The start of a body, for messages; never more than [`BODY_EXCERPT`] characters.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    let mut out: String = text.chars().take(BODY_EXCERPT).collect();
    if text.chars().count() > BODY_EXCERPT {
        out.push('…');
    }
    out.replace(['\n', '\r'], " ")
}

impl fmt::Display for ArmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.operation_status {
            Some(state) => write!(
                f,
                "Azure operation for {} {} ended {state} ({}): {}",
                self.method, self.path, self.code, self.message
            )?,
            None => write!(
                f,
                "Azure refused {} {} ({} {}): {}",
                self.method, self.path, self.status, self.code, self.message
            )?,
        }
        if let Some(target) = &self.target {
            write!(f, " [target {target}]")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        f.write_str(self.hint())
    }
}

impl std::error::Error for ArmError {}

/// Everything the Azure adapters can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    /// The Azure configuration is incomplete or invalid; the message names the flag to set.
    #[error("Azure configuration: {0}")]
    Config(String),
    /// No token could be obtained for the configured identity.
    #[error("Azure sign-in ({credential}) failed: {message}")]
    Credential {
        /// Which credential was used ([`super::AzureConfig::describe`]).
        credential: String,
        /// What went wrong.
        message: String,
    },
    /// ARM answered with an error, or a long-running operation failed.
    #[error(transparent)]
    Arm(Box<ArmError>),
    /// The request could not be sent or the answer not read.
    #[error("Azure request {method} {path} failed: {message}")]
    Transport {
        /// HTTP method.
        method: String,
        /// ARM path or URL (no query string).
        path: String,
        /// What went wrong.
        message: String,
    },
    /// ARM answered something Tidegate cannot understand (invalid JSON, a missing field).
    #[error("unexpected answer from Azure to {method} {path}: {message}")]
    Protocol {
        /// HTTP method.
        method: String,
        /// ARM path.
        path: String,
        /// What was wrong with the answer.
        message: String,
    },
    /// Tidegate refused to send a request: an invalid resource path, or a URL (a `nextLink`, an
    /// operation status URL) that is not on the configured resource manager, where the bearer
    /// token must not go.
    #[error("refused: {0}")]
    Refused(String),
    /// A long-running operation did not finish in time.
    #[error("Azure operation for {method} {path} did not finish within {seconds}s (last status {last_status})")]
    Timeout {
        /// HTTP method of the request that started it.
        method: String,
        /// ARM path.
        path: String,
        /// The limit.
        seconds: u64,
        /// The last status the operation reported.
        last_status: String,
    },
    /// A requested container does not exist in the resource.
    #[error("container {wanted:?} not found in {resource}; it has {present:?}")]
    NoSuchContainer {
        /// The container asked for.
        wanted: String,
        /// The resource id.
        resource: String,
        /// The containers it has.
        present: Vec<String>,
    },
}

impl AzureError {
    /// Whether trying again later can help.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Arm(e) => e.is_retryable(),
            Self::Transport { .. } | Self::Timeout { .. } | Self::Credential { .. } => true,
            Self::Config(_) | Self::Protocol { .. } | Self::Refused(_) | Self::NoSuchContainer { .. } => false,
        }
    }

    /// The ARM error, when ARM answered with one.
    pub fn arm(&self) -> Option<&ArmError> {
        match self {
            Self::Arm(e) => Some(e.as_ref()),
            _ => None,
        }
    }

    /// Whether ARM said the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.arm().is_some_and(ArmError::is_not_found)
    }
}

impl From<ArmError> for AzureError {
    fn from(e: ArmError) -> Self {
        Self::Arm(Box::new(e))
    }
}

impl From<AzureError> for ProviderError {
    fn from(e: AzureError) -> Self {
        match &e {
            AzureError::Config(_) => Self::NotConfigured(e.to_string()),
            AzureError::Arm(a) if a.is_auth() => Self::NotAllowed(e.to_string()),
            _ if e.is_transient() => Self::Transient(e.to_string()),
            _ => Self::Permanent(e.to_string()),
        }
    }
}

/// Result of Azure calls.
pub type Result<T, E = AzureError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_arm_envelope_with_target_and_details() {
        let body = br#"{"error":{"code":"ContainerAppOperationInProgress","message":"Cannot modify a container app 'web' because there is a pending operation.","target":"web","details":[{"code":"Inner","message":"revision web--b is provisioning"}]}}"#;
        let e = ArmError::from_response(
            409,
            body,
            Some("req-1".into()),
            "PATCH",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/web",
        );
        assert_eq!(e.code, "ContainerAppOperationInProgress");
        assert_eq!(e.target.as_deref(), Some("web"));
        assert!(e.message.contains("revision web--b is provisioning"));
        assert!(e.is_conflict() && e.is_retryable() && !e.is_not_found() && !e.is_auth());
        assert_eq!(
            e.to_string(),
            "Azure refused PATCH /subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/web \
             (409 ContainerAppOperationInProgress): Cannot modify a container app 'web' because there is a pending \
             operation.; Inner: revision web--b is provisioning [target web] (request id req-1)"
        );
    }

    #[test]
    fn non_json_and_empty_bodies_still_give_an_error() {
        let e = ArmError::from_response(502, b"<html><body>Bad Gateway</body></html>", None, "GET", "/subscriptions/s");
        assert_eq!(e.code, "HttpStatus502");
        assert!(e.message.contains("Bad Gateway"));
        assert!(e.is_retryable());
        let e = ArmError::from_response(404, b"", None, "GET", "/subscriptions/s");
        assert_eq!(e.message, "(empty body)");
        assert!(e.is_not_found() && !e.is_retryable());
        let e = ArmError::from_response(400, b"{\"error\": 5}", None, "GET", "/subscriptions/s");
        assert_eq!(e.code, "HttpStatus400");
        let long = "x".repeat(1000);
        let e = ArmError::from_response(500, long.as_bytes(), None, "GET", "/subscriptions/s");
        assert!(e.message.chars().count() <= BODY_EXCERPT + 1);
    }

    #[test]
    fn inner_object_without_envelope_is_accepted() {
        let e = ArmError::from_response(403, br#"{"code":"AuthorizationFailed","message":"no"}"#, None, "GET", "/p");
        assert_eq!(e.code, "AuthorizationFailed");
        assert!(e.is_auth() && !e.is_retryable());
        assert!(e.to_string().contains("role assignment"));
    }

    #[test]
    fn classification_maps_to_provider_errors() {
        let auth = AzureError::from(ArmError::from_response(403, b"", None, "GET", "/p"));
        assert!(matches!(ProviderError::from(auth), ProviderError::NotAllowed(_)));
        let throttled = AzureError::from(ArmError::from_response(429, b"", None, "GET", "/p"));
        assert!(matches!(ProviderError::from(throttled), ProviderError::Transient(_)));
        let bad = AzureError::from(ArmError::from_response(400, b"", None, "GET", "/p"));
        assert!(matches!(ProviderError::from(bad), ProviderError::Permanent(_)));
        assert!(matches!(ProviderError::from(AzureError::Config("x".into())), ProviderError::NotConfigured(_)));
    }
}
