//! `cargo xtask bench scale`: N ImagePolicies on one controller, one base image update for all of
//! them, then every Promotion approved at once; how long it takes, what it costs the controller's
//! memory, the API server and the registry, and what the controller does once nothing changes.
//!
//! Each run starts what the demo (`cargo xtask demo --local`) starts: the local control plane
//! (with the kube-apiserver audit log on, for the controller's user only), the loopback CNCF
//! distribution registry, a Notary Project signing identity generated for the run, Trivy with an
//! offline database written here, and the controller as a local process with its least-privilege
//! identity. Then ([`crate::bench_scale_setup`]) N policies, 10 to a namespace, each with a
//! staging and a production Deployment on kwok's nodes, all watching one base image.
//!
//! Measured from the moment the new base digest is pushed (the registry's push notification is
//! posted to the controller's webhook right after): every Release Verified and every Promotion
//! AwaitingApproval; then every Promotion approved at once as `alice`, and per Promotion the time
//! from its approval write (the API server's answer) to the first production Deployment of its
//! policy with a new pod template image (seen on a watch); the controller's VmRSS/VmHWM; its API requests by verb and
//! resource (audit log); an idle window; the registry's requests (its access log). With
//! `--peer argo`, Argo Rollouts is measured next on the same control plane
//! ([`crate::bench_scale_argo`]), and the report puts the two side by side as ratios.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use clap::{Args, ValueEnum};
use futures::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;
use tidegate_api::{ImagePolicy, Promotion, PromotionPhase, RecordEvent, Release, ReleasePhase};
use tidegate_testenv::registry::{Registry, RegistryOptions};
use tidegate_testenv::{Options, TestEnv, apply, scanner_tools};

use crate::bench_scale_argo as argo;
use crate::bench_scale_audit as audit;
use crate::bench_scale_history::{self as history, Relist};
use crate::bench_scale_report::{self as report, RunResult};
use crate::bench_scale_setup::{self as setup, ROLE_LABEL, Slot};
use crate::demo::{CONTROLLER_USER, Controller, ControllerSigning};

/// Arguments of `cargo xtask bench scale`.
#[derive(Args)]
pub struct ScaleArgs {
    /// Numbers of ImagePolicies to measure, each with a staging and a production Deployment. The
    /// default took 16 minutes with the baseline controller (commit 66e5e68) on 2 shared cores.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    policies: Vec<usize>,
    /// Runs per N; the report shows the median of each figure. Default 1: a run at N=100 took
    /// eight minutes with the baseline controller on 2 shared cores (set-up, three minutes to
    /// AwaitingApproval, the approvals, the one-minute monitor window, the idle window).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// The controller binary to measure. Default: `cargo build --release -p tidegate-controller`
    /// of this tree.
    #[arg(long)]
    controller_binary: Option<PathBuf>,
    /// Extra controller flag (repeatable), e.g. `--controller-arg=--registry-requests-per-second=50`.
    #[arg(long = "controller-arg", allow_hyphen_values = true)]
    controller_args: Vec<String>,
    /// Name of this measurement in the report (e.g. `before`, `after`); its section is replaced,
    /// other labels' sections are kept. Default: the tree's short commit.
    #[arg(long)]
    label: Option<String>,
    /// The report (a relative path is taken from the repository root).
    #[arg(long, default_value = "docs/benchmarks.md")]
    output: PathBuf,
    /// Seconds of the idle window, after every Promotion Succeeded.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Policies per namespace (each namespace has its `-staging` twin).
    #[arg(long, default_value_t = 10)]
    per_namespace: usize,
    /// Ended Releases, and as many ended Promotions, created over the policies before the
    /// controller starts (a cluster's kept history); with any, the controller is also restarted
    /// after the idle window and its peak memory during the full relist measured.
    #[arg(long, default_value_t = 0)]
    history: usize,
    /// How many base images the policies share (round robin: policy i watches base i mod K, each
    /// its own repository `base/runtime-<k>`, or `base/runtime` when K is 1). Every base gets its
    /// update at the push.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    bases: u64,
    /// The base trigger's interval in every policy (`spec.triggers.baseImage.interval`): how often
    /// the controller looks at each base when no notification comes. With a short one, the idle
    /// window's registry requests show what watching K shared bases costs.
    #[arg(long, default_value = "15m")]
    base_interval: String,
    /// Approvals per second: the Promotions are approved one after another at this rate, as
    /// approvers would over a morning, instead of all at once (the default), so approval →
    /// production write shows the latency of one approval rather than the time to work through
    /// a queue of N.
    #[arg(long)]
    approvals_per_second: Option<f64>,
    /// Scan through a Trivy server instead of Trivy's local database: the bench starts
    /// `trivy server` on loopback with the run's database, and the controller scans through it
    /// with `--trivy-server` and `--trivy-concurrency` set to this many scans at once.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    trivy_server_concurrency: Option<u16>,
    /// The local kube-controller-manager's client rate: `--kube-api-qps` (burst twice that) and
    /// as many Deployment and ReplicaSet workers as a tenth of it (at least upstream's 5).
    /// Default: upstream's limits (20 requests a second, 5 workers), which bound how fast the
    /// cluster rolls out N staging Deployments whoever changes them: at N=200 they made half of
    /// push → all AwaitingApproval. Large clusters raise them; so does this flag, to show what
    /// Tidegate itself takes.
    #[arg(long, value_parser = clap::value_parser!(u32).range(20..=10_000))]
    controller_manager_qps: Option<u32>,
    /// Keep each run's directory (control plane, audit log, controller log) instead of removing it
    /// after a successful run.
    #[arg(long)]
    keep: bool,
    /// Also measure a peer in the same run, on the same control plane, after Tidegate (whose
    /// controller is stopped first). `argo`: Argo Rollouts (`rollouts-controller` built once from
    /// its pinned Go module into the tools cache) with N blue-green Rollouts, all promoted at
    /// once; promote → active Service switch p50/p99 and its memory, shown beside Tidegate's
    /// approval → production write and memory as ratios.
    #[arg(long, value_enum)]
    peer: Option<Peer>,
}

/// A controller measured beside Tidegate (`--peer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// Argo Rollouts, blue-green.
    Argo,
}

/// What every run shares: the controller, Trivy and its database, where runs keep their files.
struct Shared {
    controller: PathBuf,
    scanner: scanner_tools::ScannerTools,
    trivy: PathBuf,
    trivy_cache: PathBuf,
    work: PathBuf,
    /// Argo Rollouts, when it is measured beside Tidegate.
    argo: Option<tidegate_testenv::argo_rollouts::ArgoRollouts>,
}

