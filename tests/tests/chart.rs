//! The Helm chart `charts/tidegate`, with the real `helm` (built from `helm.sh/helm/v3` by
//! `cargo xtask tools`): it ships the same RBAC and approval policy as `deploy/`, lints clean,
//! renders a hardened controller Deployment, refuses bad values and other namespaces, installs
//! into a control plane of its own (CRDs included), upgrades without losing a Promotion, and its
//! RBAC grants the controller nothing it must not hold.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tidegate_api::{Promotion, PromotionSpec};

use tidegate_testenv::{Options, TestEnv, helm_tool};

const DIGEST: &str = "sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26";
/// The version `helm template` renders for (the local control plane's).
const KUBE: &str = tidegate_testenv::tools::KUBERNETES_VERSION;
const CONTROLLER: &str = "system:serviceaccount:tidegate-system:tidegate-controller";

fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn chart() -> String {
    repo_path("charts/tidegate").display().to_string()
}

struct Helm {
    binary: PathBuf,
    home: tempfile::TempDir,
}

impl Helm {
    fn new() -> Self {
        Self {
            binary: helm_tool::locate().expect("helm (run `cargo xtask tools`)"),
            home: tempfile::tempdir().expect("helm home"),
        }
    }

    fn run(&self, kubeconfig: Option<&Path>, args: &[&str]) -> (bool, String, String) {
        helm_tool::run(&self.binary, self.home.path(), kubeconfig, args)
    }

