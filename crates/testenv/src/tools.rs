//! The control-plane binaries: where they are cached, and how they are built from the pinned Go
//! modules with the machine's `go`.
//!
//! Nothing is downloaded but Go modules. `k8s.io/kubernetes` cannot be required as a module as it
//! is (its `go.mod` points the `k8s.io/*` staging modules at local directories), so a small
//! wrapper module replaces each of them with its published `v0.x` version. The list is read from
//! the downloaded `go.mod`, since it changes between releases. etcd's server module has replace
//! directives too, which a wrapper module ignores.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// Kubernetes release the control plane is built from.
pub const KUBERNETES_VERSION: &str = "v1.36.3";
/// Version of the published `k8s.io/*` staging modules that match [`KUBERNETES_VERSION`].
pub const KUBERNETES_STAGING_VERSION: &str = "v0.36.3";
/// etcd release.
pub const ETCD_VERSION: &str = "v3.6.16";
/// kwok release.
pub const KWOK_VERSION: &str = "v0.8.0";

/// Binaries the local control plane needs, all in one directory.
pub const BINARIES: [&str; 6] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
];

/// Name of the kwok stage file (node and pod lifecycle) kept beside the binaries.
pub const KWOK_STAGES: &str = "kwok-stages.yaml";

/// Environment variable naming a directory of prebuilt binaries, checked first.
pub const TOOLS_DIR_ENV: &str = "TIDEGATE_TOOLS_DIR";
/// The controller-runtime envtest variable, honoured too (it must hold all binaries above).
pub const KUBEBUILDER_ASSETS_ENV: &str = "KUBEBUILDER_ASSETS";

/// Where the control-plane binaries are.
#[derive(Clone, Debug)]
pub struct Tools {
    dir: PathBuf,
}

impl Tools {
    /// Finds the binaries: `$TIDEGATE_TOOLS_DIR`, then `$KUBEBUILDER_ASSETS`, then the build cache.
    pub fn locate() -> Result<Self, Error> {
        for var in [TOOLS_DIR_ENV, KUBEBUILDER_ASSETS_ENV] {
            if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                let tools = Self { dir: PathBuf::from(dir) };
                return match tools.check() {
                    Ok(()) => Ok(tools),
                    Err(missing) => Err(Error::ToolsMissing {
                        dir: tools.dir,
                        missing,
                        hint: format!("{var} is set; put the missing files there or unset it"),
                    }),
                };
            }
        }
        let tools = Self { dir: default_dir() };
        tools.check().map(|()| tools).map_err(|missing| Error::ToolsMissing {
            dir: default_dir(),
            missing,
            hint: "run `cargo xtask tools` to build them".into(),
        })
    }

    /// Directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one binary (or of [`KWOK_STAGES`]).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn check(&self) -> Result<(), Vec<String>> {
        let missing: Vec<String> = BINARIES
            .iter()
            .chain(std::iter::once(&KWOK_STAGES))
            .filter(|name| !self.path(name).is_file())
            .map(|name| (*name).to_string())
            .collect();
        if missing.is_empty() { Ok(()) } else { Err(missing) }
    }
}

/// Root of Tidegate's cache: `$TIDEGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/tidegate`, else
/// `~/.cache/tidegate`.
pub fn cache_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("TIDEGATE_CACHE_DIR").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("tidegate");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("tidegate")
}

/// Directory the pinned build is cached in; a new pin gets a new directory.
pub fn default_dir() -> PathBuf {
    cache_root()
        .join("tools")
        .join(format!("k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}"))
        .join("bin")
}

/// Builds every binary into [`default_dir`] unless it is already there, and returns them.
///
/// `progress` receives one line per step. Takes a few minutes cold on two cores; the Go build
/// cache (`go env GOCACHE`) and module cache make a rebuild fast.
pub fn build(progress: &mut dyn FnMut(&str)) -> Result<Tools, Error> {
    let out = default_dir();
    let tools = Tools { dir: out.clone() };
    if tools.check().is_ok() {
        progress(&format!("tools already built in {}", out.display()));
        return Ok(tools);
    }
    go_version()?;
    let work = cache_root().join("tools").join("src");
    fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;

    let kube = work.join("kubernetes");
    progress(&format!("building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl {KUBERNETES_VERSION}"));
    wrapper_module(&kube, "kubernetes")?;
    let upstream_mod = download_go_mod(&kube, &format!("k8s.io/kubernetes@{KUBERNETES_VERSION}"))?;
    for module in staging_modules(&upstream_mod) {
        go(&kube, &["mod", "edit", &format!("-replace={module}={module}@{KUBERNETES_STAGING_VERSION}")])?;
    }
    let kube_cmds = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]
        .map(|c| format!("k8s.io/kubernetes/cmd/{c}"));
    let mut get = vec!["get".to_string()];
    get.extend(kube_cmds.iter().map(|c| format!("{c}@{KUBERNETES_VERSION}")));
    go(&kube, &get.iter().map(String::as_str).collect::<Vec<_>>())?;
    let ldflags = kube_version_ldflags();
    go_build(&kube, &out, &ldflags, &kube_cmds.iter().map(String::as_str).collect::<Vec<_>>())?;

    progress(&format!("building etcd {ETCD_VERSION}"));
    let etcd = work.join("etcd");
    wrapper_module(&etcd, "etcd")?;
    go(&etcd, &["get", &format!("go.etcd.io/etcd/server/v3@{ETCD_VERSION}")])?;
    go_build_to(&etcd, &out.join("etcd"), "-s -w", "go.etcd.io/etcd/server/v3")?;

    progress(&format!("building kwok {KWOK_VERSION}"));
    let kwok = work.join("kwok");
    wrapper_module(&kwok, "kwok")?;
    go(&kwok, &["get", &format!("sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}")])?;
    go_build_to(&kwok, &out.join("kwok"), "-s -w", "sigs.k8s.io/kwok/cmd/kwok")?;
    write_kwok_stages(&kwok, &out.join(KWOK_STAGES))?;

    tools.check().map_err(|missing| Error::ToolsMissing {
        dir: out.clone(),
        missing,
        hint: "the build finished without producing them; see the output above".into(),
    })?;
    progress(&format!("tools ready in {}", out.display()));
    Ok(tools)
}

