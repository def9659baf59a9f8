//! Tidegate next to a GitOps tool that applies the same production Deployment from Git
//! (docs/gitops.md). The tool is not run here: each step sends the request the tool sends (its
//! field manager, server-side apply with force, and the payload its documented settings
//! produce) as a user holding `edit` in the namespace, the way the tool's ServiceAccount would.
//!
//! With the settings from the doc the promoted digest survives a sync and `tidegate-controller`
//! keeps owning the image in `managedFields`; without them the sync puts Git's image back and
//! Tidegate reports `ProductionDrift`. In a namespace labelled `tidegate.dev/production=true`
//! that naive sync is refused instead.

mod common;

use common::{BEFORE, CLEAN_REPORT, MINUTE, Scenario, http_server, pinned, wait};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tidegate_api::{ImagePolicy, PromotionPhase};

/// The production Deployment both tools apply from Git.
const NAME: &str = "shop-web";
/// Tidegate's field manager.
const TIDEGATE: &str = "tidegate-controller";

/// The Deployment as it is in Git, with the marks `tool_metadata` says the tool adds.
fn git_manifest(ns: &str, commit: &str, tool_metadata: Value) -> Value {
    let mut manifest = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": ns, "labels": {"app.kubernetes.io/name": NAME},
            "annotations": {"example.com/git-commit": commit}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": NAME}},
                "spec": {"containers": [{"name": "app", "image": pinned(BEFORE), "args": ["serve", "--port=8080"]}]}
            }
        }
    });
    for (key, value) in tool_metadata.as_object().expect("metadata object") {
        let target = &mut manifest["metadata"][key];
        for (k, v) in value.as_object().expect("marks") {
            target[k] = v.clone();
        }
    }
    manifest
}

/// The managers that own the image of container `app`, with their operation.
fn image_owners(deployment: &Deployment) -> Vec<(String, String)> {
    let fields = deployment.metadata.managed_fields.clone().unwrap_or_default();
    fields
        .into_iter()
        .filter(|entry| entry.subresource.is_none())
        .filter(|entry| {
            let Some(v1) = entry.fields_v1.as_ref() else { return false };
            let image = &v1.0["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"app"}"#]["f:image"];
            !image.is_null()
        })
        .map(|entry| (entry.manager.unwrap_or_default(), entry.operation.unwrap_or_default()))
        .collect()
}

fn image_of(deployment: &Deployment) -> Option<String> {
    deployment.spec.as_ref()?.template.spec.as_ref()?.containers.first()?.image.clone()
}

/// A policy whose one http workload rolls `shop-web` in place, a scenario ready to promote, and
/// a client for the GitOps tool (a user with `edit` in the production namespace).
async fn scenario(name: &str, tool: &str) -> (Scenario, Api<Deployment>) {
    let s = Scenario::new(name).await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "triggers": {"rescan": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"kubernetes": {"kind": "Deployment", "namespace": s.staging, "name": "web", "container": "app"}},
            "production": {"kubernetes": {"kind": "Deployment", "namespace": s.ns, "name": NAME, "container": "app"}},
            "strategy": {"type": "rolling"}}],
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"requiredApprovals": 1, "monitorWindow": "1m"}
    }))
    .await;
    s.bind(&format!("{tool}-edit"), "edit", tool, &s.ns).await;
    let client = s.user(tool, &[]).await;
    let deployments = Api::namespaced(client, &s.ns);
    (s, deployments)
}

async fn sync(api: &Api<Deployment>, manager: &str, manifest: &Value) -> Result<Deployment, kube::Error> {
    api.patch(NAME, &PatchParams::apply(manager).force(), &Patch::Apply(manifest)).await
}

/// Runs the pipeline to a Succeeded Promotion and returns the image Tidegate promoted.
async fn promote(s: &Scenario) -> String {
    s.trigger("gitops").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 3 * MINUTE).await;
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &promotion.metadata.name.expect("name"), "alice").await.expect("approve");
    let done = s.promotion_in(PromotionPhase::Succeeded, 4 * MINUTE).await;
    pinned(&done.spec.digest)
}

