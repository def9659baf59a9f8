//! The Tidegate controller: watches ImagePolicy, Release and Promotion; for each object it
//! observes the world, asks `tidegate-core` for a plan, executes the plan through the provider
//! traits and writes status once, only when it changed.

pub mod approval_lane;
pub mod approvals;
pub mod azure;
pub mod backoff;
pub mod canary;
pub mod context;
pub mod error;
pub mod index;
pub mod known_runs;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod objects;
pub mod observe;
pub mod policy;
pub mod promotion;
pub mod proofs;
pub mod release;
pub mod rescan;
pub mod scan_queue;
pub mod scanners;
pub mod signature_proofs;
pub mod signing;
pub mod status;
pub mod stores;
pub mod turns;
pub mod vulnerabilities;
pub mod watcher;
pub mod workload_watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use tidegate_api::{ImagePolicy, Promotion, Release};
use tidegate_providers::authz::{Access, ClusterAuthorizer, Reach};
use tidegate_providers::registry::{ClientOptions, RegistryClient};
use tidegate_providers::registry_builder::RegistryBuilder;
use tidegate_providers::report::ReportScanner;
use tidegate_providers::staging_tests::DeployerTestJobs;
use tidegate_providers::targets::ClusterDeployers;
use tidegate_providers::trivy_operator::OperatorScanner;
use tidegate_providers::{Builder, Signer};

use crate::context::{Context, MANAGER};
use crate::error::Error;
use crate::metrics::{FailureLabels, Metrics};

