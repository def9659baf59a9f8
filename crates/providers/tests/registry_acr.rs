//! The registry client against a registry that demands Azure Container Registry's token
//! exchange: the controller's Azure identity (client secret, signed in at the local Azure
//! stand-in) is exchanged for a refresh token at `/oauth2/exchange`, then for access tokens at
//! `/oauth2/token`, both on the registry's own origin. Rebase, referrers and signatures work
//! through it; an identity without a role on the registry is refused with a clear error.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::Identity;
use serde_json::json;
use tidegate_core::Digest;
use tidegate_providers::Signer as _;
use tidegate_providers::azure::identity::{AzureConfig, AzureCredentialKind};
use tidegate_providers::azure::registry_identity::RegistryIdentity;
use tidegate_providers::rebase::{BASE_DIGEST, BASE_NAME, RebaseRequest, rebase};
use tidegate_providers::registry::acr::{DEFAULT_SCOPE, EntraTokenSource, REFRESH_TOKEN_USER};
use tidegate_providers::registry::types::{Descriptor, ImageManifest, OCI_CONFIG, OCI_MANIFEST};
use tidegate_providers::registry::{ClientOptions, Credentials, RegistryClient, RegistryError, Repository};
use tidegate_testenv::azure::{AzureStandIn, TENANT_ID};
use tidegate_testenv::registry::{
    AcrTrust, Registry, RegistryAuth, RegistryKind, RegistryOptions, pseudo_random_bytes,
};

const CLIENT_ID: &str = "tidegate-controller";
const SECRET: &str = "s3cret-value";

struct Acr {
    azure: AzureStandIn,
    registry: Registry,
    _dir: tempfile::TempDir,
    secret_file: std::path::PathBuf,
}

impl Acr {
    /// The Azure stand-in with the controller's client, and an ACR whose role holders are
    /// `allowed`.
    async fn start(allowed: &[&str]) -> Self {
        let azure = AzureStandIn::start().await.expect("azure stand-in");
        azure.add_client_secret(CLIENT_ID, SECRET).await.expect("client");
        let trust = AcrTrust {
            token_key: azure.token_key().to_string(),
            tenant: TENANT_ID.to_string(),
            allowed: allowed.iter().map(|a| a.to_string()).collect(),
        };
        let registry = Registry::start(RegistryOptions {
            kind: RegistryKind::Distribution,
            auth: RegistryAuth::acr("admin", "admin-password", trust),
        })
        .await
        .expect("registry");
        let dir = tempfile::tempdir().expect("tempdir");
        let secret_file = dir.path().join("client-secret");
        std::fs::write(&secret_file, SECRET).expect("secret file");
        Self { azure, registry, _dir: dir, secret_file }
    }

    async fn identity(&self) -> Arc<dyn EntraTokenSource> {
        let config = AzureConfig {
            credential: AzureCredentialKind::ClientSecret,
            tenant_id: Some(TENANT_ID.to_string()),
            client_id: Some(CLIENT_ID.to_string()),
            client_secret_file: Some(self.secret_file.clone()),
            authority_host: self.azure.authority_host().parse().expect("authority"),
            resource_manager: self.azure.arm_url().parse().expect("arm"),
            ca_file: Some(self.azure.ca_file().to_path_buf()),
            ..AzureConfig::default()
        };
        Arc::new(RegistryIdentity::new(&config, DEFAULT_SCOPE).await.expect("identity"))
    }

    /// A client whose credentials for the registry are the Azure identity, as the controller
    /// builds it for `--acr-login-server`.
    async fn client(&self) -> RegistryClient {
        RegistryClient::new(ClientOptions {
            plain_http: self.registry.plain_http_hosts().into_iter().collect(),
            acr_identity: BTreeMap::from([(self.registry.host().to_string(), self.identity().await)]),
            ..Default::default()
        })
        .expect("client")
    }

    fn repo(&self, name: &str) -> Repository {
        Repository::new(self.registry.host(), name)
    }
}

/// Pushes an image of `layers` (uncompressed: diff_id = digest) with `annotations`.
async fn push_image(
    client: &RegistryClient,
    repo: &Repository,
    tag: &str,
    layers: &[Vec<u8>],
    annotations: BTreeMap<String, String>,
) -> String {
    let mut descriptors = Vec::new();
    for bytes in layers {
        let digest = client.push_blob(repo, bytes).await.expect("push layer");
        descriptors.push(descriptor("application/vnd.oci.image.layer.v1.tar", digest, bytes.len()));
    }
    let diff_ids: Vec<String> = descriptors.iter().map(|d| d.digest.clone()).collect();
    let history: Vec<serde_json::Value> = diff_ids.iter().map(|_| json!({"created_by": "ADD"})).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}, "history": history
    }))
    .expect("config");
    let config_digest = client.push_blob(repo, &config).await.expect("push config");
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: None,
        config: descriptor(OCI_CONFIG, config_digest, config.len()),
        layers: descriptors,
        subject: None,
        annotations: (!annotations.is_empty()).then_some(annotations),
    };
    let bytes = serde_json::to_vec(&manifest).expect("manifest");
    client.put_manifest(repo, tag, OCI_MANIFEST, &bytes).await.expect("push manifest").0
}

