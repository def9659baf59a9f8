//! Production namespaces accept only promoted images, on a real API server:
//! `deploy/production-policy.yaml` (a ValidatingAdmissionPolicy and a MutatingAdmissionPolicy) is
//! installed, namespaces are labelled `tidegate.dev/production: "true"`, and real client-certificate
//! users with the built-in `edit` role create and change workloads. Tidegate's identity is the
//! namespace's `tidegate-deployer` ServiceAccount impersonated with the user extra
//! `tidegate.dev/promotion`, as the controller does.
//!
//! Every denial must come from the policy (`tidegate-production-images`) and say what to do.

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingAdmissionPolicy, MutatingAdmissionPolicyBinding, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tidegate_testenv::{ADMIN_USER, TestEnv, apply, shared};
use tokio::sync::OnceCell;

const POLICY: &str = "tidegate-production-images";
const MUTATING_POLICY: &str = "tidegate-production-break-glass";
const PRODUCTION_LABEL: &str = "tidegate.dev/production";
const BREAK_GLASS: &str = "tidegate.dev/break-glass";
const BREAK_GLASS_BY: &str = "tidegate.dev/break-glass-by";
const PROMOTION_EXTRA: &str = "tidegate.dev/promotion";
const TAG: &str = "registry.local/shop/app:1.2";
const APPROVE: &str = "kubectl tidegate approve";

static INSTALLED: OnceCell<Result<(), String>> = OnceCell::const_new();

fn repo_path(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn policy_yaml() -> String {
    std::fs::read_to_string(repo_path("deploy/production-policy.yaml")).expect("deploy/production-policy.yaml")
}

/// An image pinned by digest: `registry.local/shop/app@sha256:<64 × digit>`.
fn pinned(digit: char) -> String {
    format!("registry.local/shop/app@sha256:{}", digit.to_string().repeat(64))
}

/// The shared environment with `deploy/production-policy.yaml` installed and both policies in
/// force.
async fn setup() -> &'static TestEnv {
    let env = shared().expect("environment starts");
    INSTALLED
        .get_or_init(|| async { install(env).await })
        .await
        .as_ref()
        .unwrap_or_else(|e| panic!("installing deploy/production-policy.yaml: {e}"));
    env
}

async fn install(env: &TestEnv) -> Result<(), String> {
    let admin = env.client().await.map_err(|e| e.to_string())?;
    let applied =
        apply::apply_yaml(&admin, &policy_yaml(), "default", "tidegate-e2e").await.map_err(|e| e.to_string())?;
    for expected in [
        "ValidatingAdmissionPolicy/tidegate-production-images",
        "ValidatingAdmissionPolicyBinding/tidegate-production-images",
        "MutatingAdmissionPolicy/tidegate-production-break-glass",
        "MutatingAdmissionPolicyBinding/tidegate-production-break-glass",
    ] {
        if !applied.iter().any(|a| a == expected) {
            return Err(format!("{expected} not in deploy/production-policy.yaml: {applied:?}"));
        }
    }
    // The API server compiles each policy on its own, a moment after it is created: wait until the
    // validating policy refuses a tag and the mutating one records who broke glass.
    let ns = "production-probe";
    labelled_namespace(env, ns).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let recorded = create::<Deployment>(
            &admin,
            ns,
            with_annotations(deployment("probe", &pinned('0')), json!({BREAK_GLASS: "probing the policies"})),
            true,
        )
        .await
        .ok()
        .and_then(|d| annotation(&d.metadata, BREAK_GLASS_BY));
        if recorded.as_deref() == Some(ADMIN_USER) && refuses_tags(&admin, ns).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the production policies are not in force after 60 s (recorded: {recorded:?})"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Whether the validating policy refuses a tag image in `ns` (a dry run).
async fn refuses_tags(admin: &kube::Client, ns: &str) -> bool {
    matches!(
        create::<Deployment>(admin, ns, deployment("probe", TAG), true).await,
        Err(kube::Error::Api(s)) if s.message.contains(POLICY)
    )
}

/// Creates `name` labelled `tidegate.dev/production: "true"` (with its default ServiceAccount).
async fn labelled_namespace(env: &TestEnv, name: &str) {
    env.create_namespace(name).await.expect("namespace");
    let admin = env.client().await.expect("admin");
    let patch = json!({"metadata": {"labels": {PRODUCTION_LABEL: "true"}}});
    Api::<Namespace>::all(admin)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("label the namespace");
}

/// A fresh production namespace for the calling test, with the policy seen in force there (the
/// API server matches namespace labels from its cache).
async fn production_namespace(env: &TestEnv, name: &str) {
    labelled_namespace(env, name).await;
    let admin = env.client().await.expect("admin");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !refuses_tags(&admin, name).await {
        assert!(Instant::now() < deadline, "the policy is not in force in namespace {name} after 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client-certificate user bound to the built-in ClusterRole `edit` in `ns`, once RBAC lets them
/// list Deployments there.
async fn editor(env: &TestEnv, ns: &str, name: &str) -> kube::Client {
    bind_edit(env, ns, json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})).await;
    let client = env.client_for(name, &[]).await.expect("user client");
    wait_until_allowed(&client, ns).await;
    client
}

async fn bind_edit(env: &TestEnv, ns: &str, subject: Value) {
    let admin = env.client().await.expect("admin");
    let name = format!("e2e-edit-{}", subject["name"].as_str().expect("subject name").replace(':', "-"));
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [subject],
    }))
    .expect("role binding");
    Api::<RoleBinding>::namespaced(admin, ns).create(&PostParams::default(), &binding).await.expect("bind edit");
}

