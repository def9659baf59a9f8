//! Typed Container Apps operations on top of [`Arm`]. Writes are JSON merge patches that carry
//! only what Tidegate changes: the containers (as read, with one image replaced: arrays are
//! replaced whole by a merge patch, so every container and every field of it is sent back
//! unchanged), the revision suffix, and the traffic when asked. Nothing else of the resource is
//! touched.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::arm::Arm;
use super::error::{AzureError, Result};
use super::models::{Container, ContainerApp, Job, JobExecution, JobExecutionBase, Replica, Revision, TrafficWeight};
use super::resource_id::{ResourceId, ResourceKind};

/// Container Apps and Container Apps Jobs, through a shared [`Arm`].
#[derive(Clone, Debug)]
pub struct ContainerApps {
    arm: Arc<Arm>,
}

/// Picks the named container, or the first; a missing name is an error naming it and the
/// containers present.
pub fn select_container<'a>(
    containers: &'a [Container],
    wanted: Option<&str>,
    resource: &ResourceId,
) -> Result<&'a Container> {
    let found = match wanted {
        Some(name) => containers.iter().find(|c| c.name == name),
        None => containers.first(),
    };
    found.ok_or_else(|| AzureError::NoSuchContainer {
        wanted: wanted.unwrap_or("(the first)").to_string(),
        resource: resource.to_string(),
        present: containers.iter().map(|c| c.name.clone()).collect(),
    })
}

/// The containers as read, with the image of the selected one replaced.
pub fn replace_image(
    containers: &[Container],
    wanted: Option<&str>,
    image: &str,
    resource: &ResourceId,
) -> Result<Vec<Container>> {
    let target = select_container(containers, wanted, resource)?.name.clone();
    let mut out = containers.to_vec();
    if let Some(c) = out.iter_mut().find(|c| c.name == target) {
        c.image = image.to_string();
    }
    Ok(out)
}

/// The merge patch of [`ContainerApps::set_image`]: `properties.template.containers` (one image
/// replaced), `properties.template.revisionSuffix` when given, and
/// `properties.configuration.ingress.traffic` when given.
pub fn image_patch(
    containers: &[Container],
    wanted: Option<&str>,
    image: &str,
    revision_suffix: Option<&str>,
    traffic: Option<&[TrafficWeight]>,
    resource: &ResourceId,
) -> Result<Value> {
    let containers = replace_image(containers, wanted, image, resource)?;
    let mut template = Map::new();
    template.insert("containers".into(), serde_json::to_value(containers).unwrap_or(Value::Null));
    if let Some(suffix) = revision_suffix {
        template.insert("revisionSuffix".into(), Value::String(suffix.to_string()));
    }
    let mut properties = Map::new();
    properties.insert("template".into(), Value::Object(template));
    if let Some(traffic) = traffic {
        properties.insert("configuration".into(), json!({ "ingress": { "traffic": traffic } }));
    }
    Ok(json!({ "properties": properties }))
}

/// `{"configuration": {"ingress": {"traffic": […]}}}`.
fn traffic_value(traffic: &[TrafficWeight]) -> Value {
    json!({ "configuration": { "ingress": { "traffic": traffic } } })
}

/// The merge patch of [`ContainerApps::set_traffic`].
pub fn traffic_patch(traffic: &[TrafficWeight]) -> Value {
    json!({ "properties": traffic_value(traffic) })
}

/// One path segment (a revision or execution name): no `/`, nothing ARM paths refuse.
fn segment<'a>(name: &'a str, what: &str) -> Result<&'a str> {
    if name.is_empty()
        || name.contains('/')
        || name == "."
        || name == ".."
        || !name.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(AzureError::Refused(format!("invalid {what} name {name:?}")));
    }
    Ok(name)
}

fn expect(id: &ResourceId, kind: ResourceKind) -> Result<()> {
    if id.kind() != kind {
        return Err(AzureError::Config(format!("{id} is not a {} resource", kind.type_segment())));
    }
    Ok(())
}

impl ContainerApps {
    /// Operations through `arm`.
    pub fn new(arm: Arc<Arm>) -> Self {
        Self { arm }
    }

