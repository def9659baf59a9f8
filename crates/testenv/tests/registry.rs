//! The loopback registries against the real servers: the CNCF distribution registry (anonymous,
//! basic, token auth), `ocireg` (referrers API), and the real `crane` and `notation` binaries.
//!
//! Needs the supply-chain tools: `cargo xtask tools` builds them.

use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};
use tidegate_testenv::registry::{
    Credentials, Registry, RegistryAuth, RegistryKind, RegistryOptions, TOKEN_SERVICE, TestImage, fetch_token, send,
};
use tidegate_testenv::tools::{NOTATION_VERSION, SupplyChainTools};

const SIGNATURE_TYPE: &str = "application/vnd.cncf.notary.signature";

async fn start(kind: RegistryKind, auth: RegistryAuth) -> Registry {
    match Registry::start(RegistryOptions { kind, auth }).await {
        Ok(registry) => registry,
        Err(e) => panic!("starting the {kind:?} registry: {e}"),
    }
}

async fn get_v2(registry: &Registry, authorization: Option<&str>) -> tidegate_testenv::registry::Response {
    let headers: Vec<(&str, &str)> = authorization.iter().map(|a| ("authorization", *a)).collect();
    send(Method::GET, &format!("{}/v2/", registry.url()), &headers, Vec::new()).await.expect("GET /v2/")
}

#[tokio::test]
async fn anonymous_registries_answer_v2() {
    for kind in [RegistryKind::Distribution, RegistryKind::Referrers] {
        let registry = start(kind, RegistryAuth::Anonymous).await;
        assert!(registry.host().starts_with("127.0.0.1:"), "{}", registry.host());
        assert_eq!(registry.url(), format!("http://{}", registry.host()));
        let response = get_v2(&registry, None).await;
        assert_eq!(response.status, StatusCode::OK, "{kind:?}: {}", response.text());
        assert_eq!(response.header("docker-distribution-api-version"), Some("registry/2.0"), "{kind:?}");
        assert!(registry.credentials().is_none());
    }
}

#[tokio::test]
async fn basic_auth_accepts_the_right_password_only() {
    let registry = start(RegistryKind::Distribution, RegistryAuth::basic("alice", "s3cret")).await;
    let credentials = registry.credentials().expect("credentials");
    assert_eq!(credentials, Credentials::new("alice", "s3cret"));

    let anonymous = get_v2(&registry, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let challenge = anonymous.challenge().expect("WWW-Authenticate");
    assert_eq!(challenge.scheme, "Basic");
    assert_eq!(challenge.params.get("realm").map(String::as_str), Some("tidegate-testenv"));

    let right = get_v2(&registry, Some(&credentials.basic_header())).await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.text());
    let wrong = get_v2(&registry, Some(&Credentials::new("alice", "wrong").basic_header())).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let stranger = get_v2(&registry, Some(&Credentials::new("mallory", "s3cret").basic_header())).await;
    assert_eq!(stranger.status, StatusCode::UNAUTHORIZED);

    // The push helper sends the basic credentials.
    let digest = registry.push_test_image("team/app", "v1", &[512], &[]).await.expect("push with basic auth");
    let head = registry.client().manifest_digest("team/app", "v1").await.expect("HEAD");
    assert_eq!(head.as_deref(), Some(digest.as_str()));
}

