//! Kubernetes deploy targets: Deployments (in place, or side by side in two colour slots with a
//! Service selector switch) and CronJobs (in place).
//!
//! Every call converges one step towards the wanted image and reports [`Progress`]; calling it
//! again when the world already matches writes nothing. That makes a controller restart in the
//! middle of a rollout harmless: the next call picks up where the world is.

mod cache;
mod changes;
mod cronjob;
mod deployment;

pub use cache::DeploymentCache;
pub use changes::{Change, WorkloadChanges};

use std::sync::Arc;

use tidegate_api::image_policy::{KubernetesKind, KubernetesTarget};
use tidegate_core::promotion::{Health, Progress};
use tidegate_core::rollout::RolloutPlan;

use crate::Result;

/// Label that marks which colour slot a Deployment's Pods belong to.
pub const LABEL_SLOT: &str = "tidegate.dev/slot";
/// Annotation on the base Deployment: the slot that is live.
pub const ANNOTATION_ACTIVE_SLOT: &str = "tidegate.dev/active-slot";
/// Annotation on the base Deployment: replicas each slot runs when live.
pub const ANNOTATION_REPLICAS: &str = "tidegate.dev/replicas";

/// Annotation a person sets, with a reason, to change a production workload's images by hand;
/// the production admission policy lets such a change through once per reason.
pub const ANNOTATION_BREAK_GLASS: &str = "tidegate.dev/break-glass";
/// Annotation the production admission policy writes: who set [`ANNOTATION_BREAK_GLASS`].
pub const ANNOTATION_BREAK_GLASS_BY: &str = "tidegate.dev/break-glass-by";

/// The live version of a workload, as drift detection sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// The image of the managed container.
    pub image: Option<String>,
    /// [`ANNOTATION_BREAK_GLASS`] on the live object, if set.
    pub break_glass: Option<String>,
    /// [`ANNOTATION_BREAK_GLASS_BY`] on the live object, if set.
    pub break_glass_by: Option<String>,
}

impl Live {
    fn of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, image: Option<String>) -> Self {
        let annotation = |key: &str| {
            meta.annotations.as_ref().and_then(|a| a.get(key)).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
        };
        Self {
            image,
            break_glass: annotation(ANNOTATION_BREAK_GLASS),
            break_glass_by: annotation(ANNOTATION_BREAK_GLASS_BY),
        }
    }
}

/// Kubernetes workloads as deploy targets.
#[derive(Clone)]
pub struct KubernetesTargets {
    client: kube::Client,
    manager: String,
    /// What the deployer watches show, and the policy namespace whose deployer this acts as.
    cache: Option<(Arc<DeploymentCache>, String)>,
}

/// One target resolved: its kind, namespace and name.
#[derive(Clone, Debug)]
pub struct Resolved<'a> {
    /// The target from the policy.
    pub target: &'a KubernetesTarget,
    /// Its namespace (the policy's when the target names none).
    pub namespace: String,
}

impl<'a> Resolved<'a> {
    /// Resolves `target` against the policy's namespace.
    pub fn new(target: &'a KubernetesTarget, policy_namespace: &str) -> Self {
        Self { namespace: target.namespace.clone().unwrap_or_else(|| policy_namespace.to_string()), target }
    }

    /// `namespace/name`, for messages.
    pub fn display(&self) -> String {
        format!("{:?} {}/{}", self.target.kind, self.namespace, self.target.name)
    }
}

impl KubernetesTargets {
    /// Targets changed through `client`, writing as field manager `manager`.
    pub fn new(client: kube::Client, manager: impl Into<String>) -> Self {
        Self { client, manager: manager.into(), cache: None }
    }

    /// These targets, with reads that only look answered from `cache` where the watch made as
    /// `policy_namespace`'s deployer (the identity `client` acts as) is current.
    pub fn with_cache(self, cache: Arc<DeploymentCache>, policy_namespace: impl Into<String>) -> Self {
        Self { cache: Some((cache, policy_namespace.into())), ..self }
    }

    /// Converges the target one step towards `image` with `plan`.
    pub async fn converge(&self, target: &Resolved<'_>, plan: &RolloutPlan, image: &str) -> Result<Progress> {
        match target.target.kind {
            KubernetesKind::Deployment if plan.side_by_side => {
                deployment::converge_slots(self, target, plan, image).await
            }
            KubernetesKind::Deployment => deployment::converge_in_place(self, target, image).await,
            KubernetesKind::CronJob => cronjob::converge(self, target, image).await,
        }
    }

