//! Real OCI registries on loopback for tests: the CNCF distribution registry (anonymous, HTTP
//! basic, or bearer-token auth with a token server of our own) and `ocireg`, a registry that
//! serves the OCI 1.1 referrers API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tidegate_testenv::Error> {
//! use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
//! let registry = Registry::start(RegistryOptions {
//!     kind: RegistryKind::Distribution,
//!     auth: RegistryAuth::basic("alice", "secret"),
//! })
//! .await?;
//! let digest = registry.push_test_image("team/app", "v1", &[1024, 4096], &[("org.example", "yes")]).await?;
//! println!("pushed {}/team/app@{digest}", registry.host());
//! # Ok(()) }
//! ```
//!
//! Each registry listens on `127.0.0.1` with a free port over plain HTTP, keeps its data in a
//! temporary directory, and is stopped (and the directory removed) when the [`Registry`] is
//! dropped; its process also dies with the thread that started it, so a panicking test leaves
//! nothing behind. The binaries come from [`SupplyChainTools`] (`cargo xtask tools`).

pub mod acr;
mod client;
pub mod faults;
mod token;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use acr::{AcrCounters, AcrTrust};
pub use client::{
    Challenge, Credentials, Descriptor, EMPTY_CONFIG_MEDIA_TYPE, IMAGE_CONFIG_MEDIA_TYPE, IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE, LAYER_MEDIA_TYPE, PushedImage, Response, TestClient, TestImage, fetch_token,
    parse_challenge, pseudo_random_bytes, send, sha256_digest,
};
pub use faults::{Fault, FaultProxy, Scope, Seen};
pub use token::{TOKEN_ISSUER, TOKEN_LIFETIME_SECS, TOKEN_SERVICE, TokenServer};

use crate::Error;
use crate::ports::free_port;
use crate::process::Process;
use crate::tools::SupplyChainTools;

/// Which registry to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RegistryKind {
    /// The CNCF distribution registry (`registry serve`), storage on disk. It has no referrers
    /// API: clients use the referrers tag schema against it.
    #[default]
    Distribution,
    /// `ocireg`: go-containerregistry's `pkg/registry` with the OCI 1.1 referrers API
    /// (`GET /v2/<name>/referrers/<digest>`, `OCI-Subject` on push). Anonymous only.
    Referrers,
}

/// How clients authenticate to the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    /// No authentication.
    #[default]
    Anonymous,
    /// HTTP basic authentication (an htpasswd file with one bcrypt entry).
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// The bearer-token flow: the registry answers `401` with
    /// `WWW-Authenticate: Bearer realm=...,service=...,scope=...`, and a token server on loopback
    /// hands out signed JWTs for these credentials.
    Token {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// Azure Container Registry's authentication ([`acr`]): the registry is reached through a
    /// front on its own origin that serves `/oauth2/exchange` (Entra ID token → refresh token)
    /// and `/oauth2/token` next to the registry API, which demands bearer tokens. `user` and
    /// `password` are the admin user (Basic at `/oauth2/token`), for pushing test content.
    Acr {
        /// Admin user name.
        user: String,
        /// Admin password.
        password: String,
        /// Which Entra ID tokens and identities the registry accepts.
        trust: AcrTrust,
    },
}

impl RegistryAuth {
    /// [`RegistryAuth::Acr`].
    pub fn acr(user: &str, password: &str, trust: AcrTrust) -> Self {
        Self::Acr { user: user.into(), password: password.into(), trust }
    }

    /// [`RegistryAuth::Basic`].
    pub fn basic(user: &str, password: &str) -> Self {
        Self::Basic { user: user.into(), password: password.into() }
    }

    /// [`RegistryAuth::Token`].
    pub fn token(user: &str, password: &str) -> Self {
        Self::Token { user: user.into(), password: password.into() }
    }

    /// The user name and password, unless anonymous.
    pub fn credentials(&self) -> Option<Credentials> {
        match self {
            Self::Anonymous => None,
            Self::Basic { user, password } | Self::Token { user, password } | Self::Acr { user, password, .. } => {
                Some(Credentials::new(user, password))
            }
        }
    }
}

/// How a registry is started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryOptions {
    /// The server.
    pub kind: RegistryKind,
    /// Its authentication.
    pub auth: RegistryAuth,
}

/// A running registry. Dropping it stops the registry (and its token server) and removes its
/// temporary directory. The registry process is also killed by the kernel when the thread that
/// started it exits (see [`Process`]), so start a registry that must outlive a test from a
/// thread that lives as long.
pub struct Registry {
    // Field order is drop order: the process stops before its directory goes away.
    process: Process,
    token_server: Option<TokenServer>,
    acr: Option<Arc<AcrCounters>>,
    kind: RegistryKind,
    auth: RegistryAuth,
    host: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// How long a registry may take to answer its first `GET /v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Registry {
    /// Starts a registry (with the binaries from [`SupplyChainTools::locate`]) and waits until it
    /// answers `GET /v2/`.
    pub async fn start(options: RegistryOptions) -> Result<Self, Error> {
        let tools = SupplyChainTools::locate()?;
        Self::start_with_tools(&tools, options).await
    }