pub fn run(args: &ScaleArgs) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    ensure!(!args.policies.is_empty() && args.policies.iter().all(|&n| n > 0), "--policies must list numbers > 0");
    ensure!(args.per_namespace > 0, "--per-namespace must be at least 1");
    let started = Instant::now();
    let command = format!("cargo xtask {}", std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let label = match &args.label {
        Some(label) => label.clone(),
        None => git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "current".into()),
    };
    ensure!(
        !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "--label must be letters, digits, '-', '_' or '.'"
    );
    tidegate_testenv::tools::build(&mut |line| eprintln!("[tools] {line}")).context("building the tools")?;
    let scanner = scanner_tools::build_scanner(&mut |line| eprintln!("[tools] {line}"))?;
    let argo = match args.peer {
        Some(Peer::Argo) => Some(
            tidegate_testenv::argo_rollouts::build_argo_rollouts(&mut |line| eprintln!("[tools] {line}"))
                .context("building Argo Rollouts")?,
        ),
        None => None,
    };
    let (controller, built) = match &args.controller_binary {
        Some(path) => {
            let path =
                std::fs::canonicalize(path).with_context(|| format!("--controller-binary {}", path.display()))?;
            (path.clone(), format!("`{}` (given)", path.display()))
        }
        None => build_controller()?,
    };
    let work = std::env::temp_dir().join("tidegate-bench-scale").join(&label);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let trivy_cache = work.join("trivy-cache");
    scanner_tools::write_vulnerability_db(&scanner, &crate::demo::advisories(false), &trivy_cache)?;
    let shared = Shared { controller, trivy: scanner.trivy(), scanner, trivy_cache, work, argo };
    let machine = crate::bench::machine_info();

    let runtime = crate::runtime()?;
    let mut results = Vec::new();
    let mut relists = Vec::new();
    for &n in &args.policies {
        let mut runs = Vec::new();
        for run in 1..=args.runs {
            eprintln!("[bench scale] N={n}, run {run}/{}", args.runs);
            let (result, relist) =
                runtime.block_on(measure(args, &shared, n, run)).with_context(|| format!("N={n}, run {run}"))?;
            eprintln!("[bench scale] N={n} run {run}: {}", one_line(&result));
            if let Some(relist) = relist {
                let line = format!("N={n} run {run}: {}", relist.describe());
                eprintln!("[bench scale] {line}");
                relists.push(line);
            }
            runs.push(result);
        }
        results.push(runs);
    }

    let mut facts = facts(&machine, &built, args, shared.argo.as_ref(), started.elapsed());
    facts.extend(relists);
    let date = Timestamp::now().strftime("%Y-%m-%d %H:%M UTC").to_string();
    let section = report::render_section(&report::Section {
        label: &label,
        date: &date,
        command: &command,
        facts: &facts,
        results: &results,
    });
    let output = if args.output.is_absolute() { args.output.clone() } else { crate::root().join(&args.output) };
    let existing = std::fs::read_to_string(&output).unwrap_or_default();
    let merged = report::merge(&existing, PREAMBLE, &label, &section);
    if let Some(dir) = output.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&output, merged).with_context(|| format!("writing {}", output.display()))?;
    println!("{section}");
    eprintln!("[bench scale] wrote section `{label}` of {} after {:.0?}", output.display(), started.elapsed());
    Ok(())
}

fn one_line(r: &RunResult) -> String {
    let p = |q| report::percentile(&r.to_production, q).map_or(f64::NAN, |d| d.as_secs_f64());
    let peer = r.peer.as_ref().map_or(String::new(), |peer| {
        let q = |q| report::percentile(&peer.to_switch, q).map_or(f64::NAN, |d| d.as_secs_f64());
        format!(
            "; {}: promote → switch p50 {:.2} s p99 {:.2} s, VmRSS {} MiB (HWM {} MiB)",
            peer.name,
            q(50.0),
            q(99.0),
            peer.rss_kib / 1024,
            peer.hwm_kib / 1024
        )
    });
    format!(
        "all AwaitingApproval after {:.1} s; approval → production p50 {:.2} s p99 {:.2} s; VmRSS {} MiB (HWM {} MiB); {:.0} requests per policy; idle {:.0} requests/min, {} status writes{peer}",
        r.to_awaiting.as_secs_f64(),
        p(50.0),
        p(99.0),
        r.rss_kib / 1024,
        r.hwm_kib / 1024,
        r.requests_per_policy(),
        r.idle_per_minute(),
        r.idle_status_writes
    )
}

/// `cargo build --release -p tidegate-controller`; the binary and a description of what was built.
fn build_controller() -> Result<(PathBuf, String)> {
    eprintln!("[bench scale] cargo build --release -p tidegate-controller");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(crate::root())
        .args(["build", "--release", "--quiet", "-p", "tidegate-controller"])
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "building the release controller failed");
    let binary = crate::demo::target_dir()?.join("release").join("tidegate-controller");
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown commit".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let tree = if dirty { format!("{commit} with uncommitted changes") } else { commit };
    Ok((binary, format!("release build of this tree ({tree})")))
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").current_dir(crate::root()).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// When things were first seen on the watches, by `namespace/name`.
#[derive(Default)]
struct Seen {
    verified: BTreeSet<String>,
    /// Releases and Promotions that ended badly, with their Ready condition's message.
    failed: BTreeMap<String, String>,
    awaiting: BTreeMap<String, Instant>,
    left_awaiting: BTreeMap<String, Instant>,
    succeeded: BTreeSet<String>,
    /// Promotion → its policy's `namespace/name`.
    promotion_policy: BTreeMap<String, String>,
    /// Production Deployment → (image first seen, when it first changed).
    production: BTreeMap<String, (String, Option<Instant>)>,
    /// Promotion → its phase and Ready message last seen (for errors).
    promotion_state: BTreeMap<String, String>,
}

impl Seen {
    /// The state of one Promotion that has not left AwaitingApproval or not Succeeded, for an
    /// error message.
    fn a_straggler(&self) -> String {
        self.promotion_state
            .iter()
            .find(|(k, _)| !self.succeeded.contains(*k))
            .map(|(k, state)| format!("; e.g. Promotion {k}: {state}"))
            .unwrap_or_default()
    }
}

fn key<K: kube::ResourceExt>(object: &K) -> String {
    format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
}

fn ready_message(conditions: &[tidegate_api::Condition]) -> String {
    conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.message.clone()).unwrap_or_default()
}

