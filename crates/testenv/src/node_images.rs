//! The images the real node runs, built here from Go source (`crates/testenv/go`): the pod
//! sandbox (pause) and the test server, each a single static binary packed into a reproducible
//! OCI image, and pushed to a loopback [`Registry`] by digest.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use serde_json::json;

use crate::registry::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, Registry, sha256_digest};
use crate::{Error, tools};

/// Go source of the node's images, compiled into this crate so that a change gets a new cache
/// directory.
pub mod image_source {
    /// `go/pause/main.go`.
    pub const PAUSE_MAIN_GO: &str = include_str!("../go/pause/main.go");
    /// `go/pause/go.mod`.
    pub const PAUSE_GO_MOD: &str = include_str!("../go/pause/go.mod");
    /// `go/testserver/main.go`.
    pub const TESTSERVER_MAIN_GO: &str = include_str!("../go/testserver/main.go");
    /// `go/testserver/go.mod`.
    pub const TESTSERVER_GO_MOD: &str = include_str!("../go/testserver/go.mod");

    /// The source files of program `name`.
    pub fn files(name: &str) -> Option<[(&'static str, &'static str); 2]> {
        match name {
            "pause" => Some([("main.go", PAUSE_MAIN_GO), ("go.mod", PAUSE_GO_MOD)]),
            "testserver" => Some([("main.go", TESTSERVER_MAIN_GO), ("go.mod", TESTSERVER_GO_MOD)]),
            _ => None,
        }
    }

    /// A short fingerprint (FNV-1a) of every source file, part of the cache directory's name.
    pub fn fingerprint() -> String {
        crate::tools::fingerprint(&[PAUSE_MAIN_GO, PAUSE_GO_MOD, TESTSERVER_MAIN_GO, TESTSERVER_GO_MOD])
    }
}

/// Directory the node images' binaries are cached in (a change to their source gets a new one).
pub fn images_dir() -> PathBuf {
    tools::cache_root().join("tools").join(format!("node-images-{}", image_source::fingerprint())).join("bin")
}

/// Builds program `name` (`pause` or `testserver`) with `CGO_ENABLED=0` into [`images_dir`]
/// unless it is there, and returns its path.
pub fn build_image_binary(name: &str) -> Result<PathBuf, Error> {
    // Tests of one binary build concurrently: one build at a time per process, and sources and
    // partial output named per process, so neither overwrites the other's files.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let out = images_dir().join(name);
    if out.is_file() {
        return Ok(out);
    }
    let files = image_source::files(name).ok_or_else(|| Error::Tool(format!("no image program {name}")))?;
    let work = tools::cache_root()
        .join("tools")
        .join("src")
        .join("node-images")
        .join(format!("{name}-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    for (file, text) in files {
        let path = work.join(file);
        fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    let parent = images_dir();
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    // Build next to the target and rename, so a concurrent build never leaves half a binary.
    let partial = parent.join(format!(".{name}.{}", std::process::id()));
    let partial_str = partial.display().to_string();
    tools::go(&work, &["build", "-trimpath", "-ldflags", "-s -w", "-o", &partial_str, "."])?;
    fs::rename(&partial, &out).map_err(|e| Error::io(&out, e))?;
    // The sources were only the build's input; the per-process copy is not reused.
    let _ = fs::remove_dir_all(&work);
    Ok(out)
}

/// A single-layer OCI image: its uncompressed layer, config and manifest.
#[derive(Clone, Debug)]
pub struct OciImage {
    /// The layer (an uncompressed tar).
    pub layer: Vec<u8>,
    /// The image config.
    pub config: Vec<u8>,
    /// The OCI image manifest.
    pub manifest: Vec<u8>,
}

impl OciImage {
    /// An image of one file, `/<name>` (mode 0755), run as its entrypoint with `entrypoint`.
    /// The same inputs give the same digest.
    pub fn single_binary(name: &str, binary: &[u8], entrypoint: &[&str]) -> Self {
        let layer = tar(&[(name, binary, 0o755)]);
        let layer_digest = sha256_digest(&layer);
        let config = serde_json::to_vec(&json!({
            "architecture": architecture(),
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "Env": ["PATH=/"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "history": [{"created_by": format!("tidegate testenv: /{name}")}],
        }))
        .unwrap_or_default();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": IMAGE_CONFIG_MEDIA_TYPE, "digest": sha256_digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer.len()}],
        }))
        .unwrap_or_default();
        Self { layer, config, manifest }
    }

    /// Digest of the manifest.
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    /// An OCI image layout as a tar, for `ctr images import`, naming the image `name`.
    pub fn oci_layout(&self, name: &str) -> Vec<u8> {
        let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": IMAGE_MANIFEST_MEDIA_TYPE,
                "digest": self.digest(),
                "size": self.manifest.len(),
                "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": tag},
            }],
        }))
        .unwrap_or_default();
        let blob = |data: &[u8]| format!("blobs/sha256/{}", sha256_digest(data).trim_start_matches("sha256:"));
        let (layer, config, manifest) = (blob(&self.layer), blob(&self.config), blob(&self.manifest));
        tar(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644),
            ("index.json", &index, 0o644),
            (&layer, &self.layer, 0o644),
            (&config, &self.config, 0o644),
            (&manifest, &self.manifest, 0o644),
        ])
    }
}

