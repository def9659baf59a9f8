//! Container Apps Jobs: updated directly to the digest (jobs have no revisions); on staging, one
//! execution may be started and awaited. An execution is matched to the image by its own
//! template, so a restarted controller finds the execution it started instead of starting another.

use tidegate_core::promotion::{Health, Progress};

use super::{AzureTargets, Role, is_final, template_image};
use crate::Result;
use crate::azure::models::{Job, JobExecution};
use crate::azure::resource_id::ResourceId;

impl AzureTargets {
    /// One convergence step of the job `id` towards `image`.
    pub async fn converge_job(
        &self,
        id: &ResourceId,
        container: Option<&str>,
        role: &Role,
        image: &str,
    ) -> Result<Progress> {
        if let Role::Staging { .. } = role {
            self.scopes.check_staging_app(id)?;
        }
        let job = self.apps.job(id).await.map_err(|e| self.error(e))?;
        let name = &job.name;
        if job_image(&job, container).as_deref() != Some(image) {
            self.apps.set_job_image(id, container, image).await.map_err(|e| self.error(e))?;
            return Ok(Progress::InProgress(format!("Container Apps Job {name}: image set to {image}")));
        }
        if let Some(state) = job.properties.provisioning_state.as_deref().filter(|s| !is_final(s)) {
            return Ok(Progress::InProgress(format!("Container Apps Job {name}: provisioning ({state})")));
        }
        if job.properties.provisioning_state.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("Failed")) {
            return Ok(Progress::Failed(format!("Container Apps Job {name}: provisioning failed")));
        }
        let verify = matches!(role, Role::Staging { verify_execution: true, .. });
        if !verify {
            return Ok(Progress::Done);
        }
        let executions = self.apps.executions(id).await.map_err(|e| self.error(e))?;
        let Some(execution) = newest_running(&executions, container, image) else {
            let started = self.apps.start_job(id).await.map_err(|e| self.error(e))?;
            return Ok(Progress::InProgress(format!(
                "Container Apps Job {name}: started execution {started} of {image}"
            )));
        };
        Ok(match execution.properties.status.as_deref() {
            Some(s) if s.eq_ignore_ascii_case("Succeeded") => Progress::Done,
            Some(s) if ["Failed", "Stopped", "Degraded"].iter().any(|f| f.eq_ignore_ascii_case(s)) => Progress::Failed(
                format!("Container Apps Job {name}: execution {} of {image} ended {s}", execution.name),
            ),
            status => Progress::InProgress(format!(
                "Container Apps Job {name}: execution {} is {}",
                execution.name,
                status.unwrap_or("starting")
            )),
        })
    }

    /// The image the job runs.
    pub async fn job_image(&self, id: &ResourceId, container: Option<&str>) -> Result<Option<String>> {
        Ok(job_image(&self.apps.job(id).await.map_err(|e| self.error(e))?, container))
    }

    /// Health of the job on `image`: defined as the job, and no execution of it failed.
    pub async fn job_health(&self, id: &ResourceId, container: Option<&str>, image: &str) -> Result<Health> {
        let job = self.apps.job(id).await.map_err(|e| self.error(e))?;
        if job_image(&job, container).as_deref() != Some(image) {
            return Ok(Health::Unhealthy(format!("Container Apps Job {} no longer runs {image}", job.name)));
        }
        let executions = self.apps.executions(id).await.map_err(|e| self.error(e))?;
        let failed = executions.iter().find(|e| {
            execution_image(e, container).as_deref() == Some(image)
                && e.properties
                    .status
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("Failed") || s.eq_ignore_ascii_case("Degraded"))
        });
        Ok(match failed {
            Some(e) => {
                Health::Unhealthy(format!("Container Apps Job {}: execution {} of {image} failed", job.name, e.name))
            }
            None => Health::Healthy,
        })
    }

    /// Whether the job ran `image`, by its executions' own templates (or runs it now).
    pub async fn job_ran(&self, id: &ResourceId, container: Option<&str>, image: &str) -> Result<bool> {
        if self.job_image(id, container).await?.as_deref() == Some(image) {
            return Ok(true);
        }
        let executions = self.apps.executions(id).await.map_err(|e| self.error(e))?;
        Ok(executions.iter().any(|e| execution_image(e, container).as_deref() == Some(image)))
    }
}

fn job_image(job: &Job, container: Option<&str>) -> Option<String> {
    template_image(&job.properties.template, container)
}

fn execution_image(execution: &JobExecution, container: Option<&str>) -> Option<String> {
    template_image(execution.properties.template.as_ref()?, container)
}

/// The newest execution whose template ran `image`.
fn newest_running<'a>(
    executions: &'a [JobExecution],
    container: Option<&str>,
    image: &str,
) -> Option<&'a JobExecution> {
    executions
        .iter()
        .filter(|e| execution_image(e, container).as_deref() == Some(image))
        .max_by(|a, b| a.properties.start_time.cmp(&b.properties.start_time))
}
