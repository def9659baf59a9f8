//! The Promotion reconciler: the only code that changes production, and only as
//! [`tidegate_core::promotion::plan`] decides.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tidegate_api::image_policy::Workload;
use tidegate_api::promotion::CanaryProgress;
use tidegate_api::{
    AuditEntry, FrozenRules, ImagePolicy, Promotion, PromotionPhase, PromotionStatus, RecordEntry, RecordEvent,
    RolloutProgress, RolloutState,
};
use tidegate_core::ImageRef;
use tidegate_core::approval::{self, ApprovalFacts, ApprovalRules};
use tidegate_core::conditions::{self, Wanted};
use tidegate_core::container_apps::Canary;
use tidegate_core::promotion::{self, Effect, Health, Progress, PromotionFacts, PromotionPhaseExt, ReleaseState};
use tidegate_core::{Digest, parse_duration, provenance};
use tidegate_providers::targets::Deploy;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::{approvals, observe};

/// Condition that records how far production got towards the promoted digest.
const ROLLED_OUT: &str = "RolledOut";
/// Condition that records how far a rollback got.
const ROLLBACK_COMPLETE: &str = "RollbackComplete";

/// Reconciles one Promotion.
#[tracing::instrument(skip(promotion, ctx), fields(kind = "Promotion", namespace = %promotion.namespace().unwrap_or_default(), name = %promotion.name_any()))]
pub async fn reconcile(promotion: Arc<Promotion>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = promotion.namespace().unwrap_or_default();
    let name = promotion.name_any();
    // An ended Promotion that owes nothing stays so (a newer version arrives as a watch event of
    // its own): the watch cache's copy is enough, so a cluster's history costs no request.
    // An approval, rejection or rollback request written on it still gets its audit entry.
    if let Some(status) = promotion.status.as_ref()
        && owes_nothing(status)
        && approvals::record(&promotion, &status.history, ctx.now()).is_empty()
    {
        return Ok(Action::await_change());
    }
    let _turn = ctx.turns.take(&namespace, &name).await;
    // Boxed: the work below is a large future (about 24 KiB), and kube spawns every reconcile as
    // a task of its own, all at once when the watches list. Inline, each ended Promotion of a
    // cluster's history would hold that much while its reconcile is queued or waits for the
    // stores; boxed, only a Promotion that goes on pays for it.
    Ok(Box::pin(passes(promotion, &ctx)).await?.action())
}

/// What one pass over a Promotion decided.
pub struct Pass {
    /// When to look again; `None` waits for a change.
    pub next: Option<Duration>,
    /// The phase the pass moved the Promotion into, if it moved it.
    pub entered: Option<PromotionPhase>,
    /// The Promotion as the pass's status write left it.
    pub written: Option<Arc<Promotion>>,
}

impl Pass {
    fn action(&self) -> Action {
        match self.next {
            Some(after) => Action::requeue(after),
            None => Action::await_change(),
        }
    }
}

/// The passes of one reconcile of `promotion`, whose turn ([`crate::turns`]) the caller holds:
/// one, and a second right away when the first recorded an approval, so that the step from a
/// person's approval to the production write waits in no queue. The second pass is a pass like
/// any other: it proves the approvals and the signature again before it writes.
pub async fn passes(promotion: Arc<Promotion>, ctx: &Arc<Context>) -> Result<Pass> {
    let namespace = promotion.namespace().unwrap_or_default();
    let name = promotion.name_any();
    let mut pass = advance(promotion, ctx.clone(), namespace.clone(), name.clone()).await?;
    if pass.entered == Some(PromotionPhase::Approved)
        && pass.next == Some(Duration::ZERO)
        && let Some(written) = pass.written.clone()
    {
        pass = advance(written, ctx.clone(), namespace, name).await?;
    }
    Ok(pass)
}

