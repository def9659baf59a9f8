//! An OCI distribution client: manifests and indexes, blobs, cross-repository mounts, tag listing
//! with paging, and the OCI 1.1 referrers API with the referrers tag-schema fallback.
//!
//! Digest checks use `HEAD`, which costs no pull quota. Every registry host has a request budget
//! (a token bucket). Idempotent requests that meet `429`, a server error, a dropped connection or
//! a timeout are tried again a few times ([`ClientOptions::max_retries`]), after the
//! `Retry-After` the registry asked for or with exponential backoff and jitter ([`retry`]);
//! then the error is transient ([`RegistryError::is_transient`]) and the caller's own backoff
//! takes over. A registry that asked to wait (`Retry-After`) when a request was given up on gets
//! no request until then. Every request has a connect timeout and a total timeout. `401`
//! answers are met with Basic credentials or the bearer token flow, and tokens are cached per
//! registry host and scope until they expire.
//!
//! Credentials stay where they belong:
//! - registries are reached over HTTPS, except hosts configured by name as plain-HTTP
//!   ([`ClientOptions::plain_http`]); there is no implicit exception for loopback names;
//! - the `Authorization` header (Basic credentials or a bearer token) is sent only to the origin
//!   (scheme, host and port) of the registry the credentials are for. Redirects are followed here,
//!   not by the HTTP library, and a redirect or an upload `Location` on another host (a storage
//!   host serving blobs, for instance) is requested without it; redirects from HTTPS to HTTP are
//!   refused;
//! - Basic credentials go to a token endpoint (`realm`) over HTTPS, or over plain HTTP only when
//!   both the registry and the realm's host are configured as plain-HTTP by name; otherwise the
//!   token request is refused ([`RegistryError::Insecure`]). Without credentials the token is
//!   requested anonymously.

pub mod acr;
pub mod artifact;
pub mod auth;
pub(crate) mod budget;
pub mod content;
pub use budget::urgent;
pub mod error;
pub mod retry;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};

pub use auth::Credentials;
use auth::{Challenge, TokenResponse, parse_challenge};
use budget::Budget;
pub use error::RegistryError;
pub use retry::Cause;
use retry::{Decision, RetryPolicy};
use types::{Descriptor, Fetched, ImageIndex, MANIFEST_ACCEPT, OCI_INDEX};

/// How the client talks to registries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Credentials per registry host (`host[:port]`).
    pub credentials: BTreeMap<String, Credentials>,
    /// Hosts (`host[:port]`, as in image references) reached over plain HTTP; every other host,
    /// loopback included, is reached over HTTPS. A token endpoint on plain HTTP receives Basic
    /// credentials only when both its host and the registry's are listed here.
    pub plain_http: BTreeSet<String>,
    /// Requests per second each registry host may receive (burst: one second's worth).
    pub requests_per_second: f64,
    /// Retries of an idempotent request (`GET`, `HEAD`, `PUT`, `DELETE`) answered with `429` or a
    /// server error, or whose connection failed or timed out; the attempts are this plus one.
    pub max_retries: u32,
    /// The longest one request may take, from connecting to the end of the answer's body.
    pub timeout: Duration,
    /// The longest connecting to a registry may take.
    pub connect_timeout: Duration,
    /// The longest `Retry-After` waited for within a request. When a request is given up on
    /// while the registry asked to wait (longer than this, or after the last attempt), the
    /// registry gets no request from this client until the wait is over; callers get a transient
    /// error that says how long is left.
    pub max_retry_after: Duration,
    /// Registry hosts (`host[:port]`, Azure Container Registry login servers) whose credentials
    /// are an Entra ID identity, through ACR's token exchange ([`acr`]). They take precedence over
    /// [`ClientOptions::credentials`] for the same host.
    pub acr_identity: BTreeMap<String, Arc<dyn acr::EntraTokenSource>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            credentials: BTreeMap::new(),
            plain_http: BTreeSet::new(),
            requests_per_second: 20.0,
            max_retries: 2,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            acr_identity: BTreeMap::new(),
        }
    }
}

/// A repository in a registry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Repository {
    /// Registry host with port.
    pub host: String,
    /// Repository path.
    pub name: String,
}

impl Repository {
    /// `host/name`.
    pub fn new(host: impl Into<String>, name: impl Into<String>) -> Self {
        Self { host: host.into(), name: name.into() }
    }
}

impl From<&tidegate_core::ImageRef> for Repository {
    fn from(r: &tidegate_core::ImageRef) -> Self {
        Self::new(r.registry.clone(), r.repository.clone())
    }
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.host, self.name)
    }
}

/// The registry client. Cheap to share behind an `Arc`.
pub struct RegistryClient {
    http: reqwest::Client,
    options: ClientOptions,
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
    /// ACR refresh tokens per registry host.
    refresh_tokens: Mutex<HashMap<String, (String, Instant)>>,
    budgets: Mutex<HashMap<String, Arc<Budget>>>,
    requests: Mutex<HashMap<String, Arc<AtomicU64>>>,
    retries: Mutex<HashMap<String, RetryStats>>,
    /// Hosts that asked (`Retry-After`) to be left alone, and until when.
    holds: Mutex<HashMap<String, Instant>>,
    /// Small manifests and blobs read or pushed by digest ([`content`]).
    content: content::ContentCache,
    /// Hosts that answered 404 to the referrers API (they have none), and when.
    no_referrers_api: Mutex<HashMap<String, Instant>>,
}

/// How long a registry that has no referrers API is asked through the tag schema only, before
/// its API is tried again (it may have been upgraded).
pub const REFERRERS_API_RECHECK: Duration = Duration::from_secs(600);

/// The retries a client made to one host, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryStats {
    /// Retries by what made the previous attempt fail.
    pub by_cause: BTreeMap<Cause, u64>,
    /// The wait before the latest retry.
    pub last_wait: Option<Duration>,
    /// Requests not sent because the host had asked to be left alone for longer.
    pub held_back: u64,
}

