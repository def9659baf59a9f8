//! The ARM client against an in-process fake of Azure Resource Manager and Entra ID: HTTPS on
//! loopback (azure_core's bearer policy refuses plain HTTP, and azure_identity refuses a non-HTTPS
//! authority), with a certificate from a throwaway CA passed as `ca_file`. Each test scripts the
//! answers; the fake records every request. Nothing leaves 127.0.0.1.
//!
//! The last test runs the same client against the Go stand-in of ARM (`crates/testenv`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tidegate_providers::azure::{
    API_VERSION, Arm, AzureConfig, AzureCredentialKind, AzureError, ContainerApps, ResourceId, Revision, TrafficWeight,
};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0c5c9b3a-1111-2222-3333-444455556666";
const SECRET: &str = "fake-secret-value";
const TOKEN: &str = "fake-arm-token";
const APP: &str = "/subscriptions/sub1/resourceGroups/rg/providers/Microsoft.App/containerApps/web";
const JOB: &str = "/subscriptions/sub1/resourceGroups/rg/providers/Microsoft.App/jobs/nightly";

/// One request the fake received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

impl Seen {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// A scripted answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);
type Script = dyn Fn(&Seen, &Fake) -> Answer + Send + Sync;

/// The fake: a token endpoint plus whatever the test scripts for ARM paths.
#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
    base: String,
}

impl Fake {
    fn arm(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").iter().filter(|s| s.path.starts_with("/subscriptions/")).cloned().collect()
    }

    fn tokens(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").iter().filter(|s| s.path.ends_with("/oauth2/v2.0/token")).cloned().collect()
    }

    /// How many ARM requests for `method path` came in so far (the current one included).
    fn count(&self, method: &str, path: &str) -> usize {
        self.seen.lock().expect("lock").iter().filter(|s| s.method == method && s.path == path).count()
    }
}

fn ok(body: Value) -> Answer {
    (200, vec![], body.to_string())
}

async fn handle(State(fake): State<Fake>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
    let seen = Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&body).to_string(),
    };
    fake.seen.lock().expect("lock").push(seen.clone());
    let (status, headers, body) = if seen.path == format!("/{TENANT}/oauth2/v2.0/token") {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(seen.body.as_bytes()).into_owned().collect();
        let has = |k: &str, v: &str| form.iter().any(|(a, b)| a == k && b == v);
        if has("client_id", CLIENT) && has("client_secret", SECRET) && has("grant_type", "client_credentials") {
            ok(json!({"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": TOKEN}))
        } else {
            (
                401,
                vec![],
                json!({"error": "invalid_client", "error_codes": [7000215], "error_description": "bad secret"})
                    .to_string(),
            )
        }
    } else if seen.headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        (401, vec![], json!({"error": {"code": "InvalidAuthenticationToken", "message": "no token"}}).to_string())
    } else {
        (fake.script)(&seen, &fake)
    };
    let mut response =
        Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    response = response
        .header("content-type", "application/json")
        .header("x-ms-request-id", format!("req-{}", fake.seen.lock().expect("lock").len()));
    for (k, v) in headers {
        response = response.header(k, v);
    }
    response.body(Body::from(body)).expect("response")
}

/// A TLS listener for axum: accepts TCP and completes the handshake.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else { continue };
            if let Ok(tls) = self.acceptor.accept(stream).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A running fake, the files the client needs, and the client configuration for it.
struct Env {
    fake: Fake,
    config: AzureConfig,
    _dir: tempfile::TempDir,
}

async fn serve(ca: &tidegate_testenv::pki::Authority, script: Arc<Script>) -> Fake {
    tidegate_providers::ensure_crypto_provider();
    let serving = ca.serving("fake-arm").expect("serving certificate");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(serving.cert_pem.as_bytes()).collect::<Result<_, _>>().expect("test setup");
    let key = PrivateKeyDer::from_pem_slice(serving.key_pem.as_bytes()).expect("test setup");
    let tls = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).expect("test setup");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("test setup");
    let addr = tcp.local_addr().expect("test setup");
    let fake = Fake { seen: Arc::default(), script, base: format!("https://{addr}") };
    let app = axum::Router::new().fallback(handle).with_state(fake.clone());
    let listener = TlsListener { tcp, acceptor: TlsAcceptor::from(Arc::new(tls)) };
    tokio::spawn(async move { axum::serve(listener, app).await });
    fake
}

