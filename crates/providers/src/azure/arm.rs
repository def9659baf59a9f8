//! The Azure Resource Manager client: an azure_core [`Pipeline`] (bearer token for the configured
//! scope, Tidegate's retry policy, the per-subscription budget and request-id logging) with the
//! ARM protocol on top: `api-version` on every request, error bodies turned into [`ArmError`],
//! long-running operations awaited, `nextLink` pages followed.
//!
//! The bearer token goes to the configured resource manager's origin only: a `nextLink`, an
//! `Azure-AsyncOperation` or a `Location` URL on any other scheme, host or port is refused
//! ([`AzureError::Refused`]), never requested.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, RawResponse, Request, RetryOptions,
};
use azure_core::time::OffsetDateTime;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::debug;
use url::Url;

use super::error::{ArmError, AzureError, Result};
use super::identity::AzureConfig;
use super::policies::{ArmRetry, ObservePolicy, OperationStats, REQUEST_ID, retry_after};
use super::resource_id::path_segments;
use super::transport::ReqwestTransport;

/// The Container Apps API version every request uses (the version of the REST specification and
/// examples in `shared/fixtures/azure/containerapps`).
pub const API_VERSION: &str = "2025-07-01";

/// Polling interval of a long-running operation when ARM gives no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// The longest wait between two polls, whatever ARM asks.
const MAX_POLL: Duration = Duration::from_secs(60);
/// The most pages one list may have (a loop guard).
const MAX_PAGES: usize = 1000;

const AZURE_ASYNC_OPERATION: azure_core::http::headers::HeaderName =
    azure_core::http::headers::HeaderName::from_static("azure-asyncoperation");
const LOCATION: azure_core::http::headers::HeaderName = azure_core::http::headers::HeaderName::from_static("location");

/// The ARM client. One is shared (behind an `Arc`) by every reconciler, so the request budget
/// and the token cache are per process.
pub struct Arm {
    pipeline: Pipeline,
    /// The same policies, retrying only 429 (for POST actions).
    action_pipeline: Pipeline,
    base: Url,
    credential: String,
    observe: Arc<ObservePolicy>,
    operation_timeout: Duration,
}

impl std::fmt::Debug for Arm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arm").field("base", &self.base.as_str()).field("credential", &self.credential).finish()
    }
}

/// The status body of an `Azure-AsyncOperation` URL.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OperationStatus {
    status: String,
    error: Option<OperationError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OperationError {
    code: String,
    message: String,
    target: Option<String>,
}

/// What an `Azure-AsyncOperation` status says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OperationState {
    /// Still running (`InProgress`, `Running`, `Accepted`, … anything not terminal).
    Running(String),
    /// Done.
    Succeeded,
    /// Ended badly: the final status and ARM's error.
    Ended { status: String, code: String, message: String, target: Option<String> },
}

/// Reads an `Azure-AsyncOperation` status body.
pub(crate) fn operation_state(body: &[u8]) -> std::result::Result<OperationState, String> {
    let status: OperationStatus =
        serde_json::from_slice(body).map_err(|e| format!("operation status is not JSON: {e}"))?;
    if status.status.is_empty() {
        return Err("operation status has no status".to_string());
    }
    Ok(match status.status.to_ascii_lowercase().as_str() {
        "succeeded" => OperationState::Succeeded,
        "failed" | "canceled" | "cancelled" => {
            let error = status.error.unwrap_or_default();
            OperationState::Ended {
                code: if error.code.is_empty() { format!("Operation{}", status.status) } else { error.code },
                message: if error.message.is_empty() { "(no message)".to_string() } else { error.message },
                target: error.target,
                status: status.status,
            }
        }
        _ => OperationState::Running(status.status),
    })
}

/// The provisioning state in a resource body, when it has one.
fn provisioning_state(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.pointer("/properties/provisioningState")?.as_str().map(str::to_string)
}

fn is_terminal_provisioning(state: &str) -> bool {
    matches!(state.to_ascii_lowercase().as_str(), "succeeded" | "failed" | "canceled")
}

/// A `nextLink`/operation URL may be followed only on `base`'s origin (scheme, host, port), and
/// never with credentials in it.
pub(crate) fn same_origin(base: &Url, link: &str, what: &str) -> Result<Url> {
    let url = base.join(link).map_err(|e| AzureError::Refused(format!("{what} {link:?} is not a URL: {e}")))?;
    let same = url.scheme() == base.scheme()
        && url.host_str().map(str::to_ascii_lowercase) == base.host_str().map(str::to_ascii_lowercase)
        && url.port_or_known_default() == base.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none();
    if !same {
        return Err(AzureError::Refused(format!(
            "{what} points at {}, not at the configured resource manager {}; the token is not sent there",
            url.origin().ascii_serialization(),
            base.origin().ascii_serialization()
        )));
    }
    Ok(url)
}

