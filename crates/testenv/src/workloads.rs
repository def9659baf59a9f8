//! Readiness checks on workloads, shared by tests and the demo.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;

/// Whether a Deployment has `Available=True` and every replica of its current spec is available.
pub fn deployment_available(deployment: &Deployment) -> bool {
    let Some(status) = deployment.status.as_ref() else { return false };
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let observed = status.observed_generation == deployment.metadata.generation;
    let available =
        status.conditions.as_ref().is_some_and(|c| c.iter().any(|c| c.type_ == "Available" && c.status == "True"));
    observed
        && available
        && status.available_replicas.unwrap_or(0) >= wanted
        && status.updated_replicas.unwrap_or(0) >= wanted
}

/// Whether a Job has `Complete=True`.
pub fn job_complete(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Complete" && c.status == "True"))
}
