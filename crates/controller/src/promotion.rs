//! The Promotion reconciler: the only code that changes production, and only as
//! [`tidegate_core::promotion::plan`] decides.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tidegate_api::{
    ANNOTATION_APPROVED_BY, ANNOTATION_REJECTED_BY, ANNOTATION_ROLLBACK_REQUESTED_BY, ImagePolicy, Promotion,
    PromotionPhase, PromotionStatus, Release, approvers,
};
use tidegate_core::approval::{self, ApprovalFacts, ApprovalRules};
use tidegate_core::conditions::{self, Wanted};
use tidegate_core::promotion::{self, Effect, Health, Progress, PromotionFacts, PromotionPhaseExt, ReleaseState};
use tidegate_core::{Digest, parse_duration};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::observe;

/// Condition that records how far production got towards the promoted digest.
const ROLLED_OUT: &str = "RolledOut";
/// Condition that records how far a rollback got.
const ROLLBACK_COMPLETE: &str = "RollbackComplete";

/// Reconciles one Promotion.
#[tracing::instrument(skip(promotion, ctx), fields(kind = "Promotion", namespace = %promotion.namespace().unwrap_or_default(), name = %promotion.name_any()))]
pub async fn reconcile(promotion: Arc<Promotion>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = promotion.namespace().unwrap_or_default();
    let name = promotion.name_any();
    let api: Api<Promotion> = Api::namespaced(ctx.client.clone(), &namespace);
    // Act on the latest status, not the watch cache: a cached copy can predate this
    // controller's own last write, and acting on it could repeat a started build or overwrite
    // the recorded rollback target.
    let Some(promotion) = api.get_opt(&name).await?.map(Arc::new) else { return Ok(Action::await_change()) };
    let old = promotion.status.clone();
    let mut status = old.clone().unwrap_or_default();
    let now = ctx.now();

    if status.phase.is_terminal()
        && status.phase != PromotionPhase::Succeeded
        && status.phase != PromotionPhase::RolledBack
    {
        return Ok(Action::await_change());
    }
    let Some(policy) = observe::policy(&ctx, &namespace, &promotion.spec.policy).await? else {
        return Err(Error::Invalid(format!("ImagePolicy {namespace}/{} does not exist", promotion.spec.policy)));
    };
    let digest: Digest = promotion.spec.digest.parse().map_err(|e| Error::Invalid(format!("spec.digest: {e}")))?;
    let workloads = observe::selected_workloads(&policy, &promotion)?;
    let (facts, signature_problem) = observe_facts(&ctx, &policy, &promotion, &status, &digest, &workloads).await?;
    let plan = promotion::plan(&facts);

    // Execute: at most one production write, idempotent, keyed by the digest.
    let mut rolled_out = None;
    let mut rolled_back = None;
    for effect in &plan.effects {
        match effect {
            Effect::DeployProduction { digest } => {
                rolled_out = Some(converge(&ctx, &policy, &workloads, digest).await?)
            }
            Effect::RollbackProduction { to } => rolled_back = Some(converge(&ctx, &policy, &workloads, to).await?),
            Effect::RetirePrevious => retire(&ctx, &policy, &workloads).await?,
        }
    }

    status.phase = plan.phase;
    status.observed_generation = promotion.meta().generation;
    if let Some(approvers) = &plan.record.approved_by {
        status.approved_by = approvers.clone();
    }
    if let Some(at) = plan.record.approved_at {
        status.approved_at = Some(Time(at));
    }
    if status.phase == PromotionPhase::Promoting && facts.phase == PromotionPhase::Approved {
        status.previous_digest = plan.record.previous_digest.as_ref().map(ToString::to_string);
        status.promoted_at = plan.record.promoted_at.map(Time);
    }
    if let Some(until) = plan.record.monitor_until {
        status.monitor_until = Some(Time(until));
    }
    let mut wanted = vec![
        Wanted::new(
            "Approved",
            facts.approval.is_approved() || status.phase.touched_production(),
            plan.reason,
            approval_message(&facts),
        ),
        Wanted::new("Ready", status.phase == PromotionPhase::Succeeded, plan.reason, plan.message.clone()),
    ];
    if let Some(why) = signature_problem {
        wanted.push(Wanted::new("SignatureVerified", false, "SignatureInvalid", why));
    } else if facts.phase == PromotionPhase::Approved {
        wanted.push(Wanted::new(
            "SignatureVerified",
            true,
            "Verified",
            "the signature verified right before production changed",
        ));
    }
    if plan.phase == PromotionPhase::RolledBack && facts.phase != PromotionPhase::RolledBack {
        // Why production was rolled back stays readable after the rollback completes.
        wanted.push(Wanted::new("RolledBack", true, "RollbackStarted", plan.message.clone()));
    }
    if let Some(progress) = rolled_out {
        wanted.push(progress_condition(ROLLED_OUT, &progress));
    }
    if let Some(progress) = rolled_back {
        wanted.push(progress_condition(ROLLBACK_COMPLETE, &progress));
    }
    status.conditions = conditions::merge(&status.conditions, &wanted, promotion.meta().generation, now);
    crate::status::apply(&ctx, &api, &name, old.as_ref(), &status).await?;

    if plan.phase != facts.phase {
        let warning = matches!(
            plan.phase,
            PromotionPhase::RolledBack | PromotionPhase::Failed | PromotionPhase::Expired | PromotionPhase::Rejected
        );
        ctx.metrics
            .transitions
            .get_or_create(&crate::metrics::PhaseLabels { kind: "Promotion", phase: format!("{:?}", plan.phase) })
            .inc();
        ctx.event(promotion.as_ref(), warning, plan.reason, plan.message.clone(), &format!("{:?}", plan.phase)).await;
    }
    Ok(match plan.requeue_after {
        Some(after) => Action::requeue(after),
        None if plan.phase != facts.phase => Action::requeue(Duration::ZERO),
        None => Action::await_change(),
    })
}

