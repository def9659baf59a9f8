//! The image itself: gzip layers, the config, the manifest with its annotations, and the OCI
//! image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/…`).
//!
//! Every byte is a function of the inputs: layers are deterministic tars compressed with a fixed
//! gzip header (no name, mtime 0, OS "unknown") at a fixed level, and JSON documents have a fixed
//! field order (structs are serialized in declaration order, maps sorted).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use flate2::{Compression, GzBuilder};
use serde_json::json;
use tidegate_providers::registry::sha256;
use tidegate_providers::registry::types::{Descriptor, ImageManifest, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};

use crate::Error;
use crate::rootfs::{self, Inputs};

/// Media type of the layers.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// What the annotations (and labels) say about the image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Seconds since the epoch: every file's mtime, the config's `created` and the
    /// `org.opencontainers.image.created` annotation.
    pub source_date_epoch: i64,
    /// `org.opencontainers.image.source`: where the source is.
    pub source: String,
    /// `org.opencontainers.image.revision`: the commit.
    pub revision: String,
    /// `org.opencontainers.image.version`: the crate version.
    pub version: String,
    /// `org.opencontainers.image.title`.
    pub title: String,
    /// `org.opencontainers.image.licenses`, when known.
    pub licenses: Option<String>,
}

impl Metadata {
    /// RFC 3339 time of [`Metadata::source_date_epoch`].
    pub fn created(&self) -> Result<String, Error> {
        let time = jiff::Timestamp::from_second(self.source_date_epoch)
            .map_err(|e| Error::Input(format!("SOURCE_DATE_EPOCH {}: {e}", self.source_date_epoch)))?;
        Ok(time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
    }

    /// The `org.opencontainers.image.*` annotations.
    pub fn annotations(&self) -> Result<BTreeMap<String, String>, Error> {
        let mut out = BTreeMap::new();
        let mut put = |key: &str, value: &str| out.insert(format!("org.opencontainers.image.{key}"), value.to_string());
        put("created", &self.created()?);
        put("source", &self.source);
        put("revision", &self.revision);
        put("version", &self.version);
        put("title", &self.title);
        if let Some(licenses) = &self.licenses {
            put("licenses", licenses);
        }
        Ok(out)
    }
}

/// A built image: its blobs and manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// The config blob.
    pub config: Vec<u8>,
    /// The compressed layers, base first.
    pub layers: Vec<Vec<u8>>,
    /// The manifest (its digest is the image's).
    pub manifest: Vec<u8>,
}

impl Image {
    /// `sha256:…` of the manifest.
    pub fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    /// The manifest's descriptor (the subject of the SBOM and the signature).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: self.digest(),
            size: self.manifest.len() as u64,
            artifact_type: None,
            annotations: None,
            platform: None,
        }
    }

    /// The config and the layers (the blobs a registry must hold before the manifest).
    pub fn blobs(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.config.as_slice()).chain(self.layers.iter().map(Vec::as_slice))
    }
}

/// Builds the image from `inputs`.
pub fn build(inputs: &Inputs, metadata: &Metadata) -> Result<Image, Error> {
    let mtime = u64::try_from(metadata.source_date_epoch)
        .map_err(|_| Error::Input(format!("SOURCE_DATE_EPOCH {} is before 1970", metadata.source_date_epoch)))?;
    let created = metadata.created()?;
    let annotations = metadata.annotations()?;
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    let mut history = Vec::new();
    for (name, tree) in rootfs::layers(inputs)? {
        let tar = tree.to_tar(mtime)?;
        diff_ids.push(sha256(&tar));
        layers.push(gzip(&tar)?);
        history.push(json!({"created": created, "created_by": format!("cargo xtask image: {name}")}));
    }
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": format!("{}:{}", rootfs::USER.0, rootfs::USER.1),
            "Entrypoint": [rootfs::ENTRYPOINT],
            "Env": [
                format!("PATH={}", rootfs::BIN),
                format!("HOME={}", rootfs::HOME),
                format!("SSL_CERT_FILE={}", rootfs::CA_CERTIFICATES),
            ],
            "WorkingDir": "/",
            "Labels": annotations,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    });
    let config = serde_json::to_vec(&config).map_err(|e| Error::Input(format!("config: {e}")))?;
    let descriptor = |media_type: &str, bytes: &[u8]| Descriptor {
        media_type: media_type.into(),
        digest: sha256(bytes),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: None,
        platform: None,
    };
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        artifact_type: None,
        config: descriptor(OCI_CONFIG, &config),
        layers: layers.iter().map(|l| descriptor(LAYER_MEDIA_TYPE, l)).collect(),
        subject: None,
        annotations: Some(annotations),
    };
    let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Input(format!("manifest: {e}")))?;
    Ok(Image { config, layers, manifest })
}

/// gzip with a header that says nothing about the host or the time.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let mut encoder = GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), Compression::new(6));
    encoder.write_all(bytes).map_err(|e| Error::Input(format!("gzip: {e}")))?;
    encoder.finish().map_err(|e| Error::Input(format!("gzip: {e}")))
}

/// The name of the SBOM file written into the layout directory, next to `index.json`.
pub const SBOM_FILE: &str = "sbom.spdx.json";

