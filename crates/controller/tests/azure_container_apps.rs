//! Azure Container Apps end to end, against the local ARM stand-in (`crates/testenv/go/azure`,
//! request models from Microsoft's Go SDK, unknown fields rejected) and the local control plane:
//! a new digest becomes a zero-weight revision labelled `staging` in the production app, the
//! staging check calls that label's URL over HTTPS, and only an approved Promotion moves the
//! traffic. The previous revision stays active for an instant rollback and is deactivated when
//! the monitor window ends healthy; an unhealthy candidate puts 100 % back on exactly the
//! previous revision. Every write Tidegate sends changes only the image and the traffic.

mod common;

use std::time::Duration;

use common::{BEFORE, CLEAN_REPORT, MINUTE, REPO, Scenario};
use serde_json::{Value, json};
use tidegate_api::PromotionPhase;
use tidegate_testenv::azure::{AzureStandIn, AzureStandInOptions, Health, SeedRevision};

const CLIENT: &str = "tidegate-controller";
const SECRET: &str = "client-secret-for-the-stand-in";

struct Azure {
    standin: AzureStandIn,
    app: String,
}

impl Azure {
    async fn start(group: &str) -> Self {
        let options = AzureStandInOptions {
            lro_delay: Duration::from_millis(300),
            provisioning_delay: Duration::from_millis(500),
            ..AzureStandInOptions::default()
        };
        let standin = AzureStandIn::start_with(options).await.expect("the Azure stand-in starts");
        standin.add_client_secret(CLIENT, SECRET).await.expect("client");
        let app = format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.App/containerApps/web",
            standin.subscription_id()
        );
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
        standin.seed_container_app_with_revisions(&app, &body, &[revision]).await.expect("seed the app");
        Self { standin, app }
    }

    fn args(&self, s: &Scenario, group: &str) -> Vec<String> {
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

    async fn get(&self, path: &str) -> Value {
        let token = self.standin.token(CLIENT, SECRET).await.expect("token");
        let response =
            self.standin.http_client().get(self.standin.arm(path)).bearer_auth(token).send().await.expect("GET");
        response.json().await.expect("JSON")
    }

    async fn traffic(&self) -> Vec<(String, i64, Option<String>)> {
        let app = self.get(&self.app).await;
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

    async fn active(&self, revision: &str) -> bool {
        self.get(&format!("{}/revisions/{revision}", self.app)).await["properties"]["active"].as_bool() == Some(true)
    }

    /// Every write Tidegate sent: only the managed container's image, the revision suffix and
    /// the traffic, with every other container and property as it was.
    async fn assert_only_image_and_traffic_written(&self) {
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

fn policy(s: &Scenario, app: &str) -> Value {
    let _ = s;
    json!({
        "triggers": {"rescan": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"containerApp": {"resourceId": app, "container": "app"}},
            "production": {"containerApp": {"resourceId": app, "container": "app"}}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz"}]},
        "promotion": {"requiredApprovals": 1, "monitorWindow": "1m"}
    })
}

#[tokio::test]
async fn a_container_app_is_staged_at_zero_weight_and_switched_only_after_approval() {
    let s = Scenario::new("azure-blue-green").await;
    let azure = Azure::start("shop").await;
    s.policy(policy(&s, &azure.app)).await;
    let args = azure.args(&s, "shop");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());

    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 3 * MINUTE).await;
    let candidate = format!("{REPO}@{}", promotion.spec.digest);
    let hex = promotion.spec.digest.trim_start_matches("sha256:");
    let revision = format!("web--tg-{}", &hex[..12]);

    // Staging: the candidate runs as a labelled revision at 0 %; production traffic is untouched.
    let traffic = azure.traffic().await;
    assert!(traffic.contains(&("web--v1".to_string(), 100, None)), "{traffic:?}\n{}", controller.log_tail());
    assert!(traffic.contains(&(revision.clone(), 0, Some("staging".to_string()))), "{traffic:?}");
    let release = s.releases().list(&Default::default()).await.expect("releases").items;
    let tests = release.iter().flat_map(|r| r.status.iter().flat_map(|st| st.tests.iter())).collect::<Vec<_>>();
    assert!(
        tests.iter().any(|t| t.passed
            && t.message
                .as_deref()
                .is_some_and(|m| m.contains(&format!("https://web---staging.{}/healthz", azure.standin.domain())))),
        "the staging check called the label's URL: {tests:?}"
    );

    // Approval moves all traffic; the previous revision stays active through the window.
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &promotion.metadata.name.clone().expect("name"), "alice").await.expect("approve");
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    let traffic = azure.traffic().await;
    assert!(traffic.iter().any(|(r, w, _)| *r == revision && *w == 100), "{traffic:?}");
    assert!(azure.active("web--v1").await, "the previous revision is kept for an instant rollback");
    s.promotion_in(PromotionPhase::Succeeded, 3 * MINUTE).await;
    common::wait("the previous revision to be deactivated", MINUTE, || async {
        (!azure.active("web--v1").await).then_some(())
    })
    .await;
    let app = azure.get(&azure.app).await;
    assert_eq!(app["properties"]["template"]["containers"][0]["image"], json!(candidate));
    azure.assert_only_image_and_traffic_written().await;
    drop(controller);
}