async fn start(script: impl Fn(&Seen, &Fake) -> Answer + Send + Sync + 'static) -> Env {
    let ca = tidegate_testenv::pki::Authority::generate().expect("test setup");
    let fake = serve(&ca, Arc::new(script)).await;
    let dir = tempfile::tempdir().expect("test setup");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).expect("test setup");
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("test setup");
    let config = AzureConfig {
        credential: AzureCredentialKind::ClientSecret,
        tenant_id: Some(TENANT.into()),
        client_id: Some(CLIENT.into()),
        client_secret_file: Some(secret_file),
        authority_host: fake.base.parse().expect("test setup"),
        resource_manager: fake.base.parse().expect("test setup"),
        ca_file: Some(ca_file),
        requests_per_second: 50.0,
        operation_timeout: Duration::from_secs(20),
        ..AzureConfig::default()
    };
    Env { fake, config, _dir: dir }
}

async fn apps(env: &Env) -> ContainerApps {
    ContainerApps::new(Arc::new(Arm::new(&env.config).await.expect("test setup")))
}

fn app_body(image: &str, state: &str) -> Value {
    json!({
        "id": APP, "name": "web", "type": "Microsoft.App/containerApps", "location": "East US",
        "properties": {
            "provisioningState": state, "runningStatus": "Running",
            "latestRevisionName": "web--v1", "latestReadyRevisionName": "web--v1",
            "configuration": {"activeRevisionsMode": "Multiple",
                "ingress": {"fqdn": "web.example.test", "external": true, "targetPort": 8080,
                    "traffic": [{"revisionName": "web--v1", "weight": 100}]}},
            "template": {"containers": [
                {"name": "web", "image": image, "resources": {"cpu": 0.5, "memory": "1Gi"},
                 "probes": [{"type": "Readiness", "httpGet": {"path": "/ready", "port": 8080}}]},
                {"name": "proxy", "image": "repo/proxy:v3", "env": [{"name": "MODE", "value": "edge"}]}
            ]}
        }
    })
}

fn id(s: &str) -> ResourceId {
    ResourceId::parse(s).expect("test setup")
}

#[tokio::test]
async fn a_client_secret_token_is_fetched_from_the_configured_authority_and_sent_to_arm() {
    let env = start(|seen, _| match seen.path.as_str() {
        APP if seen.method == "GET" => ok(app_body("repo/web:v1", "Succeeded")),
        _ => (404, vec![], String::new()),
    })
    .await;
    let apps = apps(&env).await;
    let app = apps.app(&id(APP)).await.unwrap();
    assert_eq!(app.properties.template.containers[0].image, "repo/web:v1");
    apps.app(&id(APP)).await.unwrap();

    let tokens = env.fake.tokens();
    assert_eq!(tokens.len(), 1, "the token is cached");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(tokens[0].body.as_bytes()).into_owned().collect();
    assert!(form.contains(&("scope".into(), "https://management.azure.com/.default".into())), "{form:?}");
    let arm = env.fake.arm();
    assert_eq!(arm.len(), 2);
    assert_eq!(arm[0].query, format!("api-version={API_VERSION}"));
    let stats = apps.arm().stats();
    assert_eq!(stats["GET containerApps"].requests, 2, "{stats:?}");
}

#[tokio::test]
async fn a_wrong_secret_is_a_credential_error_that_names_the_identity() {
    let env = start(|_, _| ok(json!({}))).await;
    std::fs::write(env.config.client_secret_file.as_ref().unwrap(), "wrong").unwrap();
    let err = apps(&env).await.app(&id(APP)).await.unwrap_err();
    assert!(matches!(err, AzureError::Credential { .. }), "{err}");
    assert!(err.to_string().contains(&format!("client secret for client {CLIENT} in tenant {TENANT}")), "{err}");
    assert!(!err.to_string().contains("wrong"), "the secret never appears: {err}");
    assert!(env.fake.arm().is_empty(), "no ARM request without a token");
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after() {
    let env = start(|_, fake| {
        if fake.count("GET", APP) == 1 {
            (
                429,
                vec![("retry-after", "1".to_string())],
                json!({"error": {"code": "TooManyRequests", "message": "slow down"}}).to_string(),
            )
        } else {
            ok(app_body("repo/web:v1", "Succeeded"))
        }
    })
    .await;
    let apps = apps(&env).await;
    let started = Instant::now();
    apps.app(&id(APP)).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(950), "waited {:?}", started.elapsed());
    assert_eq!(env.fake.arm().len(), 2);
    assert_eq!(apps.arm().stats()["GET containerApps"].throttled, 1);
}