    /// Starts a registry with the binaries in `tools`.
    pub async fn start_with_tools(tools: &SupplyChainTools, options: RegistryOptions) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("tidegate-registry-")
            .tempdir()
            .map_err(|e| Error::io(&std::env::temp_dir(), e))?;
        let port = free_port()?;
        let host = format!("127.0.0.1:{port}");
        let mut acr = None;
        let (process, token_server) = match options.kind {
            RegistryKind::Distribution => {
                let (config, token_server) = match &options.auth {
                    RegistryAuth::Acr { user, password, trust } => {
                        // The registry listens elsewhere; clients reach it through the front.
                        let backend = format!("127.0.0.1:{}", free_port()?);
                        let counters = Arc::new(AcrCounters::default());
                        let front = acr::AcrFront {
                            listen: parse_addr(&host)?,
                            upstream: parse_addr(&backend)?,
                            service: host.clone(),
                            trust: trust.clone(),
                            counters: counters.clone(),
                        };
                        let server = TokenServer::start_acr(Credentials::new(user, password), front)?;
                        acr = Some(counters);
                        (acr_config(dir.path(), &host, &backend, &server)?, Some(server))
                    }
                    auth => distribution_config(dir.path(), &host, auth)?,
                };
                let config_path = dir.path().join("config.yml");
                std::fs::write(&config_path, config).map_err(|e| Error::io(&config_path, e))?;
                let registry = tools.registry().display().to_string();
                let serve = ["serve".to_string(), config_path.display().to_string()];
                // `env` execs the registry in the same process (so the parent-death signal set by
                // `Process` still applies) with OpenTelemetry export switched off: the registry
                // would otherwise keep trying to send traces to localhost:4318.
                let env = Path::new("/usr/bin/env");
                let process = if env.is_file() {
                    let mut args = vec!["OTEL_TRACES_EXPORTER=none".to_string(), registry];
                    args.extend(serve);
                    Process::spawn("registry", env, &args, dir.path())?
                } else {
                    Process::spawn("registry", &tools.registry(), &serve, dir.path())?
                };
                (process, token_server)
            }
            RegistryKind::Referrers => {
                if options.auth != RegistryAuth::Anonymous {
                    return Err(Error::Start {
                        component: "ocireg".into(),
                        message: "the referrers registry serves anonymous access only".into(),
                    });
                }
                let blobs = dir.path().join("blobs");
                let args = vec![format!("-addr={host}"), format!("-blobs={}", blobs.display())];
                (Process::spawn("ocireg", &tools.ocireg(), &args, dir.path())?, None)
            }
        };
        let mut registry = Self { process, token_server, acr, kind: options.kind, auth: options.auth, host, dir };
        registry.wait_until_ready().await?;
        Ok(registry)
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// The hosts (`host:port`) a client must be told to reach over plain HTTP, by name: the
    /// registry, and the host of its token server's realm (`localhost:PORT`) for
    /// [`RegistryAuth::Token`]. For `--plain-http-registry` and `ClientOptions::plain_http`.
    pub fn plain_http_hosts(&self) -> Vec<String> {
        let mut hosts = vec![self.host.clone()];
        if let Some(server) = &self.token_server {
            let realm = server.realm();
            let authority = realm.trim_start_matches("http://").split('/').next().unwrap_or_default();
            hosts.push(authority.to_string());
        }
        hosts
    }

    /// The kind of registry.
    pub fn kind(&self) -> RegistryKind {
        self.kind
    }

    /// Its authentication.
    pub fn auth(&self) -> &RegistryAuth {
        &self.auth
    }

    /// The user name and password for [`RegistryAuth::Basic`] and [`RegistryAuth::Token`].
    pub fn credentials(&self) -> Option<Credentials> {
        self.auth.credentials()
    }

    /// What the ACR front of a [`RegistryAuth::Acr`] registry did.
    pub fn acr(&self) -> Option<&AcrCounters> {
        self.acr.as_deref()
    }

