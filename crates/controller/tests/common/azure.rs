//! Azure for controller scenarios: the local ARM stand-in (`tidegate_testenv::azure`) with a
//! client secret for the controller, the controller flags that point it there, and reads of
//! Azure's state (apps, revisions, jobs, executions, the request log) with a token, as any ARM
//! client would make them.

use std::time::Duration;

use serde_json::{Value, json};
use tidegate_testenv::azure::{AzureStandIn, AzureStandInOptions, LoggedRequest, SeedExecution, SeedRevision};

use super::{BEFORE, REPO, Scenario};

pub const CLIENT: &str = "tidegate-controller";
pub const SECRET: &str = "client-secret-for-the-stand-in";

pub struct Azure {
    pub standin: AzureStandIn,
    /// The `web` app [`Azure::start`] seeds (an http app in Multiple revision mode).
    pub app: String,
}

/// Short stand-in delays: long-running operations 300 ms, revision provisioning 500 ms.
pub fn quick() -> AzureStandInOptions {
    AzureStandInOptions {
        lro_delay: Duration::from_millis(300),
        provisioning_delay: Duration::from_millis(500),
        ..AzureStandInOptions::default()
    }
}

impl Azure {
    /// A stand-in with [`quick`] delays and the `web` http app of resource group `group`: two
    /// containers, a secret, `activeRevisionsMode: Multiple`, revision `web--v1` at 100 %.
    pub async fn start(group: &str) -> Self {
        let azure = Self::empty(group, quick()).await;
        let body = json!({
            "location": "East US",
            "properties": {
                "configuration": {
                    "activeRevisionsMode": "Multiple",
                    "ingress": {"external": true, "targetPort": 8080, "traffic": [{"latestRevision": true, "weight": 100}]},
                    "secrets": [{"name": "db", "value": "kept-as-is"}]
                },
                "template": {
                    "containers": [
                        {"name": "app", "image": format!("{REPO}@{BEFORE}"), "env": [{"name": "MODE", "value": "prod"}],
                         "resources": {"cpu": 0.5, "memory": "1Gi"}},
                        {"name": "sidecar", "image": "registry.example.com/tools/proxy:1"}
                    ],
                    "scale": {"minReplicas": 1, "maxReplicas": 3}
                }
            }
        });
        let revision = SeedRevision { name: "web--v1".into(), ..SeedRevision::default() };
        azure.standin.seed_container_app_with_revisions(&azure.app, &body, &[revision]).await.expect("seed the app");
        azure
    }

