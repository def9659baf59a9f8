//! `kubectl tidegate status [POLICY]`.

use std::cmp::Reverse;

use tidegate_api::{
    ANNOTATION_REJECTED_BY, ANNOTATION_REJECTION_REASON, ANNOTATION_ROLLBACK_REQUESTED_BY, ImagePolicy, Promotion,
    Release,
};

use crate::client::Session;
use crate::promotions::{annotation, belongs_to, phase, phase_name, policy_of, shown_approvers};
use crate::render::{self, PolicyView, PromotionView, ReleaseView};

fn created(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<i64> {
    meta.creation_timestamp.as_ref().map(|t| t.0.as_second())
}

/// One Promotion as a row; `time` is its creation.
pub fn promotion_view(promotion: &Promotion) -> PromotionView {
    let meta = &promotion.metadata;
    PromotionView {
        name: meta.name.clone().unwrap_or_default(),
        phase: phase_name(phase(promotion)),
        digest: promotion.spec.digest.clone(),
        approvers: shown_approvers(promotion).0,
        rejected_by: annotation(meta, ANNOTATION_REJECTED_BY).map(str::to_string),
        rejection_reason: annotation(meta, ANNOTATION_REJECTION_REASON).map(str::to_string),
        rollback_requested_by: annotation(meta, ANNOTATION_ROLLBACK_REQUESTED_BY).map(str::to_string),
        time: created(meta),
        release: promotion.spec.release.clone(),
    }
}

fn newest_first<T>(items: &mut [T], key: impl Fn(&T) -> (Option<i64>, String)) {
    items.sort_by_key(|item| Reverse(key(item)));
}

/// The tree of one policy: its Releases newest first, each with its Promotions newest first.
/// Promotions whose Release is gone are shown under a `(missing)` Release so none is hidden.
pub fn policy_view(policy: &ImagePolicy, releases: &[Release], promotions: &[Promotion]) -> PolicyView {
    let name = policy.metadata.name.clone().unwrap_or_default();
    let mut mine: Vec<&Release> = releases.iter().filter(|r| belongs_to(&r.metadata, &r.spec.policy, &name)).collect();
    newest_first(&mut mine, |r| (created(&r.metadata), r.metadata.name.clone().unwrap_or_default()));
    let mut my_promotions: Vec<&Promotion> =
        promotions.iter().filter(|p| belongs_to(&p.metadata, &p.spec.policy, &name)).collect();
    newest_first(&mut my_promotions, |p| (created(&p.metadata), p.metadata.name.clone().unwrap_or_default()));

    let mut views: Vec<ReleaseView> = mine
        .iter()
        .map(|release| {
            let release_name = release.metadata.name.clone().unwrap_or_default();
            let status = release.status.as_ref();
            ReleaseView {
                phase: phase_name(status.map(|s| s.phase).unwrap_or_default()),
                digest: status.and_then(|s| s.digest.clone()),
                blocking: status.and_then(|s| s.scan.as_ref()).map(|scan| scan.blocking),
                blocking_ids: status.and_then(|s| s.scan.as_ref()).map(|s| s.blocking_ids.clone()).unwrap_or_default(),
                reason: phase_name(release.spec.reason.kind),
                created: created(&release.metadata),
                promotions: my_promotions
                    .iter()
                    .filter(|p| p.spec.release == release_name)
                    .map(|p| promotion_view(p))
                    .collect(),
                name: release_name,
            }
        })
        .collect();
    let mut orphans: Vec<ReleaseView> = Vec::new();
    for promotion in my_promotions {
        if mine.iter().any(|r| r.metadata.name.as_deref() == Some(promotion.spec.release.as_str())) {
            continue;
        }
        let missing = format!("{} (missing)", promotion.spec.release);
        match orphans.iter_mut().find(|o| o.name == missing) {
            Some(orphan) => orphan.promotions.push(promotion_view(promotion)),
            None => orphans.push(ReleaseView {
                name: missing,
                phase: "-".into(),
                reason: "-".into(),
                promotions: vec![promotion_view(promotion)],
                ..Default::default()
            }),
        }
    }
    views.extend(orphans);
    let status = policy.status.as_ref();
    PolicyView {
        namespace: policy.metadata.namespace.clone().unwrap_or_default(),
        name,
        image: policy.spec.image.clone(),
        production: status.and_then(|s| s.production_digest.clone()),
        staging: status.and_then(|s| s.staging_digest.clone()),
        rescan: status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "VulnerableInProduction"))
            .map(|c| c.message.clone()),
        releases: views,
    }
}