    /// The token server of a [`RegistryAuth::Token`] registry.
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token_server.as_ref()
    }

    /// A client for this registry that authenticates with its credentials.
    pub fn client(&self) -> TestClient {
        TestClient::new(&self.url(), self.credentials())
    }

    /// Pushes an image of random layers of the given sizes, with the given manifest annotations,
    /// as `repo:tag`, and returns the manifest digest. See [`TestClient::push_image`].
    pub async fn push_test_image(
        &self,
        repo: &str,
        tag: &str,
        layer_sizes: &[usize],
        annotations: &[(&str, &str)],
    ) -> Result<String, Error> {
        let image = TestImage::new(layer_sizes).tag(tag).annotations(annotations);
        Ok(self.client().push_image(repo, &image).await?.digest)
    }

    /// The temporary directory: config, storage, logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's log file.
    pub fn log(&self) -> &Path {
        self.process.log()
    }

    /// OS process ID of the registry.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    async fn wait_until_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        let url = format!("{}/v2/", self.url());
        loop {
            self.process.check_running()?;
            // Any HTTP answer (200, or 401 for the auth kinds) means it is serving; a 502 is the
            // ACR front saying the registry behind it is not listening yet.
            if send(http::Method::GET, &url, &[], Vec::new())
                .await
                .is_ok_and(|response| response.status != http::StatusCode::BAD_GATEWAY)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!(
                    "{} to answer on {url}; last lines of {}:\n{}",
                    self.process.name(),
                    self.log().display(),
                    crate::process::tail(self.log(), 20)
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The distribution registry's `config.yml` for `host`, storing data under `dir`; starts the
/// token server for [`RegistryAuth::Token`].
fn distribution_config(dir: &Path, host: &str, auth: &RegistryAuth) -> Result<(String, Option<TokenServer>), Error> {
    let storage = dir.join("storage");
    let mut config = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {host}\n  secret: tidegate-testenv-{port}\n",
        storage = yaml_string(&storage.display().to_string()),
        port = host.rsplit(':').next().unwrap_or_default(),
    );
    let mut token_server = None;
    match auth {
        RegistryAuth::Anonymous | RegistryAuth::Acr { .. } => {}
        RegistryAuth::Basic { user, password } => {
            let htpasswd = dir.join("htpasswd");
            std::fs::write(&htpasswd, htpasswd_line(user, password)?).map_err(|e| Error::io(&htpasswd, e))?;
            let _ = write!(
                config,
                "auth:\n  htpasswd:\n    realm: tidegate-testenv\n    path: {}\n",
                yaml_string(&htpasswd.display().to_string())
            );
        }
        RegistryAuth::Token { user, password } => {
            let server = TokenServer::start(Credentials::new(user, password))?;
            let bundle = dir.join("token-signer.crt");
            std::fs::write(&bundle, server.certificate_pem()).map_err(|e| Error::io(&bundle, e))?;
            let _ = write!(
                config,
                "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    \
                 rootcertbundle: {bundle}\n",
                realm = yaml_string(&server.realm()),
                service = yaml_string(TOKEN_SERVICE),
                issuer = yaml_string(TOKEN_ISSUER),
                bundle = yaml_string(&bundle.display().to_string()),
            );
            token_server = Some(server);
        }
    }
    Ok((config, token_server))
}

/// The distribution registry's `config.yml` behind an ACR front on `host`: it listens on
/// `backend`, builds URLs for `host`, and demands the front's tokens.
fn acr_config(dir: &Path, host: &str, backend: &str, server: &TokenServer) -> Result<String, Error> {
    let (mut config, _) = distribution_config(dir, backend, &RegistryAuth::Anonymous)?;
    let bundle = dir.join("token-signer.crt");
    std::fs::write(&bundle, server.certificate_pem()).map_err(|e| Error::io(&bundle, e))?;
    config = config.replace("http:\n", &format!("http:\n  host: {}\n", yaml_string(&format!("http://{host}"))));
    let _ = write!(
        config,
        "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {bundle}\n",
        realm = yaml_string(&server.realm()),
        service = yaml_string(host),
        issuer = yaml_string(TOKEN_ISSUER),
        bundle = yaml_string(&bundle.display().to_string()),
    );
    Ok(config)
}

fn parse_addr(addr: &str) -> Result<std::net::SocketAddr, Error> {
    addr.parse().map_err(|e| Error::Registry(format!("{addr}: {e}")))
}

/// One htpasswd line, `user:$2y$...`: the distribution registry reads bcrypt entries only. Cost 4
/// (the minimum) because the registry checks the password on every request.
pub fn htpasswd_line(user: &str, password: &str) -> Result<String, Error> {
    let hash = bcrypt::hash_with_result(password, 4).map_err(|e| Error::Registry(format!("bcrypt: {e}")))?;
    Ok(format!("{user}:{}\n", hash.format_for_version(bcrypt::Version::TwoY)))
}

/// A YAML double-quoted string (JSON's syntax is valid YAML).
fn yaml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_entries_are_bcrypt_2y() {
        let line = htpasswd_line("alice", "secret").expect("bcrypt");
        let (user, hash) = line.trim_end().split_once(':').expect("user:hash");
        assert_eq!(user, "alice");
        assert!(hash.starts_with("$2y$04$"), "{hash}");
        assert!(bcrypt::verify("secret", hash).unwrap_or(false));
    }

    #[test]
    fn distribution_config_names_storage_and_auth() {
        let dir = std::path::Path::new("/tmp/x");
        let (config, token) = distribution_config(dir, "127.0.0.1:5000", &RegistryAuth::Anonymous).expect("config");
        assert!(token.is_none());
        assert!(config.contains("rootdirectory: \"/tmp/x/storage\""));
        assert!(config.contains("addr: 127.0.0.1:5000"));
        assert!(config.contains("delete:\n    enabled: true"));
        assert!(!config.contains("auth:"));
    }
}
