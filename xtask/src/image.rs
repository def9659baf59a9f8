//! `cargo xtask image`: the controller's OCI image, built without Docker and reproducibly.
//!
//! Builds `tidegate-controller` and `kubectl-tidegate` (release, statically linked, host paths
//! remapped), packs them with Trivy, the CA bundle and a non-root user (crate `tidegate-image`),
//! writes the SBOM, then writes an OCI image layout and/or pushes by digest and signs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tidegate_image::layout::{self, Metadata};
use tidegate_image::push::{self, Target};
use tidegate_image::rootfs::Inputs;
use tidegate_image::sbom::{self, GoModule};
use tidegate_providers::registry::{ClientOptions, Credentials, RegistryClient};

use crate::root;

/// The binaries in the image, by workspace package (each package's binary has its name).
const PACKAGES: [&str; 2] = ["tidegate-controller", "kubectl-tidegate"];
/// The target the binaries are built for: named explicitly so that `RUSTFLAGS` (static linking)
/// reach only the image's binaries, not build scripts and proc macros.
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Trivy's Go module, for the SBOM.
const TRIVY_MODULE: &str = "github.com/aquasecurity/trivy";

/// Build the controller's OCI image (no Docker) reproducibly; write it as an OCI layout and/or push it.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("output").required(true).multiple(true).args(["oci_layout", "push"])))]
pub struct ImageArgs {
    /// Write an OCI image layout (oci-layout, index.json, blobs/sha256/…) and the SBOM
    /// (sbom.spdx.json) into DIR. A previous layout there is replaced; any other non-empty
    /// directory is refused.
    #[arg(long, value_name = "DIR")]
    oci_layout: Option<PathBuf>,
    /// Push to REGISTRY/REPO[:TAG], by digest (and under TAG if given), with the SBOM attached as a
    /// referrer (artifactType application/spdx+json); prints REGISTRY/REPO@sha256:….
    #[arg(long, value_name = "REGISTRY/REPO[:TAG]")]
    push: Option<String>,
    /// Reach the --push registry over plain HTTP (a local registry); HTTPS otherwise.
    #[arg(long, requires = "push")]
    plain_http: bool,
    /// User name for the --push registry (the password is read from TIDEGATE_REGISTRY_PASSWORD).
    #[arg(long, env = "TIDEGATE_REGISTRY_USERNAME", requires = "push")]
    username: Option<String>,
    /// Sign the pushed image with the Notary Project (needs --push, --notary-key, --notary-cert);
    /// the signature is then verified against the certificate chain's root.
    #[arg(long, requires_all = ["push", "notary_key", "notary_cert"])]
    sign: bool,
    /// The signing key (PEM) for --sign.
    #[arg(long, value_name = "KEY.pem", requires = "sign")]
    notary_key: Option<PathBuf>,
    /// The signing certificate chain (PEM, leaf first, ending with the root) for --sign.
    #[arg(long, value_name = "CERT.pem", requires = "sign")]
    notary_cert: Option<PathBuf>,
    /// The org.opencontainers.image.source annotation (where the source is).
    #[arg(long, default_value = "https://github.com/tidegate/tidegate")]
    source: String,
    /// The tag recorded in the layout's index.json (org.opencontainers.image.ref.name);
    /// default: the crate version.
    #[arg(long)]
    ref_name: Option<String>,
    /// The CA bundle copied to /etc/ssl/certs/ca-certificates.crt.
    #[arg(long, value_name = "FILE", default_value = "/etc/ssl/certs/ca-certificates.crt")]
    ca_certificates: PathBuf,
    /// The Trivy binary copied to /usr/local/bin/trivy; default: the one `cargo xtask tools` built.
    #[arg(long, value_name = "FILE")]
    trivy: Option<PathBuf>,
    /// Pack the binaries already built by a previous run instead of running cargo build.
    #[arg(long)]
    no_build: bool,
}

/// Runs `cargo xtask image`: prints the pushed reference, or the image's digest.
pub async fn run(args: ImageArgs) -> Result<()> {
    println!("{}", build_image(args).await?);
    Ok(())
}

