//! Connecting like kubectl (kubeconfig, context, namespace), finding out who the caller is,
//! turning API errors into one actionable line, and patching a Promotion's annotations with
//! optimistic concurrency.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Config;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::de::DeserializeOwned;
use tidegate_api::Promotion;

use crate::cli::GlobalArgs;
use crate::summary::Lookup;

/// Field manager recorded on every change the plugin makes.
pub const FIELD_MANAGER: &str = "kubectl-tidegate";

/// How many times an annotation patch is retried after a `409 Conflict`.
pub const MAX_ATTEMPTS: usize = 5;

/// A client bound to the namespace the command works in.
#[derive(Clone)]
pub struct Session {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// The namespace of the objects the command reads and changes.
    pub namespace: String,
    /// The API server URL, for error messages.
    pub server: String,
}

impl Session {
    /// Connects as kubectl would: `--kubeconfig`, else `$KUBECONFIG`, else `~/.kube/config`,
    /// else the in-cluster service account; `--context`, else the current context; `-n`, else the
    /// context's namespace, else `default`.
    pub async fn connect(global: &GlobalArgs) -> anyhow::Result<Self> {
        let options = KubeConfigOptions { context: global.context.clone(), cluster: None, user: None };
        let config = match &global.kubeconfig {
            Some(path) => {
                // The error names the file already.
                let kubeconfig = Kubeconfig::read_from(path)?;
                from_kubeconfig(kubeconfig, &options).await?
            }
            None => match Kubeconfig::read() {
                Ok(kubeconfig) => from_kubeconfig(kubeconfig, &options).await?,
                Err(error) if global.context.is_none() => Config::incluster().map_err(|_| {
                    anyhow!("no kubeconfig found ({error}) and not running in a cluster; set KUBECONFIG or pass --kubeconfig")
                })?,
                Err(error) => bail!("cannot read kubeconfig for --context: {error}; set KUBECONFIG or pass --kubeconfig"),
            },
        };
        let namespace = global.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).context("cannot build a Kubernetes client from the kubeconfig")?;
        Ok(Self { client, namespace, server })
    }

    /// An API for a namespaced kind in the session's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// `namespace/name`, the way messages name an object.
    pub fn qualified(&self, name: &str) -> String {
        format!("{}/{name}", self.namespace)
    }

    /// Reads one object; `what` names it in errors ("promotion shop/x").
    pub async fn get<K>(&self, name: &str, what: &str) -> anyhow::Result<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.api::<K>().get(name).await.map_err(|e| self.explain(e, what))
    }

    /// Reads one object, `None` when it does not exist.
    pub async fn get_opt<K>(&self, name: &str, what: &str) -> anyhow::Result<Option<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.api::<K>().get_opt(name).await.map_err(|e| self.explain(e, what))
    }

    /// Reads one object for a summary: missing and unreadable (forbidden, unreachable) are
    /// answers to show, not errors.
    pub async fn lookup<K>(&self, name: &str, what: &str) -> Lookup<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        match self.api::<K>().get_opt(name).await {
            Ok(Some(object)) => Lookup::Found(object),
            Ok(None) => Lookup::Missing,
            Err(error) => Lookup::Unreadable(crate::render::error_line(&self.explain(error, what))),
        }
    }

    /// Lists every object of a kind in the namespace; `what` names them in errors.
    pub async fn list<K>(&self, what: &str) -> anyhow::Result<Vec<K>>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        Ok(self.api::<K>().list(&ListParams::default()).await.map_err(|e| self.explain(e, what))?.items)
    }

    /// The caller's user name as the API server authenticated it.
    pub async fn whoami(&self) -> anyhow::Result<String> {
        let reviews: Api<SelfSubjectReview> = Api::all(self.client.clone());
        let review = reviews
            .create(&PostParams::default(), &SelfSubjectReview::default())
            .await
            .map_err(|e| self.explain(e, "your identity (SelfSubjectReview)"))?;
        review.status.and_then(|s| s.user_info).and_then(|u| u.username).filter(|u| !u.is_empty()).ok_or_else(|| {
            anyhow!("the API server at {} did not say who you are (empty SelfSubjectReview)", self.server)
        })
    }

    /// Turns a client error into one actionable line. Denials (RBAC, admission) keep the
    /// server's message verbatim, because it names the user, the verb and the policy.
    pub fn explain(&self, error: kube::Error, what: &str) -> anyhow::Error {
        match error {
            kube::Error::Api(status) => {
                let message = status.message.trim();
                match status.code {
                    404 if message.contains("could not find the requested resource") => anyhow!(
                        "{what}: the API server at {} does not serve this resource; are the Tidegate CRDs installed?",
                        self.server
                    ),
                    404 => anyhow!("{what} not found"),
                    401 => anyhow!(
                        "the API server at {} did not accept your credentials (401 Unauthorized); check --kubeconfig and --context",
                        self.server
                    ),
                    _ if message.is_empty() => {
                        anyhow!("{what}: the API server answered {} {}", status.code, status.reason)
                    }
                    _ => anyhow!("{message}"),
                }
            }
            other => {
                anyhow::Error::new(other).context(format!("cannot reach the API server at {} for {what}", self.server))
            }
        }
    }
}

async fn from_kubeconfig(kubeconfig: Kubeconfig, options: &KubeConfigOptions) -> anyhow::Result<Config> {
    Config::from_custom_kubeconfig(kubeconfig, options).await.context("invalid kubeconfig")
}

/// What a command decided after reading the current Promotion.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<T> {
    /// Set these annotations (in one merge patch bound to the read `resourceVersion`), then
    /// report `outcome`.
    Patch {
        /// Annotations to set.
        annotations: BTreeMap<String, String>,
        /// What to report once the patch is accepted.
        outcome: T,
    },
    /// Nothing to change; report this.
    Stop(T),
}

/// Reads a Promotion, lets `decide` plan the change, and applies it as a JSON merge patch that
/// carries `metadata.resourceVersion`, so a concurrent change makes the server answer `409
/// Conflict` instead of losing one of the two. A conflict re-reads and decides again, up to
/// [`MAX_ATTEMPTS`] times.
pub async fn update_promotion<T>(
    session: &Session,
    name: &str,
    mut decide: impl FnMut(&Promotion) -> anyhow::Result<Step<T>>,
) -> anyhow::Result<T> {
    let what = format!("promotion {}", session.qualified(name));
    let api = session.api::<Promotion>();
    for _ in 0..MAX_ATTEMPTS {
        let promotion = api.get(name).await.map_err(|e| session.explain(e, &what))?;
        let (annotations, outcome) = match decide(&promotion)? {
            Step::Stop(outcome) => return Ok(outcome),
            Step::Patch { annotations, outcome } => (annotations, outcome),
        };
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": promotion.metadata.resource_version,
                "annotations": annotations,
            }
        });
        match api
            .patch(
                name,
                &PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() },
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => return Ok(outcome),
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => return Err(session.explain(error, &what)),
        }
    }
    bail!("{what} kept changing while it was being updated ({MAX_ATTEMPTS} conflicts in a row); try again")
}
