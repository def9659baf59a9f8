//! `cargo xtask demo`: brings the local control plane up, applies the examples and shows what a
//! person sees with kubectl.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use tidegate_testenv::{apply, tools::Tools, TestEnv};

/// Arguments of `cargo xtask demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Keep the environment running after the demo until Ctrl-C.
    #[arg(long)]
    keep: bool,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    step("Starting the local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)");
    let env = TestEnv::start().await?;
    println!("  API server {} ready after {:.1?}", env.server(), started.elapsed());
    let kubectl = Kubectl { binary: Tools::locate()?.path("kubectl"), kubeconfig: env.admin_kubeconfig_path() };
    kubectl.show(&["version"])?;
    kubectl.show(&["get", "nodes", "-o", "wide"])?;
    kubectl.show(&["get", "crds", "-o", "custom-columns=NAME:.metadata.name,ESTABLISHED:.status.conditions[?(@.type=='Established')].status"])?;

    step("Applying docs/examples: workloads in shop and shop-staging, one ImagePolicy for an http app, a worker and a scheduled job sharing one image, a hand-made Release and its Promotion");
    let client = env.client().await?;
    let examples = crate::root().join("docs").join("examples");
    for object in apply::apply_dir(&client, &examples, "default", "tidegate-demo").await? {
        println!("  applied {object}");
    }

    for object in apply::apply_dir(&client, &examples.join("manual"), "default", "tidegate-demo").await? {
        println!("  applied {object}");
    }

    step("Waiting for the Deployments to become Available on the simulated nodes");
    for ns in ["shop", "shop-staging"] {
        wait_available(&client, ns).await?;
    }
    kubectl.show(&["get", "deployments,cronjobs", "-n", "shop"])?;
    kubectl.show(&["get", "pods", "-n", "shop", "-o", "wide"])?;

    step("What Tidegate knows: policies, releases, promotions");
    kubectl.show(&["get", "imagepolicies", "-A"])?;
    kubectl.show(&["get", "releases", "-A", "-o", "wide"])?;
    kubectl.show(&["get", "promotions", "-A", "-o", "wide"])?;
    kubectl.show(&["explain", "imagepolicy.spec.workloads.strategy"])?;

    step("Admission rejects what it must: a tag in production");
    let bad = r#"{"apiVersion":"tidegate.dev/v1alpha1","kind":"Promotion","metadata":{"name":"by-tag","namespace":"shop"},"spec":{"policy":"shop-app","release":"shop-app-manual","digest":"latest"}}"#;
    kubectl.show_expect_failure(&["create", "-f", "-"], bad)?;

    println!("\nDemo finished in {:.0?}.", started.elapsed());
    if args.keep {
        println!("The environment keeps running; KUBECONFIG={}", env.admin_kubeconfig_path().display());
        println!("Press Ctrl-C to stop.");
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}

fn step(text: &str) {
    println!("\n==> {text}");
}

struct Kubectl {
    binary: std::path::PathBuf,
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd
    }

    fn show(&self, args: &[&str]) -> Result<()> {
        println!("\n$ kubectl {}", args.join(" "));
        let out = self.command(args).output().with_context(|| format!("running {}", self.binary.display()))?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            bail!("kubectl {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn show_expect_failure(&self, args: &[&str], stdin: &str) -> Result<()> {
        use std::io::Write;
        println!("\n$ kubectl {} <<< '{stdin}'", args.join(" "));
        let mut child = self
            .command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        print!("{}", String::from_utf8_lossy(&out.stderr));
        if out.status.success() {
            bail!("kubectl {} was accepted but admission should have rejected it", args.join(" "));
        }
        Ok(())
    }
}

async fn wait_available(client: &kube::Client, namespace: &str) -> Result<()> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let list = api.list(&Default::default()).await?;
        let pending: Vec<String> = list
            .items
            .iter()
            .filter(|d| !tidegate_testenv::workloads::deployment_available(d))
            .filter_map(|d| d.metadata.name.clone())
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("Deployments in {namespace} not Available after 120s: {}", pending.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