    /// `helm template` in tidegate-system with `sets`; the rendered objects.
    fn template(&self, sets: &[&str]) -> Vec<Value> {
        let chart = chart();
        let mut args = vec!["template", "tidegate", &chart, "-n", "tidegate-system", "--kube-version", KUBE];
        for set in sets {
            args.extend(["--set", set]);
        }
        let (ok, out, err) = self.run(None, &args);
        assert!(ok, "helm template failed: {err}");
        serde_yaml::Deserializer::from_str(&out)
            .filter_map(|doc| <Option<Value> as serde::Deserialize>::deserialize(doc).expect("rendered YAML"))
            .collect()
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The documents of a YAML file, without comment-only ones.
fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .filter_map(|doc| <Option<Value> as serde::Deserialize>::deserialize(doc).expect("YAML"))
        .collect()
}

#[test]
fn the_chart_ships_the_same_rbac_and_approval_policy_as_deploy() {
    let read = |p: &str| std::fs::read_to_string(repo_path(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        read("charts/tidegate/templates/approval-policy.yaml"),
        read("deploy/approval-policy.yaml"),
        "the chart's approval policy drifted from deploy/"
    );
    // deploy/rbac.yaml also creates the namespace, which `helm install --create-namespace` does.
    let deploy: Vec<Value> =
        documents(&read("deploy/rbac.yaml")).into_iter().filter(|d| d["kind"] != "Namespace").collect();
    assert_eq!(
        documents(&read("charts/tidegate/templates/rbac.yaml")),
        deploy,
        "the chart's RBAC drifted from deploy/"
    );
}

#[test]
fn lint_and_template_render_a_hardened_controller() {
    let helm = Helm::new();
    let (ok, out, err) = helm.run(None, &["lint", "--strict", &chart(), "--namespace", "tidegate-system"]);
    assert!(ok, "helm lint: {out}{err}");

    let objects = helm.template(&[&format!("image.digest={DIGEST}")]);
    let deployment = find(&objects, "Deployment", "tidegate-controller");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], json!(2), "two replicas with leader election");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "tidegate-controller");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["image"], json!(format!("ghcr.io/tidegate/tidegate-controller@{DIGEST}")), "by digest");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], json!(true));
    assert_eq!(security["allowPrivilegeEscalation"], json!(false));
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(
        container["resources"]["requests"]["cpu"].is_string() && container["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["readinessProbe"]["httpGet"]["path"].is_string());
    let args: Vec<&str> = container["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    assert!(args.contains(&"--trivy-binary=/usr/local/bin/trivy"), "{args:?}");
    assert!(!args.iter().any(|a| a.starts_with("--notary-key-file")), "no key without a Secret: {args:?}");
    let env: Vec<&str> = container["env"].as_array().expect("env").iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(env.contains(&"POD_NAMESPACE") && env.contains(&"POD_NAME"), "leader election identity: {env:?}");
    find(&objects, "PodDisruptionBudget", "tidegate-controller");
    find(&objects, "Service", "tidegate-controller-metrics");
    find(&objects, "NetworkPolicy", "tidegate-controller");
    find(&objects, "ClusterRole", "tidegate-controller");
    find(&objects, "ValidatingAdmissionPolicy", "tidegate-promotion-approval");
    find(&objects, "ValidatingAdmissionPolicy", "tidegate-production-images");
    assert!(!objects.iter().any(|o| o["kind"] == "ServiceMonitor"), "off by default");

    // Signing, registry credentials and the trust store are mounted from what the values name.
    let objects = helm.template(&[
        "signing.keySecret=tidegate-signing",
        "signing.trustConfigMap=tidegate-trust",
        "registry.credentialsSecret=registry",
        "registry.plainHttp[0]=registry.local:5000",
        "metrics.serviceMonitor.enabled=true",
        "productionPolicy.enabled=false",
    ]);
    let pod = &find(&objects, "Deployment", "tidegate-controller")["spec"]["template"]["spec"];
    let args: Vec<&str> =
        pod["containers"][0]["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    for expected in [
        "--notary-key-file=/etc/tidegate/signing/tls.key",
        "--trust-policy-file=/etc/tidegate/trust/trustpolicy.json",
        "--registry-credentials=/etc/tidegate/registry/.dockerconfigjson",
        "--plain-http-registry=registry.local:5000",
    ] {
        assert!(args.contains(&expected), "{expected} in {args:?}");
    }
    let trust = pod["volumes"].as_array().expect("volumes").iter().find(|v| v["name"] == "trust").expect("trust");
    assert_eq!(trust["configMap"]["items"][1]["path"], "x509/ca/tidegate/ca.pem");
    find(&objects, "ServiceMonitor", "tidegate-controller");
    assert!(!objects.iter().any(|o| o["metadata"]["name"] == "tidegate-production-images"), "switched off");
}

#[test]
fn bad_values_and_other_namespaces_are_refused() {
    let helm = Helm::new();
    for (set, expect) in [
        ("replicas=0", "replicas"),
        ("image.digest=latest", "digest"),
        ("trivy.cache.sizeLimit=lots", "sizeLimit"),
        ("extraArgs[0]=rm", "extraArgs"),
        ("unknownValue=1", "unknownValue"),
    ] {
        let (ok, _, err) = helm.run(
            None,
            &["template", "tidegate", &chart(), "-n", "tidegate-system", "--kube-version", KUBE, "--set", set],
        );
        assert!(!ok && err.contains(expect), "{set} must be refused naming {expect}: {err}");
    }
    let (ok, _, err) = helm.run(None, &["template", "tidegate", &chart(), "-n", "default", "--kube-version", KUBE]);
    assert!(!ok && err.contains("install Tidegate into namespace tidegate-system"), "{err}");
}

/// Whether `user` may `verb` `resource` (cluster-wide when `namespace` is empty).
async fn may(client: &kube::Client, user: &str, verb: &str, group: &str, resource: &str, namespace: &str) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec!["system:serviceaccounts".into(), "system:serviceaccounts:tidegate-system".into()]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                namespace: Some(namespace.into()).filter(|n: &String| !n.is_empty()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    api.create(&PostParams::default(), &review).await.expect("review").status.is_some_and(|s| s.allowed)
}

async fn deployment_image(api: &Api<Deployment>) -> Option<String> {
    api.get("tidegate-controller").await.ok()?.spec?.template.spec?.containers.first()?.image.clone()
}

#[tokio::test]
async fn installs_upgrades_and_grants_the_controller_only_what_it_needs() {
    let helm = Helm::new();
    // A control plane of its own, without Tidegate's CRDs: the chart brings them.
    let env = TestEnv::start_with(Options { nodes: 1, install_crds: false, ..Default::default() })
        .await
        .expect("environment");
    let kubeconfig = env.admin_kubeconfig_path();
    let client = env.client().await.expect("client");
    let install = [
        "install",
        "tidegate",
        &chart(),
        "-n",
        "tidegate-system",
        "--create-namespace",
        "--set",
        &format!("image.digest={DIGEST}"),
        "--wait",
        "--timeout",
        "2m",
    ];
    let (ok, out, err) = helm.run(Some(&kubeconfig), &install);
    assert!(ok, "helm install: {out}{err}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "tidegate-system");
    assert_eq!(
        deployment_image(&deployments).await.as_deref(),
        Some(format!("ghcr.io/tidegate/tidegate-controller@{DIGEST}").as_str())
    );

    // The CRDs came with the chart; a Promotion in flight is stored.
    env.create_namespace("shop").await.expect("namespace");
    let promotions: Api<Promotion> = Api::namespaced(client.clone(), "shop");
    let deadline = Instant::now() + Duration::from_secs(30);
    let promotion = Promotion::new(
        "in-flight",
        PromotionSpec {
            policy: "shop-app".into(),
            release: "shop-app-base-1".into(),
            digest: DIGEST.into(),
            workloads: None,
            // The chart's approval policy is in force: the requester names themself.
            requested_by: Some(tidegate_testenv::ADMIN_USER.into()),
        },
    );
    loop {
        match promotions.create(&PostParams::default(), &promotion).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for the CRDs: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("create a Promotion: {e}"),
        }
    }

    // What the chart's RBAC lets the controller do, asked of the API server's authorizer.
    for (verb, group, resource, namespace, allowed) in [
        ("list", "", "secrets", "", false),
        ("get", "", "secrets", "shop", false),
        ("approve", "tidegate.dev", "promotions", "shop", false),
        ("update", "rbac.authorization.k8s.io", "clusterroles", "", false),
        ("escalate", "rbac.authorization.k8s.io", "clusterroles", "", false),
        ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", false),
        ("patch", "apps", "deployments", "shop", false),
        ("update", "tidegate.dev", "promotions/status", "shop", true),
        ("update", "coordination.k8s.io", "leases", "tidegate-system", true),
        ("update", "coordination.k8s.io", "leases", "kube-system", false),
    ] {
        assert_eq!(
            may(&client, CONTROLLER, verb, group, resource, namespace).await,
            allowed,
            "{verb} {resource}.{group} in {namespace:?}"
        );
    }

    // An upgrade to another image rolls the controller and keeps the Promotion.
    let other = "sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";
    let mut upgrade = install.to_vec();
    upgrade[0] = "upgrade";
    let set = format!("image.digest={other}");
    upgrade[7] = &set;
    upgrade.retain(|a| *a != "--create-namespace");
    let (ok, out, err) = helm.run(Some(&kubeconfig), &upgrade);
    assert!(ok, "helm upgrade: {out}{err}");
    assert_eq!(
        deployment_image(&deployments).await.as_deref(),
        Some(format!("ghcr.io/tidegate/tidegate-controller@{other}").as_str())
    );
    assert!(promotions.get("in-flight").await.is_ok(), "the upgrade keeps Promotions");
    let (ok, out, _) = helm.run(Some(&kubeconfig), &["history", "tidegate", "-n", "tidegate-system"]);
    assert!(ok && out.contains("Upgrade complete"), "{out}");
}
