//! Project automation: `cargo xtask <command>`.

mod bench;
mod bench_scale;
mod bench_scale_argo;
mod bench_scale_audit;
mod bench_scale_history;
mod bench_scale_peer;
mod bench_scale_report;
mod bench_scale_setup;
mod demo;
mod demo_azure;
mod demo_node;
mod env;
mod image;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

/// Tidegate's project tasks.
#[derive(Parser)]
#[command(name = "cargo xtask", about = "Tidegate's project tasks", version)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build (once) the control-plane binaries, the supply-chain tools (registry, crane,
    /// notation, ocireg), the scanner tools (trivy, trivydb) and helm from the pinned Go modules, fetch
    /// the Trivy Operator's VulnerabilityReport CRD from its module, and print their paths.
    Tools,
    /// Write the CRD YAML in crds/ from the Rust types (with --check, fail if it differs instead).
    Crds {
        /// Do not write; exit non-zero when crds/ differs from the generated CRDs.
        #[arg(long)]
        check: bool,
    },
    /// Start the local control plane and keep it running until Ctrl-C.
    Env(env::EnvArgs),
    /// Run the demo on the local control plane (`--azure`: the Azure Container Apps part, on a
    /// local stand-in of Azure Resource Manager).
    Demo(demo::DemoArgs),
    /// Benchmarks: `rebase` (rebase time against image size, Tidegate's native rebase next to
    /// `crane rebase`; also what `bench` alone runs) and `scale` (N policies on one controller);
    /// each prints Markdown tables and writes its report.
    Bench(bench::BenchArgs),
    /// Build the controller's OCI image without Docker, reproducibly (static release binaries,
    /// Trivy, CA certificates, a non-root user, annotations, an SPDX SBOM); write it as an OCI
    /// layout and/or push it by digest, with the SBOM as a referrer, and sign it.
    Image(image::ImageArgs),
    /// Run the whole test suite (builds the tools first, or reuses the cache).
    Test {
        /// Extra arguments passed to `cargo test`, e.g. `-- --nocapture`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Task::Tools => tools().map(drop),
        Task::Crds { check } => crds(check),
        Task::Env(args) => runtime()?.block_on(env::run(args)),
        Task::Demo(args) => {
            tools()?;
            runtime()?.block_on(demo::run(args))
        }
        Task::Bench(args) => bench::run(&args),
        Task::Image(args) => runtime()?.block_on(image::run(args)),
        Task::Test { args } => test(&args),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the Tokio runtime")
}

/// The repository root (the parent of `xtask/`).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn tools() -> Result<tidegate_testenv::tools::Tools> {
    let started = std::time::Instant::now();
    let tools = tidegate_testenv::tools::build(&mut |line| eprintln!("[tools] {line}"))?;
    for name in tidegate_testenv::tools::BINARIES {
        println!("{}", tools.path(name).display());
    }
    for name in tidegate_testenv::tools::SUPPLY_CHAIN_BINARIES {
        println!("{}", tidegate_testenv::tools::supply_chain_dir().join(name).display());
    }
    let scanner = tidegate_testenv::scanner_tools::build_scanner(&mut |line| eprintln!("[tools] {line}"))?;
    for name in tidegate_testenv::scanner_tools::SCANNER_BINARIES {
        println!("{}", scanner.dir().join(name).display());
    }
    let node = tidegate_testenv::tools::build_node_tools(&mut |line| eprintln!("[tools] {line}"))?;
    for name in tidegate_testenv::tools::NODE_BINARIES {
        println!("{}", node.dir().join(name).display());
    }
    let azure = tidegate_testenv::tools::build_azure_tools(&mut |line| eprintln!("[tools] {line}"))?;
    for name in tidegate_testenv::tools::AZURE_BINARIES {
        println!("{}", azure.dir().join(name).display());
    }
    let helm = tidegate_testenv::helm_tool::build_helm(&mut |line| eprintln!("[tools] {line}"))?;
    println!("{}", helm.display());
    let operator_crds = tidegate_testenv::operator_crds::fetch(&mut |line| eprintln!("[tools] {line}"))?;
    for (file, _) in tidegate_testenv::operator_crds::OPERATOR_CRDS {
        println!("{}", operator_crds.join(file).display());
    }
    eprintln!("[tools] ready after {:.0?}", started.elapsed());
    Ok(tools)
}

/// Where generated CRDs are kept: the plain directory and the Helm chart's `crds/`.
pub(crate) const CRD_DIRS: [&str; 2] = ["crds", "charts/tidegate/crds"];

fn crds(check: bool) -> Result<()> {
    let mut drift = Vec::new();
    for dir in CRD_DIRS {
        crds_into(&root().join(dir), check, &mut drift)?;
    }
    if !drift.is_empty() {
        bail!("CRDs differ from the Rust types: {}; run `cargo xtask crds`", drift.join(", "));
    }
    Ok(())
}

fn crds_into(dir: &Path, check: bool, drift: &mut Vec<String>) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (file, crd) in tidegate_api::crds::all() {
        let path = dir.join(file);
        let yaml = tidegate_api::crds::to_yaml(&crd)?;
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == yaml {
            continue;
        }
        if check {
            drift.push(path.display().to_string());
        } else {
            std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn test(args: &[String]) -> Result<()> {
    let tools = tools()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root())
        .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .args(args)
        .env(tidegate_testenv::tools::TOOLS_DIR_ENV, tools.dir())
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}
