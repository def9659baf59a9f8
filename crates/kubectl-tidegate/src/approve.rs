//! `kubectl tidegate approve PROMOTION [--yes]`.

use anyhow::anyhow;
use tidegate_api::{ANNOTATION_APPROVED_BY, ImagePolicy, Promotion, Release};

use crate::client::{Session, Step, update_promotion};
use crate::confirm::{self, Request};
use crate::promotions::{ApprovalPlan, annotations, approvers_annotation, plan_approval};
use crate::render;
use crate::summary::{self, Lookup};

/// Shows what is being approved (digest, image, policy, Release and its scan, approvals so far,
/// production targets, warnings), asks unless `yes`, then adds the caller to the Promotion's
/// `tidegate.dev/approved-by` list and says how many approvals are needed. Approving twice
/// writes nothing and asks nothing. Only `tidegate.dev/approved-by` is written: the groups that
/// go with it are recorded by the cluster's admission policy, never by the plugin.
pub async fn run(session: &Session, name: &str, yes: bool) -> anyhow::Result<String> {
    let user = session.whoami().await?;
    let qualified = session.qualified(name);
    let shown: Promotion = session.get(name, &format!("promotion {qualified}")).await?;
    // Refusals and the no-op come before any question.
    let plan = plan_approval(&shown, &qualified, &user).map_err(|e| anyhow!(e))?;
    let policy: Lookup<ImagePolicy> =
        session.lookup(&shown.spec.policy, &format!("imagepolicy {}", session.qualified(&shown.spec.policy))).await;
    if let ApprovalPlan::Already(list) = plan {
        let required = summary::required_approvals(&shown, policy.found());
        return Ok(render::approval(&qualified, &user, list.len(), required, true));
    }
    let release: Lookup<Release> =
        session.lookup(&shown.spec.release, &format!("release {}", session.qualified(&shown.spec.release))).await;
    let facts = summary::approval(&shown, &policy, &release, &session.namespace, &user);
    let text = render::approval_summary(&facts);
    let question = format!("Approve {} for production?", shown.spec.digest);
    let declined = format!("promotion {qualified} was not approved: nothing was written");
    let shown_summary =
        confirm::confirm(yes, Request { summary: &text, question: &question, verb: "approve", declined: &declined })
            .await?;

    let (approvers, already) = update_promotion(session, name, |promotion| {
        summary::still_shown(promotion, &shown, &facts.targets, &session.namespace).map_err(|e| anyhow!(e))?;
        match plan_approval(promotion, &qualified, &user).map_err(|e| anyhow!(e))? {
            ApprovalPlan::Already(list) => Ok(Step::Stop((list, true))),
            ApprovalPlan::Append(list) => Ok(Step::Patch {
                annotations: annotations([(ANNOTATION_APPROVED_BY, approvers_annotation(&list))]),
                outcome: (list, false),
            }),
        }
    })
    .await?;
    Ok(shown_summary + &render::approval(&qualified, &user, approvers.len(), facts.required, already))
}
