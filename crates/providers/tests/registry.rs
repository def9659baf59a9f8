//! The registry client and the native rebase against real registries on loopback: the CNCF
//! distribution registry (anonymous, Basic, bearer token) and an OCI 1.1 registry with the
//! referrers API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;
use tidegate_providers::rebase::{BASE_DIGEST, BASE_NAME, RebaseError, RebaseRequest, rebase};
use tidegate_providers::registry::types::{Descriptor, ImageManifest, OCI_CONFIG, OCI_MANIFEST};
use tidegate_providers::registry::{ClientOptions, Credentials, RegistryClient, RegistryError, Repository, sha256};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions, pseudo_random_bytes};

const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

async fn registry(kind: RegistryKind, auth: RegistryAuth) -> Registry {
    Registry::start(RegistryOptions { kind, auth }).await.expect("registry starts")
}

fn client(registry: &Registry, credentials: Option<Credentials>) -> RegistryClient {
    // The registry (and its token server) speak plain HTTP on loopback: named, never implied.
    let mut options =
        ClientOptions { plain_http: registry.plain_http_hosts().into_iter().collect(), ..Default::default() };
    if let Some(c) = credentials {
        options.credentials.insert(registry.host().to_string(), c);
    }
    RegistryClient::new(options).expect("client")
}

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic { username: user.into(), password: password.into() }
}

/// Pushes an image whose layers are `layers` (uncompressed, so diff_id = digest), with config
/// `history` entries one per layer, and `annotations`. Returns the manifest digest.
async fn push_image(
    client: &RegistryClient,
    repo: &Repository,
    tag: &str,
    layers: &[Vec<u8>],
    annotations: BTreeMap<String, String>,
) -> (String, Vec<String>) {
    let mut descriptors = Vec::new();
    for bytes in layers {
        let digest = client.push_blob(repo, bytes).await.expect("push layer");
        descriptors.push(Descriptor {
            media_type: LAYER.into(),
            digest,
            size: bytes.len() as u64,
            artifact_type: None,
            annotations: None,
            platform: None,
        });
    }
    let diff_ids: Vec<String> = descriptors.iter().map(|d| d.digest.clone()).collect();
    let history: Vec<serde_json::Value> =
        diff_ids.iter().map(|d| json!({"created_by": format!("ADD {}", &d[7..19])})).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history
    }))
    .expect("config");
    let config_digest = client.push_blob(repo, &config).await.expect("push config");
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: None,
        config: Descriptor {
            media_type: OCI_CONFIG.into(),
            digest: config_digest,
            size: config.len() as u64,
            artifact_type: None,
            annotations: None,
            platform: None,
        },
        layers: descriptors,
        subject: None,
        annotations: (!annotations.is_empty()).then_some(annotations),
    };
    let bytes = serde_json::to_vec(&manifest).expect("manifest");
    let (digest, _) = client.put_manifest(repo, tag, OCI_MANIFEST, &bytes).await.expect("push manifest");
    (digest, diff_ids)
}

