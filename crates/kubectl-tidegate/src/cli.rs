//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// `kubectl tidegate`: approve, reject and roll back Tidegate Promotions, and see what runs where.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "kubectl-tidegate",
    bin_name = "kubectl tidegate",
    version,
    about = "Approve, reject and roll back Tidegate Promotions; show policies, releases and production history",
    long_about = "Approve, reject and roll back Tidegate Promotions; show policies, releases and production history.\n\n\
Everything up to staging is automatic; production changes only when people approve a Promotion. \
This plugin records approvals, rejections and rollback requests as annotations on the Promotion \
(tidegate.dev/approved-by, tidegate.dev/rejected-by, tidegate.dev/rollback-requested-by), always \
under your own authenticated user name, exactly as `kubectl annotate` would. The cluster's approval \
policy checks that the name is yours and that you hold the `approve` verb on promotions.tidegate.dev.\n\n\
`approve` and `rollback` change production: they first print what changes (digest, image, Release and its \
scan, production targets, and any WARNING) and ask on the terminal. `--yes` (`-y`) skips the question; without \
a terminal on standard input and without `--yes` they refuse and write nothing.",
    after_help = "Examples:\n  \
kubectl tidegate status -n shop\n  \
kubectl tidegate approve shop-app-base-7bde398e02aa -n shop\n  \
kubectl tidegate approve shop-app-base-7bde398e02aa -n shop --yes   # no question\n  \
kubectl tidegate reject shop-app-base-7bde398e02aa --reason \"breaks checkout\"\n  \
kubectl tidegate rollback shop-app            # the policy's Monitoring or newest Succeeded Promotion\n  \
kubectl tidegate history shop-app\n  \
kubectl tidegate provenance registry.example.com/shop/app@sha256:…   # signed records, from the registry"
)]
pub struct Cli {
    /// Connection and namespace options, as in kubectl.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The flags every command takes, with kubectl's names and defaults.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Namespace of the objects. Default: the namespace of the kubeconfig context, else `default`.
    #[arg(short = 'n', long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// Path to the kubeconfig file. Default: $KUBECONFIG (a list of files is merged), else
    /// ~/.kube/config, else the in-cluster service account.
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Name of the kubeconfig context to use. Default: the current context.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
}

/// The plugin's commands.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Approve a Promotion: show what it puts in production, ask, then add your user name to its
    /// tidegate.dev/approved-by list.
    ///
    /// First it prints the Promotion, the exact digest and image (`<image>@<digest>`), the
    /// ImagePolicy, the Release with its phase, scan summary and staging tests, the approvals so
    /// far against those required, and the production workloads it will change (the rules frozen
    /// when the Promotion opened, else the ImagePolicy's workloads the Promotion names). A Release
    /// that is missing, not Verified or for another digest, blocking findings and failed tests are
    /// printed as WARNING lines. Then it asks `Approve <digest> for production? [y/N]`; anything
    /// but y or yes writes nothing and exits 1. Without a terminal on standard input it refuses
    /// unless you pass --yes.
    ///
    /// Your name comes from the API server (a SelfSubjectReview), never from a flag. Approving
    /// twice is a no-op and asks nothing. A Promotion that has finished (Succeeded, RolledBack,
    /// Rejected, Expired, Superseded, Failed), that was rejected, or that you requested yourself
    /// cannot be approved.
    #[command(after_help = "Examples:\n  kubectl tidegate approve shop-app-base-7bde398e02aa -n shop\n  \
