//! The image's software bill of materials, SPDX 2.3 JSON: every crate compiled into the two
//! binaries (from `cargo metadata`'s resolve graph, normal dependencies only, with the checksum
//! `Cargo.lock` pins and a `pkg:cargo` purl), and Trivy with its Go module version and the
//! binary's SHA-256.
//!
//! The document is deterministic too: its time is `SOURCE_DATE_EPOCH`, its namespace is derived
//! from the image digest, and packages and relationships are sorted.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::Error;
use crate::layout::Metadata;

/// `artifactType` and layer media type of the SBOM referrer.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";

/// The Go program in the image and what identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoModule {
    /// Module path (`github.com/aquasecurity/trivy`).
    pub path: String,
    /// Module version (`v0.74.0`).
    pub version: String,
    /// The module's `h1:` sum from the binary's build information, when it holds one.
    pub sum: Option<String>,
    /// Where the binary is in the image.
    pub file: String,
    /// SHA-256 of the binary (hex).
    pub sha256: String,
}

/// Reads the main module's dependency `module` (path and version, and its `h1:` sum) from a Go
/// binary's embedded build information (the `dep\t<path>\t<version>\t<sum>` lines `go version -m`
/// prints), or `None` when the binary does not name it.
pub fn go_module_version(binary: &[u8], module: &str) -> Option<(String, Option<String>)> {
    for prefix in ["mod\t", "dep\t"] {
        let needle = format!("{prefix}{module}\t");
        let Some(at) = find(binary, needle.as_bytes()) else { continue };
        let rest = &binary[at + needle.len()..];
        let end = rest.iter().position(|&b| b == b'\n' || b == 0).unwrap_or(rest.len()).min(256);
        let line = std::str::from_utf8(&rest[..end]).ok()?;
        let mut fields = line.split('\t');
        let version = fields.next().filter(|v| v.starts_with('v'))?.to_string();
        let sum = fields.next().filter(|s| s.starts_with("h1:")).map(str::to_string);
        return Some((version, sum));
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `(name, version, source)` → checksum, from `Cargo.lock`.
pub fn lock_checksums(cargo_lock: &str) -> BTreeMap<(String, String, String), String> {
    let mut out = BTreeMap::new();
    for block in cargo_lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.trim_start().strip_prefix('='))
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
        };
        if let (Some(name), Some(version), Some(source), Some(checksum)) =
            (field("name"), field("version"), field("source"), field("checksum"))
        {
            out.insert((name, version, source), checksum);
        }
    }
    out
}

/// One crate of the resolve graph.
struct Crate<'a> {
    name: &'a str,
    version: &'a str,
    source: Option<&'a str>,
    license: Option<&'a str>,
}

