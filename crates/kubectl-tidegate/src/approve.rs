//! `kubectl tidegate approve PROMOTION`.

use anyhow::anyhow;
use tidegate_api::{ANNOTATION_APPROVED_BY, ImagePolicy};

use crate::client::{Session, Step, update_promotion};
use crate::promotions::{ApprovalPlan, annotations, approvers_annotation, plan_approval};
use crate::render;

/// Adds the caller to the Promotion's `tidegate.dev/approved-by` list (a no-op when already
/// there) and says how many approvals the policy needs.
pub async fn run(session: &Session, name: &str) -> anyhow::Result<String> {
    let user = session.whoami().await?;
    let qualified = session.qualified(name);
    let mut policy = String::new();
    let (approvers, already) = update_promotion(session, name, |promotion| {
        policy.clone_from(&promotion.spec.policy);
        match plan_approval(promotion, &qualified, &user).map_err(|e| anyhow!(e))? {
            ApprovalPlan::Already(list) => Ok(Step::Stop((list, true))),
            ApprovalPlan::Append(list) => Ok(Step::Patch {
                annotations: annotations([(ANNOTATION_APPROVED_BY, approvers_annotation(&list))]),
                outcome: (list, false),
            }),
        }
    })
    .await?;
    Ok(render::approval(&qualified, &user, approvers.len(), required_approvals(session, &policy).await, already))
}

/// The policy's `spec.promotion.requiredApprovals`, when the caller may read the policy.
async fn required_approvals(session: &Session, policy: &str) -> Option<i32> {
    if policy.is_empty() {
        return None;
    }
    let policy: ImagePolicy = session.api().get(policy).await.ok()?;
    Some(policy.spec.promotion.required_approvals)
}
