//! A minimal token server for the distribution registry's bearer-token authentication
//! (the "Docker token" flow), on loopback.
//!
//! `GET /token?service=SERVICE&scope=repository:NAME:pull,push` with HTTP basic credentials, or
//! `POST /token` with an OAuth2 password grant (`grant_type=password&username=..&password=..`),
//! answers `{"token": JWT, "access_token": JWT, "expires_in": 300}`; wrong or missing credentials
//! get `401`. Every requested action is granted to the one configured user.
//!
//! The JWT is ES256-signed with a fresh P-256 key whose self-signed certificate is the
//! registry's `auth.token.rootcertbundle`. Its header carries that certificate in `x5c` (the
//! registry verifies the chain against the bundle) and, as `kid`, the key's RFC 7638 JWK
//! thumbprint (SHA-256, base64url), which the registry also accepts for bundle keys. Claims:
//!
//! ```json
//! {"iss": "tidegate-testenv-token-server", "sub": "<user>", "aud": "tidegate-testenv-registry",
//!  "exp": <now+300>, "nbf": <now>, "iat": <now>, "jti": "<random hex>",
//!  "access": [{"type": "repository", "name": "<name>", "actions": ["pull", "push"]}]}
//! ```

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, Method, StatusCode, Uri, header};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::json;

use super::client::{Credentials, percent_decode};
use crate::Error;

/// The `service` (JWT audience) the test registries are configured with.
pub const TOKEN_SERVICE: &str = "tidegate-testenv-registry";
/// The JWT issuer the test registries trust.
pub const TOKEN_ISSUER: &str = "tidegate-testenv-token-server";
/// Token lifetime, seconds.
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// A running token server. Dropping it stops it.
pub struct TokenServer {
    addr: SocketAddr,
    realm: String,
    cert_pem: String,
    key_id: String,
    issuer: Arc<Issuer>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer").field("addr", &self.addr).field("key_id", &self.key_id).finish()
    }
}

pub(super) struct Issuer {
    pub(super) credentials: Credentials,
    /// The registry's `service`, the tokens' audience.
    pub(super) service: String,
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    key_id: String,
    rng: SystemRandom,
    pub(super) issued: AtomicUsize,
    pub(super) refused: AtomicUsize,
}

impl TokenServer {
    /// Starts a token server on `127.0.0.1` (a free port) that issues tokens to `credentials`.
    /// It runs on a thread of its own, independent of the caller's runtime.
    pub fn start(credentials: Credentials) -> Result<Self, Error> {
        Self::start_inner(credentials, None)
    }

    /// Starts the token server as the front of an Azure Container Registry stand-in: it listens
    /// where clients reach the registry and serves ACR's token exchange next to the proxied
    /// registry API ([`super::acr`]).
    pub(super) fn start_acr(credentials: Credentials, front: super::acr::AcrFront) -> Result<Self, Error> {
        Self::start_inner(credentials, Some(front))
    }