/// The arguments that build the image and push it to `repository` (REGISTRY/REPO[:TAG]) over plain
/// HTTP, as the demo does with its loopback registry.
pub fn push_plain_http(repository: &str) -> ImageArgs {
    ImageArgs {
        oci_layout: None,
        push: Some(repository.to_string()),
        plain_http: true,
        username: None,
        sign: false,
        notary_key: None,
        notary_cert: None,
        source: "https://github.com/tidegate/tidegate".into(),
        ref_name: None,
        ca_certificates: "/etc/ssl/certs/ca-certificates.crt".into(),
        trivy: None,
        no_build: false,
    }
}

/// Builds the image as `args` say; returns the pushed `REGISTRY/REPO@sha256:…`, or without
/// `--push` the image's digest.
pub async fn build_image(args: ImageArgs) -> Result<String> {
    let root = root();
    let metadata_json = cargo_metadata(&root)?;
    let target_dir =
        PathBuf::from(metadata_json["target_directory"].as_str().context("cargo metadata: no target_directory")?);
    let version = PACKAGES
        .iter()
        .find_map(|name| metadata_json["packages"].as_array()?.iter().find(|p| p["name"] == *name)?["version"].as_str())
        .context("cargo metadata: no tidegate-controller package")?
        .to_string();
    let epoch = source_date_epoch(&root)?;
    let revision = git(&root, &["rev-parse", "HEAD"])?;
    if !git(&root, &["status", "--porcelain", "--untracked-files=no"])?.is_empty() {
        eprintln!(
            "[image] warning: the working tree has uncommitted changes; the image holds them, its revision annotation names HEAD {revision}"
        );
    }

    if !args.no_build {
        build(&root, &target_dir)?;
    }
    let bin = target_dir.join(TARGET).join("release");
    let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    for name in PACKAGES {
        require_static(&bin.join(name))?;
    }
    let trivy_path = match args.trivy {
        Some(path) => path,
        None => tidegate_testenv::scanner_tools::ScannerTools::locate()
            .context("Trivy is not built; run `cargo xtask tools` or pass --trivy FILE")?
            .trivy(),
    };
    let inputs = Inputs {
        controller: read(&bin.join(PACKAGES[0]))?,
        kubectl_plugin: read(&bin.join(PACKAGES[1]))?,
        trivy: read(&trivy_path)?,
        ca_certificates: read(&args.ca_certificates)?,
    };
    let (trivy_version, trivy_sum) = sbom::go_module_version(&inputs.trivy, TRIVY_MODULE)
        .with_context(|| format!("{} holds no Go build information naming {TRIVY_MODULE}", trivy_path.display()))?;
    let metadata = Metadata {
        source_date_epoch: epoch,
        source: args.source.clone(),
        revision,
        version: version.clone(),
        title: PACKAGES[0].into(),
        licenses: license(&metadata_json),
    };
    eprintln!("[image] packing (SOURCE_DATE_EPOCH={epoch}, Trivy {trivy_version})");
    let image = layout::build(&inputs, &metadata)?;
    let go = GoModule {
        path: TRIVY_MODULE.into(),
        version: trivy_version,
        sum: trivy_sum,
        file: "/usr/local/bin/trivy".into(),
        sha256: tidegate_providers::registry::sha256(&inputs.trivy).trim_start_matches("sha256:").into(),
    };
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let sbom = sbom::spdx(&metadata_json, &lock, &PACKAGES, &go, &metadata, &image.digest())?;

    if let Some(dir) = &args.oci_layout {
        layout::write_layout(dir, &image, args.ref_name.as_deref().unwrap_or(&version), &sbom)?;
        eprintln!("[image] wrote the OCI layout and {} to {}", layout::SBOM_FILE, dir.display());
    }
    if let Some(reference) = &args.push {
        let target: Target = reference.parse()?;
        let mut options = ClientOptions::default();
        if args.plain_http {
            options.plain_http.insert(target.repository.host.clone());
        }
        if let Some(user) = &args.username {
            let password = std::env::var("TIDEGATE_REGISTRY_PASSWORD")
                .context("--username is set but TIDEGATE_REGISTRY_PASSWORD is not")?;
            options
                .credentials
                .insert(target.repository.host.clone(), Credentials::Basic { username: user.clone(), password });
        }
        let client = Arc::new(RegistryClient::new(options)?);
        let pushed = push::push(&client, &target, &image, &sbom).await?;
        eprintln!("[image] pushed; SBOM {}", pushed.sbom);
        if args.sign {
            let (key, cert) = (args.notary_key.as_deref(), args.notary_cert.as_deref());
            let (Some(key), Some(cert)) = (key, cert) else { bail!("--sign needs --notary-key and --notary-cert") };
            let (signature, signer) = push::sign(client.clone(), &pushed, &read(key)?, &read(cert)?).await?;
            eprintln!("[image] signed by {signer}: {signature}");
        }
        Ok(pushed.reference.to_string())
    } else {
        Ok(image.digest())
    }
}