#[tokio::test]
async fn set_image_patches_only_the_image_and_waits_for_the_async_operation() {
    let env = start(|seen, fake| {
        let op = "/subscriptions/sub1/providers/Microsoft.App/locations/eastus/containerappOperationStatuses/op1";
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", APP) if fake.count("PATCH", APP) == 0 => ok(app_body("repo/web:v1", "Succeeded")),
            ("GET", APP) => ok(app_body("repo/web@sha256:abc", "Succeeded")),
            ("PATCH", APP) => (
                202,
                vec![
                    ("azure-asyncoperation", format!("{}{op}?api-version={API_VERSION}", fake.base)),
                    ("retry-after", "0".into()),
                ],
                String::new(),
            ),
            ("GET", p) if p == op && fake.count("GET", op) < 3 => {
                (200, vec![("retry-after", "0".into())], json!({"status": "InProgress"}).to_string())
            }
            ("GET", p) if p == op => ok(json!({"status": "Succeeded"})),
            _ => (404, vec![], String::new()),
        }
    })
    .await;
    let apps = apps(&env).await;
    let traffic = vec![TrafficWeight::revision("web--v1", 100), TrafficWeight::revision("web--abc", 0)];
    let app = apps.set_image(&id(APP), Some("web"), "repo/web@sha256:abc", Some("abc"), Some(traffic)).await.unwrap();
    assert_eq!(app.properties.template.containers[0].image, "repo/web@sha256:abc");

    let arm = env.fake.arm();
    let patch = arm.iter().find(|s| s.method == "PATCH").unwrap();
    assert_eq!(patch.query, format!("api-version={API_VERSION}"));
    assert_eq!(
        patch.json(),
        json!({"properties": {
            "template": {"revisionSuffix": "abc", "containers": [
                {"name": "web", "image": "repo/web@sha256:abc", "resources": {"cpu": 0.5, "memory": "1Gi"},
                 "probes": [{"type": "Readiness", "httpGet": {"path": "/ready", "port": 8080}}]},
                {"name": "proxy", "image": "repo/proxy:v3", "env": [{"name": "MODE", "value": "edge"}]}
            ]},
            "configuration": {"ingress": {"traffic": [
                {"revisionName": "web--v1", "weight": 100}, {"revisionName": "web--abc", "weight": 0}
            ]}}
        }})
    );
    let methods: Vec<String> =
        arm.iter().map(|s| format!("{} {}", s.method, s.path.rsplit('/').next().unwrap())).collect();
    assert_eq!(methods, ["GET web", "PATCH web", "GET op1", "GET op1", "GET op1", "GET web"]);
}

#[tokio::test]
async fn a_failed_operation_is_an_error_with_its_code() {
    let env = start(|seen, fake| {
        let op = "/subscriptions/sub1/providers/Microsoft.App/locations/eastus/containerappOperationStatuses/op2";
        match (seen.method.as_str(), seen.path.as_str()) {
            ("PATCH", APP) => (
                202,
                vec![("azure-asyncoperation", format!("{}{op}", fake.base)), ("retry-after", "0".into())],
                String::new(),
            ),
            ("GET", p) if p == op => ok(json!({"status": "Failed", "error": {
                "code": "ContainerAppProvisioningFailed", "message": "image pull failed: manifest unknown"}})),
            _ => (404, vec![], String::new()),
        }
    })
    .await;
    let apps = apps(&env).await;
    let err = apps.set_traffic(&id(APP), vec![TrafficWeight::revision("web--v1", 100)]).await.unwrap_err();
    let arm = err.arm().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(arm.code, "ContainerAppProvisioningFailed");
    assert_eq!(arm.operation_status.as_deref(), Some("Failed"));
    assert!(err.to_string().contains("image pull failed"), "{err}");
    let op = env.fake.arm().into_iter().find(|s| s.path.ends_with("/op2")).unwrap();
    assert_eq!(op.query, format!("api-version={API_VERSION}"), "api-version is added to an operation URL without one");
}

