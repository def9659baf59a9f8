//! The approval contract of Promotions on a real API server: `deploy/approval-policy.yaml` (a
//! ValidatingAdmissionPolicy) and `deploy/rbac.yaml` are installed, and real client-certificate
//! users approve, reject, forge and self-approve. Every denial must come from the policy and name
//! the annotation or field to fix.
//!
//! Users: `alice` and `bob` approve (group `tidegate-approvers` → `tidegate-approver`), `carol`
//! requests (group `tidegate-editors` → `tidegate-editor`), `erin` does both, `dave` may patch
//! Promotions but lacks the `approve` verb, `victor` only views, and the controller's
//! ServiceAccount acts with its own ClusterRole.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use tidegate_e2e::example;
use tidegate_testenv::{TestEnv, apply, shared};
use tokio::sync::OnceCell;

const POLICY: &str = "tidegate-promotion-approval";
const APPROVED_BY: &str = "tidegate.dev/approved-by";
const REJECTED_BY: &str = "tidegate.dev/rejected-by";
const REJECTION_REASON: &str = "tidegate.dev/rejection-reason";
const ROLLBACK_REQUESTED_BY: &str = "tidegate.dev/rollback-requested-by";
const CONTROLLER: &str = "system:serviceaccount:tidegate-system:tidegate-controller";
const CONTROLLER_GROUPS: &[&str] = &["system:serviceaccounts", "system:serviceaccounts:tidegate-system"];

const APPROVERS: &[&str] = &["tidegate-approvers"];
const EDITORS: &[&str] = &["tidegate-editors"];
const EDITORS_AND_APPROVERS: &[&str] = &["tidegate-editors", "tidegate-approvers"];
const WRITERS: &[&str] = &["e2e-promotion-writers"];
const VIEWERS: &[&str] = &["tidegate-viewers"];

/// Bindings the tests need besides the shipped manifests: groups of people bound to the shipped
/// roles, and a group that may patch Promotions without the `approve` verb.
const TEST_BINDINGS: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-tidegate-approvers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: tidegate-approvers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-tidegate-editors}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-editor}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: tidegate-editors}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-tidegate-viewers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-viewer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: tidegate-viewers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-promotion-writer}
rules:
- {apiGroups: [tidegate.dev], resources: [promotions], verbs: [get, list, watch, patch, update]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-promotion-writers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-promotion-writer}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: e2e-promotion-writers}]
"#;

static INSTALLED: OnceCell<Result<(), String>> = OnceCell::const_new();

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The shared environment with `deploy/` and the test bindings installed and the policy in
/// force, plus a fresh namespace for the calling test.
async fn setup(namespace: &str) -> &'static TestEnv {
    let env = shared().expect("environment starts");
    INSTALLED
        .get_or_init(|| async { install(env).await })
        .await
        .as_ref()
        .unwrap_or_else(|e| panic!("installing deploy/: {e}"));
    env.create_namespace(namespace).await.expect("namespace");
    env
}

async fn install(env: &TestEnv) -> Result<(), String> {
    let admin = env.client().await.map_err(|e| e.to_string())?;
    let applied =
        apply::apply_dir(&admin, &deploy_dir(), "default", "tidegate-e2e").await.map_err(|e| e.to_string())?;
    for expected in [
        "ValidatingAdmissionPolicy/tidegate-promotion-approval",
        "ValidatingAdmissionPolicyBinding/tidegate-promotion-approval",
        "ClusterRole/tidegate-approver",
        "ClusterRole/tidegate-viewer",
        "ClusterRole/tidegate-editor",
        "ClusterRole/tidegate-controller",
        "ClusterRoleBinding/tidegate-controller",
        "ServiceAccount/tidegate-system/tidegate-controller",
    ] {
        if !applied.iter().any(|a| a == expected) {
            return Err(format!("{expected} not in deploy/: {applied:?}"));
        }
    }
    apply::apply_yaml(&admin, TEST_BINDINGS, "default", "tidegate-e2e").await.map_err(|e| e.to_string())?;

    // A policy is enforced once the API server has compiled it; until then requests pass. Probe
    // with a Promotion whose requester is not its creator until the policy denies it.
    env.create_namespace("approval-probe").await.map_err(|e| e.to_string())?;
    let api = promotions(&admin, "approval-probe");
    let deadline = Instant::now() + Duration::from_secs(30);
    for attempt in 0.. {
        let probe = promotion("approval-probe", &format!("probe-{attempt}"), Some("somebody-else"));
        match api.create(&PostParams::default(), &probe).await {
            Err(kube::Error::Api(s)) if s.message.contains(POLICY) && s.message.contains("spec.requestedBy") => {
                return Ok(());
            }
            Ok(_) | Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            other => return Err(format!("the approval policy is not enforced after 30 s: {other:?}")),
        }
    }
    unreachable!()
}

