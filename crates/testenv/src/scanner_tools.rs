//! The real Trivy vulnerability scanner for tests, fully offline: the `trivy` binary built from
//! its pinned Go module, a vulnerability database written from YAML fixtures by our own
//! `trivydb` (Go source in `crates/testenv/go/trivydb`), and images whose layers carry real
//! package databases (Alpine's `lib/apk/db/installed`, Debian's `var/lib/dpkg/status`).
//!
//! # How Trivy is run
//!
//! [`trivy_scan_args`] gives the command line; the controller runs Trivy the same way:
//!
//! ```text
//! trivy image --format json --quiet
//!     --cache-dir CACHE
//!     --skip-db-update --skip-java-db-update --skip-check-update --skip-version-check
//!     --offline-scan --disable-telemetry
//!     --scanners vuln --image-src remote
//!     127.0.0.1:PORT/repo@sha256:...
//! ```
//!
//! with `HOME`, `XDG_CACHE_HOME`, `XDG_CONFIG_HOME` and `XDG_DATA_HOME` pointing into a
//! temporary directory ([`trivy_command`]). `CACHE/db/trivy.db` and `CACHE/db/metadata.json` must
//! exist ([`write_vulnerability_db`]). The registry is reached over plain HTTP because its host is
//! a loopback address (go-containerregistry picks `http` for `localhost` and `127.0.0.1`), so no
//! `--insecure` is needed. A plain-HTTP registry on another host needs `--insecure` (Trivy then
//! parses the reference with `name.Insecure`, which also allows plain HTTP, and skips TLS
//! verification).
//!
//! # The fixture format
//!
//! [`write_vulnerability_db`] takes the [bolt-fixtures] YAML format that Trivy's own tests use: a
//! list of buckets, each with `pairs` that are nested buckets or `key`/`value` entries (values are
//! stored as JSON). Advisories live in the bucket `<os family> <major.minor>` (`alpine 3.20`,
//! `debian 12`), keyed by the source package name, then by the vulnerability ID, and need a
//! `data-source` entry for that bucket; details (title, severity) are in `vulnerability`:
//!
//! ```yaml
//! - bucket: alpine 3.20
//!   pairs:
//!     - bucket: openssl
//!       pairs:
//!         - key: CVE-2023-5678
//!           value:
//!             FixedVersion: "3.1.4-r0"
//! - bucket: data-source
//!   pairs:
//!     - key: alpine 3.20
//!       value: { ID: alpine, Name: Alpine Secdb, URL: https://secdb.alpinelinux.org/ }
//! - bucket: vulnerability
//!   pairs:
//!     - key: CVE-2023-5678
//!       value: { Title: "openssl: DH_check is slow", Severity: MEDIUM }
//! ```
//!
//! An advisory with an empty `FixedVersion` (or none) reports the package as affected with no
//! fix; Debian's unfixed advisories carry a `Status` (for example `Status: 3`, "affected").
//!
//! [bolt-fixtures]: https://github.com/aquasecurity/bolt-fixtures

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;
use crate::registry::Registry;
use crate::tools::cache_root;

/// Trivy release (`github.com/aquasecurity/trivy/cmd/trivy`).
pub const TRIVY_VERSION: &str = "v0.74.0";
/// The `github.com/aquasecurity/trivy-db` version [`TRIVY_VERSION`] requires; `trivydb` is built
/// on it too (`crates/testenv/go/trivydb/go.mod`), so that both agree on the database schema.
pub const TRIVY_DB_MODULE_VERSION: &str = "v0.0.0-20260813095258-0e0340a01b57";
/// The database schema version (`metadata.json`'s `Version`) that [`TRIVY_VERSION`] expects.
pub const TRIVY_DB_SCHEMA_VERSION: u64 = 2;

/// The scanner tools, all in one directory.
pub const SCANNER_BINARIES: [&str; 2] = ["trivy", "trivydb"];