async fn wait_until_allowed(client: &kube::Client, ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = Api::<Deployment>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
        assert!(Instant::now() < deadline, "the edit binding in {ns} does not take effect: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A kube config from the environment's administrator kubeconfig.
async fn admin_config(env: &TestEnv) -> kube::Config {
    let yaml = std::fs::read_to_string(env.admin_kubeconfig_path()).expect("admin kubeconfig");
    let kubeconfig = Kubeconfig::from_yaml(&yaml).expect("kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config")
}

/// The administrator impersonating `user` (the API server derives a ServiceAccount's groups), with
/// the user extra `tidegate.dev/promotion` when `promotion` is given — what the controller does.
/// kube sends the extra as the header `Impersonate-Extra-tidegate.dev%2Fpromotion`.
async fn impersonating(env: &TestEnv, user: &str, promotion: Option<&str>) -> kube::Client {
    let mut config = admin_config(env).await;
    config.auth_info.impersonate = Some(user.to_string());
    config.auth_info.impersonate_user_extra =
        promotion.map(|p| HashMap::from([(PROMOTION_EXTRA.to_string(), vec![p.to_string()])]));
    kube::Client::try_from(config).expect("impersonating client")
}

/// A client authenticated by a bearer token only.
async fn with_token(env: &TestEnv, token: &str) -> kube::Client {
    let mut config = admin_config(env).await;
    config.auth_info = serde_json::from_value::<AuthInfo>(json!({"token": token})).expect("auth info");
    kube::Client::try_from(config).expect("token client")
}

/// The user the API server sees for `client`: name and extras.
async fn who(client: &kube::Client) -> (String, HashMap<String, Vec<String>>) {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview");
    let info = review.status.and_then(|s| s.user_info).expect("user info");
    (info.username.unwrap_or_default(), info.extra.unwrap_or_default().into_iter().collect())
}

fn deployer(policy_namespace: &str) -> String {
    format!("system:serviceaccount:{policy_namespace}:tidegate-deployer")
}

// --- objects -----------------------------------------------------------------------------------

fn pod_spec(image: &str) -> Value {
    json!({"containers": [{"name": "app", "image": image}], "restartPolicy": "Always"})
}

fn template(name: &str, image: &str) -> Value {
    json!({"metadata": {"labels": {"app": name}}, "spec": pod_spec(image)})
}

fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": template(name, image)}
    })
}

fn cronjob(name: &str, image: &str) -> Value {
    let mut spec = pod_spec(image);
    spec["restartPolicy"] = json!("Never");
    json!({
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
        "spec": {"schedule": "0 3 1 1 *", "jobTemplate": {"spec": {"template": {"spec": spec}}}}
    })
}

fn pod(name: &str, image: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec(image)})
}

fn with_annotations(mut object: Value, annotations: Value) -> Value {
    object["metadata"]["annotations"] = annotations;
    object
}

/// `kubectl set image`: a strategic merge patch of one container, with optional annotations.
fn set_image(kind: &str, image: &str, annotations: Option<Value>) -> Value {
    let containers = json!([{"name": "app", "image": image}]);
    let mut patch = match kind {
        "Pod" => json!({"spec": {"containers": containers}}),
        "CronJob" => json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": containers}}}}}}),
        _ => json!({"spec": {"template": {"spec": {"containers": containers}}}}),
    };
    if let Some(annotations) = annotations {
        patch["metadata"] = json!({"annotations": annotations});
    }
    patch
}

async fn create<K>(client: &kube::Client, ns: &str, object: Value, dry_run: bool) -> Result<K, kube::Error>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned + Serialize,
{
    let object: K = serde_json::from_value(object).expect("object");
    let params = PostParams { dry_run, ..PostParams::default() };
    Api::<K>::namespaced(client.clone(), ns).create(&params, &object).await
}

async fn strategic<K>(client: &kube::Client, ns: &str, name: &str, patch: Value) -> Result<K, kube::Error>
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    Api::<K>::namespaced(client.clone(), ns).patch(name, &PatchParams::default(), &Patch::Strategic(&patch)).await
}

async fn get<K>(client: &kube::Client, ns: &str, name: &str) -> K
where
    K: kube::Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    Api::<K>::namespaced(client.clone(), ns).get(name).await.expect("get")
}

fn annotation(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, key: &str) -> Option<String> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).cloned()
}

fn deployment_image(d: &Deployment) -> String {
    d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.containers[0].image.clone()).expect("image")
}

fn cronjob_image(c: &CronJob) -> String {
    c.spec
        .job_template
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.containers[0].image.clone())
        .expect("image")
}

fn pod_image(p: &Pod) -> String {
    p.spec.as_ref().and_then(|s| s.containers[0].image.clone()).expect("image")
}

/// Asserts that this policy denied the request and that its message contains every `expected`
/// text. Returns the message.
#[track_caller]
fn denied<T: Debug>(result: Result<T, kube::Error>, expected: &[&str]) -> String {
    match result {
        Err(kube::Error::Api(status)) => {
            assert!(
                status.message.contains(&format!("ValidatingAdmissionPolicy '{POLICY}'")),
                "denied, but not by the production policy: {status:?}"
            );
            for text in expected {
                assert!(status.message.contains(text), "the denial lacks {text:?}: {}", status.message);
            }
            status.message
        }
        other => panic!("expected a denial mentioning {expected:?}, got {other:?}"),
    }
}

const CHANGE_ONLY_BY_PROMOTION: &[&str] =
    &["change only through an approved Tidegate Promotion", APPROVE, "tidegate.dev/break-glass=\"<reason>\""];