/// Watches Releases, Promotions and the production Deployments (as the administrator, not
/// audited), recording into `seen` when each reaches the phases measured.
fn spawn_watches(client: &kube::Client, seen: &Arc<Mutex<Seen>>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let (s, api) = (seen.clone(), Api::<Release>::all(client.clone()));
    tasks.push(tokio::spawn(async move {
        // The history (`--history`) ended before the run; only the run's own objects count.
        let live = watcher::Config::default().labels(&format!("!{}", history::LABEL));
        let mut stream = watcher(api, live).default_backoff().applied_objects().boxed();
        while let Some(event) = stream.next().await {
            let Ok(release) = event else { continue };
            let Some(status) = release.status.as_ref() else { continue };
            let mut seen = s.lock().unwrap_or_else(|e| e.into_inner());
            match status.phase {
                ReleasePhase::Verified => {
                    seen.verified.insert(key(&release));
                }
                ReleasePhase::Rejected | ReleasePhase::Failed | ReleasePhase::Superseded => {
                    let why = format!("Release {:?}: {}", status.phase, ready_message(&status.conditions));
                    seen.failed.insert(key(&release), why);
                }
                _ => {}
            }
        }
    }));
    let (s, api) = (seen.clone(), Api::<Promotion>::all(client.clone()));
    tasks.push(tokio::spawn(async move {
        // The history (`--history`) ended before the run; only the run's own objects count.
        let live = watcher::Config::default().labels(&format!("!{}", history::LABEL));
        let mut stream = watcher(api, live).default_backoff().applied_objects().boxed();
        while let Some(event) = stream.next().await {
            let Ok(promotion) = event else { continue };
            let now = Instant::now();
            let k = key(&promotion);
            let mut seen = s.lock().unwrap_or_else(|e| e.into_inner());
            let policy = format!("{}/{}", promotion.namespace().unwrap_or_default(), promotion.spec.policy);
            seen.promotion_policy.insert(k.clone(), policy);
            let Some(status) = promotion.status.as_ref() else { continue };
            let state = format!("{:?}, {}", status.phase, ready_message(&status.conditions));
            seen.promotion_state.insert(k.clone(), state);
            match status.phase {
                PromotionPhase::AwaitingApproval => {
                    seen.awaiting.entry(k).or_insert(now);
                }
                phase => {
                    seen.left_awaiting.entry(k.clone()).or_insert(now);
                    match phase {
                        // Done once its signed promotion record is attached (or given up on):
                        // attaching it is the last of the Promotion's work.
                        PromotionPhase::Succeeded
                            if status.records.iter().any(|r| r.event == RecordEvent::Promoted) =>
                        {
                            seen.succeeded.insert(k);
                        }
                        PromotionPhase::RolledBack
                        | PromotionPhase::Failed
                        | PromotionPhase::Rejected
                        | PromotionPhase::Expired
                        | PromotionPhase::Superseded => {
                            let why = format!("Promotion {phase:?}: {}", ready_message(&status.conditions));
                            seen.failed.insert(k, why);
                        }
                        _ => {}
                    }
                }
            }
        }
    }));
    let (s, api) = (seen.clone(), Api::<Deployment>::all(client.clone()));
    tasks.push(tokio::spawn(async move {
        let config = watcher::Config::default().labels(&format!("{ROLE_LABEL}=production"));
        let mut stream = watcher(api, config).default_backoff().applied_objects().boxed();
        while let Some(event) = stream.next().await {
            let Ok(deployment) = event else { continue };
            let now = Instant::now();
            let image = deployment
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let mut seen = s.lock().unwrap_or_else(|e| e.into_inner());
            let policy = production_policy(&deployment);
            if policy == key(&deployment) {
                // The Deployment the bench created: its image is the one production ran.
                let entry = seen.production.entry(policy).or_insert_with(|| (image.clone(), None));
                if entry.0 != image && entry.1.is_none() {
                    entry.1 = Some(now);
                }
            } else if let Some(entry) = seen.production.get_mut(&policy) {
                // A slot the controller made (`app-3-green`, carrying the labels): written when
                // it runs another image than production did.
                if entry.0 != image && entry.1.is_none() {
                    entry.1 = Some(now);
                }
            }
        }
    }));
    tasks
}

/// The `namespace/policy` a production Deployment belongs to: its own name, or the name of the
/// Deployment a slot (`tidegate.dev/slot: green` → `app-3-green`) was made from.
fn production_policy(deployment: &Deployment) -> String {
    let name = deployment.name_any();
    let base = deployment
        .labels()
        .get("tidegate.dev/slot")
        .and_then(|slot| name.strip_suffix(&format!("-{slot}")))
        .unwrap_or(&name)
        .to_string();
    format!("{}/{base}", deployment.namespace().unwrap_or_default())
}