impl RetryStats {
    /// Retries of every cause.
    pub fn total(&self) -> u64 {
        self.by_cause.values().sum()
    }
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").field("options", &self.options).finish_non_exhaustive()
    }
}

/// What a request is allowed to do, for the token scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Pull,
    Push,
}

type Result<T> = std::result::Result<T, RegistryError>;

impl RegistryClient {
    /// A client with `options`.
    pub fn new(options: ClientOptions) -> Result<Self> {
        crate::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            // Redirects are followed by `send`, which decides per hop whether credentials go along.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| RegistryError::Transport { host: String::new(), message: e.to_string() })?;
        Ok(Self {
            http,
            options,
            tokens: Mutex::default(),
            refresh_tokens: Mutex::default(),
            budgets: Mutex::default(),
            requests: Mutex::default(),
            retries: Mutex::default(),
            holds: Mutex::default(),
            content: Default::default(),
            no_referrers_api: Mutex::default(),
        })
    }

    /// The retries made to `host` so far.
    pub fn retries(&self, host: &str) -> RetryStats {
        self.retries.lock().unwrap_or_else(|e| e.into_inner()).get(host).cloned().unwrap_or_default()
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.options.max_retries.saturating_add(1),
            base: Duration::from_millis(250),
            max_backoff: Duration::from_secs(10),
            max_retry_after: self.options.max_retry_after,
        }
    }

    /// After the `attempt`-th attempt to `host` failed with `cause`: waits and returns `true`
    /// when it is to be tried again, else returns `false` at once.
    async fn pause(
        &self,
        host: &str,
        attempt: u32,
        idempotent: bool,
        cause: Cause,
        retry_after: Option<Duration>,
    ) -> bool {
        match retry::decide(&self.retry_policy(), attempt, idempotent, retry_after, rand::random::<f64>()) {
            Decision::Retry(wait) => {
                {
                    let mut retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
                    let stats = retries.entry(host.to_string()).or_default();
                    *stats.by_cause.entry(cause).or_default() += 1;
                    stats.last_wait = Some(wait);
                }
                tracing::debug!(%host, cause = cause.describe(), ?wait, attempt, "registry request failed; retrying");
                tokio::time::sleep(wait).await;
                true
            }
            Decision::GiveUp => false,
        }
    }

    /// After giving up on a request to `host` that asked to wait `retry_after`: `host` gets no
    /// request until the wait is over.
    fn hold(&self, host: &str, retry_after: Option<Duration>) {
        if let Some(until) = retry::hold_until(Instant::now(), retry_after) {
            tracing::info!(%host, ?retry_after, "registry asked to be left alone; holding requests back");
            self.holds.lock().unwrap_or_else(|e| e.into_inner()).insert(host.to_string(), until);
        }
    }

    /// Refuses, without sending anything, a request to a host that asked to be left alone.
    fn check_hold(&self, repo: &Repository, host: &str) -> Result<()> {
        let until = self.holds.lock().unwrap_or_else(|e| e.into_inner()).get(host).copied();
        match retry::still_held(Instant::now(), until) {
            Some(left) => {
                self.retries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(host.to_string())
                    .or_default()
                    .held_back += 1;
                Err(RegistryError::RateLimited {
                    repository: repo.to_string(),
                    host: host.to_string(),
                    attempts: 0,
                    retry_after: Some(left),
                })
            }
            None => Ok(()),
        }
    }

    /// The error for a request to `host` that failed without an answer after `attempts` attempts.
    fn transport_error(
        &self,
        host: &str,
        method: &Method,
        url: &reqwest::Url,
        attempts: u32,
        e: &reqwest::Error,
    ) -> RegistryError {
        let request = format!("{method} {}", url.path());
        if e.is_timeout() {
            let after = if e.is_connect() { self.options.connect_timeout } else { self.options.timeout };
            return RegistryError::Timeout { host: host.to_string(), request, after, attempts };
        }
        let tries = if attempts > 1 { format!(" (after {attempts} attempts)") } else { String::new() };
        RegistryError::Transport { host: host.to_string(), message: format!("{request}{tries}: {}", error_chain(e)) }
    }

    /// Requests sent to `host` so far (each HTTP request counts, retries and token requests to
    /// the registry host included).
    pub fn request_count(&self, host: &str) -> u64 {
        self.counter(host).load(Ordering::SeqCst)
    }

    fn counter(&self, host: &str) -> Arc<AtomicU64> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry(host.to_string()).or_default().clone()
    }

    fn budget(&self, host: &str) -> Arc<Budget> {
        self.budgets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Budget::new(self.options.requests_per_second)))
            .clone()
    }

    /// Whether `host` (`host[:port]`) is configured, by name, as reached over plain HTTP.
    fn is_plain_http(&self, host: &str) -> bool {
        self.options.plain_http.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// `http://host` for hosts configured as plain-HTTP, else `https://host`.
    fn base(&self, host: &str) -> String {
        let scheme = if self.is_plain_http(host) { "http" } else { "https" };
        format!("{scheme}://{host}")
    }

    /// The registry's origin: the only place its credentials and tokens are sent to.
    fn registry_url(&self, repo: &Repository) -> Result<reqwest::Url> {
        let base = self.base(&repo.host);
        match reqwest::Url::parse(&base) {
            Ok(url)
                if url.username().is_empty()
                    && url.password().is_none()
                    && url.path() == "/"
                    && url.query().is_none()
                    && url.host_str().is_some() =>
            {
                Ok(url)
            }
            _ => Err(RegistryError::Protocol {
                repository: repo.to_string(),
                message: format!("{:?} is not a registry host[:port]", repo.host),
            }),
        }
    }

    /// Whether Basic credentials may be sent to the token endpoint `realm` of `repo`'s registry:
    /// over HTTPS always, over plain HTTP only when the registry and the realm's host are both
    /// configured as plain-HTTP by name. Other schemes never.
    fn may_send_credentials_to(&self, repo: &Repository, realm: &reqwest::Url) -> bool {
        match realm.scheme() {
            "https" => true,
            "http" => {
                self.is_plain_http(&repo.host)
                    && self
                        .options
                        .plain_http
                        .iter()
                        .filter_map(|h| reqwest::Url::parse(&format!("http://{h}")).ok())
                        .any(|configured| same_origin(&configured, realm))
            }
            _ => false,
        }
    }

    /// Sends a request with budget, auth and retries. `body` is cloned for retries.
    async fn send(
        &self,
        repo: &Repository,
        access: Access,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        let scope = format!("repository:{}:{}", repo.name, if access == Access::Push { "pull,push" } else { "pull" });
        let registry = self.registry_url(repo)?;
        let mut target = registry.join(url).map_err(|e| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("bad URL {url}: {e}"),
        })?;
        check_scheme(repo, &registry, &target)?;
        let credentials = self.options.credentials.get(&repo.host).cloned().unwrap_or_default();
        let mut authorization = self.cached_token(&repo.host, &scope).map(|t| format!("Bearer {t}"));
        let mut answered_challenge = false;
        // The attempt in progress, from 1.
        let mut attempt = 1;
        let mut redirects = 0;
        let mut method = method;
        let mut body = body;
        loop {
            // Credentials and tokens go to the registry's own origin only, never to another host
            // a redirect or an upload `Location` points at.
            let to_registry = same_origin(&target, &registry);
            let host = if to_registry { repo.host.clone() } else { authority(&target) };
            self.check_hold(repo, &host)?;
            self.budget(&host).take().await;
            let mut request = self.http.request(method.clone(), target.clone()).headers(headers.clone());
            if to_registry && let Some(value) = &authorization {
                request = request.header(AUTHORIZATION, value);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            self.counter(&host).fetch_add(1, Ordering::SeqCst);
            let idempotent = retry::idempotent(&method);
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    if let Some(cause) = transport_cause(&e)
                        && self.pause(&host, attempt, idempotent, cause, None).await
                    {
                        attempt += 1;
                        continue;
                    }
                    return Err(self.transport_error(&host, &method, &target, attempt, &e));
                }
            };
            let status = response.status();
            if let Some(next) = redirect_target(repo, &target, &response, &mut redirects)? {
                check_scheme(repo, &target, &next)?;
                tracing::debug!(host = %repo.host, %status, to = %authority(&next), "following a redirect");
                // 303, and 301/302 after a POST, continue as GET (HEAD stays HEAD) without the body.
                let as_get = status == StatusCode::SEE_OTHER
                    || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND) && method == Method::POST);
                if as_get && method != Method::HEAD {
                    method = Method::GET;
                    body = None;
                }
                target = next;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && to_registry && !answered_challenge {
                answered_challenge = true;
                let challenge =
                    response.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).and_then(parse_challenge);
                authorization = match challenge {
                    Some(Challenge::Basic) => credentials.basic_header(),
                    Some(Challenge::Bearer { realm, service, scope: asked }) => {
                        let scope = asked.unwrap_or_else(|| scope.clone());
                        let token = match self.options.acr_identity.get(&repo.host) {
                            Some(identity) => {
                                self.acr_token(repo, identity.as_ref(), service.as_deref(), &scope).await?
                            }
                            None => self.fetch_token(repo, &credentials, &realm, service.as_deref(), &scope).await?,
                        };
                        Some(format!("Bearer {token}"))
                    }
                    None => None,
                };
                if authorization.is_some() {
                    continue;
                }
            }
            if let Some(cause) = retry::cause_of(status) {
                let retry_after = retry_after(response.headers());
                if self.pause(&host, attempt, idempotent, cause, retry_after).await {
                    attempt += 1;
                    continue;
                }
                self.hold(&host, retry_after);
                return Err(error::from_response_after(repo, &host, response, attempt, retry_after).await);
            }
            if status.is_success()
                || status == StatusCode::NOT_FOUND
                || status == StatusCode::ACCEPTED
                || status == StatusCode::CREATED
            {
                return Ok(response);
            }
            return Err(error::from_response(repo, response).await);
        }
    }

    fn cached_token(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(&(host.to_string(), scope.to_string()))
            .filter(|(_, until)| *until > Instant::now())
            .map(|(t, _)| t.clone())
    }

    /// An access token for `scope` through ACR's token exchange with the Entra ID identity
    /// configured for `repo`'s host. Both requests go to the registry's own origin. A refresh
    /// token the registry no longer accepts is exchanged again, once.
    async fn acr_token(
        &self,
        repo: &Repository,
        identity: &dyn acr::EntraTokenSource,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String> {
        let origin = self.registry_url(repo)?;
        let service = service.unwrap_or(&repo.host);
        let url = origin.join("oauth2/token").map_err(|e| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("no token URL: {e}"),
        })?;
        let mut exchanged_now = false;
        loop {
            let refresh = match self.cached_refresh_token(&repo.host) {
                Some(token) => token,
                None => {
                    exchanged_now = true;
                    self.acr_exchange(repo, identity, &origin, service).await?
                }
            };
            let response = self.post_form(repo, &url, &acr::token_form(service, scope, &refresh)).await?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !exchanged_now {
                // The refresh token expired or was revoked early: exchange the Entra token again.
                self.refresh_tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(&repo.host);
                continue;
            }
            if !status.is_success() {
                return Err(RegistryError::Denied {
                    repository: repo.to_string(),
                    message: format!(
                        "the registry refused an access token for {scope} to the Azure identity {} ({status}{}); \
                         give the identity a role on the registry (AcrPull to pull, AcrPush to push)",
                        identity.describe(),
                        error_excerpt(response).await
                    ),
                });
            }
            let body: TokenResponse = response.json().await.map_err(|e| RegistryError::Protocol {
                repository: repo.to_string(),
                message: format!("{url}: {e}"),
            })?;
            let token = body.access_token.or(body.token).ok_or_else(|| RegistryError::Protocol {
                repository: repo.to_string(),
                message: format!("{url} returned no access_token"),
            })?;
            let fallback = token_lifetime(body.expires_in);
            let lifetime = acr::lifetime(&token, fallback);
            self.tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((repo.host.clone(), scope.to_string()), (token.clone(), Instant::now() + lifetime));
            return Ok(token);
        }
    }

    /// Exchanges the identity's Entra ID token for an ACR refresh token, and keeps it.
    async fn acr_exchange(
        &self,
        repo: &Repository,
        identity: &dyn acr::EntraTokenSource,
        origin: &reqwest::Url,
        service: &str,
    ) -> Result<String> {
        let entra = identity.token().await.map_err(|e| RegistryError::Denied {
            repository: repo.to_string(),
            message: format!("no Entra ID token for the Azure identity {}: {e}", identity.describe()),
        })?;
        let url = origin.join("oauth2/exchange").map_err(|e| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("no exchange URL: {e}"),
        })?;
        let tenant = identity.tenant();
        let response = self.post_form(repo, &url, &acr::exchange_form(service, tenant.as_deref(), &entra)).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(RegistryError::Denied {
                repository: repo.to_string(),
                message: format!(
                    "the registry refused to exchange the Entra ID token of {} ({status}{}); check that {} is an \
                     Azure Container Registry, that the identity has a role on it, and --acr-token-scope",
                    identity.describe(),
                    error_excerpt(response).await,
                    repo.host
                ),
            });
        }
        let body: acr::ExchangeResponse = response
            .json()
            .await
            .map_err(|e| RegistryError::Protocol { repository: repo.to_string(), message: format!("{url}: {e}") })?;
        let refresh = body.refresh_token.filter(|t| !t.is_empty()).ok_or_else(|| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("{url} returned no refresh_token"),
        })?;
        let until = Instant::now() + acr::lifetime(&refresh, Duration::from_secs(600));
        self.refresh_tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(repo.host.clone(), (refresh.clone(), until));
        Ok(refresh)
    }

    fn cached_refresh_token(&self, host: &str) -> Option<String> {
        let tokens = self.refresh_tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.get(host).filter(|(_, until)| *until > Instant::now()).map(|(t, _)| t.clone())
    }

    /// An ACR refresh token for `repo`'s registry (exchanged if none is kept), for tools that
    /// sign in with Basic credentials ([`acr::REFRESH_TOKEN_USER`] and the refresh token), such
    /// as Trivy. `None` when the host has no Entra ID identity configured.
    pub async fn acr_refresh_token(&self, repo: &Repository) -> Result<Option<String>> {
        let Some(identity) = self.options.acr_identity.get(&repo.host) else {
            return Ok(None);
        };
        if let Some(token) = self.cached_refresh_token(&repo.host) {
            return Ok(Some(token));
        }
        let origin = self.registry_url(repo)?;
        Ok(Some(self.acr_exchange(repo, identity.as_ref(), &origin, &repo.host).await?))
    }

    /// POSTs a form to the registry's own origin (budgeted and counted like every request to it;
    /// no redirects: the form carries tokens).
    async fn post_form(
        &self,
        repo: &Repository,
        url: &reqwest::Url,
        form: &[(&'static str, String)],
    ) -> Result<reqwest::Response> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form.iter()).finish();
        self.check_hold(repo, &repo.host)?;
        self.budget(&repo.host).take().await;
        self.counter(&repo.host).fetch_add(1, Ordering::SeqCst);
        // A POST is not repeated here: the caller's backoff decides when to try again.
        let response = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(&repo.host, &Method::POST, url, 1, &e))?;
        if retry::cause_of(response.status()).is_some() {
            let retry_after = retry_after(response.headers());
            self.hold(&repo.host, retry_after);
            return Err(error::from_response_after(repo, &repo.host, response, 1, retry_after).await);
        }
        Ok(response)
    }

    async fn fetch_token(
        &self,
        repo: &Repository,
        credentials: &Credentials,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String> {
        let realm_url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("the token endpoint {realm:?} is not a URL: {e}"),
        })?;
        if !matches!(realm_url.scheme(), "https" | "http") {
            return Err(RegistryError::Insecure {
                repository: repo.to_string(),
                message: format!("the token endpoint {realm} is neither HTTPS nor HTTP"),
            });
        }
        let basic = credentials.basic_header();
        if basic.is_some() && !self.may_send_credentials_to(repo, &realm_url) {
            return Err(RegistryError::Insecure {
                repository: repo.to_string(),
                message: format!(
                    "the token endpoint {realm} is plain HTTP, and the credentials for {} are sent over plain HTTP \
                     only when both the registry and the token endpoint's host ({}) are configured as plain-HTTP \
                     registries (--plain-http-registry)",
                    repo.host,
                    authority(&realm_url)
                ),
            });
        }
        let mut url = realm_url.clone();
        url.query_pairs_mut().append_pair("scope", scope);
        if let Some(service) = service {
            url.query_pairs_mut().append_pair("service", service);
        }
        let mut redirects = 0;
        let mut attempt = 1;
        let response = loop {
            let token_host = authority(&url);
            self.check_hold(repo, &token_host)?;
            let mut request = self.http.get(url.clone());
            // Basic credentials go to the realm's own origin only, not where it redirects to.
            if same_origin(&url, &realm_url)
                && let Some(basic) = &basic
            {
                request = request.header(AUTHORIZATION, basic);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    if let Some(cause) = transport_cause(&e)
                        && self.pause(&token_host, attempt, true, cause, None).await
                    {
                        attempt += 1;
                        continue;
                    }
                    return Err(match self.transport_error(&token_host, &Method::GET, &url, attempt, &e) {
                        RegistryError::Transport { host, message } => {
                            RegistryError::Transport { host, message: format!("token endpoint {realm}: {message}") }
                        }
                        other => other,
                    });
                }
            };
            if let Some(next) = redirect_target(repo, &url, &response, &mut redirects)? {
                check_scheme(repo, &url, &next)?;
                url = next;
                continue;
            }
            if let Some(cause) = retry::cause_of(response.status()) {
                let retry_after = retry_after(response.headers());
                if self.pause(&token_host, attempt, true, cause, retry_after).await {
                    attempt += 1;
                    continue;
                }
                self.hold(&token_host, retry_after);
                return Err(error::from_response_after(repo, &token_host, response, attempt, retry_after).await);
            }
            break response;
        };
        if !response.status().is_success() {
            return Err(RegistryError::Denied {
                repository: repo.to_string(),
                message: format!(
                    "the token endpoint {realm} refused the credentials for {scope} ({})",
                    response.status()
                ),
            });
        }
        let body: TokenResponse = response.json().await.map_err(|e| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("token endpoint {realm}: {e}"),
        })?;
        let token = body.token.or(body.access_token).ok_or_else(|| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("token endpoint {realm} returned no token"),
        })?;
        let lifetime = token_lifetime(body.expires_in);
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((repo.host.clone(), scope.to_string()), (token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    /// `HEAD` a manifest by tag or digest: its descriptor, or `None` when it does not exist.
    pub async fn head_manifest(&self, repo: &Repository, reference: &str) -> Result<Option<Descriptor>> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base(&repo.host), repo.name);
        let response = self.send(repo, Access::Pull, Method::HEAD, &url, accept(MANIFEST_ACCEPT), None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let headers = response.headers();
        let digest = header(headers, "docker-content-digest").ok_or_else(|| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("HEAD {reference} answered without Docker-Content-Digest"),
        })?;
        if reference.starts_with("sha256:") && digest != reference {
            return Err(RegistryError::BadDigest {
                repository: repo.to_string(),
                expected: reference.to_string(),
                actual: digest,
            });
        }
        Ok(Some(Descriptor {
            media_type: header(headers, CONTENT_TYPE.as_str()).unwrap_or_default(),
            digest,
            size: header(headers, "content-length").and_then(|l| l.parse().ok()).unwrap_or(0),
            artifact_type: None,
            annotations: None,
            platform: None,
        }))
    }

    /// Fetches a manifest or index by tag or digest, checking its digest.
    pub async fn get_manifest(&self, repo: &Repository, reference: &str) -> Result<Fetched> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base(&repo.host), repo.name);
        let response = self.send(repo, Access::Pull, Method::GET, &url, accept(MANIFEST_ACCEPT), None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound { what: format!("manifest {repo}:{reference}") });
        }
        let media_type = header(response.headers(), CONTENT_TYPE.as_str()).unwrap_or_default();
        let served = header(response.headers(), "docker-content-digest");
        let url = response.url().clone();
        let bytes =
            response.bytes().await.map_err(|e| self.transport_error(&repo.host, &Method::GET, &url, 1, &e))?.to_vec();
        let digest = sha256(&bytes);
        let expected = if reference.starts_with("sha256:") { Some(reference.to_string()) } else { served };
        if let Some(expected) = expected.filter(|e| e.starts_with("sha256:"))
            && expected != digest
        {
            return Err(RegistryError::BadDigest { repository: repo.to_string(), expected, actual: digest });
        }
        let media_type = if media_type.is_empty() || media_type == "application/json" {
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_string))
                .unwrap_or(media_type)
        } else {
            media_type
        };
        Ok(Fetched { bytes, media_type, digest })
    }

    /// The manifest `digest` of `repo`, from what this client already read by that digest if it
    /// can (see [`content`]): for content whose deletion since does not matter to the caller. A
    /// reference that is not a digest is fetched.
    pub async fn get_manifest_by_digest(&self, repo: &Repository, digest: &str) -> Result<Fetched> {
        let name = repo.to_string();
        if let Some(held) = self.content.get(&name, digest) {
            return Ok(Fetched { bytes: held.bytes.to_vec(), media_type: held.media_type, digest: digest.to_string() });
        }
        let fetched = self.get_manifest(repo, digest).await?;
        if digest.starts_with("sha256:") {
            let held =
                content::Content { bytes: fetched.bytes.as_slice().into(), media_type: fetched.media_type.clone() };
            self.content.keep(&name, digest, held);
        }
        Ok(fetched)
    }

    /// The blob `digest` of `repo`, from what this client already read or pushed if it can (see
    /// [`content`]): for content whose deletion since does not matter to the caller.
    pub async fn get_blob_by_digest(&self, repo: &Repository, digest: &str) -> Result<Vec<u8>> {
        let name = repo.to_string();
        if let Some(held) = self.content.get(&name, digest) {
            return Ok(held.bytes.to_vec());
        }
        let bytes = self.get_blob(repo, digest).await?;
        self.content.keep(
            &name,
            digest,
            content::Content { bytes: bytes.as_slice().into(), media_type: String::new() },
        );
        Ok(bytes)
    }

    /// Uploads a manifest under `reference` (a tag, or its own digest). Returns its digest, and
    /// whether the registry processed its `subject` (the `OCI-Subject` header of OCI 1.1).
    pub async fn put_manifest(
        &self,
        repo: &Repository,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(String, bool)> {
        let digest = sha256(bytes);
        let url = format!("{}/v2/{}/manifests/{reference}", self.base(&repo.host), repo.name);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            media_type.parse().map_err(|_| RegistryError::Protocol {
                repository: repo.to_string(),
                message: format!("bad media type {media_type}"),
            })?,
        );
        let response = self.send(repo, Access::Push, Method::PUT, &url, headers, Some(bytes.to_vec())).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(error::from_response(repo, response).await);
        }
        let subject_processed = response.headers().contains_key("oci-subject");
        Ok((digest, subject_processed))
    }

    /// Whether a blob exists (`HEAD`).
    pub async fn blob_exists(&self, repo: &Repository, digest: &str) -> Result<bool> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base(&repo.host), repo.name);
        let response = self.send(repo, Access::Pull, Method::HEAD, &url, HeaderMap::new(), None).await?;
        Ok(response.status().is_success())
    }

    /// Downloads a blob and checks its digest.
    pub async fn get_blob(&self, repo: &Repository, digest: &str) -> Result<Vec<u8>> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base(&repo.host), repo.name);
        let response = self.send(repo, Access::Pull, Method::GET, &url, HeaderMap::new(), None).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound { what: format!("blob {repo}@{digest}") });
        }
        let url = response.url().clone();
        let bytes =
            response.bytes().await.map_err(|e| self.transport_error(&repo.host, &Method::GET, &url, 1, &e))?.to_vec();
        let actual = sha256(&bytes);
        if actual != digest {
            return Err(RegistryError::BadDigest {
                repository: repo.to_string(),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Uploads a blob unless it is already there (monolithic POST + PUT). Returns its digest.
    pub async fn push_blob(&self, repo: &Repository, bytes: &[u8]) -> Result<String> {
        let digest = self.upload_blob(repo, bytes).await?;
        // What this client pushed, it need not read back ([`Self::get_blob_by_digest`]).
        let held = content::Content { bytes: bytes.into(), media_type: String::new() };
        self.content.keep(&repo.to_string(), &digest, held);
        Ok(digest)
    }

    /// [`Self::push_blob`] without keeping the content.
    async fn upload_blob(&self, repo: &Repository, bytes: &[u8]) -> Result<String> {
        let digest = sha256(bytes);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        let url = format!("{}/v2/{}/blobs/uploads/", self.base(&repo.host), repo.name);
        let response = self.send(repo, Access::Push, Method::POST, &url, HeaderMap::new(), None).await?;
        let location = self.upload_location(repo, &response)?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, reqwest::header::HeaderValue::from_static("application/octet-stream"));
        let put = format!("{location}{separator}digest={digest}");
        let response = self.send(repo, Access::Push, Method::PUT, &put, headers, Some(bytes.to_vec())).await?;
        if response.status() != StatusCode::CREATED {
            // A PUT repeated after an answer was lost finds its upload session already closed;
            // the blob, keyed by its digest, is there all the same.
            if response.status() == StatusCode::NOT_FOUND && self.blob_exists(repo, &digest).await? {
                return Ok(digest);
            }
            return Err(error::from_response(repo, response).await);
        }
        Ok(digest)
    }

    /// Mounts a blob from another repository of the same registry without copying it. Returns
    /// `false` when the registry would not mount (then upload it instead).
    pub async fn mount_blob(&self, repo: &Repository, from: &str, digest: &str) -> Result<bool> {
        let url = format!("{}/v2/{}/blobs/uploads/?mount={digest}&from={from}", self.base(&repo.host), repo.name);
        let response = self.send(repo, Access::Push, Method::POST, &url, HeaderMap::new(), None).await?;
        match response.status() {
            StatusCode::CREATED => Ok(true),
            StatusCode::ACCEPTED => {
                // The registry opened an upload instead; cancel it, the caller uploads.
                if let Ok(location) = self.upload_location(repo, &response) {
                    let _ = self.send(repo, Access::Push, Method::DELETE, &location, HeaderMap::new(), None).await;
                }
                Ok(false)
            }
            _ => Err(error::from_response(repo, response).await),
        }
    }

    /// The absolute upload URL of a `Location` (absolute, or relative to the request's URL). It
    /// may name another host (a storage service); `send` then sends no credentials there.
    fn upload_location(&self, repo: &Repository, response: &reqwest::Response) -> Result<String> {
        let location = header(response.headers(), LOCATION.as_str()).ok_or_else(|| RegistryError::Protocol {
            repository: repo.to_string(),
            message: "upload started without a Location".into(),
        })?;
        response.url().join(&location).map(String::from).map_err(|e| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("upload Location {location:?}: {e}"),
        })
    }

    /// Every tag of a repository, following `Link` pagination.
    pub async fn tags(&self, repo: &Repository) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct TagList {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = format!("{}/v2/{}/tags/list?n=100", self.base(&repo.host), repo.name);
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            let response = self.send(repo, Access::Pull, Method::GET, &url, HeaderMap::new(), None).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(error::from_response(repo, response).await);
            }
            let next = header(response.headers(), "link")
                .and_then(|l| next_link(&l))
                .and_then(|path| response.url().join(&path).ok());
            let page: TagList = response.json().await.map_err(|e| RegistryError::Protocol {
                repository: repo.to_string(),
                message: format!("tag list: {e}"),
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = next.into(),
                None => return Ok(tags),
            }
        }
        Err(RegistryError::Protocol {
            repository: repo.to_string(),
            message: "tag list pagination does not end".into(),
        })
    }

    /// Manifests that refer to `digest` (signatures, SBOMs), optionally of one artifact type:
    /// the OCI 1.1 referrers API, or the `sha256-<hex>` tag-schema index where the API is absent.
    pub async fn referrers(
        &self,
        repo: &Repository,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let index: ImageIndex = match self.referrers_api_index(repo, digest).await? {
            Some(index) => index,
            None => match self.get_manifest(repo, &fallback_tag(digest)).await {
                Ok(fetched) => serde_json::from_slice(&fetched.bytes).map_err(|e| RegistryError::Protocol {
                    repository: repo.to_string(),
                    message: format!("referrers index: {e}"),
                })?,
                Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            },
        };
        Ok(index
            .manifests
            .into_iter()
            .filter(|d| artifact_type.is_none_or(|t| d.artifact_type.as_deref() == Some(t)))
            .collect())
    }

    /// Pushes an artifact manifest whose `subject` is `subject`, so that it is found among the
    /// subject's referrers: through the referrers API when the registry processes subjects, else
    /// by adding it to the `sha256-<hex>` fallback index tag.
    pub async fn push_referrer(
        &self,
        repo: &Repository,
        media_type: &str,
        manifest: &[u8],
        subject: &str,
        descriptor: Descriptor,
    ) -> Result<String> {
        let digest = sha256(manifest);
        let (_, processed) = self.put_manifest(repo, &digest, media_type, manifest).await?;
        if processed {
            // The registry took the subject in: it has the referrers API.
            self.no_referrers_api.lock().unwrap_or_else(|e| e.into_inner()).remove(&repo.host);
        }
        if processed || self.referrers_api(repo, subject).await? {
            return Ok(digest);
        }
        let tag = fallback_tag(subject);
        let mut index = match self.get_manifest(repo, &tag).await {
            Ok(fetched) => serde_json::from_slice::<ImageIndex>(&fetched.bytes).map_err(|e| {
                RegistryError::Protocol { repository: repo.to_string(), message: format!("referrers index {tag}: {e}") }
            })?,
            Err(RegistryError::NotFound { .. }) => ImageIndex {
                schema_version: 2,
                media_type: Some(OCI_INDEX.into()),
                manifests: Vec::new(),
                annotations: None,
            },
            Err(e) => return Err(e),
        };
        if !index.manifests.iter().any(|d| d.digest == digest) {
            index.manifests.push(descriptor);
            let bytes = serde_json::to_vec(&index)
                .map_err(|e| RegistryError::Protocol { repository: repo.to_string(), message: e.to_string() })?;
            self.put_manifest(repo, &tag, OCI_INDEX, &bytes).await?;
        }
        Ok(digest)
    }

    async fn referrers_api(&self, repo: &Repository, subject: &str) -> Result<bool> {
        Ok(self.referrers_api_index(repo, subject).await?.is_some())
    }

    /// The referrers of `subject` through the referrers API, or `None` when the registry has no
    /// such API (it answered 404, now or within [`REFERRERS_API_RECHECK`]: it is then not asked
    /// again meanwhile, and the tag schema is used at once).
    async fn referrers_api_index(&self, repo: &Repository, subject: &str) -> Result<Option<ImageIndex>> {
        let lacks = self
            .no_referrers_api
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&repo.host)
            .is_some_and(|at| at.elapsed() < REFERRERS_API_RECHECK);
        if lacks {
            return Ok(None);
        }
        let url = format!("{}/v2/{}/referrers/{subject}", self.base(&repo.host), repo.name);
        let response = self.send(repo, Access::Pull, Method::GET, &url, accept(OCI_INDEX), None).await?;
        let missing = response.status() == StatusCode::NOT_FOUND;
        {
            let mut hosts = self.no_referrers_api.lock().unwrap_or_else(|e| e.into_inner());
            match missing {
                true => hosts.insert(repo.host.clone(), Instant::now()),
                false => hosts.remove(&repo.host),
            };
        }
        if missing {
            return Ok(None);
        }
        let index = response.json().await.map_err(|e| RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("referrers: {e}"),
        })?;
        Ok(Some(index))
    }
}

