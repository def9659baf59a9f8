//! The ACR Tasks builder against the Azure stand-in and a loopback registry: a run whose ID was
//! never recorded (the controller stopped right after scheduling it) is found again instead of
//! scheduled twice; a run past its timeout is cancelled and fails the build; a registry outside
//! the namespace's grants gets no request at all.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tidegate_api::{ImagePolicy, Release};
use tidegate_core::ImageRef;
use tidegate_providers::acr_tasks::{AcrTasks, release_tag};
use tidegate_providers::azure::identity::{AzureConfig, AzureCredentialKind};
use tidegate_providers::azure::{Arm, AzureError};
use tidegate_providers::azure_targets::AzureScopes;
use tidegate_providers::registry::{ClientOptions, RegistryClient};
use tidegate_providers::{BuildContext, BuildStep, ProviderError};
use tidegate_testenv::azure::{AcrImage, AcrRunOutcome, AzureStandIn, AzureStandInOptions, LoggedRequest};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions, pseudo_random_bytes};

const CLIENT: &str = "acr-tasks-test";
const SECRET: &str = "acr-tasks-secret";
const TASK: &str = "rebuild";

struct Env {
    azure: AzureStandIn,
    registry: Registry,
    client: RegistryClient,
    registry_id: String,
    _dir: tempfile::TempDir,
    arm: Arc<Arm>,
}

async fn env() -> Env {
    let options = AzureStandInOptions { lro_delay: Duration::from_millis(100), ..AzureStandInOptions::default() };
    let azure = AzureStandIn::start_with(options).await.expect("stand-in");
    azure.add_client_secret(CLIENT, SECRET).await.expect("client");
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let client = RegistryClient::new(ClientOptions {
        plain_http: registry.plain_http_hosts().into_iter().collect(),
        ..Default::default()
    })
    .expect("registry client");
    let registry_id = azure.registry_id("build", "shopacr");
    azure.seed_registry(&registry_id, registry.host()).await.expect("seed registry");
    azure.seed_acr_task(&registry_id, TASK).await.expect("seed task");
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).expect("secret");
    let config = AzureConfig {
        credential: AzureCredentialKind::ClientSecret,
        tenant_id: Some(azure.tenant_id().to_string()),
        client_id: Some(CLIENT.into()),
        client_secret_file: Some(secret_file),
        authority_host: azure.authority_host().parse().expect("url"),
        resource_manager: azure.arm_url().parse().expect("url"),
        ca_file: Some(azure.ca_file().to_path_buf()),
        operation_timeout: Duration::from_secs(30),
        ..AzureConfig::default()
    };
    let arm = Arc::new(Arm::new(&config).await.map_err(|e: AzureError| e.to_string()).expect("ARM client"));
    Env { azure, registry, client, registry_id, _dir: dir, arm }
}

impl Env {
    fn builder(&self, grant: &str) -> Arc<AcrTasks> {
        AcrTasks::new(self.arm.clone(), AzureScopes::parse(&[format!("shop={grant}")]).expect("grant"))
    }

    fn policy(&self, timeout: &str) -> ImagePolicy {
        serde_json::from_value(json!({
            "apiVersion": "tidegate.dev/v1alpha1", "kind": "ImagePolicy",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "image": format!("{}/shop/web", self.registry.host()),
                "triggers": {"baseImage": {"ref": format!("{}/base/runtime:3.20", self.registry.host())}},
                "build": {"strategy": "acrTask", "acrTask": {"registryId": self.registry_id, "taskName": TASK, "timeout": timeout}},
                "scan": {"scanner": "trivy"},
                "workloads": []
            }
        }))
        .expect("policy")
    }

    fn repository(&self) -> ImageRef {
        format!("{}/shop/web", self.registry.host()).parse().expect("repository")
    }

    async fn registry_requests(&self) -> Vec<LoggedRequest> {
        let id = self.registry_id.to_ascii_lowercase();
        self.azure
            .requests()
            .await
            .expect("request log")
            .into_iter()
            .filter(|r| r.path.to_ascii_lowercase().starts_with(&id))
            .collect()
    }
}

fn make_release(name: &str) -> Release {
    serde_json::from_value(json!({
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": name, "namespace": "shop", "uid": "7d1f0c3e-1111-2222-3333-444444444444"},
        "spec": {"policy": "web", "reason": {"type": "Manual"}}
    }))
    .expect("release")
}

fn base() -> (ImageRef, String) {
    (
        "127.0.0.1:1/base/runtime:3.20".parse().expect("base"),
        "sha256:2222222222222222222222222222222222222222222222222222222222222222".into(),
    )
}

fn scheduled(requests: &[LoggedRequest]) -> usize {
    requests.iter().filter(|r| r.method == "POST" && r.path.ends_with("/scheduleRun")).count()
}