/// Polls `check` on the watched state every 50 ms until it says done, the controller exits, a
/// Release or Promotion fails, or `timeout` passes.
async fn wait_for(
    what: &str,
    timeout: Duration,
    controller: &mut Controller,
    seen: &Arc<Mutex<Seen>>,
    mut check: impl FnMut(&Seen) -> (bool, String),
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let (done, progress) = {
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((object, why)) = seen.failed.iter().next() {
                bail!("{object} ended: {why} (controller log {})", controller.log.display());
            }
            check(&seen)
        };
        if done {
            return Ok(());
        }
        if let Some(status) = controller.exited() {
            bail!("the controller exited ({status}) while waiting for {what}; log {}", controller.log.display());
        }
        if Instant::now() > deadline {
            let straggler = seen.lock().unwrap_or_else(|e| e.into_inner()).a_straggler();
            bail!(
                "{what}: not within {timeout:?} ({progress}{straggler}); controller log {}",
                controller.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One run at `n` policies (and the restart with the history, if any).
async fn measure(args: &ScaleArgs, shared: &Shared, n: usize, run: usize) -> Result<(RunResult, Option<Relist>)> {
    let dir = shared.work.join(format!("n{n}-r{run}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let (policy_file, audit_log) = (dir.join("audit-policy.yaml"), dir.join("audit.log"));
    std::fs::write(&policy_file, audit::policy_yaml(CONTROLLER_USER))?;
    let options = Options {
        dir: Some(dir.join("env")),
        nodes: setup::nodes_for(n) + if shared.argo.is_some() { argo::nodes_for(n) } else { 0 },
        install_crds: true,
        apiserver_args: vec![
            format!("--audit-policy-file={}", policy_file.display()),
            format!("--audit-log-path={}", audit_log.display()),
            "--audit-log-format=json".into(),
            "--audit-log-maxsize=0".into(),
        ],
        controller_manager_args: args.controller_manager_qps.map(controller_manager_args).unwrap_or_default(),
    };
    let env = TestEnv::start_with(options).await.context("starting the local control plane")?;
    let client = env.client().await?;
    apply::apply_dir(&client, &crate::root().join("deploy"), "default", "tidegate-bench").await?;
    apply::apply_yaml(
        &client,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: bench-approvers}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-approver}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: tidegate-approvers}\n",
        "default",
        "tidegate-bench",
    )
    .await?;
    let registry = Registry::start(RegistryOptions::default()).await.context("starting the registry")?;
    let slots = setup::slots(n, args.per_namespace);
    let trigger = setup::BaseTrigger { bases: args.bases as usize, interval: args.base_interval.clone() };
    let (old_bases, apps) = setup::push_images(&registry, &slots, trigger.bases).await?;
    setup::create_workloads(&env, &client, &slots, &apps, registry.host(), &trigger).await?;
    history::create(&client, &slots, args.history).await.context("creating the history")?;
    eprintln!("[bench scale] {n} policies and {} Deployments ready; starting the controller", 2 * n);

    let identity =
        tidegate_testenv::pki::write_code_signing_identity(&dir.join("notary"), "tidegate bench", "tidegate")?;
    // Through a Trivy server, the controller's own cache holds no database.
    let (trivy_server, trivy_cache, controller_args) = match args.trivy_server_concurrency {
        None => (None, shared.trivy_cache.clone(), args.controller_args.clone()),
        Some(at_once) => {
            let home = dir.join("trivy-server");
            std::fs::create_dir_all(&home)?;
            let server = scanner_tools::TrivyServer::start(&shared.scanner, &shared.trivy_cache, &home).await?;
            let mut controller_args = args.controller_args.clone();
            controller_args
                .extend([format!("--trivy-server={}", server.url()), format!("--trivy-concurrency={at_once}")]);
            (Some(server), dir.join("trivy-client"), controller_args)
        }
    };
    let signing = ControllerSigning { identity: &identity, trivy: &shared.trivy, trivy_cache: &trivy_cache };
    let mut controller =
        Controller::spawn(&env, &shared.controller, &dir, &signing, &registry.plain_http_hosts(), &controller_args)?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watches = spawn_watches(&client, &seen);
    let result = drive(args, &env, &client, &registry, &slots, &old_bases, &mut controller, &seen, &audit_log).await;
    for task in watches {
        task.abort();
    }
    drop(controller);
    // The restart (with a history) stops again before the peer runs alone.
    let result = match result {
        Ok(result) if args.history > 0 => {
            let restart = Restart {
                env: &env,
                shared,
                dir: &dir,
                signing: &signing,
                registry: &registry,
                controller_args: &controller_args,
            };
            restart.measure(&audit_log).await.map(|relist| (result, Some(relist)))
        }
        other => other.map(|result| (result, None)),
    };
    let result = match (result, &shared.argo) {
        (Ok((mut result, relist)), Some(tools)) => {
            eprintln!("[bench scale] Tidegate stopped; measuring {} on the same control plane", argo::name());
            let idle = Duration::from_secs(args.idle_seconds);
            match argo::measure(&env, &client, tools, n, args.per_namespace, idle, &dir).await {
                Ok(peer) => {
                    result.peer = Some(peer);
                    Ok((result, relist))
                }
                Err(e) => Err(e.context(format!("measuring {}", argo::name()))),
            }
        }
        (result, _) => result,
    };
    drop(trivy_server);
    if args.keep {
        // The registry's data directory goes with it; its access log stays with the run's files.
        let _ = std::fs::copy(registry.log(), dir.join("registry.log"));
    }
    drop(registry);
    drop(env);
    match result {
        Ok(result) if !args.keep => {
            let _ = std::fs::remove_dir_all(&dir);
            Ok(result)
        }
        Ok(result) => Ok(result),
        Err(e) => Err(e.context(format!("the run's files are kept in {}", dir.display()))),
    }
}

/// The kube-controller-manager flags of `--controller-manager-qps`.
fn controller_manager_args(qps: u32) -> Vec<String> {
    let workers = controller_manager_workers(qps);
    vec![
        format!("--kube-api-qps={qps}"),
        format!("--kube-api-burst={}", qps.saturating_mul(2)),
        format!("--concurrent-deployment-syncs={workers}"),
        format!("--concurrent-replicaset-syncs={workers}"),
    ]
}

/// Deployment and ReplicaSet workers at `--controller-manager-qps` `qps`: a tenth, at least
/// upstream's 5.
fn controller_manager_workers(qps: u32) -> u32 {
    (qps / 10).max(5)
}

/// What restarting the controller needs.
struct Restart<'a> {
    env: &'a TestEnv,
    shared: &'a Shared,
    dir: &'a Path,
    signing: &'a ControllerSigning<'a>,
    registry: &'a Registry,
    controller_args: &'a [String],
}

impl Restart<'_> {
    /// Starts the controller again (the previous one was killed, its Lease left to expire) and
    /// measures it until it has reconciled every Release and Promotion once.
    async fn measure(&self, audit_log: &Path) -> Result<Relist> {
        let dir = self.dir.join("restart");
        std::fs::create_dir_all(&dir)?;
        let client = self.env.client().await?;
        let releases = Api::<Release>::all(client.clone()).list_metadata(&Default::default()).await?.items.len();
        let promotions = Api::<Promotion>::all(client).list_metadata(&Default::default()).await?.items.len();
        let (started, since) = (Instant::now(), Timestamp::now());
        let mut controller = Controller::spawn(
            self.env,
            &self.shared.controller,
            &dir,
            self.signing,
            &self.registry.plain_http_hosts(),
            self.controller_args,
        )?;
        let log = controller.log.display().to_string();
        // A standby takes the killed leader's Lease once it saw it unrenewed for 15 s.
        let led = history::until_leading(&controller.metrics_addr, Duration::from_secs(60))
            .await
            .with_context(|| format!("after the restart; controller log {log}"))?;
        let timeout = Duration::from_secs(120 + (releases + promotions) as u64 / 10);
        let reconciled =
            history::until_reconciled(&controller.metrics_addr, releases as u64, promotions as u64, timeout)
                .await
                .with_context(|| format!("after the restart; controller log {log}"))?;
        let reconciled_at = Timestamp::now();
        if let Some(status) = controller.exited() {
            bail!("the restarted controller exited ({status}); log {log}");
        }
        let (_, hwm_kib) = memory(controller.pid())?;
        tokio::time::sleep(history::RSS_AFTER).await;
        let (rss_kib, _) = memory(controller.pid())?;
        let text = std::fs::read_to_string(audit_log).with_context(|| format!("reading {}", audit_log.display()))?;
        // Everything since the start but leader election: the relist's lists and watches, and
        // whatever the reconciles read or wrote.
        let requests: Vec<audit::Request> =
            audit::parse(&text, CONTROLLER_USER).into_iter().filter(|r| !r.is_lease()).collect();
        let counts = audit::count(&requests, since, reconciled_at);
        let object_reads = ["releases", "promotions"]
            .iter()
            .map(|resource| counts.by_verb_resource.get(&("get".into(), (*resource).into())).copied().unwrap_or(0))
            .sum();
        Ok(Relist {
            objects: (releases + promotions) as u64,
            lease_wait: led.duration_since(started),
            relist: reconciled.duration_since(led),
            requests: counts.total,
            object_reads,
            status_writes: counts.status_writes,
            hwm_kib,
            rss_kib,
        })
    }
}