/// Redirects followed per request.
const MAX_REDIRECTS: u32 = 5;

/// Same scheme, host and port (the default port of the scheme when none is written).
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `host[:port]` of a URL.
fn authority(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Refuses a URL that is neither HTTP nor HTTPS, or plain HTTP where `from` is HTTPS (a
/// downgrade that would expose what is sent, and what comes back, to the network).
fn check_scheme(repo: &Repository, from: &reqwest::Url, to: &reqwest::Url) -> Result<()> {
    match (from.scheme(), to.scheme()) {
        (_, "https") | ("http", "http") => Ok(()),
        ("https", "http") => Err(RegistryError::Insecure {
            repository: repo.to_string(),
            message: format!("refusing to go from HTTPS to plain HTTP ({})", authority(to)),
        }),
        (_, other) => Err(RegistryError::Insecure {
            repository: repo.to_string(),
            message: format!("refusing to follow a {other}: URL"),
        }),
    }
}

/// Where a redirect answer points (its `Location` resolved against the request's URL), counting
/// it against [`MAX_REDIRECTS`]; `None` for any other answer.
fn redirect_target(
    repo: &Repository,
    current: &reqwest::Url,
    response: &reqwest::Response,
    redirects: &mut u32,
) -> Result<Option<reqwest::Url>> {
    let status = response.status();
    let redirect = matches!(
        status,
        StatusCode::MOVED_PERMANENTLY
            | StatusCode::FOUND
            | StatusCode::SEE_OTHER
            | StatusCode::TEMPORARY_REDIRECT
            | StatusCode::PERMANENT_REDIRECT
    );
    let Some(location) = header(response.headers(), LOCATION.as_str()).filter(|_| redirect) else {
        return Ok(None);
    };
    *redirects += 1;
    if *redirects > MAX_REDIRECTS {
        return Err(RegistryError::Protocol {
            repository: repo.to_string(),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        });
    }
    current.join(&location).map(Some).map_err(|e| RegistryError::Protocol {
        repository: repo.to_string(),
        message: format!("redirect to {location:?}: {e}"),
    })
}

/// The referrers tag-schema fallback tag of a digest: `sha256-<hex>`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// `sha256:` digest of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn accept(value: &'static str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, reqwest::header::HeaderValue::from_static(value));
    headers
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The `rel="next"` target of a `Link` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find(|part| part.contains("rel=\"next\"") || part.contains("rel=next")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = start + part[start..].find('>')?;
        Some(part[start..end].to_string())
    })
}

