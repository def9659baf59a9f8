//! Test scaffolding for talking to the loopback registries: one plain-HTTP/1.1 request at a time
//! ([`send`]), and a [`TestClient`] that authenticates (basic, or the bearer-token challenge) and
//! pushes small test images made of random layers.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::json;

use crate::Error;

/// OCI image manifest media type.
pub const IMAGE_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const IMAGE_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const IMAGE_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The OCI empty descriptor's media type (config of artifacts), content `{}`.
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Media type of the test layers: uncompressed, so a layer's diff ID is its digest.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// How long one request may take (big blobs included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// An HTTP response with its body read in full.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Registry(format!("response is not JSON ({e}): {}", self.text())))
    }

    /// The body as (lossy) text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `WWW-Authenticate` challenge, parsed.
    pub fn challenge(&self) -> Option<Challenge> {
        self.header(header::WWW_AUTHENTICATE.as_str()).and_then(parse_challenge)
    }

    fn expect(self, what: &str, ok: &[StatusCode]) -> Result<Self, Error> {
        if ok.contains(&self.status) {
            Ok(self)
        } else {
            Err(Error::Registry(format!("{what}: HTTP {}: {}", self.status, self.text())))
        }
    }
}

/// Sends one request over plain HTTP/1.1 (a new connection each time) to an `http://` URL and
/// reads the whole response. Follows no redirects and adds no authentication.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Result<Response, Error> {
    let fail = |e: &dyn std::fmt::Display| Error::Registry(format!("{method} {url}: {e}"));
    let uri: http::Uri = url.parse().map_err(|e| fail(&e))?;
    if uri.scheme_str() != Some("http") {
        return Err(fail(&"only plain http:// URLs are supported"));
    }
    let authority = uri.authority().ok_or_else(|| fail(&"no host"))?.clone();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(authority.as_str()).await.map_err(|e| fail(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| fail(&e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder().method(method.clone()).uri(path).header(header::HOST, authority.as_str());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if !matches!(method, Method::GET | Method::HEAD) {
            request = request.header(header::CONTENT_LENGTH, body.len());
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| fail(&e))?;
        let response = sender.send_request(request).await.map_err(|e| fail(&e))?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| fail(&e))?.to_bytes().to_vec();
        Ok(Response { status: parts.status, headers: parts.headers, body })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| fail(&"timed out"))?
}

/// A user name and password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials for `user`.
    pub fn new(user: &str, password: &str) -> Self {
        Self { user: user.into(), password: password.into() }
    }

    /// The `Authorization` header value: `Basic base64(user:password)`.
    pub fn basic_header(&self) -> String {
        format!("Basic {}", STANDARD.encode(format!("{}:{}", self.user, self.password)))
    }

    /// Reads a `Basic ...` header value.
    pub fn from_basic_header(value: &str) -> Option<Self> {
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some(Self::new(user, password))
    }
}

/// A parsed `WWW-Authenticate` challenge, e.g. `Bearer realm="...",service="...",scope="..."`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// `Basic` or `Bearer` (as sent).
    pub scheme: String,
    /// Parameters (`realm`, `service`, `scope`, `error`, …), keys lower-case.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// The URL to request a token from: `realm?service=..&scope=..`.
    pub fn token_url(&self) -> Option<String> {
        let realm = self.params.get("realm")?;
        let mut query = Vec::new();
        for key in ["service", "scope"] {
            if let Some(value) = self.params.get(key) {
                query.push(format!("{key}={}", percent_encode(value)));
            }
        }
        let separator = if realm.contains('?') { '&' } else { '?' };
        Some(if query.is_empty() { realm.clone() } else { format!("{realm}{separator}{}", query.join("&")) })
    }
}

/// Parses a `WWW-Authenticate` header value (one challenge; quoted values may contain commas).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, mut rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (val, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let end = quoted.find('"')?;
                (&quoted[..end], &quoted[end + 1..])
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key.trim().to_ascii_lowercase(), val.to_string());
        rest = after;
    }
    (!scheme.is_empty()).then(|| Challenge { scheme: scheme.to_string(), params })
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `len` pseudo-random (incompressible) bytes, different for every `seed`: splitmix64 seeded with
/// the FNV-1a hash of the seed.
pub fn pseudo_random_bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut state =
        seed.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(ring::digest::digest(&ring::digest::SHA256, data)))
}

