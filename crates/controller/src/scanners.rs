//! Which scanner a policy's `spec.scan.scanner` names, as this controller is configured:
//! `trivy` runs Trivy in the controller (only when it was started with `--trivy-binary`);
//! `trivyReport` reads signed reports CI attaches to the digest (only with a trust policy);
//! `trivyOperator` reads the Trivy Operator's reports; `configMapReport` reads unsigned reports
//! where a namespace administrator allowed them.

use std::sync::Arc;
use std::time::Duration;

use tidegate_api::image_policy::Scanner as ScannerKind;
use tidegate_providers::Scanner;
use tidegate_providers::trivy::{TrivyOptions, TrivyScanner};

use crate::Config;

/// Condition reason of a Release whose policy names a scanner this controller does not run.
pub const SCANNER_NOT_CONFIGURED: &str = "ScannerNotConfigured";

/// The scanners this controller runs.
#[derive(Clone)]
pub struct Scanners {
    /// `configMapReport`.
    pub config_maps: Arc<dyn Scanner>,
    /// `trivyReport`, when a trust policy is configured.
    pub signed_reports: Option<Arc<dyn Scanner>>,
    /// `trivyOperator`.
    pub operator: Option<Arc<dyn Scanner>>,
    /// `trivy`, when configured.
    pub trivy: Option<Arc<dyn Scanner>>,
}

impl Scanners {
    /// The scanner `kind` names, or why there is none.
    pub fn get(&self, kind: ScannerKind) -> Result<&Arc<dyn Scanner>, String> {
        match kind {
            ScannerKind::ConfigMapReport => Ok(&self.config_maps),
            ScannerKind::TrivyReport => self.signed_reports.as_ref().ok_or_else(|| {
                "spec.scan.scanner is trivyReport, but this controller has no trust policy to verify signed reports \
                 with: start it with --trust-policy-file and --trust-store-dir"
                    .to_string()
            }),
            ScannerKind::TrivyOperator => self.operator.as_ref().ok_or_else(|| {
                "spec.scan.scanner is trivyOperator, but this controller does not read Trivy Operator reports"
                    .to_string()
            }),
            ScannerKind::Trivy => self.trivy.as_ref().ok_or_else(|| {
                "spec.scan.scanner is trivy, but this controller does not run Trivy: start it with --trivy-binary \
                 (and --trivy-cache-dir, --trivy-offline or --trivy-db-repository for the database)"
                    .to_string()
            }),
            other => Err(format!("spec.scan.scanner {other:?} is not supported")),
        }
    }
}

/// The Trivy scanner the flags configure, if any. Registry credentials are handed to Trivy as a
/// Docker `config.json` written into its cache directory.
pub fn trivy_from_config(config: &Config) -> anyhow::Result<Option<Arc<dyn Scanner>>> {
    let Some(binary) = config.trivy_binary.clone() else { return Ok(None) };
    let cache_dir = config.trivy_cache_dir.clone();
    std::fs::create_dir_all(&cache_dir)
        .map_err(|e| anyhow::anyhow!("--trivy-cache-dir {}: {e}", cache_dir.display()))?;
    let docker_config = match &config.registry_credentials {
        Some(credentials) => {
            let dir = cache_dir.join("docker");
            std::fs::create_dir_all(&dir)?;
            let path = dir.join("config.json");
            std::fs::copy(credentials, &path)
                .map_err(|e| anyhow::anyhow!("--registry-credentials {}: {e}", credentials.display()))?;
            Some(path)
        }
        None => None,
    };
    tracing::info!(binary = %binary.display(), cache = %cache_dir.display(), offline = config.trivy_offline, server = ?config.trivy_server, "scanning with Trivy");
    Ok(Some(Arc::new(TrivyScanner::new(TrivyOptions {
        binary,
        cache_dir,
        server: config.trivy_server.clone(),
        offline: config.trivy_offline,
        db_repository: config.trivy_db_repository.clone(),
        plain_http: config.plain_http_registries.clone(),
        docker_config,
        timeout: Duration::from_secs(config.trivy_timeout_seconds),
    }))))
}
