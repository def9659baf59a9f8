//! `tidegate-controller-fakes`: the Tidegate controller with test doubles, for tests only. It
//! takes every flag of `tidegate-controller` and adds `--builder in-process` and
//! `--signing-key-file`, which the product binary does not have.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use tidegate_controller::Overrides;
use tidegate_test_support::{HmacSigner, InProcessBuilder};

/// The Tidegate controller with test doubles. FOR TESTS ONLY: never deploy this binary.
#[derive(Parser)]
#[command(name = "tidegate-controller-fakes", version, about)]
struct Cli {
    #[command(flatten)]
    config: tidegate_controller::Config,
    /// How candidates are built: `registry` (the product's builder) or `in-process` (no registry;
    /// digests derived from the build inputs).
    #[arg(long, value_enum, default_value = "registry")]
    builder: BuilderKind,
    /// File with an HMAC key (at least 16 bytes) that signs and verifies candidates instead of
    /// Notary Project signatures. Without it, signing is configured as in the product.
    #[arg(long, conflicts_with_all = ["notary_key_file", "trust_policy_file"])]
    signing_key_file: Option<PathBuf>,
}

/// How candidates are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum BuilderKind {
    /// The product's builder: rebase in the registry, resolve external builds there.
    Registry,
    /// No registry: digests derived from the build inputs ([`InProcessBuilder`]).
    InProcess,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    tracing::warn!("tidegate-controller-fakes runs with test doubles; it is for tests only");
    let mut overrides = Overrides::default();
    if cli.builder == BuilderKind::InProcess {
        overrides.builder = Some(Arc::new(InProcessBuilder));
    }
    if let Some(path) = &cli.signing_key_file {
        let key = std::fs::read(path).map_err(|e| anyhow::anyhow!("--signing-key-file {}: {e}", path.display()))?;
        overrides.signer = Some(Arc::new(HmacSigner::new(key)?));
    }
    tidegate_controller::run_with(cli.config, overrides).await
}