/// The `k8s.io/*` modules that `k8s.io/kubernetes`'s go.mod replaces with a staging directory.
pub fn staging_modules(go_mod: &str) -> Vec<String> {
    go_mod
        .lines()
        .filter_map(|line| {
            let (module, target) = line.trim().trim_start_matches("replace").trim().split_once("=>")?;
            let module = module.trim();
            (module.starts_with("k8s.io/") && target.trim().starts_with("./staging/"))
                .then(|| module.to_string())
        })
        .collect()
}

fn kube_version_ldflags() -> String {
    let minor = KUBERNETES_VERSION.split('.').nth(1).unwrap_or_default();
    let mut flags = vec!["-s".to_string(), "-w".to_string()];
    for pkg in ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"] {
        flags.push(format!("-X {pkg}.gitVersion={KUBERNETES_VERSION}"));
        flags.push(format!("-X {pkg}.gitMajor=1"));
        flags.push(format!("-X {pkg}.gitMinor={minor}"));
        flags.push(format!("-X {pkg}.gitTreeState=clean"));
    }
    flags.join(" ")
}

fn wrapper_module(dir: &Path, name: &str) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let go_mod = dir.join("go.mod");
    if !go_mod.exists() {
        let text = format!("module tidegate.local/tools/{name}\n\ngo 1.26\n");
        fs::write(&go_mod, text).map_err(|e| Error::io(&go_mod, e))?;
    }
    Ok(())
}

fn download_go_mod(dir: &Path, module: &str) -> Result<String, Error> {
    let out = go(dir, &["mod", "download", "-json", module])?;
    let info: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| Error::Tool(format!("cannot read `go mod download -json {module}` output: {e}")))?;
    let path = info["GoMod"]
        .as_str()
        .ok_or_else(|| Error::Tool(format!("`go mod download {module}` gave no go.mod: {out}")))?;
    fs::read_to_string(path).map_err(|e| Error::io(Path::new(path), e))
}

fn write_kwok_stages(wrapper: &Path, dest: &Path) -> Result<(), Error> {
    let root = go(wrapper, &["list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"])?;
    let stage_dir = PathBuf::from(root.trim()).join("kustomize").join("stage");
    let files = [
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
    ];
    let mut all = String::new();
    for file in files {
        let path = stage_dir.join(file);
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        all.push_str("---\n");
        all.push_str(&text);
        if !text.ends_with('\n') {
            all.push('\n');
        }
    }
    fs::write(dest, all).map_err(|e| Error::io(dest, e))
}

fn go_version() -> Result<String, Error> {
    let out = Command::new("go").arg("version").output().map_err(|e| {
        Error::Tool(format!(
            "cannot run `go` ({e}): install Go 1.26 or newer (Debian: `apt-get install golang-go`, \
             or the toolchain from the Go module proxy) and make sure it is on PATH"
        ))
    })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn go_command(dir: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0");
    cmd
}

fn go(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let output = go_command(dir)
        .args(args)
        .output()
        .map_err(|e| Error::Tool(format!("cannot run go {}: {e}", args.join(" "))))?;
    if !output.status.success() {
        return Err(Error::Tool(format!(
            "`go {}` in {} failed ({}):\n{}",
            args.join(" "),
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn go_build(dir: &Path, out_dir: &Path, ldflags: &str, packages: &[&str]) -> Result<(), Error> {
    let out = format!("{}/", out_dir.display());
    let mut args = vec!["build", "-trimpath", "-ldflags", ldflags, "-o", &out];
    args.extend_from_slice(packages);
    go(dir, &args).map(drop)
}

fn go_build_to(dir: &Path, out: &Path, ldflags: &str, package: &str) -> Result<(), Error> {
    let out = out.display().to_string();
    go(dir, &["build", "-trimpath", "-ldflags", ldflags, "-o", &out, package]).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_modules_are_read_from_the_replace_block() {
        let go_mod = "module k8s.io/kubernetes\n\nrequire (\n\tk8s.io/api v0.0.0\n)\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n\nreplace k8s.io/kms => ./staging/src/k8s.io/kms\n";
        assert_eq!(staging_modules(go_mod), ["k8s.io/api", "k8s.io/client-go", "k8s.io/kms"]);
    }

    #[test]
    fn version_ldflags_name_the_pinned_release() {
        let flags = kube_version_ldflags();
        assert!(flags.contains(&format!("k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}")));
        assert!(flags.contains("gitMinor=36"));
    }
}