    /// The image the live version of the target runs.
    pub async fn current_image(&self, target: &Resolved<'_>, plan: &RolloutPlan) -> Result<Option<String>> {
        match target.target.kind {
            KubernetesKind::Deployment if plan.side_by_side => deployment::live_slot_image(self, target).await,
            KubernetesKind::Deployment => deployment::in_place_image(self, target).await,
            KubernetesKind::CronJob => cronjob::image(self, target).await,
        }
    }

    /// The live version of the target: its image and break-glass marks. A mark on the base
    /// Deployment counts too when another slot is live (a person may have edited either).
    pub async fn live(&self, target: &Resolved<'_>, plan: &RolloutPlan) -> Result<Live> {
        let container = target.target.container.as_deref();
        match target.target.kind {
            KubernetesKind::Deployment => {
                // One read of each Deployment: the base carries the break-glass marks of a
                // side-by-side target, the live slot its image.
                let (base, live) = match plan.side_by_side {
                    true => deployment::base_and_live_slot(self, target).await?,
                    false => {
                        let base = deployment::base(self, target).await?;
                        (base.clone(), Some(base))
                    }
                };
                let Some(live) = live else { return Ok(Live::default()) };
                let mut found = Live::of(&live.metadata, deployment::image_of(&live, container));
                if found.break_glass.is_none() && plan.side_by_side {
                    let marks = Live::of(&base.metadata, None);
                    (found.break_glass, found.break_glass_by) = (marks.break_glass, marks.break_glass_by);
                }
                Ok(found)
            }
            KubernetesKind::CronJob => {
                let cronjob = cronjob::object(self, target).await?;
                Ok(Live::of(&cronjob.metadata, cronjob::image_of(&cronjob, container)))
            }
        }
    }

    /// Health of the live version running `image`: available, and no container restarts.
    pub async fn health(&self, target: &Resolved<'_>, plan: &RolloutPlan, image: &str) -> Result<Health> {
        match target.target.kind {
            KubernetesKind::Deployment => deployment::health(self, target, plan, image).await,
            KubernetesKind::CronJob => cronjob::health(self, target, image).await,
        }
    }

    /// Stops the previous version kept running beside the live one (`overlap`, after the monitor
    /// window).
    pub async fn retire_previous(&self, target: &Resolved<'_>, plan: &RolloutPlan) -> Result<()> {
        match target.target.kind {
            KubernetesKind::Deployment if plan.side_by_side => deployment::retire_idle(self, target).await,
            _ => Ok(()),
        }
    }

    /// Whether the target ran `image` before, by the workload's own record: a ReplicaSet of the
    /// Deployment (or of its colour slot), or the CronJob's recorded images and Jobs. This is
    /// how a rollback target is checked without trusting a digest written in status: whoever
    /// could write these records could have set the workload's image directly.
    pub async fn ran_before(&self, target: &Resolved<'_>, image: &str) -> Result<bool> {
        match target.target.kind {
            KubernetesKind::Deployment => deployment::ran(self, target, image).await,
            KubernetesKind::CronJob => cronjob::ran(self, target, image).await,
        }
    }

    /// The Deployment `name` in `namespace` from the cache, when the cache can tell.
    pub(crate) fn cached(&self, namespace: &str, name: &str) -> Option<Option<k8s_openapi::api::apps::v1::Deployment>> {
        let (cache, policy_namespace) = self.cache.as_ref()?;
        cache.get(policy_namespace, namespace, name)
    }

    pub(crate) fn client(&self) -> &kube::Client {
        &self.client
    }

    pub(crate) fn params(&self) -> kube::api::PatchParams {
        kube::api::PatchParams { field_manager: Some(self.manager.clone()), ..Default::default() }
    }
}

/// The container to manage: the named one, or the first.
pub(crate) fn container_index(
    containers: &[k8s_openapi::api::core::v1::Container],
    wanted: Option<&str>,
) -> Option<usize> {
    match wanted {
        Some(name) => containers.iter().position(|c| c.name == name),
        None => (!containers.is_empty()).then_some(0),
    }
}