/// A list page.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(default)]
    next_link: Option<String>,
}

impl Arm {
    /// A client for `config`: validates it, builds the credential and the pipeline. Nothing is
    /// requested until the first call.
    pub async fn new(config: &AzureConfig) -> Result<Self> {
        config.validate()?;
        let transport = ReqwestTransport::new(config.ca_file.as_deref(), config.request_timeout)?.transport();
        let credential = config.credential(&transport).await?;
        let observe = Arc::new(ObservePolicy::new(config.requests_per_second));
        let bearer: Arc<dyn Policy> = Arc::new(BearerTokenAuthorizationPolicy::new(credential, [config.scope.clone()]));
        let pipeline = |retry: ArmRetry| {
            let options = ClientOptions {
                transport: Some(transport.clone()),
                retry: RetryOptions::custom(Arc::new(retry)),
                ..ClientOptions::default()
            };
            Pipeline::new(
                Some(env!("CARGO_PKG_NAME")),
                Some(env!("CARGO_PKG_VERSION")),
                options,
                Vec::new(),
                vec![bearer.clone(), observe.clone() as Arc<dyn Policy>],
                None,
            )
        };
        let action_pipeline = pipeline(ArmRetry::for_actions(config.max_retries));
        let pipeline = pipeline(ArmRetry::new(config.max_retries));
        let mut base = config.resource_manager.clone();
        base.set_path("/");
        Ok(Self {
            pipeline,
            action_pipeline,
            base,
            credential: config.describe(),
            observe,
            operation_timeout: config.operation_timeout,
        })
    }

    /// Which identity the client signs in as ([`AzureConfig::describe`]).
    pub fn credential(&self) -> &str {
        &self.credential
    }

    /// The resource manager the client talks to.
    pub fn resource_manager(&self) -> &Url {
        &self.base
    }

    /// Requests sent so far, per operation (`GET containerApps`, `PATCH containerApps`, …).
    pub fn stats(&self) -> BTreeMap<String, OperationStats> {
        self.observe.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads a resource.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.get_at(path, API_VERSION).await
    }

    /// Reads a resource of another resource provider, with its `api_version`.
    pub async fn get_at<T: DeserializeOwned>(&self, path: &str, api_version: &str) -> Result<T> {
        let url = self.url_at(path, api_version, &[])?;
        let response = self.checked(Method::Get, url, None, path).await?;
        parse(response.body(), "GET", path)
    }

    /// Reads a resource; `None` when it does not exist.
    pub async fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        match self.get(path).await {
            Ok(v) => Ok(Some(v)),
            Err(AzureError::Arm(e)) if e.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates or replaces a resource, waits for the operation, and reads the result back.
    pub async fn put_and_wait<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.write_and_wait(Method::Put, path, body).await
    }

