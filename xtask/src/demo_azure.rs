//! `cargo xtask demo --azure`: the Azure Container Apps part of the demo, on the local ARM
//! stand-in (`tidegate_testenv::azure`), not on real Azure (docs/azure.md describes the live
//! mode). The product controller binary, with the local demo's real build (native rebase in a
//! loopback registry), real Trivy and Notary Project signing, releases a Container App `web`:
//! production's rescan finds a fixable CVE, the rebuilt digest runs as a new revision at 0 %
//! labelled `staging`, the staging check calls that label's URL, the Promotion waits for a human,
//! the demo approves as `alice` with `kubectl annotate`, the traffic switches, the monitor window
//! passes and the previous revision is deactivated. It ends with what Tidegate wrote to Azure,
//! read from the stand-in's request log.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use kube::api::Api;
use serde_json::{Value, json};
use tidegate_api::{ImagePolicy, Promotion, PromotionPhase, Release, ReleasePhase};
use tidegate_testenv::azure::{AzureStandIn, AzureStandInOptions, LoggedRequest, SeedRevision};
use tidegate_testenv::real_node::push_test_server_on_base;
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::scanner_tools::{self, ImageOs, package_image_layers};
use tidegate_testenv::{TestEnv, apply, tools::Tools};

use crate::demo::{self, Controller, Kubectl, step};

/// The demo's namespace: the ImagePolicy, its Releases and Promotions. The only namespace granted
/// an Azure scope.
const NAMESPACE: &str = "shop";
/// The resource group of the Container App.
const GROUP: &str = "shop-prod";
/// The controller's app registration (client id) in the stand-in's Entra ID.
const CLIENT: &str = "tidegate-controller";
/// The demo's own reads (what `az containerapp show` would print) use another registration.
const OPERATOR: &str = "demo-operator";
/// The container whose image Tidegate manages.
const CONTAINER: &str = "app";
/// The approver.
const APPROVER: &str = "alice";

