//! Reading what the reconcilers need: policies, their Releases and Promotions, production.

use kube::ResourceExt;
use tidegate_api::image_policy::Workload;
use tidegate_api::{ImagePolicy, Promotion, Release};
use tidegate_core::rollout::{self, RolloutPlan};
use tidegate_core::{Digest, ImageRef};
use tidegate_providers::azure_targets::{DEFAULT_STAGING_LABEL, Role};
use tidegate_providers::kubernetes::Resolved;
use tidegate_providers::targets::{Deploy, Target};

use crate::context::Context;
use crate::error::{Error, Result};

/// The ImagePolicy `name` in `namespace`, if it exists (as watched).
pub async fn policy(ctx: &Context, namespace: &str, name: &str) -> Result<Option<ImagePolicy>> {
    Ok(ctx.stores.policy(namespace, name).await?.map(|p| p.as_ref().clone()))
}

/// Releases of a policy (as watched).
pub async fn releases_of(ctx: &Context, namespace: &str, policy: &str) -> Result<Vec<Release>> {
    Ok(ctx.stores.releases_of(namespace, policy).await?.iter().map(|r| r.as_ref().clone()).collect())
}

/// Promotions of a policy (as watched).
pub async fn promotions_of(ctx: &Context, namespace: &str, policy: &str) -> Result<Vec<Promotion>> {
    Ok(ctx.stores.promotions_of(namespace, policy).await?.iter().map(|p| p.as_ref().clone()).collect())
}

/// The Release `name` in `namespace`, if it exists (as watched).
pub async fn release(ctx: &Context, namespace: &str, name: &str) -> Result<Option<Release>> {
    Ok(ctx.stores.release(namespace, name).await?.map(|r| r.as_ref().clone()))
}

/// Orders objects by creation, then name, oldest first.
pub fn creation_key<K: ResourceExt>(object: &K) -> (Option<jiff::Timestamp>, String) {
    (object.creation_timestamp().map(|t| t.0), object.name_any())
}

/// The policy's repository.
pub fn repository(policy: &ImagePolicy) -> Result<ImageRef> {
    policy.spec.image.parse().map_err(|e| Error::Invalid(format!("spec.image: {e}")))
}

/// The target of a workload side (staging or production), as a policy in `namespace` sees it.
pub fn target<'a>(workload: &'a Workload, production: bool, namespace: &str) -> Result<Target<'a>> {
    let side = if production { &workload.production } else { &workload.staging };
    let role = || -> Result<Role> {
        Ok(match production {
            true => {
                let plan = production_plan(workload)?;
                Role::Production {
                    keep_previous: matches!(
                        plan.retire_previous,
                        rollout::Retire::KeepIdle | rollout::Retire::AfterMonitoring
                    ),
                    canary: None,
                }
            }
            false => {
                let app = side.container_app.as_ref().or(side.container_apps_job.as_ref());
                let production_id =
                    workload.production.container_app.as_ref().map(|t| t.resource_id.to_ascii_lowercase());
                Role::Staging {
                    label: app.and_then(|t| t.label.clone()).unwrap_or_else(|| DEFAULT_STAGING_LABEL.to_string()),
                    shares_production: app.map(|t| t.resource_id.to_ascii_lowercase()) == production_id
                        && production_id.is_some(),
                    verify_execution: app.and_then(|t| t.verify_execution).unwrap_or(false),
                }
            }
        })
    };
    match (&side.kubernetes, &side.container_app, &side.container_apps_job) {
        (Some(k), None, None) => Ok(Target::Kubernetes(Resolved::new(k, namespace))),
        (None, Some(target), None) => {
            Ok(Target::ContainerApp { target, role: role()?, namespace: namespace.to_string() })
        }
        (None, None, Some(target)) => {
            Ok(Target::ContainerAppsJob { target, role: role()?, namespace: namespace.to_string() })
        }
        _ => Err(Error::Invalid(format!(
            "workload {} {}: a target must set exactly one of kubernetes, containerApp or containerAppsJob",
            workload.name,
            if production { "production" } else { "staging" }
        ))),
    }
}

/// The production rollout plan of a workload.
pub fn production_plan(workload: &Workload) -> Result<RolloutPlan> {
    let strategy = rollout::strategy(workload);
    rollout::plan(workload.kind, strategy).ok_or_else(|| {
        Error::Invalid(format!(
            "workload {}: strategy {strategy:?} does not fit kind {:?}",
            workload.name, workload.kind
        ))
    })
}

/// The plan for staging: always in place.
pub fn staging_plan(workload: &Workload) -> RolloutPlan {
    use tidegate_api::image_policy::{StrategyKind, WorkloadKind};
    RolloutPlan {
        strategy: if workload.kind == WorkloadKind::Job { StrategyKind::Direct } else { StrategyKind::Rolling },
        side_by_side: false,
        switch_traffic: false,
        retire_previous: rollout::Retire::NotApplicable,
    }
}

/// The digest of a pinned image reference, if it is one.
pub fn digest_of(image: &str) -> Option<Digest> {
    image.parse::<ImageRef>().ok().and_then(|r| r.digest)
}

/// The digest production runs, when every selected workload runs the same pinned image.
pub async fn production_digest(
    targets: &dyn Deploy,
    namespace: &str,
    workloads: &[&Workload],
) -> Result<Option<Digest>> {
    let mut seen: Option<Digest> = None;
    for workload in workloads {
        let target = target(workload, true, namespace)?;
        let plan = production_plan(workload)?;
        let Some(digest) = targets.current_image(&target, &plan).await?.as_deref().and_then(digest_of) else {
            return Ok(None);
        };
        match &seen {
            Some(d) if *d != digest => return Ok(None),
            _ => seen = Some(digest),
        }
    }
    Ok(seen)
}

/// The workloads a Promotion changes: the listed ones, or all.
pub fn selected_workloads<'a>(policy: &'a ImagePolicy, promotion: &Promotion) -> Result<Vec<&'a Workload>> {
    match &promotion.spec.workloads {
        None => Ok(policy.spec.workloads.iter().collect()),
        Some(names) => names
            .iter()
            .map(|n| {
                policy
                    .spec
                    .workloads
                    .iter()
                    .find(|w| &w.name == n)
                    .ok_or_else(|| Error::Invalid(format!("spec.workloads: the policy has no workload {n}")))
            })
            .collect(),
    }
}