/// Labels (or unlabels) the namespace as production, and waits until the API server's admission
/// sees it: the production policy's namespace selector is evaluated on the server's cached copy
/// of the namespace, which follows the write a moment later. A dry-run image change of `NAME`
/// tells.
async fn label_production(s: &Scenario, value: Option<&str>) {
    let label = json!({"metadata": {"labels": {"tidegate.dev/production": value}}});
    Api::<Namespace>::all(s.admin.clone())
        .patch(&s.ns, &PatchParams::default(), &Patch::Merge(&label))
        .await
        .expect("label the namespace");
    let deployments: Api<Deployment> = Api::namespaced(s.admin.clone(), &s.ns);
    let probe = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": pinned(&format!("sha256:{}", "f".repeat(64)))}]}}}});
    let dry_run = PatchParams { dry_run: true, ..PatchParams::default() };
    let guarded = value.is_some();
    wait("the production policy to see the namespace's label", MINUTE, || async {
        let refused = match deployments.patch(NAME, &dry_run, &Patch::Strategic(&probe)).await {
            Ok(_) => false,
            Err(e) if e.to_string().contains("tidegate-production-images") => true,
            Err(e) => panic!("dry-run image change of {NAME}: {e}"),
        };
        (refused == guarded).then_some(())
    })
    .await;
}

/// Waits for the policy to report that `NAME` runs `image` instead of `approved`.
async fn drift_reported(s: &Scenario, image: &str, approved: &str) {
    let policies: Api<ImagePolicy> = Api::namespaced(s.admin.clone(), &s.ns);
    s.wake(&policies, "shop-app").await;
    let drift = wait("ProductionDrift on the policy", 2 * MINUTE, || async {
        let status = policies.get("shop-app").await.ok()?.status?;
        let condition = status.conditions.iter().find(|c| c.type_ == "ProductionDrift" && c.status == "True")?;
        let entry = status.drift.iter().find(|d| d.workload == format!("Deployment {}/{NAME}", s.ns))?;
        Some((entry.clone(), condition.message.clone()))
    })
    .await;
    let (entry, message) = drift;
    assert_eq!(entry.image.as_deref(), Some(image));
    assert_eq!(entry.approved_digest.as_deref(), approved.split('@').nth(1));
    assert_eq!(entry.break_glass, None);
    assert!(message.contains("changed outside Tidegate"), "{message}");
}

