//! The `trivy` scanner: the controller runs Trivy itself on the exact candidate
//! (`repo@sha256:…`, never a tag) and reads its JSON report into the findings model.
//!
//! Trivy runs as a child process of the controller (the binary ships in the controller's image):
//! it needs no Pod, no extra rights in any namespace and no registry credentials outside the
//! controller, and the vulnerability database lives in one cache directory that every scan
//! shares. For a fleet, point `--trivy-server` at a Trivy server (client/server mode): the
//! database then lives there, and the controller only sends the image's layers' metadata.
//!
//! The database is kept current by Trivy itself (`--trivy-db-repository` names a mirror), or,
//! offline, by whoever fills the cache directory (`--trivy-offline`: no download at all, and the
//! scan itself makes no outside request).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[cfg(test)]
use tidegate_core::Digest;

use crate::registry::{RegistryClient, Repository, acr};
use crate::report::{MAX_REPORT_AGE, Unusable, check_report};
use crate::{ProviderError, Result, ScanReport, ScanRequest, Scanner};

/// How the controller runs Trivy.
#[derive(Clone, Debug)]
pub struct TrivyOptions {
    /// The `trivy` binary.
    pub binary: PathBuf,
    /// Trivy's cache directory (vulnerability database and layer cache).
    pub cache_dir: PathBuf,
    /// A Trivy server to scan with (client/server mode), instead of the local database.
    pub server: Option<String>,
    /// Never download the database, and make no outside request while scanning.
    pub offline: bool,
    /// Where to download the vulnerability database from (an OCI mirror of `trivy-db`).
    pub db_repository: Option<String>,
    /// Registry hosts reached over plain HTTP (Trivy's `--insecure`).
    pub plain_http: Vec<String>,
    /// A Docker `config.json` with registry credentials.
    pub docker_config: Option<PathBuf>,
    /// How long one scan may take.
    pub timeout: Duration,
    /// How many scans run at once: 1 with a local database (Trivy locks its cache); more only
    /// with `server`.
    pub concurrency: usize,
    /// The controller's registry client: for registries whose credentials are the Azure
    /// identity (ACR token exchange), Trivy signs in with an ACR refresh token from it.
    pub registry: Option<Arc<RegistryClient>>,
}

/// Runs Trivy on candidates.
pub struct TrivyScanner {
    options: TrivyOptions,
    /// Scans running at once: one with a local database (Trivy locks its cache, and such scans
    /// are CPU-heavy); up to `concurrency` through a server.
    running: tokio::sync::Semaphore,
}

impl TrivyScanner {
    /// A scanner with `options`.
    pub fn new(options: TrivyOptions) -> Self {
        let at_once = if options.server.is_some() { options.concurrency.max(1) } else { 1 };
        Self { options, running: tokio::sync::Semaphore::new(at_once) }
    }

    /// The arguments of one scan of `image`.
    pub fn arguments(&self, image: &str) -> Vec<String> {
        let o = &self.options;
        // Vulnerabilities only, the image read from its registry (never from a container daemon
        // on the controller's host), no version check and no telemetry: the only outside
        // requests are the registry's and, unless offline, the database download.
        let mut args: Vec<String> = [
            "image",
            "--format",
            "json",
            "--quiet",
            "--scanners",
            "vuln",
            "--skip-java-db-update",
            "--skip-check-update",
            "--skip-version-check",
            "--disable-telemetry",
            "--image-src",
            "remote",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        args.extend(["--cache-dir".into(), o.cache_dir.display().to_string()]);
        if o.offline {
            args.extend(["--skip-db-update".into(), "--offline-scan".into()]);
        }
        if let Some(repository) = &o.db_repository {
            args.extend(["--db-repository".into(), repository.clone()]);
        }
        if let Some(server) = &o.server {
            args.extend(["--server".into(), server.clone()]);
        }
        let host = image.split('/').next().unwrap_or_default();
        if o.plain_http.iter().any(|h| h == host) {
            args.push("--insecure".into());
        }
        args.push(image.to_string());
        args
    }
}

impl TrivyScanner {
    /// An ACR refresh token for the registry of `image`, when its credentials are the Azure
    /// identity.
    async fn acr_refresh_token(&self, image: &str) -> Result<Option<String>> {
        let Some(registry) = &self.options.registry else { return Ok(None) };
        let Ok(reference) = image.parse::<tidegate_core::ImageRef>() else { return Ok(None) };
        registry
            .acr_refresh_token(&Repository::from(&reference))
            .await
            .map_err(|e| ProviderError::Transient(format!("signing Trivy in to {}: {e}", reference.registry)))
    }
}

#[async_trait::async_trait]
impl Scanner for TrivyScanner {
    async fn scan(&self, request: &ScanRequest<'_>) -> Result<Option<ScanReport>> {
        let (image, digest) = (request.image, request.digest);
        // Read before the scan: a database that updates while Trivy runs is reported as the old
        // one, and the next rescan sees the new one.
        let database = self.database();
        if !image.ends_with(&format!("@{digest}")) {
            return Err(ProviderError::Permanent(format!(
                "{image} is not pinned to {digest}; only digests are scanned"
            )));
        }
        let _turn = self.running.acquire().await.map_err(|e| ProviderError::Transient(e.to_string()))?;
        let mut command = tokio::process::Command::new(&self.options.binary);
        command.args(self.arguments(image)).kill_on_drop(true);
        // Trivy keeps its own state under HOME; keep it in the cache, never in the image.
        let home = &self.options.cache_dir;
        command
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join("xdg-cache"))
            .env("XDG_CONFIG_HOME", home.join("xdg-config"))
            .env("XDG_DATA_HOME", home.join("xdg-data"))
            .env("DOCKER_CONFIG", home.join("docker"))
            .env_remove("TRIVY_USERNAME")
            .env_remove("TRIVY_PASSWORD")
            .env_remove("TRIVY_REGISTRY_TOKEN");
        if let Some(config) = self.options.docker_config.as_ref().and_then(|c| c.parent()) {
            command.env("DOCKER_CONFIG", config);
        }
        if let Some(refresh_token) = self.acr_refresh_token(image).await? {
            // What `docker login` does with an exchanged token: the nil-UUID user and the
            // refresh token as password, for this one process.
            command.env("TRIVY_USERNAME", acr::REFRESH_TOKEN_USER).env("TRIVY_PASSWORD", refresh_token);
        }
        let output = match tokio::time::timeout(self.options.timeout, command.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(ProviderError::NotConfigured(format!(
                    "cannot run trivy ({}): {e}",
                    self.options.binary.display()
                )));
            }
            Err(_) => {
                return Err(ProviderError::Transient(format!(
                    "trivy did not finish scanning {image} within {:?}",
                    self.options.timeout
                )));
            }
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: String =
                stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join(" | ");
            // Registry and database trouble pass; the next attempt says again if not.
            return Err(ProviderError::Transient(format!("trivy failed on {image} ({}): {tail}", output.status)));
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let now = jiff::Timestamp::now();
        match check_report(&text, image, digest, now, MAX_REPORT_AGE) {
            Ok(checked) => {
                Ok(Some(ScanReport { findings: checked.findings, produced_at: Some(checked.created_at), database }))
            }
            Err(Unusable::Invalid(why) | Unusable::Stale(why)) => {
                Err(ProviderError::Permanent(format!("trivy's report of {image} is unusable: {why}")))
            }
        }
    }