#[tokio::test]
async fn a_job_update_waits_on_location_and_start_returns_the_execution() {
    let env = start(|seen, fake| {
        let result = "/subscriptions/sub1/providers/Microsoft.App/locations/eastus/containerappsjobOperationResults/r1";
        let start = "/subscriptions/sub1/providers/Microsoft.App/locations/eastus/jobStartResults/s1";
        let job = |image: &str| {
            json!({"id": JOB, "name": "nightly", "properties": {"provisioningState": "Succeeded",
                "configuration": {"triggerType": "Manual", "replicaTimeout": 10},
                "template": {"containers": [{"name": "main", "image": image, "command": ["/run"]}]}}})
        };
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", JOB) if fake.count("PATCH", JOB) == 0 => ok(job("repo/job:v1")),
            ("GET", JOB) => ok(job("repo/job@sha256:def")),
            ("PATCH", JOB) => {
                (202, vec![("location", format!("{}{result}", fake.base)), ("retry-after", "0".into())], String::new())
            }
            ("GET", p) if p == result && fake.count("GET", result) == 1 => {
                (202, vec![("retry-after", "0".into())], String::new())
            }
            ("GET", p) if p == result => (204, vec![], String::new()),
            ("POST", p) if p == format!("{JOB}/start") => {
                (202, vec![("location", format!("{}{start}", fake.base)), ("retry-after", "0".into())], String::new())
            }
            ("GET", p) if p == start => {
                ok(json!({"name": "nightly-x1y2z3", "id": format!("{JOB}/executions/nightly-x1y2z3")}))
            }
            _ => (404, vec![], String::new()),
        }
    })
    .await;
    let apps = apps(&env).await;
    let job = apps.set_job_image(&id(JOB), None, "repo/job@sha256:def").await.unwrap();
    assert_eq!(job.properties.template.containers[0].image, "repo/job@sha256:def");
    let patch = env.fake.arm().into_iter().find(|s| s.method == "PATCH").unwrap();
    assert_eq!(
        patch.json(),
        json!({"properties": {"template": {"containers": [{"name": "main", "image": "repo/job@sha256:def", "command": ["/run"]}]}}})
    );
    assert_eq!(apps.start_job(&id(JOB)).await.unwrap(), "nightly-x1y2z3");
    assert_eq!(apps.execution(&id(JOB), "gone").await.unwrap(), None);
}

fn revision(name: &str) -> Value {
    json!({"name": name, "properties": {"active": true, "provisioningState": "Provisioned", "healthState": "Healthy",
        "runningState": "Running", "replicas": 1, "trafficWeight": 0, "template": {"containers": [{"name": "web", "image": "x"}]}}})
}

#[tokio::test]
async fn lists_follow_next_links_on_the_same_host() {
    let env = start(|seen, fake| {
        let list = format!("{APP}/revisions");
        if seen.path != list {
            return (
                404,
                vec![],
                json!({"error": {"code": "ContainerAppRevisionNotFound", "message": "no such revision"}}).to_string(),
            );
        }
        if seen.query.contains("skiptoken=2") {
            ok(json!({"value": [revision("web--c")]}))
        } else {
            ok(json!({"value": [revision("web--a"), revision("web--b")],
                "nextLink": format!("{}{list}?api-version={API_VERSION}&$skiptoken=2", fake.base)}))
        }
    })
    .await;
    let apps = apps(&env).await;
    let revisions: Vec<Revision> = apps.revisions(&id(APP)).await.unwrap();
    let names: Vec<&str> = revisions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["web--a", "web--b", "web--c"]);
    assert!(revisions.iter().all(Revision::is_ready));
    assert_eq!(apps.revision(&id(APP), "web--zz").await.unwrap(), None, "404 is None");
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused_and_never_requested() {
    let ca = tidegate_testenv::pki::Authority::generate().unwrap();
    let elsewhere = serve(&ca, Arc::new(|_: &Seen, _: &Fake| ok(json!({"value": []})))).await;
    let other = elsewhere.base.clone();
    let env = start(move |_, _| {
        ok(json!({"value": [revision("web--a")], "nextLink": format!("{other}{APP}/revisions?$skiptoken=2")}))
    })
    .await;
    let err = apps(&env).await.revisions(&id(APP)).await.unwrap_err();
    assert!(matches!(err, AzureError::Refused(_)), "{err}");
    assert!(err.to_string().contains("not at the configured resource manager"), "{err}");
    assert!(elsewhere.seen.lock().expect("lock").is_empty(), "nothing was sent to the other host");
}