/// How long a registry token is used: what the token endpoint says (`expires_in`, default 60 s),
/// renewed 10 s early, at least 10 s and at most a day whatever it says.
fn token_lifetime(expires_in: Option<u64>) -> Duration {
    Duration::from_secs(expires_in.unwrap_or(60).saturating_sub(10).clamp(10, 86_400))
}

/// What a `Retry-After` header asks for, from now.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header(headers, RETRY_AFTER.as_str()).and_then(|value| retry::parse_retry_after(&value, SystemTime::now()))
}

/// Whether a request that got no answer is worth repeating, and why.
fn transport_cause(e: &reqwest::Error) -> Option<Cause> {
    if e.is_timeout() {
        Some(Cause::Timeout)
    } else if e.is_connect() || e.is_request() {
        Some(Cause::Connection)
    } else {
        None
    }
}

/// An error with its causes, `a: b: c` (reqwest's own message omits the underlying reason).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// `: <the first 300 characters of the body>` of an error answer, or nothing when it is empty.
async fn error_excerpt(response: reqwest::Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let excerpt: String = text.chars().take(300).collect();
    format!(": {excerpt}")
}

/// What the controller reads from a registry outside a build: the tags of a repository and the
/// digest a tag points at. [`RegistryClient`] is the product's; tests use in-memory doubles
/// (crate `tidegate-test-support`).
#[async_trait::async_trait]
pub trait Resolver: Send + Sync {
    /// The repository's tags.
    async fn tags(&self, repo: &Repository) -> Result<Vec<String>>;
    /// The descriptor `reference` (a tag or digest) resolves to, or `None` when it does not exist.
    async fn head_manifest(&self, repo: &Repository, reference: &str) -> Result<Option<Descriptor>>;
}

