//! Argo Rollouts' controller, the peer that `cargo xtask bench scale --peer argo` measures beside
//! Tidegate: `rollouts-controller` built from the pinned Go module
//! ([`ARGO_ROLLOUTS_VERSION`](crate::tools::ARGO_ROLLOUTS_VERSION)) like the other tools, with
//! the CRDs and the ClusterRole it ships, copied from the same module.
//!
//! Argo Rollouts' `go.mod` points the `k8s.io/*` modules at fixed versions with `replace`
//! directives, which a wrapper module ignores, so they are copied into the wrapper; and it
//! requires a newer patch release of Go than a machine may have, so the go command is allowed to
//! fetch that toolchain from the Go module proxy (`golang.org/toolchain`) for this build only.
//! Everything lands in a directory of its own ([`argo_rollouts_dir`]), built once and reused.

use std::fs;
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

use crate::Error;
use crate::scanner_tools::replace_directives;
use crate::tools::{ARGO_ROLLOUTS_VERSION, cache_root, go_switching_toolchain, wrapper_module};

/// The Go module.
pub const ARGO_ROLLOUTS_MODULE: &str = "github.com/argoproj/argo-rollouts";
/// Environment variable naming a directory laid out like [`argo_rollouts_dir`], checked first.
pub const ARGO_ROLLOUTS_DIR_ENV: &str = "TIDEGATE_ARGO_ROLLOUTS_DIR";

/// The controller binary, relative to the directory.
const CONTROLLER: &str = "bin/rollouts-controller";
/// The ClusterRole the controller runs with in a cluster install, relative to the directory and
/// to the module.
const CLUSTER_ROLE: &str = "manifests/role/argo-rollouts-clusterrole.yaml";
/// The CRDs, relative to the directory and to the module: every informer of the controller needs
/// its resource served.
const CRDS: [&str; 5] = [
    "manifests/crds/rollout-crd.yaml",
    "manifests/crds/experiment-crd.yaml",
    "manifests/crds/analysis-run-crd.yaml",
    "manifests/crds/analysis-template-crd.yaml",
    "manifests/crds/cluster-analysis-template-crd.yaml",
];

/// Where the built controller and its manifests are.
#[derive(Clone, Debug)]
pub struct ArgoRollouts {
    dir: PathBuf,
}

