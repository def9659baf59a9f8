//! Harness for controller scenarios: a namespace pair per scenario on the shared control plane,
//! the shipped RBAC and approval policy, the controller running as its own ServiceAccount,
//! approvers with real client certificates, and a loopback HTTP server for staging checks.
//!
//! The controller is the product binary `tidegate-controller` ([`Scenario::product`]), or
//! `tidegate-controller-fakes` from `tidegate-test-support` ([`Scenario::controller`],
//! [`Scenario::controller_with`]): the same controller with the HMAC signer and, on request, the
//! in-process builder, which the product does not contain.

#![allow(dead_code)]

pub mod azure;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tidegate_api::{ImagePolicy, Promotion, PromotionPhase, Release, ReleasePhase};
use tidegate_testenv::{TestEnv, apply, shared};

/// The controller's user name, as its ServiceAccount.
pub const CONTROLLER_USER: &str = "system:serviceaccount:tidegate-system:tidegate-controller";
/// The digest production runs before any promotion.
pub const BEFORE: &str = "sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";
/// The policy's repository.
pub const REPO: &str = "registry.example.com/shop/app";
/// The usual patience of a scenario step.
pub const MINUTE: Duration = Duration::from_secs(60);

/// `REPO@digest`.
pub fn pinned(digest: &str) -> String {
    format!("{REPO}@{digest}")
}

/// One isolated scenario: namespaces `<name>` (production and the Tidegate objects) and
/// `<name>-staging`.
pub struct Scenario {
    pub env: &'static TestEnv,
    pub ns: String,
    pub staging: String,
    pub admin: kube::Client,
    dir: tempfile::TempDir,
}

impl Scenario {
    pub async fn new(name: &str) -> Self {
        let env = shared().expect("environment starts");
        let admin = env.client().await.expect("admin client");
        install_shipped_manifests(&admin).await;
        let staging = format!("{name}-staging");
        env.create_namespace(name).await.expect("namespace");
        env.create_namespace(&staging).await.expect("staging namespace");
        let scenario = Self { env, ns: name.to_string(), staging, admin, dir: tempfile::tempdir().expect("temp dir") };
        // The namespace owners opt in: the policy namespace's deployer may act in both namespaces.
        scenario.opt_in(&scenario.ns.clone()).await;
        scenario.opt_in(&scenario.staging.clone()).await;
        scenario.allow_unsigned_reports().await;
        for (ns, file) in
            [(&scenario.staging, "10-staging-workloads.yaml"), (&scenario.ns, "11-production-workloads.yaml")]
        {
            let text = std::fs::read_to_string(examples().join(file)).expect("example workloads");
            let text = text
                .replace("namespace: shop-staging", &format!("namespace: {ns}"))
                .replace("namespace: shop", &format!("namespace: {ns}"));
            apply::apply_yaml(&scenario.admin, &text, ns, "scenario").await.expect("apply workloads");
        }
        scenario
    }

    /// Applies `yaml` as the admin, objects without a namespace landing in `namespace`.
    pub async fn apply(&self, yaml: &str, namespace: &str) {
        apply::apply_yaml(&self.admin, yaml, namespace, "scenario").await.expect("apply");
    }

    /// A namespace holding the example production workloads (web, worker, nightly-report) at
    /// [`BEFORE`], not opted in for anything.
    pub async fn workloads_namespace(&self, namespace: &str) {
        self.env.create_namespace(namespace).await.expect("namespace");
        let text = std::fs::read_to_string(examples().join("11-production-workloads.yaml")).expect("example workloads");
        let text = text.replace("namespace: shop", &format!("namespace: {namespace}"));
        apply::apply_yaml(&self.admin, &text, namespace, "scenario").await.expect("apply workloads");
    }