#[async_trait::async_trait]
impl Resolver for RegistryClient {
    async fn tags(&self, repo: &Repository) -> Result<Vec<String>> {
        RegistryClient::tags(self, repo).await
    }

    async fn head_manifest(&self, repo: &Repository, reference: &str) -> Result<Option<Descriptor>> {
        RegistryClient::head_manifest(self, repo, reference).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_and_retry_headers() {
        assert_eq!(
            next_link(r#"</v2/shop/app/tags/list?n=100&last=v99>; rel="next""#).as_deref(),
            Some("/v2/shop/app/tags/list?n=100&last=v99")
        );
        assert_eq!(next_link(r#"<https://r.io/v2/x/tags/list?last=a>; rel="prev""#), None);
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", "3".parse().expect("header value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after", "999".parse().expect("header value"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(999)), "the cap is the retry decision's");
    }

    fn client_with_plain_http(hosts: &[&str]) -> RegistryClient {
        RegistryClient::new(ClientOptions {
            plain_http: hosts.iter().map(|h| h.to_string()).collect(),
            ..ClientOptions::default()
        })
        .expect("client")
    }

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).expect("url")
    }

    #[test]
    fn plain_http_only_for_hosts_configured_by_name() {
        let client = client_with_plain_http(&[]);
        // No implicit loopback exception, and certainly none for names that merely start like one.
        for host in
            ["localhost.evil.com", "127.example.com", "127.0.0.1:5000", "localhost:5000", "localhost", "[::1]:5000"]
        {
            assert_eq!(client.base(host), format!("https://{host}"), "{host} is not configured as plain HTTP");
        }
        let client = client_with_plain_http(&["127.0.0.1:5000", "registry.internal"]);
        assert_eq!(client.base("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(client.base("Registry.Internal"), "http://Registry.Internal", "host names ignore case");
        assert_eq!(client.base("127.0.0.1:5001"), "https://127.0.0.1:5001", "another port is another host");
        assert_eq!(client.base("127.0.0.1"), "https://127.0.0.1");
        assert_eq!(client.base("registry.internal.evil.com"), "https://registry.internal.evil.com");
        assert_eq!(client.base("localhost.evil.com"), "https://localhost.evil.com");
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert!(same_origin(&url("https://r.io/v2/"), &url("https://R.io:443/v2/x?y")));
        assert!(!same_origin(&url("https://r.io/"), &url("http://r.io/")));
        assert!(!same_origin(&url("https://r.io/"), &url("https://r.io:5000/")));
        assert!(!same_origin(&url("https://r.io/"), &url("https://r.io.evil.com/")));
        assert!(!same_origin(&url("http://127.0.0.1:5000/"), &url("http://127.0.0.2:5000/")));
        assert_eq!(authority(&url("http://127.0.0.1:5000/v2/")), "127.0.0.1:5000");
        assert_eq!(authority(&url("https://r.io/v2/")), "r.io");
    }

    #[test]
    fn redirects_never_downgrade_to_plain_http() {
        let repo = Repository::new("r.io", "shop/app");
        assert!(check_scheme(&repo, &url("https://r.io/"), &url("https://blob.store/x")).is_ok());
        assert!(check_scheme(&repo, &url("http://r.io/"), &url("http://blob.store/x")).is_ok());
        assert!(check_scheme(&repo, &url("http://r.io/"), &url("https://blob.store/x")).is_ok());
        assert!(matches!(
            check_scheme(&repo, &url("https://r.io/"), &url("http://r.io/v2/")),
            Err(RegistryError::Insecure { .. })
        ));
        assert!(matches!(
            check_scheme(&repo, &url("https://r.io/"), &url("file:///etc/passwd")),
            Err(RegistryError::Insecure { .. })
        ));
    }

    #[test]
    fn basic_credentials_go_to_plain_http_realms_only_when_configured_by_name() {
        let repo = Repository::new("127.0.0.1:5000", "shop/app");
        let secure = Repository::new("r.io", "shop/app");
        let client = client_with_plain_http(&["127.0.0.1:5000", "localhost:5001"]);
        assert!(client.may_send_credentials_to(&repo, &url("https://auth.example.com/token")));
        assert!(client.may_send_credentials_to(&secure, &url("https://auth.example.com/token")));
        assert!(client.may_send_credentials_to(&repo, &url("http://127.0.0.1:5000/token")));
        assert!(client.may_send_credentials_to(&repo, &url("http://localhost:5001/token")));
        assert!(!client.may_send_credentials_to(&repo, &url("http://127.0.0.2:5000/token")), "not configured");
        assert!(!client.may_send_credentials_to(&repo, &url("http://localhost.evil.com:5001/token")));
        assert!(!client.may_send_credentials_to(&repo, &url("http://127.0.0.1:80/token")));
        assert!(!client.may_send_credentials_to(&repo, &url("ftp://127.0.0.1:5000/token")));
        assert!(
            !client.may_send_credentials_to(&secure, &url("http://localhost:5001/token")),
            "an HTTPS registry's credentials never go over plain HTTP"
        );
    }

    #[test]
    fn registry_hosts_are_host_and_port_only() {
        let client = client_with_plain_http(&[]);
        assert!(client.registry_url(&Repository::new("r.io:5000", "a")).is_ok());
        for bad in ["user:pw@evil.com", "r.io/extra", "r.io?x=1", ""] {
            assert!(client.registry_url(&Repository::new(bad, "a")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn digests_and_fallback_tags() {
        assert_eq!(sha256(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(fallback_tag("sha256:abc"), "sha256-abc");
    }
}