#[tokio::test]
async fn a_run_whose_id_was_never_recorded_is_found_again_instead_of_scheduled_twice() {
    let env = env().await;
    let (policy, release) = (env.policy("10m"), make_release("web-base-1"));
    let tag = release_tag(&release);
    let digest = env
        .registry
        .client()
        .push_layered("shop/web", &tag, &[pseudo_random_bytes("rebuilt", 512)], &[])
        .await
        .expect("push");
    let image =
        AcrImage { registry: env.registry.host().into(), repository: "shop/web".into(), tag: tag.clone(), digest };
    let outcome = AcrRunOutcome::succeeded(vec![image], "built\n").taking(Duration::ZERO, Duration::from_millis(300));
    env.azure.next_acr_run(&env.registry_id, Some(TASK), &outcome).await.expect("outcome");
    let builder = env.builder("/subscriptions/00000000-0000-4000-8000-00000000c0de/resourceGroups/build");
    let (base_ref, new_base) = base();
    let now = jiff::Timestamp::now();
    let first = builder
        .step(
            &env.client,
            &policy,
            &release,
            &env.repository(),
            (&base_ref, &new_base),
            &BuildContext { started_at: None, run_id: None, now },
        )
        .await
        .expect("scheduled");
    let BuildStep::Started { run_id: Some(run_id), .. } = first else { panic!("{first:?}") };

    // Follow the run to its end, as the controller would with the ID recorded.
    let context = BuildContext { started_at: Some(now), run_id: Some(run_id.clone()), now };
    let built = loop {
        match builder.step(&env.client, &policy, &release, &env.repository(), (&base_ref, &new_base), &context).await {
            Ok(BuildStep::Done(built)) => break built,
            Ok(BuildStep::Waiting(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(built.digest.as_str(), outcome.output_images[0].digest);
    assert_eq!(built.run_id.as_deref(), Some(run_id.as_str()));

    // The status write that would have recorded the run was lost: the next attempt finds the run
    // that pushed this Release's tag and schedules nothing.
    let again = builder
        .step(
            &env.client,
            &policy,
            &release,
            &env.repository(),
            (&base_ref, &new_base),
            &BuildContext { started_at: None, run_id: None, now },
        )
        .await
        .expect("found");
    assert!(
        matches!(&again, BuildStep::Started { run_id: Some(id), run } if *id == run_id && run.contains("found")),
        "{again:?}"
    );
    let requests = env.registry_requests().await;
    assert_eq!(scheduled(&requests), 1, "{requests:#?}");
    let list = requests.iter().find(|r| r.method == "GET" && r.path.ends_with("/runs")).expect("runs listed");
    assert!(
        list.query.contains("TaskName+eq+%27rebuild%27") || list.query.contains("TaskName%20eq%20%27rebuild%27"),
        "{}",
        list.query
    );

    // Another Release's tag matches no earlier run: it gets a run of its own.
    let other = make_release("web-base-2");
    let step = builder
        .step(
            &env.client,
            &policy,
            &other,
            &env.repository(),
            (&base_ref, &new_base),
            &BuildContext { started_at: None, run_id: None, now },
        )
        .await
        .expect("scheduled");
    assert!(matches!(&step, BuildStep::Started { run_id: Some(id), .. } if *id != run_id), "{step:?}");
    assert_eq!(scheduled(&env.registry_requests().await), 2);
}

#[tokio::test]
async fn a_run_past_its_timeout_is_cancelled_and_fails_the_build() {
    let env = env().await;
    let (policy, release) = (env.policy("10m"), make_release("web-base-slow"));
    let outcome =
        AcrRunOutcome::succeeded(Vec::new(), "still building\n").taking(Duration::ZERO, Duration::from_secs(600));
    env.azure.next_acr_run(&env.registry_id, Some(TASK), &outcome).await.expect("outcome");
    let builder = env.builder(&env.registry_id);
    let (base_ref, new_base) = base();
    let now = jiff::Timestamp::now();
    let context = BuildContext { started_at: None, run_id: None, now };
    let step = builder.step(&env.client, &policy, &release, &env.repository(), (&base_ref, &new_base), &context).await;
    let Ok(BuildStep::Started { run_id: Some(run_id), .. }) = step else { panic!("{step:?}") };
    let within = BuildContext { started_at: Some(now), run_id: Some(run_id.clone()), now };
    let step = builder.step(&env.client, &policy, &release, &env.repository(), (&base_ref, &new_base), &within).await;
    assert!(matches!(&step, Ok(BuildStep::Waiting(m)) if m.contains(&run_id)), "{step:?}");

    let later = now + jiff::SignedDuration::from_mins(11);
    let late = BuildContext { started_at: Some(now), run_id: Some(run_id.clone()), now: later };
    let err = builder
        .step(&env.client, &policy, &release, &env.repository(), (&base_ref, &new_base), &late)
        .await
        .expect_err("timed out");
    let message = err.to_string();
    assert!(matches!(err, ProviderError::Permanent(_)), "{message}");
    assert!(
        message.contains(&format!("ACR run {run_id}"))
            && message.contains("did not finish within 10m")
            && message.contains("cancelled")
            && message.contains("/_standin/acr/logs/"),
        "{message}"
    );
    let requests = env.registry_requests().await;
    assert!(requests.iter().any(|r| r.method == "POST" && r.path.ends_with(&format!("/runs/{run_id}/cancel"))));
}

#[tokio::test]
async fn a_registry_outside_the_namespaces_grants_gets_no_request() {
    let env = env().await;
    let (policy, release) = (env.policy("10m"), make_release("web-base-denied"));
    let (base_ref, new_base) = base();
    let context = BuildContext { started_at: None, run_id: None, now: jiff::Timestamp::now() };
    for grant in [
        "/subscriptions/00000000-0000-4000-8000-00000000c0de/resourceGroups/apps",
        "/subscriptions/00000000-0000-4000-8000-00000000c0de/resourceGroups/build/providers/Microsoft.ContainerRegistry/registries/shopacr2",
    ] {
        let err = env
            .builder(grant)
            .step(&env.client, &policy, &release, &env.repository(), (&base_ref, &new_base), &context)
            .await
            .expect_err("out of reach");
        assert!(
            matches!(&err, ProviderError::NotAllowed(m) if m.contains("--azure-grant shop=") && m.contains(&env.registry_id)),
            "{err}"
        );
    }
    assert_eq!(env.registry_requests().await, [], "nothing was sent about the registry");
}

#[tokio::test]
async fn an_encoded_task_runs_on_its_platform_and_an_image_outside_the_registry_is_refused_before_scheduling() {
    let env = env().await;
    let mut policy = env.policy("10m");
    let settings = policy.spec.build.acr_task.as_mut().expect("acrTask");
    settings.task_name = None;
    settings.encoded_task = Some("c3RlcHM6Ci0gYnVpbGQ6IC10IGFwcCAuCg==".into());
    settings.platform =
        Some(tidegate_api::image_policy::AcrTaskPlatform { os: "linux".into(), architecture: "arm64".into() });
    let release = make_release("web-base-encoded");
    let digest = env
        .registry
        .client()
        .push_layered("shop/web", "encoded", &[pseudo_random_bytes("encoded", 256)], &[])
        .await
        .expect("push");
    let image =
        AcrImage { registry: env.registry.host().into(), repository: "shop/web".into(), tag: "encoded".into(), digest };
    let outcome = AcrRunOutcome::succeeded(vec![image], "ok\n").taking(Duration::ZERO, Duration::from_millis(200));
    env.azure.next_acr_run(&env.registry_id, None, &outcome).await.expect("outcome");
    let builder = env.builder(&env.registry_id);
    let (base_ref, new_base) = base();
    let now = jiff::Timestamp::now();
    let start = BuildContext { started_at: None, run_id: None, now };
    let step = builder.step(&env.client, &policy, &release, &env.repository(), (&base_ref, &new_base), &start).await;
    let Ok(BuildStep::Started { run_id: Some(run_id), .. }) = step else { panic!("{step:?}") };
    let context = BuildContext { started_at: Some(now), run_id: Some(run_id), now };
    let built = loop {
        match builder.step(&env.client, &policy, &release, &env.repository(), (&base_ref, &new_base), &context).await {
            Ok(BuildStep::Done(built)) => break built,
            Ok(BuildStep::Waiting(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(built.digest.as_str(), outcome.output_images[0].digest);
    let requests = env.registry_requests().await;
    let body = requests.iter().find(|r| r.path.ends_with("/scheduleRun")).and_then(|r| r.json()).expect("scheduleRun");
    assert_eq!(body["type"], "EncodedTaskRunRequest");
    assert_eq!(body["platform"], json!({"os": "Linux", "architecture": "arm64"}));
    assert_eq!(body["timeout"], 600);
    let listed = requests.iter().find(|r| r.method == "GET" && r.path.ends_with("/runs")).expect("runs listed");
    assert!(listed.query.contains("%24top=50") && !listed.query.contains("filter"), "{}", listed.query);

    // spec.image in another registry than the task's: refused before any run is scheduled.
    env.azure.clear_requests().await.expect("clear");
    let mut elsewhere = env.policy("10m");
    elsewhere.spec.image = "other.azurecr.io/shop/web".into();
    let repository: ImageRef = "other.azurecr.io/shop/web".parse().expect("repository");
    let err = builder
        .step(&env.client, &elsewhere, &make_release("web-base-elsewhere"), &repository, (&base_ref, &new_base), &start)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ProviderError::Permanent(m) if m.contains("is not in registry shopacr")
            && m.contains(&format!("login server {}", env.registry.host()))),
        "{err}"
    );
    assert_eq!(scheduled(&env.registry_requests().await), 0);
}
