//! The control-plane binaries: where they are cached, and how they are built from the pinned Go
//! modules with the machine's `go`.
//!
//! Nothing is downloaded but Go modules. `k8s.io/kubernetes` cannot be required as a module as it
//! is (its `go.mod` points the `k8s.io/*` staging modules at local directories), so a small
//! wrapper module replaces each of them with its published `v0.x` version. The list is read from
//! the downloaded `go.mod`, since it changes between releases. etcd's server module has replace
//! directives too, which a wrapper module ignores.
//!
//! The supply-chain tools ([`SupplyChainTools`]: the CNCF distribution `registry`, `crane`,
//! `notation` and our own `ocireg`, whose Go source is in `crates/testenv/go/ocireg`) are built the
//! same way into a directory of their own, so that the control-plane cache stays valid when one
//! of them is re-pinned.

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

/// CNCF distribution registry release (`github.com/distribution/distribution/v3/cmd/registry`).
pub const DISTRIBUTION_VERSION: &str = "v3.1.2";
/// go-containerregistry release: `crane`, and the `pkg/registry` that `ocireg` is built on (the
/// version is also required in `crates/testenv/go/ocireg/go.mod`).
pub const GO_CONTAINERREGISTRY_VERSION: &str = "v0.22.1";
/// Notary Project `notation` CLI release.
pub const NOTATION_VERSION: &str = "v1.3.2";
/// CoreDNS release the real node's cluster DNS is built from (`github.com/coredns/coredns`).
pub const COREDNS_VERSION: &str = "v1.15.0";
/// Argo Rollouts release (`github.com/argoproj/argo-rollouts`), the peer `cargo xtask bench scale
/// --peer argo` measures beside Tidegate ([`crate::argo_rollouts`]).
pub const ARGO_ROLLOUTS_VERSION: &str = "v1.10.2";

/// Binaries the local control plane needs, all in one directory.
pub const BINARIES: [&str; 6] =
    ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "kubectl"];

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
        let files: Vec<&str> = BINARIES.iter().copied().chain(std::iter::once(KWOK_STAGES)).collect();
        for var in [TOOLS_DIR_ENV, KUBEBUILDER_ASSETS_ENV] {
            if let Some(dir) = env_dir(var) {
                return complete(dir, &files, &format!("{var} is set; put the missing files there or unset it"))
                    .map(|dir| Self { dir });
            }
        }
        complete(default_dir(), &files, "run `cargo xtask tools` to build them").map(|dir| Self { dir })
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
        let files: Vec<&str> = BINARIES.iter().copied().chain(std::iter::once(KWOK_STAGES)).collect();
        missing(&self.dir, &files)
    }
}

/// The supply-chain tools: registries, `crane` and `notation`, all in one directory.
pub const SUPPLY_CHAIN_BINARIES: [&str; 4] = ["registry", "crane", "notation", "ocireg"];

/// Environment variable naming a directory that holds all of [`SUPPLY_CHAIN_BINARIES`], checked
/// first. [`TOOLS_DIR_ENV`] is used too when its directory holds them all.
pub const SUPPLY_CHAIN_TOOLS_DIR_ENV: &str = "TIDEGATE_SUPPLY_CHAIN_TOOLS_DIR";

/// Source of `ocireg`, our small OCI registry with the referrers API, compiled into this crate so
/// that a change to it gets a new cache directory.
pub mod ocireg_source {
    /// `main.go`.
    pub const MAIN_GO: &str = include_str!("../go/ocireg/main.go");
    /// `go.mod`.
    pub const GO_MOD: &str = include_str!("../go/ocireg/go.mod");
    /// `go.sum`.
    pub const GO_SUM: &str = include_str!("../go/ocireg/go.sum");

    /// A short fingerprint of the three files (FNV-1a), part of the cache directory's name.
    pub fn fingerprint() -> String {
        super::fingerprint(&[MAIN_GO, GO_MOD, GO_SUM])
    }
}

/// Source of the real node's CoreDNS: an external build of `coremain` with only the plugins the
/// cluster DNS needs (`crates/testenv/go/coredns`), compiled into this crate so that a change to
/// the plugin list gets a new cache directory.
pub mod coredns_source {
    /// `main.go`.
    pub const MAIN_GO: &str = include_str!("../go/coredns/main.go");