/// Environment variable naming a directory that holds all of [`SCANNER_BINARIES`], checked first.
pub const SCANNER_TOOLS_DIR_ENV: &str = "TIDEGATE_SCANNER_TOOLS_DIR";

/// Source of `trivydb`, compiled into this crate so that a change to it gets a new cache directory.
pub mod trivydb_source {
    /// `main.go`.
    pub const MAIN_GO: &str = include_str!("../go/trivydb/main.go");
    /// `go.mod`.
    pub const GO_MOD: &str = include_str!("../go/trivydb/go.mod");
    /// `go.sum`.
    pub const GO_SUM: &str = include_str!("../go/trivydb/go.sum");

    /// A short fingerprint of the three files (FNV-1a), part of the cache directory's name.
    pub fn fingerprint() -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in [MAIN_GO, "\0", GO_MOD, "\0", GO_SUM].iter().flat_map(|s| s.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", hash >> 32)
    }
}

/// Where the scanner tools are: `trivy` and `trivydb`.
#[derive(Clone, Debug)]
pub struct ScannerTools {
    dir: PathBuf,
}

impl ScannerTools {
    /// Finds the binaries: `$TIDEGATE_SCANNER_TOOLS_DIR`, then the build cache ([`scanner_dir`]).
    pub fn locate() -> Result<Self, Error> {
        if let Some(dir) = crate::tools::env_dir(SCANNER_TOOLS_DIR_ENV) {
            let hint = format!("{SCANNER_TOOLS_DIR_ENV} is set; put the missing files there or unset it");
            return complete(dir, &hint).map(|dir| Self { dir });
        }
        complete(scanner_dir(), "run `cargo xtask tools` to build them").map(|dir| Self { dir })
    }

    /// Directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `trivy`.
    pub fn trivy(&self) -> PathBuf {
        self.dir.join("trivy")
    }

    /// `trivydb`, which writes a vulnerability database from YAML fixtures.
    pub fn trivydb(&self) -> PathBuf {
        self.dir.join("trivydb")
    }
}

/// The scanner binaries `dir` lacks.
fn missing(dir: &Path) -> Vec<String> {
    crate::tools::missing(dir, &SCANNER_BINARIES).err().unwrap_or_default()
}

fn complete(dir: PathBuf, hint: &str) -> Result<PathBuf, Error> {
    crate::tools::complete(dir, &SCANNER_BINARIES, hint)
}

/// Directory the pinned scanner tools are cached in; a new pin (or a change to `trivydb`'s
/// source) gets a new directory.
pub fn scanner_dir() -> PathBuf {
    cache_root()
        .join("tools")
        .join(format!("scanner_trivy-{TRIVY_VERSION}_trivydb-{}", trivydb_source::fingerprint()))
        .join("bin")
}