    fn scans_itself(&self) -> bool {
        true
    }

    fn database(&self) -> Option<String> {
        if self.options.server.is_some() {
            return None;
        }
        database_version(&self.options.cache_dir)
    }
}

/// The `UpdatedAt` of the Trivy vulnerability database in `cache_dir` (`db/metadata.json`), which
/// changes whenever the database does.
pub fn database_version(cache_dir: &std::path::Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Metadata {
        updated_at: String,
    }
    let text = std::fs::read(cache_dir.join("db").join("metadata.json")).ok()?;
    serde_json::from_slice::<Metadata>(&text).ok().map(|m| m.updated_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> TrivyOptions {
        TrivyOptions {
            binary: "/usr/bin/trivy".into(),
            cache_dir: "/var/cache/trivy".into(),
            server: None,
            offline: false,
            db_repository: None,
            plain_http: vec!["127.0.0.1:5000".into()],
            docker_config: None,
            registry: None,
            timeout: Duration::from_secs(300),
            concurrency: 1,
        }
    }

    #[test]
    fn scans_run_one_at_a_time_unless_through_a_server() {
        let local = TrivyScanner::new(TrivyOptions { concurrency: 4, ..options() });
        assert_eq!(local.running.available_permits(), 1, "a local Trivy locks its cache");
        let server =
            TrivyScanner::new(TrivyOptions { concurrency: 4, server: Some("http://t:4954".into()), ..options() });
        assert_eq!(server.running.available_permits(), 4);
        let zero =
            TrivyScanner::new(TrivyOptions { concurrency: 0, server: Some("http://t:4954".into()), ..options() });
        assert_eq!(zero.running.available_permits(), 1);
    }

    #[test]
    fn scans_exactly_the_digest_with_the_configured_database() {
        let image = format!("r.io/shop/app@sha256:{}", "a".repeat(64));
        let args = TrivyScanner::new(options()).arguments(&image);
        assert_eq!(args.first().map(String::as_str), Some("image"));
        assert_eq!(args.last(), Some(&image));
        assert!(!args.contains(&"--insecure".to_string()) && !args.contains(&"--offline-scan".to_string()));

        let offline = TrivyScanner::new(TrivyOptions {
            offline: true,
            server: Some("http://trivy:4954".into()),
            db_repository: Some("mirror.local/trivy-db:2".into()),
            ..options()
        });
        let local = format!("127.0.0.1:5000/shop/app@sha256:{}", "a".repeat(64));
        let args = offline.arguments(&local).join(" ");
        for part in [
            "--skip-db-update --offline-scan",
            "--server http://trivy:4954",
            "--db-repository mirror.local/trivy-db:2",
            "--insecure",
        ] {
            assert!(args.contains(part), "{args}");
        }
    }

    #[tokio::test]
    async fn a_tag_is_never_scanned_and_a_missing_binary_says_so() {
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().expect("digest");
        let scanner = TrivyScanner::new(TrivyOptions { binary: "/nonexistent/trivy".into(), ..options() });
        let request = |image: &'static str| ScanRequest {
            namespace: "ns",
            image,
            digest: &digest,
            workload_namespaces: &[],
            max_age: MAX_REPORT_AGE,
            now: jiff::Timestamp::now(),
            deadline: None,
        };
        assert!(matches!(scanner.scan(&request("r.io/app:1.0")).await, Err(ProviderError::Permanent(_))));
        let pinned: &'static str = Box::leak(format!("r.io/app@{digest}").into_boxed_str());
        match scanner.scan(&request(pinned)).await {
            Err(ProviderError::NotConfigured(why)) => assert!(why.contains("/nonexistent/trivy"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
