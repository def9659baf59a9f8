//! `kubectl tidegate history POLICY`.

use std::cmp::Reverse;

use tidegate_api::{ImagePolicy, Promotion, PromotionPhase};

use crate::client::Session;
use crate::promotions::{FINISHED, belongs_to, last_change, phase};
use crate::render::{self, HistoryEntry, HistoryView};
use crate::status::promotion_view;

/// The history of one policy: what runs now (and which Promotion put it there), the earlier
/// production digests from `status.productionHistory`, and the finished Promotions, newest first.
pub fn view(policy: &ImagePolicy, promotions: &[Promotion]) -> HistoryView {
    let name = policy.metadata.name.clone().unwrap_or_default();
    let mine: Vec<&Promotion> = promotions.iter().filter(|p| belongs_to(&p.metadata, &p.spec.policy, &name)).collect();
    let status = policy.status.clone().unwrap_or_default();
    let current = status.production_digest.as_ref().map(|digest| {
        // The newest Promotion that put this digest in production.
        let deployed_by = mine
            .iter()
            .filter(|p| {
                &p.spec.digest == digest && matches!(phase(p), PromotionPhase::Monitoring | PromotionPhase::Succeeded)
            })
            .max_by_key(|p| p.status.as_ref().and_then(|s| s.promoted_at.as_ref()).map(|t| t.0.as_second()));
        HistoryEntry {
            digest: digest.clone(),
            promotion: deployed_by.and_then(|p| p.metadata.name.clone()),
            deployed_at: deployed_by
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.promoted_at.as_ref())
                .map(|t| t.0.as_second()),
        }
    });
    let history = status
        .production_history
        .iter()
        .map(|record| HistoryEntry {
            digest: record.digest.clone(),
            promotion: record.promotion.clone(),
            deployed_at: record.deployed_at.as_ref().map(|t| t.0.as_second()),
        })
        .collect();
    let mut finished: Vec<&Promotion> = mine.into_iter().filter(|p| FINISHED.contains(&phase(p))).collect();
    finished.sort_by_key(|p| Reverse((last_change(p), p.metadata.name.clone())));
    HistoryView {
        namespace: policy.metadata.namespace.clone().unwrap_or_default(),
        name,
        image: policy.spec.image.clone(),
        current,
        history,
        finished: finished
            .into_iter()
            .map(|p| render::PromotionView { time: last_change(p), ..promotion_view(p) })
            .collect(),
    }
}

/// Prints the history of one policy.
pub async fn run(session: &Session, policy: &str) -> anyhow::Result<String> {
    let policy_object: ImagePolicy = session.get(policy, &format!("imagepolicy {}", session.qualified(policy))).await?;
    let promotions: Vec<Promotion> = session.list(&format!("promotions in namespace {}", session.namespace)).await?;
    Ok(render::history(&view(&policy_object, &promotions), render::now(), render::use_colour()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promotions::tests::{DIGEST, promotion, time};
    use tidegate_api::image_policy::DigestRecord;
    use tidegate_api::{ImagePolicySpec, ImagePolicyStatus};

    #[test]
    fn history_finds_who_deployed_production_and_orders_finished_promotions() {
        let spec: ImagePolicySpec =
            serde_json::from_value(serde_json::json!({"image": "registry.example.com/shop/app", "workloads": []}))
                .expect("spec");
        let mut policy = ImagePolicy::new("app", spec);
        policy.status = Some(ImagePolicyStatus {
            production_digest: Some(DIGEST.into()),
            production_history: vec![DigestRecord {
                digest: "sha256:aaaa".into(),
                promotion: None,
                deployed_at: Some(time(50)),
            }],
            ..Default::default()
        });
        let mut succeeded = promotion("ok", "app", Some(PromotionPhase::Succeeded));
        succeeded.status.as_mut().expect("status").promoted_at = Some(time(400));
        let mut rejected = promotion("no", "app", Some(PromotionPhase::Rejected));
        rejected.metadata.creation_timestamp = Some(time(500));
        let waiting = promotion("wait", "app", None);
        let superseded = promotion("old", "app", Some(PromotionPhase::Superseded));
        let other = promotion("other", "x", Some(PromotionPhase::Succeeded));

        let view = view(&policy, &[succeeded, rejected, waiting, superseded, other]);
        let current = view.current.expect("current");
        assert_eq!((current.promotion.as_deref(), current.deployed_at), (Some("ok"), Some(400)));
        assert_eq!(view.history.len(), 1);
        let names: Vec<&str> = view.finished.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["no", "ok"]);
        assert_eq!(view.finished[1].time, Some(400));
    }
}