/// Everything after the controller started: the base update, the approvals, the idle window,
/// and the counting.
#[allow(clippy::too_many_arguments)]
async fn drive(
    args: &ScaleArgs,
    env: &TestEnv,
    client: &kube::Client,
    registry: &Registry,
    slots: &[Slot],
    old_bases: &[String],
    controller: &mut Controller,
    seen: &Arc<Mutex<Seen>>,
    audit_log: &Path,
) -> Result<RunResult> {
    let n = slots.len();
    // Every policy has recorded base v1 (first sight starts no Release) before the update.
    let policies: Api<ImagePolicy> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64);
    loop {
        let list = policies.list(&Default::default()).await?;
        let recorded = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.base_digest.as_ref()).is_some_and(|d| old_bases.contains(d)))
            .count();
        if recorded == n {
            break;
        }
        if let Some(status) = controller.exited() {
            bail!("the controller exited ({status}); log {}", controller.log.display());
        }
        if Instant::now() > deadline {
            bail!(
                "only {recorded} of {n} policies recorded the base digest; controller log {}",
                controller.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The update: v2 of every base under the same tag, then the registry's push notifications.
    let pushed_at = Timestamp::now();
    let client_registry = registry.client();
    let mut new_bases = Vec::new();
    for k in 0..old_bases.len() {
        let repo = setup::base_repo(k, old_bases.len());
        let digest = client_registry
            .push_layered(&repo, setup::BASE_TAG, &setup::base_layers("3.1.4-r0"), &[])
            .await
            .with_context(|| format!("pushing {repo} v2"))?;
        new_bases.push((repo, digest));
    }
    let pushed = Instant::now();
    let load_at_push = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()));
    let registry_mark = std::fs::metadata(registry.log()).map(|m| m.len()).unwrap_or(0);
    for (repo, digest) in &new_bases {
        notify(&controller.metrics_addr, registry.host(), repo, digest).await?;
    }
    eprintln!(
        "[bench scale] pushed {} base(s) ({} → {}); waiting for {n} Promotions",
        new_bases.len(),
        setup::base_ref(registry.host(), 0, new_bases.len()),
        new_bases[0].1
    );

    wait_for(
        "every Release Verified and every Promotion AwaitingApproval",
        Duration::from_secs(180 + 3 * n as u64),
        controller,
        seen,
        |s| {
            (
                s.verified.len() >= n && s.awaiting.len() >= n,
                format!("{} Verified, {} AwaitingApproval", s.verified.len(), s.awaiting.len()),
            )
        },
    )
    .await?;
    let to_awaiting = {
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        s.awaiting.values().max().map(|last| last.duration_since(pushed)).unwrap_or_default()
    };
    eprintln!(
        "[bench scale] all {n} AwaitingApproval after {:.1} s; approving them as alice",
        to_awaiting.as_secs_f64()
    );

    // Approve every Promotion, at once or at `--approvals-per-second`, as the approver alice.
    let promotions: Vec<(String, String)> = {
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        s.awaiting.keys().filter_map(|k| k.split_once('/')).map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    let alice = env.client_for("alice", &["tidegate-approvers"]).await?;
    let spacing = args.approvals_per_second.filter(|r| *r > 0.0).map(|r| Duration::from_secs_f64(1.0 / r));
    let start = tokio::time::Instant::now();
    let approvals = futures::future::join_all(promotions.iter().enumerate().map(|(i, (ns, name))| {
        let api: Api<Promotion> = Api::namespaced(alice.clone(), ns);
        async move {
            if let Some(spacing) = spacing {
                tokio::time::sleep_until(start + spacing * u32::try_from(i).unwrap_or(u32::MAX)).await;
            }
            let patch = json!({"metadata": {"annotations": {"tidegate.dev/approved-by": "alice"}}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .with_context(|| format!("approving {ns}/{name} as alice"))?;
            anyhow::Ok((format!("{ns}/{name}"), Instant::now()))
        }
    }))
    .await;
    let approved: BTreeMap<String, Instant> = approvals.into_iter().collect::<Result<_>>()?;
    let issuing = spacing.map_or(Duration::ZERO, |s| s * u32::try_from(n).unwrap_or(u32::MAX));
    wait_for(
        "every production Deployment written",
        Duration::from_secs(120 + n as u64) + issuing,
        controller,
        seen,
        |s| {
            let written = s.production.values().filter(|(_, at)| at.is_some()).count();
            (written >= n && s.left_awaiting.len() >= n, format!("{written} production Deployments written"))
        },
    )
    .await?;
    let (to_production, to_promoting) = {
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut production = Vec::new();
        let mut promoting = Vec::new();
        for (promotion, at) in &approved {
            let policy = s.promotion_policy.get(promotion).context("a Promotion without its policy")?;
            let written =
                s.production.get(policy).and_then(|(_, w)| *w).context("a production Deployment not written")?;
            production.push(written.saturating_duration_since(*at));
            if let Some(left) = s.left_awaiting.get(promotion) {
                promoting.push(left.saturating_duration_since(*at));
            }
        }
        (production, promoting)
    };
    eprintln!(
        "[bench scale] production written: p50 {:.2} s, p99 {:.2} s after the approval; waiting for the monitor window",
        report::percentile(&to_production, 50.0).unwrap_or_default().as_secs_f64(),
        report::percentile(&to_production, 99.0).unwrap_or_default().as_secs_f64()
    );
    wait_for(
        "every Promotion Succeeded with its record",
        Duration::from_secs(240 + 2 * n as u64),
        controller,
        seen,
        |s| (s.succeeded.len() >= n, format!("{} Succeeded with their records", s.succeeded.len())),
    )
    .await?;
    let settled_at = Timestamp::now();

    // Idle: nothing changes for `idle_seconds` after a short settle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_from = Timestamp::now();
    eprintln!("[bench scale] every Promotion Succeeded with its record; idle for {} s", args.idle_seconds);
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle_to = Timestamp::now();
    if let Some(status) = controller.exited() {
        bail!("the controller exited ({status}) during the idle window; log {}", controller.log.display());
    }
    let (rss_kib, hwm_kib) = memory(controller.pid())?;
    // Let the audit log catch up with the last requests.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let text = std::fs::read_to_string(audit_log).with_context(|| format!("reading {}", audit_log.display()))?;
    let requests = audit::parse(&text, CONTROLLER_USER);
    ensure!(!requests.is_empty(), "the audit log {} holds no request of {CONTROLLER_USER}", audit_log.display());
    let work = audit::count(&requests, pushed_at, settled_at);
    let idle = audit::count(&requests, idle_from, idle_to);
    let registry_counts = registry_traffic(registry.log(), registry_mark, idle_from, idle_to)?;
    Ok(RunResult {
        policies: n,
        to_awaiting,
        to_production,
        to_promoting,
        rss_kib,
        hwm_kib,
        requests: work.total,
        by_verb_resource: work.by_verb_resource,
        idle_requests: idle.total,
        idle_status_writes: idle.status_writes,
        idle_other_writes: idle.other_writes,
        idle_lease_writes: idle.lease_writes,
        idle_seconds: args.idle_seconds,
        idle_by_verb_resource: idle.by_verb_resource,
        registry_controller: registry_counts.controller,
        registry_trivy: registry_counts.trivy,
        registry_idle: registry_counts.idle,
        registry_by_kind: registry_counts.by_kind,
        load_at_push,
        peer: None,
    })
}

/// Posts the distribution registry's push notification for the base tag of `repository` to the
/// controller's webhook, as a registry configured with a notification endpoint would.
async fn notify(metrics_addr: &str, host: &str, repository: &str, digest: &str) -> Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let body = json!({"events": [{
        "action": "push",
        "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": repository, "digest": digest, "tag": setup::BASE_TAG},
        "request": {"host": host}
    }]})
    .to_string();
    let mut stream =
        tokio::net::TcpStream::connect(metrics_addr).await.with_context(|| format!("connecting to {metrics_addr}"))?;
    let request = format!(
        "POST /webhooks/registry HTTP/1.1\r\nhost: {metrics_addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    ensure!(
        answer.starts_with("HTTP/1.1 202"),
        "the controller's webhook answered: {}",
        answer.lines().next().unwrap_or("")
    );
    Ok(())
}