/// Runs the Azure part of the demo; `keep` leaves it running until Ctrl-C.
pub async fn run(keep: bool) -> Result<()> {
    let started = Instant::now();
    println!("Tidegate on Azure Container Apps, against a LOCAL STAND-IN of Azure Resource Manager (not real Azure).");
    println!("  The stand-in decodes every request into Microsoft's Go SDK models and follows the documented");
    println!("  Container Apps behaviour (docs/azure-standin.md); for the live mode against a real subscription,");
    println!("  see docs/azure.md.");

    step("Building the controller and the kubectl plugin");
    let bin = demo::build_binaries()?;

    step("Starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)");
    let env = TestEnv::start().await?;
    println!("  API server {} ready after {:.1?}", env.server(), started.elapsed());
    let dir = env.dir().to_path_buf();
    let kubectl = Kubectl {
        binary: Tools::locate()?.path("kubectl"),
        kubeconfig: env.admin_kubeconfig_path(),
        plugin_dir: bin.clone(),
    };
    let client = env.client().await?;

    step("Installing Tidegate: CRDs (already there), RBAC and the approval policy from deploy/");
    for object in apply::apply_dir(&client, &crate::root().join("deploy"), "default", "tidegate-demo").await? {
        println!("  applied {object}");
    }
    apply::apply_yaml(
        &client,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: demo-approvers}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-approver}\nsubjects:\n- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: tidegate-approvers}\n",
        "default",
        "tidegate-demo",
    )
    .await?;
    println!("  bound ClusterRole tidegate-approver to group tidegate-approvers");
    env.create_namespace(NAMESPACE).await?;
    println!("  namespace {NAMESPACE}: the ImagePolicy, its Releases and Promotions (the app itself runs in Azure)");

    step("Starting a real OCI registry (CNCF distribution) on loopback with a base image and the shop app built on it");
    let registry =
        Registry::start(RegistryOptions { kind: RegistryKind::Distribution, auth: RegistryAuth::Anonymous }).await?;
    let host = registry.host().to_string();
    let images = registry.client();
    let base_ref = format!("{host}/base/runtime:3.20");
    let base_v1 = package_image_layers(&ImageOs::alpine(), &demo::base_packages("3.1.0-r0"));
    let old_base = images.push_layered("base/runtime", "3.20", &base_v1, &[]).await?;
    let app = push_test_server_on_base(&registry, "shop/app", "1.0", &base_v1, &base_ref, &old_base).await?.digest;
    let running = format!("{host}/shop/app@{app}");
    println!("  {base_ref} → {old_base} (Alpine 3.20.3: musl 1.2.5-r0, openssl 3.1.0-r0, zlib 1.3.1-r1)");
    println!("  {host}/shop/app:1.0 → {app} (built on it)");
    let base_v2 = package_image_layers(&ImageOs::alpine(), &demo::base_packages("3.1.4-r0"));
    let new_base = images.push_layered("base/runtime", "3.20", &base_v2, &[]).await?;
    println!("  the base's maintainers already published openssl 3.1.4-r0 under the same tag: {base_ref} → {new_base}");

    step("Trivy, built from its Go module, with a vulnerability database written here (no internet)");
    let scanner = scanner_tools::build_scanner(&mut |line| println!("  {line}"))?;
    let trivy_cache = dir.join("trivy-cache");
    scanner_tools::write_vulnerability_db(&scanner, &demo::advisories(true), &trivy_cache)?;
    println!("  {} with a database in {}", scanner.trivy().display(), trivy_cache.display());
    println!("  known: CVE-2023-5678 (HIGH, openssl, fixed in 3.1.4-r0), CVE-2024-0727 (CRITICAL, openssl, no fix),");
    println!("         CVE-2023-45853 (MEDIUM, zlib)");

    step("Starting the Azure stand-in on loopback: Resource Manager (Microsoft.App) and Entra ID token endpoints");
    println!("  NOT real Azure: a local HTTPS stand-in (crates/testenv/go/azure), with its own test CA");
    let standin = AzureStandIn::start_with(AzureStandInOptions::default()).await?;
    let secret = format!("demo-secret-{}", std::process::id());
    standin.add_client_secret(CLIENT, &secret).await?;
    let operator_secret = format!("operator-{secret}");
    standin.add_client_secret(OPERATOR, &operator_secret).await?;
    println!("  Resource Manager and Entra ID: {} (tenant {})", standin.arm_url(), standin.tenant_id());
    println!("  ingress: {} for *.{}", standin.ingress_addr(), standin.domain());
    println!("  app registration {CLIENT} with a client secret; the demo reads Azure as {OPERATOR}");
    let subscription = standin.subscription_id().to_string();
    let app_id =
        format!("/subscriptions/{subscription}/resourceGroups/{GROUP}/providers/Microsoft.App/containerApps/web");
    let seeded = json!({
        "location": "East US",
        "properties": {
            "configuration": {
                "activeRevisionsMode": "Multiple",
                "ingress": {"external": true, "targetPort": 8080, "traffic": [{"latestRevision": true, "weight": 100}]},
                "secrets": [{"name": "db-password", "value": "kept-as-is"}]
            },
            "template": {
                "containers": [{
                    "name": CONTAINER,
                    "image": running,
                    "env": [{"name": "MODE", "value": "production"}, {"name": "DB_PASSWORD", "secretRef": "db-password"}],
                    "resources": {"cpu": 0.5, "memory": "1Gi"}
                }],
                "scale": {"minReplicas": 1, "maxReplicas": 3}
            }
        }
    });
    let revision = SeedRevision { name: "web--v1".into(), ..SeedRevision::default() };
    standin.seed_container_app_with_revisions(&app_id, &seeded, &[revision]).await?;
    let azure = AzureView::new(&standin, &app_id, &operator_secret).await?;
    println!("  seeded Container App {app_id}");
    println!("  (Multiple revision mode, external ingress, latestRevision at 100 %, revision web--v1 runs the app)");
    let mut last_view = azure.snapshot().await?;
    last_view.print();

    step("ImagePolicy shop-app: an http workload whose staging and production are the same Container App");
    let policy = policy_yaml(&host, &base_ref, &app_id);
    for line in policy.lines() {
        println!("  {line}");
    }
    for object in apply::apply_yaml(&client, &policy, NAMESPACE, "tidegate-demo").await? {
        println!("  applied {object}");
    }
    println!("  staging = a revision of the production app at 0 % traffic, labelled staging (blue-green)");

    step("Starting the controller (the product binary, a local process) with its Azure credential and one grant");
    let identity =
        tidegate_testenv::pki::write_code_signing_identity(&dir.join("notary"), "tidegate demo", "tidegate")?;
    let secrets = dir.join("azure");
    std::fs::create_dir_all(&secrets)?;
    let secret_file = secrets.join("client-secret");
    std::fs::write(&secret_file, &secret)?;
    std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(0o600))?;
    let grant_scope = format!("/subscriptions/{subscription}/resourceGroups/{GROUP}");
    let ca = standin.ca_file().display().to_string();
    let azure_args: Vec<String> = [
        "--azure-credential",
        "client-secret",
        "--azure-tenant-id",
        standin.tenant_id(),
        "--azure-client-id",
        CLIENT,
        "--azure-client-secret-file",
        &secret_file.display().to_string(),
        "--azure-authority-host",
        &standin.authority_host(),
        "--azure-resource-manager",
        &standin.arm_url(),
        "--azure-ca-file",
        &ca,
        "--azure-grant",
        &format!("{NAMESPACE}={grant_scope}"),
        "--staging-ca-file",
        &ca,
        "--staging-resolve",
        &format!("{}={}", standin.domain(), standin.ingress_addr()),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    println!("  {}/tidegate-controller (as ServiceAccount tidegate-system/tidegate-controller) \\", bin.display());
    println!("    --notary-key-file … --notary-cert-file … --trust-policy-file … --trust-store-dir … \\");
    println!("    --trivy-binary … --trivy-offline --plain-http-registry {host} \\");
    for pair in azure_args.chunks(2) {
        println!("    {} {} \\", pair[0], pair.get(1).map(String::as_str).unwrap_or_default());
    }
    println!(
        "  the client secret is read from a file (mode 0600 in the demo's temporary directory), never from a policy"
    );
    println!(
        "  --azure-grant: only policies in namespace {NAMESPACE} may change Container Apps, and only in {grant_scope}"
    );
    println!("  --staging-resolve: the stand-in's environment domain resolves to its loopback ingress");
    let controller = Controller::start_with(
        &env,
        &bin,
        &dir,
        &identity,
        &registry.plain_http_hosts(),
        &scanner.trivy(),
        &trivy_cache,
        &azure_args,
    )?;
    println!("  logs: {}", controller.log.display());
    let log = controller.log.display().to_string();

    step("The controller reads what production runs from Azure and rescans it with Trivy");
    let policies: Api<ImagePolicy> = Api::namespaced(client.clone(), NAMESPACE);
    let found = demo::wait_production_scan(&policies, None)
        .await
        .with_context(|| format!("no rescan of production; controller log: {log}"))?;
    println!("  production (containerApps/web, container {CONTAINER}) runs {}", found.digest);
    println!("  Trivy found: {}", demo::describe_scan(&found));
    let fix = found.release.clone().with_context(|| format!("the rescan started no Release; controller log: {log}"))?;
    println!("  a fixable blocking finding in what runs starts a Release by itself: {fix}");
    println!("  it rebuilds production's image onto the base tag's current digest, then every gate applies");

    step("The Release: rebased, scanned, signed, then staged in Azure as a zero-weight revision and tested");
    let releases: Api<Release> = Api::namespaced(client.clone(), NAMESPACE);
    let release = follow_release(&releases, &fix, &azure, &mut last_view, &log).await?;
    let digest = release.status.as_ref().and_then(|s| s.digest.clone()).context("the Release has no digest")?;
    let candidate = format!("{host}/shop/app@{digest}");
    let hex = digest.trim_start_matches("sha256:");
    let new_revision = format!("web--tg-{}", &hex[..12.min(hex.len())]);
    let staging_host = format!("web---staging.{}", standin.domain());
    for test in release.status.iter().flat_map(|s| s.tests.iter()) {
        let verdict = if test.passed { "passed" } else { "FAILED" };
        println!("  staging check {}: {verdict}: {}", test.name, test.message.clone().unwrap_or_default());
    }
    let called = release.status.iter().flat_map(|s| s.tests.iter()).any(|t| {
        t.passed && t.message.as_deref().is_some_and(|m| m.contains(&format!("https://{staging_host}/healthz")))
    });
    if !called {
        bail!("the staging check did not pass on https://{staging_host}/healthz");
    }
    let (status, body) = standin.ingress_get(&staging_host, "/healthz").await?;
    println!("\n$ curl https://{staging_host}/healthz    # the label's URL, through the stand-in's ingress");
    println!("  {status} {body}");
    let (status, body) = standin.ingress_get(&format!("web.{}", standin.domain()), "/healthz").await?;
    println!("$ curl https://web.{}/healthz    # the app's own URL: production traffic", standin.domain());
    println!("  {status} {body}");
    kubectl.show(&["get", "releases", "-n", NAMESPACE, "-o", "wide"])?;
    step("The candidate carries a Notary Project signature that the notation CLI accepts");
    demo::notation_verify(&identity, &candidate)?;

    step("Automation stops here: the Promotion waits for a human; production traffic is untouched");
    let promotions: Api<Promotion> = Api::namespaced(client.clone(), NAMESPACE);
    let promotion =
        demo::wait_promotion(&promotions, PromotionPhase::AwaitingApproval, Duration::from_secs(60)).await?;
    let name = promotion.metadata.name.clone().unwrap_or_default();
    kubectl.show(&["get", "promotions", "-n", NAMESPACE])?;
    kubectl.show(&["tidegate", "status", "-n", NAMESPACE])?;
    let view = azure.snapshot().await?;
    println!();
    view.print();
    if view.weight("web--v1") != Some(100) || view.weight(&new_revision) != Some(0) {
        bail!("before the approval production traffic must stay on web--v1 and the candidate at 0 %");
    }
    last_view = view;

    step(&format!("Approval, by {APPROVER} (group tidegate-approvers, bound to ClusterRole tidegate-approver)"));
    let alice = dir.join("alice.kubeconfig");
    std::fs::write(&alice, env.user_kubeconfig(APPROVER, &["tidegate-approvers"])?)?;
    println!("  the demo runs, as {APPROVER} (KUBECONFIG={}):", alice.display());
    let approval = format!("tidegate.dev/approved-by={APPROVER}");
    kubectl.show_as(&alice, &["annotate", "promotion", &name, "-n", NAMESPACE, &approval])?;
    println!("  (the same as `kubectl tidegate approve {name} -n {NAMESPACE}`; admission checks that {APPROVER} is");
    println!("   the authenticated user, holds the approve verb and did not request the Promotion)");

    step("Tidegate switches the traffic to exactly the approved digest, watches it for the monitor window (1m)");
    let promoted = follow_promotion(&promotions, &name, &azure, &mut last_view, &log).await?;
    let phase = promoted.status.as_ref().map(|s| s.phase).unwrap_or_default();
    if phase != PromotionPhase::Succeeded {
        bail!("the Promotion ended {phase:?}; controller log: {log}");
    }
    step("The monitor window ended healthy: the previous revision is deactivated");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = azure.snapshot().await?;
        if view != last_view {
            view.print();
            last_view = view.clone();
        }
        if view.active("web--v1") == Some(false) {
            break;
        }
        if Instant::now() > deadline {
            bail!("web--v1 was not deactivated within a minute of the monitor window; controller log: {log}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let app_now = azure.get(&app_id).await?;
    let image_now = app_now["properties"]["template"]["containers"][0]["image"].as_str().unwrap_or_default();
    println!("  containerApps/web template: container {CONTAINER} image {image_now}");
    if image_now != candidate {
        bail!("production runs {image_now}, not the approved {candidate}");
    }
    kubectl.show(&["tidegate", "history", "shop-app", "-n", NAMESPACE])?;

    step("What Tidegate wrote to Azure (the stand-in's request log)");
    let own_reads = azure.reads.load(Ordering::Relaxed);
    summarize_writes(&standin.requests().await?, own_reads, &seeded, &host)?;

    println!(
        "\nThe Container App web runs {candidate}, approved by {APPROVER}; web--v1 is kept, inactive, for a rollback."
    );
    println!("Demo finished in {:.0?}.", started.elapsed());
    println!(
        "This ran against a local stand-in of Azure Resource Manager, not real Azure; see docs/azure.md for the live mode."
    );
    if keep {
        println!("The environment keeps running; KUBECONFIG={}", env.admin_kubeconfig_path().display());
        println!("Azure stand-in: {} (CA {})", standin.arm_url(), standin.ca_file().display());
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    drop(controller);
    Ok(())
}

/// The demo's ImagePolicy.
fn policy_yaml(host: &str, base_ref: &str, app_id: &str) -> String {
    format!(
        r#"apiVersion: tidegate.dev/v1alpha1
kind: ImagePolicy
metadata:
  name: shop-app
  namespace: {NAMESPACE}
spec:
  image: {host}/shop/app
  triggers:
    baseImage: {{ref: "{base_ref}", interval: 15m}}
    rescan: {{interval: 24h}}
  build: {{strategy: rebase}}
  scan: {{scanner: trivy, blockSeverities: [Critical, High], onlyFixable: true}}
  workloads:
  - name: web
    kind: http
    staging:
      containerApp:
        resourceId: {app_id}
        container: {CONTAINER}
        label: staging
    production:
      containerApp:
        resourceId: {app_id}
        container: {CONTAINER}
    strategy: {{type: blueGreen}}
  tests:
    http:
    - {{name: health, workload: web, path: /healthz, expectStatus: 200}}
  promotion: {{requiredApprovals: 1, approvalValidFor: 24h, monitorWindow: 1m, autoRollback: true}}
"#
    )
}

/// Follows Release `name` until `Verified`, printing its phases and every change in Azure.
async fn follow_release(
    releases: &Api<Release>,
    name: &str,
    azure: &AzureView<'_>,
    last_view: &mut Snapshot,
    log: &str,
) -> Result<Release> {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last = None;
    loop {
        if Instant::now() > deadline {
            bail!("the Release did not reach Verified within 3 minutes; controller log: {log}");
        }
        let release = releases.get(name).await?;
        let phase = release.status.as_ref().map(|s| s.phase);
        if phase != last {
            let message = release
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .map(|c| c.message.clone())
                .unwrap_or_default();
            println!("  release {name} → {:?}  {message}", phase.unwrap_or_default());
            if phase == Some(ReleasePhase::Scanning)
                && let Some(build) = release.status.as_ref().and_then(|s| s.build.as_ref())
            {
                println!("    build: {}", build.reference.clone().unwrap_or_default());
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
            last = phase;
        }
        let view = azure.snapshot().await?;
        if view != *last_view {
            view.print();
            *last_view = view;
        }
        match phase {
            Some(ReleasePhase::Verified) => return Ok(release),
            Some(p @ (ReleasePhase::Rejected | ReleasePhase::Failed | ReleasePhase::Superseded)) => {
                bail!("the Release ended {p:?}; controller log: {log}")
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Follows Promotion `name` to an end, printing its phases and every change in Azure.
async fn follow_promotion(
    promotions: &Api<Promotion>,
    name: &str,
    azure: &AzureView<'_>,
    last_view: &mut Snapshot,
    log: &str,
) -> Result<Promotion> {
    let deadline = Instant::now() + Duration::from_secs(240);
    // It was AwaitingApproval when the approval was made.
    let mut last = Some(PromotionPhase::AwaitingApproval);
    loop {
        if Instant::now() > deadline {
            bail!("the Promotion did not end within 4 minutes; controller log: {log}");
        }
        let promotion = promotions.get(name).await?;
        let status = promotion.status.clone().unwrap_or_default();
        let phase = promotion.status.as_ref().map(|s| s.phase);
        if phase != last {
            let message =
                status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.message.clone()).unwrap_or_default();
            println!("  promotion {name} → {:?}  {message}", phase.unwrap_or_default());
            if phase == Some(PromotionPhase::Monitoring) {
                let until = status.monitor_until.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
                println!(
                    "    monitor window until {until}; the previous revision stays active for an instant rollback"
                );
            }
            last = phase;
        }
        let view = azure.snapshot().await?;
        if view != *last_view {
            view.print();
            *last_view = view;
        }
        match phase {
            Some(
                PromotionPhase::Succeeded
                | PromotionPhase::RolledBack
                | PromotionPhase::Failed
                | PromotionPhase::Rejected
                | PromotionPhase::Expired
                | PromotionPhase::Superseded,
            ) => return Ok(promotion),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Reads the Container App as an operator would (`az containerapp show`, `az containerapp
/// revision list`), with its own app registration.
struct AzureView<'a> {
    standin: &'a AzureStandIn,
    app: String,
    token: String,
    /// How many GETs the demo itself sent (they are in the stand-in's request log too).
    reads: AtomicUsize,
}

impl<'a> AzureView<'a> {
    async fn new(standin: &'a AzureStandIn, app: &str, secret: &str) -> Result<Self> {
        let token = standin.token(OPERATOR, secret).await?;
        Ok(Self { standin, app: app.to_string(), token, reads: AtomicUsize::new(0) })
    }

    async fn get_url(&self, url: &str) -> Result<Value> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let response = self.standin.http_client().get(url).bearer_auth(&self.token).send().await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            bail!("GET {url}: {status} {body}");
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.get_url(&self.standin.arm(path)).await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let app = self.get(&self.app).await?;
        let latest = app["properties"]["latestRevisionName"].as_str().unwrap_or_default().to_string();
        let traffic = app["properties"]["configuration"]["ingress"]["traffic"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| {
                let latest_flag = t["latestRevision"].as_bool() == Some(true);
                let revision = if latest_flag {
                    latest.clone()
                } else {
                    t["revisionName"].as_str().unwrap_or_default().to_string()
                };
                Traffic {
                    revision,
                    latest: latest_flag,
                    weight: t["weight"].as_i64().unwrap_or(0),
                    label: t["label"].as_str().map(String::from),
                }
            })
            .collect();
        let mut revisions = Vec::new();
        let mut page = self.get(&format!("{}/revisions", self.app)).await?;
        loop {
            for r in page["value"].as_array().cloned().unwrap_or_default() {
                let p = &r["properties"];
                revisions.push(RevisionLine {
                    name: r["name"].as_str().unwrap_or_default().to_string(),
                    active: p["active"].as_bool().unwrap_or(false),
                    health: p["healthState"].as_str().unwrap_or_default().to_string(),
                    running: p["runningState"].as_str().unwrap_or_default().to_string(),
                    image: p["template"]["containers"][0]["image"].as_str().unwrap_or_default().to_string(),
                });
            }
            match page["nextLink"].as_str().filter(|l| !l.is_empty()) {
                Some(next) => page = self.get_url(next).await?,
                None => break,
            }
        }
        revisions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Snapshot { latest, traffic, revisions })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Traffic {
    revision: String,
    latest: bool,
    weight: i64,
    label: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct RevisionLine {
    name: String,
    active: bool,
    health: String,
    running: String,
    image: String,
}

/// What the operator sees of the app at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Snapshot {
    latest: String,
    traffic: Vec<Traffic>,
    revisions: Vec<RevisionLine>,
}

impl Snapshot {
    fn print(&self) {
        let traffic = self
            .traffic
            .iter()
            .map(|t| {
                let latest = if t.latest { " (latestRevision)" } else { "" };
                let label = t.label.as_deref().map(|l| format!(" label {l}")).unwrap_or_default();
                format!("{} {}%{latest}{label}", t.revision, t.weight)
            })
            .collect::<Vec<_>>()
            .join(", ");
        println!("  [azure stand-in] containerApps/web  latest revision {}", self.latest);
        println!("    traffic:   {traffic}");
        for r in &self.revisions {
            let active = if r.active { "active" } else { "inactive" };
            let weight = self.weight(&r.name).map(|w| format!("{w:>3}%")).unwrap_or_else(|| "   -".into());
            let health = if r.active { format!("{} {}", r.health, r.running) } else { r.running.clone() };
            println!("    revision:  {:<22} {active:<8} {weight}  {health:<20} {}", r.name, short_image(&r.image));
        }
    }

    /// The traffic weight of `revision`, if the traffic names it.
    fn weight(&self, revision: &str) -> Option<i64> {
        let weights: Vec<i64> = self.traffic.iter().filter(|t| t.revision == revision).map(|t| t.weight).collect();
        (!weights.is_empty()).then(|| weights.iter().sum())
    }

    fn active(&self, revision: &str) -> Option<bool> {
        self.revisions.iter().find(|r| r.name == revision).map(|r| r.active)
    }
}

/// `…/shop/app@sha256:0123456789ab…`.
fn short_image(image: &str) -> String {
    match image.split_once('@') {
        Some((repo, digest)) => {
            let repo = repo.rsplit_once('/').map(|(_, r)| r).unwrap_or(repo);
            let digest: String = digest.chars().take(19).collect();
            format!("…/{repo}@{digest}…")
        }
        None => image.to_string(),
    }
}

/// Prints every write the stand-in received and checks that each changed only the managed
/// container's image (with the revision suffix) and the traffic.
fn summarize_writes(requests: &[LoggedRequest], own_reads: usize, seeded: &Value, host: &str) -> Result<()> {
    let arm: Vec<&LoggedRequest> = requests.iter().filter(|r| r.path.starts_with("/subscriptions/")).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &arm {
        *counts.entry(r.method.as_str()).or_default() += 1;
    }
    if let Some(gets) = counts.get_mut("GET") {
        *gets = gets.saturating_sub(own_reads);
    }
    // The demo fetched one token of its own, as demo-operator.
    let tokens = requests.iter().filter(|r| r.path.ends_with("/oauth2/v2.0/token")).count().saturating_sub(1);
    let counted = counts.iter().map(|(m, n)| format!("{n} {m}")).collect::<Vec<_>>().join(", ");
    println!("  Tidegate sent {tokens} token request(s) (client credentials) and, to Resource Manager, {counted}");
    println!("  (the demo's own {own_reads} GETs as {OPERATOR}, which printed the views above, are left out)");
    let seeded_containers = seeded["properties"]["template"]["containers"].as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let mut patches = 0;
    for r in arm.iter().filter(|r| r.method != "GET") {
        let time = r.time.get(11..19).unwrap_or(&r.time);
        let path =
            r.path.rsplit_once("/containerApps/").map(|(_, p)| format!("containerApps/{p}")).unwrap_or(r.path.clone());
        let what = match r.method.as_str() {
            "PATCH" => {
                patches += 1;
                describe_patch(r, &seeded_containers, host, &mut problems)
            }
            "POST" if r.path.ends_with("/deactivate") => {
                "the previous revision, once the monitor window ended healthy".into()
            }
            other => {
                problems.push(format!("{other} {} (Tidegate only PATCHes apps and (de)activates revisions)", r.path));
                String::new()
            }
        };
        println!("  {time} {:<5} {path} → {}  {what}", r.method, r.status);
        if r.method == "PATCH"
            && let Some(why) = r.json().and_then(|body| explain_patch(&body))
        {
            println!("  {:<14} ({why})", "");
        }
    }
    if patches == 0 {
        problems.push("Tidegate sent no PATCH".into());
    }
    if !problems.is_empty() {
        bail!("Tidegate wrote more than the image and the traffic:\n  {}", problems.join("\n  "));
    }
    println!(
        "  every PATCH changed only the image of container `{CONTAINER}` (with a revision suffix) and ingress.traffic;"
    );
    println!("  env, secrets, resources, scale, ingress settings and location were sent back unchanged or not at all");
    Ok(())
}

/// What a PATCH meant: a new revision, or where production traffic goes.
fn explain_patch(body: &Value) -> Option<String> {
    let properties = &body["properties"];
    if properties["template"]["containers"].is_array() {
        return Some(
            "a new revision with the candidate image; traffic pinned to the revision that serves, not latestRevision"
                .into(),
        );
    }
    let traffic = properties["configuration"]["ingress"]["traffic"].as_array()?;
    let full = traffic.iter().find(|t| t["weight"].as_i64() == Some(100))?;
    let revision = full["revisionName"].as_str().unwrap_or("latestRevision");
    let labelled = traffic.iter().find(|t| t["label"].is_string() && t["weight"].as_i64() == Some(0));
    Some(match (revision, labelled) {
        ("web--v1", Some(t)) => format!(
            "label {} on {} at 0 %: the staging URL; production traffic unchanged",
            t["label"].as_str().unwrap_or_default(),
            t["revisionName"].as_str().unwrap_or_default()
        ),
        ("web--v1", None) => "production traffic unchanged".into(),
        (revision, _) => {
            format!("after the approval: 100 % to {revision}; the previous revision kept active at 0 % for a rollback")
        }
    })
}

/// One line for a PATCH body; anything other than the image and the traffic goes to `problems`.
fn describe_patch(r: &LoggedRequest, seeded_containers: &[Value], host: &str, problems: &mut Vec<String>) -> String {
    let Some(body) = r.json() else {
        problems.push(format!("PATCH {} without a JSON body", r.path));
        return String::new();
    };
    let mut parts = Vec::new();
    for key in body.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        if key != "properties" {
            problems.push(format!("PATCH {} wrote {key}", r.path));
        }
    }
    let properties = body["properties"].as_object().cloned().unwrap_or_default();
    for (key, value) in &properties {
        match key.as_str() {
            "template" => {
                for (k, v) in value.as_object().cloned().unwrap_or_default() {
                    match k.as_str() {
                        "revisionSuffix" => parts.push(format!("revisionSuffix {}", v.as_str().unwrap_or_default())),
                        "containers" => {
                            for c in v.as_array().cloned().unwrap_or_default() {
                                let name = c["name"].as_str().unwrap_or_default();
                                let image = c["image"].as_str().unwrap_or_default();
                                let seeded = seeded_containers.iter().find(|s| s["name"] == c["name"]);
                                let mut rest = c.clone();
                                let mut before = seeded.cloned().unwrap_or_default();
                                for object in [&mut rest, &mut before] {
                                    if let Some(o) = object.as_object_mut() {
                                        o.remove("image");
                                    }
                                }
                                if seeded.is_none() || rest != before {
                                    problems.push(format!("PATCH {} changed container {name}: {c}", r.path));
                                }
                                if name == CONTAINER && !image.starts_with(&format!("{host}/shop/app@sha256:")) {
                                    problems.push(format!("PATCH {} set image {image}, not a digest", r.path));
                                }
                                parts.push(format!("container {name} image {}", short_image(image)));
                            }
                        }
                        other => problems.push(format!("PATCH {} wrote template.{other}", r.path)),
                    }
                }
            }
            "configuration" => {
                for (k, v) in value.as_object().cloned().unwrap_or_default() {
                    let ingress_keys: Vec<String> =
                        v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
                    if k != "ingress" || ingress_keys != ["traffic"] {
                        problems.push(format!("PATCH {} wrote configuration.{k}: {v}", r.path));
                        continue;
                    }
                    let traffic = v["traffic"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .iter()
                        .map(|t| {
                            let revision = t["revisionName"].as_str().map(String::from).unwrap_or_else(|| {
                                if t["latestRevision"].as_bool() == Some(true) { "latest".into() } else { "?".into() }
                            });
                            let label = t["label"].as_str().map(|l| format!(" {l}")).unwrap_or_default();
                            format!("{revision} {}%{label}", t["weight"].as_i64().unwrap_or(0))
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    parts.push(format!("traffic [{traffic}]"));
                }
            }
            other => problems.push(format!("PATCH {} wrote properties.{other}", r.path)),
        }
    }
    parts.join("; ")
}
