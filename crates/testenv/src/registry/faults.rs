//! A fault-injecting HTTP/1.1 proxy on loopback in front of a test registry: clients talk to the
//! proxy as if it were the registry, and a test decides, while they run, which requests the
//! "registry" answers with `503`, `429` and `Retry-After`, never answers, or drops.
//!
//! ```no_run
//! # async fn demo(registry: &tidegate_testenv::registry::Registry) -> Result<(), tidegate_testenv::Error> {
//! use tidegate_testenv::registry::{Fault, FaultProxy, Scope};
//! let proxy = FaultProxy::start(registry.host())?;
//! proxy.fail(Fault::Status(503), Scope::Next(2));
//! // ... a client of `proxy.host()` gets two 503s, then the registry's own answers ...
//! assert_eq!(proxy.count(&Fault::Status(503)), 2);
//! # Ok(()) }
//! ```
//!
//! Requests without a fault are forwarded unchanged, `Host` header included, so the registry
//! builds its upload `Location`s for the proxy and a client never leaves it. Nothing else of the
//! protocol is rewritten; a bearer-token realm (`RegistryAuth::Token`) is on the token server's
//! own origin, which clients reach directly, not through the proxy.
//!
//! Every request is recorded (time, method, path, the fault applied), so tests count what a
//! client sent instead of timing it. The proxy runs on a thread of its own; dropping it stops the
//! thread and closes every connection, hung ones included.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

use crate::Error;

/// What the proxy does instead of forwarding a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (e.g. `503`) and a distribution-style error body.
    Status(u16),
    /// Answer `429 Too Many Requests` with `Retry-After: <retry_after_secs>`.
    TooManyRequests {
        /// The `Retry-After` value, in seconds.
        retry_after_secs: u64,
    },
    /// Read the request and never answer (the connection stays open until the client gives up
    /// or the proxy stops).
    Hang,
    /// Close the connection without answering (with `SO_LINGER` 0: a TCP reset).
    Reset,
}

/// Which requests a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Every request, until [`FaultProxy::clear`].
    All,
    /// The next `n` requests.
    Next(u32),
    /// Requests whose path starts with this (e.g. `/v2/shop/app/`), until [`FaultProxy::clear`].
    PathPrefix(String),
}

/// One request the proxy received.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When it arrived.
    pub at: Instant,
    /// Its method.
    pub method: String,
    /// Its path and query.
    pub path: String,
    /// The fault applied, or `None` when it was forwarded.
    pub fault: Option<Fault>,
}

#[derive(Debug)]
struct Rule {
    fault: Fault,
    scope: Scope,
}

#[derive(Debug, Default)]
struct Plan {
    rules: Vec<Rule>,
    seen: Vec<Seen>,
}

impl Plan {
    /// The fault for a request to `path` (the first rule that matches; a `Next` rule is used up
    /// one request at a time), and records the request.
    fn decide(&mut self, method: &str, path: &str) -> Option<Fault> {
        let index = self.rules.iter().position(|rule| match &rule.scope {
            Scope::All => true,
            Scope::Next(n) => *n > 0,
            Scope::PathPrefix(prefix) => path.starts_with(prefix.as_str()),
        });
        let fault = index.map(|i| {
            let fault = self.rules[i].fault.clone();
            if let Scope::Next(n) = &mut self.rules[i].scope {
                *n -= 1;
                if *n == 0 {
                    self.rules.remove(i);
                }
            }
            fault
        });
        self.seen.push(Seen {
            at: Instant::now(),
            method: method.to_string(),
            path: path.to_string(),
            fault: fault.clone(),
        });
        fault
    }
}

struct Shared {
    upstream: String,
    plan: Mutex<Plan>,
    http: reqwest::Client,
}