/// VmRSS and VmHWM of a process, KiB.
pub(crate) fn memory(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Ok((field("VmRSS:").context("no VmRSS")?, field("VmHWM:").context("no VmHWM")?))
}

/// Registry requests after byte `mark` of its access log: by the controller, by Trivy (its user
/// agent names it), and by either within the idle window; the controller's by method and kind.
fn registry_traffic(log: &Path, mark: u64, idle_from: Timestamp, idle_to: Timestamp) -> Result<RegistryCounts> {
    let text = std::fs::read(log).with_context(|| format!("reading {}", log.display()))?;
    let start = usize::try_from(mark).unwrap_or(usize::MAX).min(text.len());
    Ok(count_registry(&String::from_utf8_lossy(&text[start..]), idle_from, idle_to))
}

#[derive(Debug, Default, PartialEq)]
struct RegistryCounts {
    controller: u64,
    trivy: u64,
    idle: u64,
    /// The controller's requests by `(method, kind)`.
    by_kind: BTreeMap<(String, String), u64>,
}

fn count_registry(text: &str, idle_from: Timestamp, idle_to: Timestamp) -> RegistryCounts {
    let mut counts = RegistryCounts::default();
    for access in text.lines().filter_map(crate::bench::parse_access) {
        if access.agent.to_ascii_lowercase().contains("trivy") {
            counts.trivy += 1;
        } else {
            counts.controller += 1;
            *counts
                .by_kind
                .entry((access.method.to_string(), registry_kind(access.method, access.uri)))
                .or_default() += 1;
        }
        // The access log has whole seconds: a request in the idle window's first or last second
        // counts.
        let second = |t: Timestamp| t.as_second();
        if access.time.is_some_and(|t| second(t) >= second(idle_from) && second(t) <= second(idle_to)) {
            counts.idle += 1;
        }
    }
    counts
}

/// What a registry request asks for, from its path: the API root, a manifest by tag or by digest,
/// a blob, a blob upload or mount, referrers, a tag list.
fn registry_kind(method: &str, uri: &str) -> String {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let Some(rest) = path.strip_prefix("/v2/") else { return "other".into() };
    if rest.is_empty() {
        return "API root".into();
    }
    let kind = if let Some((_, reference)) = rest.rsplit_once("/manifests/") {
        if reference.contains(':') { "manifest by digest" } else { "manifest by tag" }
    } else if rest.contains("/blobs/uploads/") {
        if method == "POST" && query.contains("mount=") { "blob mount" } else { "blob upload" }
    } else if rest.contains("/blobs/") {
        "blob"
    } else if rest.contains("/referrers/") {
        "referrers"
    } else if rest.ends_with("/tags/list") {
        "tag list"
    } else {
        "other"
    };
    kind.into()
}

