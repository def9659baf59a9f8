//! Kubernetes Jobs from user templates: staging test Jobs and build Jobs. The Job is created once
//! under a deterministic name; later calls only observe it.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Pod};
use kube::api::{Api, ListParams, PostParams};

use crate::{ProviderError, Result};

/// The outcome of a Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    /// Still running.
    Running,
    /// Completed successfully.
    Succeeded,
    /// Failed, with the Job's reason.
    Failed(String),
}

/// Starts (once) and observes Job `name` in `namespace`, built from the template in ConfigMap
/// `template` (key `job.yaml`) of `template_namespace`, with `env` set on every container.
/// Returns the outcome and the Job.
pub async fn run_from_template(
    client: &kube::Client,
    template_namespace: &str,
    template: &str,
    namespace: &str,
    name: &str,
    env: &[(&str, &str)],
    labels: &[(&str, &str)],
) -> Result<(JobOutcome, Job)> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let job = match jobs.get_opt(name).await? {
        Some(job) => job,
        None => {
            let mut job = from_template(client, template_namespace, template).await?;
            job.metadata.name = Some(name.to_string());
            job.metadata.namespace = Some(namespace.to_string());
            job.metadata.generate_name = None;
            let meta_labels = job.metadata.labels.get_or_insert_with(Default::default);
            for (k, v) in labels {
                meta_labels.insert((*k).to_string(), (*v).to_string());
            }
            let spec = job
                .spec
                .as_mut()
                .ok_or_else(|| ProviderError::Permanent(format!("ConfigMap {template}: the Job has no spec")))?;
            if let Some(pod) = spec.template.spec.as_mut() {
                for container in &mut pod.containers {
                    // A failing container's last log lines become its termination message, which
                    // the failure then quotes (a template may choose otherwise).
                    container.termination_message_policy.get_or_insert_with(|| "FallbackToLogsOnError".into());
                    let vars = container.env.get_or_insert_with(Vec::new);
                    for (key, value) in env {
                        vars.retain(|e| e.name != *key);
                        vars.push(EnvVar {
                            name: (*key).to_string(),
                            value: Some((*value).to_string()),
                            value_from: None,
                        });
                    }
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
    let outcome = if conditions.iter().any(|c| c.type_ == "Complete" && c.status == "True") {
        JobOutcome::Succeeded
    } else if let Some(failed) = conditions.iter().find(|c| c.type_ == "Failed" && c.status == "True") {
        let mut message = format!(
            "Job {namespace}/{name} failed: {}",
            failed.message.clone().or(failed.reason.clone()).unwrap_or_default()
        );
        // What the program said: best effort, the failure stands without it.
        match failure_excerpts(client, &job).await {
            Ok(excerpts) if !excerpts.is_empty() => message.push_str(&format!("; {}", excerpts.join("; "))),
            Ok(_) => {}
            Err(e) => tracing::warn!(job = %name, error = %e, "reading the failed Job's Pods"),
        }
        JobOutcome::Failed(message)
    } else {
        JobOutcome::Running
    };
    Ok((outcome, job))
}

async fn from_template(client: &kube::Client, namespace: &str, template: &str) -> Result<Job> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = configmaps
        .get_opt(template)
        .await?
        .ok_or_else(|| ProviderError::Permanent(format!("Job template ConfigMap {namespace}/{template} not found")))?;
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("job.yaml"))
        .ok_or_else(|| ProviderError::Permanent(format!("ConfigMap {namespace}/{template} has no job.yaml")))?;
    serde_yaml::from_str(text)
        .map_err(|e| ProviderError::Permanent(format!("ConfigMap {namespace}/{template} job.yaml is not a Job: {e}")))
}

/// The most a failure quotes of one container's termination message (its last log lines).
const EXCERPT: usize = 600;

/// For each container of the Job's Pods that exited non-zero: its exit code and the end of its
/// termination message (with `FallbackToLogsOnError`, the last lines of its log).
async fn failure_excerpts(client: &kube::Client, job: &Job) -> Result<Vec<String>> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let list = pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}"))).await?;
    let mut excerpts = Vec::new();
    for status in list.items.iter().filter_map(|p| p.status.as_ref()?.container_statuses.clone()).flatten() {
        let terminated = status
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .or_else(|| status.last_state.as_ref().and_then(|s| s.terminated.clone()));
        let Some(terminated) = terminated.filter(|t| t.exit_code != 0) else { continue };
        let text = terminated.message.unwrap_or_default();
        let text = text.trim();
        let tail: String = match text.char_indices().rev().nth(EXCERPT) {
            Some((cut, _)) => format!("…{}", &text[cut..]),
            None => text.to_string(),
        };
        let said = if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        excerpts.push(format!("container {} exited {}{said}", status.name, terminated.exit_code));
        if excerpts.len() == 3 {
            break;
        }
    }
    excerpts.dedup();
    Ok(excerpts)
}

/// The termination messages of the containers of a Job's succeeded Pods: how a build Job reports
/// what it pushed.
pub async fn termination_messages(client: &kube::Client, job: &Job) -> Result<Vec<String>> {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let list = pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}"))).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.clone())
        .flatten()
        .filter_map(|c| c.state?.terminated?.message)
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect())
}
