//! Native rebase: put an application image on a new base image without rebuilding it.
//!
//! The application image names its base (annotations `org.opencontainers.image.base.name` and
//! `org.opencontainers.image.base.digest`, or the caller says). The old base's layers must be a
//! prefix of the image's layers, and its `rootfs.diff_ids` a prefix of the image's; those are
//! swapped for the new base's, the config is rewritten (`rootfs.diff_ids`, `history`), the base
//! annotations are updated, blobs are mounted across repositories instead of copied, and the
//! result is pushed under a unique tag. Multi-platform images are rebased platform by platform and
//! the result is a new index: the index digest is what gets promoted.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::registry::types::{DOCKER_MANIFEST, Descriptor, Fetched, ImageIndex, ImageManifest, OCI_MANIFEST};
use crate::registry::{RegistryClient, RegistryError, Repository, sha256};

/// Annotation naming the base image.
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// Annotation with the base image's digest.
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// Why an image cannot be rebased safely.
#[derive(Debug, thiserror::Error)]
pub enum RebaseError {
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The image cannot be rebased safely; retrying will not help.
    #[error("cannot rebase {image}: {reason}")]
    Refused {
        /// The image.
        image: String,
        /// Why.
        reason: String,
    },
}

impl From<RebaseError> for crate::ProviderError {
    fn from(e: RebaseError) -> Self {
        match e {
            RebaseError::Registry(r) => r.into(),
            refused @ RebaseError::Refused { .. } => Self::Permanent(refused.to_string()),
        }
    }
}

/// What to rebase.
#[derive(Clone, Debug)]
pub struct RebaseRequest {
    /// The application image's repository.
    pub repository: Repository,
    /// Its tag or digest.
    pub reference: String,
    /// The old base (`repository` and manifest digest); `None`: read it from the annotations.
    pub old_base: Option<(Repository, String)>,
    /// The new base (`repository` and manifest or index digest).
    pub new_base: (Repository, String),
    /// How the new base should be named in the annotation (`host/repo:tag`).
    pub new_base_name: String,
    /// Tag to push the result under (unique; never a moving tag).
    pub tag: String,
}

/// The rebased image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebased {
    /// Digest of the pushed manifest or index.
    pub digest: String,
    /// Blobs mounted from another repository instead of uploaded.
    pub mounted: usize,
    /// Blobs uploaded.
    pub uploaded: usize,
}

/// Rebases `request` with `client`.
pub async fn rebase(client: &RegistryClient, request: &RebaseRequest) -> Result<Rebased, RebaseError> {
    let image = format!("{}:{}", request.repository, request.reference);
    let refuse = |reason: String| RebaseError::Refused { image: image.clone(), reason };
    let app = client.get_manifest(&request.repository, &request.reference).await?;
    // Base images are shared by many applications: their manifests and configs are read once per
    // digest (`RegistryClient::get_manifest_by_digest`).
    let new_base = client.get_manifest_by_digest(&request.new_base.0, &request.new_base.1).await?;
    let mut stats = Rebased { digest: String::new(), mounted: 0, uploaded: 0 };

    if app.is_index() {
        let app_index: ImageIndex = parse(&app.bytes).map_err(&refuse)?;
        let old_base = resolve_old_base(request, app_index.annotations.as_ref()).map_err(&refuse)?;
        let old_index = client.get_manifest_by_digest(&old_base.0, &old_base.1).await?;
        let (old_platforms, new_platforms) =
            (platforms(&old_index).map_err(&refuse)?, platforms(&new_base).map_err(&refuse)?);
        let mut manifests = Vec::new();
        for entry in &app_index.manifests {
            let key = platform_key(entry);
            let old = old_platforms.get(&key).ok_or_else(|| refuse(format!("the old base has no {key} image")))?;
            let new = new_platforms.get(&key).ok_or_else(|| refuse(format!("the new base has no {key} image")))?;
            let app_manifest = client.get_manifest(&request.repository, &entry.digest).await?;
            let (digest, size, media_type) = rebase_one(
                client,
                request,
                &app_manifest,
                (&old_base.0, old),
                (&request.new_base.0, new),
                &mut stats,
                None,
            )
            .await?;
            manifests.push(Descriptor { media_type, digest, size, ..entry.clone() });
        }
        let mut annotations = app_index.annotations.clone().unwrap_or_default();
        annotations.insert(BASE_NAME.into(), request.new_base_name.clone());
        annotations.insert(BASE_DIGEST.into(), new_base.digest.clone());
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(app.media_type.clone()),
            manifests,
            annotations: Some(annotations),
        };
        let bytes = serde_json::to_vec(&index).map_err(|e| refuse(e.to_string()))?;
        let (digest, _) = client.put_manifest(&request.repository, &request.tag, &app.media_type, &bytes).await?;
        stats.digest = digest;
        return Ok(stats);
    }

    let app_manifest: ImageManifest = parse(&app.bytes).map_err(&refuse)?;
    let old_base = resolve_old_base(request, app_manifest.annotations.as_ref()).map_err(&refuse)?;
    let old = client.get_manifest_by_digest(&old_base.0, &old_base.1).await?;
    let (old, new) =
        (single(client, &old_base.0, old).await?, single(client, &request.new_base.0, new_base.clone()).await?);
    let (digest, _, _) = rebase_one(
        client,
        request,
        &app,
        (&old_base.0, &old),
        (&request.new_base.0, &new),
        &mut stats,
        Some(&request.tag),
    )
    .await?;
    stats.digest = digest;
    Ok(stats)
}

