//! `kubectl tidegate provenance IMAGE@DIGEST`: the signed promotion records the registry holds
//! for a digest, each verified with a Notary Project trust policy before it is shown. It reads
//! the registry only, so it works after the cluster that promoted the digest is gone.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use tidegate_core::provenance::Statement;
use tidegate_core::{Digest, ImageRef};
use tidegate_providers::Verification;
use tidegate_providers::notary_signer::NotarySigner;
use tidegate_providers::provenance::{Attestor, FoundRecord, event_name};
use tidegate_providers::registry::{ClientOptions, RegistryClient, auth};

/// Where the records are and what to trust.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The image, `registry/repository@sha256:…`.
    pub image: String,
    /// `trustpolicy.json`; default: notation's.
    pub trust_policy: Option<PathBuf>,
    /// Trust store directory (`x509/ca/<name>/…`); default: notation's.
    pub trust_store: Option<PathBuf>,
    /// Registry credentials (a Docker `config.json`); default: `~/.docker/config.json` if present.
    pub registry_config: Option<PathBuf>,
    /// Registry hosts reached over plain HTTP.
    pub plain_http: Vec<String>,
    /// Print the verified statements as JSON.
    pub json: bool,
}

/// notation's configuration directory: `$XDG_CONFIG_HOME/notation`, else `~/.config/notation`.
fn notation_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("notation"))
}

fn default_docker_config() -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("HOME")?).join(".docker/config.json");
    path.exists().then_some(path)
}

/// Reads, verifies and prints the records of `options.image`.
pub async fn run(options: &Options) -> anyhow::Result<String> {
    let (repository, digest) = parse_image(&options.image)?;
    let notation = notation_dir();
    let policy = options
        .trust_policy
        .clone()
        .or_else(|| notation.as_ref().map(|d| d.join("trustpolicy.json")))
        .context("no trust policy: pass --trust-policy")?;
    let store = options
        .trust_store
        .clone()
        .or_else(|| notation.as_ref().map(|d| d.join("truststore")))
        .context("no trust store: pass --trust-store")?;
    if !policy.exists() {
        bail!(
            "trust policy {} does not exist: pass --trust-policy FILE (the trustpolicy.json that verifies this \
             registry's Tidegate signatures) or import one with `notation policy import`",
            policy.display()
        );
    }
    let credentials = match options.registry_config.clone().or_else(default_docker_config) {
        Some(path) => {
            let json = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            auth::from_docker_config(&json).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Default::default(),
    };
    let registry = Arc::new(RegistryClient::new(ClientOptions {
        credentials,
        plain_http: options.plain_http.iter().cloned().collect(),
        ..Default::default()
    })?);
    let verifier = NotarySigner::from_files(registry, None, &policy, &store).map_err(|e| anyhow::anyhow!(e))?;
    let image = repository.pinned(&digest);
    let mut records = verifier.records(&image, &digest).await.map_err(|e| anyhow::anyhow!("{image}: {e}"))?;
    records.sort_by(|a, b| record_time(a).cmp(&record_time(b)).then_with(|| a.digest.cmp(&b.digest)));
    let trusted = records.iter().filter(|r| r.is_trusted()).count();
    if trusted == 0 {
        let refused: Vec<String> = records.iter().map(|r| format!("{}: {}", r.digest, why_refused(r))).collect();
        bail!(
            "no trusted promotion record of {image}{}",
            if refused.is_empty() { String::new() } else { format!(" (refused: {})", refused.join("; ")) }
        );
    }
    if options.json {
        let statements: Vec<&Statement> =
            records.iter().filter(|r| r.is_trusted()).filter_map(|r| r.statement.as_ref()).collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&statements)?));
    }
    Ok(render(&image, &records))
}

fn parse_image(text: &str) -> anyhow::Result<(ImageRef, Digest)> {
    let Some((_, digest)) = text.split_once('@') else {
        bail!(
            "{text}: name the image by digest (REGISTRY/REPOSITORY@sha256:…); a tag can move, a record is about one digest"
        );
    };
    let digest: Digest = digest.parse().map_err(|e| anyhow::anyhow!("{text}: {e}"))?;
    let reference: ImageRef = text.parse().map_err(|e| anyhow::anyhow!("{text}: {e}"))?;
    Ok((reference, digest))
}