fn descriptor(media_type: &str, digest: String, size: usize) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest,
        size: size as u64,
        artifact_type: None,
        annotations: None,
        platform: None,
    }
}

#[tokio::test]
async fn rebase_referrers_and_signatures_work_with_the_acr_token_exchange() {
    let acr = Acr::start(&[CLIENT_ID]).await;
    let client = Arc::new(acr.client().await);
    let base = acr.repo("base/runtime");
    let app = acr.repo("shop/app");

    // Push and pull with the Azure identity alone (no registry secret).
    let base_v1 = [pseudo_random_bytes("os-1", 2048), pseudo_random_bytes("libs-1", 1024)];
    let old_base = push_image(&client, &base, "3.20", &base_v1, BTreeMap::new()).await;
    for layer in &base_v1 {
        client.push_blob(&app, layer).await.expect("copy base layer");
    }
    let annotations = BTreeMap::from([
        (BASE_NAME.to_string(), format!("{}/base/runtime:3.20", acr.registry.host())),
        (BASE_DIGEST.to_string(), old_base),
    ]);
    let app_layer = pseudo_random_bytes("app", 512);
    let app_digest =
        push_image(&client, &app, "1.0", &[base_v1[0].clone(), base_v1[1].clone(), app_layer], annotations).await;
    let new_base = push_image(&client, &base, "3.20", &[pseudo_random_bytes("os-2", 2048)], BTreeMap::new()).await;

    // Rebase: manifests, blobs, a cross-repository mount, a push.
    let rebased = rebase(
        &client,
        &RebaseRequest {
            repository: app.clone(),
            reference: app_digest,
            old_base: None,
            new_base: (base.clone(), new_base.clone()),
            new_base_name: format!("{}/base/runtime:3.20", acr.registry.host()),
            tag: "tidegate-rebased".into(),
        },
    )
    .await
    .expect("rebase through the token exchange");
    let manifest: ImageManifest =
        serde_json::from_slice(&client.get_manifest(&app, &rebased.digest).await.expect("GET").bytes).expect("json");
    assert_eq!(manifest.annotations.unwrap_or_default().get(BASE_DIGEST), Some(&new_base));

    // Signatures are referrers (here through the tag schema): pushed and found again.
    let identity = Identity::new("acr-signer");
    let signer = identity.signer(client.clone(), true);
    let digest: Digest = rebased.digest.parse().expect("digest");
    let image = format!("{}/shop/app@{}", acr.registry.host(), rebased.digest);
    let signature = signer.sign(&image, &digest).await.expect("sign");
    let verification = signer.verify(&image, &digest, &signature).await.expect("verify");
    assert!(verification.is_valid(), "{verification:?}");

    let counters = acr.registry.acr().expect("an ACR front");
    assert_eq!(counters.exchanges(), 1, "the Entra ID token is exchanged once; the refresh token is kept");
    assert!(counters.refresh_grants() >= 2, "access tokens per scope come from the refresh token");
    assert_eq!(counters.refused_exchanges(), 0);

    // Tools that sign in with Basic credentials (Trivy) get the nil-UUID user and the refresh
    // token, which the registry accepts at its token endpoint.
    let refresh = client.acr_refresh_token(&app).await.expect("refresh token").expect("an ACR host");
    let basic = RegistryClient::new(ClientOptions {
        plain_http: acr.registry.plain_http_hosts().into_iter().collect(),
        credentials: BTreeMap::from([(
            acr.registry.host().to_string(),
            Credentials::Basic { username: REFRESH_TOKEN_USER.into(), password: refresh },
        )]),
        ..Default::default()
    })
    .expect("client");
    assert_eq!(
        basic.head_manifest(&app, &rebased.digest).await.expect("HEAD with the refresh token").map(|d| d.digest),
        Some(rebased.digest.clone())
    );

    // Without the identity, nothing is readable.
    let anonymous = RegistryClient::new(ClientOptions {
        plain_http: acr.registry.plain_http_hosts().into_iter().collect(),
        ..Default::default()
    })
    .expect("client");
    assert!(matches!(anonymous.head_manifest(&app, "1.0").await, Err(RegistryError::Denied { .. })));
}

#[tokio::test]
async fn an_identity_without_a_role_on_the_registry_is_refused_with_what_to_grant() {
    let acr = Acr::start(&["someone-else"]).await;
    let client = acr.client().await;
    match client.head_manifest(&acr.repo("shop/app"), "1.0").await {
        Err(RegistryError::Denied { message, .. }) => {
            assert!(message.contains("refused to exchange the Entra ID token"), "{message}");
            assert!(message.contains(CLIENT_ID), "the message names the identity: {message}");
        }
        other => panic!("expected Denied, got {other:?}"),
    }
    assert_eq!(acr.registry.acr().expect("front").refused_exchanges(), 1);
    assert_eq!(acr.registry.acr().expect("front").exchanges(), 0);
}