// --- tests -------------------------------------------------------------------------------------

#[test]
fn the_chart_ships_the_same_policy() {
    let chart = std::fs::read_to_string(repo_path("charts/tidegate/templates/production-policy.yaml"))
        .expect("charts/tidegate/templates/production-policy.yaml");
    let lines: Vec<&str> = chart.lines().collect();
    assert_eq!(lines.first(), Some(&"{{- if .Values.productionPolicy.enabled }}"), "the template's first line");
    assert_eq!(lines.last(), Some(&"{{- end }}"), "the template's last line");
    let body = lines[1..lines.len() - 1].join("\n");
    let deploy = policy_yaml();
    assert_eq!(body.trim_end(), deploy.trim_end(), "the chart's production policy drifted from deploy/");
    assert!(!deploy.contains("{{"), "the policy must not contain template actions");
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_path("charts/tidegate/values.yaml")).expect("charts/tidegate/values.yaml"),
    )
    .expect("values.yaml");
    assert_eq!(values["productionPolicy"]["enabled"], json!(true), "on by default");
}

/// The API server's type-check report (`status.typeChecking`) of a validating policy, once it
/// covers the policy's current generation.
async fn type_warnings(policies: &Api<ValidatingAdmissionPolicy>, name: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let policy = policies.get(name).await.expect("the validating policy");
        let status = policy.status.clone().unwrap_or_default();
        if let Some(checked) = status.type_checking.filter(|_| status.observed_generation == policy.metadata.generation)
        {
            return checked
                .expression_warnings
                .unwrap_or_default()
                .into_iter()
                .map(|w| format!("{}: {}", w.field_ref, w.warning))
                .collect();
        }
        assert!(Instant::now() < deadline, "no type checking reported for {name}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_policies_compile_without_type_warnings() {
    let env = setup().await;
    let admin = env.client().await.expect("admin");
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(admin.clone());
    let warnings = type_warnings(&policies, POLICY).await;
    assert!(warnings.is_empty(), "type-check warnings of {POLICY}:\n{}", warnings.join("\n"));
    let policy = policies.get(POLICY).await.expect("the validating policy");
    let spec = policy.spec.expect("spec");
    assert_eq!(spec.validations.as_ref().map(Vec::len), Some(3));

    // The API server does not report errors inside spec.variables (an undefined field there stays
    // silent), so check every variable and message expression again as the validation of an
    // unbound copy of the policy, against all seven kinds.
    let mut validations = Vec::new();
    for variable in spec.variables.iter().flatten() {
        validations
            .push(json!({"expression": format!("size([{}]) == 1", variable.expression), "message": variable.name}));
    }
    for validation in spec.validations.iter().flatten() {
        if let Some(message) = &validation.message_expression {
            validations.push(json!({"expression": format!("size([{message}]) == 1"), "message": "message"}));
        }
    }
    let scratch: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": "e2e-production-typecheck"},
        "spec": {"failurePolicy": "Fail", "matchConstraints": spec.match_constraints, "variables": spec.variables,
            "validations": validations},
    }))
    .expect("scratch policy");
    let _ = policies.delete("e2e-production-typecheck", &Default::default()).await;
    policies.create(&PostParams::default(), &scratch).await.expect("an unbound copy of the policy");
    let warnings = type_warnings(&policies, "e2e-production-typecheck").await;
    policies.delete("e2e-production-typecheck", &Default::default()).await.expect("delete the copy");
    assert!(warnings.is_empty(), "type-check warnings in the variables of {POLICY}:\n{}", warnings.join("\n"));

    // Both bindings select the labelled namespaces and nothing else.
    let selector = json!({"matchLabels": {PRODUCTION_LABEL: "true"}});
    let binding = Api::<ValidatingAdmissionPolicyBinding>::all(admin.clone()).get(POLICY).await.expect("binding");
    let spec = binding.spec;
    assert_eq!(spec.validation_actions, vec!["Deny".to_string()]);
    assert_eq!(
        serde_json::to_value(spec.match_resources.and_then(|m| m.namespace_selector)).ok(),
        Some(selector.clone())
    );
    Api::<MutatingAdmissionPolicy>::all(admin.clone()).get(MUTATING_POLICY).await.expect("the mutating policy");
    let binding =
        Api::<MutatingAdmissionPolicyBinding>::all(admin).get(MUTATING_POLICY).await.expect("the mutating binding");
    let spec = binding.spec.expect("spec");
    assert_eq!(serde_json::to_value(spec.match_resources.and_then(|m| m.namespace_selector)).ok(), Some(selector));
}

#[tokio::test]
async fn production_accepts_only_images_pinned_by_digest() {
    let (prod, plain) = ("pin-prod", "pin-plain");
    let env = setup().await;
    production_namespace(env, prod).await;
    env.create_namespace(plain).await.expect("namespace");
    let admin = env.client().await.expect("admin");

    let message = denied(
        create::<Deployment>(&admin, prod, deployment("app", TAG), false).await,
        &[
            "Deployment pin-prod/app",
            "images in production namespace pin-prod must be pinned by digest",
            TAG,
            "promote a new image with Tidegate",
            "kubectl tidegate approve <promotion>",
        ],
    );
    println!("tag refused: {message}");
    create::<Deployment>(&admin, plain, deployment("app", TAG), false).await.expect("a tag outside production");
    let created = create::<Deployment>(&admin, prod, deployment("app", &pinned('a')), false)
        .await
        .expect("a digest-pinned image in production");
    assert_eq!(deployment_image(&created), pinned('a'));

    // Init containers too, and a digest that is not sha256 hex is no pin.
    let mut with_init = deployment("with-init", &pinned('a'));
    with_init["spec"]["template"]["spec"]["initContainers"] =
        json!([{"name": "migrate", "image": "registry.local/shop/migrate:latest"}]);
    denied(create::<Deployment>(&admin, prod, with_init, false).await, &["registry.local/shop/migrate:latest"]);
    let short = "registry.local/shop/app@sha256:abc";
    denied(create::<Deployment>(&admin, prod, deployment("short", short), false).await, &[short]);
}