/// The report's facts about the machine, versions and set-up.
fn facts(
    machine: &str,
    built: &str,
    args: &ScaleArgs,
    argo: Option<&tidegate_testenv::argo_rollouts::ArgoRollouts>,
    elapsed: Duration,
) -> Vec<String> {
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().trim().to_string())
    };
    let kubernetes = tidegate_testenv::tools::Tools::locate()
        .ok()
        .and_then(|t| t.path("kube-apiserver").parent()?.parent()?.file_name().map(|f| f.to_string_lossy().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let mut facts = vec![
        format!("machine: {machine}"),
        format!(
            "versions: {}, {}, control plane `{kubernetes}` (kube-apiserver, etcd, kwok), CNCF distribution {}, Trivy {}",
            run("rustc", &["--version"]).unwrap_or_else(|| "rustc unknown".into()),
            run("go", &["version"]).unwrap_or_else(|| "go unknown".into()),
            tidegate_testenv::tools::DISTRIBUTION_VERSION,
            scanner_tools::TRIVY_VERSION
        ),
        format!("controller: {built}"),
        format!(
            "layout: {} policies to a namespace (and its `-staging` twin), {} shared base(s) watched every {}, approvals {}, scans through {}, kube-controller-manager {}, {} run(s) per N, idle window {} s, history {} ended Releases and {} ended Promotions; whole bench {:.0?}",
            args.per_namespace,
            args.bases,
            args.base_interval,
            args.approvals_per_second
                .filter(|r| *r > 0.0)
                .map_or("all at once".to_string(), |r| format!("{r} a second")),
            args.trivy_server_concurrency
                .map_or("Trivy's local database, one scan at a time".to_string(), |k| format!(
                    "a Trivy server on loopback, {k} scans at once"
                )),
            args.controller_manager_qps.map_or(
                "at upstream's client rate (20 requests a second, 5 workers)".to_string(),
                |q| {
                    format!(
                        "at {q} requests a second (burst {}, {} workers)",
                        q.saturating_mul(2),
                        controller_manager_workers(q)
                    )
                }
            ),
            args.runs,
            args.idle_seconds,
            args.history,
            args.history,
            elapsed
        ),
    ];
    if let Some(argo) = argo {
        // `go version <binary>` names the toolchain the module required.
        let built_with = run("go", &["version", &argo.controller().display().to_string()])
            .and_then(|line| line.rsplit(' ').next().map(str::to_string))
            .unwrap_or_else(|| "go unknown".into());
        facts.push(format!(
            "peer: {} (`rollouts-controller` built with {built_with} from the Go module; release CRDs and ClusterRole; leader election on; default client QPS/burst); blue-green Rollouts of one replica, {} to a namespace, headless active and preview Services",
            argo::name(),
            args.per_namespace
        ));
    }
    facts
}

const PREAMBLE: &str = r#"# Scale benchmark: N policies on one controller

Written by `cargo xtask bench scale` (`xtask/src/bench_scale*.rs`). Each run writes the section of
its `--label` and keeps the other labels' sections, so measurements of two builds sit side by side.
Re-run the same command to refresh a section.

## What is measured, and how

Each run starts what `cargo xtask demo --local` starts, fresh: the local control plane (etcd,
kube-apiserver, controller-manager, scheduler, kwok nodes), the CNCF distribution registry on
loopback, a Notary Project signing identity generated for the run (`tidegate_testenv::pki`), Trivy
with an offline database written for the run, and the controller binary as a local process with the
least-privilege identity of `deploy/` (ServiceAccount `tidegate-system/tidegate-controller`, leader
election on). It then creates N ImagePolicies, 10 to a namespace (`bench-00` … with staging in
`bench-00-staging` …), each promoting its own application image (built on one shared base,
`base/runtime:3.20`) with the `rebase` builder, the `trivy` scanner, one `worker` workload (a staging
and a production Deployment of one replica on kwok's nodes, strategy `replace`), no staging tests and
the shortest monitor window (`1m`). Every policy watches the same base tag (interval `15m`); the
controller has recorded its digest before the measurement starts. With `--bases K` the policies
share K bases instead (policy i is built on and watches `base/runtime-<i mod K>:3.20`), every one
of which gets its update at the push; `--base-interval` sets the trigger's interval, so a short one
shows in the idle window what watching K shared bases costs the registry. With
`--trivy-server-concurrency K` the bench starts `trivy server` on loopback with the run's database
and the controller scans through it (`--trivy-server`, `--trivy-concurrency K`) instead of running
Trivy on its local database one scan at a time.

1. **push → all AwaitingApproval**: a new base digest is pushed under the tag, and the registry's
   push notification is posted to the controller's `/webhooks/registry` right after. Measured from
   the end of the push until the last Promotion is seen in `AwaitingApproval` (every Release
   `Verified`), on watches kept by the bench as the administrator.
2. **approval → production write**: every Promotion is approved at once (or, with
   `--approvals-per-second R`, one after another at R a second) as user `alice` (group
   `tidegate-approvers`, annotation `tidegate.dev/approved-by`, admission checked). Per Promotion,
   from the API server's answer to the approval write until the first production Deployment of the
   policy with a new pod template image is seen on the bench's watch: strategy `replace` first
   creates a slot Deployment (`app-3-green`) running the approved digest, and scales the original to
   zero once that is available. p50 and p99 (nearest rank) over the N Promotions. The time until the
   Promotion leaves `AwaitingApproval` is shown too.
3. **controller VmRSS / VmHWM**: `/proc/<pid>/status` at the end of the run (HWM is the peak).
4. **controller requests per policy**: the kube-apiserver audit log records every request of the
   controller's user (and nothing of anyone else; requests it makes as a namespace's deployer are
   recorded under its user), at the Metadata level, once each. Counted from the push until every
   Promotion `Succeeded` with its signed promotion record attached (so including the one-minute
   monitor window; labels before `approval-path` counted only until `Succeeded`, and the record
   passes fell in their idle window), divided by N; by verb and resource in each section.
5. **idle**: five seconds after every Promotion `Succeeded` with its record, requests of the controller over the idle
   window, per minute (leader election's Lease `get` and `update`, about one each per two seconds,
   included); writes in that window: status writes, and other writes (Lease renewals and access
   reviews are not counted as writes; Lease writes are listed per run).
6. **registry requests**: the registry's access log from the push to the end of the idle window, by
   the controller and by Trivy (which the controller runs, one scan at a time); the controller's by
   method and kind (manifest by tag or digest, blob, upload, mount, referrers, tag list) in each
   section.
7. **beside a peer** (`--peer argo`): in the same run, on the same control plane, after Tidegate's
   measurement (Tidegate's controller is stopped first; its objects stay): Argo Rollouts'
   `rollouts-controller`, built from the pinned Go module, runs as a local process with the
   release's CRDs and ClusterRole (leader election on, its default API client limits). N blue-green
   Rollouts (one replica on kwok's nodes, an active and a preview Service each,
   `autoPromotionEnabled: false`, 10 to a namespace `argo-00` …) are rolled to a new image; once
   every one is paused for promotion with its preview ready, all are promoted at once as `kubectl
   argo rollouts promote` does (a merge patch `status.pauseConditions: null`). Per Rollout, from
   the API server's answer to the promote until the active Service's `rollouts-pod-template-hash`
   selects the new ReplicaSet (a watch on the Services); p50 and p99. Its VmRSS / VmHWM are read
   after every Rollout is Healthy on the new ReplicaSet and the same idle window as Tidegate's.
   The ratios put Tidegate's approval → production write and memory over Argo's.
8. **history** (`--history K`): K ended Releases and K ended Promotions (phase `Superseded`,
   labelled `bench.tidegate.dev/history`) are spread over the policies before the controller
   starts; the run's own figures leave them out, the controller's memory does not. After the idle
   window the controller is killed and started again: the time until it leads (its `/readyz`
   answers 200; it first waits until the killed leader's Lease has gone unrenewed for 15 s), then
   until its `tidegate_reconciles_total` has reached the number of Releases and of Promotions in
   the cluster (every object looked at once after the full relist); its requests since the
   restart (Lease ones left out), of them reads of single Releases or Promotions and status
   writes; VmHWM then and VmRSS 5 s later. One line per run in the section's facts.

   What a history costs, and why (2026-12-03, N=10, K=2,000: 4,020 Releases and Promotions).
   kube starts the reconcile of every listed object as a task of its own, all at once, and until
   commit 446c1b0 the Release and Promotion reconcile futures were 24,672 and 24,016 bytes
   (release build, `size_of`), also for an ended object that returns at once; the tasks wait for
   all three watches' first lists before they decide. heaptrack of that build in this bench: peak
   heap 40.6 MB in the run, 16.2 MB of it in reconcile tasks (about 620 alive at the peak); 34.8
   and 15.2 MB in the restart. How many are alive at once depends on how fast they finish
   against how fast the lists arrive. The first trial of that build (load average 5.0 at the push,
   beside a CI run) ended at VmRSS 151 MiB; here it ended at 68 MiB (VmHWM 70, restart peak 57
   MiB; load 3.8), and at 67 MiB with `MALLOC_ARENA_MAX=2` at a load like the trial's (5.1).
   Whether the trial's extra 80 MiB were more tasks alive at once or freed task memory kept in
   glibc's per-thread arenas was not separated. Since 446c1b0 the work after an ended object's
   early return is boxed: such a reconcile holds 856 (Release) or 168 (Promotion) bytes, a few
   MiB for a whole history even if every reconcile waits at once. Section `history` (load 2.5 at
   the push): VmRSS 53 MiB at the end of the run, 44 MiB peak in the restart; the same build
   without a history: 26 MiB (`after`: 28). What stays is the watch caches' copies (about 2.7 KB
   per Release and 1.8 KB per Promotion, metadata included), the indexes (about 0.5 KB per
   object) and the grown tables of kube's queues: about 18 MB of heap at 4,020 objects. The
   restart reads no ended object (its 30 reads of single objects are the run's own 10 Releases
   and 10 Promotions) and writes no status.

   At 10,020 objects (K=5,000, section `history-5000`, load 9.2 at the push): VmRSS 95 MiB at the
   end of the run, 72 MiB peak in the restart, above the goal of 64 MiB. With
   `MALLOC_ARENA_MAX=2` (load 2.9): 86 and again 72 MiB, so the relist's peak is what the caches
   keep, not the allocator; that is what to trim next.

   Since 12ecf60 the controller starts with two malloc arenas and calls `malloc_trim` every 15 s
   (section `s19-history-5000-trim`, against `s19-history-5000-before` run beside it on a quiet
   machine): VmRSS at the end of the run 64.1 MiB against 80.7, the first list's peak 78 against
   81 MiB. So the run's end had kept about 17 MiB of freed heap; what stays is the live set.

9. **the cluster's own rate** (`--controller-manager-qps Q`): the local kube-controller-manager
   runs with `--kube-api-qps Q`, twice that as burst, and Q/10 (at least 5) Deployment and
   ReplicaSet workers instead of upstream's defaults (20 requests a second, 5 workers). Every
   staging and production rollout is the controller-manager's work (a ReplicaSet, Pods, status
   writes), whoever changed the Deployment; at its default rate it rolls out about two
   Deployments a second, which bounds push → all AwaitingApproval from N=200 up. Sections made
   with it say so in their layout line.

   Where the time goes at N=1000 (2026-12-04, sections `s17-…`). With upstream's
   controller-manager rate, push → all AwaitingApproval was 407 s (`s16-n1000-idle`); at 200 a
   second it is 209 s (`s17-n1000-cm200`), and at N=200 80.2 → 39.1 s the same way: half of it
   was the cluster rolling out the staging Deployments. What remains is the API server on these
   2 cores, shared with etcd, the controller-manager, the scheduler, kwok, the registry and
   Trivy: the controller's requests arrive at 150–230 a second throughout, and a Release is
   carried from its creation to Verified in a few seconds of work (one traced Release: created
   24 s after the push, built, scanned and signed within 3 s of its first reconcile, 28 s in the
   staging rollout) but waits its turn behind a thousand others. From the push until every
   Promotion waits, the controller makes about 30 requests per policy (`s17-n1000-own-writes`:
   10 Release status writes, one per phase and a few progress messages; 8 Events, one per
   transition; 3.4 policy status writes; 2.5 Release reads; 2 Promotion status writes; a create
   each of the Release, the Promotion and the staging write). 1,000 policies in 30 s would need
   about 1,000 of those requests a second; this API server serves the controller 150–230 a
   second while the cluster rolls out. With the rollouts no longer held back, approval →
   production write suffers instead: approvals arriving at 10 a second queue behind the
   requests of the rollouts already approved (p99 about 100 s, where the throttled cluster's
   slow rollouts had spread the same work over a longer time: 3.74 s in `s16-n1000-idle`).
   Since fe2c6fb an approval does not queue behind them: the approval lane (controller.md,
   "Approvals first") acts on it with slots of its own, and the pass that records it is followed
   at once by the one that writes production. p99 2.81, 4.62 and 6.28 s in three runs
   (`s18-n1000-lane-32`, `-r2`, `-r3`; 51 and 47 s for the binary before, run in the same session
   as `s18-n1000-ab-9708ae5` and `-r2`, and push → all AwaitingApproval the same within the
   runs' spread: 217–243 s with the lane, 209–221 s without); what
   remains is two passes of about ten requests each, at about 100 ms a request while the API
   server carries the rollouts.

   Where the time goes at N=1000 since 2026-12-05 (sections `s20-…`, each build run beside the
   one before it). Read from the registry's access log and the audit log of a kept run
   (`s20-n1000-ab-bbdbd59`): the policies created their 1,000 Releases over the first 55 s, with
   about 2.5 ImagePolicy status writes per Release created, since every status write of a Release
   woke its policy; one traced Release was created 57 s after the push, built, scanned and signed
   in 6 s, and waited 81 s for its staging rollout. Since fe46c0a a Release wakes its policy only
   while it is new to it, and the pass that starts it names it in the same status write: the
   Releases were all created 35 s after the push, ImagePolicy status writes went from 6.1–6.3 to
   4.1 per policy, and push → all AwaitingApproval from 196.6–207.5 to 175.6–181.1 s (two runs
   each). What bounds it now is the registry budget the bench gives the controller (200 requests
   a second): from 60 to 140 s after the push the controller's registry requests ran at 176–196
   a second. A policy costs about 25 registry requests before approval (the rebase build 9, the
   signature 11, about two per signature check while staging rolls out), so 1,000 policies need
   at least 125 s of registry time at that budget; under 30 s would need a budget above 800
   requests a second, or far fewer requests per candidate.

Times are wall-clock on a machine shared with compilers: read them as orders of magnitude.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_report_begins_with_the_preamble_a_run_writes() {
        // A run rewrites everything above the table from PREAMBLE: text added to the document
        // alone would be lost at the next run.
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/benchmarks.md")).unwrap();
        assert!(doc.starts_with(PREAMBLE.trim_end()), "docs/benchmarks.md and PREAMBLE differ above the table");
    }

    #[test]
    fn a_slot_deployment_belongs_to_the_policy_it_was_made_for() {
        let deployment = |name: &str, slot: Option<&str>| -> Deployment {
            let mut labels = serde_json::Map::new();
            if let Some(slot) = slot {
                labels.insert("tidegate.dev/slot".into(), json!(slot));
            }
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "bench-01", "labels": labels}}))
                .unwrap()
        };
        assert_eq!(production_policy(&deployment("app-1", None)), "bench-01/app-1");
        assert_eq!(production_policy(&deployment("app-1-green", Some("green"))), "bench-01/app-1");
        assert_eq!(production_policy(&deployment("app-10-blue", Some("blue"))), "bench-01/app-10");
        // A name that does not end with its slot stays itself.
        assert_eq!(production_policy(&deployment("app-1-green", Some("blue"))), "bench-01/app-1-green");
    }

    #[test]
    fn registry_requests_by_client_and_in_the_idle_window() {
        let log = [
            r#"127.0.0.1 - - [03/Dec/2026:02:00:00 +0000] "HEAD /v2/base/runtime/manifests/3.20 HTTP/1.1" 200 0 "" """#,
            r#"time="2026-12-03T02:00:00Z" level=info msg="response completed""#,
            r#"127.0.0.1 - - [03/Dec/2026:02:00:10 +0000] "GET /v2/bench/app-0/blobs/sha256:ab HTTP/1.1" 200 10 "" "trivy/v0.74.0 go-containerregistry/v0.20""#,
            r#"127.0.0.1 - - [03/Dec/2026:02:01:00 +0000] "HEAD /v2/base/runtime/manifests/3.20 HTTP/1.1" 200 0 "" "tidegate""#,
        ]
        .join("\n");
        let counts =
            count_registry(&log, "2026-12-03T02:00:30Z".parse().unwrap(), "2026-12-03T02:01:30Z".parse().unwrap());
        assert_eq!((counts.controller, counts.trivy, counts.idle), (2, 1, 1));
        assert_eq!(counts.by_kind, [(("HEAD".to_string(), "manifest by tag".to_string()), 2)].into());
    }

    #[test]
    fn registry_requests_are_told_apart_by_what_they_ask_for() {
        let kinds = [
            ("GET", "/v2/", "API root"),
            ("HEAD", "/v2/bench/app-0/manifests/sha256:ab", "manifest by digest"),
            ("GET", "/v2/bench/app-0/manifests/v1", "manifest by tag"),
            ("POST", "/v2/bench/app-0/blobs/uploads/?mount=sha256:ab&from=base/runtime", "blob mount"),
            ("PUT", "/v2/bench/app-0/blobs/uploads/3f2a?digest=sha256:ab", "blob upload"),
            ("GET", "/v2/bench/app-0/blobs/sha256:ab", "blob"),
            ("GET", "/v2/bench/app-0/referrers/sha256:ab?artifactType=x", "referrers"),
            ("GET", "/v2/bench/app-0/tags/list?n=100", "tag list"),
            ("GET", "/metrics", "other"),
        ];
        for (method, uri, kind) in kinds {
            assert_eq!(registry_kind(method, uri), kind, "{method} {uri}");
        }
    }
}
