//! The `trivyOperator` scanner against a real API server with the Trivy Operator's own
//! `VulnerabilityReport` CRD: reports are written as the operator writes them (from the shared
//! fixture), and read the way the controller reads them, impersonating the policy namespace's
//! deployer with only the controller's shipped rights (ClusterRole `tidegate-controller`).

use std::path::PathBuf;
use std::sync::Arc;

use kube::api::{Api, DynamicObject, ListParams, PostParams};
use tidegate_core::Digest;
use tidegate_providers::authz::Reach;
use tidegate_providers::trivy_operator::{OperatorScanner, api_resource};
use tidegate_providers::{ProviderError, ScanReport, ScanRequest, Scanner};
use tidegate_testenv::{apply, shared};

mod shipped_rbac;

/// The user the controller runs as, bound to the shipped ClusterRole `tidegate-controller`.
const CONTROLLER_USER: &str = "trivy-operator-test-controller";
const REPOSITORY: &str = "shop/app";
const SERVER: &str = "registry.example.com";

fn digest(fill: char) -> Digest {
    format!("sha256:{}", fill.to_string().repeat(64)).parse().expect("digest")
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now().round(jiff::Unit::Second).expect("round")
}

/// A cluster with the shipped RBAC, a policy namespace with its deployer, and workload namespaces.
struct Cluster {
    admin: kube::Client,
    scanner: OperatorScanner,
    policy: String,
}

impl Cluster {
    /// Installs deploy/rbac.yaml and the controller's identity, and creates the policy namespace
    /// `<name>` with its deployer ServiceAccount.
    async fn new(name: &str) -> Self {
        let env = shared().expect("environment starts");
        let admin = shipped_rbac::install(env, CONTROLLER_USER, "trivy-operator-test").await;
        env.create_namespace(name).await.expect("policy namespace");
        let deployer =
            format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: tidegate-deployer, namespace: {name}}}\n");
        apply::apply_yaml(&admin, &deployer, name, "trivy-operator-test").await.expect("deployer");
        let reach = Arc::new(Reach::new(shipped_rbac::config(env, CONTROLLER_USER).await, "trivy-operator-test"));
        Self { admin, scanner: OperatorScanner::new(reach), policy: name.to_string() }
    }

    /// A workload namespace; its owner binds ClusterRoles `tidegate-deployer` and
    /// `tidegate-vulnerability-reports` to the policy namespace's deployer there when `bind`.
    async fn workloads(&self, namespace: &str, bind: bool) {
        shared().expect("environment").create_namespace(namespace).await.expect("workload namespace");
        if bind {
            let binding = format!(
                r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: tidegate-deployer-from-{policy}, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-deployer}}
subjects:
- {{kind: ServiceAccount, name: tidegate-deployer, namespace: {policy}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: tidegate-vulnerability-reports-from-{policy}, namespace: {namespace}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-vulnerability-reports}}
subjects:
- {{kind: ServiceAccount, name: tidegate-deployer, namespace: {policy}}}
"#,
                policy = self.policy
            );
            apply::apply_yaml(&self.admin, &binding, namespace, "trivy-operator-test")
                .await
                .expect("bind the deployer");
        }
    }

    /// Writes, as the operator would, a report of `repository@digest` updated at `updated`,
    /// whose findings are the fixture's with the first one's id replaced by `id`.
    async fn report(
        &self,
        namespace: &str,
        name: &str,
        repository: &str,
        digest: &Digest,
        updated: jiff::Timestamp,
        id: &str,
    ) {
        let mut value = fixture();
        let metadata = value["metadata"].as_object_mut().expect("metadata");
        for generated in ["creationTimestamp", "uid", "generation", "ownerReferences"] {
            // Without a real ReplicaSet, an owner reference would have the garbage collector
            // delete the report.
            metadata.remove(generated);
        }
        value["metadata"]["name"] = name.into();
        value["metadata"]["namespace"] = namespace.into();
        let report = &mut value["report"];
        report["artifact"] = serde_json::json!({"repository": repository, "tag": "1.0", "digest": digest.as_str()});
        report["registry"] = serde_json::json!({"server": SERVER});
        report["os"] = serde_json::json!({"family": "alpine", "name": "3.20.3"});
        report["updateTimestamp"] = updated.to_string().into();
        let vulnerabilities = report["vulnerabilities"].as_array_mut().expect("vulnerabilities");
        for v in vulnerabilities.iter_mut() {
            // Required by the operator's CRD; the fixture predates them.
            v["lastModifiedDate"] = "2022-01-01T00:00:00Z".into();
            v["publishedDate"] = "2021-01-01T00:00:00Z".into();
        }
        vulnerabilities[0]["vulnerabilityID"] = id.into();
        let object: DynamicObject = serde_json::from_value(value).expect("report object");
        let api: Api<DynamicObject> = Api::namespaced_with(self.admin.clone(), namespace, &api_resource());
        api.create(&PostParams::default(), &object).await.expect("create the VulnerabilityReport");
    }

    /// What the scanner finds for `repository@digest` running in `namespaces`.
    async fn scan(
        &self,
        digest: &Digest,
        namespaces: &[&str],
        max_age: jiff::SignedDuration,
    ) -> Result<Option<ScanReport>, ProviderError> {
        let image = format!("{SERVER}/{REPOSITORY}@{digest}");
        let namespaces: Vec<String> = namespaces.iter().map(|n| n.to_string()).collect();
        let request = ScanRequest {
            namespace: &self.policy,
            image: &image,
            digest,
            workload_namespaces: &namespaces,
            max_age,
            now: jiff::Timestamp::now(),
            deadline: None,
        };
        self.scanner.scan(&request).await
    }
}

