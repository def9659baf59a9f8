//! The Azure stand-in (`azure-standin`): its fidelity test (Microsoft's Go SDK clients and the
//! official REST examples) and the protocol behaviour the Azure adapters rely on.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidegate_testenv::azure::{AzureStandIn, AzureStandInOptions, Health, SeedRevision, TENANT_ID};
use tidegate_testenv::registry::{AcrTrust, Registry, RegistryAuth, RegistryKind, RegistryOptions};

/// The official REST examples: `$TIDEGATE_AZURE_EXAMPLES`, else `../shared/fixtures` beside the
/// repository.
fn examples() -> PathBuf {
    if let Some(dir) = std::env::var_os("TIDEGATE_AZURE_EXAMPLES").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/azure/containerapps/examples")
}

fn fast() -> AzureStandInOptions {
    AzureStandInOptions {
        lro_delay: Duration::from_millis(300),
        provisioning_delay: Duration::from_millis(300),
        execution_delay: Duration::from_millis(300),
        ..AzureStandInOptions::default()
    }
}

fn app_id(azure: &AzureStandIn, name: &str) -> String {
    format!("/subscriptions/{}/resourceGroups/rg/providers/Microsoft.App/containerApps/{name}", azure.subscription_id())
}

fn app_body(image: &str) -> Value {
    json!({
        "location": "East US",
        "properties": {
            "managedEnvironmentId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/env",
            "configuration": {"activeRevisionsMode": "Multiple", "ingress": {"external": true, "targetPort": 8080}},
            "template": {"revisionSuffix": "v1", "containers": [{"name": "web", "image": image, "env": [{"name": "A", "value": "1"}]}]}
        }
    })
}