/// This machine's architecture as OCI names it.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A ustar archive of regular files (owner root, mtime 0), with their parent directories.
fn tar(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut dirs = BTreeSet::new();
    for (name, data, mode) in files {
        let mut parent = String::new();
        for part in name.split('/').collect::<Vec<_>>().split_last().map(|(_, d)| d.to_vec()).unwrap_or_default() {
            parent.push_str(part);
            parent.push('/');
            if dirs.insert(parent.clone()) {
                out.extend(tar_header(&parent, 0, 0o755, b'5'));
            }
        }
        out.extend(tar_header(name, data.len(), *mode, b'0'));
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn tar_header(name: &str, size: usize, mode: u32, kind: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    let mut put = |offset: usize, value: &[u8]| h[offset..offset + value.len()].copy_from_slice(value);
    put(0, name.as_bytes());
    put(100, format!("{mode:07o}\0").as_bytes());
    put(108, b"0000000\0");
    put(116, b"0000000\0");
    put(124, format!("{size:011o}\0").as_bytes());
    put(136, b"00000000000\0");
    put(148, b"        ");
    put(156, &[kind]);
    put(257, b"ustar\0");
    put(263, b"00");
    put(265, b"root");
    put(297, b"root");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

pub(crate) fn node_image(name: &str, entrypoint: &[&str]) -> Result<OciImage, Error> {
    let binary = build_image_binary(name)?;
    let bytes = fs::read(&binary).map_err(|e| Error::io(&binary, e))?;
    Ok(OciImage::single_binary(name, &bytes, entrypoint))
}

/// The test server image in a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestServerImage {
    /// `host:port/repo@sha256:…`.
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
}

/// Builds the test server (`go/testserver`: `serve` answers 200 on `/healthz` on
/// [`crate::real_node::TEST_SERVER_PORT`]; `crash` exits with status 3 soon after starting; chosen by the first
/// argument or `$TESTSERVER_MODE`) into an OCI image (cached by its source) and pushes it by
/// digest to `repo` in `registry`.
pub async fn push_test_server_image(registry: &Registry, repo: &str) -> Result<TestServerImage, Error> {
    push_test_server_image_as(registry, repo, "serve").await
}

/// [`push_test_server_image`] whose entrypoint runs `mode` (`serve` or `crash`): the crashing
/// image is another digest of the same program, so a workload that switches to it crashes
/// whatever its arguments.
pub async fn push_test_server_image_as(registry: &Registry, repo: &str, mode: &str) -> Result<TestServerImage, Error> {
    let entrypoint: Vec<String> = match mode {
        "serve" => vec!["/testserver".into()],
        other => vec!["/testserver".into(), other.into()],
    };
    let image = tokio::task::spawn_blocking(move || {
        let entrypoint: Vec<&str> = entrypoint.iter().map(String::as_str).collect();
        node_image("testserver", &entrypoint)
    })
    .await
    .map_err(|e| Error::Tool(e.to_string()))??;
    let client = registry.client();
    client.push_blob(repo, &image.layer).await?;
    client.push_blob(repo, &image.config).await?;
    let digest = image.digest();
    let stored = client.push_manifest(repo, &digest, IMAGE_MANIFEST_MEDIA_TYPE, &image.manifest).await?;
    if stored != digest {
        return Err(Error::Registry(format!("the registry stored {stored}, the manifest is {digest}")));
    }
    Ok(TestServerImage { reference: format!("{}/{repo}@{digest}", registry.host()), digest })
}

/// The test server (`serve`) built on a base image: `base_layers` (the base `base_name`, pushed
/// as `base_digest`) then the server, pushed to `repo` under `tag`, its manifest recording the
/// base (`org.opencontainers.image.base.name` and `.digest`) as a build does. The base layers hold
/// only files; the config runs `/testserver`. A rebuild onto another base keeps it runnable.
pub async fn push_test_server_on_base(
    registry: &Registry,
    repo: &str,
    tag: &str,
    base_layers: &[Vec<u8>],
    base_name: &str,
    base_digest: &str,
) -> Result<TestServerImage, Error> {
    let binary = tokio::task::spawn_blocking(|| build_image_binary("testserver"))
        .await
        .map_err(|e| Error::Tool(e.to_string()))??;
    let bytes = fs::read(&binary).map_err(|e| Error::io(&binary, e))?;
    let mut layers = base_layers.to_vec();
    layers.push(tar(&[("testserver", &bytes, 0o755)]));
    let client = registry.client();
    let mut descriptors = Vec::new();
    for layer in &layers {
        let digest = client.push_blob(repo, layer).await?;
        descriptors.push(
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": layer.len()}),
        );
    }
    let diff_ids: Vec<&serde_json::Value> = descriptors.iter().map(|d| &d["digest"]).collect();
    let history: Vec<serde_json::Value> =
        (0..layers.len()).map(|i| json!({"created_by": format!("tidegate testenv: layer {i}")})).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": architecture(),
        "os": "linux",
        "config": {"Entrypoint": ["/testserver"], "Env": ["PATH=/"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }))
    .map_err(|e| Error::Registry(e.to_string()))?;
    let config_digest = client.push_blob(repo, &config).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": IMAGE_MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": IMAGE_CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len()},
        "layers": descriptors,
        "annotations": {
            "org.opencontainers.image.base.name": base_name,
            "org.opencontainers.image.base.digest": base_digest,
        },
    }))
    .map_err(|e| Error::Registry(e.to_string()))?;
    let digest = client.push_manifest(repo, tag, IMAGE_MANIFEST_MEDIA_TYPE, &manifest).await?;
    Ok(TestServerImage { reference: format!("{}/{repo}@{digest}", registry.host()), digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_headers_are_ustar_with_a_valid_checksum() {
        let archive = tar(&[("a/b/file", b"hello", 0o755)]);
        assert_eq!(archive.len() % 512, 0);
        // a/, a/b/, the file header, one data block, two end blocks.
        assert_eq!(archive.len(), 512 * 6);
        let header = &archive[1024..1536];
        assert_eq!(&header[..8], b"a/b/file");
        assert_eq!(&header[257..263], b"ustar\0");
        let stored = std::str::from_utf8(&header[148..154]).map(|s| u32::from_str_radix(s, 8));
        let mut copy = header.to_vec();
        copy[148..156].copy_from_slice(b"        ");
        let sum: u32 = copy.iter().map(|b| u32::from(*b)).sum();
        assert_eq!(stored, Ok(Ok(sum)));
        assert_eq!(&archive[1536..1541], b"hello");
    }

    #[test]
    fn images_are_deterministic() {
        let a = OciImage::single_binary("x", b"binary", &["/x"]);
        let b = OciImage::single_binary("x", b"binary", &["/x"]);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), OciImage::single_binary("x", b"other", &["/x"]).digest());
        let layout = a.oci_layout("tidegate.local/x:1");
        assert!(layout.windows(10).any(|w| w == b"index.json"));
    }
}