/// The `RUSTFLAGS` of the image's binaries: static glibc, and host paths (the checkout, the
/// target directory, the cargo home) replaced by fixed ones, so that the same source and
/// toolchain give the same bytes on any machine.
fn rustflags(root: &Path, target_dir: &Path) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    format!(
        "-C target-feature=+crt-static --remap-path-prefix={}=/src --remap-path-prefix={}=/target --remap-path-prefix={}=/cargo",
        root.display(),
        target_dir.display(),
        cargo_home.display()
    )
}

fn build(root: &Path, target_dir: &Path) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--release", "--locked", "--target", TARGET])
        .args(PACKAGES.iter().flat_map(|p| ["-p", p]))
        .env("RUSTFLAGS", rustflags(root, target_dir))
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    eprintln!("[image] cargo build --release --target {TARGET} (static; takes minutes when cold)");
    let status = command.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the image's binaries failed ({status})");
    }
    Ok(())
}

/// Fails unless `binary` is statically linked: no program interpreter, no shared library.
fn require_static(binary: &Path) -> Result<()> {
    if !binary.is_file() {
        bail!("{} is missing; run without --no-build", binary.display());
    }
    let output = Command::new("readelf")
        .args(["--program-headers", "--dynamic", "--wide"])
        .arg(binary)
        .output()
        .context("running readelf (binutils) to check how the binaries are linked")?;
    if !output.status.success() {
        bail!("readelf {}: {}", binary.display(), String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let dynamic: Vec<&str> = text.lines().filter(|l| l.contains("INTERP") || l.contains("(NEEDED)")).collect();
    if !dynamic.is_empty() {
        bail!(
            "{} is dynamically linked ({}); the image holds no loader or shared library",
            binary.display(),
            dynamic.iter().map(|l| l.trim()).collect::<Vec<_>>().join("; ")
        );
    }
    Ok(())
}

fn cargo_metadata(root: &Path) -> Result<serde_json::Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--locked", "--filter-platform", TARGET])
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!("cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    }
    serde_json::from_slice(&output.stdout).context("parsing cargo metadata")
}

/// The controller package's license (the workspace's).
fn license(metadata: &serde_json::Value) -> Option<String> {
    let packages = metadata["packages"].as_array()?;
    let controller = packages.iter().find(|p| p["name"] == PACKAGES[0])?;
    controller["license"].as_str().map(str::to_string)
}

/// `SOURCE_DATE_EPOCH` if set, else the HEAD commit's time.
fn source_date_epoch(root: &Path) -> Result<i64> {
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        return value.trim().parse().with_context(|| format!("SOURCE_DATE_EPOCH={value:?} is not a number of seconds"));
    }
    let time = git(root, &["log", "-1", "--format=%ct"])?;
    time.parse().with_context(|| format!("git log gave {time:?} as the commit time"))
}

fn git(root: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git").current_dir(root).args(args).output().context("running git")?;
    if !output.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamically_linked_binary_is_refused_with_what_it_needs() {
        let err = require_static(Path::new("/bin/sh")).unwrap_err().to_string();
        assert!(err.contains("dynamically linked") && err.contains("INTERP"), "{err}");
        let err = require_static(Path::new("/nonexistent/tidegate-controller")).unwrap_err().to_string();
        assert!(err.contains("is missing"), "{err}");
    }

    #[test]
    fn the_rustflags_link_statically_and_remap_every_host_path() {
        let flags = rustflags(Path::new("/work/main"), Path::new("/cache/target"));
        assert!(flags.starts_with("-C target-feature=+crt-static "), "{flags}");
        assert!(flags.contains("--remap-path-prefix=/work/main=/src"), "{flags}");
        assert!(flags.contains("--remap-path-prefix=/cache/target=/target"), "{flags}");
        assert!(flags.contains("=/cargo"), "{flags}");
    }
}