fn annotation<'a>(promotion: &'a Promotion, key: &str) -> Option<&'a str> {
    promotion
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

fn approval_message(facts: &PromotionFacts) -> String {
    match &facts.approval {
        approval::ApprovalDecision::Approved { approvers, .. } => format!("approved by {}", approvers.join(", ")),
        approval::ApprovalDecision::Pending { valid, required, .. } => {
            format!("{} of {required} approvals", valid.len())
        }
        approval::ApprovalDecision::Expired { approved_at } => format!("approval of {approved_at} expired"),
    }
}

fn progress_condition(type_: &'static str, progress: &Progress) -> Wanted {
    match progress {
        Progress::Done => Wanted::new(type_, true, "Done", "every workload runs the digest and is available"),
        Progress::InProgress(m) => Wanted::new(type_, false, "InProgress", m.clone()),
        Progress::Failed(m) => Wanted::new(type_, false, "Failed", m.clone()),
    }
}

fn recorded_progress(status: &PromotionStatus, type_: &str) -> Progress {
    match status.conditions.iter().find(|c| c.type_ == type_) {
        Some(c) if c.status == "True" => Progress::Done,
        Some(c) if c.reason == "Failed" => Progress::Failed(c.message.clone()),
        Some(c) => Progress::InProgress(c.message.clone()),
        None => Progress::InProgress("not started".into()),
    }
}

