//! What `cargo xtask bench scale` sets up before it measures: the images in the loopback
//! registry (one shared base, one application per policy built on it), the namespaces that opt
//! in, a staging and a production Deployment per policy on kwok's nodes, and the ImagePolicies.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use tidegate_api::ImagePolicy;
use tidegate_testenv::registry::Registry;
use tidegate_testenv::scanner_tools::{ImageOs, file_layer, package_image_layers};
use tidegate_testenv::{TestEnv, apply};

use crate::demo::base_packages;

/// The shared base image's repository and tag.
pub(crate) const BASE_REPO: &str = "base/runtime";
pub(crate) const BASE_TAG: &str = "3.20";
/// Label on every Deployment the bench creates; its value is `staging` or `production`.
pub(crate) const ROLE_LABEL: &str = "bench.tidegate.dev/role";
/// How many uploads and API creates run at once while setting up.
const PARALLEL: usize = 8;

/// One policy: its namespace, its name (also its Deployments' name), its staging namespace.
#[derive(Clone, Debug)]
pub(crate) struct Slot {
    pub(crate) namespace: String,
    pub(crate) staging: String,
    pub(crate) name: String,
}

impl Slot {
    /// `namespace/name`, the key the measurements use for the policy and its production
    /// Deployment.
    pub(crate) fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The policies for `n`, `per_namespace` to a namespace: `bench-00/app-0` … with staging in
/// `bench-00-staging`.
pub(crate) fn slots(n: usize, per_namespace: usize) -> Vec<Slot> {
    (0..n)
        .map(|i| {
            let namespace = format!("bench-{:02}", i / per_namespace.max(1));
            Slot { staging: format!("{namespace}-staging"), namespace, name: format!("app-{i}") }
        })
        .collect()
}

/// kwok nodes for `n` policies: two Pods per policy, room for surges, at most 110 Pods a node.
pub(crate) fn nodes_for(n: usize) -> usize {
    (3 * n).div_ceil(100).max(1) + 1
}

/// The base repository of base `k` of `bases`: `base/runtime` when all share one, else
/// `base/runtime-<k>`.
pub(crate) fn base_repo(k: usize, bases: usize) -> String {
    if bases <= 1 { BASE_REPO.to_string() } else { format!("{BASE_REPO}-{k}") }
}

/// Which of `bases` bases the policy in slot `i` is built on and watches.
pub(crate) fn base_of(i: usize, bases: usize) -> usize {
    i % bases.max(1)
}

/// The registry's images: base v1 of each of `bases` bases and one application per slot built on
/// its base (its own small layer on top, the base's name and digest in its annotations). Returns
/// each base's v1 digest and each application's pinned reference, in slot order.
pub(crate) async fn push_images(
    registry: &Registry,
    slots: &[Slot],
    bases: usize,
) -> Result<(Vec<String>, Vec<String>)> {
    let host = registry.host().to_string();
    let client = registry.client();
    let layers = base_layers("3.1.0-r0");
    let mut old_bases = Vec::new();
    for k in 0..bases.max(1) {
        let repo = base_repo(k, bases);
        old_bases.push(
            client.push_layered(&repo, BASE_TAG, &layers, &[]).await.with_context(|| format!("pushing {repo} v1"))?,
        );
    }
    let apps: Vec<String> = futures::stream::iter(slots.iter().enumerate().map(|(i, slot)| {
        let k = base_of(i, bases);
        let (client, base, base_ref, old_base, host) =
            (client.clone(), layers.clone(), base_ref(&host, k, bases), old_bases[k].clone(), host.clone());
        async move {
            let repo = format!("bench/{}", slot.name);
            let mut layers = base;
            layers.push(file_layer(&format!("app/{}", slot.name), format!("{} {}", slot.key(), repo).as_bytes()));
            let annotations = [
                ("org.opencontainers.image.base.name", base_ref.as_str()),
                ("org.opencontainers.image.base.digest", old_base.as_str()),
            ];
            let digest = client
                .push_layered(&repo, "1.0", &layers, &annotations)
                .await
                .with_context(|| format!("pushing {repo}:1.0"))?;
            anyhow::Ok(format!("{host}/{repo}@{digest}"))
        }
    }))
    .buffered(PARALLEL)
    .try_collect()
    .await?;
    Ok((old_bases, apps))
}

/// `host/base/runtime:3.20` (base `k` of `bases`: see [`base_repo`]).
pub(crate) fn base_ref(host: &str, k: usize, bases: usize) -> String {
    format!("{host}/{}:{BASE_TAG}", base_repo(k, bases))
}

/// An Alpine base whose package database lists openssl at `openssl` (the demo's packages).
pub(crate) fn base_layers(openssl: &str) -> Vec<Vec<u8>> {
    package_image_layers(&ImageOs::alpine(), &base_packages(openssl))
}

/// Namespaces (opting in to Tidegate's deployer), the Deployments running `apps`, and one
/// ImagePolicy per slot; then waits until every Deployment is available.
pub(crate) async fn create_workloads(
    env: &TestEnv,
    client: &kube::Client,
    slots: &[Slot],
    apps: &[String],
    host: &str,
    trigger: &BaseTrigger,
) -> Result<()> {
    let mut namespaces: Vec<(String, String)> =
        slots.iter().map(|s| (s.namespace.clone(), s.staging.clone())).collect();
    namespaces.dedup();
    for (production, staging) in &namespaces {
        env.create_namespace(production).await.with_context(|| format!("creating namespace {production}"))?;
        env.create_namespace(staging).await.with_context(|| format!("creating namespace {staging}"))?;
        // The namespace owners let the policies of `production` act in both (docs/examples).
        let yaml = format!(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: tidegate-deployer, namespace: {production}}}\n---\n{}---\n{}",
            binding(production, production),
            binding(staging, production)
        );
        apply::apply_yaml(client, &yaml, production, "tidegate-bench").await?;
    }
    let deployments = slots.iter().zip(apps).flat_map(|(slot, image)| {
        [
            (slot.staging.clone(), "staging", slot.name.clone(), image.clone()),
            (slot.namespace.clone(), "production", slot.name.clone(), image.clone()),
        ]
    });
    futures::stream::iter(deployments.map(|(ns, role, name, image)| {
        let client = client.clone();
        async move {
            let deployment: Deployment = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "labels": {ROLE_LABEL: role}},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/name": name}},
                        "spec": {"containers": [{"name": "app", "image": image, "args": ["consume"]}]}
                    }
                }
            }))?;
            Api::<Deployment>::namespaced(client, &ns)
                .create(&PostParams::default(), &deployment)
                .await
                .with_context(|| format!("creating Deployment {ns}/{name}"))?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(PARALLEL)
    .try_collect::<Vec<()>>()
    .await?;

    futures::stream::iter(slots.iter().enumerate().map(|(i, slot)| {
        let client = client.clone();
        let base_ref = base_ref(host, base_of(i, trigger.bases), trigger.bases);
        async move {
            let policy: ImagePolicy = serde_json::from_value(policy(slot, host, &base_ref, &trigger.interval))?;
            Api::<ImagePolicy>::namespaced(client, &slot.namespace)
                .create(&PostParams::default(), &policy)
                .await
                .with_context(|| format!("creating ImagePolicy {}", slot.key()))?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(PARALLEL)
    .try_collect::<Vec<()>>()
    .await?;

    let all: Api<Deployment> = Api::all(client.clone());
    let selector = ListParams::default().labels(ROLE_LABEL);
    let deadline = Instant::now() + Duration::from_secs(120 + slots.len() as u64);
    loop {
        let list = all.list(&selector).await?;
        let ready = list.items.iter().filter(|d| tidegate_testenv::workloads::deployment_available(d)).count();
        if ready == 2 * slots.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {} Deployments became available on the kwok nodes", 2 * slots.len());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn binding(namespace: &str, policies: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: tidegate-deployer-from-{policies}, namespace: {namespace}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tidegate-deployer}}\nsubjects:\n- {{kind: ServiceAccount, name: tidegate-deployer, namespace: {policies}}}\n"
    )
}

/// How the policies watch their bases: how many bases they share, and the trigger's interval.
#[derive(Clone, Debug)]
pub(crate) struct BaseTrigger {
    pub(crate) bases: usize,
    pub(crate) interval: String,
}

/// The ImagePolicy of a slot: rebase onto its base (watched every `interval`), Trivy, one worker
/// workload (staging and production Deployment, strategy `replace`), no staging tests, the
/// shortest monitor window.
pub(crate) fn policy(slot: &Slot, host: &str, base_ref: &str, interval: &str) -> serde_json::Value {
    let target = |ns: &str| json!({"kubernetes": {"kind": "Deployment", "namespace": ns, "name": slot.name, "container": "app"}});
    json!({
        "apiVersion": "tidegate.dev/v1alpha1",
        "kind": "ImagePolicy",
        "metadata": {"name": slot.name, "namespace": slot.namespace},
        "spec": {
            "image": format!("{host}/bench/{}", slot.name),
            "triggers": {"baseImage": {"ref": base_ref, "interval": interval}},
            "build": {"strategy": "rebase"},
            "scan": {"scanner": "trivy"},
            "workloads": [{
                "name": "app",
                "kind": "worker",
                "staging": target(&slot.staging),
                "production": target(&slot.namespace),
                "strategy": {"type": "replace"}
            }],
            "promotion": {"monitorWindow": "1m"}
        }
    })
}

/// The namespaces of a layout, production and staging.
#[cfg(test)]
fn namespace_names(slots: &[Slot]) -> Vec<String> {
    let mut names: Vec<String> = slots.iter().flat_map(|s| [s.namespace.clone(), s.staging.clone()]).collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_policies_to_a_namespace() {
        let slots = slots(25, 10);
        assert_eq!(slots.len(), 25);
        assert_eq!(slots[0].key(), "bench-00/app-0");
        assert_eq!(slots[9].namespace, "bench-00");
        assert_eq!(slots[10].key(), "bench-01/app-10");
        assert_eq!(slots[24].staging, "bench-02-staging");
        assert_eq!(namespace_names(&slots).len(), 6);
    }

    #[test]
    fn enough_kwok_nodes_for_two_pods_a_policy_and_surges() {
        for n in [1, 10, 50, 100, 200, 1000] {
            assert!(nodes_for(n) * 110 >= 3 * n, "{n} policies on {} nodes", nodes_for(n));
        }
        assert_eq!(nodes_for(10), 2);
    }

    #[test]
    fn policies_are_valid_image_policies() {
        let slot = &slots(1, 10)[0];
        let value = policy(slot, "127.0.0.1:5000", "127.0.0.1:5000/base/runtime:3.20", "15m");
        let policy: ImagePolicy = serde_json::from_value(value).unwrap();
        assert_eq!(policy.spec.image, "127.0.0.1:5000/bench/app-0");
        assert_eq!(
            policy.spec.workloads[0].production.kubernetes.as_ref().unwrap().namespace.as_deref(),
            Some("bench-00")
        );
        assert_eq!(
            policy.spec.workloads[0].staging.kubernetes.as_ref().unwrap().namespace.as_deref(),
            Some("bench-00-staging")
        );
        assert!(policy.spec.tests.http.is_empty() && policy.spec.tests.job.is_none());
    }

    #[test]
    fn policies_share_their_bases_round_robin() {
        assert_eq!(base_ref("r:5000", 0, 1), "r:5000/base/runtime:3.20");
        assert_eq!(base_ref("r:5000", 3, 10), "r:5000/base/runtime-3:3.20");
        let uses: Vec<usize> = (0..25).map(|i| base_of(i, 10)).collect();
        assert_eq!(uses.iter().filter(|&&k| k == 0).count(), 3);
        assert_eq!(uses.iter().filter(|&&k| k == 9).count(), 2);
        assert!((0..5).all(|i| base_of(i, 1) == 0));
    }
}