/// An HTTPS request to ARM with an optional bearer token; returns status, headers and JSON body.
async fn arm(
    azure: &AzureStandIn,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = azure.http_client().request(reqwest::Method::from_bytes(method.as_bytes()).expect("method"), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.header("content-type", "application/json").body(body.to_string());
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn started_with_token(options: AzureStandInOptions) -> (AzureStandIn, String) {
    let azure = AzureStandIn::start_with(options).await.expect("starting azure-standin");
    azure.add_client_secret("tests", "s3cret").await.expect("adding a client");
    let token = azure.token("tests", "s3cret").await.expect("a token");
    (azure, token)
}

#[tokio::test]
async fn microsofts_go_sdk_and_the_rest_examples_pass_against_the_stand_in() {
    let examples = examples();
    assert!(examples.is_dir(), "the official REST examples are missing: {}", examples.display());
    let azure = AzureStandIn::start().await.expect("starting azure-standin");
    // A registry behind an ACR front that accepts the stand-in's tokens for the fidelity client,
    // for the azcontainerregistry client's token exchange.
    let trust = AcrTrust {
        token_key: azure.token_key().to_string(),
        tenant: TENANT_ID.to_string(),
        allowed: vec!["fidelity-client".to_string()],
    };
    let acr = Registry::start(RegistryOptions {
        kind: RegistryKind::Distribution,
        auth: RegistryAuth::acr("admin", "admin-password", trust),
    })
    .await
    .expect("starting the ACR front");
    acr.client().push_layered("shop/app", "1.0", &[b"layer".to_vec()], &[]).await.expect("pushing an image");
    let started = Instant::now();
    let mut command = azure.fidelity_command(&examples);
    command
        .env("AZURE_STANDIN_ACR_ENDPOINT", acr.url())
        .env("AZURE_STANDIN_ACR_REPOSITORY", "shop/app")
        .env("AZURE_STANDIN_ACR_TAG", "1.0");
    command.arg("-test.v").arg("-test.timeout=300s");
    let output =
        tokio::task::spawn_blocking(move || command.output()).await.unwrap().expect("running the fidelity test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    eprintln!("fidelity test took {:.1?}", started.elapsed());
    assert!(output.status.success(), "the fidelity test failed; stand-in log {}", azure.log().display());
    for test in [
        "TestSDKContainerAppLifecycle",
        "TestSDKJobs",
        "TestWorkloadIdentity",
        "TestRESTExamples",
        "TestSDKACRTasks",
        "TestACRRESTExamples",
        "TestResourceGraphDefenderQuery",
        "TestResourceGraphExamples",
        "TestSDKKeyVault",
        "TestKeyVaultAuthentication",
        "TestKeyVaultRESTExamples",
        "TestSDKACRTokenExchange",
    ] {
        assert!(stdout.contains(&format!("--- PASS: {test}")), "{test} did not pass (skipped?)");
    }
    assert!(!stdout.contains("--- SKIP"), "a fidelity test was skipped");
}

#[tokio::test]
async fn a_misspelt_property_is_rejected() {
    let (azure, token) = started_with_token(fast()).await;
    let mut body = app_body("registry.test/web:v1");
    body["properties"]["template"]["containers"][0]["imagez"] = json!("x");
    let url = azure.arm(&app_id(&azure, "web"));
    let (status, headers, error) = arm(&azure, "PUT", &url, Some(&token), Some(&body)).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "InvalidRequestContent");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("unknown field properties.template.containers[0].imagez"), "{message}");
    assert!(headers.contains_key("x-ms-request-id") && headers.contains_key("x-ms-correlation-request-id"));
    // A field newer than the SDK's 2025-01-01 models is accepted only with api-version 2025-07-01.
    let mut newer = app_body("registry.test/web:v1");
    newer["properties"]["configuration"]["dapr"] = json!({"enabled": true, "maxConcurrency": 10});
    let (status, _, error) = arm(&azure, "PUT", &url, Some(&token), Some(&newer)).await;
    assert_eq!(status, 400, "{error}");
    let (status, _, body) = arm(
        &azure,
        "PUT",
        &format!("{}{}?api-version=2025-07-01", azure.arm_url(), app_id(&azure, "web")),
        Some(&token),
        Some(&newer),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn an_unknown_api_version_is_rejected() {
    let (azure, token) = started_with_token(fast()).await;
    let url = format!("{}{}?api-version=2023-05-01", azure.arm_url(), app_id(&azure, "web"));
    let (status, _, error) = arm(&azure, "GET", &url, Some(&token), None).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "InvalidApiVersionParameter");
    let url = format!("{}{}", azure.arm_url(), app_id(&azure, "web"));
    let (status, _, error) = arm(&azure, "GET", &url, Some(&token), None).await;
    assert_eq!(status, 400);
    assert_eq!(error["error"]["code"], "MissingApiVersionParameter");
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_with_a_challenge() {
    let (azure, _) = started_with_token(fast()).await;
    let url = azure.arm(&app_id(&azure, "web"));
    let (status, headers, error) = arm(&azure, "GET", &url, None, None).await;
    assert_eq!(status, 401);
    assert_eq!(error["error"]["code"], "AuthenticationFailed");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer authorization_uri=") && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
    let (status, _, error) = arm(&azure, "GET", &url, Some("not.a.token"), None).await;
    assert_eq!(status, 401);
    assert_eq!(error["error"]["code"], "InvalidAuthenticationToken");
    // A wrong secret is an Entra ID error.
    let err = azure.token("tests", "wrong").await.unwrap_err().to_string();
    assert!(err.contains("invalid_client") && err.contains("AADSTS7000215"), "{err}");
}

#[tokio::test]
async fn a_second_write_during_an_operation_conflicts_and_the_operation_completes() {
    let (azure, token) = started_with_token(AzureStandInOptions { lro_delay: Duration::from_secs(2), ..fast() }).await;
    let url = azure.arm(&app_id(&azure, "web"));
    let (status, headers, created) =
        arm(&azure, "PUT", &url, Some(&token), Some(&app_body("registry.test/web:v1"))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["properties"]["provisioningState"], "InProgress");
    assert_eq!(headers["retry-after"], "2");
    let status_url = headers["azure-asyncoperation"].to_str().unwrap().to_string();
    assert!(
        status_url.contains("/providers/Microsoft.App/locations/eastus/containerappOperationStatuses/"),
        "{status_url}"
    );
    let location = headers["location"].to_str().unwrap().to_string();
    let patch = json!({"properties": {"template": {"containers": [{"name": "web", "image": "registry.test/web:v2"}]}}});
    let (status, _, error) = arm(&azure, "PATCH", &url, Some(&token), Some(&patch)).await;
    assert_eq!(status, 409);
    assert_eq!(error["error"]["code"], "ContainerAppOperationInProgress");
    let (status, _, op) = arm(&azure, "GET", &status_url, Some(&token), None).await;
    assert_eq!((status, op["status"].as_str()), (200, Some("InProgress")));
    let (status, _, _) = arm(&azure, "GET", &location, Some(&token), None).await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, _, op) = arm(&azure, "GET", &status_url, Some(&token), None).await;
    assert_eq!(op["status"], "Succeeded");
    let (status, _, app) = arm(&azure, "GET", &location, Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(app["properties"]["provisioningState"], "Succeeded");
    assert_eq!(app["properties"]["latestRevisionName"], "web--v1");
}

#[tokio::test]
async fn injected_throttling_answers_429_with_retry_after() {
    let (azure, token) = started_with_token(fast()).await;
    let id = app_id(&azure, "web");
    azure.seed_container_app(&id, &app_body("registry.test/web:v1")).await.unwrap();
    azure.throttle("GET", &id, 2, 7).await.unwrap();
    let url = azure.arm(&id);
    for _ in 0..2 {
        let (status, headers, error) = arm(&azure, "GET", &url, Some(&token), None).await;
        assert_eq!(status, 429);
        assert_eq!(headers["retry-after"], "7");
        assert_eq!(error["error"]["code"], "TooManyRequests");
    }
    let (status, _, app) = arm(&azure, "GET", &url, Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(app["properties"]["latestRevisionName"], "web--v1");
    assert_eq!(app["properties"]["configuration"]["ingress"]["fqdn"], format!("web.{}", azure.domain()));
}

#[tokio::test]
async fn a_label_url_answers_as_its_revision_until_the_revision_is_unhealthy() {
    let (azure, token) = started_with_token(fast()).await;
    let id = app_id(&azure, "web");
    let mut body = app_body("registry.test/web:v2");
    body["properties"]["configuration"]["ingress"]["traffic"] = json!([
        {"revisionName": "web--v1", "weight": 100, "label": "production"},
        {"latestRevision": true, "weight": 0, "label": "staging"}
    ]);
    body["properties"]["template"]["revisionSuffix"] = json!("v2");
    let mut v1_template = body["properties"]["template"].clone();
    v1_template["revisionSuffix"] = json!("v1");
    v1_template["containers"][0]["image"] = json!("registry.test/web:v1");
    let revisions = [
        SeedRevision { name: "web--v1".into(), template: Some(v1_template), ..SeedRevision::default() },
        SeedRevision { name: "web--v2".into(), ..SeedRevision::default() },
    ];
    azure.seed_container_app_with_revisions(&id, &body, &revisions).await.unwrap();
    let staging = format!("web---staging.{}", azure.domain());
    let (status, answer) = azure.ingress_get(&staging, "/healthz").await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["revision"], "web--v2");
    assert_eq!(answer["image"], "registry.test/web:v2");
    let (status, answer) = azure.ingress_get(&format!("web.{}", azure.domain()), "/").await.unwrap();
    assert_eq!((status, answer["revision"].as_str()), (200, Some("web--v1")));

    azure.set_revision_health(&id, "web--v2", Health::Unhealthy).await.unwrap();
    let (status, answer) = azure.ingress_get(&staging, "/healthz").await.unwrap();
    assert_eq!(status, 503, "{answer}");
    let (_, _, revision) = arm(&azure, "GET", &azure.arm(&format!("{id}/revisions/web--v2")), Some(&token), None).await;
    assert_eq!(revision["properties"]["healthState"], "Unhealthy");
    assert_eq!(revision["properties"]["runningState"], "Degraded");
    let (status, _) = azure.ingress_get(&format!("web--v1.{}", azure.domain()), "/").await.unwrap();
    assert_eq!(status, 200);
    let (status, _) = azure.ingress_get(&format!("nope.{}", azure.domain()), "/").await.unwrap();
    assert_eq!(status, 404);

    // Crashing: restart counts grow.
    azure.set_image_health("registry.test/web:v1", Health::Crashing).await.unwrap();
    let replicas =
        arm(&azure, "GET", &azure.arm(&format!("{id}/revisions/web--v1/replicas")), Some(&token), None).await.2;
    let replica = replicas["value"][0]["name"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, _, replica) =
        arm(&azure, "GET", &azure.arm(&format!("{id}/revisions/web--v1/replicas/{replica}")), Some(&token), None).await;
    let container = &replica["properties"]["containers"][0];
    assert!(container["restartCount"].as_u64().unwrap() >= 2, "{replica}");
    assert_eq!(container["ready"], false);
}

#[tokio::test]
async fn the_request_log_shows_that_a_patch_changed_only_the_image() {
    let (azure, token) = started_with_token(fast()).await;
    let id = app_id(&azure, "web");
    azure.seed_container_app(&id, &app_body("registry.test/web:v1")).await.unwrap();
    azure.clear_requests().await.unwrap();
    let patch = json!({"properties": {"template": {"revisionSuffix": "v2", "containers": [{"name": "web", "image": "registry.test/web:v2", "env": [{"name": "A", "value": "1"}]}]}}});
    let (status, headers, _) = arm(&azure, "PATCH", &azure.arm(&id), Some(&token), Some(&patch)).await;
    assert_eq!(status, 202);
    assert!(headers.contains_key("azure-asyncoperation") && headers.contains_key("location"));
    let log = azure.requests().await.unwrap();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!((log[0].method.as_str(), log[0].path.as_str(), log[0].status), ("PATCH", id.as_str(), 202));
    assert_eq!(log[0].query, "api-version=2025-01-01");
    assert_eq!(log[0].json(), Some(patch));
    // The merge kept the rest; the new revision provisions and takes the traffic (no traffic
    // entries: the latest revision).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, _, app) = arm(&azure, "GET", &azure.arm(&id), Some(&token), None).await;
        if app["properties"]["latestReadyRevisionName"] == "web--v2" {
            assert_eq!(app["properties"]["configuration"]["ingress"]["targetPort"], 8080);
            assert_eq!(app["properties"]["template"]["containers"][0]["image"], "registry.test/web:v2");
            break;
        }
        assert!(Instant::now() < deadline, "web--v2 never became ready: {app}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, _, list) = arm(&azure, "GET", &azure.arm(&format!("{id}/revisions")), Some(&token), None).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 2);
    let (status, _) = azure.ingress_get(&format!("web.{}", azure.domain()), "/").await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_get_put_round_trip_makes_no_new_revision() {
    let (azure, token) = started_with_token(fast()).await;
    let id = app_id(&azure, "web");
    let mut body = app_body("registry.test/web:v1");
    body["properties"].as_object_mut().map(|p| p.remove("managedEnvironmentId"));
    body["properties"]["configuration"]["secrets"] = json!([{"name": "db", "value": "hunter2"}]);
    azure.seed_container_app(&id, &body).await.unwrap();
    let (_, _, app) = arm(&azure, "GET", &azure.arm(&id), Some(&token), None).await;
    assert!(app["properties"]["managedEnvironmentId"].as_str().unwrap().ends_with("/managedEnvironments/standin"));
    assert_eq!(app["properties"]["template"]["containers"][0]["resources"], json!({"cpu": 0.5, "memory": "1Gi"}));
    assert_eq!(app["properties"]["configuration"]["secrets"], json!([{"name": "db"}]), "secret values are write-only");
    let (status, _, again) = arm(&azure, "PUT", &azure.arm(&id), Some(&token), Some(&app)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["properties"]["latestRevisionName"], "web--v1");
    let (_, _, list) = arm(&azure, "GET", &azure.arm(&format!("{id}/revisions")), Some(&token), None).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
}
