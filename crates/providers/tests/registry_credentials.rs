//! Credentials stay where they belong: the registry client sends Basic credentials and bearer
//! tokens to the registry host they are for, and nowhere else, against real HTTP servers on
//! loopback. A "storage host" (where registries such as Azure Container Registry redirect blob
//! downloads and uploads) listens on 127.0.0.2, a host of its own, and records every
//! `Authorization` header it receives.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tidegate_providers::registry::{ClientOptions, Credentials, RegistryClient, RegistryError, Repository, sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request a test server received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    /// Path and query.
    target: String,
    authorization: Option<String>,
}

/// An answer: status, headers, body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new() }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
}

/// A minimal HTTP/1.1 server (one request per connection) that records what it receives.
struct Server {
    /// `ip:port`.
    host: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// The first bytes of each connection that did not start with an HTTP request (a TLS
    /// ClientHello, for instance).
    not_http: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Server {
    async fn bind(ip: &str) -> TcpListener {
        TcpListener::bind((ip, 0)).await.unwrap_or_else(|e| panic!("bind {ip}: {e}"))
    }

    fn start(listener: TcpListener, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let host = listener.local_addr().expect("addr").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let not_http = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let (record, odd) = (seen.clone(), not_http.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (record, odd, handler) = (record.clone(), odd.clone(), handler.clone());
                tokio::spawn(async move {
                    let Some((request, raw)) = read_request(&mut socket).await else {
                        return;
                    };
                    let Some(request) = request else {
                        odd.lock().expect("lock").push(raw);
                        return;
                    };
                    record.lock().expect("lock").push(request.clone());
                    let reply = handler(&request);
                    let mut head = format!("HTTP/1.1 {} Test\r\n", reply.status);
                    for (name, value) in &reply.headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    let body = if request.method == "HEAD" { Vec::new() } else { reply.body };
                    head.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { host, seen, not_http }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    fn authorizations(&self) -> Vec<String> {
        self.seen().into_iter().filter_map(|s| s.authorization).collect()
    }
}

/// Reads one request (headers and a `content-length` body). `Some((None, raw))` when the
/// connection does not start with an HTTP request line.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<(Option<Seen>, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let header_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await.ok()?.ok()?;
        if n == 0 {
            return (!data.is_empty()).then_some((None, data));
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if !data.is_ascii() || data.len() > 64 * 1024 {
            return Some((None, data));
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let (Some(method), Some(target), Some(version)) = (request_line.next(), request_line.next(), request_line.next())
    else {
        return Some((None, data));
    };
    if !version.starts_with("HTTP/1.") {
        return Some((None, data));
    }
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    while data.len() < header_end + 4 + length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        data.extend_from_slice(&buf[..n]);
    }
    let seen = Seen {
        method: method.to_string(),
        target: target.to_string(),
        authorization: headers.get("authorization").cloned(),
    };
    Some((Some(seen), data))
}

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic { username: user.into(), password: password.into() }
}

fn basic_header(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn client(credentials: &[(&str, Credentials)], plain_http: &[&str]) -> RegistryClient {
    RegistryClient::new(ClientOptions {
        credentials: credentials.iter().map(|(h, c)| (h.to_string(), c.clone())).collect(),
        plain_http: plain_http.iter().map(|h| h.to_string()).collect(),
        max_retries: 0,
        timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    })
    .expect("client")
}

const BLOB: &[u8] = b"layer bytes kept on a storage host";
const TOKEN: &str = "registry-token-7f3a";

/// How the registry under test authenticates.
#[derive(Clone, Copy, Debug)]
enum Auth {
    Basic,
    /// A token server on another port of 127.0.0.1, configured as plain HTTP by name.
    Bearer,
}

/// A registry on 127.0.0.1 that redirects blob downloads, starts uploads, cancels mounts and pages
/// tags on a storage host at 127.0.0.2, and answers everything else itself. Every request to it
/// needs the credentials (Basic) or the token (Bearer).
async fn registry_with_storage(auth: Auth) -> (Server, Server, Option<Server>, RegistryClient) {
    let storage_listener = Server::bind("127.0.0.2").await;
    let storage_host = storage_listener.local_addr().expect("addr").to_string();
    let storage = Server::start(storage_listener, |request| match (request.method.as_str(), request.target.as_str()) {
        ("GET", t) if t.starts_with("/storage/blob?") => Reply::new(200).body(BLOB),
        ("PUT", t) if t.starts_with("/storage/upload/1?") && t.contains("digest=sha256") => Reply::new(201),
        ("DELETE", t) if t.starts_with("/storage/upload/") => Reply::new(204),
        ("GET", t) if t.starts_with("/storage/tags") => Reply::new(200).body(r#"{"tags":["second-page"]}"#),
        _ => Reply::new(404),
    });

    let token_server = match auth {
        Auth::Basic => None,
        Auth::Bearer => {
            let expected = basic_header("robot", "s3cret");
            Some(Server::start(Server::bind("127.0.0.1").await, move |request| {
                if request.authorization.as_deref() == Some(expected.as_str()) {
                    Reply::new(200).body(format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#))
                } else {
                    Reply::new(401)
                }
            }))
        }
    };

    let (expected, challenge) = match &token_server {
        None => (basic_header("robot", "s3cret"), r#"Basic realm="test""#.to_string()),
        Some(tokens) => {
            (format!("Bearer {TOKEN}"), format!(r#"Bearer realm="http://{}/token",service="test""#, tokens.host))
        }
    };
    let digest = sha256(BLOB);
    let storage_base = format!("http://{storage_host}");
    let registry = Server::start(Server::bind("127.0.0.1").await, move |request| {
        if request.authorization.as_deref() != Some(expected.as_str()) {
            return Reply::new(401).header("www-authenticate", challenge.clone());
        }
        let target = request.target.as_str();
        match request.method.as_str() {
            "GET" if target == format!("/v2/shop/app/blobs/{digest}") => {
                Reply::new(307).header("location", format!("{storage_base}/storage/blob?sig=abc"))
            }
            "HEAD" if target.contains("/blobs/sha256:") => Reply::new(404),
            "POST" if target == "/v2/shop/app/blobs/uploads/" => {
                Reply::new(202).header("location", format!("{storage_base}/storage/upload/1?state=a"))
            }
            "POST" if target.starts_with("/v2/shop/app/blobs/uploads/?mount=") => {
                Reply::new(202).header("location", format!("{storage_base}/storage/upload/2?state=b"))
            }
            // A relative Location is the registry's own: the PUT needs the credentials.
            "POST" if target == "/v2/shop/local/blobs/uploads/" => {
                Reply::new(202).header("location", "/v2/shop/local/blobs/uploads/3?state=c")
            }
            "PUT" if target.starts_with("/v2/shop/local/blobs/uploads/3?state=c&digest=sha256:") => Reply::new(201),
            // A redirect on the registry's own host keeps the credentials.
            "GET" if target == "/v2/shop/app/tags/list?n=100" => {
                Reply::new(307).header("location", "/v2/shop/app/tags/list-moved?n=100")
            }
            "GET" if target == "/v2/shop/app/tags/list-moved?n=100" => Reply::new(200)
                .header("link", format!(r#"<{storage_base}/storage/tags?page=2>; rel="next""#))
                .body(r#"{"tags":["first-page"]}"#),
            _ => Reply::new(404),
        }
    });

    let mut plain_http = vec![registry.host.as_str()];
    if let Some(tokens) = &token_server {
        plain_http.push(tokens.host.as_str());
    }
    let client = client(&[(registry.host.as_str(), basic("robot", "s3cret"))], &plain_http);
    (registry, storage, token_server, client)
}

#[tokio::test]
async fn credentials_are_not_sent_to_the_storage_host_of_redirects_and_upload_locations() {
    for auth in [Auth::Basic, Auth::Bearer] {
        let (registry, storage, token_server, client) = registry_with_storage(auth).await;
        let repo = Repository::new(&registry.host, "shop/app");

        // A blob download redirected (307) to the storage host.
        assert_eq!(client.get_blob(&repo, &sha256(BLOB)).await.expect("blob through the redirect"), BLOB);
        // An upload whose Location is on the storage host.
        assert_eq!(client.push_blob(&repo, BLOB).await.expect("upload to the storage host"), sha256(BLOB));
        // A mount the registry turns into an upload there, which the client cancels.
        assert!(!client.mount_blob(&repo, "shop/other", &sha256(BLOB)).await.expect("mount"));
        // Tag pages: a redirect on the registry's host, then a next page on the storage host.
        assert_eq!(client.tags(&repo).await.expect("tags"), ["first-page", "second-page"]);
        // An upload with a relative Location stays on the registry, with the credentials.
        let local = Repository::new(&registry.host, "shop/local");
        assert_eq!(client.push_blob(&local, b"local").await.expect("upload on the registry"), sha256(b"local"));

        let at_storage = storage.seen();
        let methods: Vec<&str> = at_storage.iter().map(|s| s.method.as_str()).collect();
        assert_eq!(methods, ["GET", "PUT", "DELETE", "GET"], "{auth:?}: every hop reached the storage host");
        assert_eq!(
            storage.authorizations(),
            Vec::<String>::new(),
            "{auth:?}: the storage host received no Authorization header"
        );

        let expected = match auth {
            Auth::Basic => basic_header("robot", "s3cret"),
            Auth::Bearer => format!("Bearer {TOKEN}"),
        };
        let authorized: Vec<Seen> =
            registry.seen().into_iter().filter(|s| s.authorization.as_deref() == Some(expected.as_str())).collect();
        for (method, prefix) in [
            ("GET", format!("/v2/shop/app/blobs/{}", sha256(BLOB))),
            ("POST", "/v2/shop/app/blobs/uploads/".to_string()),
            ("GET", "/v2/shop/app/tags/list-moved".to_string()),
            ("PUT", "/v2/shop/local/blobs/uploads/3?state=c&digest=".to_string()),
        ] {
            assert!(
                authorized.iter().any(|s| s.method == method && s.target.starts_with(&prefix)),
                "{auth:?}: the registry received {method} {prefix}… with the credentials: {authorized:?}"
            );
        }
        if let Some(tokens) = token_server {
            assert!(
                tokens.authorizations().iter().all(|a| *a == basic_header("robot", "s3cret")),
                "the token server receives the Basic credentials"
            );
            assert!(!tokens.seen().is_empty());
        }
    }
}

/// A registry on 127.0.0.1 (plain HTTP by name) whose bearer challenge names a token endpoint on
/// plain HTTP at 127.0.0.2, which hands a token to anyone and records what it receives.
async fn registry_with_plain_http_realm() -> (Server, Server) {
    let tokens = Server::start(Server::bind("127.0.0.2").await, |_| {
        Reply::new(200).body(format!(r#"{{"token":"{TOKEN}","expires_in":300}}"#))
    });
    let challenge = format!(r#"Bearer realm="http://{}/token",service="test""#, tokens.host);
    let registry = Server::start(Server::bind("127.0.0.1").await, move |request| {
        if request.authorization.as_deref() != Some(format!("Bearer {TOKEN}").as_str()) {
            return Reply::new(401).header("www-authenticate", challenge.clone());
        }
        Reply::new(200)
            .header("docker-content-digest", format!("sha256:{}", "a".repeat(64)))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
    });
    (registry, tokens)
}

#[tokio::test]
async fn basic_credentials_never_go_to_a_plain_http_token_endpoint_on_another_host() {
    let (registry, tokens) = registry_with_plain_http_realm().await;
    let repo = Repository::new(&registry.host, "shop/app");
    let with_credentials = client(&[(registry.host.as_str(), basic("robot", "s3cret"))], &[registry.host.as_str()]);
    match with_credentials.head_manifest(&repo, "v1").await {
        Err(RegistryError::Insecure { message, .. }) => {
            assert!(message.contains("plain HTTP") && message.contains(&tokens.host), "{message}")
        }
        other => panic!("expected the token request to be refused, got {other:?}"),
    }
    assert!(tokens.seen().is_empty(), "the token endpoint was not asked at all: {:?}", tokens.seen());

    // Without credentials the token is requested anonymously, which leaks nothing.
    let anonymous = client(&[], &[registry.host.as_str()]);
    assert!(anonymous.head_manifest(&repo, "v1").await.expect("anonymous token").is_some());
    assert_eq!(tokens.seen().len(), 1);
    assert_eq!(tokens.authorizations(), Vec::<String>::new());
    assert!(registry.authorizations().contains(&format!("Bearer {TOKEN}")), "the token went to the registry");

    // Naming the token endpoint's host as plain HTTP too is what allows credentials there.
    let configured =
        client(&[(registry.host.as_str(), basic("robot", "s3cret"))], &[registry.host.as_str(), tokens.host.as_str()]);
    assert!(configured.head_manifest(&repo, "v1").await.expect("token with credentials").is_some());
    assert_eq!(tokens.authorizations(), [basic_header("robot", "s3cret")]);
    assert!(
        !registry.authorizations().iter().any(|a| a.starts_with("Basic ")),
        "the registry only ever received the token"
    );
}

#[tokio::test]
async fn loopback_registries_get_plain_http_only_when_configured_by_name() {
    let server = Server::start(Server::bind("127.0.0.1").await, |_| {
        Reply::new(200)
            .header("docker-content-digest", format!("sha256:{}", "b".repeat(64)))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
    });
    let port = server.host.rsplit(':').next().expect("port").to_string();
    for host in [server.host.clone(), format!("localhost:{port}")] {
        let repo = Repository::new(&host, "shop/app");
        let unconfigured = client(&[(host.as_str(), basic("robot", "s3cret"))], &[]);
        match unconfigured.head_manifest(&repo, "v1").await {
            Err(RegistryError::Transport { .. }) => {}
            other => panic!("{host} is not configured as plain HTTP, so HTTPS fails against it; got {other:?}"),
        }
    }
    assert!(server.seen().is_empty(), "no plain-HTTP request reached the server: {:?}", server.seen());
    let handshakes = server.not_http.lock().expect("lock").clone();
    assert!(
        !handshakes.is_empty() && handshakes.iter().all(|raw| raw.first() == Some(&0x16)),
        "the client spoke TLS (a handshake record) to the unconfigured loopback host"
    );

    let configured = client(&[(server.host.as_str(), basic("robot", "s3cret"))], &[server.host.as_str()]);
    assert!(configured.head_manifest(&Repository::new(&server.host, "shop/app"), "v1").await.expect("HEAD").is_some());
    assert_eq!(server.seen().len(), 1, "the configured name is reached over plain HTTP");
}