#[tokio::test]
async fn every_workload_kind_is_checked() {
    let ns = "kinds-prod";
    let env = setup().await;
    production_namespace(env, ns).await;
    let admin = env.client().await.expect("admin");
    let spec = |image: &str| -> Vec<(&str, Value)> {
        let selector = json!({"matchLabels": {"app": "w"}});
        vec![
            ("Deployment", deployment("w", image)),
            (
                "StatefulSet",
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "w"},
                    "spec": {"serviceName": "w", "selector": selector, "template": template("w", image)}}),
            ),
            (
                "DaemonSet",
                json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "w"},
                    "spec": {"selector": selector, "template": template("w", image)}}),
            ),
            (
                "ReplicaSet",
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "w"},
                    "spec": {"selector": selector, "template": template("w", image)}}),
            ),
            (
                "Job",
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "w"},
                    "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}],
                        "restartPolicy": "Never"}}}}),
            ),
            ("CronJob", cronjob("w", image)),
            ("Pod", pod("w", image)),
        ]
    };
    async fn dry_run(admin: &kube::Client, ns: &str, kind: &str, object: Value) -> Result<(), kube::Error> {
        match kind {
            "Deployment" => create::<Deployment>(admin, ns, object, true).await.map(drop),
            "StatefulSet" => create::<StatefulSet>(admin, ns, object, true).await.map(drop),
            "DaemonSet" => create::<DaemonSet>(admin, ns, object, true).await.map(drop),
            "ReplicaSet" => create::<ReplicaSet>(admin, ns, object, true).await.map(drop),
            "Job" => create::<Job>(admin, ns, object, true).await.map(drop),
            "CronJob" => create::<CronJob>(admin, ns, object, true).await.map(drop),
            _ => create::<Pod>(admin, ns, object, true).await.map(drop),
        }
    }
    for (kind, object) in spec(TAG) {
        denied(dry_run(&admin, ns, kind, object).await, &[&format!("{kind} {ns}/w"), TAG, APPROVE]);
    }
    for (kind, object) in spec(&pinned('b')) {
        dry_run(&admin, ns, kind, object).await.unwrap_or_else(|e| panic!("a pinned {kind}: {e}"));
    }
}

#[tokio::test]
async fn a_person_cannot_change_production_images() {
    let ns = "person-prod";
    let env = setup().await;
    production_namespace(env, ns).await;
    let admin = env.client().await.expect("admin");
    create::<Deployment>(&admin, ns, deployment("app", &pinned('a')), false).await.expect("deployment");
    let pat = editor(env, ns, "pat").await;

    let message = denied(
        strategic::<Deployment>(&pat, ns, "app", set_image("Deployment", TAG, None)).await,
        &[&format!("Deployment {ns}/app"), &format!("refused: app={TAG}")],
    );
    for text in CHANGE_ONLY_BY_PROMOTION {
        assert!(message.contains(text), "{text:?} missing: {message}");
    }
    assert!(message.contains(&format!("kubectl patch deployments app -n {ns}")), "{message}");
    println!("person refused: {message}");
    denied(
        strategic::<Deployment>(&pat, ns, "app", set_image("Deployment", &pinned('b'), None)).await,
        CHANGE_ONLY_BY_PROMOTION,
    );
    // A JSON merge patch replacing the container list, and a full update, are the same change.
    let merge = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": pinned('b')}]}}}});
    denied(
        Api::<Deployment>::namespaced(pat.clone(), ns)
            .patch("app", &PatchParams::default(), &Patch::Merge(&merge))
            .await,
        CHANGE_ONLY_BY_PROMOTION,
    );
    let mut replaced = get::<Deployment>(&pat, ns, "app").await;
    // Unconditional (no resourceVersion): the deployment controller's status writes in between
    // would otherwise turn the update into a 409 before admission sees it.
    replaced.metadata.resource_version = None;
    replaced.spec.as_mut().and_then(|s| s.template.spec.as_mut()).expect("pod spec").containers[0].image =
        Some(pinned('b'));
    denied(
        Api::<Deployment>::namespaced(pat.clone(), ns).replace("app", &PostParams::default(), &replaced).await,
        CHANGE_ONLY_BY_PROMOTION,
    );
    // Adding a sidecar or renaming the container changes the images too.
    let sidecar = json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": pinned('c')}]}}}});
    denied(strategic::<Deployment>(&pat, ns, "app", sidecar).await, &[&format!("refused: sidecar={}", pinned('c'))]);
    // Not even the administrator changes it without a Promotion or a reason.
    denied(
        strategic::<Deployment>(&admin, ns, "app", set_image("Deployment", &pinned('b'), None)).await,
        CHANGE_ONLY_BY_PROMOTION,
    );
    assert_eq!(
        deployment_image(&get(&admin, ns, "app").await),
        pinned('a'),
        "production still runs the promoted digest"
    );
}

