//! The parts of Container Apps resources Tidegate reads (API version
//! [`super::arm::API_VERSION`]). Everything else is ignored when reading; containers keep every
//! field they came with ([`Container::rest`]) so that writing one back changes only its image.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A container of an app, revision, job or execution template. Only `name` and `image` are
/// interpreted; every other field (resources, probes, env, volume mounts, fields newer than this
/// code) is kept as it was read and written back unchanged.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// The container's name within the template.
    #[serde(default)]
    pub name: String,
    /// The image reference.
    #[serde(default)]
    pub image: String,
    /// Every other field, untouched.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// The containers of a template.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Template {
    /// Suffix of the revision the template creates (apps only).
    pub revision_suffix: Option<String>,
    /// The containers.
    pub containers: Vec<Container>,
}

/// A Container App (`Microsoft.App/containerApps`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerApp {
    /// The ARM id.
    pub id: Option<String>,
    /// The name.
    pub name: String,
    /// The properties Tidegate reads.
    pub properties: ContainerAppProperties,
}

/// Properties of a Container App.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerAppProperties {
    /// `InProgress`, `Succeeded`, `Failed`, `Canceled`, `Deleting`.
    pub provisioning_state: Option<String>,
    /// `Progressing`, `Running`, `Stopped`, `Suspended`, `Ready`.
    pub running_status: Option<String>,
    /// The newest revision.
    pub latest_revision_name: Option<String>,
    /// The newest revision that is ready.
    pub latest_ready_revision_name: Option<String>,
    /// Configuration (revisions mode, ingress).
    pub configuration: Configuration,
    /// The template new revisions are made from.
    pub template: Template,
}

/// App configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Configuration {
    /// `Single`, `Multiple` or `Labels`.
    pub active_revisions_mode: Option<String>,
    /// Ingress, when the app has any.
    pub ingress: Option<Ingress>,
}

/// App ingress.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Ingress {
    /// The app's host name.
    pub fqdn: Option<String>,
    /// How traffic is split between revisions.
    pub traffic: Vec<TrafficWeight>,
}

/// One entry of `ingress.traffic`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TrafficWeight {
    /// The revision, unless `latest_revision` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_name: Option<String>,
    /// Percentage of traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Whether the entry follows the latest ready revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<bool>,
    /// A label that gets its own URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

impl TrafficWeight {
    /// `weight` percent to the revision `name`.
    pub fn revision(name: impl Into<String>, weight: i32) -> Self {
        Self { revision_name: Some(name.into()), weight: Some(weight), ..Self::default() }
    }
}

/// A revision of a Container App.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Revision {
    /// The revision name.
    pub name: String,
    /// The properties Tidegate reads.
    pub properties: RevisionProperties,
}

/// Properties of a revision.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RevisionProperties {
    /// When it was created (RFC 3339).
    pub created_time: Option<String>,
    /// Whether it is active.
    pub active: Option<bool>,
    /// Number of replicas.
    pub replicas: Option<i64>,
    /// Its share of traffic.
    pub traffic_weight: Option<i32>,
    /// `Healthy`, `Unhealthy`, `None`.
    pub health_state: Option<String>,
    /// `Provisioning`, `Provisioned`, `Failed`, `Deprovisioning`, `Deprovisioned`.
    pub provisioning_state: Option<String>,
    /// `Running`, `Processing`, `Stopped`, `Degraded`, `Failed`, `Unknown`, `Activating`, …
    pub running_state: Option<String>,
    /// Why provisioning failed.
    pub provisioning_error: Option<String>,
    /// The revision's own host name.
    pub fqdn: Option<String>,
    /// The revision's template.
    pub template: Template,
}

impl Revision {
    /// Provisioned, healthy and running (or activating into running).
    pub fn is_ready(&self) -> bool {
        let p = &self.properties;
        p.provisioning_state.as_deref() == Some("Provisioned")
            && p.health_state.as_deref() != Some("Unhealthy")
            && !matches!(p.running_state.as_deref(), Some("Failed" | "Degraded" | "Stopped"))
    }

    /// Provisioning failed or the revision runs in a failed state.
    pub fn has_failed(&self) -> bool {
        let p = &self.properties;
        p.provisioning_state.as_deref() == Some("Failed") || p.running_state.as_deref() == Some("Failed")
    }
}

/// A replica of a revision.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Replica {
    /// The replica name.
    pub name: String,
    /// The properties Tidegate reads.
    pub properties: ReplicaProperties,
}

/// Properties of a replica.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaProperties {
    /// `Running`, `NotRunning`, `Unknown`.
    pub running_state: Option<String>,
    /// Its containers.
    pub containers: Vec<ReplicaContainer>,
}

/// A container of a replica.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaContainer {
    /// The container's name.
    pub name: String,
    /// Whether it is ready.
    pub ready: Option<bool>,
    /// Whether it started.
    pub started: Option<bool>,
    /// How often it restarted.
    pub restart_count: Option<i64>,
    /// `Running`, `Terminated`, `Waiting`.
    pub running_state: Option<String>,
}

/// A Container Apps Job (`Microsoft.App/jobs`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Job {
    /// The ARM id.
    pub id: Option<String>,
    /// The name.
    pub name: String,
    /// The properties Tidegate reads.
    pub properties: JobProperties,
}

/// Properties of a job.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobProperties {
    /// `InProgress`, `Succeeded`, `Failed`, `Canceled`, `Deleting`.
    pub provisioning_state: Option<String>,
    /// The template executions run.
    pub template: Template,
    /// The trigger.
    pub configuration: JobConfiguration,
}

/// Job configuration.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobConfiguration {
    /// `Manual`, `Schedule` or `Event`.
    pub trigger_type: Option<String>,
}

