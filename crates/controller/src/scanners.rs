//! Which scanner a policy's `spec.scan.scanner` names, as this controller is configured:
//! `trivy` runs Trivy in the controller (only when it was started with `--trivy-binary`);
//! `trivyReport` reads signed reports CI attaches to the digest (only with a trust policy);
//! `trivyOperator` reads the Trivy Operator's reports; `configMapReport` reads unsigned reports
//! where a namespace administrator allowed them; `defender` reads Microsoft Defender for Cloud's
//! findings through Azure Resource Graph (only with an Azure credential, within each namespace's
//! `--azure-grant` scopes).

use std::sync::Arc;
use std::time::Duration;

use tidegate_api::image_policy::Scanner as ScannerKind;
use tidegate_providers::Scanner;
use tidegate_providers::registry::RegistryClient;
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
    /// `defender`, when the controller has an Azure credential.
    pub defender: Option<Arc<dyn Scanner>>,
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
            ScannerKind::Defender => self.defender.as_ref().ok_or_else(|| {
                "spec.scan.scanner is defender, but this controller has no Azure credential to read Microsoft Defender \
                 for Cloud's findings with: start it with --azure-credential and grant the policy's namespace the \
                 registry's subscription or resource group with --azure-grant"
                    .to_string()
            }),
            other => Err(format!("spec.scan.scanner {other:?} is not supported")),
        }
    }
}

/// The condition reason of a Release whose scanner was not allowed to read findings for the
/// policy's namespace.
pub fn not_allowed_reason(kind: ScannerKind) -> &'static str {
    match kind {
        // The namespace has no Azure grant covering the registry's Defender data.
        ScannerKind::Defender => "OutOfReach",
        _ => "UnsignedReportsNotAllowed",
    }
}

/// What a Release waiting for `kind`'s result says.
pub fn waiting_for(kind: ScannerKind, digest: &tidegate_core::Digest) -> String {
    match kind {
        ScannerKind::Defender => format!(
            "waiting for Microsoft Defender for Cloud to assess {digest} (no sub-assessment of it in Azure Resource \
             Graph yet; the Release fails when spec.scan.defender.assessmentTimeout passes)"
        ),
        _ => format!("waiting for the scan report of {digest}"),
    }
}

/// The scanner as the API spells it (`trivy`, `trivyReport`, `configMapReport`).
pub fn spelled(kind: ScannerKind) -> Option<String> {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(String::from))
}

/// What a Release whose scan runs in this controller says while it waits.
pub fn queued_for(kind: ScannerKind, digest: &tidegate_core::Digest) -> String {
    let scanner = spelled(kind).unwrap_or_default();
    format!("{digest} is being scanned by {scanner} in the controller, or waits its turn there")
}

/// The Trivy scanner the flags configure, if any. Registry credentials are handed to Trivy as a
/// Docker `config.json` written into its cache directory.
///
/// Registries whose credentials are the Azure identity (`--acr-login-server`) get an ACR refresh
/// token from `registry` for each scan.
pub fn trivy_from_config(config: &Config, registry: Arc<RegistryClient>) -> anyhow::Result<Option<Arc<dyn Scanner>>> {
    let Some(binary) = config.trivy_binary.clone() else { return Ok(None) };
    if config.trivy_concurrency > 1 && config.trivy_server.is_none() {
        anyhow::bail!(
            "--trivy-concurrency {} needs --trivy-server: a local Trivy locks its cache directory, so local scans \
             run one at a time (use --trivy-concurrency 1, or scan through a Trivy server)",
            config.trivy_concurrency
        );
    }
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
    tracing::info!(binary = %binary.display(), cache = %cache_dir.display(), offline = config.trivy_offline, server = ?config.trivy_server, concurrency = config.trivy_concurrency, "scanning with Trivy");
    Ok(Some(Arc::new(TrivyScanner::new(TrivyOptions {
        binary,
        cache_dir,
        server: config.trivy_server.clone(),
        offline: config.trivy_offline,
        db_repository: config.trivy_db_repository.clone(),
        plain_http: config.plain_http_registries.clone(),
        docker_config,
        timeout: Duration::from_secs(config.trivy_timeout_seconds),
        concurrency: usize::from(config.trivy_concurrency),
        registry: Some(registry),
    }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trivy(args: &[&str]) -> anyhow::Result<Option<Arc<dyn Scanner>>> {
        let dir = tempfile::tempdir()?;
        let cache = dir.path().display().to_string();
        let base = ["--trivy-binary", "/usr/bin/trivy", "--trivy-cache-dir", &cache];
        let all: Vec<&str> = base.iter().chain(args).copied().collect();
        let config = crate::config_from(&all)?;
        trivy_from_config(&config, Arc::new(RegistryClient::new(Default::default())?))
    }

    #[test]
    fn scans_run_at_once_only_through_a_trivy_server() {
        let refused = trivy(&["--trivy-concurrency", "4"]).err().expect("refused without a server").to_string();
        assert!(refused.contains("--trivy-concurrency 4 needs --trivy-server"), "{refused}");
        assert!(trivy(&["--trivy-concurrency", "4", "--trivy-server", "http://trivy.scanning:4954"]).is_ok());
        assert!(trivy(&[]).expect("one at a time by default").is_some());
        assert!(trivy(&["--trivy-concurrency", "0"]).is_err(), "at least one");
    }
}