fn promotion_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("tidegate.dev", "v1alpha1", "Promotion"), "promotions")
}

fn promotions(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &promotion_resource())
}

/// The documented manual Promotion, renamed, with `spec.requestedBy` set (or left out).
fn promotion(namespace: &str, name: &str, requested_by: Option<&str>) -> DynamicObject {
    let mut value = example("manual/promotion.yaml", "Promotion", "shop-app-manual-1");
    value["metadata"]["namespace"] = json!(namespace);
    value["metadata"]["name"] = json!(name);
    match requested_by {
        Some(user) => value["spec"]["requestedBy"] = json!(user),
        None => {
            value["spec"].as_object_mut().expect("spec").remove("requestedBy");
        }
    }
    serde_json::from_value(value).expect("promotion")
}

fn with_annotation(mut object: DynamicObject, key: &str, value: &str) -> DynamicObject {
    object.metadata.annotations.get_or_insert_with(Default::default).insert(key.to_string(), value.to_string());
    object
}

/// A client authenticated as `user` in `groups`.
async fn user(env: &TestEnv, name: &str, groups: &[&str]) -> kube::Client {
    env.client_for(name, groups).await.expect("user client")
}

/// `user` creates a Promotion requested by itself; it must be admitted.
async fn create_as(client: &kube::Client, namespace: &str, name: &str, requested_by: &str) {
    promotions(client, namespace)
        .create(&PostParams::default(), &promotion(namespace, name, Some(requested_by)))
        .await
        .unwrap_or_else(|e| panic!("creating Promotion {name} as {requested_by}: {e}"));
}

/// Sets (`Some`) or removes (`None`) one annotation with a merge patch.
async fn annotate(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<DynamicObject, kube::Error> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    promotions(client, namespace).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await
}

async fn patch_spec(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    spec: Value,
) -> Result<DynamicObject, kube::Error> {
    promotions(client, namespace).patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": spec}))).await
}

/// Asserts that the approval policy denied the request and that its message contains every
/// `expected` text. Returns the message.
#[track_caller]
fn denied<T: std::fmt::Debug>(result: Result<T, kube::Error>, expected: &[&str]) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.message.contains(&format!("ValidatingAdmissionPolicy '{POLICY}'")),
                "denied, but not by the approval policy: {status:?}"
            );
            for text in expected {
                assert!(status.message.contains(text), "the denial lacks {text:?}: {}", status.message);
            }
            status.message
        }
        other => panic!("expected a denial mentioning {expected:?}, got {other:?}"),
    }
}

/// Asserts that RBAC (not the policy) forbade the request.
#[track_caller]
fn forbidden_by_rbac<T: std::fmt::Debug>(result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(!status.message.contains("ValidatingAdmissionPolicy"), "{status:?}");
        }
        other => panic!("expected RBAC to forbid, got {other:?}"),
    }
}

fn annotation(object: &DynamicObject, key: &str) -> Option<String> {
    object.metadata.annotations.as_ref().and_then(|a| a.get(key)).cloned()
}

