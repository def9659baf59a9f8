//! `job` builds: a Kubernetes Job from the policy's template runs the user's builder. It gets
//! `TIDEGATE_IMAGE_REPOSITORY`, `TIDEGATE_BASE_IMAGE` (`ref@digest`) and `TIDEGATE_RELEASE`, and
//! must report the digest it pushed as its container's termination message (write it to
//! `/dev/termination-log`). Tidegate checks that the digest exists before using it.

use std::time::Duration;

use tidegate_api::{ImagePolicy, LABEL_POLICY, Release};
use tidegate_core::{Digest, ImageRef, parse_duration};

use crate::jobs::{JobOutcome, run_from_template, termination_messages};
use crate::registry::{RegistryClient, Repository};
use crate::{BuildContext, BuildStep, Built, ProviderError, Result};

/// One step of a Job build.
pub async fn step(
    kube: &kube::Client,
    client: &RegistryClient,
    policy: &ImagePolicy,
    release: &Release,
    repository: &ImageRef,
    (base, new_base): (&ImageRef, &str),
    context: &BuildContext,
) -> Result<BuildStep> {
    let settings =
        policy.spec.build.job.as_ref().ok_or_else(|| ProviderError::Permanent("spec.build.job is missing".into()))?;
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let release_name = release.metadata.name.clone().unwrap_or_default();
    let name = format!("{}-build", release_name.chars().take(56).collect::<String>());
    let base_image = format!("{}@{new_base}", base.repository_ref());
    let repository_ref = repository.repository_ref();
    let policy_name = policy.metadata.name.clone().unwrap_or_default();
    let (outcome, job) = run_from_template(
        kube,
        &namespace,
        &settings.template_config_map,
        &namespace,
        &name,
        &[
            ("TIDEGATE_IMAGE_REPOSITORY", &repository_ref),
            ("TIDEGATE_BASE_IMAGE", &base_image),
            ("TIDEGATE_RELEASE", &release_name),
        ],
        &[(LABEL_POLICY, &policy_name), ("tidegate.dev/release", &release_name)],
    )
    .await?;
    if context.started_at.is_none() {
        return Ok(BuildStep::Started { run: format!("Job {namespace}/{name}"), run_id: None });
    }
    match outcome {
        JobOutcome::Failed(why) => Err(ProviderError::Permanent(why)),
        JobOutcome::Running => {
            let timeout = parse_duration(&settings.timeout).unwrap_or(Duration::from_secs(3600));
            if context.started_at.is_some_and(|s| context.now.duration_since(s).unsigned_abs() > timeout) {
                return Err(ProviderError::Permanent(format!(
                    "build Job {namespace}/{name} did not finish within {}",
                    settings.timeout
                )));
            }
            Ok(BuildStep::Waiting(format!("waiting for build Job {namespace}/{name}")))
        }
        JobOutcome::Succeeded => {
            let messages = termination_messages(kube, &job).await?;
            let digest: Digest = messages
                .iter()
                .find_map(|m| m.parse().ok())
                .ok_or_else(|| ProviderError::Permanent(format!(
                    "build Job {namespace}/{name} succeeded but reported no digest: write the pushed sha256:… digest to /dev/termination-log"
                )))?;
            if client.head_manifest(&Repository::from(repository), digest.as_str()).await?.is_none() {
                return Err(ProviderError::Permanent(format!(
                    "build Job {namespace}/{name} reported {digest}, which is not in {repository_ref}"
                )));
            }
            Ok(BuildStep::Done(Built { run: format!("Job {namespace}/{name}"), digest, run_id: None, log_link: None }))
        }
    }
}