    /// Binds ClusterRole `role` to `user` in `namespace`, under binding `name`.
    pub async fn bind(&self, name: &str, role: &str, user: &str, namespace: &str) {
        let yaml = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {name}, namespace: {namespace}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
             subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
        );
        self.apply(&yaml, namespace).await;
        self.wait_until_bound(role, user, namespace).await;
    }

    /// Waits until the API server's authorizer grants `user` in `namespace` what the first rule
    /// of ClusterRole `role` allows: it sees a new binding (and an aggregated role's rules) a
    /// moment after the write, and a request sent in between is refused.
    async fn wait_until_bound(&self, role: &str, user: &str, namespace: &str) {
        use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
        use k8s_openapi::api::rbac::v1::ClusterRole;
        let roles: Api<ClusterRole> = Api::all(self.admin.clone());
        let reviews: Api<SubjectAccessReview> = Api::all(self.admin.clone());
        let concrete = |values: &Option<Vec<String>>| {
            values.iter().flatten().find(|v| v.as_str() != "*" && !v.contains('/')).cloned()
        };
        wait(&format!("{user} to hold {role} in {namespace}"), MINUTE, || async {
            let rules = roles.get(role).await.ok()?.rules.unwrap_or_default();
            let rule = rules.iter().find(|r| {
                r.resource_names.as_ref().is_none_or(Vec::is_empty)
                    && concrete(&r.resources).is_some()
                    && concrete(&Some(r.verbs.clone())).is_some()
            })?;
            let review = SubjectAccessReview {
                spec: SubjectAccessReviewSpec {
                    user: Some(user.to_string()),
                    resource_attributes: Some(ResourceAttributes {
                        namespace: Some(namespace.to_string()),
                        group: concrete(&rule.api_groups).or(Some(String::new())),
                        resource: concrete(&rule.resources),
                        verb: concrete(&Some(rule.verbs.clone())),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = reviews.create(&PostParams::default(), &review).await.ok()?;
            answer.status.is_some_and(|s| s.allowed).then_some(())
        })
        .await;
    }

    /// Deletes RoleBinding `name` in `namespace`, as the namespace's owner would.
    pub async fn admin_delete_binding(&self, namespace: &str, name: &str) {
        Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(self.admin.clone(), namespace)
            .delete(name, &Default::default())
            .await
            .expect("delete binding");
    }

    /// The condition `type_` of Promotion `name`: (status, reason, message).
    pub async fn promotion_condition(&self, name: &str, type_: &str) -> Option<(String, String, String)> {
        let promotion = self.promotions().get_opt(name).await.ok()??;
        let c = promotion.status?.conditions.into_iter().find(|c| c.type_ == type_)?;
        Some((c.status, c.reason, c.message))
    }

    /// Touches `object` of `api` with a no-op annotation, so that the controller looks at it again.
    pub async fn wake<K>(&self, api: &Api<K>, object: &str)
    where
        K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        static WAKES: AtomicU16 = AtomicU16::new(0);
        let n = WAKES.fetch_add(1, Ordering::SeqCst);
        let patch = json!({"metadata": {"annotations": {"scenario.test/wake": n.to_string()}}});
        api.patch(object, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("wake");
    }

    /// Waits until the `Approved` condition of `name` says `text`: the controller has looked at
    /// the Promotion since the change that makes it say so.
    pub async fn approval_says(&self, name: &str, text: &str) -> String {
        wait(&format!("the Approved condition of {name} to say {text:?}"), Duration::from_secs(60), || async {
            let (_, _, message) = self.promotion_condition(name, "Approved").await?;
            message.contains(text).then_some(message)
        })
        .await
    }

    /// Creates the policy namespace's `tidegate-deployer` ServiceAccount (once) and binds
    /// ClusterRole `tidegate-deployer` to it in `namespace`, as that namespace's owner would.
    pub async fn opt_in(&self, namespace: &str) {
        let yaml = format!(
            r#"
apiVersion: v1
kind: ServiceAccount
metadata: {{name: tidegate-deployer, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: tidegate-deployer-from-{ns}, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-deployer}}
subjects:
- {{kind: ServiceAccount, name: tidegate-deployer, namespace: {ns}}}
"#,
            ns = self.ns
        );
        apply::apply_yaml(&self.admin, &yaml, namespace, "scenario").await.expect("opt in");
    }

    /// The namespace administrator accepts unsigned ConfigMap scan reports in the scenario's
    /// namespace (`spec.scan.scanner: configMapReport`).
    pub async fn allow_unsigned_reports(&self) {
        let yaml = format!(
            r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: tidegate-unsigned-scan-reports, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-unsigned-scan-reports}}
subjects:
- {{kind: ServiceAccount, name: tidegate-deployer, namespace: {ns}}}
"#,
            ns = self.ns
        );
        apply::apply_yaml(&self.admin, &yaml, &self.ns, "scenario").await.expect("allow unsigned reports");
    }

    /// Withdraws [`Scenario::allow_unsigned_reports`].
    pub async fn forbid_unsigned_reports(&self) {
        let api: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(self.admin.clone(), &self.ns);
        api.delete("tidegate-unsigned-scan-reports", &Default::default()).await.expect("forbid unsigned reports");
    }

    /// Applies the example policy with `changes` merged into its spec (JSON merge patch).
    pub async fn policy(&self, changes: serde_json::Value) {
        let text = std::fs::read_to_string(examples().join("20-imagepolicy.yaml")).expect("example policy");
        let mut policy: serde_json::Value = serde_yaml::from_str(&text).expect("policy YAML");
        policy["metadata"]["namespace"] = json!(self.ns);
        for workload in policy["spec"]["workloads"].as_array_mut().expect("workloads") {
            workload["staging"]["kubernetes"]["namespace"] = json!(self.staging);
            workload["production"]["kubernetes"]["namespace"] = json!(self.ns);
        }
        // The example watches a base image on registry.example.com; scenarios never leave this
        // machine, so they trigger by hand unless they name a loopback base themselves.
        // Scenarios rescan production only when they ask for it.
        if let Some(triggers) = policy["spec"]["triggers"].as_object_mut() {
            triggers.remove("baseImage");
            triggers.remove("rescan");
        }
        // Scenarios publish unsigned reports as ConfigMaps (their namespace allows them, see
        // `Scenario::new`) unless they name another scanner.
        policy["spec"]["scan"]["scanner"] = json!("configMapReport");
        merge(&mut policy["spec"], changes);
        let api: Api<ImagePolicy> = Api::namespaced(self.admin.clone(), &self.ns);
        api.patch("shop-app", &PatchParams::apply("scenario").force(), &Patch::Apply(&policy))
            .await
            .expect("apply policy");
    }

    /// Starts the controller with test doubles for this scenario's namespace: in-process builder,
    /// HMAC signer with the scenario's key.
    pub fn controller(&self) -> ControllerProcess {
        self.controller_with(&["--builder", "in-process"])
    }

    /// Starts the controller with the HMAC signer (the scenario's key) and `args`.
    pub fn controller_with(&self, args: &[&str]) -> ControllerProcess {
        let key = self.path("signing.key");
        if !key.exists() {
            std::fs::write(&key, format!("scenario-key-{}", self.ns)).expect("write key");
        }
        let mut all = vec!["--signing-key-file".to_string(), key.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        ControllerProcess::start(self, fakes_binary().to_path_buf(), all)
    }

    /// Starts the controller with the HMAC signer, the registry builder and the real Trivy
    /// (`trivy`, offline, its database in `cache`), reaching `registry` over plain HTTP.
    pub fn controller_with_trivy(&self, trivy: &Path, cache: &Path, registry: &str) -> ControllerProcess {
        let (trivy, cache) = (trivy.display().to_string(), cache.display().to_string());
        self.controller_with(&[
            "--trivy-binary",
            &trivy,
            "--trivy-cache-dir",
            &cache,
            "--trivy-offline",
            "--plain-http-registry",
            registry,
        ])
    }

    /// Starts the product binary, exactly as shipped, with `args`.
    pub fn product(&self, args: &[&str]) -> ControllerProcess {
        self.product_with_env(args, &[])
    }

    /// Starts the product binary with `args` and these environment variables (e.g.
    /// `HTTPS_PROXY`).
    pub fn product_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> ControllerProcess {
        let args = args.iter().map(|a| a.to_string()).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ControllerProcess::start_with_env(self, PathBuf::from(env!("CARGO_BIN_EXE_tidegate-controller")), args, env)
    }

    /// Sets the image of the `web` Deployments in staging and production.
    pub async fn set_workload_images(&self, image: &str) {
        for ns in [&self.staging, &self.ns] {
            let api: Api<Deployment> = Api::namespaced(self.admin.clone(), ns);
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}});
            api.patch("web", &PatchParams::default(), &Patch::Strategic(&patch)).await.expect("set image");
        }
    }

    /// Another policy in this namespace that watches `base` (its workload does not exist).
    pub async fn extra_policy(&self, name: &str, image: &str, base: &str) {
        let policy = json!({
            "apiVersion": "tidegate.dev/v1alpha1", "kind": "ImagePolicy",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "image": image,
                "triggers": {"baseImage": {"ref": base, "interval": "1m"}},
                "scan": {"scanner": "configMapReport"},
                "workloads": [{"name": "w", "kind": "worker",
                    "staging": {"kubernetes": {"kind": "Deployment", "namespace": self.staging, "name": name}},
                    "production": {"kubernetes": {"kind": "Deployment", "namespace": self.ns, "name": name}}}]
            }
        });
        let api: Api<ImagePolicy> = Api::namespaced(self.admin.clone(), &self.ns);
        api.patch(name, &PatchParams::apply("scenario").force(), &Patch::Apply(&policy))
            .await
            .expect("apply extra policy");
    }

    /// A client for a user with real client certificates.
    pub async fn user(&self, name: &str, groups: &[&str]) -> kube::Client {
        self.env.client_for(name, groups).await.expect("user client")
    }

    /// Asks for a Release now (the manual trigger).
    pub async fn trigger(&self, token: &str) {
        let api: Api<ImagePolicy> = Api::namespaced(self.admin.clone(), &self.ns);
        let patch = json!({"metadata": {"annotations": {"tidegate.dev/trigger": token}}});
        api.patch("shop-app", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("trigger");
    }

    pub fn releases(&self) -> Api<Release> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    pub fn promotions(&self) -> Api<Promotion> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// Waits for the only Release of the scenario to reach `phase`, and returns it.
    pub async fn release_in(&self, phase: ReleasePhase, timeout: Duration) -> Release {
        let api = self.releases();
        wait(&format!("a Release in {phase:?}"), timeout, || {
            let api = api.clone();
            async move {
                let list = api.list(&Default::default()).await.ok()?;
                list.items.into_iter().find(|r| r.status.as_ref().is_some_and(|s| s.phase == phase))
            }
        })
        .await
    }

    /// Waits for the Release to have a digest and uploads a scan report for it, made now and naming
    /// the candidate (`ArtifactName`, `CreatedAt`), as `trivy image --format json` would.
    pub async fn upload_scan_report(&self, report: &str) -> String {
        let release = self.release_in(ReleasePhase::Scanning, Duration::from_secs(60)).await;
        let status = release.status.expect("status while scanning");
        let digest = status.digest.expect("digest while scanning");
        let mut report: serde_json::Value = serde_json::from_str(report).expect("report JSON");
        report["ArtifactName"] = json!(status.image.expect("image while scanning"));
        report["CreatedAt"] = json!(jiff::Timestamp::now().to_string());
        let report = report.to_string();
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {
                "name": format!("scan-{}", &digest[7..19]),
                "labels": {"tidegate.dev/scan-report": "true"},
                "annotations": {"tidegate.dev/digest": digest}
            },
            "data": {"report.json": report}
        }))
        .expect("configmap");
        Api::<ConfigMap>::namespaced(self.admin.clone(), &self.ns)
            .create(&PostParams::default(), &cm)
            .await
            .expect("upload report");
        digest
    }

    /// Waits for a Promotion in `phase`.
    pub async fn promotion_in(&self, phase: PromotionPhase, timeout: Duration) -> Promotion {
        let api = self.promotions();
        let deadline = Instant::now() + timeout;
        loop {
            let list = api.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
            if let Some(found) = list.iter().find(|p| p.status.as_ref().is_some_and(|s| s.phase == phase)) {
                return found.clone();
            }
            if Instant::now() >= deadline {
                // Say where each Promotion is and why, so a failure explains itself.
                let seen: Vec<String> = list
                    .iter()
                    .map(|p| {
                        let status = p.status.clone().unwrap_or_default();
                        let conditions: Vec<String> = status
                            .conditions
                            .iter()
                            .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                            .collect();
                        format!(
                            "{} {:?} [{}]",
                            p.metadata.name.clone().unwrap_or_default(),
                            status.phase,
                            conditions.join("; ")
                        )
                    })
                    .collect();
                panic!("timed out after {timeout:?} waiting for a Promotion in {phase:?}; promotions: {seen:#?}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Appends `user` to the approvers of `promotion`, as that user.
    pub async fn approve(&self, client: &kube::Client, promotion: &str, user: &str) -> Result<(), kube::Error> {
        let api: Api<Promotion> = Api::namespaced(client.clone(), &self.ns);
        let current = api.get(promotion).await?;
        let mut list = current
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("tidegate.dev/approved-by"))
            .map(|v| tidegate_api::approvers(v))
            .unwrap_or_default();
        list.push(user.to_string());
        let patch = json!({"metadata": {"annotations": {"tidegate.dev/approved-by": list.join(",")}}});
        api.patch(promotion, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
    }

    /// Asks for a rollback of `promotion`, as `user`.
    pub async fn request_rollback(
        &self,
        client: &kube::Client,
        promotion: &str,
        user: &str,
    ) -> Result<(), kube::Error> {
        let api: Api<Promotion> = Api::namespaced(client.clone(), &self.ns);
        let patch = json!({"metadata": {"annotations": {"tidegate.dev/rollback-requested-by": user}}});
        api.patch(promotion, &PatchParams::default(), &Patch::Merge(&patch)).await.map(drop)
    }

    /// A ConfigMap holding a test Job template that kwok completes.
    pub async fn test_job_template(&self, name: &str) {
        let job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: smoke\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: smoke\n        image: registry.example.com/tools/smoke@sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26\n        args: [\"--target=http://web\"]\n";
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": name}, "data": {"job.yaml": job}})).expect("configmap");
        Api::<ConfigMap>::namespaced(self.admin.clone(), &self.ns)
            .create(&PostParams::default(), &cm)
            .await
            .expect("test job template");
    }

    /// The image of a Deployment's first container in production.
    pub async fn deployment_image(&self, ns: &str, name: &str) -> Option<String> {
        let d = Api::<Deployment>::namespaced(self.admin.clone(), ns).get_opt(name).await.ok()??;
        d.spec?.template.spec?.containers.first()?.image.clone()
    }

    pub async fn deployment(&self, ns: &str, name: &str) -> Option<Deployment> {
        Api::<Deployment>::namespaced(self.admin.clone(), ns).get_opt(name).await.ok()?
    }

    pub async fn cronjob_image(&self, ns: &str, name: &str) -> Option<String> {
        let c = Api::<CronJob>::namespaced(self.admin.clone(), ns).get_opt(name).await.ok()??;
        c.spec.job_template.spec?.template.spec?.containers.first()?.image.clone()
    }

    pub async fn service_slot(&self, ns: &str, name: &str) -> Option<String> {
        let s = Api::<Service>::namespaced(self.admin.clone(), ns).get_opt(name).await.ok()??;
        s.spec?.selector?.get("tidegate.dev/slot").cloned()
    }

    /// Production images of the three workloads: web (live slot), worker (live slot), job.
    pub async fn production(&self) -> (Option<String>, Option<String>, Option<String>) {
        let slot = |base: &str, slot: Option<String>| {
            if slot.as_deref() == Some("green") { format!("{base}-green") } else { base.to_string() }
        };
        let web_slot = self.service_slot(&self.ns, "web").await;
        let worker = self.deployment(&self.ns, "worker").await;
        let worker_slot = worker.and_then(|d| d.metadata.annotations?.get("tidegate.dev/active-slot").cloned());
        (
            self.deployment_image(&self.ns, &slot("web", web_slot)).await,
            self.deployment_image(&self.ns, &slot("worker", worker_slot)).await,
            self.cronjob_image(&self.ns, "nightly-report").await,
        )
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The product's flags for Notary Project signing with `identity` (key, chain, trust policy and
/// trust store), and `--plain-http-registry` for each of `plain_http`.
pub fn notary_args(identity: &tidegate_testenv::pki::CodeSigningFiles, plain_http: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        ("--notary-key-file", &identity.key),
        ("--notary-cert-file", &identity.chain),
        ("--trust-policy-file", &identity.trust_policy),
        ("--trust-store-dir", &identity.trust_store),
    ]
    .iter()
    .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
    .collect();
    args.extend(plain_http.iter().flat_map(|h| ["--plain-http-registry".to_string(), h.clone()]));
    args
}

/// Applies deploy/rbac.yaml and deploy/approval-policy.yaml, and binds the approver role to
/// group `tidegate-approvers`.
async fn install_shipped_manifests(admin: &kube::Client) {
    let deploy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    apply::apply_dir(admin, &deploy, "default", "scenario").await.expect("apply deploy/");
    apply::apply_yaml(
        admin,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: scenario-approvers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-approver}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: Group, name: tidegate-approvers}
"#,
        "default",
        "scenario",
    )
    .await
    .expect("bind approvers");
    admission_policies_in_force(admin).await;
}

/// Waits until the API server enforces the just-installed admission policies: it compiles each
/// on its own, so for a moment the validating ones can be in force while the mutating one that
/// records identities is not. A dry-run create runs the whole admission chain and stores nothing.
async fn admission_policies_in_force(admin: &kube::Client) {
    let releases: Api<Release> = Api::namespaced(admin.clone(), "default");
    let probe: Release = serde_json::from_value(json!({
        "apiVersion": "tidegate.dev/v1alpha1", "kind": "Release",
        "metadata": {"name": "admission-probe", "namespace": "default"},
        "spec": {"policy": "admission-probe", "reason": {"type": "Manual"}}
    }))
    .expect("probe release");
    let params = PostParams { dry_run: true, ..Default::default() };
    wait("the admission policies to be in force", MINUTE, || async {
        let created = releases.create(&params, &probe).await.ok()?;
        created.metadata.annotations?.get(tidegate_api::ANNOTATION_CREATED_BY).map(drop)
    })
    .await;
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples")
}

fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

/// Polls `check` until it yields a value.
pub async fn wait<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `tidegate-controller-fakes`, built once per test process. Cargo builds only this package's
/// binaries for its tests, and the fakes live in `tidegate-test-support` so that the product
/// cannot contain them; `cargo build` reports where the binary is (and does nothing when it is
/// up to date). `TIDEGATE_CONTROLLER_FAKES` names a prebuilt one instead.
pub fn fakes_binary() -> &'static Path {
    static FAKES: OnceLock<PathBuf> = OnceLock::new();
    FAKES.get_or_init(|| {
        if let Some(path) = std::env::var_os("TIDEGATE_CONTROLLER_FAKES") {
            return PathBuf::from(path);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "-p", "tidegate-test-support", "--bin", "tidegate-controller-fakes"])
            .arg("--message-format=json-render-diagnostics")
            .stdin(Stdio::null())
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "building tidegate-controller-fakes failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "tidegate-controller-fakes")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the tidegate-controller-fakes executable")
    })
}

