//! The demo on the real node: the controller image `cargo xtask image` builds, installed with the
//! Helm chart, runs as Pods on a real node (kubelet, containerd, runc) next to the kwok nodes; the
//! shop's Deployments run the app for real, and the staging check calls the staging Service by
//! its cluster name. Chosen when this machine can run the real node (root, and not
//! `TIDEGATE_REAL_NODE=0`) and helm is built, unless `--local`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tidegate_testenv::pki::CodeSigningFiles;
use tidegate_testenv::real_node::{REAL_NODE_LABEL, REAL_NODE_TAINT, RealNode, RealNodeOptions};
use tidegate_testenv::registry::Registry;
use tidegate_testenv::{TestEnv, apply, helm_tool};

/// The claim the chart mounts as Trivy's cache (`trivy.cache.existingClaim`).
const TRIVY_CLAIM: &str = "tidegate-trivy-cache";

/// Whether the demo can run on the real node here: the node's preconditions hold and helm is
/// built.
pub fn available() -> bool {
    tidegate_testenv::real_node::available() && helm_tool::locate().is_ok()
}

/// The real node, and the name of the registry that the host and the Pods share.
pub struct OnNode {
    node: RealNode,
    /// `10.0.1.1:<port>`: the loopback registry as the node's containerd and the Pods reach it.
    pub registry_host: String,
}

impl OnNode {
    /// Starts the real node in `env`, with the API server and `registry` reachable from Pods.
    pub async fn start(env: &TestEnv, registry: &Registry) -> Result<Self> {
        let mut node = RealNode::start(env, &RealNodeOptions::default()).await.context("starting the real node")?;
        node.expose_api_server(env).context("serving the API server to Pods")?;
        let registry_host = node.expose_registry(registry).context("serving the registry to Pods")?;
        Ok(Self { node, registry_host })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// Builds and pushes the controller image, then installs the chart into `tidegate-system`
    /// with the Notary Project key and trust policy of `identity`, and Trivy's database from
    /// `trivy_cache` (a hostPath volume: the node is this machine). Returns the image reference.
    pub async fn install(
        &self,
        env: &TestEnv,
        client: &kube::Client,
        dir: &Path,
        identity: &CodeSigningFiles,
        trivy_cache: &Path,
    ) -> Result<String> {
        let target = format!("{}/tidegate/controller:demo", self.registry_host);
        let image = crate::image::build_image(crate::image::push_plain_http(&target)).await?;
        let (repository, digest) = image.split_once('@').context("the pushed image has no digest")?;
        println!("  controller image {image}");

        open_to_the_controller(trivy_cache)?;
        let read =
            |path: &PathBuf| std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()));
        let objects = [
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tidegate-system"}}),
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "tidegate-signing", "namespace": "tidegate-system"},
                "stringData": {"tls.key": read(&identity.key)?, "tls.crt": read(&identity.chain)?}
            }),
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "tidegate-trust", "namespace": "tidegate-system"},
                "data": {"trustpolicy.json": read(&identity.trust_policy)?, "ca.pem": read(&identity.root)?}
            }),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": "tidegate-demo-trivy-cache"},
                "spec": {
                    "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteMany"],
                    "storageClassName": "", "persistentVolumeReclaimPolicy": "Retain",
                    "hostPath": {"path": trivy_cache.display().to_string(), "type": "Directory"},
                    "claimRef": {"namespace": "tidegate-system", "name": TRIVY_CLAIM}
                }
            }),
            json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": TRIVY_CLAIM, "namespace": "tidegate-system"},
                "spec": {
                    "accessModes": ["ReadWriteMany"], "storageClassName": "",
                    "volumeName": "tidegate-demo-trivy-cache", "resources": {"requests": {"storage": "2Gi"}}
                }
            }),
        ];
        for object in objects {
            apply::apply_yaml(client, &serde_json::to_string(&object)?, "tidegate-system", "tidegate-demo").await?;
        }
        println!("  Secret tidegate-signing (Notary key), ConfigMap tidegate-trust (trust policy and CA)");
        println!("  Trivy's database: {} as PersistentVolumeClaim {TRIVY_CLAIM}", trivy_cache.display());

        let values = dir.join("values.yaml");
        let placement = placement();
        std::fs::write(
            &values,
            serde_yaml::to_string(&json!({
                "image": {"repository": repository, "digest": digest},
                "registry": {"plainHttp": [self.registry_host]},
                "signing": {"keySecret": "tidegate-signing", "trustConfigMap": "tidegate-trust", "trustStoreName": "tidegate"},
                "trivy": {"enabled": true, "offline": true, "cache": {"existingClaim": TRIVY_CLAIM}},
                "nodeSelector": placement["nodeSelector"],
                "tolerations": placement["tolerations"]
            }))?,
        )?;
        let helm = helm_tool::locate()?;
        let chart = crate::root().join("charts").join("tidegate");
        let (chart, values_arg) = (chart.display().to_string(), values.display().to_string());
        let args =
            ["install", "tidegate", &chart, "-n", "tidegate-system", "-f", &values_arg, "--wait", "--timeout", "5m"];
        println!("\n$ helm {}", args.join(" "));
        let home = dir.join("helm");
        std::fs::create_dir_all(&home)?;
        let (ok, out, err) = helm_tool::run(&helm, &home, Some(&env.admin_kubeconfig_path()), &args);
        print!("{out}");
        if !ok {
            bail!("helm install failed: {err}");
        }
        Ok(image)
    }

    /// Puts the Deployments of `namespace` on the real node, running the app's server.
    pub async fn place(&self, client: &kube::Client, namespace: &str) -> Result<()> {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
        let placement = placement();
        for deployment in deployments.list(&Default::default()).await?.items {
            let name = deployment.metadata.name.clone().unwrap_or_default();
            let patch = json!({"spec": {"template": {"spec": {
                "nodeSelector": placement["nodeSelector"],
                "tolerations": placement["tolerations"],
                "containers": [{"name": "app", "args": ["serve"]}]
            }}}});
            deployments.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await?;
        }
        Ok(())
    }

    /// Stops the node and checks that it left nothing on this machine.
    pub async fn stop(self) -> Result<()> {
        let left = self.node.stop().await?;
        if !left.is_clean() {
            bail!("the real node left {left:?}");
        }
        Ok(())
    }
}

/// The real node's selector and toleration, for a Pod template.
fn placement() -> serde_json::Value {
    json!({
        "nodeSelector": {REAL_NODE_LABEL: "true"},
        "tolerations": [{"key": REAL_NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
    })
}

/// Lets the controller's user (65532) read the database in `dir` and write Trivy's layer cache
/// next to it; `trivydb` writes files only root may read. Again after every database update.
pub fn open_to_the_controller(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let mode = if path.is_dir() { 0o777 } else { 0o666 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}
