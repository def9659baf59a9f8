//! ACR Tasks builds end to end (`spec.build.strategy: acrTask`), against the local ARM stand-in
//! (runs decided by the test, request models from Microsoft's Go SDK) and the loopback registry,
//! whose login server the stand-in's registry reports: a base image update becomes one ACR Tasks
//! run with the Release's values; the digest the run reports for the policy's repository is
//! scanned, signed, staged and tested, with the run ID and log link on the Release. A failing run
//! fails the Release with its log link; a run that pushed only elsewhere is refused; a namespace
//! without a grant for the registry sends nothing to Azure; without an Azure credential the
//! Release says which flags to set.

mod common;

use common::azure::{Azure, quick};
use common::{CLEAN_REPORT, MINUTE, Scenario, http_server};
use kube::api::Api;
use serde_json::{Value, json};
use tidegate_api::{ImagePolicy, PromotionPhase, Release, ReleasePhase};
use tidegate_providers::rebase::{BASE_DIGEST, BASE_NAME};
use tidegate_testenv::azure::{AcrImage, AcrRunOutcome};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions, pseudo_random_bytes};

const GROUP: &str = "build";
const TASK: &str = "rebuild";

/// Pushes an image with these layers; returns its digest.
async fn push(registry: &Registry, repo: &str, tag: &str, layers: &[Vec<u8>], annotations: &[(&str, &str)]) -> String {
    registry.client().push_layered(repo, tag, layers, annotations).await.expect("push image")
}

struct Setup {
    registry: Registry,
    host: String,
    base_ref: String,
    old_base: String,
    s: Scenario,
    azure: Azure,
    registry_id: String,
}

/// A loopback registry with base v1 and the app built on it, a scenario whose web workloads run
/// the app, and a stand-in registry `shopacr` (login server: the loopback registry) with task
/// `rebuild`.
async fn setup(name: &str) -> Setup {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let host = registry.host().to_string();
    let base_ref = format!("{host}/base/runtime:3.20");
    let base_v1 = [pseudo_random_bytes("os-1", 1024), pseudo_random_bytes("libs-1", 512)];
    let old_base = push(&registry, "base/runtime", "3.20", &base_v1, &[]).await;
    let app = push(
        &registry,
        "shop/app",
        "1.0.0",
        &[base_v1[0].clone(), base_v1[1].clone(), pseudo_random_bytes("app", 256)],
        &[(BASE_NAME, &base_ref), (BASE_DIGEST, &old_base)],
    )
    .await;
    let s = Scenario::new(name).await;
    s.set_workload_images(&format!("{host}/shop/app@{app}")).await;
    let azure = Azure::empty(GROUP, quick()).await;
    let registry_id = azure.standin.registry_id(GROUP, "shopacr");
    azure.standin.seed_registry(&registry_id, &host).await.expect("seed the registry");
    azure.standin.seed_acr_task(&registry_id, TASK).await.expect("seed the task");
    Setup { registry, host, base_ref, old_base, s, azure, registry_id }
}

impl Setup {
    /// The policy: the app, its base watched, built by task `rebuild` in `shopacr`.
    async fn policy(&self, check_url: &str) {
        let s = &self.s;
        s.policy(json!({
            "image": format!("{}/shop/app", self.host),
            "triggers": {"baseImage": {"ref": self.base_ref, "interval": "1m"}, "rescan": null},
            "build": {"strategy": "acrTask", "acrTask": {"registryId": self.registry_id, "taskName": TASK, "timeout": "10m"}},
            "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": check_url}]},
            "workloads": [
                {"name": "web", "kind": "http",
                 "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "service": "web"}},
                 "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": "web", "service": "web"}}}
            ]
        }))
        .await;
    }

    /// Controller flags: the stand-in as Azure (namespace granted resource group `granted`), the
    /// product's registry builder, the loopback registry over plain HTTP.
    fn args(&self, granted: &str) -> Vec<String> {
        let mut args = self.azure.args(&self.s, granted);
        let at = args.iter().position(|a| a == "--builder").expect("--builder");
        args.drain(at..at + 2);
        args.extend(["--plain-http-registry".to_string(), self.host.clone()]);
        args
    }

    /// Pushes a new base (`seed` names its layers) and tells the controller, as the registry's
    /// notification would; returns its digest.
    async fn new_base(&self, controller: &common::ControllerProcess, seed: &str) -> String {
        let layers =
            [pseudo_random_bytes(&format!("os-{seed}"), 1024), pseudo_random_bytes(&format!("libs-{seed}"), 512)];
        let digest = push(&self.registry, "base/runtime", "3.20", &layers, &[]).await;
        let notification = json!({"events": [{"action": "push", "target": {"repository": "base/runtime", "tag": "3.20", "digest": digest}, "request": {"host": self.host}}]});
        let answer =
            common::http(&format!("{}/webhooks/registry", controller.metrics), Some(&notification.to_string())).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        digest
    }

    /// Pushes what a task run would have pushed to `repo`; returns its digest.
    async fn rebuilt(&self, repo: &str, seed: &str) -> String {
        push(&self.registry, repo, &format!("rebuilt-{seed}"), &[pseudo_random_bytes(seed, 700)], &[]).await
    }

    fn image(&self, repo: &str, seed: &str, digest: &str) -> AcrImage {
        AcrImage {
            registry: self.host.clone(),
            repository: repo.into(),
            tag: format!("rebuilt-{seed}"),
            digest: digest.into(),
        }
    }

    /// Waits until the policy recorded `digest` as its base.
    async fn base_recorded(&self, digest: &str) {
        let policies = Api::<ImagePolicy>::namespaced(self.s.admin.clone(), &self.s.ns);
        common::wait("the base digest on the policy", MINUTE, || {
            let policies = policies.clone();
            async move { (policies.get("shop-app").await.ok()?.status?.base_digest? == digest).then_some(()) }
        })
        .await;
    }

    /// ARM requests on the stand-in's registry.
    async fn registry_requests(&self) -> Vec<tidegate_testenv::azure::LoggedRequest> {
        let id = self.registry_id.to_ascii_lowercase();
        self.azure.requests().await.into_iter().filter(|r| r.path.to_ascii_lowercase().starts_with(&id)).collect()
    }
}