#[tokio::test]
async fn approvers_append_their_own_names_in_order() {
    let ns = "approve-in-order";
    let env = setup(ns).await;
    let (alice, bob, carol) =
        (user(env, "alice", APPROVERS).await, user(env, "bob", APPROVERS).await, user(env, "carol", EDITORS).await);
    create_as(&carol, ns, "p", "carol").await;

    let approved = annotate(&alice, ns, "p", APPROVED_BY, Some("alice")).await.expect("alice approves");
    assert_eq!(annotation(&approved, APPROVED_BY).as_deref(), Some("alice"));

    // The same approver twice is not a second approval.
    denied(
        annotate(&alice, ns, "p", APPROVED_BY, Some("alice,alice")).await,
        &[APPROVED_BY, "already contains \"alice\""],
    );

    let approved = annotate(&bob, ns, "p", APPROVED_BY, Some("alice,bob")).await.expect("bob approves second");
    assert_eq!(annotation(&approved, APPROVED_BY).as_deref(), Some("alice,bob"));
    // Unrelated changes to an approved Promotion still pass.
    annotate(&alice, ns, "p", "example.com/note", Some("ship it")).await.expect("an unrelated annotation");
}

#[tokio::test]
async fn approving_needs_the_approve_verb() {
    let ns = "approve-verb";
    let env = setup(ns).await;
    let (carol, dave) = (user(env, "carol", EDITORS).await, user(env, "dave", WRITERS).await);
    create_as(&carol, ns, "p", "carol").await;
    // dave may patch Promotions, but writing his own name as an approval needs `approve`.
    denied(
        annotate(&dave, ns, "p", APPROVED_BY, Some("dave")).await,
        &[APPROVED_BY, "\"dave\" may not approve", "RBAC verb approve", "tidegate-approver"],
    );
    // carol has no patch right at all: RBAC stops her before admission.
    forbidden_by_rbac(annotate(&carol, ns, "p", APPROVED_BY, Some("carol")).await);
    let current = promotions(&env.client().await.expect("admin"), ns).get("p").await.expect("get");
    assert_eq!(annotation(&current, APPROVED_BY), None);
}

#[tokio::test]
async fn an_approval_cannot_be_written_in_another_name() {
    let ns = "approve-forged";
    let env = setup(ns).await;
    let (alice, carol) = (user(env, "alice", APPROVERS).await, user(env, "carol", EDITORS).await);
    create_as(&carol, ns, "p", "carol").await;
    denied(
        annotate(&alice, ns, "p", APPROVED_BY, Some("bob")).await,
        &[APPROVED_BY, "your own user name", "\"alice\""],
    );
    denied(annotate(&alice, ns, "p", APPROVED_BY, Some("bob,alice")).await, &[APPROVED_BY, "your own user name"]);
    // A creator cannot smuggle in someone else's approval either.
    let forged = with_annotation(promotion(ns, "forged-at-creation", Some("carol")), APPROVED_BY, "alice");
    denied(promotions(&carol, ns).create(&PostParams::default(), &forged).await, &[APPROVED_BY, "your own user name"]);
}

#[tokio::test]
async fn the_requester_cannot_approve_their_own_promotion() {
    let ns = "approve-self";
    let env = setup(ns).await;
    let (erin, alice) = (user(env, "erin", EDITORS_AND_APPROVERS).await, user(env, "alice", APPROVERS).await);
    create_as(&erin, ns, "p", "erin").await;
    denied(
        annotate(&erin, ns, "p", APPROVED_BY, Some("erin")).await,
        &[APPROVED_BY, "spec.requestedBy", "\"erin\" requested this Promotion", "may not approve"],
    );
    // Approvals present at creation are a change from no approvals: no self-approval there either.
    let at_creation = with_annotation(promotion(ns, "self-approved", Some("erin")), APPROVED_BY, "erin");
    denied(
        promotions(&erin, ns).create(&PostParams::default(), &at_creation).await,
        &[APPROVED_BY, "spec.requestedBy"],
    );
    // Someone else may.
    annotate(&alice, ns, "p", APPROVED_BY, Some("alice")).await.expect("alice approves erin's request");
    // And erin still may not add herself after alice.
    denied(annotate(&erin, ns, "p", APPROVED_BY, Some("alice,erin")).await, &[APPROVED_BY, "spec.requestedBy"]);
}