impl ArgoRollouts {
    /// Finds them: `$TIDEGATE_ARGO_ROLLOUTS_DIR`, then the build cache ([`argo_rollouts_dir`]).
    pub fn locate() -> Result<Self, Error> {
        if let Some(dir) = crate::tools::env_dir(ARGO_ROLLOUTS_DIR_ENV) {
            let hint = format!("{ARGO_ROLLOUTS_DIR_ENV} is set; put the missing files there or unset it");
            return crate::tools::complete(dir, &files(), &hint).map(|dir| Self { dir });
        }
        let hint = "run `cargo xtask bench scale --peer argo`, which builds it";
        crate::tools::complete(argo_rollouts_dir(), &files(), hint).map(|dir| Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `rollouts-controller`.
    pub fn controller(&self) -> PathBuf {
        self.dir.join(CONTROLLER)
    }

    /// The ClusterRole `argo-rollouts` (YAML), as the release's cluster install grants it.
    pub fn cluster_role_yaml(&self) -> Result<String, Error> {
        let path = self.dir.join(CLUSTER_ROLE);
        fs::read_to_string(&path).map_err(|e| Error::io(&path, e))
    }

    /// The CRDs of the release: Rollout, Experiment, AnalysisRun, AnalysisTemplate and
    /// ClusterAnalysisTemplate.
    pub fn crds(&self) -> Result<Vec<CustomResourceDefinition>, Error> {
        CRDS.iter()
            .map(|file| {
                let path = self.dir.join(file);
                let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                Ok(serde_yaml::from_str(&text)?)
            })
            .collect()
    }
}

/// Every file [`ArgoRollouts`] needs, relative to its directory.
fn files() -> Vec<&'static str> {
    [CONTROLLER, CLUSTER_ROLE].into_iter().chain(CRDS).collect()
}

/// Directory the pinned release is cached in; a new pin gets a new directory.
pub fn argo_rollouts_dir() -> PathBuf {
    cache_root().join("tools").join(format!("argo-rollouts-{ARGO_ROLLOUTS_VERSION}"))
}

/// Builds `rollouts-controller` into [`argo_rollouts_dir`] and copies the CRDs and ClusterRole
/// beside it, unless they are there already (or `$TIDEGATE_ARGO_ROLLOUTS_DIR` holds them). The
/// wrapper module is `tools/src/argo-rollouts`; the version is stamped in as the release's
/// Makefile does, so `rollouts-controller --version` names the release (with `+unknown` when the
/// module proxy reports no commit). Cold on two busy cores it took about seven minutes; with the
/// Go caches warm, 20 seconds.
pub fn build_argo_rollouts(progress: &mut dyn FnMut(&str)) -> Result<ArgoRollouts, Error> {
    if let Ok(found) = ArgoRollouts::locate() {
        progress(&format!("Argo Rollouts already built in {}", found.dir().display()));
        return Ok(found);
    }
    let out = argo_rollouts_dir();
    let work = cache_root().join("tools").join("src").join("argo-rollouts");
    progress(&format!("building Argo Rollouts {ARGO_ROLLOUTS_VERSION} (rollouts-controller)"));
    wrapper_module(&work, "argo-rollouts")?;
    let module = format!("{ARGO_ROLLOUTS_MODULE}@{ARGO_ROLLOUTS_VERSION}");
    let info = download(&work, &module)?;
    let upstream_mod = read(&info, "GoMod", &module)?;
    for (from, to) in replace_directives(&fs::read_to_string(&upstream_mod).map_err(|e| Error::io(&upstream_mod, e))?) {
        go_switching_toolchain(&work, &["mod", "edit", &format!("-replace={from}={to}")])?;
    }
    let cmd = format!("{ARGO_ROLLOUTS_MODULE}/cmd/rollouts-controller");
    go_switching_toolchain(&work, &["get", &format!("{cmd}@{ARGO_ROLLOUTS_VERSION}")])?;
    let commit = info["Origin"]["Hash"].as_str().unwrap_or_default();
    let ldflags = version_ldflags(commit);
    let binary = out.join(CONTROLLER);
    if let Some(bin) = binary.parent() {
        fs::create_dir_all(bin).map_err(|e| Error::io(bin, e))?;
    }
    let partial = binary.with_extension(format!("partial-{}", std::process::id()));
    go_switching_toolchain(
        &work,
        &["build", "-trimpath", "-ldflags", &ldflags, "-o", &partial.display().to_string(), &cmd],
    )?;
    fs::rename(&partial, &binary).map_err(|e| Error::io(&binary, e))?;

    // The manifests, written anew (the module cache's files are read-only).
    let source = read(&info, "Dir", &module)?;
    for file in files().into_iter().filter(|f| *f != CONTROLLER) {
        let (from, to) = (source.join(file), out.join(file));
        let text = fs::read_to_string(&from).map_err(|e| Error::io(&from, e))?;
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        fs::write(&to, text).map_err(|e| Error::io(&to, e))?;
    }
    let built = ArgoRollouts::locate()?;
    progress(&format!("Argo Rollouts ready in {}", built.dir().display()));
    Ok(built)
}

/// `go mod download -json module` (fetching the module's toolchain if it needs a newer one).
fn download(work: &Path, module: &str) -> Result<serde_json::Value, Error> {
    let out = go_switching_toolchain(work, &["mod", "download", "-json", module])?;
    serde_json::from_str(&out)
        .map_err(|e| Error::Tool(format!("cannot read `go mod download -json {module}` output: {e}")))
}

fn read(info: &serde_json::Value, field: &str, module: &str) -> Result<PathBuf, Error> {
    info[field]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| Error::Tool(format!("`go mod download -json {module}` gave no {field}: {info}")))
}

/// The `-ldflags` of the release build (`Makefile`): the version, commit and a clean tree, so the
/// binary reports [`ARGO_ROLLOUTS_VERSION`].
fn version_ldflags(commit: &str) -> String {
    let package = format!("{ARGO_ROLLOUTS_MODULE}/utils/version");
    let mut flags = format!(
        "-s -w -X {package}.version={} -X {package}.gitTag={ARGO_ROLLOUTS_VERSION} -X {package}.gitTreeState=clean",
        ARGO_ROLLOUTS_VERSION.trim_start_matches('v')
    );
    if !commit.is_empty() {
        flags.push_str(&format!(" -X {package}.gitCommit={commit}"));
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_named_after_the_pin_and_holds_binary_crds_and_role() {
        assert!(argo_rollouts_dir().to_string_lossy().ends_with(&format!("argo-rollouts-{ARGO_ROLLOUTS_VERSION}")));
        let files = files();
        assert!(files.contains(&"bin/rollouts-controller"));
        assert!(files.contains(&"manifests/crds/rollout-crd.yaml"));
        assert!(files.iter().any(|f| f.ends_with("clusterrole.yaml")));
        assert_eq!(files.len(), 2 + CRDS.len());
    }

    #[test]
    fn the_release_version_is_stamped_in() {
        let flags = version_ldflags("0123456789abcdef");
        let bare = ARGO_ROLLOUTS_VERSION.trim_start_matches('v');
        assert!(flags.contains(&format!("argo-rollouts/utils/version.version={bare} ")), "{flags}");
        assert!(flags.contains(&format!("utils/version.gitTag={ARGO_ROLLOUTS_VERSION} ")));
        assert!(flags.contains("gitTreeState=clean") && flags.contains("gitCommit=0123456789abcdef"));
        assert!(!version_ldflags("").contains("gitCommit"));
    }
}