#[tokio::test]
async fn token_flow_challenge_token_authorized_request() {
    let registry = start(RegistryKind::Distribution, RegistryAuth::token("bob", "hunter2")).await;
    let server = registry.token_server().expect("token server");

    // Challenge.
    let anonymous = get_v2(&registry, None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let challenge = anonymous.challenge().expect("WWW-Authenticate");
    assert_eq!(challenge.scheme, "Bearer");
    assert_eq!(challenge.params.get("realm"), Some(&server.realm()));
    assert_eq!(challenge.params.get("service").map(String::as_str), Some(TOKEN_SERVICE));

    // A wrong password (or none) gets no token.
    let refused = fetch_token(&challenge, Some(&Credentials::new("bob", "wrong"))).await;
    assert!(refused.is_err(), "a wrong password got a token");
    let url = challenge.token_url().expect("token url");
    let response = send(Method::GET, &url, &[], Vec::new()).await.expect("token request");
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(server.issued(), 0);

    // The right one does, and the registry accepts it.
    let token = fetch_token(&challenge, registry.credentials().as_ref()).await.expect("token");
    let authorized = get_v2(&registry, Some(&format!("Bearer {token}"))).await;
    assert_eq!(authorized.status, StatusCode::OK, "{}", authorized.text());
    assert_eq!(server.issued(), 1);

    // A token signed for another key is refused by the registry.
    let forged =
        tidegate_testenv::registry::TokenServer::start(Credentials::new("bob", "hunter2")).expect("other server");
    let forged_token = forged.sign("bob", &[]).expect("sign");
    let rejected = get_v2(&registry, Some(&format!("Bearer {forged_token}"))).await;
    assert_eq!(rejected.status, StatusCode::UNAUTHORIZED);

    // Repository scopes: a push goes through the challenge for `repository:team/app:pull,push`.
    let manifest = format!("/v2/team/app/manifests/{}", "v1");
    let scoped = send(Method::HEAD, &format!("{}{manifest}", registry.url()), &[], Vec::new()).await.expect("HEAD");
    let scope = scoped.challenge().and_then(|c| c.params.get("scope").cloned());
    assert_eq!(scope.as_deref(), Some("repository:team/app:pull"));
    let digest = registry.push_test_image("team/app", "v1", &[256, 1024], &[]).await.expect("push with a token");
    let head = registry.client().manifest_digest("team/app", "v1").await.expect("HEAD with a token");
    assert_eq!(head.as_deref(), Some(digest.as_str()));
    // A token for team/app does not open other/repo.
    let body = send(
        Method::GET,
        &format!("{url}&scope=repository%3Ateam%2Fapp%3Apull"),
        &[("authorization", &Credentials::new("bob", "hunter2").basic_header())],
        Vec::new(),
    )
    .await
    .expect("scoped token")
    .json()
    .expect("token json");
    let app_token = body["token"].as_str().expect("token").to_string();
    assert_eq!(body["expires_in"], 300);
    let other = send(
        Method::HEAD,
        &format!("{}/v2/other/repo/manifests/v1", registry.url()),
        &[("authorization", &format!("Bearer {app_token}"))],
        Vec::new(),
    )
    .await
    .expect("HEAD other");
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    assert!(other.header("www-authenticate").unwrap_or_default().contains("insufficient_scope"));
}

/// A docker config directory with the registry's credentials, for `crane` (`DOCKER_CONFIG`).
fn docker_config(registry: &Registry) -> tempfile::TempDir {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut auths = serde_json::Map::new();
    if let Some(c) = registry.credentials() {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
        auths.insert(registry.host().to_string(), serde_json::json!({ "auth": auth }));
    }
    let config = serde_json::json!({ "auths": auths }).to_string();
    std::fs::write(dir.path().join("config.json"), config).expect("write config.json");
    dir
}

#[tokio::test]
async fn pushed_images_are_found_by_head_and_crane() {
    let tools = SupplyChainTools::locate().expect("supply-chain tools");
    for (kind, auth) in [
        (RegistryKind::Distribution, RegistryAuth::Anonymous),
        (RegistryKind::Referrers, RegistryAuth::Anonymous),
        (RegistryKind::Distribution, RegistryAuth::basic("alice", "pw")),
        (RegistryKind::Distribution, RegistryAuth::token("bob", "pw")),
    ] {
        let registry = start(kind, auth.clone()).await;
        let kind = (kind, auth);
        let client = registry.client();
        let annotations = [("org.opencontainers.image.base.name", "example/base:1"), ("tidegate.dev/test", "yes")];
        let digest = registry.push_test_image("team/app", "v1", &[1024, 64 * 1024], &annotations).await.expect("push");
        assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");

        let path = format!("/v2/team/app/manifests/{digest}");
        let accept = [("accept", "application/vnd.oci.image.manifest.v1+json")];
        let head = client.send(Method::HEAD, &path, &accept, Vec::new()).await.expect("HEAD");
        assert_eq!(head.status, StatusCode::OK, "{kind:?}");
        assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()), "{kind:?}");
        let by_tag = client.manifest_digest("team/app", "v1").await.expect("HEAD tag");
        assert_eq!(by_tag.as_deref(), Some(digest.as_str()), "{kind:?}");
        let manifest =
            client.send(Method::GET, &path, &accept, Vec::new()).await.expect("GET").json().expect("manifest");
        assert_eq!(manifest["annotations"]["tidegate.dev/test"], "yes");
        assert_eq!(manifest["layers"].as_array().map(Vec::len), Some(2));
        assert_eq!(manifest["layers"][1]["size"], 64 * 1024);

        // crane authenticates on its own (basic, or the token flow) with a docker config.
        let docker = docker_config(&registry);
        let output = Command::new(tools.crane())
            .args(["digest", "--insecure", &format!("{}/team/app:v1", registry.host())])
            .env("DOCKER_CONFIG", docker.path())
            .output()
            .expect("run crane");
        assert!(output.status.success(), "crane: {}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), digest, "{kind:?}");
    }
}