/// How the controller runs.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "TIDEGATE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "tidegate-system")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "tidegate-controller")]
    pub lease_name: String,
    /// This replica's identity in the Lease. Default: the host name and process ID.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Run without leader election (only ever one replica).
    #[arg(long)]
    pub no_leader_election: bool,
    /// Watch ImagePolicies, Releases and Promotions in this namespace only. Default: all.
    #[arg(long, env = "TIDEGATE_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// A `.dockerconfigjson` file with registry credentials (the content of a
    /// `kubernetes.io/dockerconfigjson` Secret).
    #[arg(long, env = "TIDEGATE_REGISTRY_CREDENTIALS")]
    pub registry_credentials: Option<PathBuf>,
    /// A registry host (`host[:port]`, as in image references) reached over plain HTTP; every
    /// other host, loopback included, is reached over HTTPS. A bearer-token endpoint on plain HTTP
    /// receives the registry's credentials only when its host is listed too. Repeatable.
    #[arg(long = "plain-http-registry")]
    pub plain_http_registries: Vec<String>,
    /// How often each ImagePolicy looks again when nothing wakes it, in seconds: it re-reads its
    /// production and staging workloads (drift, the digests in its status) and, with a
    /// `newBuild` trigger, the repository's tags. Each look is spread by up to a tenth. This bounds
    /// how late drift is reported; idle requests grow with policies ÷ interval.
    #[arg(long, env = "TIDEGATE_OBSERVE_INTERVAL_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(5..=86400))]
    pub observe_interval_seconds: u64,
    /// How long what an ImagePolicy last read of its workloads stands, in seconds, when every
    /// staging and production target is a Kubernetes Deployment in a namespace watched as the
    /// policy namespace's deployer and no change of them was seen (a change wakes the policy and
    /// is read at once). Its periodic looks (`--observe-interval-seconds`) read nothing again
    /// until then, and the re-read then is answered from what that watch shows. CronJob and Azure
    /// targets, and a watch that is not listed, are read from the API server on every look.
    #[arg(long, env = "TIDEGATE_RESYNC_INTERVAL_SECONDS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(5..=86400))]
    pub resync_interval_seconds: u64,
    /// Reconciles that may run at once, per kind (ImagePolicy, Release, Promotion, and the
    /// approval lane's passes over Promotions); more wait their turn in order. Bounds the burst
    /// of API requests after a start or a base-image update of many policies, which would
    /// otherwise queue the controller's own Lease renewals behind thousands of its reads on the
    /// API server (and lose its leadership).
    #[arg(long, env = "TIDEGATE_MAX_CONCURRENT_RECONCILES", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,
    /// Requests per second each registry may receive from this controller.
    #[arg(long, default_value_t = 20.0)]
    pub registry_requests_per_second: f64,
    /// Notary Project signing key (PEM; PKCS#8, PKCS#1 or SEC1), e.g. `tls.key` of a mounted
    /// Secret. With `--trust-policy-file`, candidates get Notary Project signatures.
    #[arg(long, env = "TIDEGATE_NOTARY_KEY_FILE", requires = "notary_cert_file")]
    pub notary_key_file: Option<PathBuf>,
    /// The signing key's certificate chain (PEM, leaf first), e.g. `tls.crt` of the same Secret.
    /// With `--notary-key-vault-key-id`: the Key Vault key's chain, leaf first. With
    /// `--notary-key-vault-certificate-id`: the CA certificates above the vault's certificate,
    /// up to the root.
    #[arg(long, env = "TIDEGATE_NOTARY_CERT_FILE")]
    pub notary_cert_file: Option<PathBuf>,
    /// Sign with this Azure Key Vault key instead of a key file:
    /// `https://VAULT.vault.azure.net/keys/NAME[/VERSION]` (without a version: the current one,
    /// pinned at start). Its chain comes from `--notary-cert-file` (leaf first) or from
    /// `--notary-key-vault-certificate-id`. Needs `--azure-credential`; the identity needs the
    /// `get` and `sign` key permissions (role Key Vault Crypto User). EC P-256/P-384/P-521 or RSA
    /// 2048/3072/4096; the controller does not start when the key is not the signing
    /// certificate's.
    #[arg(long, env = "TIDEGATE_NOTARY_KEY_VAULT_KEY_ID", conflicts_with = "notary_key_file")]
    pub notary_key_vault_key_id: Option<String>,
    /// Sign with the key of this Azure Key Vault certificate:
    /// `https://VAULT.vault.azure.net/certificates/NAME[/VERSION]`. Its `cer` is the signing
    /// certificate and its `kid` the key; `--notary-cert-file` adds the CA chain up to the root.
    /// Needs `--azure-credential` (and the `get` certificate permission).
    #[arg(long, env = "TIDEGATE_NOTARY_KEY_VAULT_CERTIFICATE_ID", conflicts_with = "notary_key_file")]
    pub notary_key_vault_certificate_id: Option<String>,
    /// Notary Project trust policy (`trustpolicy.json`) used to verify before staging and before
    /// every production change.
    #[arg(long, env = "TIDEGATE_TRUST_POLICY_FILE", requires = "trust_store_dir")]
    pub trust_policy_file: Option<PathBuf>,
    /// Notary Project trust store directory (`x509/ca/<name>/*.pem`). Without a trust policy and
    /// store nothing is signed: Releases stop before staging (`SigningNotConfigured`).
    #[arg(long, env = "TIDEGATE_TRUST_STORE_DIR", requires = "trust_policy_file")]
    pub trust_store_dir: Option<PathBuf>,
    /// How long a fetched CRL (the certificate revocation list a signing certificate's CRL
    /// distribution point serves) is reused before it is fetched again, in seconds; never past
    /// the CRL's `nextUpdate`. 0 fetches the CRLs for every verification. A revoked signing or CA
    /// certificate fails verification when the trust policy enforces revocation (`strict`).
    #[arg(long, env = "TIDEGATE_NOTARY_CRL_MAX_AGE_SECONDS", default_value_t = 300)]
    pub notary_crl_max_age_seconds: u64,
    /// The `trivy` binary. With it, policies may use `spec.scan.scanner: trivy`: the controller
    /// runs `trivy image` on each candidate digest itself.
    #[arg(long, env = "TIDEGATE_TRIVY_BINARY")]
    pub trivy_binary: Option<PathBuf>,
    /// Trivy's cache directory: the vulnerability database and the layer cache (a volume).
    #[arg(long, env = "TIDEGATE_TRIVY_CACHE_DIR", default_value = "/var/cache/tidegate/trivy")]
    pub trivy_cache_dir: PathBuf,
    /// Never download Trivy's vulnerability database and make no outside request while scanning:
    /// the cache directory must hold a current database (filled by a job or an init container).
    #[arg(long, env = "TIDEGATE_TRIVY_OFFLINE")]
    pub trivy_offline: bool,
    /// Where Trivy downloads its vulnerability database from (an OCI mirror of trivy-db).
    #[arg(long, env = "TIDEGATE_TRIVY_DB_REPOSITORY")]
    pub trivy_db_repository: Option<String>,
    /// Scan through a Trivy server (client/server mode) instead of the local database.
    #[arg(long, env = "TIDEGATE_TRIVY_SERVER")]
    pub trivy_server: Option<String>,
    /// How many Trivy scans run at once. Above 1 only with `--trivy-server`: a local Trivy locks
    /// its cache directory, so local scans run one at a time, while clients of a server share
    /// nothing locally (each still reads the image's layers from the registry).
    #[arg(long, env = "TIDEGATE_TRIVY_CONCURRENCY", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub trivy_concurrency: u16,
    /// How long one Trivy scan may take, in seconds.
    #[arg(long, default_value_t = 600)]
    pub trivy_timeout_seconds: u64,
    /// Azure Container Apps targets.
    #[command(flatten)]
    pub azure: azure::AzureArgs,
}