/// The SPDX document for the image `digest` whose binaries are built from the workspace
/// packages `roots`. `metadata_json` is `cargo metadata --format-version 1` output (with the
/// resolve graph, filtered to the image's platform).
pub fn spdx(
    metadata_json: &Value,
    cargo_lock: &str,
    roots: &[&str],
    go: &GoModule,
    image: &Metadata,
    digest: &str,
) -> Result<Vec<u8>, Error> {
    let bad = |what: &str| Error::Input(format!("cargo metadata: {what}"));
    let packages = metadata_json["packages"].as_array().ok_or_else(|| bad("no packages"))?;
    let by_id: BTreeMap<&str, Crate> = packages
        .iter()
        .filter_map(|p| {
            Some((
                p["id"].as_str()?,
                Crate {
                    name: p["name"].as_str()?,
                    version: p["version"].as_str()?,
                    source: p["source"].as_str(),
                    license: p["license"].as_str(),
                },
            ))
        })
        .collect();
    let nodes = metadata_json["resolve"]["nodes"].as_array().ok_or_else(|| bad("no resolve graph"))?;
    // id → ids of its normal (not build, not dev) dependencies.
    let edges: BTreeMap<&str, Vec<&str>> = nodes
        .iter()
        .filter_map(|n| {
            let deps = n["deps"]
                .as_array()?
                .iter()
                .filter(|d| d["dep_kinds"].as_array().is_some_and(|kinds| kinds.iter().any(|k| k["kind"].is_null())));
            Some((n["id"].as_str()?, deps.filter_map(|d| d["pkg"].as_str()).collect()))
        })
        .collect();
    let mut todo: Vec<&str> = Vec::new();
    for root in roots {
        let id = by_id
            .iter()
            .find(|(_, c)| c.name == *root && c.source.is_none())
            .map(|(id, _)| *id)
            .ok_or_else(|| bad(&format!("the workspace has no package {root}")))?;
        todo.push(id);
    }
    let root_ids: BTreeSet<&str> = todo.iter().copied().collect();
    let mut reached = BTreeSet::new();
    while let Some(id) = todo.pop() {
        if reached.insert(id) {
            todo.extend(edges.get(id).into_iter().flatten().copied());
        }
    }

    let checksums = lock_checksums(cargo_lock);
    let spdx_id = |c: &Crate| format!("SPDXRef-Crate-{}-{}", sanitize(c.name), sanitize(c.version));
    let mut spdx_packages = Vec::new();
    for id in &reached {
        let c = by_id.get(id).ok_or_else(|| bad(&format!("{id} is in the graph but not among the packages")))?;
        let from_crates_io = c.source.is_some_and(|s| s.contains("crates.io-index"));
        let mut package = json!({
            "name": c.name,
            "SPDXID": spdx_id(c),
            "versionInfo": c.version,
            "downloadLocation": if from_crates_io {
                format!("https://crates.io/api/v1/crates/{}/{}/download", c.name, c.version)
            } else if c.source.is_none() {
                image.source.clone()
            } else {
                "NOASSERTION".to_string()
            },
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": c.license.map(spdx_license).unwrap_or_else(|| "NOASSERTION".into()),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": format!("pkg:cargo/{}@{}", c.name, c.version),
            }],
        });
        if let Some(source) = c.source {
            let key = (c.name.to_string(), c.version.to_string(), source.to_string());
            let checksum = checksums.get(&key).ok_or_else(|| {
                Error::Input(format!("Cargo.lock has no checksum for {} {} from {source}", c.name, c.version))
            })?;
            package["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": checksum}]);
        }
        spdx_packages.push(package);
    }
    let hex = digest.trim_start_matches("sha256:");
    spdx_packages.push(json!({
        "name": image.title,
        "SPDXID": "SPDXRef-Image",
        "versionInfo": image.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": image.licenses.clone().unwrap_or_else(|| "NOASSERTION".into()),
        "copyrightText": "NOASSERTION",
        "checksums": [{"algorithm": "SHA256", "checksumValue": hex}],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:oci/{}@sha256%3A{hex}", image.title),
        }],
    }));
    let mut go_package = json!({
        "name": go.path,
        "SPDXID": "SPDXRef-Go-trivy",
        "versionInfo": go.version,
        "downloadLocation": format!("https://proxy.golang.org/{}/@v/{}.zip", go.path, go.version),
        "filesAnalyzed": false,
        "primaryPackagePurpose": "APPLICATION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "Apache-2.0",
        "copyrightText": "NOASSERTION",
        "checksums": [{"algorithm": "SHA256", "checksumValue": go.sha256}],
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": format!("pkg:golang/{}@{}", go.path, go.version),
        }],
        "comment": format!("the binary {} in the image; checksum is the binary's", go.file),
    });
    if let Some(sum) = &go.sum {
        go_package["comment"] = json!(format!("{}; Go module sum {sum}", go_package["comment"].as_str().unwrap_or("")));
    }
    spdx_packages.push(go_package);
    spdx_packages.sort_by(|a, b| a["SPDXID"].as_str().cmp(&b["SPDXID"].as_str()));

    let mut relationships = vec![
        relationship("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"),
        relationship("SPDXRef-Image", "CONTAINS", "SPDXRef-Go-trivy"),
    ];
    for id in &reached {
        let from = &by_id[id];
        if root_ids.contains(id) {
            relationships.push(relationship("SPDXRef-Image", "CONTAINS", &spdx_id(from)));
        }
        for dep in edges.get(id).into_iter().flatten() {
            if let Some(to) = by_id.get(dep) {
                relationships.push(relationship(&spdx_id(from), "DEPENDS_ON", &spdx_id(to)));
            }
        }
    }
    relationships.sort_by_key(|r| r.to_string());
    relationships.dedup();

    let document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}", image.title, image.version),
        "documentNamespace": format!("{}/spdx/{}-{}-{hex}", image.source.trim_end_matches('/'), image.title, image.version),
        "creationInfo": {
            "created": image.created()?,
            "creators": [format!("Tool: tidegate-image-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    });
    serde_json::to_vec_pretty(&document).map_err(|e| Error::Input(format!("SBOM: {e}")))
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

/// SPDX identifiers allow letters, digits, `.` and `-`.
fn sanitize(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '-' }).collect()
}

/// Cargo's old `MIT/Apache-2.0` form is `MIT OR Apache-2.0` in SPDX.
fn spdx_license(license: &str) -> String {
    license.split('/').map(str::trim).collect::<Vec<_>>().join(" OR ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

    fn metadata() -> Value {
        let dep = |pkg: &str, kind: Value| json!({"pkg": pkg, "dep_kinds": [{"kind": kind}]});
        json!({
            "packages": [
                {"id": "path+file:///src/crates/controller#tidegate-controller@0.1.0", "name": "tidegate-controller", "version": "0.1.0", "source": null, "license": "Apache-2.0"},
                {"id": "registry+https://github.com/rust-lang/crates.io-index#serde@1.0.0", "name": "serde", "version": "1.0.0", "source": CRATES_IO, "license": "MIT/Apache-2.0"},
                {"id": "registry+https://github.com/rust-lang/crates.io-index#cc@1.2.0", "name": "cc", "version": "1.2.0", "source": CRATES_IO, "license": "MIT"},
                {"id": "registry+https://github.com/rust-lang/crates.io-index#proptest@1.7.0", "name": "proptest", "version": "1.7.0", "source": CRATES_IO, "license": "MIT"},
            ],
            "resolve": {"nodes": [
                {"id": "path+file:///src/crates/controller#tidegate-controller@0.1.0", "deps": [
                    dep("registry+https://github.com/rust-lang/crates.io-index#serde@1.0.0", Value::Null),
                    dep("registry+https://github.com/rust-lang/crates.io-index#cc@1.2.0", json!("build")),
                    dep("registry+https://github.com/rust-lang/crates.io-index#proptest@1.7.0", json!("dev")),
                ]},
                {"id": "registry+https://github.com/rust-lang/crates.io-index#serde@1.0.0", "deps": []},
            ]},
        })
    }

    const LOCK: &str = r#"version = 4

[[package]]
name = "serde"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "aaaa"

[[package]]
name = "tidegate-controller"
version = "0.1.0"
"#;

    fn image() -> Metadata {
        Metadata {
            source_date_epoch: 0,
            source: "https://github.com/tidegate/tidegate".into(),
            revision: "abc".into(),
            version: "0.1.0".into(),
            title: "tidegate-controller".into(),
            licenses: Some("Apache-2.0".into()),
        }
    }

    fn go() -> GoModule {
        GoModule {
            path: "github.com/aquasecurity/trivy".into(),
            version: "v0.74.0".into(),
            sum: Some("h1:xyz=".into()),
            file: "/usr/local/bin/trivy".into(),
            sha256: "bbbb".into(),
        }
    }

    #[test]
    fn the_sbom_lists_shipped_crates_with_checksums_and_purls_and_trivy() {
        let bytes = spdx(&metadata(), LOCK, &["tidegate-controller"], &go(), &image(), "sha256:cccc").unwrap();
        assert_eq!(bytes, spdx(&metadata(), LOCK, &["tidegate-controller"], &go(), &image(), "sha256:cccc").unwrap());
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        let packages = doc["packages"].as_array().unwrap();
        let names: Vec<&str> = packages.iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert!(!names.contains(&"cc") && !names.contains(&"proptest"), "build and dev dependencies ship nothing");
        let serde = packages.iter().find(|p| p["name"] == "serde").unwrap();
        assert_eq!(serde["checksums"][0]["checksumValue"], "aaaa");
        assert_eq!(serde["externalRefs"][0]["referenceLocator"], "pkg:cargo/serde@1.0.0");
        assert_eq!(serde["licenseDeclared"], "MIT OR Apache-2.0");
        let trivy = packages.iter().find(|p| p["name"] == "github.com/aquasecurity/trivy").unwrap();
        assert_eq!(trivy["versionInfo"], "v0.74.0");
        assert_eq!(trivy["externalRefs"][0]["referenceLocator"], "pkg:golang/github.com/aquasecurity/trivy@v0.74.0");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(r#""relatedSpdxElement": "SPDXRef-Crate-serde-1.0.0""#), "{text}");
    }

    #[test]
    fn a_crate_without_a_locked_checksum_is_an_error() {
        let err = spdx(&metadata(), "", &["tidegate-controller"], &go(), &image(), "sha256:cccc").unwrap_err();
        assert!(err.to_string().contains("no checksum for serde"), "{err}");
        let err = spdx(&metadata(), LOCK, &["kubectl-tidegate"], &go(), &image(), "sha256:cccc").unwrap_err();
        assert!(err.to_string().contains("no package kubectl-tidegate"), "{err}");
    }

    #[test]
    fn the_go_module_version_is_read_from_the_build_information() {
        let binary = b"\x00junk\tpath\tmain\nmod\twrapper\t(devel)\t\ndep\tgithub.com/aquasecurity/trivy\tv0.74.0\th1:abc=\ndep\tother\tv1\n";
        assert_eq!(
            go_module_version(binary, "github.com/aquasecurity/trivy"),
            Some(("v0.74.0".into(), Some("h1:abc=".into())))
        );
        assert_eq!(go_module_version(binary, "github.com/absent/module"), None);
    }
}