/// For a single-platform app image against a possibly multi-platform base: pick the base's
/// manifest (amd64/linux, else the first).
async fn single(client: &RegistryClient, repo: &Repository, fetched: Fetched) -> Result<Fetched, RebaseError> {
    if !fetched.is_index() {
        return Ok(fetched);
    }
    let index: ImageIndex =
        parse(&fetched.bytes).map_err(|reason| RebaseError::Refused { image: repo.to_string(), reason })?;
    let chosen = index
        .manifests
        .iter()
        .find(|d| platform_key(d) == "linux/amd64")
        .or_else(|| index.manifests.first())
        .ok_or_else(|| RebaseError::Refused {
            image: repo.to_string(),
            reason: "the base index lists no images".into(),
        })?;
    Ok(client.get_manifest_by_digest(repo, &chosen.digest).await?)
}

fn resolve_old_base(
    request: &RebaseRequest,
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<(Repository, String), String> {
    if let Some(old) = &request.old_base {
        return Ok(old.clone());
    }
    let annotations = annotations.ok_or("the image has no base annotations and no old base was given")?;
    let name = annotations.get(BASE_NAME).ok_or(format!("the image has no {BASE_NAME} annotation"))?;
    let digest = annotations.get(BASE_DIGEST).ok_or(format!("the image has no {BASE_DIGEST} annotation"))?;
    let reference: tidegate_core::ImageRef = name.parse().map_err(|e| format!("{BASE_NAME}: {e}"))?;
    Ok((Repository::from(&reference), digest.clone()))
}

fn platforms(fetched: &Fetched) -> Result<BTreeMap<String, String>, String> {
    if !fetched.is_index() {
        return Err("the base is a single-platform image but the application image is multi-platform".into());
    }
    let index: ImageIndex = parse(&fetched.bytes)?;
    Ok(index.manifests.iter().map(|d| (platform_key(d), d.digest.clone())).collect())
}

fn platform_key(descriptor: &Descriptor) -> String {
    let platform = descriptor.platform.clone().unwrap_or(Value::Null);
    let mut key = format!(
        "{}/{}",
        platform["os"].as_str().unwrap_or("linux"),
        platform["architecture"].as_str().unwrap_or("amd64")
    );
    if let Some(variant) = platform["variant"].as_str() {
        key.push('/');
        key.push_str(variant);
    }
    key
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("unreadable manifest: {e}"))
}