/// Reconciles a Promotion that may still move or owes its record.
async fn advance(promotion: Arc<Promotion>, ctx: Arc<Context>, namespace: String, name: String) -> Result<Pass> {
    // Act on the latest status: a cached copy that predates this controller's own last write
    // could repeat a production change or overwrite the recorded rollback target, so the watch
    // cache serves only the version this process last wrote or read (`stores::latest`).
    let Some(promotion) = crate::stores::latest(
        ctx.objects.promotions.as_ref(),
        &ctx.stores.promotions,
        &ctx.stores.versions,
        &promotion,
    )
    .await?
    else {
        return Ok(Pass { next: None, entered: None, written: None });
    };
    let old = promotion.status.clone();
    let mut status = old.clone().unwrap_or_default();
    let now = ctx.now();

    if ended(status.phase) {
        // Nothing moves any more; a rejection still owes its record, and what anyone wrote on
        // the Promotion since it ended is still entered in its history (it moves nothing).
        let new_entries = approvals::record(&promotion, &status.history, now);
        status.history.extend(new_entries.iter().cloned());
        let recorded = recorded(&status);
        let mut attached = None;
        if let (Some(event), Some(rules)) =
            (promotion::record_due(status.phase, &Progress::Done, &recorded), status.rules.clone())
        {
            let digest: Digest =
                promotion.spec.digest.parse().map_err(|e| Error::Invalid(format!("spec.digest: {e}")))?;
            ctx.leadership.check()?;
            let entry = attach_record(&ctx, &promotion, &rules, &digest, event).await?;
            status.records.push(entry.clone());
            attached = Some(entry);
        }
        let written =
            crate::status::apply(&ctx, ctx.objects.promotions.as_ref(), &namespace, &name, old.as_ref(), &status)
                .await?;
        if let Some(entry) = &attached {
            record_event(&ctx, &promotion, entry).await;
        }
        audit_events(&ctx, &promotion, &new_entries).await;
        return Ok(Pass { next: None, entered: None, written: written.map(Arc::new) });
    }
    // The rules that count are those that held when the Promotion opened.
    let policy = observe::policy(&ctx, &namespace, &promotion.spec.policy).await?;
    let rules = match (&status.rules, &policy) {
        (Some(rules), _) => rules.clone(),
        (None, Some(policy)) => freeze(policy, &promotion, now)?,
        (None, None) => {
            return Err(Error::Invalid(format!("ImagePolicy {namespace}/{} does not exist", promotion.spec.policy)));
        }
    };
    status.rules = Some(rules.clone());
    let digest: Digest = promotion.spec.digest.parse().map_err(|e| Error::Invalid(format!("spec.digest: {e}")))?;
    let workloads: Vec<&Workload> = rules.workloads.iter().collect();
    let new_entries = approvals::record(&promotion, &status.history, now);
    status.history.extend(new_entries.iter().cloned());
    let (facts, signature_problem, refused) =
        observe_facts(&ctx, policy.as_ref(), &rules, &promotion, &status, &digest, &workloads).await?;
    let plan = promotion::plan(&facts);

    // Execute: at most one production write, idempotent, keyed by the digest. The leader checks
    // it still leads right before writing.
    let mut rolled_out = None;
    let mut rolled_back = None;
    let mut records = Vec::new();
    for effect in &plan.effects {
        ctx.leadership.check()?;
        match effect {
            Effect::DeployProduction { digest } => {
                let canary = Some(&mut status.canary);
                rolled_out = Some(converge(&ctx, &namespace, &name, &rules, &workloads, digest, canary).await?)
            }
            Effect::RollbackProduction { to } => {
                rolled_back = Some(converge(&ctx, &namespace, &name, &rules, &workloads, to, None).await?)
            }
            Effect::RetirePrevious => retire(&ctx, &namespace, &name, &workloads).await?,
            Effect::Record { event } => records.push(attach_record(&ctx, &promotion, &rules, &digest, *event).await?),
        }
    }
    status.records.extend(records.iter().cloned());

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
    // Past the rollout nobody's approval is asked about again: the condition keeps what it said.
    let kept = match approvals::Approvals::for_phase(facts.phase) {
        approvals::Approvals::Prove | approvals::Approvals::ProveOrReuse => None,
        approvals::Approvals::NotNeeded => {
            status.conditions.iter().find(|c| c.type_ == "Approved").map(|c| (c.status == "True", c.message.clone()))
        }
    };
    let (approved, approved_message) = kept.unwrap_or_else(|| {
        (facts.approval.is_approved() || status.phase.touched_production(), approval_message(&facts, &refused))
    });
    let mut wanted = vec![
        Wanted::new("Approved", approved, plan.reason, approved_message),
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
    if matches!(facts.phase, PromotionPhase::AwaitingApproval | PromotionPhase::Approved) {
        // What approvers should know: production no longer runs what was last approved.
        let drift = policy.as_ref().and_then(|p| p.status.as_ref()).map(|s| s.drift.as_slice()).unwrap_or_default();
        if !drift.is_empty() || status.conditions.iter().any(|c| c.type_ == "ProductionDrift") {
            wanted.push(match drift.is_empty() {
                false => Wanted::new(
                    "ProductionDrift",
                    true,
                    "Drifted",
                    format!("production drifted from what was approved: {}", tidegate_core::drift::describe(drift)),
                ),
                true => Wanted::new("ProductionDrift", false, "AsApproved", "production runs what was approved"),
            });
        }
    }
    if plan.phase == PromotionPhase::RolledBack && facts.phase != PromotionPhase::RolledBack {
        // Why production was rolled back stays readable after the rollback completes.
        wanted.push(Wanted::new("RolledBack", true, "RollbackStarted", plan.message.clone()));
    }
    if let Some(progress) = rolled_out {
        wanted.push(progress_condition(ROLLED_OUT, &progress));
        status.rollout = Some(typed_progress(&progress));
    }
    if let Some(progress) = rolled_back {
        wanted.push(progress_condition(ROLLBACK_COMPLETE, &progress));
        status.rollback = Some(typed_progress(&progress));
    }
    status.conditions = conditions::merge(&status.conditions, &wanted, promotion.meta().generation, now);
    let written =
        crate::status::apply(&ctx, ctx.objects.promotions.as_ref(), &namespace, &name, old.as_ref(), &status).await?;

    for entry in &records {
        record_event(&ctx, &promotion, entry).await;
    }
    audit_events(&ctx, &promotion, &new_entries).await;
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
    let moved = plan.phase != facts.phase;
    Ok(Pass {
        next: match plan.requeue_after {
            Some(after) => Some(after),
            None if moved => Some(Duration::ZERO),
            None => None,
        },
        entered: moved.then_some(plan.phase),
        written: written.map(Arc::new),
    })
}

/// One `Audit` Event per new history entry of `promotion` (which names the digest it is about).
async fn audit_events(ctx: &Context, promotion: &Promotion, entries: &[AuditEntry]) {
    for entry in entries {
        let (reason, verb) = match entry.action {
            tidegate_api::AuditAction::Approved => ("ApprovalRecorded", "approved"),
            tidegate_api::AuditAction::Rejected => ("RejectionRecorded", "rejected"),
            tidegate_api::AuditAction::RollbackRequested => ("RollbackRequestRecorded", "asked to roll back"),
        };
        let message = format!("{} {verb} {}", entry.user, promotion.spec.digest);
        ctx.event(promotion, false, reason, message, "Audit").await;
    }
}

/// Nothing moves any more (a `Succeeded` or `RolledBack` Promotion can still be rolled back).
fn ended(phase: PromotionPhase) -> bool {
    phase.is_terminal() && phase != PromotionPhase::Succeeded && phase != PromotionPhase::RolledBack
}

/// An ended Promotion whose record (if it owes one) is attached or given up on.
fn owes_nothing(status: &PromotionStatus) -> bool {
    ended(status.phase)
        && (status.rules.is_none() || promotion::record_due(status.phase, &Progress::Done, &recorded(status)).is_none())
}

/// The events whose record was attached or given up on.
fn recorded(status: &PromotionStatus) -> Vec<RecordEvent> {
    status.records.iter().map(|r| r.event).collect()
}

/// Attaches the signed promotion record of `event` to the promoted digest. Only a digest that a
/// trusted key signed gets one: anyone who may create a Promotion names its digest, and the
/// controller must not vouch for a digest it would not have deployed. A record that cannot be
/// attached for good (no signing key, an untrusted digest) is written down with the reason and
/// not tried again; registry trouble is retried with backoff.
async fn attach_record(
    ctx: &Context,
    promotion: &Promotion,
    rules: &FrozenRules,
    digest: &Digest,
    event: RecordEvent,
) -> Result<RecordEntry> {
    let now = ctx.now();
    let given_up = |why: String| RecordEntry {
        event,
        record: None,
        message: Some(format!("no promotion record attached: {why}")),
        at: Time(now),
    };
    let repository: ImageRef = rules.image.parse().map_err(|e| Error::Invalid(format!("image: {e}")))?;
    let image = repository.pinned(digest);
    let namespace = promotion.namespace().unwrap_or_default();
    // The Release counts only when it is this policy's.
    let release = observe::release(ctx, &namespace, &promotion.spec.release)
        .await?
        .filter(|r| r.spec.policy == promotion.spec.policy);
    let release_phase = release.as_ref().and_then(|r| r.status.as_ref()).map(|s| s.phase);
    let release_digest = release.as_ref().and_then(|r| r.status.as_ref()).and_then(|s| s.digest.clone());
    let same_digest = release_digest.as_deref() == Some(digest.as_str());
    let signature = release
        .as_ref()
        .filter(|_| same_digest)
        .and_then(|r| r.status.as_ref())
        .and_then(|s| s.signature.as_ref())
        .and_then(|s| s.reference.clone())
        .unwrap_or_default();
    match ctx.signer.verify(&image, digest, &signature).await {
        Ok(tidegate_providers::Verification::Valid { .. }) => {}
        Ok(tidegate_providers::Verification::Invalid(why)) => return Ok(given_up(why)),
        Err(e) if !e.is_transient() => return Ok(given_up(e.to_string())),
        Err(e) => return Err(e.into()),
    }
    // What the record says is proven now, not read from status (which others may write).
    let status = promotion.status.clone().unwrap_or_default();
    let workloads: Vec<&Workload> = rules.workloads.iter().collect();
    let target_namespaces: BTreeSet<String> = workloads
        .iter()
        .map(|w| observe::target(w, true, &namespace).map(|t| t.namespace().to_string()))
        .collect::<Result<_>>()?;
    let people = approvals::establish(
        ctx,
        promotion,
        release.as_ref(),
        &target_namespaces,
        &status.history,
        approvals::Approvals::Prove,
    )
    .await?;
    let proven = provenance::Proven {
        approvers: match people.unprovable {
            Some(_) => Vec::new(),
            None => people
                .approvals
                .iter()
                .filter(|e| e.right == approval::Right::Holds && !people.excluded.contains(&e.user))
                .map(|e| e.user.clone())
                .collect(),
        },
        rejected_by: people.rejected_by.clone(),
        rollback_requested_by: people.rollback_requested_by.clone(),
    };
    let targets = ctx.targets(&namespace)?;
    let previous = status.previous_digest.as_deref().and_then(|d| d.parse::<Digest>().ok());
    let world = provenance::World {
        release_verified: same_digest && release_phase == Some(tidegate_api::ReleasePhase::Verified),
        release_rejected: release_phase == Some(tidegate_api::ReleasePhase::Rejected),
        production: match event {
            RecordEvent::Rejected => None,
            _ => observe::production_digest(targets.as_ref(), &namespace, &workloads).await?,
        },
        ran_digest: event == RecordEvent::RolledBack
            && rollback_target_problem(ctx, targets.as_ref(), &repository, &namespace, &workloads, digest)
                .await?
                .is_none(),
        required: usize::try_from(rules.required_approvals).unwrap_or(1),
    };
    if let Err(why) = provenance::check(event, digest, previous.as_ref(), &proven, &world) {
        return Ok(given_up(why));
    }
    let statement = match provenance::statement(
        event,
        promotion,
        release.as_ref().filter(|_| same_digest),
        &repository.repository_ref(),
        digest,
        &proven,
    ) {
        Ok(statement) => statement,
        Err(e) => return Ok(given_up(e.to_string())),
    };
    match ctx.attestor.attach(&image, digest, &statement).await {
        Ok(record) => Ok(RecordEntry { event, record: Some(record), message: None, at: Time(now) }),
        Err(e) if !e.is_transient() => Ok(given_up(e.to_string())),
        Err(e) => Err(e.into()),
    }
}

async fn record_event(ctx: &Context, promotion: &Promotion, entry: &RecordEntry) {
    let what = tidegate_providers::provenance::event_name(entry.event);
    match (&entry.record, &entry.message) {
        (Some(record), _) => {
            let note = format!("signed record ({what}) attached to {} as {record}", promotion.spec.digest);
            ctx.event(promotion, false, "RecordAttached", note, "Record").await
        }
        (None, message) => {
            ctx.event(promotion, true, "RecordNotAttached", message.clone().unwrap_or_default(), "Record").await
        }
    }
}

fn approval_message(facts: &PromotionFacts, refused: &[String]) -> String {
    let mut message = match &facts.approval {
        approval::ApprovalDecision::Approved { approvers, .. } => format!("approved by {}", approvers.join(", ")),
        approval::ApprovalDecision::Pending { valid, required, ignored } => {
            let mut m = format!("{} of {required} approvals", valid.len());
            if !ignored.is_empty() {
                let why: Vec<String> = ignored.iter().map(ToString::to_string).collect();
                m.push_str(&format!(" (not counted: {})", why.join("; ")));
            }
            m
        }
        approval::ApprovalDecision::Expired { user, approved_at } => {
            format!("the approval by {user} (seen {approved_at}) expired")
        }
        approval::ApprovalDecision::Unprovable(why) => format!("approvals cannot be verified: {why}"),
    };
    if !refused.is_empty() {
        message.push_str(&format!("; {}", refused.join("; ")));
    }
    message
}

/// Copies the policy's promotion rules and the selected workloads into the Promotion.
fn freeze(policy: &ImagePolicy, promotion: &Promotion, now: jiff::Timestamp) -> Result<FrozenRules> {
    Ok(FrozenRules {
        workloads: observe::selected_workloads(policy, promotion)?.into_iter().cloned().collect(),
        ..freeze_rules_only(policy, now)
    })
}

fn approval_rules(rules: &FrozenRules) -> Result<ApprovalRules> {
    Ok(ApprovalRules {
        required: usize::try_from(rules.required_approvals).unwrap_or(1),
        valid_for: parse_duration(&rules.approval_valid_for)
            .map_err(|e| Error::Invalid(format!("approvalValidFor: {e}")))?,
    })
}

fn progress_condition(type_: &'static str, progress: &Progress) -> Wanted {
    match progress {
        Progress::Done => Wanted::new(type_, true, "Done", "every workload runs the digest and is available"),
        Progress::InProgress(m) => Wanted::new(type_, false, "InProgress", m.clone()),
        Progress::Failed(m) => Wanted::new(type_, false, "Failed", m.clone()),
    }
}

/// The progress `status` records (typed, never read back from a condition).
fn recorded_progress(recorded: Option<&RolloutProgress>) -> Progress {
    match recorded {
        Some(RolloutProgress { state: RolloutState::Done, .. }) => Progress::Done,
        Some(RolloutProgress { state: RolloutState::Failed, message }) => Progress::Failed(message.clone()),
        Some(RolloutProgress { state: RolloutState::InProgress, message }) => Progress::InProgress(message.clone()),
        None => Progress::InProgress("not started".into()),
    }
}

/// `progress` as recorded in status.
fn typed_progress(progress: &Progress) -> RolloutProgress {
    let (state, message) = match progress {
        Progress::Done => (RolloutState::Done, String::new()),
        Progress::InProgress(m) => (RolloutState::InProgress, m.clone()),
        Progress::Failed(m) => (RolloutState::Failed, m.clone()),
    };
    RolloutProgress { state, message: message.chars().take(4096).collect() }
}

#[allow(clippy::too_many_arguments)]
async fn observe_facts(
    ctx: &Context,
    policy: Option<&ImagePolicy>,
    rules: &FrozenRules,
    promotion: &Promotion,
    status: &PromotionStatus,
    digest: &Digest,
    workloads: &[&Workload],
) -> Result<(PromotionFacts, Option<String>, Vec<String>)> {
    let namespace = promotion.namespace().unwrap_or_default();
    let now = ctx.now();
    // Frozen rules, or the current policy's where it is stricter: neither a later edit of the
    // policy nor a rewritten status loosens them.
    let mut approval_rules = approval_rules(rules)?;
    if let Some(policy) = policy {
        approval_rules = approval_rules.stricter(&self::approval_rules(&freeze_rules_only(policy, now))?);
    }
    let release = observe::release(ctx, &namespace, &promotion.spec.release).await?;
    let target_namespaces: BTreeSet<String> = workloads
        .iter()
        .map(|w| observe::target(w, true, &namespace).map(|t| t.namespace().to_string()))
        .collect::<Result<_>>()?;
    let asked = approvals::Approvals::for_phase(status.phase);
    let people =
        approvals::establish(ctx, promotion, release.as_ref(), &target_namespaces, &status.history, asked).await?;
    let approval = approval::evaluate(
        &ApprovalFacts {
            approvals: &people.approvals,
            excluded: &people.excluded,
            unprovable: people.unprovable.clone(),
        },
        &approval_rules,
        now,
    );

    let release_state = match &release {
        None => ReleaseState::Missing,
        // A Release counts only for the policy this Promotion belongs to.
        Some(r) if r.spec.policy != promotion.spec.policy => ReleaseState::Missing,
        Some(r) => ReleaseState::Present {
            phase: r.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            digest: r.status.as_ref().and_then(|s| s.digest.as_deref()).and_then(|d| d.parse().ok()),
        },
    };
    let repository: ImageRef = rules.image.parse().map_err(|e| Error::Invalid(format!("image: {e}")))?;
    let signature_problem = match status.phase {
        PromotionPhase::Approved | PromotionPhase::Promoting => {
            let signature = release
                .as_ref()
                .and_then(|r| r.status.as_ref())
                .and_then(|s| s.signature.as_ref())
                .and_then(|sig| sig.reference.as_deref());
            crate::signature_proofs::problem_before_write(ctx, promotion, status.phase, &repository, digest, signature)
                .await?
        }
        _ => None,
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

    let targets = ctx.targets(&namespace)?;
    // Before production changes (what it runs now), and once a rollout is recorded as done (the
    // planner believes the record only when production is seen running the digest).
    let rollout_done = status.rollout.as_ref().is_some_and(|r| r.state == RolloutState::Done);
    let production = if matches!(status.phase, PromotionPhase::AwaitingApproval | PromotionPhase::Approved)
        || (status.phase == PromotionPhase::Promoting && rollout_done)
    {
        observe::production_digest(targets.as_ref(), &namespace, workloads).await?
    } else {
        None
    };
    let health = if status.phase == PromotionPhase::Monitoring {
        health(targets.as_ref(), &repository, &namespace, workloads, digest).await?
    } else {
        Health::Healthy
    };
    let mut refused = people.refused.clone();
    let previous_digest = match status.previous_digest.as_deref().and_then(|d| d.parse::<Digest>().ok()) {
        Some(previous) => {
            match rollback_target_problem(ctx, targets.as_ref(), &repository, &namespace, workloads, &previous).await? {
                None => Some(previous),
                Some(why) => {
                    refused.push(why);
                    None
                }
            }
        }
        None => None,
    };
    Ok((
        PromotionFacts {
            phase: status.phase,
            digest: digest.clone(),
            release: release_state,
            approval,
            rejected_by: people.rejected_by,
            rollback_requested_by: people.rollback_requested_by,
            signature_valid,
            superseded,
            production,
            previous_digest,
            rollout: recorded_progress(status.rollout.as_ref()),
            rollback: recorded_progress(status.rollback.as_ref()),
            health,
            monitor_until: status.monitor_until.as_ref().map(|t| t.0),
            monitor_window: parse_duration(&rules.monitor_window)
                .map_err(|e| Error::Invalid(format!("monitorWindow: {e}")))?,
            auto_rollback: rules.auto_rollback,
            recorded: recorded(status),
            watched: policy.is_some_and(|p| ctx.workload_watches.wakes_promotions(p, workloads)),
            now,
        },
        signature_problem,
        refused,
    ))
}

fn freeze_rules_only(policy: &ImagePolicy, now: jiff::Timestamp) -> FrozenRules {
    let rules = &policy.spec.promotion;
    FrozenRules {
        image: policy.spec.image.clone(),
        required_approvals: rules.required_approvals,
        approval_valid_for: rules.approval_valid_for.clone(),
        monitor_window: rules.monitor_window.clone(),
        auto_rollback: rules.auto_rollback,
        workloads: Vec::new(),
        frozen_at: Time(now),
    }
}

/// Why `previous` is not a digest production may be rolled back to, or `None` when every
/// workload's own history (ReplicaSets, Jobs) shows it ran there. A digest written in status is
/// not enough.
async fn rollback_target_problem(
    ctx: &Context,
    targets: &dyn Deploy,
    repository: &ImageRef,
    namespace: &str,
    workloads: &[&Workload],
    previous: &Digest,
) -> Result<Option<String>> {
    let image = repository.pinned(previous);
    for workload in workloads {
        let target = observe::target(workload, true, namespace)?;
        let shown = target.display();
        if ctx.known_runs.known(namespace, &shown, &image) {
            continue;
        }
        if !targets.ran_before(&target, &image).await? {
            return Ok(Some(format!("rollback target {previous} is refused: {shown} shows no record of running it")));
        }
        ctx.known_runs.learned(namespace, &shown, &image);
    }
    Ok(None)
}

/// One convergence step of every selected production workload towards `digest`, as the
/// deployer of the Promotion's namespace acting for Promotion `promotion`. A deployment (not a
/// rollback) records canary progress in `canary`.
async fn converge(
    ctx: &Context,
    namespace: &str,
    promotion: &str,
    rules: &FrozenRules,
    workloads: &[&Workload],
    digest: &Digest,
    mut canary: Option<&mut Vec<CanaryProgress>>,
) -> Result<Progress> {
    // Holds are per Promotion object: a recreated Promotion of the same name starts again.
    let clock_key = format!("{namespace}/{promotion}/{digest}");
    let repository: ImageRef = rules.image.parse().map_err(|e| Error::Invalid(format!("image: {e}")))?;
    let image = repository.pinned(digest);
    let targets = ctx.production_targets(namespace, promotion)?;
    let mut waiting = Vec::new();
    for workload in workloads {
        let mut target = observe::target(workload, true, namespace)?;
        if let (Some(records), Some(steps)) = (canary.as_deref_mut(), crate::canary::steps(workload)?) {
            let weight = targets.traffic_weight(&target, &image).await?.unwrap_or(0);
            let (held, record) = ctx.canary.held(&clock_key, &workload.name, weight, ctx.now());
            crate::canary::record(records, record);
            target = target.with_canary(Some(Canary { held: Some(held), ..steps }));
        }
        let plan = observe::production_plan(workload)?;
        ctx.leadership.check()?;
        match targets.converge(&target, &plan, &image).await {
            Ok(Progress::Done) => {}
            Ok(Progress::InProgress(m)) => waiting.push(m),
            Ok(Progress::Failed(m)) => return Ok(Progress::Failed(m)),
            Err(e) => {
                if let Some(why) =
                    crate::error::out_of_reach(&e, namespace, &format!("production {}", target.display()))
                {
                    return Ok(Progress::Failed(why));
                }
                if !e.is_transient() {
                    return Ok(Progress::Failed(e.to_string()));
                }
                return Err(e.into());
            }
        }
    }
    Ok(if waiting.is_empty() { Progress::Done } else { Progress::InProgress(waiting.join("; ")) })
}

async fn retire(ctx: &Context, namespace: &str, promotion: &str, workloads: &[&Workload]) -> Result<()> {
    let targets = ctx.production_targets(namespace, promotion)?;
    for workload in workloads {
        let plan = observe::production_plan(workload)?;
        // Each target decides what its plan keeps until now (an `overlap` slot, a Container
        // App's previous revision).
        ctx.leadership.check()?;
        targets.retire_previous(&observe::target(workload, true, namespace)?, &plan).await?;
    }
    Ok(())
}

async fn health(
    targets: &dyn Deploy,
    repository: &ImageRef,
    namespace: &str,
    workloads: &[&Workload],
    digest: &Digest,
) -> Result<Health> {
    let image = repository.pinned(digest);
    for workload in workloads {
        let target = observe::target(workload, true, namespace)?;
        let plan = observe::production_plan(workload)?;
        if let Health::Unhealthy(why) = targets.health(&target, &plan, &image).await? {
            return Ok(Health::Unhealthy(why));
        }
    }
    Ok(Health::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: PromotionPhase, rules: bool, records: &[RecordEvent]) -> PromotionStatus {
        let at = Time(jiff::Timestamp::UNIX_EPOCH);
        PromotionStatus {
            phase,
            rules: rules.then(|| FrozenRules {
                image: "registry.example/app".into(),
                required_approvals: 1,
                approval_valid_for: "24h".into(),
                monitor_window: "10m".into(),
                auto_rollback: true,
                workloads: Vec::new(),
                frozen_at: at.clone(),
            }),
            records: records
                .iter()
                .map(|event| RecordEntry { event: *event, record: None, message: None, at: at.clone() })
                .collect(),
            ..PromotionStatus::default()
        }
    }

    #[test]
    fn only_an_ended_promotion_with_its_record_is_left_to_the_cache() {
        use PromotionPhase::*;
        for phase in [Superseded, Expired, Failed] {
            assert!(owes_nothing(&status(phase, true, &[])), "{phase:?} owes no record");
        }
        assert!(!owes_nothing(&status(Rejected, true, &[])), "a rejection owes its record");
        assert!(owes_nothing(&status(Rejected, true, &[RecordEvent::Rejected])));
        assert!(owes_nothing(&status(Rejected, false, &[])), "no rules, no record to attach");
        for phase in [AwaitingApproval, Approved, Promoting, Monitoring, Succeeded, RolledBack] {
            assert!(!owes_nothing(&status(phase, true, &[RecordEvent::Promoted])), "{phase:?} can still move");
        }
    }
}