#[tokio::test]
async fn approvals_cannot_be_removed_or_reordered() {
    let ns = "approve-remove";
    let env = setup(ns).await;
    let (alice, bob, carol) =
        (user(env, "alice", APPROVERS).await, user(env, "bob", APPROVERS).await, user(env, "carol", EDITORS).await);
    create_as(&carol, ns, "p", "carol").await;
    annotate(&alice, ns, "p", APPROVED_BY, Some("alice")).await.expect("alice approves");

    denied(
        annotate(&bob, ns, "p", APPROVED_BY, Some("bob")).await,
        &[APPROVED_BY, "cannot be removed", "\"alice,bob\""],
    );
    denied(annotate(&bob, ns, "p", APPROVED_BY, None).await, &[APPROVED_BY, "cannot be removed"]);
    denied(annotate(&alice, ns, "p", APPROVED_BY, Some("")).await, &[APPROVED_BY, "cannot be removed"]);
    annotate(&bob, ns, "p", APPROVED_BY, Some("alice,bob")).await.expect("bob approves");
    denied(annotate(&bob, ns, "p", APPROVED_BY, Some("bob,alice")).await, &[APPROVED_BY, "reordered"]);
    // Not even an administrator rewrites the record.
    let admin = env.client().await.expect("admin");
    denied(annotate(&admin, ns, "p", APPROVED_BY, Some("alice")).await, &[APPROVED_BY, "cannot be removed"]);
}

#[tokio::test]
async fn the_spec_is_frozen_once_approved() {
    let ns = "approve-spec";
    let env = setup(ns).await;
    let (admin, alice, carol) =
        (env.client().await.expect("admin"), user(env, "alice", APPROVERS).await, user(env, "carol", EDITORS).await);
    create_as(&carol, ns, "p", "carol").await;
    // Before any approval the (mutable part of the) spec may change.
    patch_spec(&admin, ns, "p", json!({"workloads": ["web"]})).await.expect("spec change before approval");
    patch_spec(&alice, ns, "p", json!({"workloads": ["web", "worker"]})).await.expect("an approver may too");

    annotate(&alice, ns, "p", APPROVED_BY, Some("alice")).await.expect("alice approves");
    denied(
        patch_spec(&admin, ns, "p", json!({"workloads": ["web", "worker", "nightly-report"]})).await,
        &["spec of an approved Promotion cannot change", APPROVED_BY, "create a new Promotion"],
    );
    denied(patch_spec(&alice, ns, "p", json!({"workloads": null})).await, &["spec of an approved Promotion"]);
    // A patch that leaves the spec as it is passes.
    patch_spec(&admin, ns, "p", json!({"workloads": ["web", "worker"]})).await.expect("no-op spec patch");
}

#[tokio::test]
async fn requested_by_is_the_creating_user_and_never_changes() {
    let ns = "requested-by";
    let env = setup(ns).await;
    let (admin, alice, carol) =
        (env.client().await.expect("admin"), user(env, "alice", APPROVERS).await, user(env, "carol", EDITORS).await);
    let api = promotions(&carol, ns);
    denied(
        api.create(&PostParams::default(), &promotion(ns, "for-alice", Some("alice"))).await,
        &["spec.requestedBy", "your own user name", "\"carol\""],
    );
    denied(
        api.create(&PostParams::default(), &promotion(ns, "anonymous", None)).await,
        &["spec.requestedBy", "\"carol\""],
    );
    denied(
        promotions(&admin, ns).create(&PostParams::default(), &promotion(ns, "by-admin", Some("carol"))).await,
        &["spec.requestedBy", "tidegate-admin"],
    );
    create_as(&carol, ns, "p", "carol").await;
    // Changing the requester would make carol's own approval possible, or frame someone else.
    denied(patch_spec(&alice, ns, "p", json!({"requestedBy": "alice"})).await, &["spec.requestedBy is immutable"]);
    denied(patch_spec(&admin, ns, "p", json!({"requestedBy": null})).await, &["spec.requestedBy is immutable"]);
}

