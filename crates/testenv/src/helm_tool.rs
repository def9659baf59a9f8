//! `helm`, built from its pinned Go module (`helm.sh/helm/v3`) like the other tools, for the
//! chart's tests: `helm lint`, `helm template` and `helm install` into the local environment.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Error;
use crate::tools::{cache_root, go};

/// The pinned release of `helm.sh/helm/v3`.
pub const HELM_VERSION: &str = "v3.22.0";
/// Overrides where `helm` is looked for.
pub const HELM_DIR_ENV: &str = "TIDEGATE_HELM_DIR";

/// Directory the pinned `helm` is cached in.
pub fn helm_dir() -> PathBuf {
    cache_root().join("tools").join(format!("helm-{HELM_VERSION}")).join("bin")
}

/// The `helm` binary: `$TIDEGATE_HELM_DIR/helm`, else the build cache's.
pub fn locate() -> Result<PathBuf, Error> {
    let dir = crate::tools::env_dir(HELM_DIR_ENV).unwrap_or_else(helm_dir);
    crate::tools::complete(dir, &["helm"], "run `cargo xtask tools` to build it").map(|dir| dir.join("helm"))
}

/// Builds `helm` into [`helm_dir`] unless it is there: a wrapper module that requires
/// `helm.sh/helm/v3@HELM_VERSION`, built with `CGO_ENABLED=0` and the version stamped in as
/// helm's release build does.
pub fn build_helm(progress: &mut dyn FnMut(&str)) -> Result<PathBuf, Error> {
    let out = helm_dir();
    let helm = out.join("helm");
    if helm.is_file() {
        progress(&format!("helm already built in {}", out.display()));
        return Ok(helm);
    }
    progress(&format!("building helm {HELM_VERSION}"));
    let work = cache_root().join("tools").join("src").join("helm");
    fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let go_mod = work.join("go.mod");
    if !go_mod.exists() {
        fs::write(&go_mod, "module tidegate.local/tools/helm\n\ngo 1.26\n").map_err(|e| Error::io(&go_mod, e))?;
    }
    go(&work, &["get", &format!("helm.sh/helm/v3/cmd/helm@{HELM_VERSION}")])?;
    let ldflags = format!("-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION}");
    let target = helm.display().to_string();
    go(&work, &["build", "-trimpath", "-ldflags", &ldflags, "-o", &target, "helm.sh/helm/v3/cmd/helm"])?;
    progress(&format!("helm ready in {}", out.display()));
    Ok(helm)
}

/// Runs `helm` with `args`, `KUBECONFIG` set to `kubeconfig` when given and Helm's own state kept
/// under `home`; returns (success, stdout, stderr).
pub fn run(helm: &Path, home: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(helm);
    cmd.args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG");
    if let Some(kubeconfig) = kubeconfig {
        cmd.env("KUBECONFIG", kubeconfig);
    }
    match cmd.output() {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => (false, String::new(), format!("cannot run {}: {e}", helm.display())),
    }
}