/// Writes `image` as an OCI image layout into `dir` (created if missing; a previous layout there
/// is replaced, any other non-empty directory is refused), tagged `ref_name` in `index.json`,
/// with the SBOM in [`SBOM_FILE`].
pub fn write_layout(dir: &Path, image: &Image, ref_name: &str, sbom: &[u8]) -> Result<(), Error> {
    let io = |what: &Path, e: std::io::Error| Error::Io(format!("{}: {e}", what.display()));
    if dir.exists() {
        let empty = std::fs::read_dir(dir).map_err(|e| io(dir, e))?.next().is_none();
        if !empty && !dir.join("oci-layout").is_file() {
            return Err(Error::Input(format!(
                "{} is neither empty nor an OCI image layout; choose another directory",
                dir.display()
            )));
        }
        for old in ["blobs", "index.json", "oci-layout", SBOM_FILE] {
            let path = dir.join(old);
            if path.is_dir() {
                std::fs::remove_dir_all(&path).map_err(|e| io(&path, e))?;
            } else if path.exists() {
                std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            }
        }
    }
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| io(&blobs, e))?;
    for blob in image.blobs().chain([image.manifest.as_slice()]) {
        let digest = sha256(blob);
        let path = blobs.join(digest.trim_start_matches("sha256:"));
        std::fs::write(&path, blob).map_err(|e| io(&path, e))?;
    }
    let mut descriptor = image.descriptor();
    descriptor.annotations = Some(BTreeMap::from([("org.opencontainers.image.ref.name".into(), ref_name.into())]));
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor]});
    let files = [
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ("index.json", serde_json::to_vec(&index).map_err(|e| Error::Input(format!("index: {e}")))?),
        (SBOM_FILE, sbom.to_vec()),
    ];
    for (name, bytes) in files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> Inputs {
        Inputs {
            controller: b"\x7fELF controller".to_vec(),
            kubectl_plugin: b"\x7fELF plugin".to_vec(),
            trivy: b"\x7fELF trivy".to_vec(),
            ca_certificates: b"-----BEGIN CERTIFICATE-----\n".to_vec(),
        }
    }

    fn metadata() -> Metadata {
        Metadata {
            source_date_epoch: 1_700_000_000,
            source: "https://github.com/tidegate/tidegate".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            version: "0.1.0".into(),
            title: "tidegate-controller".into(),
            licenses: Some("Apache-2.0".into()),
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_manifest_and_layout_bytes() {
        let (a, b) = (build(&inputs(), &metadata()).unwrap(), build(&inputs(), &metadata()).unwrap());
        assert_eq!(a, b);
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_layout(one.path(), &a, "0.1.0", b"{}").unwrap();
        write_layout(two.path(), &b, "0.1.0", b"{}").unwrap();
        let files = |dir: &Path| {
            let mut out = BTreeMap::new();
            for name in ["oci-layout", "index.json", SBOM_FILE] {
                out.insert(name.to_string(), std::fs::read(dir.join(name)).unwrap());
            }
            for entry in std::fs::read_dir(dir.join("blobs/sha256")).unwrap() {
                let entry = entry.unwrap();
                out.insert(entry.file_name().to_string_lossy().into_owned(), std::fs::read(entry.path()).unwrap());
            }
            out
        };
        assert_eq!(files(one.path()), files(two.path()));
        assert_eq!(files(one.path()).len(), 3 + 5, "config, three layers and the manifest");

        let mut later = metadata();
        later.source_date_epoch += 1;
        assert_ne!(build(&inputs(), &later).unwrap().digest(), a.digest(), "the time is an input");
        let mut other = inputs();
        other.controller.push(0);
        assert_ne!(build(&other, &metadata()).unwrap().digest(), a.digest(), "so are the binaries");
    }

    #[test]
    fn the_manifest_carries_the_annotations_and_the_config_the_user_and_entrypoint() {
        let image = build(&inputs(), &metadata()).unwrap();
        let manifest: ImageManifest = serde_json::from_slice(&image.manifest).unwrap();
        let annotations = manifest.annotations.unwrap();
        assert_eq!(annotations["org.opencontainers.image.created"], "2023-11-14T22:13:20Z");
        assert_eq!(annotations["org.opencontainers.image.revision"], metadata().revision);
        assert_eq!(annotations["org.opencontainers.image.licenses"], "Apache-2.0");
        assert_eq!(annotations["org.opencontainers.image.version"], "0.1.0");
        assert_eq!(annotations["org.opencontainers.image.title"], "tidegate-controller");
        assert_eq!(annotations["org.opencontainers.image.source"], metadata().source);
        assert_eq!(manifest.layers.len(), 3);
        let config: serde_json::Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"], json!(["/usr/local/bin/tidegate-controller"]));
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
        // The layer really is the gzip of a tar holding the passwd with the user.
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(image.layers[0].as_slice()), &mut tar).unwrap();
        assert_eq!(sha256(&tar), config["rootfs"]["diff_ids"][0].as_str().unwrap());
        let text = String::from_utf8_lossy(&tar);
        assert!(text.contains("nonroot:x:65532:65532"), "the base layer holds the passwd");
    }

    #[test]
    fn a_directory_that_is_not_a_layout_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let image = build(&inputs(), &metadata()).unwrap();
        let err = write_layout(dir.path(), &image, "0.1.0", b"{}").unwrap_err();
        assert!(err.to_string().contains("neither empty nor an OCI image layout"), "{err}");
        // A previous layout is replaced.
        let layout = tempfile::tempdir().unwrap();
        write_layout(layout.path(), &image, "0.1.0", b"{}").unwrap();
        write_layout(layout.path(), &image, "0.1.0", b"{}").unwrap();
    }
}
