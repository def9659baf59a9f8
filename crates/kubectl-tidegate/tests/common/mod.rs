//! Helpers for running the built `kubectl-tidegate` binary against the shared local control
//! plane as real client-certificate users.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;

use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tidegate_api::{ImagePolicy, Promotion, Release};
use tidegate_testenv::{TestEnv, apply, shared};

/// Users the tests bind to the plugin's role in every namespace.
pub const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

pub const DIGEST_A: &str = "sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc";
pub const DIGEST_B: &str = "sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26";
pub const DIGEST_C: &str = "sha256:7bde398e02aa6cd6426e4feaf3330e1d6cd0268d6667a553417a3c2b7dcd417d";

/// The rights an operator using the plugin needs: read the three kinds, patch Promotions, and
/// the custom `approve` verb.
const RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: tidegate-plugin-test
rules:
- apiGroups: [tidegate.dev]
  resources: [promotions, releases, imagepolicies]
  verbs: [get, list, watch, patch, update]
- apiGroups: [tidegate.dev]
  resources: [promotions]
  verbs: [approve]
"#;

/// One namespace of one test, with an admin client.
pub struct Ns {
    pub env: &'static TestEnv,
    pub client: kube::Client,
    pub name: String,
}

/// What a run of the binary printed.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns standard output.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        &self.stdout
    }

    /// Asserts failure with exactly one `error: ` line and returns it.
    pub fn failed(&self) -> &str {
        assert_ne!(self.code, 0, "expected failure: {self:#?}");
        assert!(self.stdout.is_empty(), "nothing on stdout on failure: {self:#?}");
        let line = self.stderr.strip_suffix('\n').unwrap_or(&self.stderr);
        assert!(!line.contains('\n'), "one line: {self:#?}");
        assert!(line.starts_with("error: "), "{self:#?}");
        line
    }
}

pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/examples")
}