    fn start_inner(credentials: Credentials, front: Option<super::acr::AcrFront>) -> Result<Self, Error> {
        let err = |what: &str, e: &dyn std::fmt::Display| Error::Start {
            component: "token server".into(),
            message: format!("{what}: {e}"),
        };
        let rng = SystemRandom::new();
        let key = rcgen::KeyPair::generate().map_err(|e| err("key", &e))?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| err("certificate", &e))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, TOKEN_ISSUER);
        let cert = params.self_signed(&key).map_err(|e| err("certificate", &e))?;
        let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
            .map_err(|e| err("signing key", &e))?;
        let key_id = jwk_thumbprint(signer.public_key().as_ref());
        let service = front.as_ref().map_or_else(|| TOKEN_SERVICE.to_string(), |f| f.service.clone());
        let issuer = Arc::new(Issuer {
            credentials,
            service,
            key: signer,
            cert_der: cert.der().to_vec(),
            key_id: key_id.clone(),
            rng,
            issued: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });

        let listener = match &front {
            Some(front) => TcpListener::bind(front.listen),
            None => TcpListener::bind(("127.0.0.1", 0)),
        }
        .map_err(|e| err("bind", &e))?;
        listener.set_nonblocking(true).map_err(|e| err("bind", &e))?;
        let addr = listener.local_addr().map_err(|e| err("bind", &e))?;
        // crane refuses a realm on a loopback IP literal unless it is the registry's own
        // host:port, which the ACR front is; the plain token server is named `localhost`.
        let realm = match &front {
            Some(_) => format!("http://{addr}/oauth2/token"),
            None => format!("http://localhost:{}/token", addr.port()),
        };
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| err("runtime", &e))?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = match front {
            Some(front) => super::acr::router(issuer.clone(), front),
            None => Router::new().route("/token", get(token).post(token)).with_state(issuer.clone()),
        };
        let thread = std::thread::Builder::new()
            .name("tidegate-token-server".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    // Dropping the runtime afterwards ends any connection still open.
                    tokio::select! {
                        _ = axum::serve(listener, app) => {}
                        _ = stopped => {}
                    }
                });
            })
            .map_err(|e| err("thread", &e))?;
        Ok(Self { addr, realm, cert_pem: cert.pem(), key_id, issuer, shutdown: Some(shutdown), thread: Some(thread) })
    }

    /// `http://localhost:PORT/token`, the registry's `auth.token.realm` (for the ACR front,
    /// `http://127.0.0.1:PORT/oauth2/token` on the registry's own origin).
    ///
    /// The server listens on 127.0.0.1, but the realm names it `localhost`: go-containerregistry
    /// (`crane`) refuses a realm whose host is a loopback or private IP literal unless it is the
    /// registry's own host:port (an SSRF guard), and checks IP literals only.
    pub fn realm(&self) -> String {
        self.realm.clone()
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The signing certificate, PEM (the registry's `rootcertbundle`).
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The `kid` of every token: the signing key's RFC 7638 JWK thumbprint.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// How many tokens it has issued.
    pub fn issued(&self) -> usize {
        self.issuer.issued.load(Ordering::Relaxed)
    }

    /// How many token requests it has refused (bad credentials).
    pub fn refused(&self) -> usize {
        self.issuer.refused.load(Ordering::Relaxed)
    }

    /// Signs a token for `subject` with the given access entries, as the server would.
    pub fn sign(&self, subject: &str, access: &[serde_json::Value]) -> Result<String, Error> {
        self.issuer.sign(subject, access)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Issuer {
    pub(super) fn sign(&self, subject: &str, access: &[serde_json::Value]) -> Result<String, Error> {
        let now = unix_now();
        self.sign_claims(json!({
            "iss": TOKEN_ISSUER,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME_SECS,
            "nbf": now,
            "iat": now,
            "jti": self.jti()?,
            "access": access,
        }))
    }

    pub(super) fn jti(&self) -> Result<String, Error> {
        let mut jti = [0u8; 16];
        self.rng.fill(&mut jti).map_err(|_| Error::Registry("no randomness for jti".into()))?;
        Ok(hex::encode(jti))
    }

    /// The public key tokens are signed with (an uncompressed P-256 point).
    pub(super) fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// An ES256 JWT of `claims`, with the signing certificate in `x5c`.
    pub(super) fn sign_claims(&self, claims: serde_json::Value) -> Result<String, Error> {
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "kid": self.key_id,
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature =
            self.key.sign(&self.rng, input.as_bytes()).map_err(|_| Error::Registry("ES256 signing failed".into()))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

pub(super) fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// `GET /token` (basic credentials) and `POST /token` (OAuth2 password grant, or basic).
pub(super) async fn token(
    State(issuer): State<Arc<Issuer>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = request_params(&method, &uri, &body);
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let offered = match (param("username"), param("password")) {
        (Some(user), Some(password)) if method == Method::POST => Some(Credentials::new(&user, &password)),
        _ => headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(Credentials::from_basic_header),
    };
    if offered.as_ref() != Some(&issuer.credentials) {
        issuer.refused.fetch_add(1, Ordering::Relaxed);
        let body = json!({"errors": [{"code": "UNAUTHORIZED", "message": "wrong or missing credentials"}]});
        let challenge = format!("Basic realm=\"{TOKEN_ISSUER}\"");
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, challenge)], json_body(&body)).into_response();
    }
    if let Some(service) = param("service").filter(|s| *s != issuer.service) {
        let body = json!({"errors": [{"code": "DENIED", "message": format!("unknown service {service:?}")}]});
        return (StatusCode::BAD_REQUEST, json_body(&body)).into_response();
    }
    match issuer.sign(&issuer.credentials.user, &requested_access(&params)) {
        Ok(jwt) => {
            issuer.issued.fetch_add(1, Ordering::Relaxed);
            json_body(&json!({"token": jwt, "access_token": jwt, "expires_in": TOKEN_LIFETIME_SECS})).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The query parameters of a token request, and its form body when it is a POST.
pub(super) fn request_params(method: &Method, uri: &Uri, body: &[u8]) -> Vec<(String, String)> {
    let mut params = parse_form(uri.query().unwrap_or_default());
    if method == Method::POST {
        params.extend(parse_form(&String::from_utf8_lossy(body)));
    }
    params
}

/// The JWT access entries of the `scope` parameters (each may hold several, space-separated).
pub(super) fn requested_access(params: &[(String, String)]) -> Vec<serde_json::Value> {
    params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|scope| scope_access(&scope))
        .collect()
}

pub(super) fn json_body(value: &serde_json::Value) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], value.to_string())
}

/// `repository:team/app:pull,push` (or `repository(plugin):name:*`) as a JWT access entry.
fn scope_access(scope: &str) -> Option<serde_json::Value> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(match kind.split_once('(') {
        Some((kind, class)) => {
            json!({"type": kind, "class": class.trim_end_matches(')'), "name": name, "actions": actions})
        }
        None => json!({"type": kind, "name": name, "actions": actions}),
    })
}