/// The Release built for base digest `base`, once it is in one of `phases`.
async fn release_for(s: &Scenario, base: &str, phases: &[ReleasePhase]) -> Release {
    let api = s.releases();
    common::wait(&format!("the Release for base {base} in {phases:?}"), 2 * MINUTE, || {
        let api = api.clone();
        async move {
            let list = api.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|r| {
                r.spec.reason.base_image.as_ref().is_some_and(|b| b.new_digest == base)
                    && r.status.as_ref().is_some_and(|st| phases.contains(&st.phase))
            })
        }
    })
    .await
}

fn blocked(release: &Release) -> String {
    let status = release.status.as_ref().expect("status");
    status.conditions.iter().find(|c| c.type_ == "Blocked").map(|c| c.message.clone()).unwrap_or_default()
}

fn value<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body["overrideTaskStepProperties"]["values"].as_array()?.iter().find(|v| v["name"] == name)?["value"].as_str()
}

#[tokio::test]
async fn a_base_image_update_is_rebuilt_by_an_acr_task_run_and_goes_on_to_approval() {
    let setup = setup("acr-tasks").await;
    let (s, azure) = (&setup.s, &setup.azure);
    let (check_url, _) = http_server(200).await;
    setup.policy(&check_url).await;
    let controller = s.controller_with(&setup.args(GROUP).iter().map(String::as_str).collect::<Vec<_>>());
    setup.base_recorded(&setup.old_base).await;

    // The run pushes the rebuilt app and a build cache elsewhere in the registry; only the app's
    // repository counts.
    let rebuilt = setup.rebuilt("shop/app", "v2").await;
    let cache = setup.rebuilt("shop/build-cache", "v2").await;
    let outcome = AcrRunOutcome::succeeded(
        vec![setup.image("shop/build-cache", "v2", &cache), setup.image("shop/app", "v2", &rebuilt)],
        "Step 1/3 : FROM base\nSuccessfully pushed shop/app\n",
    );
    azure.standin.next_acr_run(&setup.registry_id, Some(TASK), &outcome).await.expect("next run");
    let new_base = setup.new_base(&controller, "2").await;

    let digest = s.upload_scan_report(CLEAN_REPORT).await;
    assert_eq!(digest, rebuilt, "the candidate is the digest the run reported for shop/app");
    let release = release_for(s, &new_base, &[ReleasePhase::Verified]).await;
    s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    let status = release.status.clone().expect("status");
    assert_eq!(status.image.as_deref(), Some(format!("{}/shop/app@{rebuilt}", setup.host).as_str()));
    assert_eq!(s.deployment_image(&s.staging, "web").await, Some(format!("{}/shop/app@{rebuilt}", setup.host)));
    assert!(status.signature.is_some(), "signed");

    // The run ID and the log link are on the Release; the link serves the run's log.
    let build = status.build.expect("status.build");
    let run_id = build.run_id.clone().expect("status.build.runId");
    assert!(build.reference.as_deref().is_some_and(|r| r.contains(&run_id)), "{build:?}");
    let log_link = build.log_link.clone().expect("status.build.logLink");
    let log = azure.standin.http_client().get(&log_link).send().await.expect("log link").text().await.expect("log");
    assert_eq!(log, "Step 1/3 : FROM base\nSuccessfully pushed shop/app\n");

    // Exactly one run was scheduled, for the task, with the Release's values.
    let requests = setup.registry_requests().await;
    let scheduled: Vec<_> =
        requests.iter().filter(|r| r.method == "POST" && r.path.ends_with("/scheduleRun")).collect();
    assert_eq!(scheduled.len(), 1, "{requests:#?}");
    let body = scheduled[0].json().expect("JSON body");
    assert_eq!(body["type"], "TaskRunRequest");
    assert_eq!(body["taskId"], format!("{}/tasks/{TASK}", setup.registry_id));
    assert_eq!(value(&body, "TIDEGATE_IMAGE_REPOSITORY"), Some(format!("{}/shop/app", setup.host).as_str()));
    let base_name = setup.base_ref.trim_end_matches(":3.20");
    assert_eq!(value(&body, "TIDEGATE_BASE_IMAGE"), Some(format!("{base_name}@{new_base}").as_str()));
    assert_eq!(value(&body, "TIDEGATE_RELEASE"), release.metadata.name.as_deref());
    assert!(value(&body, "TIDEGATE_IMAGE_TAG").is_some_and(|t| t.starts_with("tidegate-")));
    assert!(scheduled[0].query.contains("api-version=2025-03-01-preview"), "{}", scheduled[0].query);
    assert!(
        requests.iter().any(|r| r.method == "GET" && r.path.to_ascii_lowercase().ends_with(&format!("/runs/{run_id}"))),
        "the run was followed"
    );

    // A failing run fails the Release, naming the run, its status and its log link.
    azure
        .standin
        .next_acr_run(&setup.registry_id, Some(TASK), &AcrRunOutcome::failed("step build failed", "error: compile\n"))
        .await
        .expect("next run");
    let failing_base = setup.new_base(&controller, "3").await;
    let failed = release_for(s, &failing_base, &[ReleasePhase::Failed]).await;
    let message = blocked(&failed);
    assert!(message.contains("ended with status Failed: step build failed"), "{message}");
    assert!(message.contains("/_standin/acr/logs/") && message.contains("sig="), "the log link: {message}");
    assert!(failed.status.as_ref().and_then(|st| st.digest.clone()).is_none(), "no candidate");

    // A run that pushed only to another repository of the registry gives no candidate.
    let elsewhere = setup.rebuilt("other/app", "v4").await;
    let outcome = AcrRunOutcome::succeeded(vec![setup.image("other/app", "v4", &elsewhere)], "pushed other/app\n");
    azure.standin.next_acr_run(&setup.registry_id, Some(TASK), &outcome).await.expect("next run");
    let outside_base = setup.new_base(&controller, "4").await;
    let refused = release_for(s, &outside_base, &[ReleasePhase::Failed]).await;
    let message = blocked(&refused);
    assert!(
        message.contains(&format!("pushed no image to the policy's repository {}/shop/app", setup.host))
            && message.contains("other/app"),
        "{message}"
    );
    assert!(refused.status.as_ref().and_then(|st| st.digest.clone()).is_none(), "nothing taken from other/app");
    drop(controller);
}