#[tokio::test]
async fn changes_that_keep_the_images_pass() {
    let ns = "keep-prod";
    let env = setup().await;
    production_namespace(env, ns).await;
    let admin = env.client().await.expect("admin");
    create::<Deployment>(&admin, ns, deployment("app", &pinned('a')), false).await.expect("deployment");
    let pat = editor(env, ns, "pat").await;
    // The gate is closed for images…
    denied(
        strategic::<Deployment>(&pat, ns, "app", set_image("Deployment", &pinned('b'), None)).await,
        CHANGE_ONLY_BY_PROMOTION,
    );

    // …and open for everything else.
    strategic::<Deployment>(&pat, ns, "app", json!({"spec": {"replicas": 2}})).await.expect("scale by patch");
    let deployments = Api::<Deployment>::namespaced(pat.clone(), ns);
    deployments
        .patch_scale("app", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 3}})))
        .await
        .expect("scale through the scale subresource");
    strategic::<Deployment>(&pat, ns, "app", json!({"metadata": {"labels": {"team": "shop"}}})).await.expect("a label");
    strategic::<Deployment>(&pat, ns, "app", json!({"metadata": {"annotations": {"example.com/note": "ok"}}}))
        .await
        .expect("an unrelated annotation");
    let restart = json!({"spec": {"template": {"metadata": {"annotations":
        {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}});
    let restarted = strategic::<Deployment>(&pat, ns, "app", restart).await.expect("kubectl rollout restart");
    assert_eq!(deployment_image(&restarted), pinned('a'));

    // The Deployment controller creates the new ReplicaSet and scales the old one under the policy.
    rolled_out(&admin, ns, "app", 3).await;
    let sets = Api::<ReplicaSet>::namespaced(admin, ns).list(&ListParams::default()).await.expect("replica sets");
    assert_eq!(sets.items.len(), 2, "the old and the restarted ReplicaSet");
}

#[tokio::test]
async fn workloads_from_before_the_label_keep_running() {
    let ns = "legacy-prod";
    let env = setup().await;
    env.create_namespace(ns).await.expect("namespace");
    let admin = env.client().await.expect("admin");
    create::<Deployment>(&admin, ns, deployment("legacy", TAG), false).await.expect("a tag before the label");
    rolled_out(&admin, ns, "legacy", 1).await;
    production_namespace(env, ns).await;
    let pat = editor(env, ns, "pat").await;
    // Unchanged images pass, so the workload can still be scaled and labelled…
    strategic::<Deployment>(&pat, ns, "legacy", json!({"spec": {"replicas": 2}, "metadata": {"labels": {"a": "b"}}}))
        .await
        .expect("scaling a workload that still runs a tag");
    // …but no new Pod runs the tag: the ReplicaSet controller's create is refused.
    let sets = Api::<ReplicaSet>::namespaced(admin.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = sets.list(&ListParams::default()).await.expect("replica sets");
        let failure =
            list.items.iter().flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten())).find(|c| {
                c.type_ == "ReplicaFailure"
                    && c.message.as_deref().is_some_and(|m| m.contains(POLICY) && m.contains(TAG))
            });
        if let Some(failure) = failure {
            println!("scaling up a tag: {:?}", failure.message);
            break;
        }
        assert!(Instant::now() < deadline, "no ReplicaFailure from the policy: {:?}", list.items);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A new image is a change like any other, and breaking glass needs a pin.
    denied(
        strategic::<Deployment>(&pat, ns, "legacy", set_image("Deployment", &pinned('a'), None)).await,
        CHANGE_ONLY_BY_PROMOTION,
    );
    let reason = json!({BREAK_GLASS: "pin the legacy image, CHG-77"});
    denied(
        strategic::<Deployment>(
            &pat,
            ns,
            "legacy",
            set_image("Deployment", "registry.local/shop/app:1.3", Some(reason.clone())),
        )
        .await,
        &[
            "must be pinned by digest",
            "registry.local/shop/app:1.3",
            "breaking glass, too, needs an image pinned by digest",
        ],
    );
    let pinned_now = strategic::<Deployment>(&pat, ns, "legacy", set_image("Deployment", &pinned('a'), Some(reason)))
        .await
        .expect("break glass to a pinned image");
    assert_eq!(deployment_image(&pinned_now), pinned('a'));
    // The controllers roll it out, scaling the tag's ReplicaSet (images unchanged) down to zero.
    rolled_out(&admin, ns, "legacy", 2).await;
    let old = sets.list(&ListParams::default()).await.expect("replica sets").items.into_iter().find(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .and_then(|t| t.spec.as_ref())
            .map(|s| s.containers[0].image.clone())
            == Some(Some(TAG.to_string()))
    });
    assert_eq!(old.and_then(|rs| rs.spec).and_then(|s| s.replicas), Some(0), "the tag's ReplicaSet is scaled down");
}

/// Waits until the Deployment's current generation runs `replicas` available, updated replicas.
async fn rolled_out(client: &kube::Client, ns: &str, name: &str, replicas: i32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = get::<Deployment>(client, ns, name).await;
        let status = d.status.clone().unwrap_or_default();
        if status.observed_generation == d.metadata.generation
            && status.updated_replicas == Some(replicas)
            && status.replicas == Some(replicas)
            && status.available_replicas == Some(replicas)
        {
            return;
        }
        assert!(Instant::now() < deadline, "Deployment {ns}/{name} does not roll out: {status:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_namespace_admin_cannot_lift_the_label() {
    let ns = "label-prod";
    let env = setup().await;
    production_namespace(env, ns).await;
    let admin = env.client().await.expect("admin");
    create::<Deployment>(&admin, ns, deployment("app", &pinned('a')), false).await.expect("deployment");
    bind_admin(env, ns, "nadia").await;
    let nadia = env.client_for("nadia", &[]).await.expect("user client");
    wait_until_allowed(&nadia, ns).await;
    denied(
        strategic::<Deployment>(&nadia, ns, "app", set_image("Deployment", &pinned('b'), None)).await,
        CHANGE_ONLY_BY_PROMOTION,
    );
    let unlabel = json!({"metadata": {"labels": {PRODUCTION_LABEL: null}}});
    match Api::<Namespace>::all(nadia.clone()).patch(ns, &PatchParams::default(), &Patch::Merge(&unlabel)).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("a namespace admin must not change the Namespace object: {other:?}"),
    }
    // Nor edit the policy or its binding.
    let binding = json!({"spec": {"matchResources": {"namespaceSelector": {"matchLabels": {"nothing": "matches"}}}}});
    match Api::<ValidatingAdmissionPolicyBinding>::all(nadia)
        .patch(POLICY, &PatchParams::default(), &Patch::Merge(&binding))
        .await
    {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("a namespace admin must not change the binding: {other:?}"),
    }
}