/// Providers that replace the ones [`Config`] selects. The product passes none; only the test
/// binary `tidegate-controller-fakes` (crate `tidegate-test-support`) injects doubles here.
#[derive(Clone, Default)]
pub struct Overrides {
    /// Builds candidates instead of the registry builder.
    pub builder: Option<Arc<dyn Builder>>,
    /// Signs and verifies instead of the signer the signing flags configure.
    pub signer: Option<Arc<dyn Signer>>,
}

/// Runs the controller until the process is stopped or leadership is lost.
pub async fn run(config: Config) -> anyhow::Result<()> {
    run_with(config, Overrides::default()).await
}

/// [`run`] with `overrides` in place of the providers `config` selects.
pub async fn run_with(config: Config, overrides: Overrides) -> anyhow::Result<()> {
    let kube_config = kube::Config::infer().await?;
    let client = kube::Client::try_from(kube_config.clone())?;
    let reach = Arc::new(Reach::new(kube_config, MANAGER));
    let identity = whoami(&client).await?;
    let metrics = Arc::new(Metrics::default());
    let registry = Arc::new(registry_client(&config).await?);
    let watcher = Arc::new(watcher::BaseWatcher::new(registry.clone()));
    let server = tokio::spawn(metrics::serve(config.metrics_addr, metrics.clone(), watcher.clone()));
    tokio::spawn(memory::release_unused());

    let replica = config.identity.clone().unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    // One leader acts. `leadership` is valid only until the renew deadline after the start of
    // the last successful renewal (monotonic clock); the process exits once it is not, and
    // production writes call `leadership.check()` right before writing.
    let leadership = if config.no_leader_election {
        leader::Leadership::unfenced()
    } else {
        let election =
            leader::LeaderElection::new(client.clone(), &config.lease_namespace, &config.lease_name, &replica);
        election.acquire().await?;
        let leadership = election.leadership();
        tokio::spawn(async move {
            election.keep_renewing().await;
            tracing::error!("leadership lost; exiting so that a single replica acts");
            std::process::exit(1);
        });
        leadership
    };
    // Fencing hook: exits the process as soon as leadership is not valid, even if the async
    // runtime is busy or resumed late after a freeze.
    leadership.exit_when_lost();

    let signing = match overrides.signer {
        // A test double signs; it has no key to sign promotion records with.
        Some(signer) => signing::Signing { signer, ..signing::Signing::not_configured() },
        None => signing::from_config(&config, registry.clone()).await?,
    };
    let azure = config.azure.targets().await?;
    if let Some(azure) = &azure {
        let azure = azure.clone();
        metrics.set_azure_stats(Arc::new(move || azure.request_counts()));
    }
    // `acrTask` builds use the Azure client and the per-namespace grants of the Azure targets.
    let builder = overrides.builder.unwrap_or_else(|| {
        Arc::new(
            RegistryBuilder::new(registry.clone(), reach.clone())
                .with_acr_tasks(azure.as_ref().map(|azure| azure.acr_tasks())),
        )
    });
    // One watch per kind, shared by the controllers (the approval lane too), read by every reconcile.
    let (stores, triggers, watches) = stores::watch(&client, config.namespace.as_deref());
    let workload_watches = Arc::new(workload_watch::WorkloadWatches::default());
    let (wakes, woken) = workload_watch::wakes();
    let scan_queue = Arc::new(scan_queue::ScanQueue::new(wakes.releases(), metrics.scans_pending.clone()));
    tokio::spawn(workload_watch::run(reach.clone(), workload_watches.clone(), stores.clone(), wakes));
    let ctx = Arc::new(Context {
        stores: stores.clone(),
        objects: objects::Objects::kube(&client),
        deployers: Arc::new(ClusterDeployers::new(reach.clone(), azure.clone())),
        test_jobs: Arc::new(DeployerTestJobs::new(reach.clone())),
        leadership: leadership.clone(),
        authorizer: {
            let authorizer = ClusterAuthorizer::new(client.clone())?;
            authorizer.keep_admission_copies();
            Arc::new(authorizer)
        },
        builder,
        scanners: scanners::Scanners {
            config_maps: Arc::new(ReportScanner::new(reach.clone(), Access::new(client.clone()))),
            signed_reports: signing.reports,
            operator: Some(Arc::new(OperatorScanner::new(reach.clone()))),
            trivy: scanners::trivy_from_config(&config, registry.clone())?,
            defender: azure.as_ref().map(|a| {
                Arc::new(tidegate_providers::defender::DefenderScanner::new(a.arm().clone(), a.scopes().clone()))
                    as Arc<dyn tidegate_providers::Scanner>
            }),
        },
        scans: vulnerabilities::cache(),
        scan_queue,
        signer: signing.signer,
        signature_proofs: Default::default(),
        right_proofs: Default::default(),
        known_runs: Default::default(),
        turns: Default::default(),
        attestor: signing.attestor,
        events: Arc::new(objects::Published::new(client.clone(), MANAGER, replica.clone())),
        metrics: metrics.clone(),
        backoff: backoff::Backoff::default(),
        identity: identity.clone(),
        clock: Arc::new(jiff::Timestamp::now),
        watcher: watcher.clone(),
        registry: registry.clone(),
        canary: canary::CanaryClock::default(),
        http_checks: config.azure.http_checks()?,
        observe_interval: std::time::Duration::from_secs(config.observe_interval_seconds),
        workload_watches: workload_watches.clone(),
        resync_interval: std::time::Duration::from_secs(config.resync_interval_seconds),
    });
    tracing::info!(%identity, %replica, "controller starting");
    let bounded = || kube::runtime::controller::Config::default().concurrency(config.max_concurrent_reconciles);
    metrics.set_ready(true);

    let own = || stores.versions.clone();
    let releases =
        Controller::for_shared_stream(stores::changed_by_others(triggers.releases, own()), stores.releases.clone())
            .with_config(bounded())
            // The controller holds no rights on workloads or Jobs: a Release that waits for a rollout
            // or a Job looks again every POLL, and sooner when its Deployments change (watched as the
            // policy namespace's deployer).
            .reconcile_on(workload_watch::stream(woken.releases))
            .watches_shared_stream(triggers.policies_for_releases, {
                let stores = stores.clone();
                move |policy| stores.release_refs_of(&policy)
            })
            .shutdown_on_signal()
            .run(reconcile_release, error_policy, ctx.clone())
            .for_each(|_| async {});

    let promotions =
        Controller::for_shared_stream(stores::changed_by_others(triggers.promotions, own()), stores.promotions.clone())
            .with_config(bounded())
            // Promotions that change or watch production look again every few seconds (see the
            // planner's requeue), and sooner when their Deployments change.
            .reconcile_on(workload_watch::stream(woken.promotions))
            .watches_shared_stream(triggers.releases_for_promotions, {
                let stores = stores.clone();
                move |release| stores.promotion_refs_of(&release)
            })
            .shutdown_on_signal()
            .run(reconcile_promotion, error_policy, ctx.clone())
            .for_each(|_| async {});

    // A person's approval or rejection does not wait behind the rollouts' polls in the
    // Promotion controller's queue: the approval lane acts on it with slots of its own.
    let approval_lane = Controller::for_shared_stream(
        approval_lane::triggers(triggers.promotions_for_approvals, own()),
        stores.promotions.clone(),
    )
    .with_config(bounded())
    .shutdown_on_signal()
    .run(reconcile_approval, approval_error_policy, ctx.clone())
    .for_each(|_| async {});

    let (changed_tx, changed_rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(watcher.clone().run(stores.policies.clone(), changed_tx));
    let policies = Controller::for_shared_stream(triggers.policies, stores.policies.clone())
        .with_config(bounded())
        .reconcile_all_on(stores::stream_of(changed_rx))
        .reconcile_on(workload_watch::stream(woken.policies))
        .watches_shared_stream(
            stores::releases_new_to_their_policy(triggers.releases_for_policies, stores.policies.clone()),
            |r| r.namespace().map(|ns| ObjectRef::<ImagePolicy>::new(&r.spec.policy).within(&ns)),
        )
        .watches_shared_stream(triggers.promotions_for_policies, |p| {
            p.namespace().map(|ns| ObjectRef::<ImagePolicy>::new(&p.spec.policy).within(&ns))
        })
        .shutdown_on_signal()
        .run(reconcile_policy, error_policy, ctx.clone())
        .for_each(|_| async {});

    let controllers = async {
        futures::future::join4(releases, promotions, approval_lane, policies).await;
    };
    tokio::select! {
        _ = controllers => {}
        // The watches run until the process ends; they end only if every subscriber is gone.
        _ = watches => {}
        result = server => result??,
    }
    Ok(())
}

async fn registry_client(config: &Config) -> anyhow::Result<RegistryClient> {
    let credentials = match &config.registry_credentials {
        Some(path) => {
            let json =
                std::fs::read(path).map_err(|e| anyhow::anyhow!("--registry-credentials {}: {e}", path.display()))?;
            tidegate_providers::registry::auth::from_docker_config(&json)
                .map_err(|e| anyhow::anyhow!("--registry-credentials {}: {e}", path.display()))?
        }
        None => Default::default(),
    };
    Ok(RegistryClient::new(ClientOptions {
        credentials,
        plain_http: config.plain_http_registries.iter().cloned().collect(),
        requests_per_second: config.registry_requests_per_second,
        acr_identity: config.azure.registry_identities().await?,
        ..Default::default()
    })?)
}

async fn whoami(client: &kube::Client) -> anyhow::Result<String> {
    let reviews: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = reviews.create(&PostParams::default(), &SelfSubjectReview::default()).await?;
    review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username)
        .ok_or_else(|| anyhow::anyhow!("the API server did not say who this controller is (SelfSubjectReview)"))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "tidegate".into())
}

