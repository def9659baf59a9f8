//! The registry-backed builder: resolves an externally built image's tag to its digest, once;
//! otherwise builds with the policy's strategy: `rebase` (native, in the registry), `external`
//! (someone else's CI, see [`crate::external_build`]), `job` (see [`crate::job_build`]) or
//! `acrTask` (see [`crate::acr_tasks`]).

use std::sync::Arc;

use tidegate_api::release::ReasonKind;
use tidegate_api::{ImagePolicy, Release};
use tidegate_core::{Digest, ImageRef};

use crate::acr_tasks::AcrTasks;
use crate::authz::Reach;
use crate::rebase::{RebaseRequest, rebase};
use crate::registry::{RegistryClient, Repository};
use crate::{BuildContext, BuildStep, Builder, Built, ProviderError, Result};
use tidegate_api::image_policy::BuildStrategy;

/// Builds with a real registry.
pub struct RegistryBuilder {
    client: Arc<RegistryClient>,
    reach: Arc<Reach>,
    acr_tasks: Option<Arc<AcrTasks>>,
}

impl RegistryBuilder {
    /// A builder using `client` for registries; build Jobs run as the policy namespace's
    /// deployer (see [`Reach`]).
    pub fn new(client: Arc<RegistryClient>, reach: Arc<Reach>) -> Self {
        Self { client, reach, acr_tasks: None }
    }

    /// Runs `acrTask` builds with `acr_tasks` (the controller's Azure credential and grants);
    /// without it they fail with a condition that says which flags to set.
    pub fn with_acr_tasks(mut self, acr_tasks: Option<Arc<AcrTasks>>) -> Self {
        self.acr_tasks = acr_tasks;
        self
    }

    /// The new base digest a build targets: the one in the Release's reason, or the base tag's
    /// digest now.
    pub async fn new_base(&self, policy: &ImagePolicy, release: &Release) -> Result<(ImageRef, String)> {
        let base = policy.spec.triggers.base_image.as_ref().ok_or_else(|| {
            ProviderError::Permanent(
                "nothing to rebuild: set spec.triggers.baseImage (to rebase) or spec.source.image (an external build)"
                    .into(),
            )
        })?;
        let base_ref: ImageRef = base
            .reference
            .parse()
            .map_err(|e| ProviderError::Permanent(format!("spec.triggers.baseImage.ref: {e}")))?;
        let digest = match (&release.spec.reason.kind, &release.spec.reason.base_image) {
            (ReasonKind::BaseImageUpdated, Some(change)) => change.new_digest.clone(),
            _ => self.resolve(&base_ref).await?.to_string(),
        };
        Ok((base_ref, digest))
    }

    /// The digest of `image` (its own, or its tag's now).
    pub async fn resolve(&self, image: &ImageRef) -> Result<Digest> {
        if let Some(digest) = &image.digest {
            return Ok(digest.clone());
        }
        let tag = image.tag.clone().unwrap_or_else(|| "latest".into());
        let descriptor = self
            .client
            .head_manifest(&Repository::from(image), &tag)
            .await?
            .ok_or_else(|| ProviderError::Permanent(format!("{image} does not exist in the registry")))?;
        descriptor.digest.parse().map_err(|e| ProviderError::Permanent(format!("{image}: {e}")))
    }
}

#[async_trait::async_trait]
impl Builder for RegistryBuilder {
    async fn build(
        &self,
        policy: &ImagePolicy,
        release: &Release,
        repository: &ImageRef,
        context: &BuildContext,
    ) -> Result<BuildStep> {
        let name = release.metadata.name.clone().unwrap_or_default();
        if let Some(source) = &release.spec.source {
            let source: ImageRef =
                source.image.parse().map_err(|e| ProviderError::Permanent(format!("spec.source.image: {e}")))?;
            if source.repository_ref() != repository.repository_ref() {
                return Err(ProviderError::Permanent(format!(
                    "spec.source.image is in {}, but the policy promotes {}",
                    source.repository_ref(),
                    repository.repository_ref()
                )));
            }
            let digest = self.resolve(&source).await?;
            return Ok(BuildStep::Done(Built {
                run: format!("resolved {source} to {digest}"),
                digest,
                run_id: None,
                log_link: None,
            }));
        }
        let (base_ref, new_base) = self.new_base(policy, release).await?;
        match policy.spec.build.strategy {
            BuildStrategy::Rebase => {}
            BuildStrategy::External => {
                return crate::external_build::step(
                    &self.client,
                    policy,
                    release,
                    repository,
                    (&base_ref, &new_base),
                    context,
                )
                .await;
            }
            BuildStrategy::Job => {
                let kube = self.reach.client(policy.metadata.namespace.as_deref().unwrap_or_default())?;
                return crate::job_build::step(
                    &kube,
                    &self.client,
                    policy,
                    release,
                    repository,
                    (&base_ref, &new_base),
                    context,
                )
                .await;
            }
            BuildStrategy::AcrTask => {
                let acr_tasks = self.acr_tasks.as_ref().ok_or_else(|| {
                    ProviderError::NotConfigured(
                        "spec.build.strategy acrTask needs the controller's Azure credential: start it with \
                         --azure-credential (and its --azure-tenant-id/--azure-client-id settings) and grant the \
                         policy's namespace the registry with --azure-grant <namespace>=<registry, resource group or \
                         subscription id>"
                            .into(),
                    )
                })?;
                return acr_tasks
                    .step(&self.client, policy, release, repository, (&base_ref, &new_base), context)
                    .await;
            }
        }
        let base_reference = base_ref.to_string();
        let source_reference = match (
            policy.spec.build.rebase.as_ref().and_then(|r| r.source_tag.clone()),
            policy.status.as_ref().and_then(|s| s.production_digest.clone()),
        ) {
            (Some(tag), _) => tag,
            (None, Some(digest)) => digest,
            (None, None) => {
                return Err(ProviderError::Permanent(
                    "nothing to rebase: production runs no digest yet; set spec.build.rebase.sourceTag".into(),
                ));
            }
        };
        let short = new_base.trim_start_matches("sha256:").chars().take(12).collect::<String>();
        let tag = format!(
            "tidegate-{short}-{}",
            name.chars().rev().take(10).collect::<String>().chars().rev().collect::<String>()
        );
        let request = RebaseRequest {
            repository: Repository::from(repository),
            reference: source_reference.clone(),
            old_base: None,
            new_base: (Repository::from(&base_ref), new_base.clone()),
            new_base_name: base_reference,
            tag: tag.clone(),
        };
        let rebased = rebase(&self.client, &request).await?;
        let digest: Digest =
            rebased.digest.parse().map_err(|e| ProviderError::Permanent(format!("rebased digest: {e}")))?;
        Ok(BuildStep::Done(Built {
            run: format!(
                "rebased {source_reference} onto {new_base} as :{tag} ({} blobs mounted, {} uploaded)",
                rebased.mounted, rebased.uploaded
            ),
            digest,
            run_id: None,
            log_link: None,
        }))
    }
}