async fn bind_admin(env: &TestEnv, ns: &str, user: &str) {
    let admin = env.client().await.expect("admin");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("e2e-admin-{user}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .expect("role binding");
    Api::<RoleBinding>::namespaced(admin, ns).create(&PostParams::default(), &binding).await.expect("bind admin");
}

#[tokio::test]
async fn breaking_glass_needs_a_fresh_reason_and_is_recorded() {
    let ns = "glass-prod";
    let env = setup().await;
    production_namespace(env, ns).await;
    let admin = env.client().await.expect("admin");
    create::<Deployment>(&admin, ns, deployment("app", &pinned('a')), false).await.expect("deployment");
    let (pat, quinn) = (editor(env, ns, "pat").await, editor(env, ns, "quinn").await);

    let reason = "hotfix INC-1234 database down";
    let fixed = strategic::<Deployment>(
        &pat,
        ns,
        "app",
        set_image("Deployment", &pinned('b'), Some(json!({BREAK_GLASS: reason}))),
    )
    .await
    .expect("break glass: image and reason in one request");
    assert_eq!(deployment_image(&fixed), pinned('b'));
    assert_eq!(annotation(&fixed.metadata, BREAK_GLASS).as_deref(), Some(reason));
    assert_eq!(
        annotation(&fixed.metadata, BREAK_GLASS_BY).as_deref(),
        Some("pat"),
        "the API server records who broke glass"
    );
    // The Deployment controller copies the annotations onto the new ReplicaSet and rolls out.
    rolled_out(&admin, ns, "app", 1).await;
    // A ReplicaSet takes no part in breaking glass: its images follow its Deployment.
    let standalone = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "standalone"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "standalone"}}, "template": template("standalone", &pinned('a'))}});
    create::<ReplicaSet>(&admin, ns, standalone, false).await.expect("a pinned ReplicaSet");
    denied(
        strategic::<ReplicaSet>(
            &pat,
            ns,
            "standalone",
            set_image("ReplicaSet", &pinned('b'), Some(json!({BREAK_GLASS: "hotfix INC-1234 on the set"}))),
        )
        .await,
        &["A ReplicaSet's images follow its Deployment"],
    );

    // The reason left on the object does not open the gate again, nor does a copy of it.
    denied(
        strategic::<Deployment>(&pat, ns, "app", set_image("Deployment", &pinned('c'), None)).await,
        &["was already used; write a new one", reason],
    );
    denied(
        strategic::<Deployment>(
            &quinn,
            ns,
            "app",
            set_image("Deployment", &pinned('c'), Some(json!({BREAK_GLASS: format!(" {reason} ")}))),
        )
        .await,
        &["was already used"],
    );
    denied(
        strategic::<Deployment>(
            &pat,
            ns,
            "app",
            set_image("Deployment", &pinned('c'), Some(json!({BREAK_GLASS: "urgent"}))),
        )
        .await,
        &["too short: at least 10 characters"],
    );
    // The record is not written by hand: not alone, not by the administrator.
    for client in [&pat, &admin] {
        denied(
            strategic::<Deployment>(
                client,
                ns,
                "app",
                json!({"metadata": {"annotations": {BREAK_GLASS_BY: "somebody-else"}}}),
            )
            .await,
            &["tidegate.dev/break-glass-by is recorded by the API server", MUTATING_POLICY],
        );
        denied(
            strategic::<Deployment>(client, ns, "app", json!({"metadata": {"annotations": {BREAK_GLASS_BY: null}}}))
                .await,
            &["tidegate.dev/break-glass-by is recorded by the API server"],
        );
    }
    // Forged together with a new reason: the API server writes the real name over it.
    let second = strategic::<Deployment>(
        &quinn,
        ns,
        "app",
        set_image(
            "Deployment",
            &pinned('c'),
            Some(json!({BREAK_GLASS: "rollback INC-1235 again", BREAK_GLASS_BY: "pat"})),
        ),
    )
    .await
    .expect("a second break-glass change with a new reason");
    assert_eq!(deployment_image(&second), pinned('c'));
    assert_eq!(annotation(&second.metadata, BREAK_GLASS_BY).as_deref(), Some("quinn"));
    // Removing the reason keeps or drops the record, never rewrites it.
    let cleared = strategic::<Deployment>(&pat, ns, "app", json!({"metadata": {"annotations": {BREAK_GLASS: null}}}))
        .await
        .expect("the reason can be removed");
    assert_eq!(annotation(&cleared.metadata, BREAK_GLASS_BY).as_deref(), Some("quinn"));
    let stored = get::<Deployment>(&admin, ns, "app").await;
    assert_eq!(annotation(&stored.metadata, BREAK_GLASS_BY).as_deref(), Some("quinn"));

    // At creation the record is written too.
    let created = create::<Deployment>(
        &pat,
        ns,
        with_annotations(
            deployment("other", &pinned('d')),
            json!({BREAK_GLASS: "new service INC-9", BREAK_GLASS_BY: "admin"}),
        ),
        false,
    )
    .await
    .expect("a pinned Deployment created with a reason");
    assert_eq!(annotation(&created.metadata, BREAK_GLASS_BY).as_deref(), Some("pat"));
}