#[tokio::test]
async fn arm_errors_say_what_was_refused() {
    let env = start(|seen, _| match seen.method.as_str() {
        "POST" if seen.path.ends_with("/deactivate") => (500, vec![], String::new()),
        "POST" => (
            409,
            vec![],
            json!({"error": {"code": "ContainerAppOperationInProgress",
            "message": "Cannot modify a container app because there is a pending operation.", "target": "web"}})
            .to_string(),
        ),
        _ => (502, vec![], "<html>bad gateway</html>".into()),
    })
    .await;
    let mut config = env.config.clone();
    config.max_retries = 1;
    let apps = ContainerApps::new(Arc::new(Arm::new(&config).await.unwrap()));
    let err = apps.activate(&id(APP), "web--v2").await.unwrap_err();
    assert!(err.arm().unwrap().is_conflict() && err.is_transient());
    assert!(
        err.to_string().starts_with(&format!(
            "Azure refused POST {APP}/revisions/web--v2/activate (409 ContainerAppOperationInProgress): Cannot modify"
        )),
        "{err}"
    );
    assert!(err.to_string().contains("[target web] (request id req-"), "{err}");
    let err = apps.app(&id(APP)).await.unwrap_err();
    assert_eq!(err.arm().unwrap().code, "HttpStatus502");
    assert_eq!(env.fake.arm().iter().filter(|s| s.method == "GET").count(), 2, "one retry");
    let err = apps.deactivate(&id(APP), "web--v1").await.unwrap_err();
    assert_eq!(err.arm().unwrap().status, 500);
    assert_eq!(
        env.fake.arm().iter().filter(|s| s.method == "POST" && s.path.ends_with("/deactivate")).count(),
        1,
        "an action that may have started is not sent again"
    );
}

#[tokio::test]
async fn invalid_paths_never_leave_the_process() {
    let env = start(|_, _| ok(json!({}))).await;
    let apps = apps(&env).await;
    let err = apps.revision(&id(APP), "../../other").await.unwrap_err();
    assert!(matches!(err, AzureError::Refused(_)), "{err}");
    let err = apps.arm().get::<Value>("/subscriptions/s/../x").await.unwrap_err();
    assert!(matches!(err, AzureError::Refused(_)), "{err}");
    assert!(env.fake.seen.lock().expect("lock").is_empty());
}

/// The same client against the Go stand-in of ARM, whose request models are Microsoft's SDK
/// models (unknown fields rejected).
#[tokio::test]
async fn against_the_arm_stand_in() {
    use tidegate_testenv::azure::AzureStandIn;
    let azure = AzureStandIn::start().await.unwrap();
    azure.add_client_secret(CLIENT, SECRET).await.unwrap();
    let app = format!(
        "/subscriptions/{}/resourceGroups/rg/providers/Microsoft.App/containerApps/web",
        azure.subscription_id()
    );
    azure
        .seed_container_app(&app, &json!({"location": "East US", "properties": {
            "managedEnvironmentId": format!("/subscriptions/{}/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/env", azure.subscription_id()),
            "configuration": {"activeRevisionsMode": "Multiple", "ingress": {"external": true, "targetPort": 8080}},
            "template": {"containers": [{"name": "web", "image": "registry.test/web@sha256:aaaa",
                "resources": {"cpu": 0.5, "memory": "1Gi"}}]}}}))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret_file: PathBuf = dir.path().join("secret");
    std::fs::write(&secret_file, SECRET).unwrap();
    let config = AzureConfig {
        credential: AzureCredentialKind::ClientSecret,
        tenant_id: Some(azure.tenant_id().to_string()),
        client_id: Some(CLIENT.into()),
        client_secret_file: Some(secret_file),
        authority_host: azure.authority_host().parse().unwrap(),
        resource_manager: azure.arm_url().parse().unwrap(),
        ca_file: Some(azure.ca_file().to_path_buf()),
        operation_timeout: Duration::from_secs(60),
        ..AzureConfig::default()
    };
    let apps = ContainerApps::new(Arc::new(Arm::new(&config).await.unwrap()));
    let id = id(&app);
    let before = apps.app(&id).await.unwrap();
    let old = before.properties.latest_revision_name.clone().unwrap();
    let digest = "registry.test/web@sha256:bbbb";
    let after = apps.set_image(&id, Some("web"), digest, Some("bbbb"), None).await.unwrap();
    assert_eq!(after.properties.template.containers[0].image, digest);
    assert_eq!(after.properties.template.containers[0].rest["resources"], json!({"cpu": 0.5, "memory": "1Gi"}));
    let new = after.properties.latest_revision_name.clone().unwrap();
    assert!(new.ends_with("--bbbb"), "{new}");
    let revisions = apps.revisions(&id).await.unwrap();
    assert!(revisions.iter().any(|r| r.name == new) && revisions.iter().any(|r| r.name == old), "{revisions:?}");

    let traffic = vec![TrafficWeight::revision(&old, 50), TrafficWeight::revision(&new, 50)];
    let switched = apps.set_traffic(&id, traffic.clone()).await.unwrap();
    let weights = switched.properties.configuration.ingress.unwrap().traffic;
    assert_eq!(weights, traffic);
    assert_eq!(apps.revision(&id, "web--nope").await.unwrap(), None);
}
