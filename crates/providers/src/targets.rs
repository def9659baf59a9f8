//! Every kind of deploy target behind one set of calls: Kubernetes workloads, Azure Container
//! Apps and Container Apps Jobs. Reconcilers hold a [`Target`] and a [`Targets`] and never care
//! which platform is behind them.

use std::sync::Arc;

use tidegate_api::image_policy::{AzureTarget, StrategyKind};
use tidegate_core::promotion::{Health, Progress};
use tidegate_core::rollout::{Retire, RolloutPlan};

use crate::authz::Reach;
use crate::azure_targets::{AzureTargets, Role};
use crate::kubernetes::{KubernetesTargets, Live, Resolved};
use crate::{ProviderError, Result};

/// One side (staging or production) of one workload.
#[derive(Clone, Debug)]
pub enum Target<'a> {
    /// A Deployment or CronJob.
    Kubernetes(Resolved<'a>),
    /// An Azure Container App.
    ContainerApp {
        /// The target from the policy.
        target: &'a AzureTarget,
        /// What it is for.
        role: Role,
        /// The policy's namespace, whose Azure grants bound it.
        namespace: String,
    },
    /// An Azure Container Apps Job.
    ContainerAppsJob {
        /// The target from the policy.
        target: &'a AzureTarget,
        /// What it is for.
        role: Role,
        /// The policy's namespace, whose Azure grants bound it.
        namespace: String,
    },
}

impl Target<'_> {
    /// Sets the canary state of a production Container App target.
    pub fn with_canary(mut self, canary: Option<tidegate_core::container_apps::Canary>) -> Self {
        if let Target::ContainerApp { role: Role::Production { canary: slot, .. }, .. } = &mut self {
            *slot = canary;
        }
        self
    }

    /// The target, for messages.
    pub fn display(&self) -> String {
        match self {
            Target::Kubernetes(r) => r.display(),
            Target::ContainerApp { target, .. } => format!("Container App {}", target.resource_id),
            Target::ContainerAppsJob { target, .. } => format!("Container Apps Job {}", target.resource_id),
        }
    }

    /// The namespace whose approvers answer for this target: the Kubernetes object's, or the
    /// policy's for Azure targets (the namespace the operator granted the Azure scope to).
    pub fn namespace(&self) -> &str {
        match self {
            Target::Kubernetes(r) => &r.namespace,
            Target::ContainerApp { namespace, .. } | Target::ContainerAppsJob { namespace, .. } => namespace,
        }
    }

    /// Whether this is an Azure target.
    pub fn is_azure(&self) -> bool {
        !matches!(self, Target::Kubernetes(_))
    }
}