/// A controller binary, running as its ServiceAccount with the shipped least-privilege role.
pub struct ControllerProcess {
    child: Child,
    pub metrics: String,
    log: PathBuf,
    binary: PathBuf,
    kubeconfig: PathBuf,
    namespace: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

static PORT: AtomicU16 = AtomicU16::new(0);

impl ControllerProcess {
    fn start(scenario: &Scenario, binary: PathBuf, args: Vec<String>) -> Self {
        Self::start_with_env(scenario, binary, args, Vec::new())
    }

    fn start_with_env(scenario: &Scenario, binary: PathBuf, args: Vec<String>, env: Vec<(String, String)>) -> Self {
        let kubeconfig = scenario.path("controller.kubeconfig");
        if !kubeconfig.exists() {
            let yaml = scenario
                .env
                .user_kubeconfig(CONTROLLER_USER, &["system:serviceaccounts", "system:serviceaccounts:tidegate-system"])
                .expect("kubeconfig");
            std::fs::write(&kubeconfig, yaml).expect("write kubeconfig");
        }
        Self::spawn(
            binary,
            kubeconfig,
            scenario.ns.clone(),
            scenario.path(&format!("controller-{}.log", PORT.fetch_add(1, Ordering::SeqCst))),
            args,
            env,
        )
    }

