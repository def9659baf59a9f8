//! The approval lane: a person's approval or rejection is acted on at once, not after the polls of
//! the rollouts already running.
//!
//! kube's controller queue is first come, first served: with a thousand Promotions rolling out,
//! each looking again every few seconds, a new approval waited behind every poll that was due
//! before it (over a minute at the tail in the scale benchmark). The lane is a second controller
//! over the same watch of Promotions, with as many slots of its own as each kind has
//! (`--max-concurrent-reconciles`), woken only by someone else's change to a Promotion that waits
//! for approval or is approved and that carries an approval or a rejection. It decides nothing of
//! its own: it runs the Promotion controller's passes ([`crate::promotion::passes`]) under the
//! object's turn ([`crate::turns`]), so every rule of the gate applies exactly as there. What it
//! leaves (the rollout, the monitor window) the Promotion controller carries on: the same change
//! woke it too, and its pass then finds the work done.

use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use tidegate_api::{ANNOTATION_APPROVED_BY, ANNOTATION_REJECTED_BY, Promotion, PromotionPhase};

use crate::context::Context;
use crate::error::Result;
use crate::stores::Versions;

/// Whether `promotion` is one the lane acts on: it waits for approval or is approved, and
/// someone approved or rejected it.
pub fn wants(promotion: &Promotion) -> bool {
    let annotations = promotion.annotations();
    matches!(
        promotion.status.as_ref().map(|s| s.phase).unwrap_or_default(),
        PromotionPhase::AwaitingApproval | PromotionPhase::Approved
    ) && (annotations.contains_key(ANNOTATION_APPROVED_BY) || annotations.contains_key(ANNOTATION_REJECTED_BY))
}

/// The changes that wake the lane: someone else's change (not this process's own status write)
/// to a Promotion it [`wants`].
pub fn triggers(
    changes: impl Stream<Item = Arc<Promotion>> + Send + 'static,
    versions: Arc<Versions>,
) -> impl Stream<Item = Arc<Promotion>> + Send + 'static {
    crate::stores::changed_by_others(changes, versions).filter(|p| std::future::ready(wants(p)))
}

/// One lane pass over `promotion`: the Promotion controller's passes, unless this process already
/// read or wrote this version of it (a pass of the Promotion controller got there first and saw
/// it). Whatever it decides about looking again is the Promotion controller's to carry out.
pub async fn reconcile(promotion: Arc<Promotion>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = promotion.namespace().unwrap_or_default();
    let _turn = ctx.turns.take(&namespace, &promotion.name_any()).await;
    if wants(&promotion) && !ctx.stores.versions.is_current(promotion.as_ref()) {
        Box::pin(crate::promotion::passes(promotion, &ctx)).await?;
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use serde_json::json;

    use super::*;

    fn promotion(version: &str, phase: &str, annotations: serde_json::Value) -> Promotion {
        serde_json::from_value(json!({
            "apiVersion": "tidegate.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": "app-7", "namespace": "shop", "resourceVersion": version, "annotations": annotations},
            "spec": {"policy": "app", "release": "app-7", "digest": format!("sha256:{}", "a".repeat(64)), "requestedBy": "x"},
            "status": {"phase": phase},
        }))
        .expect("a Promotion")
    }

    #[test]
    fn only_an_approval_or_rejection_of_a_promotion_before_production_changes_is_in_the_lane() {
        let approved = json!({ANNOTATION_APPROVED_BY: "alice"});
        let rejected = json!({ANNOTATION_REJECTED_BY: "bob"});
        assert!(wants(&promotion("1", "AwaitingApproval", approved.clone())));
        assert!(wants(&promotion("1", "Approved", approved.clone())));
        assert!(wants(&promotion("1", "AwaitingApproval", rejected)));
        assert!(!wants(&promotion("1", "AwaitingApproval", json!({}))), "nobody acted yet");
        assert!(!wants(&promotion("1", "AwaitingApproval", json!({"tidegate.dev/rollback-requested-by": "carol"}))));
        for phase in ["Promoting", "Monitoring", "Succeeded", "RolledBack", "Rejected", "Superseded", "Failed"] {
            assert!(!wants(&promotion("1", phase, approved.clone())), "{phase} is the Promotion controller's");
        }
    }

    #[tokio::test]
    async fn the_lane_is_woken_by_others_changes_only() {
        let versions = Arc::new(Versions::default());
        let own = promotion("5", "AwaitingApproval", json!({ANNOTATION_APPROVED_BY: "alice"}));
        versions.wrote(&own);
        let changes = futures::stream::iter(vec![
            Arc::new(own),
            Arc::new(promotion("6", "AwaitingApproval", json!({ANNOTATION_APPROVED_BY: "alice"}))),
            Arc::new(promotion("7", "AwaitingApproval", json!({}))),
            Arc::new(promotion("8", "Promoting", json!({ANNOTATION_APPROVED_BY: "alice"}))),
        ]);
        let woken: Vec<String> =
            triggers(changes, versions).map(|p| p.resource_version().unwrap_or_default()).collect().await;
        assert_eq!(woken, vec!["6".to_string()], "only someone else's approval of a waiting Promotion");
    }
}