fn key<K: ResourceExt>(kind: &str, object: &K) -> String {
    format!("{kind}/{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

async fn instrumented(
    ctx: &Context,
    kind: &'static str,
    key: String,
    work: impl std::future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = work.await;
    ctx.metrics.observe(kind, started.elapsed());
    match &result {
        Ok(_) => ctx.backoff.succeeded(&key),
        Err(e) => {
            ctx.metrics.failures.get_or_create(&FailureLabels { kind, category: e.category() }).inc();
        }
    }
    result
}

async fn reconcile_release(object: Arc<Release>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key("Release", object.as_ref());
    instrumented(&ctx.clone(), "Release", key, release::reconcile(object, ctx)).await
}

async fn reconcile_promotion(object: Arc<Promotion>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key("Promotion", object.as_ref());
    instrumented(&ctx.clone(), "Promotion", key, promotion::reconcile(object, ctx)).await
}

async fn reconcile_approval(object: Arc<Promotion>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key("Approval", object.as_ref());
    instrumented(&ctx.clone(), "Approval", key, approval_lane::reconcile(object, ctx)).await
}

async fn reconcile_policy(object: Arc<ImagePolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = key("ImagePolicy", object.as_ref());
    instrumented(&ctx.clone(), "ImagePolicy", key, policy::reconcile(object, ctx)).await
}

fn error_policy<K: kube::Resource<DynamicType = ()> + ResourceExt>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = key(&K::kind(&()), object.as_ref());
    let delay = ctx.backoff.failed(&key);
    tracing::warn!(object = %key, category = error.category(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A failed lane pass is not retried by the lane: the change that woke it also woke the
/// Promotion controller, whose pass (and its backoff) carries on from there.
fn approval_error_policy(object: Arc<Promotion>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::debug!(object = %key("Promotion", object.as_ref()), category = error.category(), error = %error, "approval lane pass failed; the Promotion controller retries");
    Action::await_change()
}

/// The flags `args` give, parsed as the binary parses them (for unit tests).
#[cfg(test)]
pub(crate) fn config_from(args: &[&str]) -> Result<Config, clap::Error> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }
    use clap::Parser;
    Cli::try_parse_from(std::iter::once("tidegate-controller").chain(args.iter().copied())).map(|c| c.config)
}