/// Builds `trivy` and `trivydb` into [`scanner_dir`], each one unless it is already there.
///
/// Trivy is built in a wrapper module that requires `github.com/aquasecurity/trivy@TRIVY_VERSION`;
/// the `replace` directives of Trivy's own `go.mod` (none in v0.74.0) are copied into it, since a
/// wrapper module ignores them. Both are built with `GOEXPERIMENT=jsonv2` and `CGO_ENABLED=0`, as
/// Trivy's release is. Cold, on two (busy) cores, Trivy took about 21 minutes: 1.5 to download
/// its modules, 19.5 to compile (a 168 MB binary); the Go build and module caches make a rebuild
/// take seconds.
pub fn build_scanner(progress: &mut dyn FnMut(&str)) -> Result<ScannerTools, Error> {
    let out = scanner_dir();
    let tools = ScannerTools { dir: out.clone() };
    if missing(&out).is_empty() {
        progress(&format!("scanner tools already built in {}", out.display()));
        return Ok(tools);
    }
    let work = cache_root().join("tools").join("src");
    fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;

    if !tools.trivy().is_file() {
        progress(&format!("building trivy {TRIVY_VERSION}"));
        let dir = work.join("trivy");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let go_mod = dir.join("go.mod");
        if !go_mod.exists() {
            fs::write(&go_mod, "module tidegate.local/tools/trivy\n\ngo 1.26\n").map_err(|e| Error::io(&go_mod, e))?;
        }
        let module = "github.com/aquasecurity/trivy";
        let upstream = download_go_mod(&dir, &format!("{module}@{TRIVY_VERSION}"))?;
        for (from, to) in replace_directives(&upstream) {
            go(&dir, &["mod", "edit", &format!("-replace={from}={to}")])?;
        }
        go(&dir, &["get", &format!("{module}/cmd/trivy@{TRIVY_VERSION}")])?;
        // As the release build (goreleaser.yml) sets it: `trivy --version` names the release.
        let ldflags = format!("-s -w -X {module}/pkg/version/app.ver={}", TRIVY_VERSION.trim_start_matches('v'));
        go_build_to(&dir, &tools.trivy(), &ldflags, &format!("{module}/cmd/trivy"))?;
    }

    if !tools.trivydb().is_file() {
        progress(&format!("building trivydb (trivy-db {TRIVY_DB_MODULE_VERSION})"));
        let dir = work.join("trivydb");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        for (name, text) in [
            ("main.go", trivydb_source::MAIN_GO),
            ("go.mod", trivydb_source::GO_MOD),
            ("go.sum", trivydb_source::GO_SUM),
        ] {
            let path = dir.join(name);
            fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        go_build_to(&dir, &tools.trivydb(), "-s -w", ".")?;
    }

    let missing = missing(&out);
    if !missing.is_empty() {
        return Err(Error::ToolsMissing {
            dir: out,
            missing,
            hint: "the build finished without producing them; see the output above".into(),
        });
    }
    progress(&format!("scanner tools ready in {}", out.display()));
    Ok(tools)
}

/// The `replace` directives of a `go.mod` whose target is a module version (not a local
/// directory), as `(module[@version], target@version)` pairs for `go mod edit -replace`.
pub fn replace_directives(go_mod: &str) -> Vec<(String, String)> {
    let mut in_block = false;
    let mut out = Vec::new();
    for line in go_mod.lines() {
        let line = line.split("//").next().unwrap_or_default().trim();
        let body = if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else if let Some(rest) = line.strip_prefix("replace") {
            let rest = rest.trim();
            if rest == "(" {
                in_block = true;
                continue;
            }
            rest
        } else {
            continue;
        };
        let Some((from, to)) = body.split_once("=>") else { continue };
        let from: Vec<&str> = from.split_whitespace().collect();
        let to: Vec<&str> = to.split_whitespace().collect();
        let local = to.first().is_none_or(|t| t.starts_with('.') || t.starts_with('/'));
        if from.is_empty() || to.len() != 2 || local {
            continue;
        }
        out.push((from.join("@"), to.join("@")));
    }
    out
}

/// `go` in `dir`. Trivy is built with `GOEXPERIMENT=jsonv2`, as its release build
/// (goreleaser.yml) does: it imports `encoding/json/v2`, which only that experiment provides.
fn go_command(dir: &Path) -> Command {
    let mut cmd = Command::new("go");
    cmd.current_dir(dir)
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0")
        .env("GOEXPERIMENT", "jsonv2");
    cmd
}

fn go(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let output = go_command(dir).args(args).output().map_err(|e| {
        Error::Tool(format!("cannot run go {} ({e}): install Go 1.26.3 or newer and put it on PATH", args.join(" ")))
    })?;
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

fn go_build_to(dir: &Path, out: &Path, ldflags: &str, package: &str) -> Result<(), Error> {
    let out = out.display().to_string();
    go(dir, &["build", "-trimpath", "-ldflags", ldflags, "-o", &out, package]).map(drop)
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

/// One advisory of a test vulnerability database: `id` affects `package` (a source package) of
/// the distribution; `fixed` is the first fixed version, empty when no fix exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advisory {
    /// Source package.
    pub package: &'static str,
    /// Vulnerability id.
    pub id: &'static str,
    /// First fixed version; empty: no fix yet.
    pub fixed: &'static str,
    /// `CRITICAL`, `HIGH`, `MEDIUM`, `LOW`.
    pub severity: &'static str,
    /// Title.
    pub title: &'static str,
}

/// The bolt-fixtures YAML ([`write_vulnerability_db`]) of `advisories` for Alpine 3.20.
pub fn alpine_advisories(advisories: &[Advisory]) -> String {
    let mut packages: Vec<&str> = advisories.iter().map(|a| a.package).collect();
    packages.sort();
    packages.dedup();
    let mut text = String::from("- bucket: alpine 3.20\n  pairs:\n");
    for package in packages {
        text.push_str(&format!("    - bucket: {package}\n      pairs:\n"));
        for a in advisories.iter().filter(|a| a.package == package) {
            text.push_str(&format!(
                "        - key: {}\n          value:\n            FixedVersion: {:?}\n",
                a.id, a.fixed
            ));
        }
    }
    text.push_str(
        "- bucket: data-source\n  pairs:\n    - key: alpine 3.20\n      value:\n        ID: \"alpine\"\n        \
         Name: \"Alpine Secdb\"\n        URL: \"https://secdb.alpinelinux.org/\"\n- bucket: vulnerability\n  pairs:\n",
    );
    for a in advisories {
        text.push_str(&format!(
            "    - key: {}\n      value:\n        Title: {:?}\n        Severity: {}\n",
            a.id, a.title, a.severity
        ));
    }
    text
}

/// Writes a Trivy vulnerability database from `fixtures_yaml` (the bolt-fixtures format, see the
/// [module docs](self)) into `cache_dir/db/`: `trivy.db` and a `metadata.json` of schema
/// [`TRIVY_DB_SCHEMA_VERSION`] whose `NextUpdate` is far in the future.
pub fn write_vulnerability_db(tools: &ScannerTools, fixtures_yaml: &str, cache_dir: &Path) -> Result<(), Error> {
    let fixtures = tempfile::tempdir().map_err(|e| Error::io(&std::env::temp_dir(), e))?;
    let file = fixtures.path().join("fixtures.yaml");
    fs::write(&file, fixtures_yaml).map_err(|e| Error::io(&file, e))?;
    let output = Command::new(tools.trivydb())
        .arg("--fixtures")
        .arg(fixtures.path())
        .arg("--cache-dir")
        .arg(cache_dir)
        .output()
        .map_err(|e| Error::Tool(format!("cannot run {}: {e}", tools.trivydb().display())))?;
    if !output.status.success() {
        return Err(Error::Tool(format!(
            "trivydb failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

/// The arguments of an offline `trivy image` vulnerability scan of `image` (a reference such as
/// `127.0.0.1:PORT/repo@sha256:...`) with the database in `cache_dir/db/`: JSON on stdout, no
/// download of any database or checks bundle, no version check, no telemetry, the image read
/// from its registry (never from a Docker, containerd or Podman daemon).
///
/// ```text
/// trivy image --format json --quiet --cache-dir CACHE --skip-db-update --skip-java-db-update
///     --skip-check-update --skip-version-check --offline-scan --disable-telemetry
///     --scanners vuln --image-src remote IMAGE
/// ```
pub fn trivy_scan_args(cache_dir: &Path, image: &str) -> Vec<String> {
    let mut args: Vec<String> = ["image", "--format", "json", "--quiet", "--cache-dir"].map(String::from).to_vec();
    args.push(cache_dir.display().to_string());
    args.extend(
        [
            "--skip-db-update",
            "--skip-java-db-update",
            "--skip-check-update",
            "--skip-version-check",
            "--offline-scan",
            "--disable-telemetry",
            "--scanners",
            "vuln",
            "--image-src",
            "remote",
        ]
        .map(String::from),
    );
    args.push(image.to_string());
    args
}

/// `trivy` with [`trivy_scan_args`], its home and XDG directories in `home` (so that it reads no
/// user configuration or credentials and writes nothing outside `home` and `cache_dir`).
pub fn trivy_command(tools: &ScannerTools, home: &Path, cache_dir: &Path, image: &str) -> Command {
    let mut cmd = Command::new(tools.trivy());
    cmd.args(trivy_scan_args(cache_dir, image))
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("DOCKER_CONFIG", home.join("docker"))
        .env_remove("TRIVY_USERNAME")
        .env_remove("TRIVY_PASSWORD")
        .env_remove("TRIVY_REGISTRY_TOKEN");
    cmd
}

/// Runs [`trivy_command`] and returns its JSON report.
pub fn scan_image(
    tools: &ScannerTools,
    home: &Path,
    cache_dir: &Path,
    image: &str,
) -> Result<serde_json::Value, Error> {
    let output = trivy_command(tools, home, cache_dir, image)
        .output()
        .map_err(|e| Error::Tool(format!("cannot run {}: {e}", tools.trivy().display())))?;
    if !output.status.success() {
        return Err(Error::Tool(format!(
            "trivy image {image} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        Error::Tool(format!("trivy printed no JSON report ({e}): {}", String::from_utf8_lossy(&output.stdout)))
    })
}

/// `trivy server` (client/server mode) on a free loopback port, its database in a cache directory
/// of its own; killed when dropped. The server makes no outside request: it never updates its
/// database (`--skip-db-update`) and has no telemetry or version check.
pub struct TrivyServer {
    _child: tokio::process::Child,
    url: String,
}

impl TrivyServer {
    /// Starts the server on the database in `cache_dir` (written by [`write_vulnerability_db`]),
    /// with its home and XDG directories in `home`; returns once it accepts connections.
    pub async fn start(tools: &ScannerTools, cache_dir: &Path, home: &Path) -> Result<Self, Error> {
        let port = crate::ports::free_port()?;
        let address = format!("127.0.0.1:{port}");
        let mut child = tokio::process::Command::new(tools.trivy())
            .args(["server", "--listen", &address, "--skip-db-update", "--cache-dir"])
            .arg(cache_dir)
            .env("HOME", home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| Error::Tool(format!("cannot run {} server: {e}", tools.trivy().display())))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                return Ok(Self { _child: child, url: format!("http://{address}") });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Error::Tool(format!("trivy server exited ({status}) before listening on {address}")));
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Tool(format!("trivy server did not listen on {address} within 60 s")));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// `http://127.0.0.1:PORT`, what `--server` (and `--trivy-server`) take.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The distribution an image's files describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageOs {
    /// Alpine Linux at a full version such as `3.20.3` (`etc/os-release`, `etc/alpine-release`,
    /// packages in `lib/apk/db/installed`).
    Alpine(String),
    /// Debian at a point release such as `12.7` (`etc/os-release`, `etc/debian_version`,
    /// packages in `var/lib/dpkg/status`).
    Debian(String),
}

impl ImageOs {
    /// Alpine 3.20.3.
    pub fn alpine() -> Self {
        Self::Alpine("3.20.3".into())
    }

    /// Debian 12.7 (bookworm).
    pub fn debian() -> Self {
        Self::Debian("12.7".into())
    }
}

/// An installed package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// Binary package name.
    pub name: String,
    /// Installed version (`1.2.4-r0`, `3.0.11-1~deb12u2`).
    pub version: String,
    /// Source package (apk `origin`, dpkg `Source`), which advisories are keyed by; the name when
    /// `None`.
    pub source: Option<String>,
}

impl Package {
    /// A package that is its own source package.
    pub fn new(name: &str, version: &str) -> Self {
        Self { name: name.into(), version: version.into(), source: None }
    }

    /// Sets the source package.
    pub fn source(mut self, source: &str) -> Self {
        self.source = Some(source.into());
        self
    }

    fn source_name(&self) -> &str {
        self.source.as_deref().unwrap_or(&self.name)
    }
}

/// The layers of an image of `os` with `packages` installed, bottom first, each an uncompressed
/// tar (what [`crate::registry::TestClient::push_layered`] pushes, so each diff_id is the layer's
/// digest): the OS release files, then the package database.
pub fn package_image_layers(os: &ImageOs, packages: &[Package]) -> Vec<Vec<u8>> {
    let mut base = Tar::default();
    let mut db = Tar::default();
    match os {
        ImageOs::Alpine(version) => {
            let minor: Vec<&str> = version.split('.').take(2).collect();
            base.dir("etc/");
            base.file("etc/alpine-release", format!("{version}\n").as_bytes());
            base.file(
                "etc/os-release",
                format!(
                    "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID={version}\nPRETTY_NAME=\"Alpine Linux v{}\"\n\
                     HOME_URL=\"https://alpinelinux.org/\"\n\
                     BUG_REPORT_URL=\"https://gitlab.alpinelinux.org/alpine/aports/-/issues\"\n",
                    minor.join(".")
                )
                .as_bytes(),
            );
            for dir in ["lib/", "lib/apk/", "lib/apk/db/"] {
                db.dir(dir);
            }
            db.file("lib/apk/db/installed", apk_installed(packages).as_bytes());
        }
        ImageOs::Debian(version) => {
            let major = version.split('.').next().unwrap_or_default();
            base.dir("etc/");
            base.file("etc/debian_version", format!("{version}\n").as_bytes());
            base.file(
                "etc/os-release",
                format!(
                    "PRETTY_NAME=\"Debian GNU/Linux {major} (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                     VERSION_ID=\"{major}\"\nVERSION=\"{major} (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n\
                     HOME_URL=\"https://www.debian.org/\"\n"
                )
                .as_bytes(),
            );
            for dir in ["var/", "var/lib/", "var/lib/dpkg/"] {
                db.dir(dir);
            }
            db.file("var/lib/dpkg/status", dpkg_status(packages).as_bytes());
        }
    }
    vec![base.finish(), db.finish()]
}

/// Pushes an image of `os` with `packages` installed ([`package_image_layers`], with an image
/// config whose `rootfs.diff_ids` are the layers' digests) as `repo:tag` and returns its manifest
/// digest.
pub async fn push_package_image(
    registry: &Registry,
    repo: &str,
    tag: &str,
    os: &ImageOs,
    packages: &[Package],
) -> Result<String, Error> {
    registry.client().push_layered(repo, tag, &package_image_layers(os, packages), &[]).await
}

/// An uncompressed tar layer holding one regular file at `path` (an application's own layer on
/// top of a package image's).
pub fn file_layer(path: &str, contents: &[u8]) -> Vec<u8> {
    let mut tar = Tar::default();
    if let Some((dir, _)) = path.rsplit_once('/') {
        let mut prefix = String::new();
        for part in dir.split('/') {
            prefix.push_str(part);
            prefix.push('/');
            tar.dir(&prefix);
        }
    }
    tar.file(path, contents);
    tar.finish()
}

/// `lib/apk/db/installed`: one paragraph per package.
fn apk_installed(packages: &[Package]) -> String {
    let mut out = String::new();
    for p in packages {
        out.push_str(&format!(
            "P:{}\nV:{}\nA:x86_64\nS:1024\nI:4096\nT:{} (tidegate test package)\nU:https://example.invalid/\n\
             L:MIT\no:{}\nt:1700000000\n\n",
            p.name,
            p.version,
            p.name,
            p.source_name()
        ));
    }
    out
}

/// `var/lib/dpkg/status`: one stanza per installed package.
fn dpkg_status(packages: &[Package]) -> String {
    let mut out = String::new();
    for p in packages {
        out.push_str(&format!(
            "Package: {}\nStatus: install ok installed\nPriority: optional\nSection: libs\nInstalled-Size: 4\n\
             Maintainer: Debian Tidegate Tests <tests@example.invalid>\nArchitecture: amd64\n",
            p.name
        ));
        if let Some(source) = &p.source {
            out.push_str(&format!("Source: {source}\n"));
        }
        out.push_str(&format!("Version: {}\nDescription: {} (tidegate test package)\n\n", p.version, p.name));
    }
    out
}

/// A minimal, deterministic ustar writer (regular files and directories, owned by root, mtime 0).
#[derive(Default)]
struct Tar {
    data: Vec<u8>,
}

impl Tar {
    fn dir(&mut self, path: &str) {
        self.entry(path, b'5', 0o755, &[]);
    }

    fn file(&mut self, path: &str, contents: &[u8]) {
        self.entry(path, b'0', 0o644, contents);
    }

    fn entry(&mut self, path: &str, kind: u8, mode: u32, contents: &[u8]) {
        let mut header = [0u8; 512];
        let name = path.as_bytes();
        assert!(name.len() <= 100, "tar path too long: {path}");
        header[..name.len()].copy_from_slice(name);
        octal(&mut header[100..108], u64::from(mode));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], contents.len() as u64);
        octal(&mut header[136..148], 0);
        header[148..156].fill(b' ');
        header[156] = kind;
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[265..269].copy_from_slice(b"root");
        header[297..301].copy_from_slice(b"root");
        let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
        let checksum = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(checksum.as_bytes());
        self.data.extend_from_slice(&header);
        self.data.extend_from_slice(contents);
        self.data.resize(self.data.len().next_multiple_of(512), 0);
    }

    fn finish(mut self) -> Vec<u8> {
        self.data.extend_from_slice(&[0u8; 1024]);
        self.data
    }
}

/// Writes `value` as a NUL-terminated, zero-padded octal number filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}\0", width = field.len() - 1);
    field.copy_from_slice(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_directives_keep_module_targets_only() {
        let go_mod = "module x\n\nreplace (\n\tgithub.com/a/b => github.com/c/b v1.2.3 // fork\n\tgithub.com/d/e v0.1.0 => github.com/d/e v0.1.1\n\tgithub.com/f/g => ./local\n)\n\nreplace github.com/h/i => github.com/h/i v2.0.0\n";
        assert_eq!(
            replace_directives(go_mod),
            [
                ("github.com/a/b".to_string(), "github.com/c/b@v1.2.3".to_string()),
                ("github.com/d/e@v0.1.0".to_string(), "github.com/d/e@v0.1.1".to_string()),
                ("github.com/h/i".to_string(), "github.com/h/i@v2.0.0".to_string()),
            ]
        );
    }

    #[test]
    fn trivydb_is_built_on_the_trivy_db_that_trivy_requires() {
        let require = format!("github.com/aquasecurity/trivy-db {TRIVY_DB_MODULE_VERSION}");
        assert!(trivydb_source::GO_MOD.contains(&require), "go/trivydb/go.mod must require {require}");
        assert!(scanner_dir().to_string_lossy().contains(&trivydb_source::fingerprint()));
    }

    #[test]
    fn layers_are_tar_archives_with_the_package_database() {
        let layers = package_image_layers(&ImageOs::alpine(), &[Package::new("musl", "1.2.4-r0")]);
        assert_eq!(layers.len(), 2);
        for layer in &layers {
            assert_eq!(layer.len() % 512, 0);
            assert_eq!(&layer[257..263], b"ustar\0");
        }
        let text = String::from_utf8_lossy(&layers[1]);
        assert!(text.contains("lib/apk/db/installed"));
        assert!(text.contains("P:musl\nV:1.2.4-r0\n"));
    }
}