    /// A stand-in started with `options` and the controller's client secret, nothing seeded;
    /// [`Azure::app`] names the (not yet existing) app `web` of `group`.
    pub async fn empty(group: &str, options: AzureStandInOptions) -> Self {
        let standin = AzureStandIn::start_with(options).await.expect("the Azure stand-in starts");
        standin.add_client_secret(CLIENT, SECRET).await.expect("client");
        let app = format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.App/containerApps/web",
            standin.subscription_id()
        );
        Self { standin, app }
    }

    /// The resource id of `Microsoft.App/{kind}/{name}` in `group`.
    pub fn id(&self, group: &str, kind: &str, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.App/{kind}/{name}",
            self.standin.subscription_id()
        )
    }

    /// Seeds Container App `name` of `group` running `REPO@BEFORE` in container `app` as
    /// revision `<name>--v1`: `Multiple` or `Single` revision mode, with external ingress
    /// (all traffic on the latest revision) or none. Returns its resource id.
    pub async fn seed_app(&self, group: &str, name: &str, multiple: bool, ingress: bool) -> String {
        let id = self.id(group, "containerApps", name);
        let mut configuration = json!({"activeRevisionsMode": if multiple { "Multiple" } else { "Single" }});
        if ingress {
            configuration["ingress"] =
                json!({"external": true, "targetPort": 8080, "traffic": [{"latestRevision": true, "weight": 100}]});
        }
        let body = json!({
            "location": "East US",
            "properties": {
                "configuration": configuration,
                "template": {
                    "containers": [{"name": "app", "image": format!("{REPO}@{BEFORE}"),
                        "env": [{"name": "QUEUE", "value": name}], "resources": {"cpu": 0.5, "memory": "1Gi"}}],
                    "scale": {"minReplicas": 1, "maxReplicas": 2}
                }
            }
        });
        let revision = SeedRevision { name: format!("{name}--v1"), ..SeedRevision::default() };
        self.standin.seed_container_app_with_revisions(&id, &body, &[revision]).await.expect("seed the app");
        id
    }

    /// Seeds manual Container Apps Job `name` of `group` running `REPO@BEFORE` in container
    /// `app`, with `past` succeeded executions of that image. Returns its resource id.
    pub async fn seed_job(&self, group: &str, name: &str, past: &[&str]) -> String {
        let id = self.id(group, "jobs", name);
        let body = json!({
            "location": "East US",
            "properties": {
                "configuration": {
                    "triggerType": "Manual", "replicaTimeout": 600, "replicaRetryLimit": 0,
                    "manualTriggerConfig": {"parallelism": 1, "replicaCompletionCount": 1}
                },
                "template": {"containers": [{"name": "app", "image": format!("{REPO}@{BEFORE}"),
                    "env": [{"name": "REPORT", "value": name}], "resources": {"cpu": 0.5, "memory": "1Gi"}}]}
            }
        });
        let executions: Vec<SeedExecution> =
            past.iter().map(|n| SeedExecution { name: n.to_string(), status: None }).collect();
        self.standin.seed_job(&id, &body, &executions).await.expect("seed the job");
        id
    }

    /// The controller flags: client-secret credential, the stand-in's ARM and authority, its
    /// CA, and the scenario namespace granted resource group `group`.
    pub fn args(&self, s: &Scenario, group: &str) -> Vec<String> {
        let secret = s.path("azure-client-secret");
        std::fs::write(&secret, SECRET).expect("secret file");
        let ca = self.standin.ca_file().display().to_string();
        [
            "--builder",
            "in-process",
            "--azure-credential",
            "client-secret",
            "--azure-tenant-id",
            self.standin.tenant_id(),
            "--azure-client-id",
            CLIENT,
            "--azure-client-secret-file",
            &secret.display().to_string(),
            "--azure-authority-host",
            &self.standin.authority_host(),
            "--azure-resource-manager",
            &self.standin.arm_url(),
            "--azure-ca-file",
            &ca,
            "--azure-grant",
            &format!("{}=/subscriptions/{}/resourceGroups/{group}", s.ns, self.standin.subscription_id()),
            "--staging-ca-file",
            &ca,
            "--staging-resolve",
            &format!("{}={}", self.standin.domain(), self.standin.ingress_addr()),
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    }

    /// `GET` an ARM path (or a full URL, such as a `nextLink`) with a token.
    pub async fn get(&self, path: &str) -> Value {
        let token = self.standin.token(CLIENT, SECRET).await.expect("token");
        let url = if path.starts_with("https://") { path.to_string() } else { self.standin.arm(path) };
        let response = self.standin.http_client().get(url).bearer_auth(token).send().await.expect("GET");
        response.json().await.expect("JSON")
    }

    /// Every item of an ARM list, following `nextLink`.
    pub async fn list(&self, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut page = self.get(path).await;
        loop {
            items.extend(page["value"].as_array().cloned().unwrap_or_default());
            match page["nextLink"].as_str().filter(|l| !l.is_empty()) {
                Some(next) => page = self.get(next).await,
                None => return items,
            }
        }
    }

    /// A task that lists `path` (following `nextLink`) every 100 ms and hands every snapshot to
    /// `check` until it is aborted; a panic in `check` ends the task with that panic.
    pub async fn watch_list<F>(&self, path: &str, check: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(&[Value]) + Send + 'static,
    {
        let token = self.standin.token(CLIENT, SECRET).await.expect("token");
        let http = self.standin.http_client().clone();
        let first = self.standin.arm(path);
        tokio::spawn(async move {
            loop {
                let (mut items, mut url) = (Vec::new(), Some(first.clone()));
                while let Some(next) = url.take() {
                    let page: Value =
                        http.get(&next).bearer_auth(&token).send().await.expect("GET").json().await.expect("JSON");
                    items.extend(page["value"].as_array().cloned().unwrap_or_default());
                    url = page["nextLink"].as_str().filter(|l| !l.is_empty()).map(String::from);
                }
                check(&items);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    /// The revisions of app `app`, as Azure lists them.
    pub async fn revisions(&self, app: &str) -> Vec<Value> {
        self.list(&format!("{app}/revisions")).await
    }

    /// Revision `revision` of app `app`.
    pub async fn revision(&self, app: &str, revision: &str) -> Value {
        self.get(&format!("{app}/revisions/{revision}")).await
    }

    /// The executions of job `job`.
    pub async fn executions(&self, job: &str) -> Vec<Value> {
        self.list(&format!("{job}/executions")).await
    }

    /// Every ARM request so far.
    pub async fn requests(&self) -> Vec<LoggedRequest> {
        self.standin.requests().await.expect("request log")
    }

    async fn traffic_of(&self, app: &str) -> Vec<(String, i64, Option<String>)> {
        let app = self.get(app).await;
        let latest = app["properties"]["latestRevisionName"].as_str().unwrap_or_default().to_string();
        app["properties"]["configuration"]["ingress"]["traffic"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| {
                let revision = match t["latestRevision"].as_bool() {
                    Some(true) => latest.clone(),
                    _ => t["revisionName"].as_str().unwrap_or_default().to_string(),
                };
                (revision, t["weight"].as_i64().unwrap_or(0), t["label"].as_str().map(String::from))
            })
            .collect()
    }

    /// The traffic of [`Azure::app`]: (revision, weight, label), `latestRevision` resolved.
    pub async fn traffic(&self) -> Vec<(String, i64, Option<String>)> {
        self.traffic_of(&self.app).await
    }

    /// The traffic of app `app`.
    pub async fn traffic_on(&self, app: &str) -> Vec<(String, i64, Option<String>)> {
        self.traffic_of(app).await
    }

    /// Whether revision `revision` of [`Azure::app`] is active.
    pub async fn active(&self, revision: &str) -> bool {
        self.get(&format!("{}/revisions/{revision}", self.app)).await["properties"]["active"].as_bool() == Some(true)
    }

    /// Every write Tidegate sent: only the managed container's image, the revision suffix and
    /// the traffic, with every other container and property as it was.
    pub async fn assert_only_image_and_traffic_written(&self) {
        let requests = self.standin.requests().await.expect("request log");
        let writes: Vec<_> = requests.iter().filter(|r| r.method == "PATCH" || r.method == "PUT").collect();
        assert!(!writes.is_empty(), "Tidegate wrote nothing");
        for write in writes {
            let body = write.json().expect("JSON body");
            let properties = body["properties"].as_object().expect("properties");
            for (key, value) in properties {
                match key.as_str() {
                    "template" => {
                        let keys: Vec<&String> = value.as_object().expect("template").keys().collect();
                        assert!(keys.iter().all(|k| *k == "containers" || *k == "revisionSuffix"), "{keys:?}");
                        let containers = value["containers"].as_array().expect("containers");
                        assert_eq!(containers.len(), 2, "both containers sent back: {value}");
                        assert_eq!(containers[0]["env"], json!([{"name": "MODE", "value": "prod"}]));
                        assert_eq!(containers[0]["resources"]["memory"], "1Gi");
                        assert_eq!(containers[1]["image"], "registry.example.com/tools/proxy:1");
                    }
                    "configuration" => {
                        let keys: Vec<&String> = value.as_object().expect("configuration").keys().collect();
                        assert_eq!(keys, ["ingress"], "{value}");
                        let ingress: Vec<&String> = value["ingress"].as_object().expect("ingress").keys().collect();
                        assert_eq!(ingress, ["traffic"], "{value}");
                    }
                    other => panic!("Tidegate wrote properties.{other}: {body}"),
                }
            }
            assert!(body.get("location").is_none() && body.get("tags").is_none(), "{body}");
        }
    }
}

/// The image of the container named `app` in a template (a revision's, a job's, an execution's).
pub fn image_in(template: &Value) -> Option<String> {
    template["containers"].as_array()?.iter().find(|c| c["name"] == "app")?["image"].as_str().map(String::from)
}

/// Whether a logged request is on `resource` itself or below it (ARM paths ignore case).
pub fn on(request: &LoggedRequest, resource: &str) -> bool {
    let path = request.path.to_ascii_lowercase();
    let resource = resource.to_ascii_lowercase();
    path == resource || path.starts_with(&format!("{resource}/"))
}