/// Prints the tree of one policy, or of every policy in the namespace.
pub async fn run(session: &Session, policy: Option<&str>, colour: bool) -> anyhow::Result<String> {
    let ns = &session.namespace;
    let policies: Vec<ImagePolicy> = match policy {
        Some(name) => vec![session.get(name, &format!("imagepolicy {}", session.qualified(name))).await?],
        None => {
            let mut all: Vec<ImagePolicy> = session.list(&format!("imagepolicies in namespace {ns}")).await?;
            all.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            all
        }
    };
    if policies.is_empty() {
        return Ok(format!("no ImagePolicies in namespace {ns}\n"));
    }
    let releases: Vec<Release> = session.list(&format!("releases in namespace {ns}")).await?;
    let promotions: Vec<Promotion> = session.list(&format!("promotions in namespace {ns}")).await?;
    let views: Vec<PolicyView> = policies.iter().map(|p| policy_view(p, &releases, &promotions)).collect();
    let mut out = render::status(&views, render::now(), colour);
    if policy.is_none() {
        let known: Vec<&str> = policies.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
        let strays = releases.iter().filter(|r| !known.contains(&policy_of(&r.metadata, &r.spec.policy))).count();
        if strays > 0 {
            out.push_str(&format!("\n{strays} Release(s) name an ImagePolicy that does not exist in namespace {ns}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promotions::tests::{DIGEST, promotion, time};
    use tidegate_api::release::{ReasonKind, ReleaseReason, ScanSummary};
    use tidegate_api::{
        ANNOTATION_APPROVED_BY, ImagePolicySpec, LABEL_POLICY, PromotionPhase, PromotionStatus, ReleasePhase,
        ReleaseSpec, ReleaseStatus,
    };

    fn policy(name: &str) -> ImagePolicy {
        let spec: ImagePolicySpec = serde_json::from_value(serde_json::json!({
            "image": "registry.example.com/shop/app",
            "workloads": [],
        }))
        .expect("spec");
        let mut p = ImagePolicy::new(name, spec);
        p.metadata.namespace = Some("shop".into());
        p
    }

    fn release(name: &str, policy: &str, created: i64, phase: ReleasePhase) -> Release {
        let mut r = Release::new(
            name,
            ReleaseSpec {
                policy: policy.into(),
                reason: ReleaseReason {
                    kind: ReasonKind::Manual,
                    base_image: None,
                    vulnerabilities: None,
                    message: None,
                },
                source: None,
            },
        );
        r.metadata.creation_timestamp = Some(time(created));
        r.status = Some(ReleaseStatus {
            phase,
            digest: Some(DIGEST.into()),
            scan: Some(ScanSummary {
                blocking: 2,
                blocking_ids: vec!["CVE-2026-1".into(), "CVE-2026-2".into()],
                ..Default::default()
            }),
            ..Default::default()
        });
        r
    }

    #[test]
    fn releases_are_newest_first_with_their_promotions() {
        let releases = vec![
            release("old", "app", 100, ReleasePhase::Superseded),
            release("new", "app", 200, ReleasePhase::Verified),
            release("foreign", "other", 300, ReleasePhase::Verified),
        ];
        let mut approved = promotion("new-p", "app", Some(PromotionPhase::Approved));
        approved.spec.release = "new".into();
        approved.status = Some(PromotionStatus {
            phase: PromotionPhase::Approved,
            approved_by: vec!["bob".into()],
            ..Default::default()
        });
        approved.metadata.annotations = Some([(ANNOTATION_APPROVED_BY.to_string(), "bob,eve".to_string())].into());
        let mut waiting = promotion("old-p", "ignored-because-labelled", None);
        waiting.spec.release = "old".into();
        waiting.metadata.labels = Some([(LABEL_POLICY.to_string(), "app".to_string())].into());
        waiting.metadata.annotations = Some([(ANNOTATION_APPROVED_BY.to_string(), "alice".to_string())].into());
        let orphan = promotion("lost-p", "app", None);

        let view = policy_view(&policy("app"), &releases, &[approved, waiting, orphan]);
        let names: Vec<&str> = view.releases.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["new", "old", "lost-p-release (missing)"]);
        assert_eq!(view.releases[0].blocking, Some(2));
        assert_eq!(view.releases[0].blocking_ids, ["CVE-2026-1", "CVE-2026-2"], "what blocks is shown");
        let text = crate::render::status(std::slice::from_ref(&view), 1_000, false);
        assert!(text.contains("2 blocking (CVE-2026-1, CVE-2026-2)"), "{text}");
        assert_eq!(view.releases[0].reason, "Manual");
        assert_eq!(view.releases[0].phase, "Verified");
        assert_eq!(view.releases[0].promotions[0].approvers, ["bob"], "accepted approvers win");
        assert_eq!(view.releases[1].promotions[0].approvers, ["alice"], "else the annotation");
        assert_eq!(view.releases[1].promotions[0].phase, "AwaitingApproval");
        assert_eq!(view.releases[2].promotions[0].name, "lost-p");
    }
}