/// The operator's report in the shared fixtures, as JSON.
fn fixture() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/scanners/trivy-operator/vulnerability-ttl.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture yaml")
}

fn ids(report: &ScanReport) -> Vec<&str> {
    report.findings.iter().map(|f| f.id.as_str()).collect()
}

const HOUR: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

#[tokio::test]
async fn the_newest_fresh_report_of_the_running_digest_gives_its_findings() {
    let c = Cluster::new("op-fresh").await;
    let (a, b) = ("op-fresh-prod-a", "op-fresh-prod-b");
    c.workloads(a, true).await;
    c.workloads(b, true).await;
    let running = digest('a');
    let start = now();
    let minutes = |m: i64| start - jiff::SignedDuration::from_mins(m);
    c.report(a, "replicaset-app-1-app", REPOSITORY, &running, minutes(30), "CVE-OLDER").await;
    c.report(b, "replicaset-app-2-app", REPOSITORY, &running, minutes(10), "CVE-NEWEST").await;
    // Newer, but of another digest of the repository, and of another repository.
    c.report(a, "replicaset-app-3-app", REPOSITORY, &digest('b'), minutes(1), "CVE-OTHER-DIGEST").await;
    c.report(b, "replicaset-other-1-other", "shop/other", &running, minutes(1), "CVE-OTHER-REPOSITORY").await;

    let found = c.scan(&running, &[a, b], HOUR).await.expect("scan").expect("a fresh report");
    assert_eq!(found.produced_at, Some(minutes(10)));
    let ids = ids(&found);
    assert!(ids.contains(&"CVE-NEWEST") && !ids.contains(&"CVE-OLDER"), "{ids:?}");
    assert!(!ids.iter().any(|id| id.starts_with("CVE-OTHER")), "{ids:?}");
    // The fixture's findings, read through the API server as the operator wrote them.
    let protobuf = found.findings.iter().find(|f| f.id == "CVE-NEWEST").expect("CVE-NEWEST");
    assert_eq!(
        (protobuf.package.as_str(), protobuf.fixed_version.as_deref()),
        ("github.com/gogo/protobuf", Some("1.3.2"))
    );
    assert!(protobuf.source.starts_with("trivy-operator (Trivy 0.35.0"), "{}", protobuf.source);
    assert_eq!(found.findings.len(), fixture()["report"]["vulnerabilities"].as_array().map_or(0, Vec::len));

    // Only the namespaces where it runs are read.
    let only_a = c.scan(&running, &[a], HOUR).await.expect("scan").expect("the report in a");
    assert!(only_a.findings.iter().any(|f| f.id == "CVE-OLDER"));
}

#[tokio::test]
async fn stale_reports_and_reports_of_other_digests_give_nothing() {
    let c = Cluster::new("op-stale").await;
    let prod = "op-stale-prod";
    c.workloads(prod, true).await;
    let running = digest('c');
    c.report(
        prod,
        "replicaset-app-1-app",
        REPOSITORY,
        &running,
        now() - jiff::SignedDuration::from_hours(2),
        "CVE-STALE",
    )
    .await;
    c.report(prod, "replicaset-app-2-app", REPOSITORY, &digest('d'), now(), "CVE-OTHER-DIGEST").await;

    assert_eq!(c.scan(&running, &[prod], HOUR).await.expect("scan"), None, "the only report of it is two hours old");
    let found = c.scan(&running, &[prod], jiff::SignedDuration::from_hours(3)).await.expect("scan");
    assert!(found.is_some_and(|r| ids(&r).contains(&"CVE-STALE")), "a longer maximum age accepts it");
    assert_eq!(c.scan(&digest('e'), &[prod], HOUR).await.expect("scan"), None, "no report of that digest");
}

#[tokio::test]
async fn a_namespace_whose_owner_did_not_bind_the_deployer_is_refused() {
    let c = Cluster::new("op-refused").await;
    let (open, closed) = ("op-refused-open", "op-refused-closed");
    c.workloads(open, true).await;
    c.workloads(closed, false).await;
    let running = digest('f');
    c.report(closed, "replicaset-app-1-app", REPOSITORY, &running, now(), "CVE-HIDDEN").await;

    match c.scan(&running, &[open, closed], HOUR).await {
        Err(ProviderError::NotAllowed(why)) => {
            for part in [
                "ServiceAccount op-refused/tidegate-deployer",
                "namespace op-refused-closed",
                "get and list on vulnerabilityreports.aquasecurity.github.io",
            ] {
                assert!(why.contains(part), "{part:?} in {why}");
            }
        }
        other => panic!("expected NotAllowed, got {other:?}"),
    }
    assert_eq!(c.scan(&running, &[open], HOUR).await.expect("scan"), None);

    // The controller's own identity reads no reports anywhere: every read is the deployer's.
    let env = shared().expect("environment");
    let controller =
        kube::Client::try_from(shipped_rbac::config(env, CONTROLLER_USER).await).expect("controller client");
    let api: Api<DynamicObject> = Api::namespaced_with(controller, open, &api_resource());
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the controller itself listed reports: {other:?}"),
    }
}