/// Every document of a file under `docs/examples`, as JSON.
pub fn example_documents(file: &str) -> Vec<Value> {
    let path = examples_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// One object of a file under `docs/examples`.
pub fn example(file: &str, kind: &str, name: &str) -> Value {
    example_documents(file)
        .into_iter()
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {file}"))
}

impl Ns {
    /// Creates the namespace and lets [`USERS`] use the plugin in it.
    pub async fn new(name: &str) -> Self {
        let env = shared().expect("environment starts");
        env.create_namespace(name).await.expect("namespace");
        let client = env.client().await.expect("admin client");
        apply::apply_yaml(&client, RBAC, name, "plugin-test").await.expect("ClusterRole");
        let subjects: Vec<Value> =
            USERS.iter().map(|u| json!({"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": u})).collect();
        let binding = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tidegate-plugin-users", "namespace": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "tidegate-plugin-test"},
            "subjects": subjects,
        });
        apply::apply_yaml(&client, &binding.to_string(), name, "plugin-test").await.expect("RoleBinding");
        Self { env, client, name: name.to_string() }
    }

    /// Applies an object (JSON) in this namespace as the admin.
    pub async fn apply(&self, mut object: Value) {
        object["metadata"]["namespace"] = json!(self.name);
        // JSON is YAML.
        apply::apply_yaml(&self.client, &object.to_string(), &self.name, "plugin-test").await.expect("apply");
    }

    /// The documented ImagePolicy, renamed, with `requiredApprovals`.
    pub async fn policy(&self, name: &str, required_approvals: i32) {
        let mut policy = example("20-imagepolicy.yaml", "ImagePolicy", "shop-app");
        policy["metadata"]["name"] = json!(name);
        policy["spec"]["promotion"]["requiredApprovals"] = json!(required_approvals);
        self.apply(policy).await;
    }

    /// The documented Releases of `docs/examples/manual/release.yaml`.
    pub async fn example_releases(&self) {
        for release in example_documents("manual/release.yaml") {
            self.apply(release).await;
        }
    }

    /// A Promotion from the documented example with another name, release, digest and policy.
    pub async fn promotion(&self, name: &str, policy: &str, release: &str, digest: &str) {
        let mut promotion = example("manual/promotion.yaml", "Promotion", "shop-app-manual-1");
        promotion["metadata"]["name"] = json!(name);
        promotion["spec"]["policy"] = json!(policy);
        promotion["spec"]["release"] = json!(release);
        promotion["spec"]["digest"] = json!(digest);
        self.apply(promotion).await;
    }

    /// Merges `status` into an object's status subresource, as the controller would.
    pub async fn set_status<K>(&self, name: &str, status: Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.name);
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
            .await
            .unwrap_or_else(|e| panic!("status of {name}: {e}"));
    }

    pub async fn promotion_status(&self, name: &str, status: Value) {
        self.set_status::<Promotion>(name, status).await;
    }

    pub async fn release_status(&self, name: &str, status: Value) {
        self.set_status::<Release>(name, status).await;
    }

    pub async fn policy_status(&self, name: &str, status: Value) {
        self.set_status::<ImagePolicy>(name, status).await;
    }

    /// Marks a Release `Verified` for `digest`, scanned (nothing blocking) and tested, as the
    /// controller would.
    pub async fn verified_release(&self, name: &str, digest: &str) {
        self.release_status(
            name,
            json!({
                "phase": "Verified",
                "digest": digest,
                "image": format!("registry.example.com/shop/app@{digest}"),
                "scan": {"scanner": "trivyReport", "blocking": 0, "critical": 0, "high": 1, "medium": 2, "low": 3},
                "tests": [{"name": "health", "passed": true}],
            }),
        )
        .await;
    }

    /// Freezes a Promotion's rules as the controller does when it first sees it: the documented
    /// workloads named in `workloads`, each moved to production namespace `production`.
    pub async fn freeze(&self, promotion: &str, workloads: &[&str], production: &str, required_approvals: i32) {
        let policy = example("20-imagepolicy.yaml", "ImagePolicy", "shop-app");
        let selected: Vec<Value> = workloads
            .iter()
            .map(|name| {
                let mut w = policy["spec"]["workloads"]
                    .as_array()
                    .and_then(|all| all.iter().find(|w| w["name"] == *name))
                    .unwrap_or_else(|| panic!("no workload {name} in the example policy"))
                    .clone();
                w["production"]["kubernetes"]["namespace"] = json!(production);
                w
            })
            .collect();
        self.promotion_status(
            promotion,
            json!({
                "phase": "AwaitingApproval",
                "rules": {
                    "image": "registry.example.com/shop/app",
                    "requiredApprovals": required_approvals,
                    "approvalValidFor": "24h",
                    "monitorWindow": "10m",
                    "autoRollback": true,
                    "workloads": selected,
                    "frozenAt": "2026-01-01T10:00:00Z",
                },
            }),
        )
        .await;
    }

    /// A Promotion as the admin reads it.
    pub async fn get_promotion(&self, name: &str) -> Promotion {
        let api: Api<Promotion> = Api::namespaced(self.client.clone(), &self.name);
        api.get(name).await.unwrap_or_else(|e| panic!("promotion {name}: {e}"))
    }

    /// An annotation of a Promotion.
    pub async fn annotation(&self, promotion: &str, key: &str) -> Option<String> {
        self.get_promotion(promotion).await.metadata.annotations.and_then(|a| a.get(key).cloned())
    }

    /// Runs the plugin as `user` with `-n <this namespace>` and `args`, standard input `/dev/null`.
    pub async fn run_as(&self, user: &str, args: &[&str]) -> Run {
        let kubeconfig = kubeconfig_file(self.env, user, None);
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run_plugin(&kubeconfig, &all).await
    }

    /// Like [`Ns::run_as`], with `input` piped to standard input (a pipe, not a terminal).
    pub async fn run_piped(&self, user: &str, args: &[&str], input: &str) -> Run {
        let kubeconfig = kubeconfig_file(self.env, user, None);
        let mut command = plugin_command(&kubeconfig);
        command.args(["-n", self.name.as_str()]).args(args).stdin(Stdio::piped());
        finish(command, input).await
    }

    /// Runs the plugin as `user` on a pseudo-terminal (util-linux `script`), typing `input`.
    /// Standard output and standard error both arrive in `stdout`, with `\r\n` turned into `\n`;
    /// with `stdout_to`, the plugin's standard output goes to that file instead of the terminal.
    /// `None` when `script` cannot run here.
    pub async fn run_in_terminal(
        &self,
        user: &str,
        args: &[&str],
        input: &str,
        stdout_to: Option<&std::path::Path>,
    ) -> Option<Run> {
        let probe = tokio::process::Command::new("script").arg("--version").output().await;
        if !probe.is_ok_and(|o| o.status.success()) {
            return None;
        }
        let kubeconfig = kubeconfig_file(self.env, user, None);
        let mut words = vec![
            env!("CARGO_BIN_EXE_kubectl-tidegate").to_string(),
            "--kubeconfig".to_string(),
            kubeconfig.path().display().to_string(),
            "-n".to_string(),
            self.name.clone(),
        ];
        words.extend(args.iter().map(|a| a.to_string()));
        if let Some(path) = stdout_to {
            words.push(">".to_string());
            words.push(path.display().to_string());
        }
        let quote = |w: &String| if w == ">" { w.clone() } else { format!("'{}'", w.replace('\'', "'\\''")) };
        let line = words.iter().map(quote).collect::<Vec<_>>().join(" ");
        let mut command = tokio::process::Command::new("script");
        // -q: no banner; -e: the command's exit code; -c: the command; /dev/null: no typescript.
        command.args(["-q", "-e", "-c", &line, "/dev/null"]).env_remove("KUBECONFIG").stdin(Stdio::piped());
        let mut run = finish(command, input).await;
        run.stdout = run.stdout.replace("\r\n", "\n");
        Some(run)
    }
}

async fn finish(mut command: tokio::process::Command, input: &str) -> Run {
    use tokio::io::AsyncWriteExt as _;
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the plugin runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("write stdin");
    drop(stdin);
    let output = child.wait_with_output().await.expect("the plugin ends");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn plugin_command(kubeconfig: &tempfile::NamedTempFile) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-tidegate"));
    command.arg("--kubeconfig").arg(kubeconfig.path()).env_remove("KUBECONFIG").env_remove("NO_COLOR");
    command
}

/// A kubeconfig file for a fresh client certificate of `user`; with `namespace`, its context
/// points there.
pub fn kubeconfig_file(env: &TestEnv, user: &str, namespace: Option<&str>) -> tempfile::NamedTempFile {
    let mut yaml = env.user_kubeconfig(user, &[]).expect("user kubeconfig");
    if let Some(namespace) = namespace {
        yaml = yaml.replace("    namespace: default\n", &format!("    namespace: {namespace}\n"));
        assert!(yaml.contains(&format!("namespace: {namespace}")), "context namespace set");
    }
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(yaml.as_bytes()).expect("write kubeconfig");
    file
}

/// Runs the built binary with `--kubeconfig` and `args`, without the caller's kubectl setup.
pub async fn run_plugin(kubeconfig: &tempfile::NamedTempFile, args: &[&str]) -> Run {
    let output = plugin_command(kubeconfig).args(args).stdin(Stdio::null()).output().await.expect("the plugin runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
