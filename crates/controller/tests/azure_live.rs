//! Live mode: the blue-green scenario of `azure_container_apps.rs` against real Azure. Off by
//! default (ignored); it runs with `--ignored`, `TIDEGATE_AZURE_LIVE=1` and the variables below
//! naming an app of yours (see docs/azure.md, "Live mode"). It changes that app: its template ends on the
//! candidate, with all traffic on it.
//!
//! - `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `TIDEGATE_AZURE_CLIENT_SECRET_FILE`: a service
//!   principal allowed to change the app;
//! - `TIDEGATE_AZURE_LIVE_APP`: the app's resource id (Multiple revision mode, ingress, a
//!   container named by `TIDEGATE_AZURE_LIVE_CONTAINER`, default the first);
//! - `TIDEGATE_AZURE_LIVE_CANDIDATE`: the image to release, pinned (`repo@sha256:…`), pullable by
//!   the app and answering `TIDEGATE_AZURE_LIVE_PATH` (default `/`) with 200.

mod common;

use common::{CLEAN_REPORT, MINUTE, Scenario};
use kube::api::PostParams;
use serde_json::json;
use tidegate_api::{PromotionPhase, Release};

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("live mode needs {name}; see docs/azure.md"))
}

#[tokio::test]
#[ignore = "live mode: changes a real Container App; run with --ignored and the variables in docs/azure.md"]
async fn live_blue_green_on_real_azure() {
    assert_eq!(
        std::env::var("TIDEGATE_AZURE_LIVE").as_deref(),
        Ok("1"),
        "live mode changes a real Container App: set TIDEGATE_AZURE_LIVE=1 and the variables in docs/azure.md"
    );
    let app = var("TIDEGATE_AZURE_LIVE_APP");
    let candidate = var("TIDEGATE_AZURE_LIVE_CANDIDATE");
    let (repository, digest) = candidate.split_once('@').expect("TIDEGATE_AZURE_LIVE_CANDIDATE is repo@sha256:…");
    let container = std::env::var("TIDEGATE_AZURE_LIVE_CONTAINER").ok();
    let path = std::env::var("TIDEGATE_AZURE_LIVE_PATH").unwrap_or_else(|_| "/".to_string());
    let scope = app.split("/providers/").next().expect("resource group of the app").to_string();

    let mut target = json!({"resourceId": app});
    if let Some(container) = container {
        target["container"] = json!(container);
    }
    let s = Scenario::new("azure-live").await;
    s.policy(json!({
        "image": repository,
        "triggers": {"rescan": null},
        "workloads": [{"name": "web", "kind": "http",
            "staging": {"containerApp": target},
            "production": {"containerApp": target}}],
        "tests": {"http": [{"name": "live", "workload": "web", "path": path}]},
        "promotion": {"requiredApprovals": 1, "monitorWindow": "2m"}
    }))
    .await;
    let controller = s.controller_with(&[
        "--builder",
        "in-process",
        "--azure-credential",
        "client-secret",
        "--azure-tenant-id",
        &var("AZURE_TENANT_ID"),
        "--azure-client-id",
        &var("AZURE_CLIENT_ID"),
        "--azure-client-secret-file",
        &var("TIDEGATE_AZURE_CLIENT_SECRET_FILE"),
        "--azure-grant",
        &format!("{}={scope}", s.ns),
    ]);
    let release: Release = serde_json::from_value(json!({
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": "live", "namespace": s.ns},
        "spec": {"policy": "shop-app", "reason": {"type": "Manual", "message": "live mode"},
                 "source": {"image": format!("{repository}@{digest}")}}
    }))
    .expect("release");
    s.releases().create(&PostParams::default(), &release).await.expect("create the Release");
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, 15 * MINUTE).await;
    assert_eq!(promotion.spec.digest, digest, "{}", controller.log_tail());
    let alice = s.user("alice", &["tidegate-approvers"]).await;
    s.approve(&alice, &promotion.metadata.name.clone().expect("name"), "alice").await.expect("approve");
    let done = s.promotion_in(PromotionPhase::Succeeded, 20 * MINUTE).await;
    assert_eq!(done.spec.digest, digest, "{}", controller.log_tail());
    drop(controller);
}