#[tokio::test]
async fn referrers_registry_lists_artifacts_by_subject() {
    let registry = start(RegistryKind::Referrers, RegistryAuth::Anonymous).await;
    let client = registry.client();
    let image = client.push_image("team/app", &TestImage::new(&[2048]).tag("v1")).await.expect("push image");

    // No referrers yet: an empty index, not 404 (also for an unknown repository).
    let referrers = |repo: &str, digest: &str| format!("{}/v2/{repo}/referrers/{digest}", registry.url());
    for repo in ["team/app", "nobody/here"] {
        let empty = send(Method::GET, &referrers(repo, &image.digest), &[], Vec::new()).await.expect("referrers");
        assert_eq!(empty.status, StatusCode::OK, "{repo}");
        assert_eq!(empty.json().expect("index")["manifests"], serde_json::json!([]));
    }

    // A signature-like artifact with the image as subject.
    let signature = TestImage::artifact(SIGNATURE_TYPE, image.descriptor.clone(), 300)
        .annotations(&[("io.cncf.notary.x509chain.thumbprint#S256", "[\"abc\"]")]);
    let pushed = client.push_image("team/app", &signature).await.expect("push artifact");
    // The push answered with OCI-Subject (checked by pushing the same manifest again by hand).
    let again = client
        .send(
            Method::PUT,
            &format!("/v2/team/app/manifests/{}", pushed.digest),
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            pushed.manifest.clone(),
        )
        .await
        .expect("re-push");
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header("oci-subject"), Some(image.digest.as_str()));

    let response = send(Method::GET, &referrers("team/app", &image.digest), &[], Vec::new()).await.expect("referrers");
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("application/vnd.oci.image.index.v1+json"));
    let index = response.json().expect("index");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(manifests[0]["digest"], pushed.digest.as_str());
    assert_eq!(manifests[0]["artifactType"], SIGNATURE_TYPE);
    assert_eq!(manifests[0]["size"], pushed.manifest.len());
    assert_eq!(manifests[0]["annotations"]["io.cncf.notary.x509chain.thumbprint#S256"], "[\"abc\"]");

    // The artifactType filter, and the header that says it was applied.
    let other = send(
        Method::GET,
        &format!("{}?artifactType=application%2Fx-other", referrers("team/app", &image.digest)),
        &[],
        Vec::new(),
    )
    .await
    .expect("filtered");
    assert_eq!(other.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(other.json().expect("index")["manifests"], serde_json::json!([]));
    let filtered = send(
        Method::GET,
        &format!("{}?artifactType=application%2Fvnd.cncf.notary.signature", referrers("team/app", &image.digest)),
        &[],
        Vec::new(),
    )
    .await
    .expect("filtered");
    assert_eq!(filtered.json().expect("index")["manifests"].as_array().map(Vec::len), Some(1));

    // Deleting the artifact removes it from the index; a bad digest is a 400.
    let deleted = client
        .send(Method::DELETE, &format!("/v2/team/app/manifests/{}", pushed.digest), &[], Vec::new())
        .await
        .expect("delete");
    assert_eq!(deleted.status, StatusCode::ACCEPTED);
    let after = send(Method::GET, &referrers("team/app", &image.digest), &[], Vec::new()).await.expect("referrers");
    assert_eq!(after.json().expect("index")["manifests"], serde_json::json!([]));
    let bad = send(Method::GET, &referrers("team/app", "latest"), &[], Vec::new()).await.expect("bad digest");
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn distribution_accepts_artifacts_with_a_subject_but_has_no_referrers_api() {
    // Clients fall back to the referrers tag schema against it; make sure the manifests go in.
    let registry = start(RegistryKind::Distribution, RegistryAuth::Anonymous).await;
    let client = registry.client();
    let image = client.push_image("team/app", &TestImage::new(&[128]).tag("v1")).await.expect("push image");
    let artifact = TestImage::artifact(SIGNATURE_TYPE, image.descriptor.clone(), 100);
    let pushed = client.push_image("team/app", &artifact).await.expect("push artifact");
    assert_eq!(
        client.manifest_digest("team/app", &pushed.digest).await.expect("HEAD").as_deref(),
        Some(pushed.digest.as_str())
    );
    let referrers =
        send(Method::GET, &format!("{}/v2/team/app/referrers/{}", registry.url(), image.digest), &[], Vec::new())
            .await
            .expect("referrers");
    assert_eq!(referrers.status, StatusCode::NOT_FOUND);
}

#[test]
fn notation_version_runs() {
    let tools = SupplyChainTools::locate().expect("supply-chain tools");
    let config = tempfile::tempdir().expect("tempdir");
    let output = Command::new(tools.notation())
        .arg("version")
        .env("XDG_CONFIG_HOME", config.path())
        .output()
        .expect("run notation");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "notation version: {}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(&format!("Version:     {NOTATION_VERSION}")), "{stdout}");
    let crane = Command::new(tools.crane()).arg("version").output().expect("run crane");
    assert!(String::from_utf8_lossy(&crane.stdout).contains("v0."), "crane version");
}

/// Runs `notation` with its configuration (keys, trust store, policy) in `home`.
fn notation(tools: &SupplyChainTools, home: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(tools.notation())
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .output()
        .expect("run notation");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "notation {}: {text}", args.join(" "));
    text
}