async fn observe_facts(
    ctx: &Context,
    policy: &ImagePolicy,
    promotion: &Promotion,
    status: &PromotionStatus,
    digest: &Digest,
    workloads: &[&tidegate_api::image_policy::Workload],
) -> Result<(PromotionFacts, Option<String>)> {
    let namespace = promotion.namespace().unwrap_or_default();
    let now = ctx.now();
    let rules = ApprovalRules {
        required: usize::try_from(policy.spec.promotion.required_approvals).unwrap_or(1),
        valid_for: parse_duration(&policy.spec.promotion.approval_valid_for)
            .map_err(|e| Error::Invalid(format!("spec.promotion.approvalValidFor: {e}")))?,
    };
    let approver_names = annotation(promotion, ANNOTATION_APPROVED_BY).map(approvers).unwrap_or_default();
    // Who may approve is enforced at admission, with the approver's full identity (user and
    // groups) at the moment of approving; the controller re-checks everything it can see.
    let authorized: BTreeSet<String> = approver_names.iter().cloned().collect();
    let approval = approval::evaluate(
        &ApprovalFacts {
            approvers: &approver_names,
            requested_by: promotion.spec.requested_by.as_deref(),
            authorized: &authorized,
            approved_at: status.approved_at.as_ref().map(|t| t.0),
        },
        &rules,
        now,
    );

    let release = Api::<Release>::namespaced(ctx.client.clone(), &namespace).get_opt(&promotion.spec.release).await?;
    let release_state = match &release {
        None => ReleaseState::Missing,
        Some(r) => ReleaseState::Present {
            phase: r.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            digest: r.status.as_ref().and_then(|s| s.digest.as_deref()).and_then(|d| d.parse().ok()),
        },
    };
    // The signature is verified right before production changes, and only then.
    let signature_problem = if status.phase == PromotionPhase::Approved {
        let image = observe::repository(policy)?.pinned(digest);
        match release
            .as_ref()
            .and_then(|r| r.status.as_ref())
            .and_then(|s| s.signature.as_ref())
            .and_then(|sig| sig.reference.clone())
        {
            Some(signature) => match ctx.signer.verify(&image, digest, &signature).await? {
                tidegate_providers::Verification::Valid { .. } => None,
                tidegate_providers::Verification::Invalid(why) => Some(why),
            },
            None => Some(format!("{digest} was never signed")),
        }
    } else {
        None
    };
    let signature_valid = signature_problem.is_none();

    let superseded = observe::promotions_of(ctx, &namespace, &promotion.spec.policy).await?.iter().any(|other| {
        observe::creation_key(other) > observe::creation_key(promotion)
            && other.status.as_ref().is_some_and(|s| {
                matches!(
                    s.phase,
                    PromotionPhase::Approved
                        | PromotionPhase::Promoting
                        | PromotionPhase::Monitoring
                        | PromotionPhase::Succeeded
                )
            })
    });

    let production = if matches!(status.phase, PromotionPhase::AwaitingApproval | PromotionPhase::Approved) {
        observe::production_digest(ctx, policy, workloads).await?
    } else {
        None
    };
    let health = if status.phase == PromotionPhase::Monitoring {
        health(ctx, policy, workloads, digest).await?
    } else {
        Health::Healthy
    };
    let valid_rollback_request = annotation(promotion, ANNOTATION_ROLLBACK_REQUESTED_BY).map(str::to_string);
    Ok((
        PromotionFacts {
            phase: status.phase,
            digest: digest.clone(),
            release: release_state,
            approval,
            rejected_by: annotation(promotion, ANNOTATION_REJECTED_BY).map(str::to_string),
            rollback_requested_by: valid_rollback_request,
            signature_valid,
            superseded,
            production,
            previous_digest: status.previous_digest.as_deref().and_then(|d| d.parse().ok()),
            rollout: recorded_progress(status, ROLLED_OUT),
            rollback: recorded_progress(status, ROLLBACK_COMPLETE),
            health,
            monitor_until: status.monitor_until.as_ref().map(|t| t.0),
            monitor_window: parse_duration(&policy.spec.promotion.monitor_window)
                .map_err(|e| Error::Invalid(format!("spec.promotion.monitorWindow: {e}")))?,
            auto_rollback: policy.spec.promotion.auto_rollback,
            now,
        },
        signature_problem,
    ))
}

/// One convergence step of every selected production workload towards `digest`.
async fn converge(
    ctx: &Context,
    policy: &ImagePolicy,
    workloads: &[&tidegate_api::image_policy::Workload],
    digest: &Digest,
) -> Result<Progress> {
    let namespace = policy.namespace().unwrap_or_default();
    let image = observe::repository(policy)?.pinned(digest);
    let mut waiting = Vec::new();
    for workload in workloads {
        let target = observe::kubernetes(workload, true, &namespace)?;
        let plan = observe::production_plan(workload)?;
        match ctx.targets.converge(&target, &plan, &image).await {
            Ok(Progress::Done) => {}
            Ok(Progress::InProgress(m)) => waiting.push(m),
            Ok(Progress::Failed(m)) => return Ok(Progress::Failed(m)),
            Err(e) if !e.is_transient() => return Ok(Progress::Failed(e.to_string())),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if waiting.is_empty() { Progress::Done } else { Progress::InProgress(waiting.join("; ")) })
}

async fn retire(
    ctx: &Context,
    policy: &ImagePolicy,
    workloads: &[&tidegate_api::image_policy::Workload],
) -> Result<()> {
    let namespace = policy.namespace().unwrap_or_default();
    for workload in workloads {
        let plan = observe::production_plan(workload)?;
        if plan.retire_previous == tidegate_core::rollout::Retire::AfterMonitoring {
            ctx.targets.retire_previous(&observe::kubernetes(workload, true, &namespace)?, &plan).await?;
        }
    }
    Ok(())
}

async fn health(
    ctx: &Context,
    policy: &ImagePolicy,
    workloads: &[&tidegate_api::image_policy::Workload],
    digest: &Digest,
) -> Result<Health> {
    let namespace = policy.namespace().unwrap_or_default();
    let image = observe::repository(policy)?.pinned(digest);
    for workload in workloads {
        let target = observe::kubernetes(workload, true, &namespace)?;
        let plan = observe::production_plan(workload)?;
        if let Health::Unhealthy(why) = ctx.targets.health(&target, &plan, &image).await? {
            return Ok(Health::Unhealthy(why));
        }
    }
    Ok(Health::Healthy)
}