#[tokio::test]
async fn manifests_blobs_tags_and_mounts_on_the_distribution_registry() {
    let registry = registry(RegistryKind::Distribution, RegistryAuth::Anonymous).await;
    let client = client(&registry, None);
    let repo = Repository::new(registry.host(), "shop/app");
    let (digest, _) = push_image(&client, &repo, "v1", &[pseudo_random_bytes("a", 2048)], BTreeMap::new()).await;

    let head = client.head_manifest(&repo, "v1").await.expect("HEAD").expect("exists");
    assert_eq!(head.digest, digest, "HEAD reports the digest without pulling");
    let fetched = client.get_manifest(&repo, &digest).await.expect("GET by digest");
    assert_eq!(fetched.digest, digest);
    assert_eq!(client.head_manifest(&repo, "missing").await.expect("HEAD"), None);

    // 150 tags: the list comes in pages of 100, linked.
    for i in 0..150 {
        client.put_manifest(&repo, &format!("t{i:03}"), OCI_MANIFEST, &fetched.bytes).await.expect("tag");
    }
    let tags = client.tags(&repo).await.expect("tags");
    assert_eq!(tags.len(), 151, "every tag across pages");

    // Cross-repository mount instead of a copy.
    let other = Repository::new(registry.host(), "shop/other");
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes).expect("manifest");
    assert!(client.mount_blob(&other, "shop/app", &manifest.layers[0].digest).await.expect("mount"));
    assert!(client.blob_exists(&other, &manifest.layers[0].digest).await.expect("HEAD blob"));
    assert_eq!(client.get_blob(&other, &manifest.layers[0].digest).await.expect("blob").len(), 2048);

    // Clear errors.
    match client.tags(&Repository::new(registry.host(), "nobody/here")).await {
        Err(RegistryError::UnknownRepository { repository }) => assert!(repository.ends_with("nobody/here")),
        other => panic!("expected UnknownRepository, got {other:?}"),
    }
    match client.get_manifest(&repo, "sha256:0000000000000000000000000000000000000000000000000000000000000000").await {
        Err(RegistryError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn basic_auth_is_answered_and_wrong_credentials_are_denied() {
    let registry = registry(RegistryKind::Distribution, RegistryAuth::basic("ci", "s3cret")).await;
    let good = client(&registry, Some(basic("ci", "s3cret")));
    let repo = Repository::new(registry.host(), "shop/app");
    let (digest, _) = push_image(&good, &repo, "v1", &[pseudo_random_bytes("b", 512)], BTreeMap::new()).await;
    assert_eq!(good.head_manifest(&repo, "v1").await.expect("HEAD").map(|d| d.digest), Some(digest));
    for bad in [client(&registry, Some(basic("ci", "wrong"))), client(&registry, None)] {
        match bad.head_manifest(&repo, "v1").await {
            Err(RegistryError::Denied { .. }) => {}
            other => panic!("expected Denied, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bearer_token_flow_is_followed_and_tokens_are_reused() {
    let registry = registry(RegistryKind::Distribution, RegistryAuth::token("robot", "t0ken")).await;
    let good = client(&registry, Some(basic("robot", "t0ken")));
    let repo = Repository::new(registry.host(), "shop/app");
    let (digest, _) = push_image(&good, &repo, "v1", &[pseudo_random_bytes("c", 512)], BTreeMap::new()).await;
    let before = good.request_count(registry.host());
    for _ in 0..5 {
        assert_eq!(
            good.head_manifest(&repo, "v1").await.expect("HEAD").map(|d| d.digest.clone()),
            Some(digest.clone())
        );
    }
    let spent = good.request_count(registry.host()) - before;
    assert!(spent <= 7, "the pull token is fetched once and reused: {spent} requests for 5 HEADs");
    match client(&registry, Some(basic("robot", "wrong"))).head_manifest(&repo, "v1").await {
        Err(RegistryError::Denied { message, .. }) => assert!(message.contains("token endpoint"), "{message}"),
        other => panic!("expected Denied, got {other:?}"),
    }
}

#[tokio::test]
async fn referrers_use_the_api_or_the_tag_schema_fallback() {
    for kind in [RegistryKind::Referrers, RegistryKind::Distribution] {
        let registry = registry(kind, RegistryAuth::Anonymous).await;
        let client = client(&registry, None);
        let repo = Repository::new(registry.host(), "shop/app");
        let (subject, _) = push_image(&client, &repo, "v1", &[pseudo_random_bytes("d", 256)], BTreeMap::new()).await;
        let head = client.head_manifest(&repo, &subject).await.expect("HEAD").expect("subject");
        let empty = client.push_blob(&repo, b"{}").await.expect("empty config");
        let envelope = client.push_blob(&repo, b"signature bytes").await.expect("envelope");
        let artifact = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": "application/vnd.cncf.notary.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/jose+json", "digest": envelope, "size": 15}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": head.size}
        });
        let bytes = serde_json::to_vec(&artifact).expect("artifact");
        let descriptor = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: sha256(&bytes),
            size: bytes.len() as u64,
            artifact_type: Some("application/vnd.cncf.notary.signature".into()),
            annotations: None,
            platform: None,
        };
        let pushed =
            client.push_referrer(&repo, OCI_MANIFEST, &bytes, &subject, descriptor).await.expect("push referrer");
        let found =
            client.referrers(&repo, &subject, Some("application/vnd.cncf.notary.signature")).await.expect("referrers");
        assert_eq!(found.iter().map(|d| d.digest.clone()).collect::<Vec<_>>(), [pushed], "{kind:?}");
        assert!(client.referrers(&repo, &subject, Some("application/spdx+json")).await.expect("filtered").is_empty());
        let fallback =
            client.head_manifest(&repo, &tidegate_providers::registry::fallback_tag(&subject)).await.expect("HEAD");
        assert_eq!(
            fallback.is_some(),
            kind == RegistryKind::Distribution,
            "the fallback tag is written only without the API ({kind:?})"
        );
        // A registry without the API is not asked for it again meanwhile: one request per look.
        let before = client.request_count(registry.host());
        let again =
            client.referrers(&repo, &subject, Some("application/vnd.cncf.notary.signature")).await.expect("referrers");
        assert_eq!(again.len(), 1, "{kind:?}");
        assert_eq!(client.request_count(registry.host()) - before, 1, "{kind:?}: the API, or the fallback tag only");
    }
}

#[tokio::test]
async fn the_request_budget_paces_a_burst() {
    let registry = registry(RegistryKind::Distribution, RegistryAuth::Anonymous).await;
    let client = RegistryClient::new(ClientOptions {
        requests_per_second: 4.0,
        plain_http: registry.plain_http_hosts().into_iter().collect(),
        ..Default::default()
    })
    .expect("client");
    let repo = Repository::new(registry.host(), "shop/app");
    let started = Instant::now();
    for _ in 0..12 {
        let _ = client.head_manifest(&repo, "v1").await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "12 requests at 4/s (burst 4) need 2 s: {:?}",
        started.elapsed()
    );
    assert_eq!(client.request_count(registry.host()), 12);
}

#[tokio::test]
async fn rebase_swaps_the_base_layers_and_mounts_them() {
    let registry = registry(RegistryKind::Distribution, RegistryAuth::Anonymous).await;
    let client = client(&registry, None);
    let base = Repository::new(registry.host(), "base/runtime");
    let app = Repository::new(registry.host(), "shop/app");
    let base_v1 = [pseudo_random_bytes("os-1", 4096), pseudo_random_bytes("libs-1", 2048)];
    let base_v2 = [pseudo_random_bytes("os-2", 4096), pseudo_random_bytes("libs-2", 3072)];
    let (old_digest, _) = push_image(&client, &base, "3.20", &base_v1, BTreeMap::new()).await;
    // The app image is built on v1: its layers start with v1's, and it names its base.
    for layer in &base_v1 {
        client.push_blob(&app, layer).await.expect("copy base layer");
    }
    let annotations = BTreeMap::from([
        (BASE_NAME.to_string(), format!("{}/base/runtime:3.20", registry.host())),
        (BASE_DIGEST.to_string(), old_digest.clone()),
    ]);
    let app_layer = pseudo_random_bytes("app", 1024);
    let (app_digest, _) =
        push_image(&client, &app, "1.0", &[base_v1[0].clone(), base_v1[1].clone(), app_layer.clone()], annotations)
            .await;
    let (new_digest, new_ids) = push_image(&client, &base, "3.20", &base_v2, BTreeMap::new()).await;

    let request = RebaseRequest {
        repository: app.clone(),
        reference: app_digest.clone(),
        old_base: None,
        new_base: (base.clone(), new_digest.clone()),
        new_base_name: format!("{}/base/runtime:3.20", registry.host()),
        tag: "tidegate-rebased-1".into(),
    };
    let rebased = rebase(&client, &request).await.expect("rebase");
    assert_eq!(rebased.mounted, 2, "the new base's layers are mounted, not copied");
    assert_eq!(
        client.head_manifest(&app, "tidegate-rebased-1").await.expect("HEAD").map(|d| d.digest),
        Some(rebased.digest.clone())
    );

    let manifest: ImageManifest =
        serde_json::from_slice(&client.get_manifest(&app, &rebased.digest).await.expect("GET").bytes)
            .expect("manifest");
    let layer_digests: Vec<String> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(layer_digests, [new_ids[0].clone(), new_ids[1].clone(), sha256(&app_layer)]);
    let annotations = manifest.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get(BASE_DIGEST), Some(&new_digest));
    let config: serde_json::Value =
        serde_json::from_slice(&client.get_blob(&app, &manifest.config.digest).await.expect("config")).expect("json");
    assert_eq!(config["rootfs"]["diff_ids"], json!([new_ids[0], new_ids[1], sha256(&app_layer)]));
    assert_eq!(config["history"].as_array().map(Vec::len), Some(3));
    assert_eq!(config["config"]["Env"], json!(["PATH=/usr/bin"]), "the image's own config is kept");

    // Rebasing again is idempotent: same inputs, same digest.
    let again = rebase(&client, &RebaseRequest { tag: "tidegate-rebased-2".into(), ..request.clone() })
        .await
        .expect("rebase again");
    assert_eq!(again.digest, rebased.digest);

    // An image not built on the named base is refused, with the reason.
    let stranger = push_image(&client, &app, "stranger", &[pseudo_random_bytes("other", 100)], BTreeMap::new()).await.0;
    let refused =
        rebase(&client, &RebaseRequest { reference: stranger, old_base: Some((base.clone(), old_digest)), ..request })
            .await;
    match refused {
        Err(RebaseError::Refused { reason, .. }) => assert!(reason.contains("not the first layers"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Pushes a two-platform index of images built from `layers(platform)`; returns (index digest,
/// platform manifest digests).
async fn push_index(
    client: &RegistryClient,
    repo: &Repository,
    tag: &str,
    layers: impl Fn(&str) -> Vec<Vec<u8>>,
    annotations: BTreeMap<String, String>,
) -> String {
    let mut manifests = Vec::new();
    for arch in ["amd64", "arm64"] {
        let (digest, _) = push_image(client, repo, &format!("{tag}-{arch}"), &layers(arch), BTreeMap::new()).await;
        let head = client.head_manifest(repo, &digest).await.expect("HEAD").expect("platform manifest");
        manifests.push(json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": head.size, "platform": {"os": "linux", "architecture": arch}}));
    }
    let mut index = json!({"schemaVersion": 2, "mediaType": tidegate_providers::registry::types::OCI_INDEX, "manifests": manifests});
    if !annotations.is_empty() {
        index["annotations"] = json!(annotations);
    }
    let bytes = serde_json::to_vec(&index).expect("index");
    client.put_manifest(repo, tag, tidegate_providers::registry::types::OCI_INDEX, &bytes).await.expect("push index").0
}

#[tokio::test]
async fn multi_platform_images_are_rebased_platform_by_platform_into_a_new_index() {
    let registry = registry(RegistryKind::Distribution, RegistryAuth::Anonymous).await;
    let client = client(&registry, None);
    let base = Repository::new(registry.host(), "base/runtime");
    let app = Repository::new(registry.host(), "shop/app");
    let base_layer = |version: &str, arch: &str| pseudo_random_bytes(&format!("os-{version}-{arch}"), 1024);
    let old_index = push_index(&client, &base, "3.20", |arch| vec![base_layer("1", arch)], BTreeMap::new()).await;
    for arch in ["amd64", "arm64"] {
        client.push_blob(&app, &base_layer("1", arch)).await.expect("copy base layer");
    }
    let annotations = BTreeMap::from([
        (BASE_NAME.to_string(), format!("{}/base/runtime:3.20", registry.host())),
        (BASE_DIGEST.to_string(), old_index.clone()),
    ]);
    let app_index = push_index(
        &client,
        &app,
        "1.0",
        |arch| vec![base_layer("1", arch), pseudo_random_bytes(&format!("app-{arch}"), 512)],
        annotations,
    )
    .await;
    let new_index = push_index(&client, &base, "3.20", |arch| vec![base_layer("2", arch)], BTreeMap::new()).await;

    let rebased = rebase(
        &client,
        &RebaseRequest {
            repository: app.clone(),
            reference: app_index.clone(),
            old_base: None,
            new_base: (base.clone(), new_index.clone()),
            new_base_name: format!("{}/base/runtime:3.20", registry.host()),
            tag: "tidegate-multi".into(),
        },
    )
    .await
    .expect("rebase the index");
    let fetched = client.get_manifest(&app, &rebased.digest).await.expect("new index");
    assert!(fetched.is_index(), "the promoted digest is an index digest");
    let index: tidegate_providers::registry::types::ImageIndex = serde_json::from_slice(&fetched.bytes).expect("index");
    assert_eq!(index.annotations.unwrap_or_default().get(BASE_DIGEST), Some(&new_index));
    assert_eq!(index.manifests.len(), 2);
    for entry in &index.manifests {
        let arch = entry.platform.as_ref().and_then(|p| p["architecture"].as_str()).expect("platform").to_string();
        let manifest: ImageManifest =
            serde_json::from_slice(&client.get_manifest(&app, &entry.digest).await.expect("platform image").bytes)
                .expect("manifest");
        let layers: Vec<String> = manifest.layers.iter().map(|l| l.digest.clone()).collect();
        assert_eq!(
            layers,
            [sha256(&base_layer("2", &arch)), sha256(&pseudo_random_bytes(&format!("app-{arch}"), 512))],
            "{arch} is on its own new base layer"
        );
    }
}

/// `429 Too Many Requests` is retried after `Retry-After`; a loopback server answers 429 once.
#[tokio::test]
async fn too_many_requests_is_retried_after_the_servers_delay() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let response = if n == 0 {
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_string()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\ndocker-content-digest: sha256:{}\r\ncontent-type: {OCI_MANIFEST}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    "a".repeat(64)
                )
            };
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    let client =
        RegistryClient::new(ClientOptions { plain_http: [host.clone()].into(), ..Default::default() }).expect("client");
    let started = Instant::now();
    let head = client.head_manifest(&Repository::new(&host, "shop/app"), "v1").await.expect("HEAD after the retry");
    assert_eq!(head.map(|d| d.digest), Some(format!("sha256:{}", "a".repeat(64))));
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one 429, one retry");
    assert!(started.elapsed() >= Duration::from_millis(950), "waited for Retry-After: {:?}", started.elapsed());
}

/// A registry that serves content under the wrong digest is caught.
#[tokio::test]
async fn content_that_does_not_match_its_digest_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let body = r#"{"schemaVersion":2}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {OCI_MANIFEST}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    let client =
        RegistryClient::new(ClientOptions { plain_http: [host.clone()].into(), ..Default::default() }).expect("client");
    let wanted = format!("sha256:{}", "b".repeat(64));
    match client.get_manifest(&Repository::new(&host, "shop/app"), &wanted).await {
        Err(RegistryError::BadDigest { expected, actual, .. }) => {
            assert_eq!(expected, wanted);
            assert_eq!(actual, sha256(br#"{"schemaVersion":2}"#));
        }
        other => panic!("expected BadDigest, got {other:?}"),
    }
}
