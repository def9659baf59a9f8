//! Approvals the controller can prove, without the admission policies: with the shipped
//! admission policies removed, annotations carry whatever anyone writes, so the controller must
//! refuse to count them; reinstalling the policies does not make a Promotion opened while they
//! were missing trustworthy. This is its own test binary (its own control plane) because it
//! deletes cluster-wide admission bindings.

mod common;

use common::{BEFORE, CLEAN_REPORT, MINUTE, Scenario, http_server, pinned};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use tidegate_api::PromotionPhase;

fn bindings(client: &kube::Client, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", kind));
    Api::all_with(client.clone(), &resource)
}

#[tokio::test]
async fn approvals_written_without_the_admission_policies_never_count() {
    let s = Scenario::new("gate-unprotected").await;
    let (url, _) = http_server(200).await;
    s.policy(json!({
        "tests": {"http": [{"name": "health", "workload": "web", "path": "/healthz", "baseUrl": url}]},
        "promotion": {"requiredApprovals": 2}
    }))
    .await;
    let _controller = s.controller();
    s.trigger("unprotected").await;
    s.upload_scan_report(CLEAN_REPORT).await;
    let promotion = s.promotion_in(PromotionPhase::AwaitingApproval, MINUTE).await;
    let name = promotion.metadata.name.clone().expect("name");

    // The cluster loses the policies that record and check identities.
    for kind in ["ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicyBinding"] {
        for name in ["tidegate-promotion-approval", "tidegate-authorship", "tidegate-record-identity"] {
            let _ = bindings(&s.admin, kind).delete(name, &DeleteParams::default()).await;
        }
    }
    // Someone who may merely patch Promotions writes two approvals, with the approvers' real
    // groups, in one go. Alice and Bob do hold the approve verb, so only the missing proof of
    // who wrote the names stands between this and production.
    s.apply(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: promotion-patcher}\n\
         rules: [{apiGroups: [tidegate.dev], resources: [promotions], verbs: [get, patch]}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: mallory-patches}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: promotion-patcher}\n\
         subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}]\n",
        &s.ns,
    )
    .await;
    let mallory = s.user("mallory", &[]).await;
    let forged = json!({"metadata": {"annotations": {
        "tidegate.dev/approved-by": "alice,bob",
        "tidegate.dev/approved-by-groups": "tidegate-approvers,system:authenticated|tidegate-approvers,system:authenticated"
    }}});
    common::wait("the unprotected write to be admitted", MINUTE, || async {
        Api::<tidegate_api::Promotion>::namespaced(mallory.clone(), &s.ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&forged))
            .await
            .ok()
    })
    .await;
    s.approval_says(&name, "is not installed").await;
    assert_eq!(s.production().await.0, Some(pinned(BEFORE)), "production untouched");

    // Reinstalling the policies does not launder what was written while they were missing.
    let deploy = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    tidegate_testenv::apply::apply_dir(&s.admin, &deploy, "default", "scenario").await.expect("reinstall deploy/");
    s.approval_says(&name, "after the object was created").await;
    assert_eq!(s.production().await.0, Some(pinned(BEFORE)), "production untouched");
    let phase = s.promotions().get(&name).await.expect("get").status.map(|st| st.phase);
    assert_eq!(phase, Some(PromotionPhase::AwaitingApproval));
}