    fn spawn(
        binary: PathBuf,
        kubeconfig: PathBuf,
        namespace: String,
        log: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> Self {
        let port = tidegate_testenv::free_port().expect("free port");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&binary)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--namespace", &namespace])
            .args(["--lease-name", &format!("tidegate-{namespace}")])
            .args(&args)
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        Self { child, metrics: format!("http://127.0.0.1:{port}"), log, binary, kubeconfig, namespace, args, env }
    }

    /// Whether the process has exited (it exits when it loses its lease).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills the process without warning (SIGKILL) and starts a new one with the same settings.
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.log.with_extension(format!("{}.log", PORT.fetch_add(1, Ordering::SeqCst)));
        *self = Self::spawn(
            self.binary.clone(),
            self.kubeconfig.clone(),
            self.namespace.clone(),
            log,
            self.args.clone(),
            self.env.clone(),
        );
    }

    /// The sum of the metric family `name` (for example `tidegate_status_writes_total`) whose
    /// labels contain `labels`.
    pub async fn metric(&self, name: &str, labels: &str) -> u64 {
        let text = http(&format!("{}/metrics", self.metrics), None).await;
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    /// Reconciles of `kind` run so far.
    pub async fn reconciles(&self, kind: &str) -> u64 {
        self.metric("tidegate_reconciles_total", &format!("kind=\"{kind}\"")).await
    }

    /// Waits until the controller has reconciled `kind` more than `before` times: proof that it
    /// looked, so an assertion that it did nothing means something.
    pub async fn reconciled_since(&self, kind: &str, before: u64) {
        wait(&format!("the controller to reconcile a {kind}"), MINUTE, || async {
            (self.reconciles(kind).await > before).then_some(())
        })
        .await
    }

    /// Whether the log contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log).unwrap_or_default().contains(text)
    }