#[tokio::test]
async fn notation_signs_into_the_referrers_api_and_verifies() {
    let tools = SupplyChainTools::locate().expect("supply-chain tools");
    let registry = start(RegistryKind::Referrers, RegistryAuth::Anonymous).await;
    let image = registry.client().push_image("team/app", &TestImage::new(&[1024]).tag("v1")).await.expect("push");
    let reference = format!("{}/team/app@{}", registry.host(), image.digest);
    let home = tempfile::tempdir().expect("tempdir");
    let home = home.path();

    notation(&tools, home, &["cert", "generate-test", "--default", "tidegate-test"]);
    // Without --force-referrers-tag=false notation 1.x writes the referrers tag instead.
    let signed = notation(&tools, home, &["sign", "--insecure-registry", "--force-referrers-tag=false", &reference]);
    assert!(signed.contains("Successfully signed"), "{signed}");

    let index =
        send(Method::GET, &format!("{}/v2/team/app/referrers/{}", registry.url(), image.digest), &[], Vec::new())
            .await
            .expect("referrers")
            .json()
            .expect("index");
    assert_eq!(index["manifests"].as_array().map(Vec::len), Some(1), "{index}");
    assert_eq!(index["manifests"][0]["artifactType"], SIGNATURE_TYPE);
    let tag = registry.client().manifest_digest("team/app", &image.digest.replace(':', "-")).await.expect("HEAD");
    assert_eq!(tag, None, "notation fell back to the referrers tag schema");

    let policy = home.join("policy.json");
    std::fs::write(
        &policy,
        r#"{"version": "1.0", "trustPolicies": [{"name": "test", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"}, "trustStores": ["ca:tidegate-test"],
            "trustedIdentities": ["*"]}]}"#,
    )
    .expect("policy");
    notation(&tools, home, &["policy", "import", "--force", &policy.display().to_string()]);
    let verified = notation(&tools, home, &["verify", "--insecure-registry", &reference]);
    assert!(verified.contains("Successfully verified"), "{verified}");
}

#[tokio::test]
async fn drop_stops_the_processes_and_removes_the_directory() {
    for (kind, auth) in [
        (RegistryKind::Distribution, RegistryAuth::token("carol", "pw")),
        (RegistryKind::Referrers, RegistryAuth::Anonymous),
    ] {
        let registry = start(kind, auth).await;
        registry.push_test_image("team/app", "v1", &[100], &[]).await.expect("push");
        let pid = registry.pid();
        let dir = registry.dir().to_path_buf();
        let url = registry.url();
        let token_addr = registry.token_server().map(|s| s.addr());
        assert!(
            dir.join(format!("{}.log", if kind == RegistryKind::Distribution { "registry" } else { "ocireg" }))
                .is_file()
        );
        drop(registry);
        assert!(!dir.exists(), "{kind:?}: {} is still there", dir.display());
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "{kind:?}: process {pid} still runs");
        assert!(send(Method::GET, &format!("{url}/v2/"), &[], Vec::new()).await.is_err(), "{kind:?} still answers");
        if let Some(addr) = token_addr {
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert!(std::net::TcpStream::connect(addr).is_err(), "the token server still listens");
        }
    }
}
