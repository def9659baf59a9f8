//! An Azure Container Registry stand-in in front of the distribution registry: one loopback
//! origin that serves, like a real ACR login server,
//!
//! - `POST /oauth2/exchange` (`grant_type=access_token&service=..&tenant=..&access_token=<Entra
//!   ID token>`): the Entra ID token is checked (the Azure stand-in's HS256 signature, expiry,
//!   audience `https://containerregistry.azure.net` or Resource Manager's, tenant) and the
//!   identity (`oid`) must be one the test allowed; the answer is `{"refresh_token": JWT}`
//!   (three hours);
//! - `POST /oauth2/token` (`grant_type=refresh_token&service=..&scope=..&refresh_token=..`):
//!   `{"access_token": JWT}` for the requested repository scopes;
//! - `GET /oauth2/token` with Basic credentials: the nil-UUID user with a refresh token as
//!   password (what `docker login` with an exchanged token and Trivy send), or the registry's
//!   admin user;
//! - everything else is proxied to the distribution registry, which answers `401` with
//!   `Bearer realm="http://<this origin>/oauth2/token",service="<this host>"` and verifies the
//!   access tokens.
//!
//! What ACR does with an identity that has no role on the registry is not documented precisely;
//! here the exchange itself is refused with `401` and an `UNAUTHORIZED` error.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde_json::{Value, json};

use super::client::Credentials;
use super::token::{Issuer, TOKEN_ISSUER, json_body, parse_form, request_params, requested_access, token, unix_now};

/// The user name ACR pairs with a refresh token in Basic authentication.
pub const REFRESH_TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";
/// How long refresh tokens last (ACR: three hours).
pub const REFRESH_TOKEN_LIFETIME_SECS: u64 = 3 * 3600;
/// Entra ID audiences ACR accepts in an exchange.
const AUDIENCES: [&str; 2] = ["https://containerregistry.azure.net", "https://management.azure.com"];

/// Which Entra ID tokens the registry accepts: those the Azure stand-in signed
/// ([`crate::azure::AzureStandIn::token_key`]) for its tenant, and of which identities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcrTrust {
    /// The Azure stand-in's HMAC key of issued tokens.
    pub token_key: String,
    /// The tenant the tokens must be issued in.
    pub tenant: String,
    /// Object (or client) ids of the identities that have a role on the registry.
    pub allowed: Vec<String>,
}

/// Where the front listens and what it fronts.
#[derive(Clone, Debug)]
pub(super) struct AcrFront {
    /// The registry's address for clients.
    pub listen: SocketAddr,
    /// The distribution registry behind it.
    pub upstream: SocketAddr,
    /// The registry's `service`: its login server, `127.0.0.1:PORT`.
    pub service: String,
    pub trust: AcrTrust,
    pub counters: Arc<AcrCounters>,
}

/// What the front did, for assertions.
#[derive(Debug, Default)]
pub struct AcrCounters {
    /// Entra ID tokens exchanged for refresh tokens.
    pub exchanges: AtomicUsize,
    /// Exchanges refused.
    pub refused_exchanges: AtomicUsize,
    /// Access tokens issued for refresh tokens.
    pub refresh_grants: AtomicUsize,
}

impl AcrCounters {
    /// Exchanges so far.
    pub fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::Relaxed)
    }

    /// Refused exchanges so far.
    pub fn refused_exchanges(&self) -> usize {
        self.refused_exchanges.load(Ordering::Relaxed)
    }

    /// Access tokens issued for refresh tokens so far.
    pub fn refresh_grants(&self) -> usize {
        self.refresh_grants.load(Ordering::Relaxed)
    }
}

struct AcrState {
    issuer: Arc<Issuer>,
    front: AcrFront,
    http: reqwest::Client,
}