impl Shared {
    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fault proxy. Dropping it stops it.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("addr", &self.addr).field("upstream", &self.shared.upstream).finish()
    }
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1` (a free port) in front of the registry at `upstream_host`
    /// (`127.0.0.1:PORT`, plain HTTP), forwarding everything until a fault is set.
    pub fn start(upstream_host: &str) -> Result<Self, Error> {
        let err = |what: &str, e: &dyn std::fmt::Display| Error::Start {
            component: "fault proxy".into(),
            message: format!("{what}: {e}"),
        };
        let upstream: SocketAddr = upstream_host.parse().map_err(|e| err(upstream_host, &e))?;
        if !upstream.ip().is_loopback() {
            return Err(err(upstream_host, &"the proxy fronts loopback registries only"));
        }
        // reqwest is built without a default TLS provider; plain HTTP needs one installed too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| err("HTTP client", &e))?;
        let shared = Arc::new(Shared { upstream: upstream_host.to_string(), plan: Mutex::default(), http });
        let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| err("bind", &e))?;
        listener.set_nonblocking(true).map_err(|e| err("bind", &e))?;
        let addr = listener.local_addr().map_err(|e| err("bind", &e))?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| err("runtime", &e))?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("tidegate-fault-proxy".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = accept(listener, state) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels every connection task, hung ones included.
            })
            .map_err(|e| err("thread", &e))?;
        Ok(Self { addr, shared, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// `127.0.0.1:PORT`: the registry part of image references that go through the proxy.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a fault for the requests in `scope`. Rules are tried in the order they were added;
    /// the first that matches a request decides it.
    pub fn fail(&self, fault: Fault, scope: Scope) {
        self.shared.plan().rules.push(Rule { fault, scope });
    }

    /// Removes every fault: requests are forwarded again.
    pub fn clear(&self) {
        self.shared.plan().rules.clear();
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.shared.plan().seen.clone()
    }

    /// Requests received at or after `at`.
    pub fn requests_since(&self, at: Instant) -> Vec<Seen> {
        self.shared.plan().seen.iter().filter(|s| s.at >= at).cloned().collect()
    }

    /// How many requests were received.
    pub fn total(&self) -> usize {
        self.shared.plan().seen.len()
    }

    /// How many requests were answered with `fault`.
    pub fn count(&self, fault: &Fault) -> usize {
        self.shared.plan().seen.iter().filter(|s| s.fault.as_ref() == Some(fault)).count()
    }

    /// How many requests met a fault, whichever.
    pub fn faulted(&self) -> usize {
        self.shared.plan().seen.iter().filter(|s| s.fault.is_some()).count()
    }

    /// How many requests were forwarded to the registry.
    pub fn forwarded(&self) -> usize {
        self.shared.plan().seen.iter().filter(|s| s.fault.is_none()).count()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let shared = shared.clone();
        tokio::spawn(async move {
            // A second handle on the socket, to reset it while hyper owns the first.
            let Ok(std_stream) = stream.into_std() else { return };
            let Ok(spare) = std_stream.try_clone() else { return };
            let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else { return };
            let reset = Arc::new(Notify::new());
            let on_reset = reset.clone();
            let service = hyper::service::service_fn(move |request| {
                let shared = shared.clone();
                let reset = reset.clone();
                async move { Ok::<_, Infallible>(handle(&shared, &reset, request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                _ = &mut connection => {}
                _ = on_reset.notified() => {
                    // Closing a socket whose linger time is zero sends a reset, mid-request.
                    if let Ok(spare) = tokio::net::TcpStream::from_std(spare) {
                        let _ = spare.set_zero_linger();
                    }
                }
            }
        });
    }
}

async fn handle(shared: &Shared, reset: &Notify, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let fault = shared.plan().decide(method.as_str(), &path);
    match fault {
        None => forward(shared, request).await,
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            error_response(status, "UNAVAILABLE", &format!("{status} injected by the test's fault proxy"), None)
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "TOOMANYREQUESTS",
            "rate limit injected by the test's fault proxy",
            Some(retry_after_secs),
        ),
        Some(Fault::Hang) => std::future::pending().await,
        Some(Fault::Reset) => {
            reset.notify_one();
            std::future::pending().await
        }
    }
}

fn error_response(status: StatusCode, code: &str, message: &str, retry_after: Option<u64>) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Sends the request to the registry as it came (its `Host` header included) and relays the
/// answer. A registry that cannot be reached is a `502`.
async fn forward(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "UNKNOWN", &format!("request body: {e}"), None),
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{}{path}", shared.upstream);
    let mut upstream = shared.http.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        // The body is re-sent whole, so its framing headers are the client library's to set.
        if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH {
            upstream = upstream.header(name, value);
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return error_response(StatusCode::BAD_GATEWAY, "UNKNOWN", &format!("registry: {e}"), None),
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        // `Content-Length` stays: for `HEAD` it is the size of what a `GET` would return.
        if !is_hop_by_hop(name) {
            headers.append(name, value.clone());
        }
    }
    let body = match answer.bytes().await {
        Ok(body) => body,
        Err(e) => return error_response(StatusCode::BAD_GATEWAY, "UNKNOWN", &format!("registry: {e}"), None),
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(name.as_str(), "connection" | "keep-alive" | "transfer-encoding" | "te" | "upgrade" | "proxy-connection")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_in_order_and_next_is_used_up() {
        let mut plan = Plan::default();
        plan.rules.push(Rule { fault: Fault::Reset, scope: Scope::Next(2) });
        plan.rules.push(Rule { fault: Fault::Status(503), scope: Scope::PathPrefix("/v2/base/".into()) });
        assert_eq!(plan.decide("GET", "/v2/app/manifests/1"), Some(Fault::Reset));
        assert_eq!(plan.decide("GET", "/v2/base/manifests/1"), Some(Fault::Reset));
        assert_eq!(plan.decide("GET", "/v2/base/manifests/1"), Some(Fault::Status(503)), "Next(2) is used up");
        assert_eq!(plan.decide("HEAD", "/v2/app/manifests/1"), None);
        assert_eq!(plan.rules.len(), 1);
        assert_eq!(plan.seen.len(), 4);
        assert_eq!(plan.seen.iter().filter(|s| s.fault.is_none()).count(), 1);
        assert_eq!(plan.seen[3].method, "HEAD");
    }

    #[test]
    fn all_applies_until_cleared() {
        let mut plan = Plan::default();
        plan.rules.push(Rule { fault: Fault::TooManyRequests { retry_after_secs: 2 }, scope: Scope::All });
        for _ in 0..5 {
            assert_eq!(plan.decide("GET", "/v2/"), Some(Fault::TooManyRequests { retry_after_secs: 2 }));
        }
        plan.rules.clear();
        assert_eq!(plan.decide("GET", "/v2/"), None);
    }

    #[test]
    fn error_answers_look_like_the_registry_s() {
        let response = error_response(StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS", "slow down", Some(7));
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    }
}