    /// The lines of the log that contain every one of `parts`, without terminal colours.
    pub fn log_lines_with(&self, parts: &[&str]) -> Vec<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().map(plain).filter(|line| parts.iter().all(|part| line.contains(part))).collect()
    }

    /// The end of the log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

/// `line` without ANSI colour sequences (`ESC [ … m`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().take_while(|c| *c != 'm').for_each(drop);
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- end of the controller log ({}) ---\n{}", self.log.display(), self.log_tail());
        }
    }
}

/// A loopback HTTP server answering every request with `status`; stops with the test.
pub async fn http_server(status: u16) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 2048];
            let _ = socket.read(&mut buf).await;
            let response = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (url, hits)
}

/// A scan report with no findings.
pub const CLEAN_REPORT: &str =
    r#"{"SchemaVersion":2,"ArtifactName":"scenario","Results":[{"Target":"app","Vulnerabilities":[]}]}"#;

/// A plain HTTP/1.1 request to a loopback server: GET, or POST of a JSON `body`. Returns the whole
/// response (status line first), or an empty string when nothing listens.
pub async fn http(url: &str, body: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').expect("URL with a path");
    let Ok(mut stream) = tokio::net::TcpStream::connect(host).await else { return String::new() };
    let request = match body {
        Some(body) => format!(
            "POST /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    };
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
}
