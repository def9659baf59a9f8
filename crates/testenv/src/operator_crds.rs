//! The Trivy Operator's `VulnerabilityReport` CRD, as the operator ships it, for test clusters:
//! Tidegate reads those reports (`spec.triggers.rescan.scanner: trivyOperator`), and its tests
//! write them in the shape the real API server accepts.
//!
//! The YAML comes from the pinned `github.com/aquasecurity/trivy-operator` Go module
//! (`deploy/helm/crds/`), fetched once with `go mod download` and kept in [`operator_crd_dir`];
//! a warm run reads only that file.

use std::fs;
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::Error;
use crate::tools::cache_root;

/// The Trivy Operator's Go module.
pub const TRIVY_OPERATOR_MODULE: &str = "github.com/aquasecurity/trivy-operator";
/// The pinned release of [`TRIVY_OPERATOR_MODULE`].
pub const TRIVY_OPERATOR_VERSION: &str = "v0.29.0";
/// Where the CRDs lie inside the module.
const CRD_DIR_IN_MODULE: &str = "deploy/helm/crds";
/// The CRDs taken from it: (file, CRD name).
pub const OPERATOR_CRDS: [(&str, &str); 1] =
    [("aquasecurity.github.io_vulnerabilityreports.yaml", "vulnerabilityreports.aquasecurity.github.io")];

/// Directory the pinned CRD files are cached in; a new pin gets a new directory.
pub fn operator_crd_dir() -> PathBuf {
    cache_root().join("tools").join(format!("trivy-operator-{TRIVY_OPERATOR_VERSION}")).join("crds")
}

/// Copies the CRD files from the module into [`operator_crd_dir`], unless they are already
/// there, and returns that directory.
pub fn fetch(progress: &mut dyn FnMut(&str)) -> Result<PathBuf, Error> {
    let out = operator_crd_dir();
    if OPERATOR_CRDS.iter().all(|(file, _)| out.join(file).is_file()) {
        progress(&format!("Trivy Operator CRDs already in {}", out.display()));
        return Ok(out);
    }
    progress(&format!("fetching the Trivy Operator {TRIVY_OPERATOR_VERSION} CRDs"));
    fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let module = module_dir(&out)?;
    for (file, _) in OPERATOR_CRDS {
        let from = module.join(CRD_DIR_IN_MODULE).join(file);
        let text = fs::read_to_string(&from).map_err(|e| Error::io(&from, e))?;
        // Written anew rather than copied (the module cache's files are read-only), under a name
        // of this process's own: test binaries may fetch at the same time.
        let temporary = out.join(format!(".{file}.{}.partial", std::process::id()));
        fs::write(&temporary, text).map_err(|e| Error::io(&temporary, e))?;
        let target = out.join(file);
        fs::rename(&temporary, &target).map_err(|e| Error::io(&target, e))?;
    }
    progress(&format!("Trivy Operator CRDs ready in {}", out.display()));
    Ok(out)
}

/// The module's source directory, downloaded through the Go module proxy.
fn module_dir(work: &Path) -> Result<PathBuf, Error> {
    let module = format!("{TRIVY_OPERATOR_MODULE}@{TRIVY_OPERATOR_VERSION}");
    let out = crate::tools::go(work, &["mod", "download", "-json", &module])?;
    let info: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| Error::Tool(format!("cannot read `go mod download -json {module}` output: {e}")))?;
    info["Dir"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| Error::Tool(format!("`go mod download {module}` gave no source directory: {out}")))
}

/// The operator's CRDs ([`fetch`]ed first when they are not cached yet).
pub fn load() -> Result<Vec<CustomResourceDefinition>, Error> {
    let dir = fetch(&mut |line| tracing::info!("{line}"))?;
    OPERATOR_CRDS
        .iter()
        .map(|(file, name)| {
            let path = dir.join(file);
            let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let crd: CustomResourceDefinition = serde_yaml::from_str(&text)?;
            if crd.metadata.name.as_deref() != Some(name) {
                return Err(Error::Manifest(format!("{} is not the CRD {name}", path.display())));
            }
            Ok(crd)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_crd_is_the_operators_namespaced_vulnerability_report() {
        let crds = load().expect("the Trivy Operator CRDs");
        let crd = &crds[0];
        assert_eq!(
            (crd.spec.group.as_str(), crd.spec.names.plural.as_str()),
            ("aquasecurity.github.io", "vulnerabilityreports")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        let version = crd.spec.versions.iter().find(|v| v.name == "v1alpha1").expect("v1alpha1");
        assert!(version.served && version.storage);
        // What Tidegate matches reports by is in the schema the API server validates against.
        let schema = serde_json::to_string(&version.schema).expect("schema");
        for field in ["\"digest\"", "\"updateTimestamp\"", "\"server\""] {
            assert!(schema.contains(field), "{field} in the schema");
        }
        assert!(operator_crd_dir().to_string_lossy().contains(TRIVY_OPERATOR_VERSION));
    }
}