/// What reconcilers do with deploy targets. [`Targets`] is the product's; tests use in-memory
/// doubles (crate `tidegate-test-support`).
#[async_trait::async_trait]
pub trait Deploy: Send + Sync {
    /// Converges the target one step towards `image` with `plan`.
    async fn converge(&self, target: &Target<'_>, plan: &RolloutPlan, image: &str) -> Result<Progress>;
    /// The image the live version of the target runs.
    async fn current_image(&self, target: &Target<'_>, plan: &RolloutPlan) -> Result<Option<String>>;
    /// The live version of the target, for drift detection. Azure targets carry no break-glass
    /// marks: a change made in Azure shows as drift.
    async fn live(&self, target: &Target<'_>, plan: &RolloutPlan) -> Result<Live>;
    /// Health of the live version running `image`.
    async fn health(&self, target: &Target<'_>, plan: &RolloutPlan, image: &str) -> Result<Health>;
    /// Stops what was kept for rollback once the monitor window ended healthy: the previous
    /// Deployment slot (`overlap`), or a Container App's previous revisions (`blueGreen`,
    /// `overlap`).
    async fn retire_previous(&self, target: &Target<'_>, plan: &RolloutPlan) -> Result<()>;
    /// Whether the target ran `image` before, by the platform's own record (ReplicaSets and
    /// Jobs; Container App revisions; job executions).
    async fn ran_before(&self, target: &Target<'_>, image: &str) -> Result<bool>;
    /// The percentage of traffic `image` gets on a Container App target (`None` elsewhere).
    async fn traffic_weight(&self, target: &Target<'_>, image: &str) -> Result<Option<i32>>;
    /// The URL staging HTTP checks call on a Container App target (its label's URL), or `None`
    /// for other targets.
    async fn staging_url(&self, target: &Target<'_>) -> Result<Option<String>>;
}

/// Where each namespace's policies deploy, and as whom.
pub trait Deployers: Send + Sync {
    /// Deploy targets of `policy_namespace`'s policies: Kubernetes ones as its deployer, Azure
    /// ones within its granted scopes.
    fn targets(&self, policy_namespace: &str) -> Result<Arc<dyn Deploy>>;
    /// Production targets of `policy_namespace`'s policies, written for Promotion `promotion`.
    fn production_targets(&self, policy_namespace: &str, promotion: &str) -> Result<Arc<dyn Deploy>>;
}

/// The product's [`Deployers`]: Kubernetes through the namespace's deployer ([`Reach`]), Azure
/// through the controller's credential when it has one.
#[derive(Clone)]
pub struct ClusterDeployers {
    reach: Arc<Reach>,
    azure: Option<Arc<AzureTargets>>,
}

impl ClusterDeployers {
    /// Deployers acting through `reach` and, when configured, `azure`.
    pub fn new(reach: Arc<Reach>, azure: Option<Arc<AzureTargets>>) -> Self {
        Self { reach, azure }
    }
}

impl Deployers for ClusterDeployers {
    fn targets(&self, policy_namespace: &str) -> Result<Arc<dyn Deploy>> {
        Ok(Arc::new(Targets::new(self.reach.targets(policy_namespace)?, self.azure.clone())))
    }

    fn production_targets(&self, policy_namespace: &str, promotion: &str) -> Result<Arc<dyn Deploy>> {
        Ok(Arc::new(Targets::new(self.reach.production_targets(policy_namespace, promotion)?, self.azure.clone())))
    }
}

/// The deploy targets of one namespace's policies: Kubernetes ones as its deployer, Azure ones
/// through the controller's Azure credential within the namespace's granted scopes.
#[derive(Clone)]
pub struct Targets {
    kubernetes: KubernetesTargets,
    azure: Option<Arc<AzureTargets>>,
}

impl Targets {
    /// Targets acting through `kubernetes` and, when configured, `azure`.
    pub fn new(kubernetes: KubernetesTargets, azure: Option<Arc<AzureTargets>>) -> Self {
        Self { kubernetes, azure }
    }

    fn azure(
        &self,
        target: &AzureTarget,
        namespace: &str,
    ) -> Result<(&AzureTargets, crate::azure::resource_id::ResourceId)> {
        let azure = self.azure.as_deref().ok_or_else(|| {
            ProviderError::NotConfigured(format!(
                "{} is an Azure target, but this controller has no Azure credential: start it with \
                 --azure-credential (and --azure-grant for the policy's namespace); see docs/azure.md",
                target.resource_id
            ))
        })?;
        Ok((azure, azure.resolve(namespace, &target.resource_id)?))
    }
}

#[async_trait::async_trait]
impl Deploy for Targets {
    async fn converge(&self, target: &Target<'_>, plan: &RolloutPlan, image: &str) -> Result<Progress> {
        match target {
            Target::Kubernetes(r) if plan.strategy == StrategyKind::Canary => Ok(Progress::Failed(format!(
                "{}: canary needs a Container App (Deployments have no traffic split here); use blueGreen",
                r.display()
            ))),
            Target::Kubernetes(r) => self.kubernetes.converge(r, plan, image).await,
            Target::ContainerApp { target: t, role, namespace } => {
                let (azure, id) = self.azure(t, namespace)?;
                azure.converge_app(&id, t.container.as_deref(), role, image, &digest_hex(image)?).await
            }
            Target::ContainerAppsJob { target: t, role, namespace } => {
                let (azure, id) = self.azure(t, namespace)?;
                azure.converge_job(&id, t.container.as_deref(), role, image).await
            }
        }
    }

    async fn current_image(&self, target: &Target<'_>, plan: &RolloutPlan) -> Result<Option<String>> {
        match target {
            Target::Kubernetes(r) => self.kubernetes.current_image(r, plan).await,
            Target::ContainerApp { target: t, namespace, role } => {
                let (azure, id) = self.azure(t, namespace)?;
                azure.app_image(&id, t.container.as_deref(), role).await
            }
            Target::ContainerAppsJob { target: t, namespace, .. } => {
                let (azure, id) = self.azure(t, namespace)?;
                azure.job_image(&id, t.container.as_deref()).await
            }
        }
    }

    async fn live(&self, target: &Target<'_>, plan: &RolloutPlan) -> Result<Live> {
        match target {
            Target::Kubernetes(r) => self.kubernetes.live(r, plan).await,
            _ => Ok(Live { image: self.current_image(target, plan).await?, ..Live::default() }),
        }
    }

    async fn health(&self, target: &Target<'_>, plan: &RolloutPlan, image: &str) -> Result<Health> {
        match target {
            Target::Kubernetes(r) => self.kubernetes.health(r, plan, image).await,
            Target::ContainerApp { target: t, namespace, .. } => {
                let (azure, id) = self.azure(t, namespace)?;
                azure.app_health(&id, t.container.as_deref(), image).await
            }
            Target::ContainerAppsJob { target: t, namespace, .. } => {
                let (azure, id) = self.azure(t, namespace)?;
                azure.job_health(&id, t.container.as_deref(), image).await
            }
        }
    }

    async fn retire_previous(&self, target: &Target<'_>, plan: &RolloutPlan) -> Result<()> {
        match target {
            Target::Kubernetes(r) if plan.retire_previous == Retire::AfterMonitoring => {
                self.kubernetes.retire_previous(r, plan).await
            }
            Target::ContainerApp { target: t, namespace, .. } if plan.side_by_side => {
                let (azure, id) = self.azure(t, namespace)?;
                azure.retire_app(&id, t.container.as_deref()).await
            }
            _ => Ok(()),
        }
    }

    async fn ran_before(&self, target: &Target<'_>, image: &str) -> Result<bool> {
        match target {
            Target::Kubernetes(r) => self.kubernetes.ran_before(r, image).await,
            Target::ContainerApp { target: t, namespace, .. } => {
                let (azure, id) = self.azure(t, namespace)?;
                azure.app_ran(&id, t.container.as_deref(), image).await
            }
            Target::ContainerAppsJob { target: t, namespace, .. } => {
                let (azure, id) = self.azure(t, namespace)?;
                azure.job_ran(&id, t.container.as_deref(), image).await
            }
        }
    }

    async fn traffic_weight(&self, target: &Target<'_>, image: &str) -> Result<Option<i32>> {
        match target {
            Target::ContainerApp { target: t, namespace, .. } => {
                let (azure, id) = self.azure(t, namespace)?;
                Ok(Some(azure.app_weight(&id, t.container.as_deref(), image).await?))
            }
            _ => Ok(None),
        }
    }

    async fn staging_url(&self, target: &Target<'_>) -> Result<Option<String>> {
        match target {
            Target::ContainerApp { target: t, role, namespace } => {
                let (azure, id) = self.azure(t, namespace)?;
                Ok(Some(azure.staging_url(&id, role).await?))
            }
            _ => Ok(None),
        }
    }
}

fn digest_hex(image: &str) -> Result<String> {
    image
        .rsplit_once("@sha256:")
        .map(|(_, hex)| hex.to_string())
        .ok_or_else(|| ProviderError::Permanent(format!("{image} is not pinned to a sha256 digest")))
}