#[tokio::test]
async fn tidegate_passes_only_with_the_promotion_extra() {
    let (policy_ns, ns) = ("tidegate-shop", "tidegate-prod");
    let env = setup().await;
    env.create_namespace(policy_ns).await.expect("policy namespace");
    production_namespace(env, ns).await;
    let admin = env.client().await.expect("admin");
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "tidegate-deployer"}})).expect("sa");
    Api::<ServiceAccount>::namespaced(admin.clone(), policy_ns)
        .create(&PostParams::default(), &account)
        .await
        .expect("the deployer ServiceAccount");
    bind_edit(env, ns, json!({"kind": "ServiceAccount", "name": "tidegate-deployer", "namespace": policy_ns})).await;
    create::<Deployment>(&admin, ns, deployment("app", &pinned('a')), false).await.expect("deployment");

    // What the controller does: the deployer, with the Promotion it carries out.
    let tidegate = impersonating(env, &deployer(policy_ns), Some(&format!("{policy_ns}/shop-app-7"))).await;
    wait_until_allowed(&tidegate, ns).await;
    let (name, extra) = who(&tidegate).await;
    assert_eq!(name, deployer(policy_ns));
    assert_eq!(extra.get(PROMOTION_EXTRA), Some(&vec![format!("{policy_ns}/shop-app-7")]), "{extra:?}");
    let promoted = strategic::<Deployment>(&tidegate, ns, "app", set_image("Deployment", &pinned('b'), None))
        .await
        .expect("Tidegate promotes another digest");
    assert_eq!(deployment_image(&promoted), pinned('b'));
    // Tidegate, too, only deploys pinned digests.
    denied(
        strategic::<Deployment>(&tidegate, ns, "app", set_image("Deployment", TAG, None)).await,
        &["pinned by digest", TAG],
    );

    // The same ServiceAccount without the extra: impersonated…
    let bare = impersonating(env, &deployer(policy_ns), None).await;
    denied(
        strategic::<Deployment>(&bare, ns, "app", set_image("Deployment", &pinned('c'), None)).await,
        CHANGE_ONLY_BY_PROMOTION,
    );
    // …or with a real token, as a pod running as it would (its extras name the token, not a
    // Promotion).
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), policy_ns)
        .create_token_request("tidegate-deployer", &PostParams::default(), &TokenRequest::default())
        .await
        .expect("TokenRequest")
        .status
        .expect("token")
        .token
        .expect("token");
    let pod_like = with_token(env, &token).await;
    let (name, extra) = who(&pod_like).await;
    assert_eq!(name, deployer(policy_ns));
    assert!(!extra.contains_key(PROMOTION_EXTRA), "{extra:?}");
    println!("a ServiceAccount token's extras: {extra:?}");
    denied(
        strategic::<Deployment>(&pod_like, ns, "app", set_image("Deployment", &pinned('c'), None)).await,
        CHANGE_ONLY_BY_PROMOTION,
    );

    // Another ServiceAccount with the extra is not Tidegate.
    let other = format!("system:serviceaccount:{policy_ns}:deployer");
    bind_edit(env, ns, json!({"kind": "ServiceAccount", "name": "deployer", "namespace": policy_ns})).await;
    let other = impersonating(env, &other, Some(&format!("{policy_ns}/shop-app-7"))).await;
    wait_until_allowed(&other, ns).await;
    denied(
        strategic::<Deployment>(&other, ns, "app", set_image("Deployment", &pinned('c'), None)).await,
        CHANGE_ONLY_BY_PROMOTION,
    );

    // Setting the extra takes `impersonate` on userextras/tidegate.dev/promotion: a user who may
    // impersonate the deployer but holds no more cannot…
    let promotion = format!("{policy_ns}/shop-app-7");
    let deployer_only = json!({"apiGroups": [""], "resources": ["serviceaccounts"], "resourceNames": ["tidegate-deployer"],
        "verbs": ["impersonate"]});
    let mallory = impersonator(env, "mallory", json!([deployer_only]), &deployer(policy_ns)).await;
    let without_extra = kube::Client::try_from(mallory.clone()).expect("client");
    wait_until_allowed(&without_extra, ns).await;
    let mut with_extra = mallory;
    with_extra.auth_info.impersonate_user_extra =
        Some(HashMap::from([(PROMOTION_EXTRA.to_string(), vec![promotion.clone()])]));
    let with_extra = kube::Client::try_from(with_extra).expect("client");
    match strategic::<Deployment>(&with_extra, ns, "app", set_image("Deployment", &pinned('c'), None)).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(s.message.contains("userextras/tidegate.dev/promotion"), "{}", s.message);
            println!("impersonation refused: {}", s.message);
        }
        other => panic!("impersonating with the extra must be forbidden: {other:?}"),
    }
    denied(
        strategic::<Deployment>(&without_extra, ns, "app", set_image("Deployment", &pinned('c'), None)).await,
        CHANGE_ONLY_BY_PROMOTION,
    );
    assert_eq!(deployment_image(&get(&admin, ns, "app").await), pinned('b'), "only Tidegate's change landed");

    // …and with exactly the two grants the controller holds, the change passes.
    let extras = json!({"apiGroups": ["authentication.k8s.io"], "resources": ["userextras/tidegate.dev/promotion"],
        "verbs": ["impersonate"]});
    let mut controller =
        impersonator(env, "controller-like", json!([deployer_only, extras]), &deployer(policy_ns)).await;
    controller.auth_info.impersonate_user_extra = Some(HashMap::from([(PROMOTION_EXTRA.to_string(), vec![promotion])]));
    let controller = kube::Client::try_from(controller).expect("client");
    wait_until_allowed(&controller, ns).await;
    let promoted = strategic::<Deployment>(&controller, ns, "app", set_image("Deployment", &pinned('d'), None))
        .await
        .expect("a controller with impersonate on userextras/tidegate.dev/promotion promotes");
    assert_eq!(deployment_image(&promoted), pinned('d'));
}