/// The front's routes.
pub(super) fn router(issuer: Arc<Issuer>, front: AcrFront) -> Router {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let state = Arc::new(AcrState { issuer, front, http });
    Router::new()
        .route("/oauth2/exchange", post(exchange))
        .route("/oauth2/token", get(access_token).post(access_token))
        .fallback(proxy)
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

fn unauthorized(message: &str) -> Response {
    let body = json!({"errors": [{"code": "UNAUTHORIZED", "message": message}]});
    (StatusCode::UNAUTHORIZED, json_body(&body)).into_response()
}

fn form_param(params: &[(String, String)], name: &str) -> Option<String> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// `POST /oauth2/exchange`.
async fn exchange(State(state): State<Arc<AcrState>>, body: Bytes) -> Response {
    let params = parse_form(&String::from_utf8_lossy(&body));
    let counters = &state.front.counters;
    let refuse = |message: String| {
        counters.refused_exchanges.fetch_add(1, Ordering::Relaxed);
        unauthorized(&message)
    };
    if form_param(&params, "grant_type").as_deref() != Some("access_token") {
        counters.refused_exchanges.fetch_add(1, Ordering::Relaxed);
        let body = json!({"errors": [{"code": "UNSUPPORTED", "message": "grant_type must be access_token"}]});
        return (StatusCode::BAD_REQUEST, json_body(&body)).into_response();
    }
    if form_param(&params, "service").as_deref() != Some(state.front.service.as_str()) {
        return refuse(format!("service must be {}", state.front.service));
    }
    let Some(entra) = form_param(&params, "access_token") else {
        return refuse("access_token is required".into());
    };
    let claims = match verify_entra(&state.front.trust, &entra) {
        Ok(claims) => claims,
        Err(why) => return refuse(why),
    };
    if let Some(tenant) = form_param(&params, "tenant")
        && !tenant.eq_ignore_ascii_case(&state.front.trust.tenant)
    {
        return refuse(format!("tenant {tenant} does not match the token's"));
    }
    let identity = claims.get("oid").or_else(|| claims.get("appid")).and_then(Value::as_str).unwrap_or_default();
    if !state.front.trust.allowed.iter().any(|a| a == identity) {
        return refuse(format!("the identity {identity} has no role on this registry"));
    }
    let now = unix_now();
    let refresh = state.issuer.jti().and_then(|jti| {
        state.issuer.sign_claims(json!({
            "iss": TOKEN_ISSUER,
            "sub": identity,
            "aud": state.front.service,
            "grant_type": "refresh_token",
            "tenant": state.front.trust.tenant,
            "exp": now + REFRESH_TOKEN_LIFETIME_SECS,
            "nbf": now,
            "iat": now,
            "jti": jti,
        }))
    });
    match refresh {
        Ok(refresh) => {
            counters.exchanges.fetch_add(1, Ordering::Relaxed);
            json_body(&json!({"refresh_token": refresh})).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `POST /oauth2/token` with a refresh token; `GET /oauth2/token` with Basic credentials (a
/// refresh token, or the admin user).
async fn access_token(
    State(state): State<Arc<AcrState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = request_params(&method, &uri, &body);
    let basic =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(Credentials::from_basic_header);
    let refresh = match (form_param(&params, "grant_type").as_deref(), &basic) {
        (Some("refresh_token"), _) => form_param(&params, "refresh_token"),
        (None, Some(basic)) if basic.user == REFRESH_TOKEN_USER => Some(basic.password.clone()),
        // The admin user (and the password grant) are the plain token server's business.
        _ => return token(State(state.issuer.clone()), method, uri, headers, body).await,
    };
    let Some(refresh) = refresh else {
        return unauthorized("refresh_token is required");
    };
    let subject = match verify_refresh(&state, &refresh) {
        Ok(subject) => subject,
        Err(why) => {
            state.issuer.refused.fetch_add(1, Ordering::Relaxed);
            return unauthorized(&why);
        }
    };
    match state.issuer.sign(&subject, &requested_access(&params)) {
        Ok(jwt) => {
            state.issuer.issued.fetch_add(1, Ordering::Relaxed);
            state.front.counters.refresh_grants.fetch_add(1, Ordering::Relaxed);
            json_body(&json!({"access_token": jwt})).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The claims of an Entra ID token the Azure stand-in issued, if it is valid for ACR.
fn verify_entra(trust: &AcrTrust, token: &str) -> Result<serde_json::Map<String, Value>, String> {
    let (input, signature) = token.rsplit_once('.').ok_or("the access token is not a JWT")?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| "the access token's signature is not base64url")?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, trust.token_key.as_bytes());
    ring::hmac::verify(&key, input.as_bytes(), &signature).map_err(|_| "the access token's signature is not valid")?;
    let claims = claims_of(input)?;
    if claims.get("exp").and_then(Value::as_u64).is_none_or(|exp| exp <= unix_now()) {
        return Err("the access token has expired".into());
    }
    let audience = claims.get("aud").and_then(Value::as_str).unwrap_or_default().trim_end_matches('/');
    if !AUDIENCES.iter().any(|a| a.eq_ignore_ascii_case(audience)) {
        return Err(format!("the access token is for {audience:?}, not the registry"));
    }
    if claims.get("tid").and_then(Value::as_str).is_none_or(|t| !t.eq_ignore_ascii_case(&trust.tenant)) {
        return Err("the access token is from another tenant".into());
    }
    Ok(claims)
}

/// The subject of a refresh token this front issued, if it is valid.
fn verify_refresh(state: &AcrState, token: &str) -> Result<String, String> {
    let (input, signature) = token.rsplit_once('.').ok_or("the refresh token is not a JWT")?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| "the refresh token's signature is not base64url")?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, state.issuer.public_key())
        .verify(input.as_bytes(), &signature)
        .map_err(|_| "the refresh token's signature is not valid")?;
    let claims = claims_of(input)?;
    if claims.get("grant_type").and_then(Value::as_str) != Some("refresh_token") {
        return Err("not a refresh token".into());
    }
    if claims.get("aud").and_then(Value::as_str) != Some(state.front.service.as_str()) {
        return Err("the refresh token is for another registry".into());
    }
    if claims.get("exp").and_then(Value::as_u64).is_none_or(|exp| exp <= unix_now()) {
        return Err("the refresh token has expired".into());
    }
    Ok(claims.get("sub").and_then(Value::as_str).unwrap_or_default().to_string())
}

fn claims_of(input: &str) -> Result<serde_json::Map<String, Value>, String> {
    let payload = input.split_once('.').map(|(_, p)| p).ok_or("not a JWT")?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).map_err(|_| "claims are not base64url")?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(claims)) => Ok(claims),
        _ => Err("claims are not a JSON object".into()),
    }
}

/// Everything else goes to the distribution registry, as it came.
async fn proxy(
    State(state): State<Arc<AcrState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{}{path}", state.front.upstream);
    let mut request = state.http.request(method, url).body(body);
    for (name, value) in &headers {
        if !is_hop_by_hop(name) && name != header::HOST {
            request = request.header(name, value);
        }
    }
    let upstream = match request.send().await {
        Ok(upstream) => upstream,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("registry: {e}")).into_response(),
    };
    let status = upstream.status();
    let mut response_headers = HeaderMap::new();
    for (name, value) in upstream.headers() {
        if !is_hop_by_hop(name) {
            response_headers.append(name, value.clone());
        }
    }
    let body = match upstream.bytes().await {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("registry: {e}")).into_response(),
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

fn is_hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(name.as_str(), "connection" | "keep-alive" | "transfer-encoding" | "te" | "upgrade" | "content-length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra(key: &str, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes()), input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    #[test]
    fn entra_tokens_are_checked_like_acr_checks_them() {
        let trust = AcrTrust { token_key: "k".into(), tenant: "t".into(), allowed: vec!["me".into()] };
        let good =
            json!({"aud": "https://containerregistry.azure.net", "tid": "t", "oid": "me", "exp": unix_now() + 60});
        assert!(verify_entra(&trust, &entra("k", good.clone())).is_ok());
        assert!(verify_entra(&trust, &entra("other", good.clone())).unwrap_err().contains("signature"));
        let mut expired = good.clone();
        expired["exp"] = json!(unix_now() - 1);
        assert!(verify_entra(&trust, &entra("k", expired)).unwrap_err().contains("expired"));
        let mut vault = good.clone();
        vault["aud"] = json!("https://vault.azure.net");
        assert!(verify_entra(&trust, &entra("k", vault)).unwrap_err().contains("not the registry"));
        let mut tenant = good;
        tenant["tid"] = json!("elsewhere");
        assert!(verify_entra(&trust, &entra("k", tenant)).unwrap_err().contains("tenant"));
        assert!(verify_entra(&trust, "nonsense").is_err());
    }
}
