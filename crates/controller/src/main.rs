//! `tidegate-controller`: the Tidegate controller binary.

use clap::Parser;

/// Keeps container images secure and current; production changes only with human approval.
#[derive(Parser)]
#[command(name = "tidegate-controller", version, about)]
struct Cli {
    #[command(flatten)]
    config: tidegate_controller::Config,
}

fn main() -> anyhow::Result<()> {
    // Before the runtime starts its threads (see `tidegate_controller::memory`).
    tidegate_controller::memory::limit_arenas();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    // One TLS crypto provider for every client in the process (kube, HTTP checks).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    tidegate_controller::run(cli.config).await
}
