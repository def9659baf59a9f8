//! `acrTask` builds: one run of an Azure Container Registry Task per Release.
//!
//! The run is scheduled in the policy's registry (`POST {registry}/scheduleRun`, a
//! `TaskRunRequest` for an existing task or an `EncodedTaskRunRequest` for a task YAML in the
//! policy), followed by `GET {registry}/runs/{runId}` until it ends, and its log link is fetched
//! with `POST {registry}/runs/{runId}/listLogSasUrl`. The candidate is the digest the run reports
//! for the policy's own repository ([`tidegate_core::acr_run::candidate`]), checked to exist in
//! the registry before it is used.
//!
//! The run gets the values `TIDEGATE_IMAGE_REPOSITORY`, `TIDEGATE_IMAGE_TAG`, `TIDEGATE_BASE_IMAGE`
//! and `TIDEGATE_RELEASE` (see [`run_values`]).
//!
//! **Reach.** Scheduling a run is done with the controller's one Azure credential on a policy's
//! say-so, so the registry must lie within a scope the operator granted the policy's namespace
//! (`--azure-grant`): otherwise the build stops before anything is sent to Azure.
//!
//! **Restarts.** The run ID is recorded in `status.build.runId` by the status write that follows
//! the scheduling. If the controller stops after Azure accepted `scheduleRun` and before that
//! write, the next attempt first looks among the registry's recent runs (`$filter=TaskName eq
//! '<task>'` for a named task, the 50 newest runs for an encoded one) for a run that pushed this
//! Release's own tag, and follows it. A run still going at that moment has no output images yet
//! and cannot be told apart from other runs of the task, so one more run is scheduled: each such
//! interruption costs at most one extra run, whose image is never used.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tidegate_api::image_policy::AcrTaskBuild;
use tidegate_api::{ImagePolicy, Release};
use tidegate_core::acr_run::{self, OutputImage, RunPhase};
use tidegate_core::{ImageRef, parse_duration};

use crate::azure::arm::Arm;
use crate::azure::error::AzureError;
use crate::azure::resource_id::path_segments;
use crate::azure_targets::AzureScopes;
use crate::registry::{RegistryClient, Repository};
use crate::{BuildContext, BuildStep, Built, ProviderError, Result};

/// The Container Registry Tasks API version every request uses (the version of the REST examples
/// in `shared/fixtures/azure/containerregistry`).
pub const API_VERSION: &str = "2025-03-01-preview";

/// How many recent runs are searched for a run that pushed the Release's tag, when the run ID of
/// a scheduled run was not recorded.
const RECENT_RUNS: &str = "50";

/// ACR Tasks runs, scheduled with one Azure credential, bounded per namespace by [`AzureScopes`].
pub struct AcrTasks {
    arm: Arc<Arm>,
    scopes: AzureScopes,
}

impl std::fmt::Debug for AcrTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcrTasks").field("arm", &self.arm).finish_non_exhaustive()
    }
}

/// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.ContainerRegistry/registries/{name}`.
#[derive(Clone, Debug)]
pub struct RegistryId {
    original: String,
    name: String,
}

impl RegistryId {
    /// Parses a container registry resource id (fixed segments compared case-insensitively).
    pub fn parse(id: &str) -> std::result::Result<Self, AzureError> {
        let segments = path_segments(id)?;
        let invalid = || {
            AzureError::Config(format!(
                "{id:?} is not a container registry id; expected \
                 /subscriptions/{{subscription}}/resourceGroups/{{group}}/providers/Microsoft.ContainerRegistry/registries/{{name}}"
            ))
        };
        let [subs, _, groups, _, providers, namespace, kind, name] = segments.as_slice() else {
            return Err(invalid());
        };
        let fixed = [
            (subs, "subscriptions"),
            (groups, "resourceGroups"),
            (providers, "providers"),
            (namespace, "Microsoft.ContainerRegistry"),
            (kind, "registries"),
        ];
        if fixed.iter().any(|(got, want)| !got.eq_ignore_ascii_case(want)) {
            return Err(invalid());
        }
        Ok(Self { original: id.to_string(), name: name.to_string() })
    }

    /// The registry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// `{id}/{suffix}`.
    pub fn child(&self, suffix: &str) -> String {
        format!("{}/{}", self.original, suffix.trim_start_matches('/'))
    }