    /// Updates a resource with a JSON merge patch, waits for the operation, and reads the result
    /// back.
    pub async fn patch_and_wait<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        self.write_and_wait(Method::Patch, path, body).await
    }

    /// Runs an action (`…/start`, `…/revisions/{name}/activate`), waits for the operation, and
    /// returns the action's result: the immediate body, or the body of the final `Location`. An
    /// empty body reads as JSON `null` (use `()`, `Option<_>` or `Value`).
    pub async fn post_and_wait<T: DeserializeOwned>(&self, path: &str, body: Option<&Value>) -> Result<T> {
        self.post_and_wait_at(path, API_VERSION, body).await
    }

    /// [`Arm::post_and_wait`] on another resource provider, with its `api_version`. Retried only
    /// on `429`, like every action.
    pub async fn post_and_wait_at<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let url = self.url_at(path, api_version, &[])?;
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let response = self.checked(Method::Post, url, body, path).await?;
        let result = self.wait(Method::Post, path, response).await?;
        parse(&result, "POST", path)
    }

    /// Lists a collection, following `nextLink` pages on the resource manager's origin.
    pub async fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Vec<T>> {
        self.list_at(path, API_VERSION, &[]).await
    }

    /// [`Arm::list`] on another resource provider, with its `api_version` and extra query
    /// parameters (`$filter`, `$top`) on the first page.
    pub async fn list_at<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<T>> {
        let mut url = self.url_at(path, api_version, query)?;
        let mut items = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            let response = self.checked(Method::Get, url.clone(), None, path).await?;
            let page: Page<T> = parse(response.body(), "GET", path)?;
            items.extend(page.value);
            match page.next_link.filter(|l| !l.is_empty()) {
                None => return Ok(items),
                Some(link) => {
                    url = self.follow(&link, "nextLink")?;
                    if !seen.insert(url.to_string()) {
                        return Err(protocol("GET", path, "nextLink repeats an earlier page"));
                    }
                }
            }
        }
        Err(protocol("GET", path, &format!("more than {MAX_PAGES} pages")))
    }

    /// Sends a read-only query to a provider-level path (`/providers/{namespace}/{type}`, e.g.
    /// Resource Graph's `/providers/Microsoft.ResourceGraph/resources`) with that provider's own
    /// `api_version`, and parses the answer. A query changes nothing, so it is retried like a
    /// read (429 and 5xx).
    pub async fn query<B: Serialize, T: DeserializeOwned>(&self, path: &str, api_version: &str, body: &B) -> Result<T> {
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or_default().split('/').collect();
        let valid = matches!(segments.first(), Some(p) if p.eq_ignore_ascii_case("providers"))
            && segments.len() >= 3
            && segments.iter().all(|s| {
                !s.is_empty()
                    && *s != "."
                    && *s != ".."
                    && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            })
            && api_version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(AzureError::Refused(format!(
                "invalid provider query path {path:?} (api-version {api_version:?})"
            )));
        }
        let mut url = self.base.clone();
        url.set_path(path);
        url.query_pairs_mut().append_pair("api-version", api_version);
        let body = serde_json::to_vec(body).map_err(|e| protocol("POST", path, &e.to_string()))?;
        let mut request = Request::new(url, Method::Post);
        request.insert_header(azure_core::http::headers::ACCEPT, "application/json");
        request.insert_header(azure_core::http::headers::CONTENT_TYPE, "application/json");
        request.set_body(body);
        let options = PipelineSendOptions { skip_checks: true, ..PipelineSendOptions::default() };
        let response =
            self.pipeline.send(&Context::new(), &mut request, Some(options)).await.map_err(|e| match e.kind() {
                azure_core::error::ErrorKind::Credential => {
                    AzureError::Credential { credential: self.credential.clone(), message: e.to_string() }
                }
                _ => AzureError::Transport { method: "POST".into(), path: path.to_string(), message: e.to_string() },
            })?;
        let status = u16::from(response.status());
        if !(200..300).contains(&status) {
            let request_id = response.headers().get_optional_string(&REQUEST_ID);
            return Err(ArmError::from_response(status, response.body(), request_id, "POST", path).into());
        }
        parse(response.body(), "POST", path)
    }

    async fn write_and_wait<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let url = self.url(path)?;
        let bytes = serde_json::to_vec(body).map_err(|e| protocol(method.as_ref(), path, &e.to_string()))?;
        let response = self.checked(method, url, Some(bytes), path).await?;
        self.wait(method, path, response).await?;
        self.get(path).await
    }

    /// `{resource manager}{path}?api-version=…` for a validated ARM path.
    fn url(&self, path: &str) -> Result<Url> {
        self.url_at(path, API_VERSION, &[])
    }

    /// `{resource manager}{path}?api-version={api_version}&{query}` for a validated ARM path.
    fn url_at(&self, path: &str, api_version: &str, query: &[(&str, &str)]) -> Result<Url> {
        path_segments(path)?;
        let mut url = self.base.clone();
        url.set_path(path);
        url.query_pairs_mut().append_pair("api-version", api_version).extend_pairs(query);
        Ok(url)
    }

    /// An absolute or relative link from ARM, on the resource manager's origin only, with an
    /// `api-version` when it has none.
    fn follow(&self, link: &str, what: &str) -> Result<Url> {
        let mut url = same_origin(&self.base, link, what)?;
        if !url.query_pairs().any(|(k, _)| k == "api-version") {
            url.query_pairs_mut().append_pair("api-version", API_VERSION);
        }
        Ok(url)
    }

    /// Sends one request through the pipeline; transport and credential failures become errors,
    /// answers of any status are returned.
    async fn send(&self, method: Method, url: Url, body: Option<Vec<u8>>, path: &str) -> Result<RawResponse> {
        let mut request = Request::new(url, method);
        request.insert_header(azure_core::http::headers::ACCEPT, "application/json");
        if let Some(body) = body {
            request.insert_header(azure_core::http::headers::CONTENT_TYPE, "application/json");
            request.set_body(body);
        }
        let options = PipelineSendOptions { skip_checks: true, ..PipelineSendOptions::default() };
        let pipeline = if method == Method::Post { &self.action_pipeline } else { &self.pipeline };
        pipeline.send(&Context::new(), &mut request, Some(options)).await.map_err(|e| match e.kind() {
            azure_core::error::ErrorKind::Credential => {
                AzureError::Credential { credential: self.credential.clone(), message: e.to_string() }
            }
            _ => AzureError::Transport { method: method.to_string(), path: path.to_string(), message: e.to_string() },
        })
    }

    /// Sends and turns an error status into an [`ArmError`].
    async fn checked(&self, method: Method, url: Url, body: Option<Vec<u8>>, path: &str) -> Result<RawResponse> {
        let response = self.send(method, url, body, path).await?;
        let status = u16::from(response.status());
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let request_id = response.headers().get_optional_string(&REQUEST_ID);
        Err(ArmError::from_response(status, response.body(), request_id, method.as_ref(), path).into())
    }

    /// Waits for the operation an answer started; returns the final body (the immediate body
    /// when there was nothing to wait for).
    async fn wait(&self, method: Method, path: &str, response: RawResponse) -> Result<Vec<u8>> {
        let m = method.to_string();
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let status = u16::from(response.status());
        let headers = response.headers().clone();
        let async_op = headers.get_optional_str(&AZURE_ASYNC_OPERATION).map(str::to_string);
        let location = headers.get_optional_str(&LOCATION).map(str::to_string);
        let mut delay = poll_delay(response.headers());
        let initial_body = response.into_body().to_vec();
        if !matches!(status, 201 | 202) {
            if method != Method::Post
                && let Some(state) = provisioning_state(&initial_body).filter(|s| !is_terminal_provisioning(s))
            {
                debug!(%m, path, %state, "waiting for the resource's provisioning state");
                return self.poll_resource(path, &m, deadline, delay).await;
            }
            return Ok(initial_body);
        }
        if let Some(op) = async_op {
            let url = self.follow(&op, "Azure-AsyncOperation")?;
            let mut last = "Accepted".to_string();
            loop {
                self.pause(delay, deadline, &m, path, &last).await?;
                let poll = self.checked(Method::Get, url.clone(), None, path).await?;
                delay = poll_delay(poll.headers());
                match operation_state(poll.body()).map_err(|e| protocol(&m, path, &e))? {
                    OperationState::Running(s) => last = s,
                    OperationState::Succeeded => break,
                    OperationState::Ended { status, code, message, target } => {
                        return Err(AzureError::from(ArmError {
                            status: u16::from(poll.status()),
                            code,
                            message,
                            target,
                            request_id: poll.headers().get_optional_string(&REQUEST_ID),
                            method: m,
                            path: path.to_string(),
                            operation_status: Some(status),
                        }));
                    }
                }
            }
            // A POST's result lives at its Location (final-state-via location).
            if method == Method::Post
                && let Some(location) = location
            {
                let url = self.follow(&location, "Location")?;
                return Ok(self.checked(Method::Get, url, None, path).await?.into_body().to_vec());
            }
            return Ok(Vec::new());
        }
        if let Some(location) = location {
            let mut url = self.follow(&location, "Location")?;
            let mut last = status.to_string();
            loop {
                self.pause(delay, deadline, &m, path, &last).await?;
                let poll = self.checked(Method::Get, url.clone(), None, path).await?;
                if u16::from(poll.status()) != 202 {
                    return Ok(poll.into_body().to_vec());
                }
                delay = poll_delay(poll.headers());
                last = "202 Accepted".to_string();
                if let Some(next) = poll.headers().get_optional_str(&LOCATION) {
                    url = self.follow(next, "Location")?;
                }
            }
        }
        if method == Method::Post {
            return Ok(initial_body);
        }
        // 201/202 without a URL to poll: watch the resource itself.
        self.poll_resource(path, &m, deadline, delay).await
    }

    /// Polls the resource until its provisioning state is terminal.
    async fn poll_resource(
        &self,
        path: &str,
        m: &str,
        deadline: tokio::time::Instant,
        mut delay: Duration,
    ) -> Result<Vec<u8>> {
        let mut last = "unknown".to_string();
        loop {
            self.pause(delay, deadline, m, path, &last).await?;
            let poll = self.checked(Method::Get, self.url(path)?, None, path).await?;
            delay = poll_delay(poll.headers());
            let state = provisioning_state(poll.body()).unwrap_or_else(|| "Succeeded".to_string());
            match state.to_ascii_lowercase().as_str() {
                "succeeded" => return Ok(poll.into_body().to_vec()),
                "failed" | "canceled" => {
                    return Err(AzureError::from(ArmError {
                        status: u16::from(poll.status()),
                        code: format!("Provisioning{state}"),
                        message: format!("the resource's provisioning state is {state}"),
                        target: None,
                        request_id: poll.headers().get_optional_string(&REQUEST_ID),
                        method: m.to_string(),
                        path: path.to_string(),
                        operation_status: Some(state),
                    }));
                }
                _ => last = state,
            }
        }
    }

    /// Sleeps `delay` unless that passes the deadline.
    async fn pause(
        &self,
        delay: Duration,
        deadline: tokio::time::Instant,
        m: &str,
        path: &str,
        last: &str,
    ) -> Result<()> {
        if tokio::time::Instant::now() + delay > deadline {
            return Err(AzureError::Timeout {
                method: m.to_string(),
                path: path.to_string(),
                seconds: self.operation_timeout.as_secs(),
                last_status: last.to_string(),
            });
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

fn poll_delay(headers: &azure_core::http::headers::Headers) -> Duration {
    retry_after(headers, OffsetDateTime::now_utc()).unwrap_or(DEFAULT_POLL).min(MAX_POLL)
}

fn protocol(method: &str, path: &str, message: &str) -> AzureError {
    AzureError::Protocol { method: method.to_string(), path: path.to_string(), message: message.to_string() }
}

/// Parses a body; an empty body reads as `null`.
fn parse<T: DeserializeOwned>(body: &[u8], method: &str, path: &str) -> Result<T> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"null" } else { body };
    serde_json::from_slice(body).map_err(|e| protocol(method, path, &format!("{e} in {}", super::error::excerpt(body))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_status_bodies() {
        assert_eq!(
            operation_state(br#"{"status":"InProgress"}"#).unwrap(),
            OperationState::Running("InProgress".into())
        );
        assert_eq!(
            operation_state(br#"{"id":"x","status":"Succeeded","startTime":"t"}"#).unwrap(),
            OperationState::Succeeded
        );
        assert_eq!(
            operation_state(br#"{"status":"Failed","error":{"code":"ContainerAppProvisioningFailed","message":"image pull failed","target":"web"}}"#)
                .unwrap(),
            OperationState::Ended {
                status: "Failed".into(),
                code: "ContainerAppProvisioningFailed".into(),
                message: "image pull failed".into(),
                target: Some("web".into())
            }
        );
        assert_eq!(
            operation_state(br#"{"status":"Canceled"}"#).unwrap(),
            OperationState::Ended {
                status: "Canceled".into(),
                code: "OperationCanceled".into(),
                message: "(no message)".into(),
                target: None
            }
        );
        assert!(operation_state(b"<html>").is_err());
        assert!(operation_state(b"{}").is_err());
    }

    #[test]
    fn links_are_followed_on_the_resource_manager_only() {
        let base = Url::parse("https://management.azure.com/").unwrap();
        let ok = same_origin(
            &base,
            "https://MANAGEMENT.azure.com:443/subscriptions/s/x?api-version=1&$skiptoken=a",
            "nextLink",
        );
        assert_eq!(ok.unwrap().path(), "/subscriptions/s/x");
        assert!(same_origin(&base, "/subscriptions/s/x", "nextLink").is_ok(), "relative links stay on the origin");
        for bad in [
            "https://evil.example/subscriptions/s",
            "http://management.azure.com/subscriptions/s",
            "https://management.azure.com:8443/subscriptions/s",
            "https://management.azure.com.evil.example/subscriptions/s",
            "https://user:pw@management.azure.com/subscriptions/s",
            "//evil.example/subscriptions/s",
        ] {
            let err = same_origin(&base, bad, "nextLink").unwrap_err();
            assert!(matches!(err, AzureError::Refused(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn empty_bodies_read_as_null() {
        let v: Option<Value> = parse(b"", "POST", "/p").unwrap();
        assert_eq!(v, None);
        parse::<()>(b"  ", "POST", "/p").unwrap();
        let err = parse::<Value>(b"<html>", "GET", "/p").unwrap_err();
        assert!(err.to_string().contains("<html>"));
    }

    #[test]
    fn provisioning_states() {
        assert_eq!(
            provisioning_state(br#"{"properties":{"provisioningState":"InProgress"}}"#).as_deref(),
            Some("InProgress")
        );
        assert_eq!(provisioning_state(b"{}"), None);
        assert!(is_terminal_provisioning("Succeeded") && is_terminal_provisioning("failed"));
        assert!(!is_terminal_provisioning("InProgress"));
    }
}