#[tokio::test]
async fn without_a_grant_for_the_registry_nothing_is_sent_to_azure() {
    let setup = setup("acr-tasks-reach").await;
    let (s, azure) = (&setup.s, &setup.azure);
    let (check_url, _) = http_server(200).await;
    setup.policy(&check_url).await;

    // The namespace is granted another resource group, not the registry's.
    let controller = s.controller_with(&setup.args("apps").iter().map(String::as_str).collect::<Vec<_>>());
    setup.base_recorded(&setup.old_base).await;
    azure.standin.clear_requests().await.expect("clear the request log");
    let new_base = setup.new_base(&controller, "2").await;
    let failed = release_for(s, &new_base, &[ReleasePhase::Failed]).await;
    let message = blocked(&failed);
    assert!(
        message.contains("is out of reach for policies in namespace acr-tasks-reach")
            && message.contains("--azure-grant acr-tasks-reach="),
        "{message}"
    );
    assert_eq!(setup.registry_requests().await, [], "no request about the registry reached Azure");
    drop(controller);

    // Without an Azure credential the Release says which flags to set.
    let controller = s.controller_with(&["--plain-http-registry", &setup.host]);
    common::wait("the new controller to lead", 2 * MINUTE, || async {
        controller.logged("controller starting").then_some(())
    })
    .await;
    let other_base = setup.new_base(&controller, "3").await;
    let failed = release_for(s, &other_base, &[ReleasePhase::Failed]).await;
    let message = blocked(&failed);
    assert!(message.contains("--azure-credential") && message.contains("--azure-grant"), "{message}");
    assert_eq!(setup.registry_requests().await, [], "still nothing sent to Azure");
    drop(controller);
}
