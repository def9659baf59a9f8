//! `kubectl tidegate reject PROMOTION [--reason TEXT]`.

use anyhow::anyhow;
use tidegate_api::{ANNOTATION_REJECTED_BY, ANNOTATION_REJECTION_REASON, Promotion, PromotionPhase};

use crate::client::{Session, Step, update_promotion};
use crate::promotions::{annotation, is_terminal, phase, phase_name};
use crate::render::one_line;

/// What rejecting means for one Promotion as read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectionPlan {
    /// Set these annotations.
    Set(Vec<(&'static str, String)>),
    /// Already rejected (by the caller or someone else); nothing to write. Holds the rejecter.
    Already(String),
}

/// Decides a rejection by `user`, or refuses it: a finished Promotion, and one already changing
/// production (the controller only acts on a rejection before production is touched; a rollback
/// is what undoes a change). A rejection by somebody else is kept as it is; the caller's own
/// rejection only gains a new reason.
pub fn plan(promotion: &Promotion, qualified: &str, user: &str, reason: Option<&str>) -> Result<RejectionPlan, String> {
    let phase = phase(promotion);
    if is_terminal(phase) {
        return Err(format!("promotion {qualified} is {}; a finished Promotion cannot be rejected", phase_name(phase)));
    }
    if matches!(phase, PromotionPhase::Promoting | PromotionPhase::Monitoring) {
        return Err(format!(
            "promotion {qualified} is {}: production already runs its digest and a rejection would not undo that; use `kubectl tidegate rollback promotion/{}`",
            phase_name(phase),
            promotion.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    let reason = reason.map(one_line).filter(|r| !r.is_empty());
    match annotation(&promotion.metadata, ANNOTATION_REJECTED_BY) {
        Some(by) if by != user => Ok(RejectionPlan::Already(by.to_string())),
        Some(by) => match reason {
            Some(reason) if annotation(&promotion.metadata, ANNOTATION_REJECTION_REASON) != Some(reason.as_str()) => {
                Ok(RejectionPlan::Set(vec![(ANNOTATION_REJECTION_REASON, reason)]))
            }
            _ => Ok(RejectionPlan::Already(by.to_string())),
        },
        None => {
            let mut set = vec![(ANNOTATION_REJECTED_BY, user.to_string())];
            if let Some(reason) = reason {
                set.push((ANNOTATION_REJECTION_REASON, reason));
            }
            Ok(RejectionPlan::Set(set))
        }
    }
}

/// Sets `tidegate.dev/rejected-by` to the caller (and the reason, when given).
pub async fn run(session: &Session, name: &str, reason: Option<&str>) -> anyhow::Result<String> {
    let user = session.whoami().await?;
    let qualified = session.qualified(name);
    update_promotion(session, name, |promotion| {
        match plan(promotion, &qualified, &user, reason).map_err(|e| anyhow!(e))? {
            RejectionPlan::Already(by) => Ok(Step::Stop(format!("promotion {qualified} already rejected by {by}\n"))),
            RejectionPlan::Set(set) => {
                let reason = set.iter().find(|(k, _)| *k == ANNOTATION_REJECTION_REASON).map(|(_, v)| format!(": {v}"));
                Ok(Step::Patch {
                    annotations: set.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                    outcome: format!("promotion {qualified} rejected by {user}{}\n", reason.unwrap_or_default()),
                })
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promotions::tests::promotion;

    #[test]
    fn rejection_sets_name_and_optional_reason() {
        let p = promotion("p", "app", None);
        assert_eq!(
            plan(&p, "shop/p", "carol", None),
            Ok(RejectionPlan::Set(vec![(ANNOTATION_REJECTED_BY, "carol".into())]))
        );
        assert_eq!(
            plan(&p, "shop/p", "carol", Some("breaks\n checkout")),
            Ok(RejectionPlan::Set(vec![
                (ANNOTATION_REJECTED_BY, "carol".into()),
                (ANNOTATION_REJECTION_REASON, "breaks checkout".into())
            ]))
        );
        assert_eq!(
            plan(&p, "shop/p", "carol", Some("  ")),
            Ok(RejectionPlan::Set(vec![(ANNOTATION_REJECTED_BY, "carol".into())]))
        );
    }

    #[test]
    fn an_existing_rejection_is_kept() {
        let mut p = promotion("p", "app", None);
        p.metadata.annotations = Some([(ANNOTATION_REJECTED_BY.to_string(), "carol".to_string())].into());
        assert_eq!(plan(&p, "shop/p", "dave", Some("x")), Ok(RejectionPlan::Already("carol".into())));
        assert_eq!(plan(&p, "shop/p", "carol", None), Ok(RejectionPlan::Already("carol".into())));
        assert_eq!(
            plan(&p, "shop/p", "carol", Some("new")),
            Ok(RejectionPlan::Set(vec![(ANNOTATION_REJECTION_REASON, "new".into())]))
        );
    }

    #[test]
    fn finished_promotions_cannot_be_rejected() {
        let p = promotion("p", "app", Some(PromotionPhase::Expired));
        assert!(plan(&p, "shop/p", "carol", None).expect_err("terminal").contains("is Expired"));
        let p = promotion("p", "app", Some(PromotionPhase::Monitoring));
        assert!(plan(&p, "shop/p", "carol", None).expect_err("live").contains("kubectl tidegate rollback promotion/p"));
        let p = promotion("p", "app", Some(PromotionPhase::Approved));
        assert!(plan(&p, "shop/p", "carol", None).is_ok(), "an approved Promotion can still be stopped");
    }
}
