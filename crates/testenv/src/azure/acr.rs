//! Azure Container Registry Tasks on the stand-in: registries, tasks and what the next run of a
//! task does (control API `/_standin/acr/...`, see `docs/azure-standin.md`).

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use super::AzureStandIn;
use crate::Error;

/// An image a run reports in `outputImages`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct AcrImage {
    /// The registry's login server.
    pub registry: String,
    /// The repository within it.
    pub repository: String,
    /// The tag it was pushed with.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// Its digest.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

/// What the next run of a task (or the next one-off run) does.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AcrRunOutcome {
    /// The final status: `Succeeded`, `Failed`, `Canceled`, `Error` or `Timeout`.
    pub status: String,
    /// The images it reports (only when it succeeds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub output_images: Vec<AcrImage>,
    /// The text its log link serves.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log: String,
    /// `runErrorMessage` when it does not succeed.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_error_message: String,
    /// How long it stays `Queued`, in milliseconds (default 200).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_millis: Option<u64>,
    /// How long it stays `Running` after that, in milliseconds (default: the execution delay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_millis: Option<u64>,
}

impl AcrRunOutcome {
    /// A run that succeeds, reporting `images`, with `log`.
    pub fn succeeded(images: Vec<AcrImage>, log: &str) -> Self {
        Self {
            status: "Succeeded".into(),
            output_images: images,
            log: log.into(),
            run_error_message: String::new(),
            queued_millis: None,
            running_millis: None,
        }
    }

    /// A run that ends `Failed` with `message`, with `log`.
    pub fn failed(message: &str, log: &str) -> Self {
        Self { status: "Failed".into(), run_error_message: message.into(), ..Self::succeeded(Vec::new(), log) }
    }

    /// The same outcome, running for `running` (queued for `queued`).
    pub fn taking(mut self, queued: Duration, running: Duration) -> Self {
        self.queued_millis = Some(queued.as_millis() as u64);
        self.running_millis = Some(running.as_millis() as u64);
        self
    }
}

impl AzureStandIn {
    /// The resource id of container registry `name` in resource group `group`.
    pub fn registry_id(&self, group: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.ContainerRegistry/registries/{name}",
            self.subscription_id()
        )
    }

    /// Stores container registry `id` whose login server is `login_server` (for example the
    /// loopback registry's `127.0.0.1:PORT`). Returns it as GET shows it.
    pub async fn seed_registry(&self, id: &str, login_server: &str) -> Result<Value, Error> {
        self.control("POST", "acr/registries", &json!({"id": id, "loginServer": login_server})).await
    }

    /// Stores ACR Task `name` in registry `registry_id` (a Linux/amd64 encoded task).
    pub async fn seed_acr_task(&self, registry_id: &str, name: &str) -> Result<Value, Error> {
        self.control("POST", "acr/tasks", &json!({"registryId": registry_id, "name": name})).await
    }

    /// The next run of task `task` in `registry_id` (`None`: the next one-off run, such as an
    /// encoded task) ends as `outcome`. Outcomes queue up, one per run.
    pub async fn next_acr_run(
        &self,
        registry_id: &str,
        task: Option<&str>,
        outcome: &AcrRunOutcome,
    ) -> Result<(), Error> {
        let mut body = serde_json::to_value(outcome).map_err(|e| Error::Tool(format!("outcome: {e}")))?;
        body["registryId"] = json!(registry_id);
        if let Some(task) = task {
            body["task"] = json!(task);
        }
        self.control("POST", "acr/next-run", &body).await.map(drop)
    }
}