/// An OCI content descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Descriptor {
    /// The descriptor of `data`.
    pub fn of(media_type: &str, data: &[u8]) -> Self {
        Self { media_type: media_type.into(), digest: sha256_digest(data), size: data.len() as u64 }
    }

    fn to_json(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// What [`TestClient::push_image`] pushes.
#[derive(Clone, Debug, Default)]
pub struct TestImage {
    /// Sizes of the random layers, bottom first.
    pub layers: Vec<usize>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// Tag to push the manifest under; `None` pushes it by digest only.
    pub tag: Option<String>,
    /// `subject` of the manifest (makes it a referrer of that manifest).
    pub subject: Option<Descriptor>,
    /// `artifactType`; an artifact gets the empty config (`{}`) instead of an image config.
    pub artifact_type: Option<String>,
}

impl TestImage {
    /// An image of random layers of the given sizes.
    pub fn new(layers: &[usize]) -> Self {
        Self { layers: layers.to_vec(), ..Self::default() }
    }

    /// An artifact (empty config) of the given type whose subject is `subject`, with one random
    /// blob of `size` bytes.
    pub fn artifact(artifact_type: &str, subject: Descriptor, size: usize) -> Self {
        Self {
            layers: vec![size],
            artifact_type: Some(artifact_type.into()),
            subject: Some(subject),
            ..Self::default()
        }
    }

    /// Pushes it under `tag`.
    pub fn tag(mut self, tag: &str) -> Self {
        self.tag = Some(tag.into());
        self
    }

    /// Adds manifest annotations.
    pub fn annotations(mut self, annotations: &[(&str, &str)]) -> Self {
        self.annotations.extend(annotations.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())));
        self
    }
}

/// What [`TestClient::push_image`] pushed.
#[derive(Clone, Debug)]
pub struct PushedImage {
    /// Digest of the manifest.
    pub digest: String,
    /// The manifest's descriptor (for use as a `subject`).
    pub descriptor: Descriptor,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The config blob.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// A client for one registry that sends HTTP basic credentials, or answers a bearer challenge by
/// fetching a token from the realm with them (and retrying once).
#[derive(Clone, Debug)]
pub struct TestClient {
    base: String,
    credentials: Option<Credentials>,
}

impl TestClient {
    /// A client for `http://host:port`.
    pub fn new(base_url: &str, credentials: Option<Credentials>) -> Self {
        Self { base: base_url.trim_end_matches('/').to_string(), credentials }
    }

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends a request to `path` (`/v2/...`, or an absolute URL) with authentication.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Response, Error> {
        let url = if path.starts_with("http://") { path.to_string() } else { format!("{}{path}", self.base) };
        let basic = self.credentials.as_ref().map(Credentials::basic_header);
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(basic) = &basic {
            all.push(("authorization", basic));
        }
        let response = send(method.clone(), &url, &all, body.clone()).await?;
        let challenge = match response.challenge() {
            Some(c) if response.status == StatusCode::UNAUTHORIZED && c.scheme.eq_ignore_ascii_case("bearer") => c,
            _ => return Ok(response),
        };
        let token = fetch_token(&challenge, self.credentials.as_ref()).await?;
        let bearer = format!("Bearer {token}");
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.push(("authorization", &bearer));
        send(method, &url, &all, body).await
    }

    /// Uploads a blob (POST, then a monolithic PUT) and returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Result<String, Error> {
        let digest = sha256_digest(data);
        let started = self
            .send(Method::POST, &format!("/v2/{repo}/blobs/uploads/"), &[], Vec::new())
            .await?
            .expect(&format!("starting the upload of {digest} to {repo}"), &[StatusCode::ACCEPTED])?;
        let location = started
            .header("location")
            .ok_or_else(|| Error::Registry(format!("upload to {repo}: no Location header")))?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{separator}digest={}", percent_encode(&digest));
        self.send(Method::PUT, &url, &[("content-type", "application/octet-stream")], data.to_vec())
            .await?
            .expect(&format!("uploading {digest} to {repo}"), &[StatusCode::CREATED])?;
        Ok(digest)
    }