    /// A short fingerprint of `main.go` and [`super::COREDNS_VERSION`], part of the cache
    /// directory's name.
    pub fn fingerprint() -> String {
        super::fingerprint(&[MAIN_GO, super::COREDNS_VERSION])
    }
}

/// Source of `azure-standin`, the local stand-in of Azure Resource Manager for Azure Container
/// Apps, and of its fidelity test (`crates/testenv/go/azure`), compiled into this crate so that a
/// change to any of it gets a new cache directory ([`azure_dir`]).
pub mod azure_source {
    /// Module path of the Go module.
    pub const MODULE: &str = "tidegate.dev/testenv/azure";
    /// Every file of the module: path relative to the module root, and contents.
    pub const FILES: [(&str, &str); 26] = [
        ("go.mod", include_str!("../go/azure/go.mod")),
        ("go.sum", include_str!("../go/azure/go.sum")),
        ("main.go", include_str!("../go/azure/main.go")),
        ("server.go", include_str!("../go/azure/server.go")),
        ("apps.go", include_str!("../go/azure/apps.go")),
        ("jobs.go", include_str!("../go/azure/jobs.go")),
        ("identity.go", include_str!("../go/azure/identity.go")),
        ("control.go", include_str!("../go/azure/control.go")),
        ("ingress.go", include_str!("../go/azure/ingress.go")),
        ("validate.go", include_str!("../go/azure/validate.go")),
        ("defaults.go", include_str!("../go/azure/defaults.go")),
        ("acr.go", include_str!("../go/azure/acr.go")),
        ("resourcegraph.go", include_str!("../go/azure/resourcegraph.go")),
        ("keyvault.go", include_str!("../go/azure/keyvault.go")),
        ("spec.go", include_str!("../go/azure/spec.go")),
        ("spec/CommonDefinitions.json", include_str!("../go/azure/spec/CommonDefinitions.json")),
        ("spec/ContainerApps.json", include_str!("../go/azure/spec/ContainerApps.json")),
        ("spec/ContainerAppsRevisions.json", include_str!("../go/azure/spec/ContainerAppsRevisions.json")),
        ("spec/Jobs.json", include_str!("../go/azure/spec/Jobs.json")),
        ("fidelity/doc.go", include_str!("../go/azure/fidelity/doc.go")),
        ("fidelity/fidelity_test.go", include_str!("../go/azure/fidelity/fidelity_test.go")),
        ("fidelity/poll_test.go", include_str!("../go/azure/fidelity/poll_test.go")),
        ("fidelity/acr_test.go", include_str!("../go/azure/fidelity/acr_test.go")),
        ("fidelity/resourcegraph_test.go", include_str!("../go/azure/fidelity/resourcegraph_test.go")),
        ("fidelity/keyvault_test.go", include_str!("../go/azure/fidelity/keyvault_test.go")),
        ("fidelity/acr_auth_test.go", include_str!("../go/azure/fidelity/acr_auth_test.go")),
    ];

    /// A short fingerprint of every file, part of the cache directory's name.
    pub fn fingerprint() -> String {
        let parts: Vec<&str> = FILES.iter().flat_map(|(name, text)| [*name, *text]).collect();
        super::fingerprint(&parts)
    }
}

/// The armappcontainers SDK release `azure-standin` decodes requests with (also required in
/// `crates/testenv/go/azure/go.mod`).
pub const ARMAPPCONTAINERS_VERSION: &str = "v3.1.0";

/// The Azure stand-in's binaries: `azure-standin` and its fidelity test, in a directory of their
/// own ([`azure_dir`]).
pub const AZURE_BINARIES: [&str; 2] = ["azure-standin", "azure-standin-fidelity"];

/// Environment variable naming a directory that holds all of [`AZURE_BINARIES`], checked first.
pub const AZURE_TOOLS_DIR_ENV: &str = "TIDEGATE_AZURE_TOOLS_DIR";

/// Where the Azure stand-in's binaries are.
#[derive(Clone, Debug)]
pub struct AzureTools {
    dir: PathBuf,
}

impl AzureTools {
    /// Finds the binaries: `$TIDEGATE_AZURE_TOOLS_DIR`, then the build cache ([`azure_dir`]).
    pub fn locate() -> Result<Self, Error> {
        if let Some(dir) = env_dir(AZURE_TOOLS_DIR_ENV) {
            let hint = format!("{AZURE_TOOLS_DIR_ENV} is set; put the missing files there or unset it");
            return complete(dir, &AZURE_BINARIES, &hint).map(|dir| Self { dir });
        }
        complete(azure_dir(), &AZURE_BINARIES, "run `cargo xtask tools` to build them").map(|dir| Self { dir })
    }