fn record_time(record: &FoundRecord) -> String {
    record.statement.as_ref().map(|s| s.predicate.at.clone()).unwrap_or_default()
}

fn why_refused(record: &FoundRecord) -> String {
    match (&record.problem, &record.verification) {
        (Some(problem), _) => problem.clone(),
        (None, Verification::Invalid(why)) => why.clone(),
        (None, Verification::Valid { .. }) => "unreadable".into(),
    }
}

/// The records as text: trusted ones in full, refused ones with the reason.
pub fn render(image: &str, records: &[FoundRecord]) -> String {
    let mut out = format!("Promotion records of {image}\n");
    for record in records {
        out.push('\n');
        let (Some(statement), Verification::Valid { signer }) = (&record.statement, &record.verification) else {
            out.push_str(&format!("REFUSED  record {}: {}\n", record.digest, why_refused(record)));
            continue;
        };
        let r = &statement.predicate;
        out.push_str(&format!(
            "{}  {}  (record {}, signed by {signer})\n",
            event_name(r.event).to_uppercase(),
            r.at,
            record.digest
        ));
        let mut line = |label: &str, text: String| out.push_str(&format!("  {label:<11} {text}\n"));
        line("policy", format!("{}/{} ({})", r.policy.namespace, r.policy.name, r.policy.image));
        line("promotion", format!("{}/{}", r.promotion.namespace, r.promotion.name));
        if let Some(release) = &r.release {
            let mut text = format!("{} ({})", release.name, release.trigger);
            if let Some(base) = &release.base_image {
                let old = base.old_digest.as_deref().unwrap_or("unknown");
                text.push_str(&format!(": base {} {old} → {}", base.reference, base.new_digest));
            }
            if !release.vulnerabilities.is_empty() {
                text.push_str(&format!(": {}", release.vulnerabilities.join(", ")));
            }
            line("release", text);
        }
        if let Some(scan) = &r.scan {
            line(
                "scan",
                format!(
                    "{}: {} critical, {} high, {} medium, {} low, {} blocking{}",
                    scan.scanner.as_deref().unwrap_or("scanner"),
                    scan.critical,
                    scan.high,
                    scan.medium,
                    scan.low,
                    scan.blocking,
                    scan.finished_at.as_ref().map(|t| format!(" ({t})")).unwrap_or_default()
                ),
            );
        }
        for test in &r.tests {
            let verdict = if test.passed { "passed" } else { "FAILED" };
            line(
                "test",
                format!(
                    "{} {verdict}{}",
                    test.name,
                    test.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()
                ),
            );
        }
        for approval in &r.approvals {
            line("approved", format!("by {} at {}", approval.user, approval.at));
        }
        if let Some(rejection) = &r.rejection {
            let by = rejection.by.as_ref().map(|a| format!("by {} at {}: ", a.user, a.at)).unwrap_or_default();
            line("rejected", format!("{by}{}", rejection.reason));
        }
        if let Some(rollback) = &r.rollback {
            let by = rollback
                .requested_by
                .as_ref()
                .map(|a| format!("requested by {} at {}: ", a.user, a.at))
                .unwrap_or_default();
            line("rollback", format!("{by}{}", rollback.reason));
            if let Some(restored) = &rollback.restored_digest {
                line("restored", restored.clone());
            }
        }
        if let Some(production) = &r.production {
            if !production.workloads.is_empty() {
                line("production", production.workloads.join(", "));
            }
            if let Some(previous) = &production.previous_digest {
                line("replaced", previous.clone());
            }
            if let Some(since) = &production.running_since {
                line("running", format!("since {since}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digests_are_accepted() {
        let err = parse_image("r.io/shop/app:1.0").expect_err("a tag");
        assert!(err.to_string().contains("by digest"), "{err}");
        let (reference, digest) = parse_image(&format!("r.io/shop/app@sha256:{}", "a".repeat(64))).expect("parses");
        assert_eq!(reference.repository_ref(), "r.io/shop/app");
        assert_eq!(digest.hex(), "a".repeat(64));
        assert!(parse_image("r.io/shop/app@sha256:abc").is_err());
    }
}
