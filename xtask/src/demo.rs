//! `cargo xtask demo`: the whole Tidegate story on the local control plane and a real registry,
//! printed step by step. A base image update is noticed, the app is rebased natively, scanned,
//! signed (Notary Project), staged and tested by itself; the demo then stops at the approval and
//! shows the command to approve (`--approve` approves as the demo approver `alice`).
//! `--azure` runs the Azure Container Apps part instead, on the local ARM stand-in
//! ([`crate::demo_azure`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tidegate_api::{ImagePolicy, Promotion, PromotionPhase, Release, ReleasePhase};
use tidegate_testenv::pki::CodeSigningFiles;
use tidegate_testenv::real_node::push_test_server_on_base;
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};

use crate::demo_node;
use tidegate_testenv::scanner_tools::{self, Advisory, ImageOs, Package, alpine_advisories, package_image_layers};
use tidegate_testenv::{TestEnv, apply, tools::Tools};

/// Arguments of `cargo xtask demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Approve the Promotion as the demo approver `alice` instead of waiting for you to.
    #[arg(long)]
    approve: bool,
    /// Keep the environment running after the demo until Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Run the controller as a local process and the workloads on kwok's simulated nodes, even
    /// where the real node and the Helm chart could be used (they need root and `cargo xtask tools`).
    #[arg(long)]
    local: bool,
    /// Run the Azure Container Apps part instead: the same controller binary releases a Container
    /// App on a local stand-in of Azure Resource Manager (not real Azure; see docs/azure.md for the
    /// live mode): a zero-weight `staging` revision checked on its label's URL, the approval (made
    /// by the demo as approver `alice`), the traffic switch, the monitor window and the previous
    /// revision deactivated. About three minutes once the tools are built.
    #[arg(long, conflicts_with_all = ["approve", "local"])]
    azure: bool,
}

pub(crate) const CONTROLLER_USER: &str = "system:serviceaccount:tidegate-system:tidegate-controller";