    /// The ARM client underneath.
    pub fn arm(&self) -> &Arc<Arm> {
        &self.arm
    }

    /// Reads a Container App.
    pub async fn app(&self, id: &ResourceId) -> Result<ContainerApp> {
        expect(id, ResourceKind::ContainerApp)?;
        self.arm.get(id.as_str()).await
    }

    /// Sets the image of one container (the named one, or the first), optionally with the
    /// suffix of the revision this creates and the traffic split; waits for the update and
    /// returns the app as it is afterwards.
    pub async fn set_image(
        &self,
        id: &ResourceId,
        container: Option<&str>,
        image: &str,
        revision_suffix: Option<&str>,
        traffic: Option<Vec<TrafficWeight>>,
    ) -> Result<ContainerApp> {
        let app = self.app(id).await?;
        let patch = image_patch(
            &app.properties.template.containers,
            container,
            image,
            revision_suffix,
            traffic.as_deref(),
            id,
        )?;
        self.arm.patch_and_wait(id.as_str(), &patch).await
    }

    /// Sets `ingress.traffic`; waits for the update and returns the app as it is afterwards.
    pub async fn set_traffic(&self, id: &ResourceId, traffic: Vec<TrafficWeight>) -> Result<ContainerApp> {
        expect(id, ResourceKind::ContainerApp)?;
        self.arm.patch_and_wait(id.as_str(), &traffic_patch(&traffic)).await
    }

    /// Every revision of the app.
    pub async fn revisions(&self, id: &ResourceId) -> Result<Vec<Revision>> {
        expect(id, ResourceKind::ContainerApp)?;
        self.arm.list(&id.child("revisions")).await
    }

    /// One revision; `None` when it does not exist.
    pub async fn revision(&self, id: &ResourceId, name: &str) -> Result<Option<Revision>> {
        expect(id, ResourceKind::ContainerApp)?;
        self.arm.get_opt(&id.child(&format!("revisions/{}", segment(name, "revision")?))).await
    }

    /// Activates a revision (multiple-revision mode).
    pub async fn activate(&self, id: &ResourceId, revision: &str) -> Result<()> {
        self.revision_action(id, revision, "activate").await
    }

    /// Deactivates a revision (multiple-revision mode).
    pub async fn deactivate(&self, id: &ResourceId, revision: &str) -> Result<()> {
        self.revision_action(id, revision, "deactivate").await
    }

    async fn revision_action(&self, id: &ResourceId, revision: &str, action: &str) -> Result<()> {
        expect(id, ResourceKind::ContainerApp)?;
        let path = id.child(&format!("revisions/{}/{action}", segment(revision, "revision")?));
        self.arm.post_and_wait::<Value>(&path, None).await.map(drop)
    }

    /// The replicas of a revision.
    pub async fn replicas(&self, id: &ResourceId, revision: &str) -> Result<Vec<Replica>> {
        expect(id, ResourceKind::ContainerApp)?;
        self.arm.list(&id.child(&format!("revisions/{}/replicas", segment(revision, "revision")?))).await
    }

    /// Reads a Container Apps Job.
    pub async fn job(&self, id: &ResourceId) -> Result<Job> {
        expect(id, ResourceKind::Job)?;
        self.arm.get(id.as_str()).await
    }

    /// Sets the image of one container of the job (the named one, or the first); waits for the
    /// update and returns the job as it is afterwards.
    pub async fn set_job_image(&self, id: &ResourceId, container: Option<&str>, image: &str) -> Result<Job> {
        let job = self.job(id).await?;
        let containers = replace_image(&job.properties.template.containers, container, image, id)?;
        let patch = json!({ "properties": { "template": { "containers": containers } } });
        self.arm.patch_and_wait(id.as_str(), &patch).await
    }