    /// Directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `azure-standin`.
    pub fn standin(&self) -> PathBuf {
        self.dir.join("azure-standin")
    }

    /// `azure-standin-fidelity`, the fidelity test (`go test -c`), run against a running stand-in.
    pub fn fidelity(&self) -> PathBuf {
        self.dir.join("azure-standin-fidelity")
    }
}

/// Directory the Azure stand-in is cached in; a change to its source gets a new directory.
pub fn azure_dir() -> PathBuf {
    cache_root()
        .join("tools")
        .join(format!("azure-standin_armappcontainers-{ARMAPPCONTAINERS_VERSION}_{}", azure_source::fingerprint()))
        .join("bin")
}

/// Builds `azure-standin` and `azure-standin-fidelity` into [`azure_dir`] unless they are already
/// there (or `$TIDEGATE_AZURE_TOOLS_DIR` holds them). The module is written out to
/// `tools/src/azure-standin` in the cache and built with `go build -trimpath` and
/// `go test -c -trimpath`; about a minute cold.
pub fn build_azure_tools(progress: &mut dyn FnMut(&str)) -> Result<AzureTools, Error> {
    // One build at a time in this process; other processes build in their own source directory
    // and rename the results into place, so concurrent builds cannot see half a binary.
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Ok(tools) = AzureTools::locate() {
        progress(&format!("Azure stand-in already built in {}", tools.dir().display()));
        return Ok(tools);
    }
    go_version()?;
    let out = azure_dir();
    fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let tools = AzureTools { dir: out.clone() };
    progress(&format!("building azure-standin (armappcontainers {ARMAPPCONTAINERS_VERSION})"));
    let dir = cache_root().join("tools").join("src").join(format!("azure-standin-{}", std::process::id()));
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    for (name, text) in azure_source::FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    }
    let partial = |path: PathBuf| path.with_extension(format!("partial-{}", std::process::id()));
    let (standin, fidelity) = (partial(tools.standin()), partial(tools.fidelity()));
    let built = go_build_to(&dir, &standin, "-s -w", ".").and_then(|()| {
        go(&dir, &["test", "-c", "-trimpath", "-o", &fidelity.display().to_string(), "./fidelity"]).map(drop)
    });
    let _ = fs::remove_dir_all(&dir);
    built?;
    for (from, to) in [(standin, tools.standin()), (fidelity, tools.fidelity())] {
        fs::rename(&from, &to).map_err(|e| Error::io(&to, e))?;
    }
    missing(&out, &AZURE_BINARIES).map_err(|missing| Error::ToolsMissing {
        dir: out.clone(),
        missing,
        hint: "the build finished without producing them; see the output above".into(),
    })?;
    progress(&format!("Azure stand-in ready in {}", out.display()));
    Ok(tools)
}