    /// Pushes a manifest as `repo:reference` and returns its digest (as the registry reports it).
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        manifest: &[u8],
    ) -> Result<String, Error> {
        let response = self
            .send(
                Method::PUT,
                &format!("/v2/{repo}/manifests/{reference}"),
                &[("content-type", media_type)],
                manifest.to_vec(),
            )
            .await?
            .expect(&format!("pushing the manifest {repo}:{reference}"), &[StatusCode::CREATED])?;
        Ok(response.header("docker-content-digest").map_or_else(|| sha256_digest(manifest), str::to_string))
    }

    /// `HEAD /v2/<repo>/manifests/<reference>`: the digest, or `None` when it does not exist.
    pub async fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<String>, Error> {
        let accept = [IMAGE_MANIFEST_MEDIA_TYPE, IMAGE_INDEX_MEDIA_TYPE].join(", ");
        let response = self
            .send(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"), &[("accept", &accept)], Vec::new())
            .await?;
        if response.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = response.expect(&format!("HEAD {repo}:{reference}"), &[StatusCode::OK])?;
        Ok(response.header("docker-content-digest").map(str::to_string))
    }

    /// Pushes an image whose layers are exactly `layers` (uncompressed, so each diff_id is the
    /// layer's digest), with one history entry per layer and `annotations` on the manifest.
    /// Images that share their first layers share a base, as a rebase needs. Returns the digest.
    pub async fn push_layered(
        &self,
        repo: &str,
        tag: &str,
        layers: &[Vec<u8>],
        annotations: &[(&str, &str)],
    ) -> Result<String, Error> {
        let mut descriptors = Vec::new();
        for layer in layers {
            let digest = self.push_blob(repo, layer).await?;
            descriptors.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len()}));
        }
        let diff_ids: Vec<&serde_json::Value> = descriptors.iter().map(|d| &d["digest"]).collect();
        let history: Vec<serde_json::Value> =
            (0..layers.len()).map(|i| serde_json::json!({"created_by": format!("layer {i}")})).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history
        }))
        .map_err(|e| Error::Registry(e.to_string()))?;
        let config_digest = self.push_blob(repo, &config).await?;
        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": descriptors,
        });
        if !annotations.is_empty() {
            manifest["annotations"] = annotations
                .iter()
                .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        let bytes = serde_json::to_vec(&manifest).map_err(|e| Error::Registry(e.to_string()))?;
        self.push_manifest(repo, tag, IMAGE_MANIFEST_MEDIA_TYPE, &bytes).await
    }

    /// Pushes a test image: its random layers, its config and its OCI manifest (by tag, or by
    /// digest). An image config lists the layers as `rootfs.diff_ids`; an artifact gets the
    /// empty config.
    pub async fn push_image(&self, repo: &str, image: &TestImage) -> Result<PushedImage, Error> {
        let rng = SystemRandom::new();
        let mut layers = Vec::new();
        for size in &image.layers {
            let mut data = vec![0u8; *size];
            rng.fill(&mut data).map_err(|_| Error::Registry("no randomness".into()))?;
            self.push_blob(repo, &data).await?;
            layers.push(Descriptor::of(LAYER_MEDIA_TYPE, &data));
        }
        let (config_type, config) = if image.artifact_type.is_some() {
            (EMPTY_CONFIG_MEDIA_TYPE, b"{}".to_vec())
        } else {
            let diff_ids: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
            let history: Vec<_> =
                (0..layers.len()).map(|i| json!({"created_by": format!("tidegate testenv layer {i}")})).collect();
            let config = json!({
                "architecture": "amd64",
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": history,
            });
            (IMAGE_CONFIG_MEDIA_TYPE, config.to_string().into_bytes())
        };
        self.push_blob(repo, &config).await?;
        let config = Descriptor::of(config_type, &config);

        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST_MEDIA_TYPE,
            "config": config.to_json(),
            "layers": layers.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
        });
        if let Some(artifact_type) = &image.artifact_type {
            manifest["artifactType"] = json!(artifact_type);
        }
        if let Some(subject) = &image.subject {
            manifest["subject"] = subject.to_json();
        }
        if !image.annotations.is_empty() {
            manifest["annotations"] = json!(image.annotations);
        }
        let manifest = manifest.to_string().into_bytes();
        let descriptor = Descriptor::of(IMAGE_MANIFEST_MEDIA_TYPE, &manifest);
        let reference = image.tag.clone().unwrap_or_else(|| descriptor.digest.clone());
        let digest = self.push_manifest(repo, &reference, IMAGE_MANIFEST_MEDIA_TYPE, &manifest).await?;
        if digest != descriptor.digest {
            return Err(Error::Registry(format!(
                "the registry stored {digest}, the manifest is {}",
                descriptor.digest
            )));
        }
        Ok(PushedImage { digest, descriptor, manifest, config, layers })
    }
}

/// Asks a bearer challenge's realm for a token (HTTP basic credentials, if any) and returns it.
pub async fn fetch_token(challenge: &Challenge, credentials: Option<&Credentials>) -> Result<String, Error> {
    let url = challenge
        .token_url()
        .ok_or_else(|| Error::Registry(format!("bearer challenge without a realm: {challenge:?}")))?;
    let basic = credentials.map(Credentials::basic_header);
    let headers: Vec<(&str, &str)> = basic.iter().map(|b| ("authorization", b.as_str())).collect();
    let response = send(Method::GET, &url, &headers, Vec::new()).await?.expect("token request", &[StatusCode::OK])?;
    let body = response.json()?;
    body["token"]
        .as_str()
        .or_else(|| body["access_token"].as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Registry(format!("token response without a token: {body}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        let c = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="svc",scope="repository:a/b:pull,push""#,
        )
        .expect("challenge");
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        assert_eq!(
            c.token_url().as_deref(),
            Some("http://127.0.0.1:1/token?service=svc&scope=repository%3Aa%2Fb%3Apull%2Cpush")
        );
        let basic = parse_challenge(r#"Basic realm="tidegate-testenv""#).expect("basic");
        assert_eq!(basic.params["realm"], "tidegate-testenv");
    }

    #[test]
    fn basic_headers_round_trip() {
        let c = Credentials::new("alice", "p:w");
        assert_eq!(Credentials::from_basic_header(&c.basic_header()), Some(c));
        assert_eq!(percent_decode(&percent_encode("a/b:c d%")), "a/b:c d%");
    }
}