    /// Starts an execution of the job with its current template; returns the execution's name.
    pub async fn start_job(&self, id: &ResourceId) -> Result<String> {
        expect(id, ResourceKind::Job)?;
        let path = id.child("start");
        let started: Option<JobExecutionBase> = self.arm.post_and_wait(&path, None).await?;
        let started = started.unwrap_or_default();
        started
            .name
            .filter(|n| !n.is_empty())
            .or_else(|| started.id.as_deref().and_then(|i| i.rsplit('/').next()).map(str::to_string))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| AzureError::Protocol {
                method: "POST".into(),
                path,
                message: "the answer names no execution".into(),
            })
    }

    /// One execution of the job; `None` when it does not exist.
    pub async fn execution(&self, id: &ResourceId, name: &str) -> Result<Option<JobExecution>> {
        expect(id, ResourceKind::Job)?;
        self.arm.get_opt(&id.child(&format!("executions/{}", segment(name, "execution")?))).await
    }

    /// Every execution of the job.
    pub async fn executions(&self, id: &ResourceId) -> Result<Vec<JobExecution>> {
        expect(id, ResourceKind::Job)?;
        self.arm.list(&id.child("executions")).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ResourceId {
        ResourceId::parse("/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/web").unwrap()
    }

    fn containers() -> Vec<Container> {
        serde_json::from_value(json!([
            {"name": "web", "image": "repo/web:v1", "resources": {"cpu": 0.5, "memory": "1Gi"},
             "probes": [{"type": "Liveness", "httpGet": {"path": "/health", "port": 8080}}],
             "futureField": {"x": [1, 2]}},
            {"name": "sidecar", "image": "repo/proxy:v3", "env": [{"name": "A", "value": "b"}]}
        ]))
        .unwrap()
    }

    #[test]
    fn the_image_patch_changes_one_image_and_keeps_everything_else() {
        let patch =
            image_patch(&containers(), Some("web"), "repo/web@sha256:abc", Some("abc123"), None, &id()).unwrap();
        assert_eq!(
            patch,
            json!({"properties": {"template": {
                "containers": [
                    {"name": "web", "image": "repo/web@sha256:abc", "resources": {"cpu": 0.5, "memory": "1Gi"},
                     "probes": [{"type": "Liveness", "httpGet": {"path": "/health", "port": 8080}}],
                     "futureField": {"x": [1, 2]}},
                    {"name": "sidecar", "image": "repo/proxy:v3", "env": [{"name": "A", "value": "b"}]}
                ],
                "revisionSuffix": "abc123"
            }}})
        );
    }

    #[test]
    fn the_first_container_by_default_and_traffic_only_when_given() {
        let traffic = [
            TrafficWeight::revision("web--old", 100),
            TrafficWeight {
                latest_revision: Some(true),
                weight: Some(0),
                label: Some("green".into()),
                ..Default::default()
            },
        ];
        let patch = image_patch(&containers(), None, "repo/web@sha256:def", None, Some(&traffic), &id()).unwrap();
        assert_eq!(patch["properties"]["template"]["containers"][0]["image"], "repo/web@sha256:def");
        assert_eq!(patch["properties"]["template"]["containers"][1]["image"], "repo/proxy:v3");
        assert!(patch["properties"]["template"].get("revisionSuffix").is_none());
        assert_eq!(
            patch["properties"]["configuration"],
            json!({"ingress": {"traffic": [
                {"revisionName": "web--old", "weight": 100},
                {"latestRevision": true, "weight": 0, "label": "green"}
            ]}})
        );
        assert_eq!(patch["properties"].as_object().unwrap().len(), 2);
        assert_eq!(
            traffic_patch(&traffic[..1]),
            json!({"properties": {"configuration": {"ingress": {"traffic": [{"revisionName": "web--old", "weight": 100}]}}}})
        );
    }

    #[test]
    fn a_missing_container_is_named_with_the_ones_present() {
        let err = image_patch(&containers(), Some("api"), "x", None, None, &id()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container \"api\" not found in /subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/web; \
             it has [\"web\", \"sidecar\"]"
        );
        assert!(image_patch(&[], None, "x", None, None, &id()).is_err());
    }

    #[test]
    fn names_are_single_segments() {
        assert!(segment("web--abc", "revision").is_ok());
        for bad in ["", "..", "a/b", "a b", "é"] {
            assert!(segment(bad, "revision").is_err(), "{bad:?}");
        }
    }
}
