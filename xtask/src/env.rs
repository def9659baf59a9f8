//! `cargo xtask env`: a long-running local control plane for people, and kubeconfigs for any user.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tidegate_testenv::pki::{self, Authority};
use tidegate_testenv::{Options, TestEnv, tools};

/// Arguments of `cargo xtask env`.
#[derive(Args)]
pub struct EnvArgs {
    #[command(subcommand)]
    command: Option<EnvCommand>,
    /// Number of simulated nodes.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
}

#[derive(Subcommand)]
enum EnvCommand {
    /// Write a kubeconfig for a user of the running environment, signed by its CA.
    Kubeconfig {
        /// User name (the certificate's common name).
        #[arg(long)]
        user: String,
        /// Group (the certificate's organisation); repeat for a second group.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Where to write it. Default: `<env dir>/<user>.kubeconfig`.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

/// The directory of the environment started by `cargo xtask env`.
pub fn env_dir() -> PathBuf {
    tools::cache_root().join("env")
}

pub async fn run(args: EnvArgs) -> Result<()> {
    match args.command {
        Some(EnvCommand::Kubeconfig { user, groups, output }) => kubeconfig(&user, &groups, output),
        None => serve(args.nodes).await,
    }
}

async fn serve(nodes: usize) -> Result<()> {
    tools::build(&mut |line| eprintln!("[tools] {line}"))?;
    let dir = env_dir();
    eprintln!("starting the local control plane in {} …", dir.display());
    let env = TestEnv::start_with(Options { dir: Some(dir.clone()), nodes, install_crds: true, ..Options::default() })
        .await?;
    std::fs::write(dir.join("server"), env.server()).context("recording the server URL")?;
    println!("API server:        {}", env.server());
    println!("admin kubeconfig:  {}", env.admin_kubeconfig_path().display());
    println!("component logs:    {}", dir.join("logs").display());
    println!();
    println!("  export KUBECONFIG={}", env.admin_kubeconfig_path().display());
    println!("  {} get nodes", tools::Tools::locate()?.path("kubectl").display());
    println!("  cargo xtask env kubeconfig --user alice --group tidegate-approvers");
    println!();
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    eprintln!("stopping …");
    let _ = std::fs::remove_file(dir.join("server"));
    drop(env);
    Ok(())
}

fn kubeconfig(user: &str, groups: &[String], output: Option<PathBuf>) -> Result<()> {
    let dir = env_dir();
    let server = std::fs::read_to_string(dir.join("server")).map_err(|_| {
        anyhow::anyhow!("no environment is running in {}; start one with `cargo xtask env`", dir.display())
    })?;
    if user.trim().is_empty() {
        bail!("--user must not be empty");
    }
    let authority = Authority::load(&dir.join("pki"))?;
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let identity = authority.client(user, &groups)?;
    let yaml = tidegate_testenv::kubeconfig::render(server.trim(), authority.cert_pem(), user, &identity);
    let path = output.unwrap_or_else(|| dir.join(format!("{user}.kubeconfig")));
    pki::write_file(&path, &yaml)?;
    println!("{}", path.display());
    Ok(())
}