/// One execution of a job.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobExecution {
    /// The execution name.
    pub name: String,
    /// The properties Tidegate reads.
    pub properties: JobExecutionProperties,
}

/// Properties of a job execution.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobExecutionProperties {
    /// `Running`, `Processing`, `Stopped`, `Degraded`, `Failed`, `Unknown`, `Succeeded`.
    pub status: Option<String>,
    /// When it started (RFC 3339).
    pub start_time: Option<String>,
    /// When it ended (RFC 3339).
    pub end_time: Option<String>,
    /// The template the execution runs, when ARM includes it.
    pub template: Option<Template>,
}

impl JobExecution {
    /// Whether the execution has ended, successfully or not.
    pub fn is_finished(&self) -> bool {
        matches!(self.properties.status.as_deref(), Some("Succeeded" | "Failed" | "Stopped" | "Degraded"))
    }
}

/// What `POST …/jobs/{name}/start` answers: the execution it started.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobExecutionBase {
    /// The execution name.
    pub name: Option<String>,
    /// The execution's ARM id.
    pub id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn example(name: &str) -> Value {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/fixtures/azure/containerapps/examples")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    fn response(name: &str, status: &str) -> Value {
        example(name)["responses"][status]["body"].clone()
    }

    #[test]
    fn container_apps_examples_parse() {
        for (file, status) in [
            ("ContainerApps_Get.json", "200"),
            ("ContainerApps_Patch.json", "200"),
            ("ContainerApps_CreateOrUpdate.json", "200"),
            ("ContainerApps_CreateOrUpdate.json", "201"),
        ] {
            let app: ContainerApp = serde_json::from_value(response(file, status)).unwrap();
            assert!(!app.name.is_empty(), "{file} {status}");
            assert!(!app.properties.template.containers.is_empty(), "{file} {status}");
        }
        let app: ContainerApp = serde_json::from_value(response("ContainerApps_Get.json", "200")).unwrap();
        let p = &app.properties;
        assert_eq!(p.provisioning_state.as_deref(), Some("Succeeded"));
        assert_eq!(p.running_status.as_deref(), Some("Running"));
        assert_eq!(p.latest_ready_revision_name.as_deref(), Some("testcontainerapp0-pjxhsye"));
        let ingress = p.configuration.ingress.as_ref().unwrap();
        assert_eq!(ingress.fqdn.as_deref(), Some("testcontainerapp0.demokube-t24clv0g.eastus.containerApps.k4apps.io"));
        assert_eq!(
            ingress.traffic[1],
            TrafficWeight { label: Some("staging".into()), ..TrafficWeight::revision("testcontainerapp0-ab4321", 20) }
        );
    }

    #[test]
    fn containers_keep_every_field_they_came_with() {
        let body = response("ContainerApps_Get.json", "200");
        let raw = body["properties"]["template"]["containers"].clone();
        let app: ContainerApp = serde_json::from_value(body).unwrap();
        let written = serde_json::to_value(&app.properties.template.containers).unwrap();
        assert_eq!(written, raw);
        assert!(
            app.properties.template.containers[0].rest.contains_key("volumeMounts"),
            "the example has volume mounts"
        );
    }

    #[test]
    fn revision_replica_and_job_examples_parse() {
        let revision: Revision = serde_json::from_value(response("Revisions_Get.json", "200")).unwrap();
        assert_eq!(revision.name, "testcontainerApp0-pjxhsye");
        assert_eq!(revision.properties.traffic_weight, Some(80));
        assert_eq!(revision.properties.template.containers[0].image, "repo/testcontainerApp0:v2");
        assert_eq!(
            revision.properties.fqdn.as_deref(),
            Some("testcontainerApp0-pjxhsye.politehill-ab123456.eastus.azurecontainerapps.io")
        );

        let list = response("Revisions_List.json", "200");
        let revisions: Vec<Revision> = serde_json::from_value(list["value"].clone()).unwrap();
        assert!(!revisions.is_empty());

        let replica: Replica = serde_json::from_value(response("Replicas_Get.json", "200")).unwrap();
        let c = &replica.properties.containers[0];
        assert_eq!(
            (c.name.as_str(), c.ready, c.started, c.restart_count),
            ("hello92", Some(true), Some(true), Some(0))
        );
        assert_eq!(c.running_state.as_deref(), Some("Running"));

        for (file, status) in
            [("Job_Patch.json", "200"), ("Job_CreateorUpdate.json", "200"), ("Job_CreateorUpdate.json", "201")]
        {
            let job: Job = serde_json::from_value(response(file, status)).unwrap();
            assert!(!job.properties.template.containers.is_empty(), "{file}");
            assert!(job.properties.configuration.trigger_type.is_some(), "{file}");
        }

        let execution: JobExecution = serde_json::from_value(response("Job_Execution_Get.json", "200")).unwrap();
        assert_eq!(execution.name, "jobExecution1");
        assert_eq!(execution.properties.status.as_deref(), Some("Running"));
        assert!(!execution.is_finished());
        let executions = response("Job_Executions_Get.json", "200");
        let executions: Vec<JobExecution> = serde_json::from_value(executions["value"].clone()).unwrap();
        assert!(!executions.is_empty());

        let started: JobExecutionBase = serde_json::from_value(response("Job_Start.json", "200")).unwrap();
        assert_eq!(started.name.as_deref(), Some("testcontainerappsjob0-pjxhsye"));
    }

    #[test]
    fn traffic_serializes_only_what_is_set() {
        let t = TrafficWeight { latest_revision: Some(true), weight: Some(0), ..TrafficWeight::default() };
        assert_eq!(serde_json::to_value(&t).unwrap(), serde_json::json!({"latestRevision": true, "weight": 0}));
    }
}