pub async fn run(args: DemoArgs) -> Result<()> {
    if args.azure {
        return crate::demo_azure::run(args.keep).await;
    }
    let started = Instant::now();
    step("Building the controller and the kubectl plugin");
    let bin = build_binaries()?;

    step("Starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)");
    let env = TestEnv::start().await?;
    println!("  API server {} ready after {:.1?}", env.server(), started.elapsed());
    let dir = env.dir().to_path_buf();
    let kubectl = Kubectl {
        binary: Tools::locate()?.path("kubectl"),
        kubeconfig: env.admin_kubeconfig_path(),
        plugin_dir: bin.clone(),
    };
    kubectl.show(&["get", "nodes"])?;
    let on_node = !args.local && demo_node::available();

    let client = env.client().await?;
    if on_node {
        step("Tidegate will be installed with its Helm chart once the registry holds its image (below)");
    } else {
        step("Installing Tidegate: CRDs (already there), RBAC and the approval policy from deploy/");
        println!("  (the Helm chart and the real node need root and `cargo xtask tools`; see docs/real-node.md)");
        for object in apply::apply_dir(&client, &crate::root().join("deploy"), "default", "tidegate-demo").await? {
            println!("  applied {object}");
        }
    }
    apply::apply_yaml(
        &client,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: demo-approvers}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-approver}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: tidegate-approvers}\n",
        "default",
        "tidegate-demo",
    )
    .await?;
    println!("  bound ClusterRole tidegate-approver to group tidegate-approvers");

    step(
        "Applying docs/examples: shop and shop-staging, an http app, a worker and a nightly job sharing one image, and ImagePolicy shop-app",
    );
    let examples = crate::root().join("docs").join("examples");
    for object in apply::apply_dir(&client, &examples, "default", "tidegate-demo").await? {
        println!("  applied {object}");
    }
    step("Starting a real OCI registry (CNCF distribution) on loopback with a base image and the shop app built on it");
    let registry =
        Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous }).await?;
    let node = if on_node {
        let node = demo_node::OnNode::start(&env, &registry).await?;
        println!(
            "  a real node ({}: kubelet, containerd, runc, kube-proxy, CoreDNS) joins the kwok nodes; its Pods reach the registry at {}",
            node.name(),
            node.registry_host
        );
        Some(node)
    } else {
        None
    };
    let host = node.as_ref().map_or_else(|| registry.host().to_string(), |n| n.registry_host.clone());
    let images = registry.client();
    let base_ref = format!("{host}/base/runtime:3.20");
    // An Alpine 3.20 base whose package database lists a vulnerable openssl.
    let base_v1 = package_image_layers(&ImageOs::alpine(), &base_packages("3.1.0-r0"));
    let old_base = images.push_layered("base/runtime", "3.20", &base_v1, &[]).await?;
    // The app: a small HTTP server (answers /healthz) on that base.
    let app = push_test_server_on_base(&registry, "shop/app", "1.0", &base_v1, &base_ref, &old_base).await?.digest;
    println!("  {base_ref} → {old_base} (Alpine 3.20.3: musl 1.2.5-r0, openssl 3.1.0-r0, zlib 1.3.1-r1)");
    println!("  {host}/shop/app:1.0 → {app} (built on it, and its annotations say so)");

    step("Trivy, built from its Go module, with a vulnerability database written here (no internet)");
    let scanner = scanner_tools::build_scanner(&mut |line| println!("  {line}"))?;
    let trivy_cache = dir.join("trivy-cache");
    scanner_tools::write_vulnerability_db(&scanner, &advisories(false), &trivy_cache)?;
    println!("  {} with a database in {}", scanner.trivy().display(), trivy_cache.display());
    println!("  known so far: CVE-2024-0727 (CRITICAL, openssl, no fix yet), CVE-2023-45853 (MEDIUM, zlib)");
    let running = format!("{host}/shop/app@{app}");
    for ns in ["shop", "shop-staging"] {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
        for name in ["web", "worker"] {
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": running}]}}}});
            deployments.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
        }
        let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
        let patch = json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": running}]}}}}}});
        cronjobs.patch("nightly-report", &PatchParams::default(), &Patch::Strategic(&patch)).await?;
    }
    if let Some(node) = &node {
        for ns in ["shop", "shop-staging"] {
            node.place(&client, ns).await?;
        }
        println!("  the Deployments of shop and shop-staging run on the real node");
    }
    // Outside the cluster the controller cannot reach a Service: a loopback server stands in.
    let health = if node.is_some() { None } else { Some(HealthServer::start().await?) };
    let check = match &health {
        Some(health) => json!({"name": "health", "workload": "web", "path": "/healthz", "baseUrl": health.url}),
        None => json!({"name": "health", "workload": "web", "path": "/healthz"}),
    };
    let policies: Api<ImagePolicy> = Api::namespaced(client.clone(), "shop");
    let patch = json!({"spec": {
        "image": format!("{host}/shop/app"),
        "triggers": {"baseImage": {"ref": base_ref, "interval": "15m"}, "rescan": {"interval": "24h"}},
        "tests": {"http": [check]},
        "promotion": {"monitorWindow": "1m"}
    }});
    policies.patch("shop-app", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    println!("  ImagePolicy shop-app now promotes {host}/shop/app and watches {base_ref}");
    match &health {
        Some(health) => println!(
            "  the staging check calls {} (the controller runs outside the cluster); monitor window 1m",
            health.url
        ),
        None => println!(
            "  the staging check calls http://web.shop-staging.svc/healthz from the controller's Pod; monitor window 1m"
        ),
    }
    wait_deployments(&client, "shop").await?;
    kubectl.show(&["get", "deployments,cronjobs", "-n", "shop", "-o", "wide"])?;

    let identity =
        tidegate_testenv::pki::write_code_signing_identity(&dir.join("notary"), "tidegate demo", "tidegate")?;
    let controller = if let Some(node) = &node {
        step("Installing Tidegate with its Helm chart: the controller image runs as two Pods on the real node");
        node.install(&env, &client, &dir, &identity, &trivy_cache).await?;
        kubectl.show(&["get", "pods", "-n", "tidegate-system", "-o", "wide"])?;
        None
    } else {
        step(
            "Starting the controller as ServiceAccount tidegate-system/tidegate-controller, with the least-privilege role",
        );
        println!(
            "  Notary Project signing key {} (chain {}), trust policy {}",
            identity.key.display(),
            identity.chain.display(),
            identity.trust_policy.display()
        );
        let controller = Controller::start(
            &env,
            &bin,
            &dir,
            &identity,
            &registry.plain_http_hosts(),
            &scanner.trivy(),
            &trivy_cache,
        )?;
        println!("  logs: {}", controller.log.display());
        Some(controller)
    };
    let controller_log = controller.as_ref().map_or_else(
        || "kubectl -n tidegate-system get pods (the controller runs there)".to_string(),
        |c| c.log.display().to_string(),
    );
    println!("  Trivy scans exactly the digests it is given, offline, from the loopback registry");
    wait_policy_base(&policies, &old_base).await?;
    println!("  the controller resolved {base_ref} once for its policies: {old_base}");
    let first = wait_production_scan(&policies, None).await?;
    println!("  the first rescan of what production runs ({}): {}", first.digest, describe_scan(&first));
    println!("  (CVE-2024-0727 is accepted by spec.scan.exceptions until 2027-03-31; MEDIUM findings do not block)");

    step("The base image's maintainers publish openssl 3.1.4-r0 under the same tag");
    let base_v2 = package_image_layers(&ImageOs::alpine(), &base_packages("3.1.4-r0"));
    let new_base = images.push_layered("base/runtime", "3.20", &base_v2, &[]).await?;
    println!("  {base_ref} → {new_base} (the base trigger would notice within its 15m interval)");

    step("A new advisory: Trivy's database updates with CVE-2023-5678 (HIGH, openssl, fixed in 3.1.4-r0)");
    scanner_tools::write_vulnerability_db(&scanner, &advisories(true), &trivy_cache)?;
    if node.is_some() {
        demo_node::open_to_the_controller(&trivy_cache)?;
    }
    let found = wait_production_scan(&policies, first.database.as_deref()).await?;
    println!("  the database changed, so production was rescanned at once: {}", describe_scan(&found));
    let fix = found.release.clone().context("the rescan started no Release")?;
    println!("  a fixable blocking finding in what runs starts a Release by itself: {fix}");
    println!("  it rebuilds production's image onto the base tag's current digest, then every gate applies");

    let releases: Api<Release> = Api::namespaced(client.clone(), "shop");
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(180);
    let release = loop {
        if Instant::now() > deadline {
            bail!("the Release did not reach Verified; controller log: {controller_log}");
        }
        if let Some(release) = releases.list(&Default::default()).await?.items.into_iter().next() {
            let phase = release.status.as_ref().map(|s| s.phase);
            if phase != last {
                let message = release
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                println!(
                    "  release {} → {:?}  {message}",
                    release.metadata.name.clone().unwrap_or_default(),
                    phase.unwrap_or_default()
                );
                if let Some(build) = release
                    .status
                    .as_ref()
                    .and_then(|s| s.build.as_ref())
                    .and_then(|b| b.reference.clone())
                    .filter(|_| phase == Some(ReleasePhase::Scanning))
                {
                    println!("    build: {build}");
                }
                last = phase;
            }
            if phase == Some(ReleasePhase::Signing)
                && let Some(scan) = release.status.as_ref().and_then(|s| s.scan.as_ref())
            {
                println!(
                    "    trivy: critical {}, high {}, medium {}, low {}; {} blocking",
                    scan.critical, scan.high, scan.medium, scan.low, scan.blocking
                );
                for f in &scan.top {
                    let fix =
                        f.fixed_version.as_deref().map(|v| format!("fixed in {v}")).unwrap_or("no fix yet".into());
                    let verdict = if f.blocking { "BLOCKS" } else { "does not block" };
                    println!("      {} {} {} {} ({fix}): {verdict}", f.severity, f.id, f.package, f.installed_version);
                }
            }
            match phase {
                Some(ReleasePhase::Verified) => break release,
                Some(p @ (ReleasePhase::Rejected | ReleasePhase::Failed | ReleasePhase::Superseded)) => {
                    bail!("the Release ended {p:?}")
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let digest = release.status.as_ref().and_then(|s| s.digest.clone()).unwrap_or_default();
    kubectl.show(&["get", "releases", "-n", "shop", "-o", "wide"])?;
    step("The candidate carries a Notary Project signature that the notation CLI accepts");
    notation_verify(&identity, &format!("{host}/shop/app@{digest}"))?;
    kubectl.show(&["get", "deployments", "-n", "shop-staging", "-o", "wide"])?;

    step("Automation stops here: the Promotion waits for a human, production is untouched");
    let promotions: Api<Promotion> = Api::namespaced(client.clone(), "shop");
    let promotion = wait_promotion(&promotions, PromotionPhase::AwaitingApproval, Duration::from_secs(60)).await?;
    let name = promotion.metadata.name.clone().unwrap_or_default();
    kubectl.show(&["get", "promotions", "-n", "shop"])?;
    kubectl.show(&["tidegate", "status", "-n", "shop"])?;
    kubectl.show(&["get", "deployments,cronjobs", "-n", "shop", "-o", "wide"])?;

    let alice = dir.join("alice.kubeconfig");
    std::fs::write(&alice, env.user_kubeconfig("alice", &["tidegate-approvers"])?)?;
    let mallory = dir.join("mallory.kubeconfig");
    std::fs::write(&mallory, env.user_kubeconfig("mallory", &[])?)?;
    step("Admission refuses what it must");
    kubectl.show_as_expect_failure(
        &mallory,
        &["tidegate", "approve", &name, "-n", "shop", "--yes"],
        "mallory has no approve verb",
    )?;
    kubectl.show_as_expect_failure(
        &alice,
        &["annotate", "promotion", &name, "-n", "shop", "tidegate.dev/approved-by=bob"],
        "alice cannot approve in bob's name",
    )?;

    step("Approval");
    println!("  To approve as the demo approver, in another terminal:");
    println!("    PATH={}:$PATH KUBECONFIG={} \\", bin.display(), alice.display());
    println!("      {} tidegate approve {name} -n shop", kubectl.binary.display());
    if args.approve {
        // --yes: the demo answers the confirmation itself (the summary is still printed).
        kubectl.show_as(&alice, &["tidegate", "approve", &name, "-n", "shop", "--yes"])?;
    } else {
        println!("  Waiting for that approval (run the demo with --approve to do it automatically) …");
    }
    let _ = wait_promotion(&promotions, PromotionPhase::Approved, Duration::from_secs(24 * 3600)).await;

    step("Tidegate deploys exactly the approved digest, watches it for the monitor window, and stops");
    let mut last = None;
    loop {
        let p = promotions.get(&name).await?;
        let phase = p.status.as_ref().map(|s| s.phase);
        if phase != last {
            let message = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.message.clone())
                .unwrap_or_default();
            println!("  promotion {name} → {:?}  {message}", phase.unwrap_or_default());
            last = phase;
        }
        match phase {
            Some(PromotionPhase::Succeeded) => break,
            Some(
                p @ (PromotionPhase::RolledBack
                | PromotionPhase::Failed
                | PromotionPhase::Rejected
                | PromotionPhase::Expired
                | PromotionPhase::Superseded),
            ) => {
                println!("  the promotion ended {p:?}");
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    kubectl.show(&["get", "deployments,cronjobs", "-n", "shop", "-o", "wide"])?;
    kubectl.show(&["get", "service", "web", "-n", "shop", "-o", "jsonpath={.spec.selector}"])?;
    println!();
    kubectl.show(&["tidegate", "history", "shop-app", "-n", "shop"])?;
    if promotions.get(&name).await?.status.is_some_and(|s| s.phase == PromotionPhase::Succeeded) {
        let plain_http = vec![host.clone()];
        show_record(&kubectl, &promotions, &name, &identity, &host, &digest, &plain_http).await?;
        show_production_gate(&kubectl, &client, &host).await?;
    }
    kubectl
        .show(&[
            "get",
            "events",
            "-n",
            "shop",
            "--field-selector",
            "reportingComponent=tidegate-controller",
            "--sort-by",
            ".lastTimestamp",
        ])
        .ok();
    println!("\nProduction runs {digest}, approved by alice. Demo finished in {:.0?}.", started.elapsed());
    if args.keep {
        println!("The environment keeps running; KUBECONFIG={}", env.admin_kubeconfig_path().display());
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    drop(controller);
    if let Some(node) = node {
        node.stop().await?;
    }
    Ok(())
}

async fn wait_policy_base(policies: &Api<ImagePolicy>, digest: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if policies.get("shop-app").await?.status.and_then(|s| s.base_digest).as_deref() == Some(digest) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    bail!("the controller did not record the base digest")
}

/// Runs `notation verify` on `reference` with the demo's trust store and policy.
pub(crate) fn notation_verify(identity: &CodeSigningFiles, reference: &str) -> Result<()> {
    let (ok, out) = tidegate_testenv::tools::SupplyChainTools::locate()?.notation_verify(identity, reference);
    println!("$ notation verify --insecure-registry {reference}");
    if !ok {
        bail!("notation verify {reference}: {out}");
    }
    print!("{out}");
    Ok(())
}

pub(crate) fn step(text: &str) {
    println!("\n==> {text}");
}

/// Builds the controller and plugin binaries and returns the directory that holds them.
pub(crate) fn build_binaries() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(crate::root())
        .args(["build", "--quiet", "-p", "tidegate-controller", "-p", "kubectl-tidegate"])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the controller and plugin failed");
    }
    Ok(target_dir()?.join("debug"))
}

/// Cargo's target directory (`CARGO_TARGET_DIR` or the workspace's `target/`).
pub(crate) fn target_dir() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let metadata = Command::new(&cargo)
        .current_dir(crate::root())
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()?;
    let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout).context("reading cargo metadata")?;
    let target = metadata["target_directory"].as_str().context("cargo metadata has no target_directory")?;
    Ok(PathBuf::from(target))
}

/// The base image's packages, with `openssl` at `openssl`.
pub(crate) fn base_packages(openssl: &str) -> Vec<Package> {
    vec![Package::new("musl", "1.2.5-r0"), Package::new("openssl", openssl), Package::new("zlib", "1.3.1-r1")]
}

/// The demo's advisories: CVE-2023-5678 is published during the demo (`published`).
pub(crate) fn advisories(published: bool) -> String {
    let mut list = vec![
        Advisory {
            package: "openssl",
            id: "CVE-2024-0727",
            fixed: "",
            severity: "CRITICAL",
            title: "openssl: denial of service via null dereference",
        },
        Advisory {
            package: "zlib",
            id: "CVE-2023-45853",
            fixed: "1.3.1-r2",
            severity: "MEDIUM",
            title: "zlib: integer overflow in zipOpenNewFileInZip4_6",
        },
    ];
    if published {
        list.push(Advisory {
            package: "openssl",
            id: "CVE-2023-5678",
            fixed: "3.1.4-r0",
            severity: "HIGH",
            title: "openssl: Generating excessively long X9.42 DH keys is slow",
        });
    }
    alpine_advisories(&list)
}

/// One line: what a rescan found.
pub(crate) fn describe_scan(scan: &tidegate_api::image_policy::ProductionScan) -> String {
    let list = |findings: &[tidegate_api::release::TopFinding]| {
        findings
            .iter()
            .map(|f| {
                let fix = f.fixed_version.as_deref().map(|v| format!("fixed in {v}")).unwrap_or("no fix yet".into());
                format!("{} {} in {} {} ({fix})", f.severity, f.id, f.package, f.installed_version)
            })
            .collect::<Vec<_>>()
    };
    let found: Vec<String> = [list(&scan.fixable), list(&scan.unfixed)].concat();
    if found.is_empty() { "nothing blocking".to_string() } else { found.join("; ") }
}

/// The policy's rescan of what production runs, made with a database other than `not`.
pub(crate) async fn wait_production_scan(
    policies: &Api<ImagePolicy>,
    not: Option<&str>,
) -> Result<tidegate_api::image_policy::ProductionScan> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let policy = policies.get("shop-app").await?;
        if let Some(scan) = policy.status.and_then(|s| s.production_scan).filter(|s| s.database.as_deref() != not) {
            return Ok(scan);
        }
        if Instant::now() > deadline {
            bail!("production was not rescanned within 120s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub(crate) async fn wait_promotion(
    api: &Api<Promotion>,
    phase: PromotionPhase,
    timeout: Duration,
) -> Result<Promotion> {
    let deadline = Instant::now() + timeout;
    loop {
        let found = api.list(&Default::default()).await?.items.into_iter().find(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.phase == phase
                    || (phase == PromotionPhase::Approved && !matches!(s.phase, PromotionPhase::AwaitingApproval))
            })
        });
        if let Some(p) = found {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!("no Promotion reached {phase:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn wait_deployments(client: &kube::Client, namespace: &str) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = api.list(&Default::default()).await?;
        if list.items.iter().all(tidegate_testenv::workloads::deployment_available) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("Deployments in {namespace} not Available after 120s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The controller binary as a child process.
pub(crate) struct Controller {
    child: Child,
    pub(crate) log: PathBuf,
    /// `127.0.0.1:PORT` of its /metrics endpoint and registry webhook.
    pub(crate) metrics_addr: String,
}

impl Controller {
    fn start(
        env: &TestEnv,
        bin: &Path,
        dir: &Path,
        identity: &CodeSigningFiles,
        plain_http: &[String],
        trivy: &Path,
        trivy_cache: &Path,
    ) -> Result<Self> {
        Self::start_with(env, bin, dir, identity, plain_http, trivy, trivy_cache, &[])
    }

    /// [`Controller::start`] with `extra` arguments (the Azure demo's `--azure-*` flags).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_with(
        env: &TestEnv,
        bin: &Path,
        dir: &Path,
        identity: &CodeSigningFiles,
        plain_http: &[String],
        trivy: &Path,
        trivy_cache: &Path,
        extra: &[String],
    ) -> Result<Self> {
        let (binary, signing) = (bin.join("tidegate-controller"), ControllerSigning { identity, trivy, trivy_cache });
        Self::spawn(env, &binary, dir, &signing, plain_http, extra)
    }

    /// Starts `binary` (any build of the controller) as the demo does, with `extra` arguments.
    pub(crate) fn spawn(
        env: &TestEnv,
        binary: &Path,
        dir: &Path,
        signing: &ControllerSigning<'_>,
        plain_http: &[String],
        extra: &[String],
    ) -> Result<Self> {
        let ControllerSigning { identity, trivy, trivy_cache } = signing;
        let kubeconfig = dir.join("controller.kubeconfig");
        std::fs::write(&kubeconfig, env.user_kubeconfig(CONTROLLER_USER, &["system:serviceaccounts"])?)?;
        let log = dir.join("controller.log");
        let out = std::fs::File::create(&log)?;
        let port = tidegate_testenv::free_port()?;
        let child = Command::new(binary)
            .env("KUBECONFIG", &kubeconfig)
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(plain_http.iter().flat_map(|host| ["--plain-http-registry", host.as_str()]))
            .args([
                "--notary-key-file",
                &identity.key.display().to_string(),
                "--notary-cert-file",
                &identity.chain.display().to_string(),
            ])
            .args([
                "--trust-policy-file",
                &identity.trust_policy.display().to_string(),
                "--trust-store-dir",
                &identity.trust_store.display().to_string(),
            ])
            .args(["--trivy-binary", &trivy.display().to_string()])
            .args(["--trivy-cache-dir", &trivy_cache.display().to_string(), "--trivy-offline"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        println!("  metrics and registry webhook: http://127.0.0.1:{port}");
        Ok(Self { child, log, metrics_addr: format!("127.0.0.1:{port}") })
    }

    /// The controller's process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (and how).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// The signing identity and scanner the controller is started with.
pub(crate) struct ControllerSigning<'a> {
    pub(crate) identity: &'a CodeSigningFiles,
    pub(crate) trivy: &'a Path,
    pub(crate) trivy_cache: &'a Path,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback HTTP server that answers 200, standing in for the staging app's health endpoint.
/// The signed promotion record the controller attached to the digest, read back from the registry.
async fn show_record(
    kubectl: &Kubectl,
    promotions: &Api<Promotion>,
    name: &str,
    identity: &CodeSigningFiles,
    host: &str,
    digest: &str,
    plain_http: &[String],
) -> Result<()> {
    step("The registry now holds a signed record of how the digest reached production");
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let status = promotions.get(name).await?.status.unwrap_or_default();
        if let Some(entry) = status.records.iter().find(|r| r.event == tidegate_api::RecordEvent::Promoted) {
            match &entry.record {
                Some(record) => break record.clone(),
                None => bail!("no promotion record: {}", entry.message.clone().unwrap_or_default()),
            }
        }
        if Instant::now() > deadline {
            bail!("the promotion record did not appear within a minute");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let image = format!("{host}/shop/app@{digest}");
    let (policy, store) = (identity.trust_policy.display().to_string(), identity.trust_store.display().to_string());
    let mut args = vec!["tidegate", "provenance", image.as_str(), "--trust-policy", &policy, "--trust-store", &store];
    for host in plain_http {
        args.extend(["--plain-http", host.as_str()]);
    }
    kubectl.show(&args)?;
    notation_verify(identity, &format!("{host}/shop/app@{record}"))
}

/// Labels `shop` as production: a hand-made image change is refused.
async fn show_production_gate(kubectl: &Kubectl, client: &kube::Client, host: &str) -> Result<()> {
    step("Production accepts only promoted images (deploy/production-policy.yaml)");
    kubectl.show(&["label", "namespace", "shop", "tidegate.dev/production=true"])?;
    // The binding applies to a newly labelled namespace at once; wait until a dry run is refused.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": format!("{host}/shop/app:1.0")}]}}}});
    let dry_run = PatchParams { dry_run: true, ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    while deployments.patch("web", &dry_run, &Patch::Strategic(&patch)).await.is_ok() {
        if Instant::now() > deadline {
            bail!("the production policy is not in force in namespace shop");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let image = format!("app={host}/shop/app:1.0");
    kubectl.show_as_expect_failure(
        &kubectl.kubeconfig.clone(),
        &["set", "image", "deployment/web", &image, "-n", "shop"],
        "even an administrator: images change through a Promotion, or by breaking glass",
    )
}

struct HealthServer {
    url: String,
}

impl HealthServer {
    async fn start() -> Result<Self> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            }
        });
        Ok(Self { url })
    }
}

pub(crate) struct Kubectl {
    pub(crate) binary: PathBuf,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) plugin_dir: PathBuf,
}

impl Kubectl {
    fn command(&self, kubeconfig: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        let path = format!("{}:{}", self.plugin_dir.display(), std::env::var("PATH").unwrap_or_default());
        cmd.env("PATH", path).env("KUBECONFIG", kubeconfig).args(args);
        cmd
    }

    pub(crate) fn show(&self, args: &[&str]) -> Result<()> {
        self.show_as(&self.kubeconfig.clone(), args)
    }

    pub(crate) fn show_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<()> {
        println!("\n$ kubectl {}", args.join(" "));
        let out =
            self.command(kubeconfig, args).output().with_context(|| format!("running {}", self.binary.display()))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn show_as_expect_failure(&self, kubeconfig: &Path, args: &[&str], why: &str) -> Result<()> {
        println!("\n$ kubectl {}    # {why}", args.join(" "));
        let out = self.command(kubeconfig, args).output()?;
        print!("{}", String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            bail!("kubectl {} was accepted but should have been refused", args.join(" "));
        }
        Ok(())
    }
}