/// A short fingerprint (FNV-1a, 32 bits in hex) of `parts`, for cache directory names.
pub(crate) fn fingerprint(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        let separator = if i == 0 { "" } else { "\0" };
        for byte in separator.bytes().chain(part.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{:08x}", hash >> 32)
}

/// Where the supply-chain tools are: the distribution `registry`, `crane`, `notation` and
/// `ocireg`.
#[derive(Clone, Debug)]
pub struct SupplyChainTools {
    dir: PathBuf,
}

impl SupplyChainTools {
    /// Finds the binaries: `$TIDEGATE_SUPPLY_CHAIN_TOOLS_DIR`, then `$TIDEGATE_TOOLS_DIR` if it
    /// holds all of them, then the build cache ([`supply_chain_dir`]).
    pub fn locate() -> Result<Self, Error> {
        if let Some(dir) = env_dir(SUPPLY_CHAIN_TOOLS_DIR_ENV) {
            let hint = format!("{SUPPLY_CHAIN_TOOLS_DIR_ENV} is set; put the missing files there or unset it");
            return complete(dir, &SUPPLY_CHAIN_BINARIES, &hint).map(|dir| Self { dir });
        }
        if let Some(dir) = env_dir(TOOLS_DIR_ENV).filter(|dir| missing(dir, &SUPPLY_CHAIN_BINARIES).is_ok()) {
            return Ok(Self { dir });
        }
        complete(supply_chain_dir(), &SUPPLY_CHAIN_BINARIES, "run `cargo xtask tools` to build them")
            .map(|dir| Self { dir })
    }

    /// Directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of one binary.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The CNCF distribution registry.
    pub fn registry(&self) -> PathBuf {
        self.path("registry")
    }

    /// `crane`.
    pub fn crane(&self) -> PathBuf {
        self.path("crane")
    }

    /// `notation`.
    pub fn notation(&self) -> PathBuf {
        self.path("notation")
    }

    /// `ocireg`, the registry with the OCI 1.1 referrers API.
    pub fn ocireg(&self) -> PathBuf {
        self.path("ocireg")
    }

    /// Runs `notation verify --insecure-registry reference` in a fresh notation home that trusts
    /// `identity`'s root with its trust policy. Returns whether it verified, and what it printed.
    pub fn notation_verify(&self, identity: &crate::pki::CodeSigningFiles, reference: &str) -> (bool, String) {
        let Ok(home) = tempfile::tempdir() else { return (false, "cannot create a notation home".into()) };
        let run = |args: &[&str]| match Command::new(self.notation())
            .args(args)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .output()
        {
            Ok(output) => (
                output.status.success(),
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
            ),
            Err(e) => (false, format!("running {}: {e}", self.notation().display())),
        };
        let root = identity.root.display().to_string();
        // The root lies in `x509/ca/<store>/`, the store its trust policy names.
        let store = identity.root.parent().and_then(Path::file_name).map(|n| n.to_string_lossy().into_owned());
        let store = store.unwrap_or_default();
        let policy = identity.trust_policy.display().to_string();
        for setup in
            [&["cert", "add", "--type", "ca", "--store", &store, &root][..], &["policy", "import", "--force", &policy]]
        {
            let (ok, out) = run(setup);
            if !ok {
                return (false, format!("notation {}: {out}", setup.join(" ")));
            }
        }
        run(&["verify", "--insecure-registry", reference])
    }

    fn check(&self) -> Result<(), Vec<String>> {
        missing(&self.dir, &SUPPLY_CHAIN_BINARIES)
    }
}

/// Binaries of the real node: kubelet and kube-proxy, built from [`KUBERNETES_VERSION`], and
/// CoreDNS ([`COREDNS_VERSION`], [`coredns_source`]), in a directory of their own ([`node_dir`])
/// so that the control plane's cache stays valid.
pub const NODE_BINARIES: [&str; 3] = ["kubelet", "kube-proxy", "coredns"];

/// Environment variable naming a directory that holds all of [`NODE_BINARIES`], checked first.
pub const NODE_TOOLS_DIR_ENV: &str = "TIDEGATE_NODE_TOOLS_DIR";

/// Where the real node's binaries are (kubelet, kube-proxy, CoreDNS).
#[derive(Clone, Debug)]
pub struct NodeTools {
    dir: PathBuf,
}

impl NodeTools {
    /// Finds the binaries: `$TIDEGATE_NODE_TOOLS_DIR`, then the build cache ([`node_dir`]).
    pub fn locate() -> Result<Self, Error> {
        if let Some(dir) = env_dir(NODE_TOOLS_DIR_ENV) {
            let hint = format!("{NODE_TOOLS_DIR_ENV} is set; put the missing files there or unset it");
            return complete(dir, &NODE_BINARIES, &hint).map(|dir| Self { dir });
        }
        complete(node_dir(), &NODE_BINARIES, "run `cargo xtask tools` to build them").map(|dir| Self { dir })
    }

    /// Directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `kubelet`.
    pub fn kubelet(&self) -> PathBuf {
        self.dir.join("kubelet")
    }

    /// `kube-proxy`.
    pub fn kube_proxy(&self) -> PathBuf {
        self.dir.join("kube-proxy")
    }

    /// `coredns`, with only the plugins of [`coredns_source`].
    pub fn coredns(&self) -> PathBuf {
        self.dir.join("coredns")
    }
}

/// A non-empty directory named by environment variable `var`.
pub(crate) fn env_dir(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The files of `names` that `dir` lacks.
pub(crate) fn missing(dir: &Path, names: &[&str]) -> Result<(), Vec<String>> {
    let missing: Vec<String> =
        names.iter().filter(|name| !dir.join(name).is_file()).map(|name| (*name).to_string()).collect();
    if missing.is_empty() { Ok(()) } else { Err(missing) }
}

/// `dir` when it holds every file of `names`; otherwise which are missing and what to do.
pub(crate) fn complete(dir: PathBuf, names: &[&str], hint: &str) -> Result<PathBuf, Error> {
    match missing(&dir, names) {
        Ok(()) => Ok(dir),
        Err(missing) => Err(Error::ToolsMissing { dir, missing, hint: hint.to_string() }),
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

/// Directory the pinned supply-chain tools are cached in; a new pin (or a change to `ocireg`'s
/// source) gets a new directory.
pub fn supply_chain_dir() -> PathBuf {
    cache_root()
        .join("tools")
        .join(format!(
            "supply-chain_registry-{DISTRIBUTION_VERSION}_crane-{GO_CONTAINERREGISTRY_VERSION}_notation-{NOTATION_VERSION}_ocireg-{}",
            ocireg_source::fingerprint()
        ))
        .join("bin")
}

/// Directory the real node's binaries (kubelet and kube-proxy [`KUBERNETES_VERSION`], CoreDNS
/// [`COREDNS_VERSION`] with [`coredns_source`]) are cached in; a new pin gets a new directory.
pub fn node_dir() -> PathBuf {
    cache_root()
        .join("tools")
        .join(format!("node-{KUBERNETES_VERSION}_coredns-{COREDNS_VERSION}-{}", coredns_source::fingerprint()))
        .join("bin")
}

/// Builds kubelet, kube-proxy and CoreDNS into [`node_dir`], those that are not already there
/// (unless `$TIDEGATE_NODE_TOOLS_DIR` holds them all). kubelet's and kube-proxy's wrapper module is
/// `tools/src/kubernetes-node`, beside the control plane's, and shares the Go module and build
/// caches; CoreDNS's is `tools/src/coredns`, our `main.go` with the plugins it needs.
pub fn build_node_tools(progress: &mut dyn FnMut(&str)) -> Result<NodeTools, Error> {
    if let Ok(tools) = NodeTools::locate() {
        progress(&format!("node tools already built in {}", tools.dir().display()));
        return Ok(tools);
    }
    go_version()?;
    let out = node_dir();
    fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let tools = NodeTools { dir: out.clone() };
    if !tools.kubelet().is_file() || !tools.kube_proxy().is_file() {
        let dir = cache_root().join("tools").join("src").join("kubernetes-node");
        progress(&format!("building kubelet and kube-proxy {KUBERNETES_VERSION}"));
        wrapper_module(&dir, "kubernetes-node")?;
        let upstream_mod = download_go_mod(&dir, &format!("k8s.io/kubernetes@{KUBERNETES_VERSION}"))?;
        for module in staging_modules(&upstream_mod) {
            go(&dir, &["mod", "edit", &format!("-replace={module}={module}@{KUBERNETES_STAGING_VERSION}")])?;
        }
        let cmds = ["kubelet", "kube-proxy"].map(|c| format!("k8s.io/kubernetes/cmd/{c}"));
        let mut get = vec!["get".to_string()];
        get.extend(cmds.iter().map(|c| format!("{c}@{KUBERNETES_VERSION}")));
        go(&dir, &get.iter().map(String::as_str).collect::<Vec<_>>())?;
        go_build(&dir, &out, &kube_version_ldflags(), &cmds.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    if !tools.coredns().is_file() {
        progress(&format!("building CoreDNS {COREDNS_VERSION} (plugins bind, ready, errors, log, kubernetes)"));
        let dir = cache_root().join("tools").join("src").join("coredns");
        wrapper_module(&dir, "coredns")?;
        let main = dir.join("main.go");
        fs::write(&main, coredns_source::MAIN_GO).map_err(|e| Error::io(&main, e))?;
        go(&dir, &["get", &format!("github.com/coredns/coredns@{COREDNS_VERSION}")])?;
        go_build_to(&dir, &tools.coredns(), "-s -w", ".")?;
    }
    missing(&out, &NODE_BINARIES).map_err(|missing| Error::ToolsMissing {
        dir: out.clone(),
        missing,
        hint: "the build finished without producing them; see the output above".into(),
    })?;
    progress(&format!("node tools ready in {}", out.display()));
    Ok(tools)
}

/// Builds every binary, the control plane's into [`default_dir`] and the supply-chain tools into
/// [`supply_chain_dir`], unless they are already there, and returns the control plane's.
///
/// `progress` receives one line per step. Takes a few minutes cold on two cores; the Go build
/// cache (`go env GOCACHE`) and module cache make a rebuild fast.
pub fn build(progress: &mut dyn FnMut(&str)) -> Result<Tools, Error> {
    let tools = build_control_plane(progress)?;
    build_supply_chain(progress)?;
    Ok(tools)
}

/// Builds the control-plane binaries into [`default_dir`] unless they are already there.
pub fn build_control_plane(progress: &mut dyn FnMut(&str)) -> Result<Tools, Error> {
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
    progress(&format!(
        "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl {KUBERNETES_VERSION}"
    ));
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

/// Builds the supply-chain tools into [`supply_chain_dir`], each one unless it is already there.
pub fn build_supply_chain(progress: &mut dyn FnMut(&str)) -> Result<SupplyChainTools, Error> {
    let out = supply_chain_dir();
    let tools = SupplyChainTools { dir: out.clone() };
    if tools.check().is_ok() {
        progress(&format!("supply-chain tools already built in {}", out.display()));
        return Ok(tools);
    }
    go_version()?;
    let work = cache_root().join("tools").join("src");
    fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;

    if !tools.registry().is_file() {
        progress(&format!("building registry (CNCF distribution) {DISTRIBUTION_VERSION}"));
        let dir = work.join("distribution");
        wrapper_module(&dir, "distribution")?;
        let cmd = "github.com/distribution/distribution/v3/cmd/registry";
        go(&dir, &["get", &format!("{cmd}@{DISTRIBUTION_VERSION}")])?;
        let ldflags =
            format!("-s -w -X github.com/distribution/distribution/v3/version.version={DISTRIBUTION_VERSION}");
        go_build_to(&dir, &tools.registry(), &ldflags, cmd)?;
    }

    if !tools.crane().is_file() {
        progress(&format!("building crane {GO_CONTAINERREGISTRY_VERSION}"));
        let dir = work.join("crane");
        wrapper_module(&dir, "crane")?;
        let cmd = "github.com/google/go-containerregistry/cmd/crane";
        go(&dir, &["get", &format!("{cmd}@{GO_CONTAINERREGISTRY_VERSION}")])?;
        let ldflags = format!("-s -w -X {cmd}/cmd.Version={GO_CONTAINERREGISTRY_VERSION}");
        go_build_to(&dir, &tools.crane(), &ldflags, cmd)?;
    }

    if !tools.notation().is_file() {
        progress(&format!("building notation {NOTATION_VERSION}"));
        let dir = work.join("notation");
        wrapper_module(&dir, "notation")?;
        let module = "github.com/notaryproject/notation";
        go(&dir, &["get", &format!("{module}/cmd/notation@{NOTATION_VERSION}")])?;
        // The release build sets these (`make build`): no "+unreleased" suffix, and the commit.
        let version = format!("{module}/internal/version");
        let mut ldflags = format!("-s -w -X {version}.Version={NOTATION_VERSION} -X {version}.BuildMetadata=");
        if let Some(commit) = module_commit(&dir, &format!("{module}@{NOTATION_VERSION}")) {
            ldflags.push_str(&format!(" -X {version}.GitCommit={commit}"));
        }
        go_build_to(&dir, &tools.notation(), &ldflags, &format!("{module}/cmd/notation"))?;
    }

    if !tools.ocireg().is_file() {
        progress(&format!("building ocireg (go-containerregistry {GO_CONTAINERREGISTRY_VERSION} pkg/registry)"));
        let dir = work.join("ocireg");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for (name, text) in
            [("main.go", ocireg_source::MAIN_GO), ("go.mod", ocireg_source::GO_MOD), ("go.sum", ocireg_source::GO_SUM)]
        {
            let path = dir.join(name);
            fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        go_build_to(&dir, &tools.ocireg(), "-s -w", ".")?;
    }

    tools.check().map_err(|missing| Error::ToolsMissing {
        dir: out.clone(),
        missing,
        hint: "the build finished without producing them; see the output above".into(),
    })?;
    progress(&format!("supply-chain tools ready in {}", out.display()));
    Ok(tools)
}

/// The VCS commit a module version was tagged at, as the module proxy reports it.
pub(crate) fn module_commit(dir: &Path, module: &str) -> Option<String> {
    let out = go(dir, &["mod", "download", "-json", module]).ok()?;
    let info: serde_json::Value = serde_json::from_str(&out).ok()?;
    info["Origin"]["Hash"].as_str().map(str::to_string)
}

/// The `k8s.io/*` modules that `k8s.io/kubernetes`'s go.mod replaces with a staging directory.
pub fn staging_modules(go_mod: &str) -> Vec<String> {
    go_mod
        .lines()
        .filter_map(|line| {
            let (module, target) = line.trim().trim_start_matches("replace").trim().split_once("=>")?;
            let module = module.trim();
            (module.starts_with("k8s.io/") && target.trim().starts_with("./staging/")).then(|| module.to_string())
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

pub(crate) fn wrapper_module(dir: &Path, name: &str) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let go_mod = dir.join("go.mod");
    if !go_mod.exists() {
        let text = format!("module tidegate.local/tools/{name}\n\ngo 1.26\n");
        fs::write(&go_mod, text).map_err(|e| Error::io(&go_mod, e))?;
    }
    Ok(())
}

pub(crate) fn download_go_mod(dir: &Path, module: &str) -> Result<String, Error> {
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
    cmd.current_dir(dir).env("GOTOOLCHAIN", "local").env("GOFLAGS", "-mod=mod").env("CGO_ENABLED", "0");
    cmd
}

pub(crate) fn go(dir: &Path, args: &[&str]) -> Result<String, Error> {
    run_go(go_command(dir), dir, args)
}

/// [`go`], but the go command may switch to a newer toolchain than the machine's when a module
/// requires one (`GOTOOLCHAIN=local+auto`): it fetches `golang.org/toolchain` at that version from
/// the Go module proxy, once, into the module cache.
pub(crate) fn go_switching_toolchain(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let mut cmd = go_command(dir);
    cmd.env("GOTOOLCHAIN", "local+auto");
    run_go(cmd, dir, args)
}

fn run_go(mut cmd: Command, dir: &Path, args: &[&str]) -> Result<String, Error> {
    let output = cmd.args(args).output().map_err(|e| Error::Tool(format!("cannot run go {}: {e}", args.join(" "))))?;
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
    fn ocireg_is_built_on_the_pinned_go_containerregistry() {
        let require = format!("github.com/google/go-containerregistry {GO_CONTAINERREGISTRY_VERSION}");
        assert!(ocireg_source::GO_MOD.contains(&require), "go/ocireg/go.mod must require {require}");
        assert_eq!(ocireg_source::fingerprint().len(), 8);
        assert!(supply_chain_dir().to_string_lossy().contains(&ocireg_source::fingerprint()));
    }

    #[test]
    fn the_node_cache_names_coredns_and_its_plugins() {
        assert!(coredns_source::MAIN_GO.contains("plugin/kubernetes"));
        assert!(!coredns_source::MAIN_GO.contains("plugin/forward"), "the cluster DNS never forwards");
        assert!(node_dir().to_string_lossy().contains(&coredns_source::fingerprint()));
        assert_ne!(fingerprint(&["a", "b"]), fingerprint(&["ab"]));
    }

    #[test]
    fn the_azure_standin_is_built_on_the_pinned_sdk() {
        let go_mod = azure_source::FILES[0].1;
        let require = format!("armappcontainers/v3 {ARMAPPCONTAINERS_VERSION}");
        assert!(go_mod.contains(&require), "go/azure/go.mod must require {require}");
        assert!(azure_dir().to_string_lossy().contains(&azure_source::fingerprint()));
        // Every file of the module is compiled in (a new .go file must be added to FILES).
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("go").join("azure");
        let mut on_disk = Vec::new();
        for sub in ["", "spec", "fidelity"] {
            for entry in fs::read_dir(root.join(sub)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    on_disk.push(if sub.is_empty() { name } else { format!("{sub}/{name}") });
                }
            }
        }
        on_disk.sort();
        let mut listed: Vec<String> = azure_source::FILES.iter().map(|(name, _)| (*name).to_string()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
    }

    #[test]
    fn version_ldflags_name_the_pinned_release() {
        let flags = kube_version_ldflags();
        assert!(flags.contains(&format!("k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}")));
        assert!(flags.contains("gitMinor=36"));
    }
}