/// Rebases one platform image. `old`/`new` are base manifests (fetched) or their digests.
async fn rebase_one<O: BaseManifest, N: BaseManifest>(
    client: &RegistryClient,
    request: &RebaseRequest,
    app: &Fetched,
    old: (&Repository, &O),
    new: (&Repository, &N),
    stats: &mut Rebased,
    tag: Option<&str>,
) -> Result<(String, u64, String), RebaseError> {
    let image = format!("{}@{}", request.repository, app.digest);
    let refuse = |reason: String| RebaseError::Refused { image: image.clone(), reason };
    let old_manifest = old.1.load(client, old.0).await?;
    let new_manifest = new.1.load(client, new.0).await?;
    let app_manifest: ImageManifest = parse(&app.bytes).map_err(&refuse)?;
    if app.media_type != OCI_MANIFEST && app.media_type != DOCKER_MANIFEST {
        return Err(refuse(format!("unsupported manifest type {}", app.media_type)));
    }

    // The old base's layers must be exactly the first layers of the image.
    let base_len = old_manifest.layers.len();
    let prefix_ok = app_manifest.layers.len() >= base_len
        && old_manifest.layers.iter().zip(&app_manifest.layers).all(|(a, b)| a.digest == b.digest);
    if !prefix_ok {
        return Err(refuse(format!(
            "the old base's {base_len} layers are not the first layers of the image, so it was not built on that base"
        )));
    }
    let app_config: Value =
        serde_json::from_slice(&client.get_blob(&request.repository, &app_manifest.config.digest).await?)
            .map_err(|e| refuse(format!("image config: {e}")))?;
    let old_config: Value =
        serde_json::from_slice(&client.get_blob_by_digest(old.0, &old_manifest.config.digest).await?)
            .map_err(|e| refuse(format!("old base config: {e}")))?;
    let new_config: Value =
        serde_json::from_slice(&client.get_blob_by_digest(new.0, &new_manifest.config.digest).await?)
            .map_err(|e| refuse(format!("new base config: {e}")))?;
    let diff_ids =
        |config: &Value| -> Vec<Value> { config["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default() };
    let (app_ids, old_ids, new_ids) = (diff_ids(&app_config), diff_ids(&old_config), diff_ids(&new_config));
    if app_ids.len() != app_manifest.layers.len()
        || old_ids.len() != base_len
        || new_ids.len() != new_manifest.layers.len()
    {
        return Err(refuse("rootfs.diff_ids do not match the layers".into()));
    }
    if app_ids[..base_len] != old_ids[..] {
        return Err(refuse("the image's rootfs.diff_ids do not start with the old base's".into()));
    }
    if app_config["os"] != new_config["os"] || app_config["architecture"] != new_config["architecture"] {
        return Err(refuse(format!(
            "the new base is {}/{}, the image {}/{}",
            new_config["os"], new_config["architecture"], app_config["os"], app_config["architecture"]
        )));
    }

    // Config: new base's diff_ids and history, then the image's own.
    let mut config = app_config.clone();
    let mut ids = new_ids.clone();
    ids.extend_from_slice(&app_ids[base_len..]);
    config["rootfs"]["diff_ids"] = Value::Array(ids);
    let history = |c: &Value| c["history"].as_array().cloned().unwrap_or_default();
    let (app_history, old_history, new_history) = (history(&app_config), history(&old_config), history(&new_config));
    if app_history.len() >= old_history.len() {
        let mut rebuilt = new_history;
        rebuilt.extend_from_slice(&app_history[old_history.len()..]);
        config["history"] = Value::Array(rebuilt);
    }
    let config_bytes = serde_json::to_vec(&config).map_err(|e| refuse(e.to_string()))?;
    let config_digest = client.push_blob(&request.repository, &config_bytes).await?;
    stats.uploaded += 1;

    // Layers: mount the new base's into the image's repository.
    for layer in &new_manifest.layers {
        if client.blob_exists(&request.repository, &layer.digest).await? {
            continue;
        }
        if new.0.host == request.repository.host
            && client.mount_blob(&request.repository, &new.0.name, &layer.digest).await?
        {
            stats.mounted += 1;
        } else {
            let bytes = client.get_blob(new.0, &layer.digest).await?;
            client.push_blob(&request.repository, &bytes).await?;
            stats.uploaded += 1;
        }
    }
    let mut layers = new_manifest.layers.clone();
    layers.extend_from_slice(&app_manifest.layers[base_len..]);
    let mut annotations = app_manifest.annotations.clone().unwrap_or_default();
    annotations.insert(BASE_NAME.into(), request.new_base_name.clone());
    annotations.insert(BASE_DIGEST.into(), new.1.digest().to_string());
    let manifest = ImageManifest {
        config: Descriptor { digest: config_digest, size: config_bytes.len() as u64, ..app_manifest.config.clone() },
        layers,
        annotations: Some(annotations),
        ..app_manifest
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| refuse(e.to_string()))?;
    let reference = match tag {
        Some(tag) => tag.to_string(),
        None => sha256(&bytes),
    };
    let (digest, _) = client.put_manifest(&request.repository, &reference, &app.media_type, &bytes).await?;
    Ok((digest, bytes.len() as u64, app.media_type.clone()))
}

/// A base manifest given either fetched or by digest.
trait BaseManifest {
    fn digest(&self) -> &str;
    async fn load(&self, client: &RegistryClient, repo: &Repository) -> Result<ImageManifest, RebaseError>;
}

impl BaseManifest for Fetched {
    fn digest(&self) -> &str {
        &self.digest
    }
    async fn load(&self, _client: &RegistryClient, repo: &Repository) -> Result<ImageManifest, RebaseError> {
        parse(&self.bytes).map_err(|reason| RebaseError::Refused { image: repo.to_string(), reason })
    }
}

impl BaseManifest for String {
    fn digest(&self) -> &str {
        self
    }
    async fn load(&self, client: &RegistryClient, repo: &Repository) -> Result<ImageManifest, RebaseError> {
        let fetched = client.get_manifest_by_digest(repo, self).await?;
        parse(&fetched.bytes).map_err(|reason| RebaseError::Refused { image: repo.to_string(), reason })
    }
}
