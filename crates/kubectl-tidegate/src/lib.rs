//! `kubectl tidegate`: approve, reject and roll back Promotions, and show the state of
//! ImagePolicies, Releases and production history.
//!
//! The binary `kubectl-tidegate` is a kubectl plugin: with it on `PATH`, `kubectl tidegate …`
//! runs it. Every change it makes is an annotation on a Promotion, written under the caller's
//! own authenticated name (learned from a `SelfSubjectReview`), so the server-side approval
//! policy and the controller see exactly what `kubectl annotate` would have written.
//!
//! `approve` and `rollback` change production, so they first show what they change (digest,
//! image, Release, scan, targets, warnings) and ask on the terminal; `--yes` skips the question,
//! and without a terminal and without `--yes` they refuse.
//!
//! Modules: [`cli`] (arguments), [`client`] (kubeconfig, namespace, identity, errors, the
//! conflict-retrying annotation patch), one module per command, [`promotions`] (pure rules about
//! phases, approver lists and rollback targets), [`summary`] (what `approve` and `rollback` show,
//! built from the objects), [`confirm`] (the question) and [`render`] (pure text formatting).

pub mod approve;
pub mod cli;
pub mod client;
pub mod confirm;
pub mod history;
pub mod promotions;
pub mod provenance;
pub mod reject;
pub mod render;
pub mod rollback;
pub mod status;
pub mod summary;

pub use cli::{Cli, Command, GlobalArgs};

/// Runs one command and returns what it prints on standard output.
pub async fn run(cli: Cli) -> anyhow::Result<String> {
    let session = || client::Session::connect(&cli.global);
    match cli.command {
        Command::Approve { promotion, yes } => approve::run(&session().await?, &promotion, yes).await,
        Command::Reject { promotion, reason } => reject::run(&session().await?, &promotion, reason.as_deref()).await,
        Command::Rollback { target, yes } => rollback::run(&session().await?, &target, yes).await,
        Command::Status { policy } => status::run(&session().await?, policy.as_deref(), render::use_colour()).await,
        Command::History { policy } => history::run(&session().await?, &policy).await,
        // Records live in the registry: reading them needs no cluster.
        Command::Provenance { image, trust_policy, trust_store, registry_config, plain_http, output } => {
            let json = output == "json";
            let options = provenance::Options { image, trust_policy, trust_store, registry_config, plain_http, json };
            provenance::run(&options).await
        }
    }
}