#[tokio::test]
async fn rejection_is_recorded_under_the_rejecting_users_name() {
    let ns = "reject";
    let env = setup(ns).await;
    let (alice, carol, dave) =
        (user(env, "alice", APPROVERS).await, user(env, "carol", EDITORS).await, user(env, "dave", WRITERS).await);
    create_as(&carol, ns, "p", "carol").await;
    denied(
        annotate(&alice, ns, "p", REJECTED_BY, Some("bob")).await,
        &[REJECTED_BY, "your own user name", "\"alice\""],
    );
    denied(annotate(&dave, ns, "p", REJECTED_BY, Some("dave")).await, &[REJECTED_BY, "RBAC verb approve"]);

    let patch =
        json!({"metadata": {"annotations": {REJECTED_BY: "alice", REJECTION_REASON: "the CVE fix is incomplete"}}});
    let rejected = promotions(&alice, ns)
        .patch("p", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("alice rejects with her own name and a reason");
    assert_eq!(annotation(&rejected, REJECTED_BY).as_deref(), Some("alice"));
    // Nobody but the rejecter withdraws a rejection.
    denied(annotate(&dave, ns, "p", REJECTED_BY, None).await, &[REJECTED_BY, "can only be withdrawn"]);
    // Another approver can neither withdraw nor overwrite it: a rejection stands.
    let bob = user(env, "bob", APPROVERS).await;
    denied(
        annotate(&bob, ns, "p", REJECTED_BY, None).await,
        &[REJECTED_BY, "can only be withdrawn or changed by that user"],
    );
    denied(
        annotate(&bob, ns, "p", REJECTED_BY, Some("bob")).await,
        &[REJECTED_BY, "can only be withdrawn or changed by that user"],
    );
    assert_eq!(
        annotation(&promotions(&alice, ns).get("p").await.expect("get"), REJECTED_BY).as_deref(),
        Some("alice"),
        "the rejection is still alice's"
    );
    // The reason alone is free text.
    annotate(&dave, ns, "p", REJECTION_REASON, Some("see ticket 42")).await.expect("reason is free text");
}

#[tokio::test]
async fn rollback_is_requested_under_the_requesting_users_name() {
    let ns = "rollback";
    let env = setup(ns).await;
    let (alice, bob, carol, dave) = (
        user(env, "alice", APPROVERS).await,
        user(env, "bob", APPROVERS).await,
        user(env, "carol", EDITORS).await,
        user(env, "dave", WRITERS).await,
    );
    create_as(&carol, ns, "p", "carol").await;
    annotate(&alice, ns, "p", APPROVED_BY, Some("alice")).await.expect("alice approves");
    denied(
        annotate(&bob, ns, "p", ROLLBACK_REQUESTED_BY, Some("alice")).await,
        &[ROLLBACK_REQUESTED_BY, "your own user name", "\"bob\""],
    );
    denied(
        annotate(&dave, ns, "p", ROLLBACK_REQUESTED_BY, Some("dave")).await,
        &[ROLLBACK_REQUESTED_BY, "RBAC verb approve"],
    );
    let requested = annotate(&bob, ns, "p", ROLLBACK_REQUESTED_BY, Some("bob")).await.expect("bob asks for a rollback");
    assert_eq!(annotation(&requested, ROLLBACK_REQUESTED_BY).as_deref(), Some("bob"));
    // Taking it over in another name is a change too.
    denied(annotate(&alice, ns, "p", ROLLBACK_REQUESTED_BY, Some("bob,alice")).await, &[ROLLBACK_REQUESTED_BY]);
}

#[tokio::test]
async fn viewers_can_read_but_not_change() {
    let ns = "view";
    let env = setup(ns).await;
    let (carol, victor) = (user(env, "carol", EDITORS).await, user(env, "victor", VIEWERS).await);
    create_as(&carol, ns, "p", "carol").await;
    let listed = promotions(&victor, ns).list(&ListParams::default()).await.expect("victor lists Promotions");
    assert_eq!(listed.items.len(), 1);
    promotions(&victor, ns).get("p").await.expect("victor reads a Promotion");
    forbidden_by_rbac(annotate(&victor, ns, "p", APPROVED_BY, Some("victor")).await);
    forbidden_by_rbac(
        promotions(&victor, ns).create(&PostParams::default(), &promotion(ns, "q", Some("victor"))).await,
    );

    // The viewer rules are aggregated into the built-in `view` role; approving never is.
    let admin = env.client().await.expect("admin");
    let roles: Api<ClusterRole> = Api::all(admin);
    let grants = |role: &ClusterRole, verb: &str| {
        role.rules.iter().flatten().any(|r| {
            r.api_groups.iter().flatten().any(|g| g == "tidegate.dev")
                && r.resources.iter().flatten().any(|res| res == "promotions")
                && r.verbs.iter().any(|v| v == verb)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = roles.get("view").await.expect("view role");
        let edit = roles.get("edit").await.expect("edit role");
        if grants(&view, "list") && grants(&edit, "create") {
            for role in [&view, &edit, &roles.get("admin").await.expect("admin role")] {
                assert!(!grants(role, "approve"), "{:?} grants approve", role.metadata.name);
            }
            break;
        }
        assert!(Instant::now() < deadline, "tidegate-viewer/editor not aggregated into view/edit");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_controller_cannot_approve_but_writes_status() {
    let ns = "controller";
    let env = setup(ns).await;
    let (controller, carol, alice) = (
        user(env, CONTROLLER, CONTROLLER_GROUPS).await,
        user(env, "carol", EDITORS).await,
        user(env, "alice", APPROVERS).await,
    );
    create_as(&carol, ns, "p", "carol").await;

    denied(
        annotate(&controller, ns, "p", APPROVED_BY, Some(CONTROLLER)).await,
        &[APPROVED_BY, "may not approve", "RBAC verb approve"],
    );
    denied(annotate(&controller, ns, "p", APPROVED_BY, Some("alice")).await, &[APPROVED_BY, "your own user name"]);
    denied(annotate(&controller, ns, "p", REJECTED_BY, Some(CONTROLLER)).await, &[REJECTED_BY, "RBAC verb approve"]);

    // Its own work: status writes, finalizers, and Promotions it requests itself.
    let status = json!({"status": {"phase": "Approved", "approvedBy": ["alice"]}});
    let written = promotions(&controller, ns)
        .patch_status("p", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("the controller patches Promotion status");
    assert_eq!(written.data["status"]["phase"], "Approved");
    let finalizer = json!({"metadata": {"finalizers": ["tidegate.dev/promotion"]}});
    promotions(&controller, ns)
        .patch("p", &PatchParams::default(), &Patch::Merge(&finalizer))
        .await
        .expect("the controller adds a finalizer");
    promotions(&controller, ns)
        .patch("p", &PatchParams::default(), &Patch::Merge(&json!({"metadata": {"finalizers": null}})))
        .await
        .expect("and removes it");
    create_as(&controller, ns, "from-controller", CONTROLLER).await;
    denied(annotate(&controller, ns, "from-controller", APPROVED_BY, Some(CONTROLLER)).await, &[APPROVED_BY]);
    annotate(&alice, ns, "from-controller", APPROVED_BY, Some("alice")).await.expect("a person approves it");
}

#[tokio::test]
async fn the_controller_role_is_least_privilege() {
    let ns = "controller-rbac";
    let env = setup(ns).await;
    let reviews: Api<SubjectAccessReview> = Api::all(env.client().await.expect("admin"));
    // (verb, group, resource, subresource, namespace, name, allowed)
    let cases: &[(&str, &str, &str, &str, &str, &str, bool)] = &[
        ("watch", "tidegate.dev", "promotions", "", ns, "", true),
        ("create", "tidegate.dev", "promotions", "", ns, "", true),
        ("patch", "tidegate.dev", "promotions", "status", ns, "", true),
        ("update", "tidegate.dev", "releases", "status", ns, "", true),
        ("patch", "tidegate.dev", "imagepolicies", "status", ns, "", true),
        ("create", "events.k8s.io", "events", "", ns, "", true),
        ("create", "", "events", "", ns, "", true),
        ("create", "authorization.k8s.io", "subjectaccessreviews", "", "", "", true),
        (
            "get",
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
            "",
            "",
            "tidegate-promotion-approval",
            true,
        ),
        ("watch", "admissionregistration.k8s.io", "validatingadmissionpolicybindings", "", "", "", true),
        (
            "get",
            "admissionregistration.k8s.io",
            "mutatingadmissionpolicybindings",
            "",
            "",
            "tidegate-record-identity",
            true,
        ),
        // Leases only in its own namespace.
        ("update", "coordination.k8s.io", "leases", "", "tidegate-system", "tidegate-controller", true),
        ("update", "coordination.k8s.io", "leases", "", ns, "", false),
        ("create", "coordination.k8s.io", "leases", "", ns, "", false),
        // Workloads, Jobs and ConfigMaps: no rights at all; everything goes through a namespace's
        // deployer.
        ("watch", "apps", "deployments", "", ns, "", false),
        ("list", "batch", "jobs", "", ns, "", false),
        ("get", "", "configmaps", "", ns, "", false),
        ("list", "", "pods", "", ns, "", false),
        ("patch", "apps", "deployments", "", ns, "", false),
        ("create", "apps", "deployments", "", ns, "", false),
        ("patch", "", "services", "", ns, "", false),
        ("patch", "batch", "cronjobs", "", ns, "", false),
        ("create", "batch", "jobs", "", ns, "", false),
        ("create", "batch", "jobs", "", "tidegate-system", "", false),
        ("create", "", "pods", "", ns, "", false),
        // It may act as a namespace's tidegate-deployer, and as no other ServiceAccount.
        ("impersonate", "", "serviceaccounts", "", ns, "tidegate-deployer", true),
        ("impersonate", "", "serviceaccounts", "", "tidegate-system", "tidegate-controller", false),
        ("impersonate", "", "serviceaccounts", "", "kube-system", "default", false),
        ("impersonate", "", "users", "", "", "alice", false),
        ("impersonate", "", "groups", "", "", "system:masters", false),
        // It may mark its own production writes with the Promotion they carry out, and set no
        // other user extra.
        ("impersonate", "authentication.k8s.io", "userextras", "tidegate.dev/promotion", "", "shop/p-1", true),
        ("impersonate", "authentication.k8s.io", "userextras", "scopes", "", "view", false),
        ("impersonate", "authentication.k8s.io", "userextras", "authentication.kubernetes.io/pod-name", "", "x", false),
        ("approve", "tidegate.dev", "promotions", "", ns, "", false),
        ("delete", "tidegate.dev", "promotions", "", ns, "", false),
        ("update", "tidegate.dev", "promotions", "", ns, "", false),
        ("get", "", "secrets", "", ns, "", false),
        ("list", "", "secrets", "", ns, "", false),
        ("delete", "apps", "deployments", "", ns, "", false),
        ("create", "", "services", "", ns, "", false),
        ("delete", "", "configmaps", "", ns, "", false),
        ("create", "rbac.authorization.k8s.io", "rolebindings", "", ns, "", false),
        (
            "update",
            "admissionregistration.k8s.io",
            "validatingadmissionpolicies",
            "",
            "",
            "tidegate-promotion-approval",
            false,
        ),
    ];
    let mut wrong = Vec::new();
    for &(verb, group, resource, subresource, namespace, name, expected) in cases {
        let review: SubjectAccessReview = serde_json::from_value(json!({
            "spec": {
                "user": CONTROLLER,
                "groups": CONTROLLER_GROUPS,
                "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group, "resource": resource,
                    "subresource": subresource, "name": name},
            }
        }))
        .expect("review");
        let answer = reviews.create(&PostParams::default(), &review).await.expect("SubjectAccessReview");
        let allowed = answer.status.is_some_and(|s| s.allowed);
        if allowed != expected {
            wrong.push(format!(
                "{verb} {group}/{resource}/{subresource} {namespace}/{name}: allowed={allowed}, expected {expected}"
            ));
        }
    }
    assert!(wrong.is_empty(), "tidegate-controller grants differ:\n{}", wrong.join("\n"));
}

const APPROVER_GROUPS: &str = "tidegate.dev/approved-by-groups";
const CREATED_BY: &str = "tidegate.dev/created-by";

/// The groups the API server reports for `client` (a SelfSubjectReview).
async fn groups_of(client: &kube::Client) -> String {
    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview");
    review.status.and_then(|s| s.user_info).and_then(|u| u.groups).unwrap_or_default().join(",")
}

#[tokio::test]
async fn the_api_server_records_each_approvers_groups_and_nobody_forges_them() {
    let ns = "identity-record";
    let env = setup(ns).await;
    let (alice, bob, carol) =
        (user(env, "alice", APPROVERS).await, user(env, "bob", APPROVERS).await, user(env, "carol", EDITORS).await);
    create_as(&carol, ns, "p", "carol").await;

    // Alice approves and tries to slip in a forged record; the recorded groups are hers.
    let patch = json!({"metadata": {"annotations": {APPROVED_BY: "alice", APPROVER_GROUPS: "system:masters"}}});
    let approved = promotions(&alice, ns)
        .patch("p", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("alice approves");
    let alice_groups = groups_of(&alice).await;
    assert!(alice_groups.contains("tidegate-approvers"), "{alice_groups}");
    assert_eq!(annotation(&approved, APPROVER_GROUPS), Some(alice_groups.clone()));

    // Bob's approval appends his entry.
    let approved = annotate(&bob, ns, "p", APPROVED_BY, Some("alice,bob")).await.expect("bob approves");
    assert_eq!(annotation(&approved, APPROVER_GROUPS), Some(format!("{alice_groups}|{}", groups_of(&bob).await)));

    // Nobody edits the record by itself, not even an approver or the admin.
    let admin = env.client().await.expect("admin");
    for client in [&bob, &admin] {
        denied(
            annotate(client, ns, "p", APPROVER_GROUPS, Some("system:masters|system:masters")).await,
            &[APPROVER_GROUPS, "recorded by the API server"],
        );
        denied(
            annotate(client, ns, "p", APPROVER_GROUPS, None).await,
            &[APPROVER_GROUPS, "recorded by the API server"],
        );
    }
}

#[tokio::test]
async fn a_releases_creator_is_recorded_and_cannot_be_forged() {
    let ns = "release-creator";
    let env = setup(ns).await;
    let carol = user(env, "carol", EDITORS).await;
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("tidegate.dev", "v1alpha1", "Release"), "releases");
    let releases: Api<DynamicObject> = Api::namespaced_with(carol.clone(), ns, &resource);
    let mut value = json!({
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": "r", "namespace": ns, "annotations": {CREATED_BY: "somebody-else"}},
        "spec": {"policy": "shop-app", "reason": {"type": "Manual"}}
    });
    let created = releases
        .create(&PostParams::default(), &serde_json::from_value(value.clone()).expect("release"))
        .await
        .expect("carol creates a Release");
    assert_eq!(annotation(&created, CREATED_BY).as_deref(), Some("carol"), "the forged creator was replaced");
    let patch = json!({"metadata": {"annotations": {CREATED_BY: "somebody-else"}}});
    match releases.patch("r", &PatchParams::default(), &Patch::Merge(&patch)).await {
        Err(kube::Error::Api(s)) => assert!(s.message.contains(CREATED_BY), "{}", s.message),
        other => panic!("changing the recorded creator must be denied: {other:?}"),
    }
    value["metadata"]["name"] = json!("r2");
    let created = Api::<DynamicObject>::namespaced_with(env.client().await.expect("admin"), ns, &resource)
        .create(&PostParams::default(), &serde_json::from_value(value).expect("release"))
        .await
        .expect("the admin creates a Release");
    assert_ne!(annotation(&created, CREATED_BY).as_deref(), Some("somebody-else"));
}
