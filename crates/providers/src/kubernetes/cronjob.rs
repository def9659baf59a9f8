//! CronJobs: the job definition is updated to the digest in place (`direct`); jobs have no
//! revisions to run side by side.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, Patch};
use serde_json::json;
use tidegate_core::promotion::{Health, Progress};

use super::{KubernetesTargets, Resolved, container_index};
use crate::{ProviderError, Result};

async fn get(targets: &KubernetesTargets, target: &Resolved<'_>) -> Result<(Api<CronJob>, CronJob)> {
    let api: Api<CronJob> = Api::namespaced(targets.client().clone(), &target.namespace);
    let cronjob = api
        .get_opt(&target.target.name)
        .await?
        .ok_or_else(|| ProviderError::Permanent(format!("target {} not found", target.display())))?;
    Ok((api, cronjob))
}

/// The CronJob.
pub(super) async fn object(targets: &KubernetesTargets, target: &Resolved<'_>) -> Result<CronJob> {
    Ok(get(targets, target).await?.1)
}

fn containers(cronjob: &CronJob) -> &[k8s_openapi::api::core::v1::Container] {
    cronjob
        .spec
        .job_template
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers.as_slice())
        .unwrap_or_default()
}

pub(super) async fn image(targets: &KubernetesTargets, target: &Resolved<'_>) -> Result<Option<String>> {
    let (_, cronjob) = get(targets, target).await?;
    Ok(image_of(&cronjob, target.target.container.as_deref()))
}

/// The managed container's image.
pub(super) fn image_of(cronjob: &CronJob, container: Option<&str>) -> Option<String> {
    let containers = containers(cronjob);
    container_index(containers, container).and_then(|i| containers[i].image.clone())
}

/// Annotation on a CronJob: the images its job definition had before Tidegate changed it, oldest
/// first, space-separated.
pub const ANNOTATION_IMAGES_RUN: &str = "tidegate.dev/images-run";
const IMAGES_RUN_KEPT: usize = 10;

/// The images the CronJob's own record says it ran.
pub(super) fn images_run(cronjob: &CronJob) -> Vec<String> {
    cronjob
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_IMAGES_RUN))
        .map(|v| v.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether the CronJob ran `image`: its recorded images, or a Job it owns.
pub(super) async fn ran(targets: &KubernetesTargets, target: &Resolved<'_>, image: &str) -> Result<bool> {
    let (_, cronjob) = get(targets, target).await?;
    if images_run(&cronjob).iter().any(|i| i == image) {
        return Ok(true);
    }
    let uid = cronjob.metadata.uid.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(targets.client().clone(), &target.namespace);
    Ok(jobs.list(&Default::default()).await?.items.iter().any(|job| {
        job.metadata.owner_references.as_ref().is_some_and(|o| o.iter().any(|r| r.uid == uid))
            && job
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .is_some_and(|p| p.containers.iter().any(|c| c.image.as_deref() == Some(image)))
    }))
}

pub(super) async fn converge(targets: &KubernetesTargets, target: &Resolved<'_>, image: &str) -> Result<Progress> {
    let (api, cronjob) = get(targets, target).await?;
    let list = containers(&cronjob);
    let i = container_index(list, target.target.container.as_deref()).ok_or_else(|| {
        ProviderError::Permanent(format!(
            "{} has no container {}",
            target.display(),
            target.target.container.as_deref().unwrap_or("at all")
        ))
    })?;
    if list[i].image.as_deref() == Some(image) {
        return Ok(Progress::Done);
    }
    // The image it ran until now is recorded on the CronJob itself: a rollback target is trusted
    // only from the workload's own record, whose writers could set any image anyway.
    let mut previous = images_run(&cronjob);
    if let Some(old) = &list[i].image {
        previous.retain(|p| p != old);
        previous.push(old.clone());
    }
    let keep = previous.len().saturating_sub(IMAGES_RUN_KEPT);
    let patch = json!({
        "metadata": {"annotations": {ANNOTATION_IMAGES_RUN: previous[keep..].join(" ")}},
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": list[i].name, "image": image}]}}}}}
    });
    api.patch(&target.target.name, &targets.params(), &Patch::Strategic(&patch)).await?;
    Ok(Progress::InProgress(format!("{}: job definition set to {image}", target.display())))
}

/// Unhealthy when a Job of this CronJob that runs `image` failed.
pub(super) async fn health(targets: &KubernetesTargets, target: &Resolved<'_>, image: &str) -> Result<Health> {
    let (_, cronjob) = get(targets, target).await?;
    let uid = cronjob.metadata.uid.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(targets.client().clone(), &target.namespace);
    for job in jobs.list(&ListParams::default()).await?.items {
        let owned = job.metadata.owner_references.as_ref().is_some_and(|o| o.iter().any(|r| r.uid == uid));
        let runs_image = job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .is_some_and(|p| p.containers.iter().any(|c| c.image.as_deref() == Some(image)));
        let failed = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Failed" && c.status == "True"));
        if owned && runs_image && failed {
            return Ok(Health::Unhealthy(format!(
                "{}: Job {} failed",
                target.display(),
                job.metadata.name.unwrap_or_default()
            )));
        }
    }
    Ok(Health::Healthy)
}