/// A client-certificate user granted `rules` cluster-wide, as a config impersonating `user`.
async fn impersonator(env: &TestEnv, name: &str, rules: Value, user: &str) -> kube::Config {
    let admin = env.client().await.expect("admin");
    let role = format!("e2e-impersonator-{name}");
    let objects = json!([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": role}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}]},
    ]);
    let yaml = objects.as_array().expect("list").iter().map(Value::to_string).collect::<Vec<_>>().join("\n---\n");
    apply::apply_yaml(&admin, &yaml, "default", "tidegate-e2e").await.expect("impersonator rbac");
    let kubeconfig = Kubeconfig::from_yaml(&env.user_kubeconfig(name, &[]).expect("kubeconfig")).expect("yaml");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("config");
    config.auth_info.impersonate = Some(user.to_string());
    config
}

#[tokio::test]
async fn cronjobs_and_pods_follow_the_same_rules() {
    let (policy_ns, ns) = ("kinds-shop", "kinds-rules-prod");
    let env = setup().await;
    env.create_namespace(policy_ns).await.expect("policy namespace");
    production_namespace(env, ns).await;
    let admin = env.client().await.expect("admin");
    bind_edit(env, ns, json!({"kind": "ServiceAccount", "name": "tidegate-deployer", "namespace": policy_ns})).await;
    let pat = editor(env, ns, "pat").await;
    let tidegate = impersonating(env, &deployer(policy_ns), Some(&format!("{policy_ns}/nightly-3"))).await;
    wait_until_allowed(&tidegate, ns).await;

    // CronJob.
    denied(
        create::<CronJob>(&pat, ns, cronjob("nightly", TAG), false).await,
        &[&format!("CronJob {ns}/nightly"), TAG, APPROVE],
    );
    create::<CronJob>(&pat, ns, cronjob("nightly", &pinned('a')), false).await.expect("a pinned CronJob");
    denied(
        strategic::<CronJob>(&pat, ns, "nightly", set_image("CronJob", &pinned('b'), None)).await,
        &[&format!("kubectl patch cronjobs nightly -n {ns}"), CHANGE_ONLY_BY_PROMOTION[0], APPROVE],
    );
    let promoted = strategic::<CronJob>(&tidegate, ns, "nightly", set_image("CronJob", &pinned('b'), None))
        .await
        .expect("Tidegate changes the CronJob");
    assert_eq!(cronjob_image(&promoted), pinned('b'));
    let glass = json!({BREAK_GLASS: "nightly export broken, OPS-12"});
    let broken = strategic::<CronJob>(&pat, ns, "nightly", set_image("CronJob", &pinned('c'), Some(glass.clone())))
        .await
        .expect("break glass on a CronJob");
    assert_eq!(annotation(&broken.metadata, BREAK_GLASS_BY).as_deref(), Some("pat"));
    denied(
        strategic::<CronJob>(&pat, ns, "nightly", set_image("CronJob", &pinned('d'), None)).await,
        &["was already used"],
    );

    // Pod.
    denied(create::<Pod>(&pat, ns, pod("single", TAG), false).await, &[&format!("Pod {ns}/single"), TAG]);
    create::<Pod>(&pat, ns, pod("single", &pinned('a')), false).await.expect("a pinned Pod");
    denied(
        strategic::<Pod>(&pat, ns, "single", set_image("Pod", &pinned('b'), None)).await,
        &[&format!("kubectl patch pods single -n {ns}"), CHANGE_ONLY_BY_PROMOTION[0]],
    );
    let promoted = strategic::<Pod>(&tidegate, ns, "single", set_image("Pod", &pinned('b'), None))
        .await
        .expect("Tidegate changes the Pod's image");
    assert_eq!(pod_image(&promoted), pinned('b'));
    let broken = strategic::<Pod>(&pat, ns, "single", set_image("Pod", &pinned('c'), Some(glass)))
        .await
        .expect("break glass on a Pod");
    assert_eq!(pod_image(&broken), pinned('c'));
    assert_eq!(annotation(&broken.metadata, BREAK_GLASS_BY).as_deref(), Some("pat"));
    denied(
        strategic::<Pod>(&pat, ns, "single", json!({"metadata": {"annotations": {BREAK_GLASS_BY: "tidegate"}}})).await,
        &["tidegate.dev/break-glass-by is recorded by the API server"],
    );
    strategic::<Pod>(&pat, ns, "single", json!({"metadata": {"labels": {"debug": "yes"}}}))
        .await
        .expect("a label on a Pod");
    assert_eq!(pod_image(&get(&admin, ns, "single").await), pinned('c'));
    assert_eq!(cronjob_image(&get(&admin, ns, "nightly").await), pinned('c'));
}