/// `application/x-www-form-urlencoded` pairs (a query string or a form body).
pub(super) fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// The RFC 7638 thumbprint of a P-256 public key given as an uncompressed point (`04 || X || Y`),
/// computed like the distribution registry does (Go's `big.Int.Bytes`: no leading zero bytes).
fn jwk_thumbprint(point: &[u8]) -> String {
    let coordinate = |bytes: &[u8]| {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        URL_SAFE_NO_PAD.encode(&bytes[start..])
    };
    let (x, y) = point.get(1..).unwrap_or_default().split_at(point.len().saturating_sub(1) / 2);
    let jwk = format!(r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#, coordinate(x), coordinate(y));
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, jwk.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_become_access_entries() {
        assert_eq!(
            scope_access("repository:team/app:pull,push"),
            Some(json!({"type": "repository", "name": "team/app", "actions": ["pull", "push"]}))
        );
        assert_eq!(
            scope_access("repository(plugin):x:*"),
            Some(json!({"type": "repository", "class": "plugin", "name": "x", "actions": ["*"]}))
        );
        assert_eq!(scope_access("nonsense"), None);
    }

    #[test]
    fn forms_are_decoded() {
        assert_eq!(
            parse_form("scope=repository%3Ateam%2Fapp%3Apull%2Cpush&service=a+b"),
            [("scope".to_string(), "repository:team/app:pull,push".to_string()), ("service".into(), "a b".into())]
        );
    }

    #[test]
    fn tokens_are_es256_jwts_with_the_registry_claims() {
        let server = TokenServer::start(Credentials::new("alice", "pw")).expect("token server");
        let jwt =
            server.sign("alice", &[json!({"type": "repository", "name": "a", "actions": ["pull"]})]).expect("sign");
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let decode = |s: &str| -> serde_json::Value {
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url")).expect("json")
        };
        let header = decode(parts[0]);
        let claims = decode(parts[1]);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], server.key_id());
        assert_eq!(claims["aud"], TOKEN_SERVICE);
        assert_eq!(claims["iss"], TOKEN_ISSUER);
        assert_eq!(claims["access"][0]["actions"][0], "pull");
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).expect("signature").len(), 64);
    }
}