kubectl tidegate approve shop-app-base-7bde398e02aa -n shop --yes   # no question, e.g. in a script")]
    Approve {
        /// Name of the Promotion.
        #[arg(value_name = "PROMOTION")]
        promotion: String,
        /// Approve without asking. The summary is still printed. Needed when standard input is
        /// not a terminal.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Reject a Promotion: set tidegate.dev/rejected-by to your user name.
    ///
    /// The controller then moves it to Rejected and production is never touched by it. A
    /// Promotion already in Promoting or Monitoring is undone with `rollback` instead. A
    /// rejection by somebody else is left as it is.
    #[command(
        after_help = "Example:\n  kubectl tidegate reject shop-app-base-7bde398e02aa --reason \"checkout fails on staging\""
    )]
    Reject {
        /// Name of the Promotion.
        #[arg(value_name = "PROMOTION")]
        promotion: String,
        /// Why, for the people after you (stored in tidegate.dev/rejection-reason).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Ask for a rollback: show the digest production runs and the one it goes back to, ask,
    /// then set tidegate.dev/rollback-requested-by to your user name.
    ///
    /// Given a Promotion, that one. Given an ImagePolicy, its Promotion in Monitoring, or else its
    /// newest Succeeded one. Write `promotion/NAME` or `imagepolicy/NAME` when a name is both.
    /// The controller restores the digest production ran before the Promotion
    /// (status.previousDigest). It asks `Roll back production to <digest>? [y/N]`; anything but
    /// y or yes writes nothing and exits 1. Without a terminal on standard input it refuses unless
    /// you pass --yes. Asking again once a rollback was requested is a no-op and asks nothing.
    #[command(
        after_help = "Examples:\n  kubectl tidegate rollback shop-app\n  kubectl tidegate rollback promotion/shop-app-base-7bde398e02aa --yes"
    )]
    Rollback {
        /// An ImagePolicy or a Promotion (`imagepolicy/NAME`, `promotion/NAME` to be explicit).
        #[arg(value_name = "POLICY_OR_PROMOTION")]
        target: String,
        /// Request the rollback without asking. The summary is still printed. Needed when
        /// standard input is not a terminal.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Show each ImagePolicy as a tree: image, production and staging digests, its Releases
    /// (newest first) and their Promotions.
    Status {
        /// Only this ImagePolicy. Default: every ImagePolicy in the namespace.
        #[arg(value_name = "POLICY")]
        policy: Option<String>,
    },
    /// Show a policy's production history and its finished Promotions, newest first.
    History {
        /// Name of the ImagePolicy.
        #[arg(value_name = "POLICY")]
        policy: String,
    },
    /// Show the signed promotion records the registry holds for a digest: how it got to
    /// production (Release and trigger, scan, staging tests, each approver, production before and
    /// after), rollbacks and rejections.
    ///
    /// Tidegate attaches each record to the digest as an OCI referrer (an in-toto statement,
    /// artifact type application/vnd.in-toto+json) signed with the same Notary Project key as the
    /// image. Every record is verified with the trust policy and trust store before it is shown;
    /// records that do not verify are listed as REFUSED with the reason. This reads only the
    /// registry: no cluster access is needed. Exits 1 when no record verifies.
    #[command(after_help = "Examples:\n  kubectl tidegate provenance registry.example.com/shop/app@sha256:4c18…\n  \
kubectl tidegate provenance --trust-policy trustpolicy.json --trust-store ./truststore IMAGE@DIGEST -o json\n  \
notation verify registry.example.com/shop/app@<record digest>   # the same check with notation")]
    Provenance {
        /// The image by digest: REGISTRY/REPOSITORY@sha256:….
        #[arg(value_name = "IMAGE@DIGEST")]
        image: String,
        /// Notary Project trust policy. Default: notation's ($XDG_CONFIG_HOME/notation/trustpolicy.json,
        /// else ~/.config/notation/trustpolicy.json).
        #[arg(long, value_name = "FILE")]
        trust_policy: Option<PathBuf>,
        /// Trust store directory holding x509/ca/NAME/ certificates. Default: notation's
        /// (…/notation/truststore).
        #[arg(long, value_name = "DIR")]
        trust_store: Option<PathBuf>,
        /// Registry credentials in Docker's config.json format. Default: ~/.docker/config.json
        /// when it exists.
        #[arg(long, value_name = "FILE")]
        registry_config: Option<PathBuf>,
        /// Reach this registry host (host:port) over plain HTTP; repeatable. Every other host is
        /// reached over HTTPS.
        #[arg(long = "plain-http", value_name = "HOST")]
        plain_http: Vec<String>,
        /// Output format: `text`, or `json` (the verified in-toto statements).
        #[arg(short = 'o', long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["kubectl-tidegate", "approve", "p1", "-n", "shop", "--context", "prod"])
            .expect("parses");
        assert_eq!(cli.global.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.global.context.as_deref(), Some("prod"));
        let cli = Cli::try_parse_from(["kubectl-tidegate", "--kubeconfig", "/tmp/k", "reject", "p1", "--reason", "no"])
            .expect("parses");
        assert_eq!(cli.global.kubeconfig, Some(PathBuf::from("/tmp/k")));
        assert!(matches!(cli.command, Command::Reject { reason: Some(ref r), .. } if r == "no"));
    }

    #[test]
    fn approve_and_rollback_ask_unless_yes() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).expect("parses").command;
        assert!(matches!(parse(&["kubectl-tidegate", "approve", "p1"]), Command::Approve { yes: false, .. }));
        assert!(matches!(parse(&["kubectl-tidegate", "approve", "p1", "--yes"]), Command::Approve { yes: true, .. }));
        assert!(matches!(parse(&["kubectl-tidegate", "approve", "-y", "p1"]), Command::Approve { yes: true, .. }));
        assert!(matches!(parse(&["kubectl-tidegate", "rollback", "app"]), Command::Rollback { yes: false, .. }));
        assert!(matches!(parse(&["kubectl-tidegate", "rollback", "app", "-y"]), Command::Rollback { yes: true, .. }));
        assert!(Cli::try_parse_from(["kubectl-tidegate", "reject", "p1", "--yes"]).is_err(), "reject does not ask");
    }
}
