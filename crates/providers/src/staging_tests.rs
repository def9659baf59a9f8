//! Staging tests: HTTP checks against the staging URL and a test Job whose outcome decides.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use tidegate_api::image_policy::HttpCheck;

use crate::{ProviderError, Result};

/// The result of one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was observed.
    pub message: String,
}

/// Runs one HTTP check: GET `base + path`, compare the status.
pub async fn http_check(check: &HttpCheck, base_url: &str) -> CheckResult {
    let url = format!("{}{}", base_url.trim_end_matches('/'), check.path);
    let timeout = tidegate_core::parse_duration(&check.timeout).unwrap_or(Duration::from_secs(10));
    crate::ensure_crypto_provider();
    let client = match reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build() {
        Ok(client) => client,
        Err(e) => return CheckResult { name: check.name.clone(), passed: false, message: format!("cannot build an HTTP client: {e}") },
    };
    let (passed, message) = match client.get(&url).send().await {
        Ok(response) => {
            let status = i32::from(response.status().as_u16());
            (status == check.expect_status, format!("GET {url}: {status}, expected {}", check.expect_status))
        }
        Err(e) => (false, format!("GET {url} failed: {e}")),
    };
    CheckResult { name: check.name.clone(), passed, message }
}

/// The outcome of a test Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Still running.
    Running,
    /// Completed successfully.
    Succeeded,
    /// Failed, with the Job's reason.
    Failed(String),
}

/// Starts (once) and observes the test Job `name` in `namespace`, built from the template in
/// ConfigMap `template` (key `job.yaml`) of `template_namespace`, with `TIDEGATE_IMAGE` set to the
/// candidate on every container.
pub async fn test_job(
    client: &kube::Client,
    template_namespace: &str,
    template: &str,
    namespace: &str,
    name: &str,
    image: &str,
    labels: &[(&str, &str)],
) -> Result<JobOutcome> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let job = match jobs.get_opt(name).await? {
        Some(job) => job,
        None => {
            let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), template_namespace);
            let cm = configmaps
                .get_opt(template)
                .await?
                .ok_or_else(|| ProviderError::Permanent(format!("test Job template ConfigMap {template_namespace}/{template} not found")))?;
            let text = cm
                .data
                .as_ref()
                .and_then(|d| d.get("job.yaml"))
                .ok_or_else(|| ProviderError::Permanent(format!("ConfigMap {template} has no job.yaml")))?;
            let mut job: Job = serde_yaml::from_str(text)
                .map_err(|e| ProviderError::Permanent(format!("ConfigMap {template} job.yaml is not a Job: {e}")))?;
            job.metadata.name = Some(name.to_string());
            job.metadata.namespace = Some(namespace.to_string());
            job.metadata.generate_name = None;
            let meta_labels = job.metadata.labels.get_or_insert_with(Default::default);
            for (k, v) in labels {
                meta_labels.insert((*k).to_string(), (*v).to_string());
            }
            let spec = job.spec.as_mut().ok_or_else(|| ProviderError::Permanent(format!("ConfigMap {template}: the Job has no spec")))?;
            if let Some(pod) = spec.template.spec.as_mut() {
                for container in &mut pod.containers {
                    let env = container.env.get_or_insert_with(Vec::new);
                    env.retain(|e| e.name != "TIDEGATE_IMAGE");
                    env.push(k8s_openapi::api::core::v1::EnvVar { name: "TIDEGATE_IMAGE".into(), value: Some(image.to_string()), value_from: None });
                }
            }
            match jobs.create(&PostParams::default(), &job).await {
                Ok(job) => job,
                Err(kube::Error::Api(s)) if s.code == 409 => jobs.get(name).await?,
                Err(e) => return Err(e.into()),
            }
        }
    };
    let conditions = job.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if conditions.iter().any(|c| c.type_ == "Complete" && c.status == "True") {
        return Ok(JobOutcome::Succeeded);
    }
    if let Some(failed) = conditions.iter().find(|c| c.type_ == "Failed" && c.status == "True") {
        return Ok(JobOutcome::Failed(format!(
            "test Job {namespace}/{name} failed: {}",
            failed.message.clone().or(failed.reason.clone()).unwrap_or_default()
        )));
    }
    Ok(JobOutcome::Running)
}