    /// Whether the registry lies within `scope` (a subscription, a resource group or the
    /// registry itself), segment by segment, case-insensitively.
    pub fn is_within(&self, scope: &str) -> bool {
        let scope = scope.strip_suffix('/').unwrap_or(scope);
        let (Ok(scope), Ok(own)) = (path_segments(scope), path_segments(&self.original)) else { return false };
        scope.len() <= own.len() && scope.iter().zip(&own).all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl std::fmt::Display for RegistryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.original)
    }
}

/// A run as ARM shows it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Run {
    name: String,
    properties: RunProperties,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RunProperties {
    run_id: String,
    status: String,
    task: Option<String>,
    output_images: Vec<ImageDescriptor>,
    run_error_message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImageDescriptor {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Run {
    fn id(&self) -> &str {
        if self.properties.run_id.is_empty() { &self.name } else { &self.properties.run_id }
    }

    fn outputs(&self) -> Vec<OutputImage> {
        self.properties
            .output_images
            .iter()
            .map(|o| OutputImage {
                registry: o.registry.clone(),
                repository: o.repository.clone(),
                tag: o.tag.clone(),
                digest: o.digest.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RegistryResource {
    properties: RegistryProperties,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct RegistryProperties {
    login_server: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct LogResult {
    log_link: Option<String>,
}

/// What one Release's run is built from.
struct Request<'a> {
    settings: &'a AcrTaskBuild,
    registry: RegistryId,
    repository: &'a ImageRef,
    tag: String,
}

impl AcrTasks {
    /// Runs scheduled through `arm`, for namespaces granted registries (or wider scopes) in
    /// `scopes`.
    pub fn new(arm: Arc<Arm>, scopes: AzureScopes) -> Arc<Self> {
        Arc::new(Self { arm, scopes })
    }

    /// One step of an `acrTask` build of `release`.
    pub async fn step(
        &self,
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
            .acr_task
            .as_ref()
            .ok_or_else(|| ProviderError::Permanent("spec.build.acrTask is missing".into()))?;
        if let Some(task) = &settings.task_name
            && !task.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ProviderError::Permanent(format!(
                "spec.build.acrTask.taskName {task:?} is not an ACR task name"
            )));
        }
        let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
        // Nothing is sent to Azure for a registry the namespace was not granted.
        let registry = self.scopes.check_registry(namespace, &settings.registry_id)?;
        let request = Request { settings, registry, repository, tag: release_tag(release) };
        let run_id = match &context.run_id {
            Some(run_id) => run_id.clone(),
            None => {
                let (run, adopted) = match self.find_run(&request).await? {
                    Some(run) => (run, true),
                    None => (self.schedule(&request, release, (base, new_base)).await?, false),
                };
                let what = if adopted { "found" } else { "scheduled" };
                return Ok(BuildStep::Started {
                    run: format!("ACR run {} {what} in registry {}", run.id(), request.registry.name()),
                    run_id: Some(run.id().to_string()),
                });
            }
        };
        self.follow(client, &request, &run_id, context).await
    }

    /// Looks at run `run_id` and decides.
    async fn follow(
        &self,
        client: &RegistryClient,
        request: &Request<'_>,
        run_id: &str,
        context: &BuildContext,
    ) -> Result<BuildStep> {
        check_run_id(run_id)?;
        let registry = &request.registry;
        let run: Run = self.arm.get_at(&registry.child(&format!("runs/{run_id}")), API_VERSION).await?;
        if let (Some(wanted), Some(task)) = (&request.settings.task_name, &run.properties.task)
            && !wanted.eq_ignore_ascii_case(task)
        {
            return Err(ProviderError::Permanent(format!(
                "ACR run {run_id} in registry {} is a run of task {task}, not of {wanted}",
                registry.name()
            )));
        }
        let status = run.properties.status.clone();
        match acr_run::phase(&status) {
            RunPhase::Waiting => {
                let timeout = parse_duration(&request.settings.timeout).unwrap_or(Duration::from_secs(3600));
                let started = context.started_at.unwrap_or(context.now);
                if context.now.duration_since(started).unsigned_abs() <= timeout {
                    return Ok(BuildStep::Waiting(format!(
                        "waiting for ACR run {run_id} in registry {} ({status})",
                        registry.name()
                    )));
                }
                let cancelled = match self
                    .arm
                    .post_and_wait_at::<Value>(&registry.child(&format!("runs/{run_id}/cancel")), API_VERSION, None)
                    .await
                {
                    Ok(_) => "cancelled".to_string(),
                    Err(e) => format!("cancelling it failed: {e}"),
                };
                let log = self.log_link(registry, run_id).await;
                Err(ProviderError::Permanent(format!(
                    "ACR run {run_id} in registry {} did not finish within {} (status {status}; {cancelled}); log: {}",
                    registry.name(),
                    request.settings.timeout,
                    describe_log(&log)
                )))
            }
            RunPhase::Ended => {
                let log = self.log_link(registry, run_id).await;
                let why = run.properties.run_error_message.filter(|m| !m.is_empty());
                Err(ProviderError::Permanent(format!(
                    "ACR run {run_id} in registry {} ended with status {status}{}; log: {}",
                    registry.name(),
                    why.map(|m| format!(": {m}")).unwrap_or_default(),
                    describe_log(&log)
                )))
            }
            RunPhase::Succeeded => {
                let log = self.log_link(registry, run_id).await;
                let image = request.repository;
                let digest = acr_run::candidate(&run.outputs(), &image.registry, &image.repository, &request.tag)
                    .map_err(|why| {
                        ProviderError::Permanent(format!(
                            "ACR run {run_id} in registry {} succeeded, but {why}; log: {}",
                            registry.name(),
                            describe_log(&log)
                        ))
                    })?;
                if client.head_manifest(&Repository::from(image), digest.as_str()).await?.is_none() {
                    return Err(ProviderError::Permanent(format!(
                        "ACR run {run_id} reported {digest}, which is not in {}; log: {}",
                        image.repository_ref(),
                        describe_log(&log)
                    )));
                }
                Ok(BuildStep::Done(Built {
                    run: format!("ACR run {run_id} in registry {}", registry.name()),
                    digest,
                    run_id: Some(run_id.to_string()),
                    log_link: log.ok(),
                }))
            }
        }
    }

    /// A recent run of this Release's build that already pushed its tag, if any.
    async fn find_run(&self, request: &Request<'_>) -> Result<Option<Run>> {
        let filter = request.settings.task_name.as_ref().map(|task| format!("TaskName eq '{task}'"));
        let mut query = vec![("$top", RECENT_RUNS)];
        if let Some(filter) = &filter {
            query.push(("$filter", filter.as_str()));
        }
        let runs: Vec<Run> = self.arm.list_at(&request.registry.child("runs"), API_VERSION, &query).await?;
        let image = request.repository;
        Ok(runs.into_iter().find(|run| {
            run.properties.output_images.iter().any(|o| {
                o.registry.eq_ignore_ascii_case(&image.registry)
                    && o.repository == image.repository
                    && o.tag.as_deref() == Some(request.tag.as_str())
            })
        }))
    }

    /// Schedules the run (after checking that the policy's image lives in this registry).
    async fn schedule(&self, request: &Request<'_>, release: &Release, base: (&ImageRef, &str)) -> Result<Run> {
        let registry = &request.registry;
        let resource: RegistryResource = self.arm.get_at(registry.as_str(), API_VERSION).await?;
        let login_server = resource.properties.login_server;
        if !login_server.eq_ignore_ascii_case(&request.repository.registry) {
            return Err(ProviderError::Permanent(format!(
                "spec.image {} is not in registry {} (login server {login_server}): an ACR Task builds into its own \
                 registry; use a registry whose login server is {}",
                request.repository.repository_ref(),
                registry.name(),
                request.repository.registry
            )));
        }
        let values = run_values(request.repository, &request.tag, base, release);
        let body = run_request(request.settings, registry, &values);
        let run: Run = self.arm.post_and_wait_at(&registry.child("scheduleRun"), API_VERSION, Some(&body)).await?;
        if run.id().is_empty() {
            return Err(ProviderError::Transient(format!(
                "registry {} accepted the run but named no run ID",
                registry.name()
            )));
        }
        check_run_id(run.id())?;
        Ok(run)
    }

    /// The run's log link, or why there is none.
    async fn log_link(&self, registry: &RegistryId, run_id: &str) -> std::result::Result<String, String> {
        let path = registry.child(&format!("runs/{run_id}/listLogSasUrl"));
        match self.arm.post_and_wait_at::<LogResult>(&path, API_VERSION, None).await {
            Ok(LogResult { log_link: Some(link) }) if !link.is_empty() => Ok(link),
            Ok(_) => Err("Azure returned no log link".into()),
            Err(e) => Err(format!("no log link: {e}")),
        }
    }
}

fn describe_log(log: &std::result::Result<String, String>) -> String {
    match log {
        Ok(link) => link.clone(),
        Err(why) => format!("({why})"),
    }
}

/// A run ID from Azure or from status goes into a URL path: one plain segment only.
fn check_run_id(run_id: &str) -> Result<()> {
    if !run_id.is_empty()
        && run_id.len() <= 128
        && run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(());
    }
    Err(ProviderError::Permanent(format!("{run_id:?} is not an ACR run ID")))
}

/// The tag the run is asked to push: unique to the Release (its name, shortened, and the first
/// characters of its UID), a valid OCI tag.
pub fn release_tag(release: &Release) -> String {
    let name: String = release.metadata.name.as_deref().unwrap_or_default().chars().take(80).collect();
    let uid: String = release
        .metadata
        .uid
        .as_deref()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    let tag = if uid.is_empty() { format!("tidegate-{name}") } else { format!("tidegate-{name}-{uid}") };
    tag.chars().map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '-' }).collect()
}

/// The values every run gets, as `{{.Values.NAME}}`.
pub fn run_values(
    repository: &ImageRef,
    tag: &str,
    (base, new_base): (&ImageRef, &str),
    release: &Release,
) -> Vec<Value> {
    let value = |name: &str, value: String| json!({"name": name, "value": value, "isSecret": false});
    vec![
        value("TIDEGATE_IMAGE_REPOSITORY", repository.repository_ref()),
        value("TIDEGATE_IMAGE_TAG", tag.to_string()),
        value("TIDEGATE_BASE_IMAGE", format!("{}@{new_base}", base.repository_ref())),
        value("TIDEGATE_RELEASE", release.metadata.name.clone().unwrap_or_default()),
    ]
}

/// The `scheduleRun` body: a `TaskRunRequest` for a named task, an `EncodedTaskRunRequest` for a
/// task YAML.
fn run_request(settings: &AcrTaskBuild, registry: &RegistryId, values: &[Value]) -> Value {
    match (&settings.task_name, &settings.encoded_task) {
        (Some(task), _) => json!({
            "type": "TaskRunRequest",
            "taskId": registry.child(&format!("tasks/{task}")),
            "overrideTaskStepProperties": {"values": values},
        }),
        (None, encoded) => {
            let platform = settings.platform.clone().unwrap_or_default();
            let os = if platform.os.eq_ignore_ascii_case("windows") { "Windows" } else { "Linux" };
            // Azure bounds a run's own timeout to 5 minutes..8 hours; Tidegate's timeout (which
            // cancels the run) is checked on its own.
            let seconds =
                parse_duration(&settings.timeout).unwrap_or(Duration::from_secs(3600)).as_secs().clamp(300, 28800);
            json!({
                "type": "EncodedTaskRunRequest",
                "encodedTaskContent": encoded.clone().unwrap_or_default(),
                "values": values,
                "platform": {"os": os, "architecture": platform.architecture},
                "timeout": seconds,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_api::image_policy::AcrTaskPlatform;

    const REGISTRY: &str =
        "/subscriptions/s1/resourceGroups/build/providers/Microsoft.ContainerRegistry/registries/shopacr";

    fn release() -> Release {
        serde_json::from_value(json!({
            "apiVersion": "tidegate.dev/v1alpha1", "kind": "Release",
            "metadata": {"name": "web-base-7bde398e02aa", "namespace": "shop", "uid": "0f8e1c2a-aaaa-bbbb-cccc-000000000000"},
            "spec": {"policy": "web", "reason": {"type": "Manual"}}
        }))
        .unwrap()
    }

    fn settings(task: Option<&str>, encoded: Option<&str>) -> AcrTaskBuild {
        AcrTaskBuild {
            registry_id: REGISTRY.into(),
            task_name: task.map(Into::into),
            encoded_task: encoded.map(Into::into),
            platform: None,
            timeout: "2h".into(),
        }
    }

    #[test]
    fn registry_ids() {
        let id = RegistryId::parse(REGISTRY).unwrap();
        assert_eq!(id.name(), "shopacr");
        assert_eq!(id.child("runs/ca1"), format!("{REGISTRY}/runs/ca1"));
        assert!(id.is_within("/subscriptions/S1/resourcegroups/BUILD"));
        assert!(id.is_within(REGISTRY));
        assert!(!id.is_within("/subscriptions/s1/resourceGroups/buil"));
        assert!(!id.is_within(&format!("{REGISTRY}/tasks/t")));
        for bad in [
            "/subscriptions/s1/resourceGroups/build/providers/Microsoft.App/containerApps/web",
            "/subscriptions/s1/resourceGroups/build/providers/Microsoft.ContainerRegistry/registries",
            "/subscriptions/s1/resourceGroups/build/providers/Microsoft.ContainerRegistry/registries/r/tasks/t",
            "/subscriptions/s1/resourceGroups/../providers/Microsoft.ContainerRegistry/registries/r",
            "/subscriptions/s1/resourceGroups/b/providers/Microsoft.ContainerRegistry/registries/r?x=1",
        ] {
            assert!(RegistryId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_tag_is_unique_to_the_release_and_a_valid_tag() {
        let tag = release_tag(&release());
        assert_eq!(tag, "tidegate-web-base-7bde398e02aa-0f8e1c2a");
        let mut long = release();
        long.metadata.name = Some("x.".repeat(120));
        let tag = release_tag(&long);
        assert!(tag.len() <= 128 && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)), "{tag}");
    }

    #[test]
    fn a_named_task_runs_with_the_release_values() {
        let registry = RegistryId::parse(REGISTRY).unwrap();
        let repository: ImageRef = "shopacr.azurecr.io/shop/web".parse().unwrap();
        let base: ImageRef = "mcr.microsoft.com/dotnet/aspnet:8.0".parse().unwrap();
        let new_base = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let values = run_values(&repository, "t1", (&base, new_base), &release());
        let body = run_request(&settings(Some("rebuild"), None), &registry, &values);
        assert_eq!(body["type"], "TaskRunRequest");
        assert_eq!(body["taskId"], format!("{REGISTRY}/tasks/rebuild"));
        let sent = &body["overrideTaskStepProperties"]["values"];
        let get = |name: &str| sent.as_array().unwrap().iter().find(|v| v["name"] == name).unwrap()["value"].clone();
        assert_eq!(get("TIDEGATE_IMAGE_REPOSITORY"), "shopacr.azurecr.io/shop/web");
        assert_eq!(get("TIDEGATE_IMAGE_TAG"), "t1");
        assert_eq!(get("TIDEGATE_BASE_IMAGE"), format!("mcr.microsoft.com/dotnet/aspnet@{new_base}"));
        assert_eq!(get("TIDEGATE_RELEASE"), "web-base-7bde398e02aa");
        assert!(sent.as_array().unwrap().iter().all(|v| v["isSecret"] == false));
    }

    #[test]
    fn an_encoded_task_runs_on_its_platform_within_azures_timeout_bounds() {
        let registry = RegistryId::parse(REGISTRY).unwrap();
        let mut settings = settings(None, Some("c3RlcHM6Cg=="));
        let body = run_request(&settings, &registry, &[]);
        assert_eq!(body["type"], "EncodedTaskRunRequest");
        assert_eq!(body["encodedTaskContent"], "c3RlcHM6Cg==");
        assert_eq!(body["platform"], json!({"os": "Linux", "architecture": "amd64"}));
        assert_eq!(body["timeout"], 7200);
        settings.platform = Some(AcrTaskPlatform { os: "windows".into(), architecture: "arm64".into() });
        settings.timeout = "1m".into();
        let body = run_request(&settings, &registry, &[]);
        assert_eq!(body["platform"], json!({"os": "Windows", "architecture": "arm64"}));
        assert_eq!(body["timeout"], 300);
    }

    #[test]
    fn run_ids_are_one_plain_segment() {
        for ok in ["ca1", "0accec26-d6de-4757-8e74-d080f38eaaab", "cb_12"] {
            assert!(check_run_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "ca1/cancel", "ca1?x", "a b", &"a".repeat(200)] {
            assert!(check_run_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn runs_read_from_the_rest_example_shape() {
        let run: Run = serde_json::from_value(json!({
            "name": "0accec26", "properties": {"runId": "0accec26", "status": "Succeeded", "task": "myTask",
            "outputImages": [{"registry": "myregistry.azurecr.io", "repository": "myimage", "tag": "latest", "digest": "sha256:x"}]}
        }))
        .unwrap();
        assert_eq!(run.id(), "0accec26");
        assert_eq!(run.outputs()[0].to_string(), "myregistry.azurecr.io/myimage:latest@sha256:x");
        let bare: Run = serde_json::from_value(json!({"name": "ca2", "properties": {}})).unwrap();
        assert_eq!(bare.id(), "ca2");
    }
}
