//! `external` builds: someone else's CI rebuilds. Tidegate calls the configured webhook once, then
//! waits, up to the timeout, for an image in the policy's repository whose
//! `org.opencontainers.image.base.digest` annotation is the new base digest.

use std::time::Duration;

use serde_json::json;
use tidegate_api::{ImagePolicy, Release};
use tidegate_core::{ImageRef, parse_duration};

use crate::rebase::BASE_DIGEST;
use crate::registry::types::ImageManifest;
use crate::registry::{RegistryClient, Repository};
use crate::{BuildContext, BuildStep, Built, ProviderError, Result};

/// One step of an external build.
pub async fn step(
    client: &RegistryClient,
    policy: &ImagePolicy,
    release: &Release,
    repository: &ImageRef,
    (base, new_base): (&ImageRef, &str),
    context: &BuildContext,
) -> Result<BuildStep> {
    let settings = policy
        .spec
        .build
        .external
        .as_ref()
        .ok_or_else(|| ProviderError::Permanent("spec.build.external is missing".into()))?;
    let repo = Repository::from(repository);
    let Some(started) = context.started_at else {
        crate::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ProviderError::Transient(e.to_string()))?;
        let body = json!({
            "policy": policy.metadata.name,
            "namespace": policy.metadata.namespace,
            "release": release.metadata.name,
            "image": repository.repository_ref(),
            "baseImage": {"ref": base.to_string(), "digest": new_base},
        });
        let response = http
            .post(&settings.webhook_url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| ProviderError::Transient(format!("calling {}: {e}", settings.webhook_url)))?;
        if !response.status().is_success() {
            return Err(ProviderError::Transient(format!("{} answered {}", settings.webhook_url, response.status())));
        }
        return Ok(BuildStep::Started {
            run: format!("asked {} to rebuild on {new_base}", settings.webhook_url),
            run_id: None,
        });
    };
    if let Some(digest) = find_rebuilt(client, &repo, new_base).await? {
        let digest = digest.parse().map_err(|e| ProviderError::Permanent(format!("{e}")))?;
        return Ok(BuildStep::Done(Built {
            run: format!("external build found in {repo}"),
            digest,
            run_id: None,
            log_link: None,
        }));
    }
    let timeout = parse_duration(&settings.timeout).unwrap_or(Duration::from_secs(3600));
    let waited = context.now.duration_since(started).unsigned_abs();
    if waited > timeout {
        return Err(ProviderError::Permanent(format!(
            "no image with {BASE_DIGEST}={new_base} appeared in {repo} within {}",
            settings.timeout
        )));
    }
    Ok(BuildStep::Waiting(format!("waiting for CI to push an image built on {new_base} to {repo}")))
}

/// The digest of an image in `repo` built on `base_digest`, if one was pushed.
pub async fn find_rebuilt(client: &RegistryClient, repo: &Repository, base_digest: &str) -> Result<Option<String>> {
    let tags = match client.tags(repo).await {
        Ok(tags) => tags,
        Err(crate::registry::RegistryError::UnknownRepository { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    for tag in tags.iter().rev() {
        let fetched = client.get_manifest(repo, tag).await?;
        let annotations = if fetched.is_index() {
            serde_json::from_slice::<crate::registry::types::ImageIndex>(&fetched.bytes)
                .ok()
                .and_then(|i| i.annotations)
        } else {
            serde_json::from_slice::<ImageManifest>(&fetched.bytes).ok().and_then(|m| m.annotations)
        };
        if annotations.as_ref().and_then(|a| a.get(BASE_DIGEST)).map(String::as_str) == Some(base_digest) {
            return Ok(Some(fetched.digest));
        }
    }
    Ok(None)
}