#[tokio::test]
async fn an_unhealthy_container_app_revision_rolls_back_to_exactly_the_previous_revision() {
    let s = Scenario::new("azure-rollback").await;
    let azure = Azure::start("shop").await;
    s.policy(policy(&s, &azure.app)).await;
    let args = azure.args(&s, "shop");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());

    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 3 * MINUTE).await;
    let candidate = format!("{REPO}@{}", promotion.spec.digest);
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &promotion.metadata.name.clone().expect("name"), "alice").await.expect("approve");
    s.promotion_in(PromotionPhase::Monitoring, 2 * MINUTE).await;
    azure.standin.set_image_health(&candidate, Health::Crashing).await.expect("make the candidate crash");
    let rolled_back = s.promotion_in(PromotionPhase::RolledBack, 2 * MINUTE).await;
    let traffic = azure.traffic().await;
    assert!(traffic.contains(&("web--v1".to_string(), 100, None)), "{traffic:?}\n{}", controller.log_tail());
    assert_eq!(traffic.iter().map(|(_, w, _)| w).sum::<i64>(), 100, "{traffic:?}");
    assert_eq!(rolled_back.status.and_then(|st| st.previous_digest), Some(BEFORE.to_string()));
    azure.assert_only_image_and_traffic_written().await;
    drop(controller);
}

#[tokio::test]
async fn a_namespace_without_an_azure_grant_reaches_no_container_app() {
    let s = Scenario::new("azure-no-grant").await;
    let azure = Azure::start("shop").await;
    s.policy(policy(&s, &azure.app)).await;
    // The grant names another resource group: the policy's app is out of reach.
    let args = azure.args(&s, "other-team");
    let controller = s.controller_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    s.trigger("first").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let release = common::wait("the Release to stop at staging", 3 * MINUTE, || async {
        let list = s.releases().list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|r| {
            r.status.as_ref().is_some_and(|st| st.conditions.iter().any(|c| c.message.contains("--azure-grant")))
        })
    })
    .await;
    let message = release.status.expect("status").conditions.iter().map(|c| c.message.clone()).collect::<Vec<_>>();
    assert!(message.iter().any(|m| m.contains("out of reach")), "{message:?}\n{}", controller.log_tail());
    let writes = azure.standin.requests().await.expect("log");
    assert!(
        !writes
            .iter()
            .any(|r| r.method == "PATCH" || r.method == "PUT" || r.method == "POST" && r.path.contains("/revisions/")),
        "nothing was written: {writes:?}"
    );
    drop(controller);
}