/// A sync of a new Git commit whose payload carries the live image, as the documented settings
/// produce it: the commit lands, the promoted digest stays, and `manager` co-owns the image with
/// Tidegate.
async fn sync_keeping_the_live_image(api: &Api<Deployment>, manager: &str, manifest: Value, promoted: &str) {
    let live = api.get(NAME).await.expect("live Deployment");
    let mut desired = manifest;
    desired["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image_of(&live));
    let synced = sync(api, manager, &desired).await.expect("sync with the settings");
    assert_eq!(image_of(&synced).as_deref(), Some(promoted));
    let commit = synced.metadata.annotations.as_ref().and_then(|a| a.get("example.com/git-commit")).cloned();
    assert_eq!(commit, desired["metadata"]["annotations"]["example.com/git-commit"].as_str().map(String::from));
    let owners = image_owners(&synced);
    assert!(owners.contains(&(TIDEGATE.to_string(), "Update".to_string())), "{owners:?}");
    assert!(owners.contains(&(manager.to_string(), "Apply".to_string())), "{owners:?}");
}

/// A sync of Git as it is: Git's image replaces the promoted one, `manager` alone owns it, and
/// Tidegate reports the drift.
async fn naive_sync_reverts(s: &Scenario, api: &Api<Deployment>, manager: &str, manifest: Value, promoted: &str) {
    let reverted = sync(api, manager, &manifest).await.expect("naive sync");
    assert_eq!(image_of(&reverted), Some(pinned(BEFORE)));
    assert_eq!(image_owners(&reverted), vec![(manager.to_string(), "Apply".to_string())]);
    drift_reported(s, &pinned(BEFORE), promoted).await;
}

/// Argo CD with `ServerSideApply=true`, `RespectIgnoreDifferences=true` and an
/// `ignoreDifferences` entry for the fields `tidegate-controller` manages: a sync applies Git with
/// those fields taken from the live object, as manager `argocd-controller`, forcing conflicts.
#[tokio::test]
async fn argo_cd_respecting_ignored_differences_keeps_the_promoted_digest() {
    let (s, argo) = scenario("gitops-argo", "argocd-application-controller").await;
    let tracking = json!({"annotations": {
        "argocd.argoproj.io/tracking-id": format!("shop-prod:apps/Deployment:{}/{NAME}", s.ns)}});
    sync(&argo, "argocd-controller", &git_manifest(&s.ns, "c1", tracking.clone())).await.expect("first sync");
    label_production(&s, Some("true")).await;

    let controller = s.controller();
    let promoted = promote(&s).await;
    let live = s.deployment(&s.ns, NAME).await.expect("live Deployment");
    assert_eq!(image_of(&live).as_deref(), Some(promoted.as_str()), "{}", controller.log_tail());
    let owners = image_owners(&live);
    assert_eq!(owners, vec![(TIDEGATE.to_string(), "Update".to_string())], "after the promotion");

    // A new commit in Git, synced with the settings: the image comes from the live object.
    sync_keeping_the_live_image(&argo, "argocd-controller", git_manifest(&s.ns, "c2", tracking.clone()), &promoted)
        .await;

    // Without the settings the sync sends Git's image. The production policy refuses it ...
    let naive = git_manifest(&s.ns, "c3", tracking);
    let refused = sync(&argo, "argocd-controller", &naive).await.expect_err("the production policy refuses it");
    assert!(refused.to_string().contains("tidegate-production-images"), "{refused}");
    assert_eq!(s.deployment_image(&s.ns, NAME).await.as_deref(), Some(promoted.as_str()));

    // ... and where no policy guards the namespace it reverts production, which Tidegate reports.
    label_production(&s, None).await;
    naive_sync_reverts(&s, &argo, "argocd-controller", naive, &promoted).await;
    drop(controller);
}

/// Flux's kustomize-controller with a `spec.ignore` rule for the image: when a reconcile applies
/// (here because Git changed), the ignored path that drifted is resolved by field ownership. No
/// other Apply manager owns the image (Tidegate's patch is an Update), so Flux adopts the live
/// value into the payload and applies as manager `kustomize-controller` with force.
#[tokio::test]
async fn flux_with_an_ignore_rule_keeps_the_promoted_digest() {
    let (s, flux) = scenario("gitops-flux", "kustomize-controller").await;
    let owner = json!({"labels": {
        "kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}});
    sync(&flux, "kustomize-controller", &git_manifest(&s.ns, "c1", owner.clone())).await.expect("first apply");

    let controller = s.controller();
    let promoted = promote(&s).await;
    let live = s.deployment(&s.ns, NAME).await.expect("live Deployment");
    assert_eq!(image_of(&live).as_deref(), Some(promoted.as_str()), "{}", controller.log_tail());

    // Adopt, not strip: only Apply managers other than Flux would make Flux strip the path.
    let owners = image_owners(&live);
    assert!(!owners.iter().any(|(manager, op)| op == "Apply" && manager != "kustomize-controller"), "{owners:?}");
    sync_keeping_the_live_image(&flux, "kustomize-controller", git_manifest(&s.ns, "c2", owner.clone()), &promoted)
        .await;

    // Flux detects drift with a server-side dry run of the Git manifest as it is, image included.
    // Under the production policy that dry run is refused, so the reconcile fails before it
    // could adopt anything: with Flux, a labelled namespace needs another setting (docs/gitops.md).
    label_production(&s, Some("true")).await;
    let dry_run = PatchParams { dry_run: true, ..PatchParams::apply("kustomize-controller").force() };
    let refused = flux
        .patch(NAME, &dry_run, &Patch::Apply(&git_manifest(&s.ns, "c2", owner.clone())))
        .await
        .expect_err("the production policy refuses the dry run");
    assert!(refused.to_string().contains("tidegate-production-images"), "{refused}");
    label_production(&s, None).await;

    // Without the rule Flux sees the image as drift and applies Git's.
    naive_sync_reverts(&s, &flux, "kustomize-controller", git_manifest(&s.ns, "c3", owner), &promoted).await;
    drop(controller);
}
