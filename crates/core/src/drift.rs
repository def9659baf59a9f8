//! Production drift: a production workload that runs something other than what Tidegate last
//! deployed with an approved Promotion. In a namespace the production admission policy protects,
//! that happens only by break-glass (or by an administrator); elsewhere by any edit. Either way
//! it is reported on the policy and shown on the next Promotion.

use jiff::Timestamp;
use tidegate_api::PromotionPhase;
use tidegate_api::image_policy::ProductionDrift;

use crate::digest::Digest;

/// What a Promotion says about production, as far as drift is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionView {
    /// Its phase.
    pub phase: PromotionPhase,
    /// The promoted digest.
    pub digest: Digest,
    /// The digest it replaced.
    pub previous: Option<Digest>,
    /// When it changed production.
    pub promoted_at: Option<Timestamp>,
    /// Whether its rollback completed.
    pub rollback_done: bool,
}

/// What production should run, according to the Promotions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approved {
    /// No Promotion has changed production yet.
    Unknown,
    /// A Promotion is changing production right now: any difference is expected.
    Changing,
    /// The digest the newest production change left running.
    Digest(Digest),
}

/// The digest the newest Promotion that changed production left there.
pub fn approved(promotions: &[PromotionView]) -> Approved {
    let newest = promotions
        .iter()
        .filter(|p| p.promoted_at.is_some())
        .filter(|p| {
            matches!(
                p.phase,
                PromotionPhase::Promoting
                    | PromotionPhase::Monitoring
                    | PromotionPhase::Succeeded
                    | PromotionPhase::RolledBack
            )
        })
        .max_by_key(|p| p.promoted_at);
    match newest {
        None => Approved::Unknown,
        Some(p) if p.phase == PromotionPhase::Promoting => Approved::Changing,
        Some(p) if p.phase == PromotionPhase::RolledBack => match (&p.previous, p.rollback_done) {
            (Some(previous), true) => Approved::Digest(previous.clone()),
            _ => Approved::Changing,
        },
        Some(p) => Approved::Digest(p.digest.clone()),
    }
}

/// One production workload as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// `Kind namespace/name`.
    pub workload: String,
    /// The image its live version runs.
    pub image: Option<String>,
    /// `tidegate.dev/break-glass` on it (the reason), if set.
    pub break_glass: Option<String>,
    /// `tidegate.dev/break-glass-by` on it, if set.
    pub break_glass_by: Option<String>,
}

/// The digest of `repo@sha256:…`.
fn digest_of(image: &str) -> Option<Digest> {
    image.parse::<crate::ImageRef>().ok().and_then(|r| r.digest)
}

/// The workloads that drift from `approved`. With no approved digest yet, the workloads that
/// carry a break-glass mark; while production is changing, none.
pub fn drift(approved: &Approved, observed: &[Observed]) -> Vec<ProductionDrift> {
    let entry = |o: &Observed, approved: Option<&Digest>| ProductionDrift {
        workload: o.workload.clone(),
        image: o.image.clone(),
        approved_digest: approved.map(ToString::to_string),
        break_glass: o.break_glass.clone(),
        break_glass_by: o.break_glass_by.clone(),
    };
    match approved {
        Approved::Changing => Vec::new(),
        Approved::Unknown => observed.iter().filter(|o| o.break_glass.is_some()).map(|o| entry(o, None)).collect(),
        Approved::Digest(digest) => observed
            .iter()
            .filter(|o| o.image.as_deref().and_then(digest_of).as_ref() != Some(digest))
            .map(|o| entry(o, Some(digest)))
            .collect(),
    }
}

/// One line per drifting workload, for conditions and Events.
pub fn describe(drift: &[ProductionDrift]) -> String {
    let lines: Vec<String> = drift
        .iter()
        .map(|d| {
            let mut line = format!("{} runs {}", d.workload, d.image.as_deref().unwrap_or("no readable image"));
            if let Some(approved) = &d.approved_digest {
                line.push_str(&format!(", not the approved {approved}"));
            }
            match (&d.break_glass, &d.break_glass_by) {
                (Some(reason), Some(by)) => line.push_str(&format!(" (break-glass by {by}: {reason})")),
                (Some(reason), None) => line.push_str(&format!(" (break-glass: {reason})")),
                _ => line.push_str(" (changed outside Tidegate)"),
            }
            line
        })
        .collect();
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().expect("digest")
    }

    fn view(phase: PromotionPhase, d: char, previous: char, at: i64, rollback_done: bool) -> PromotionView {
        PromotionView {
            phase,
            digest: digest(d),
            previous: Some(digest(previous)),
            promoted_at: Some(Timestamp::from_second(at).expect("time")),
            rollback_done,
        }
    }

    fn observed(image: &str, glass: Option<&str>) -> Observed {
        Observed {
            workload: "Deployment shop/web".into(),
            image: Some(image.into()),
            break_glass: glass.map(Into::into),
            break_glass_by: glass.map(|_| "bob".into()),
        }
    }

    #[test]
    fn the_newest_production_change_sets_what_is_approved() {
        use PromotionPhase::{AwaitingApproval, Monitoring, Promoting, RolledBack, Succeeded};
        assert_eq!(approved(&[]), Approved::Unknown);
        assert_eq!(approved(&[view(AwaitingApproval, 'b', 'a', 10, false)]), Approved::Unknown);
        let done = view(Succeeded, 'b', 'a', 10, false);
        assert_eq!(approved(std::slice::from_ref(&done)), Approved::Digest(digest('b')));
        assert_eq!(approved(&[done.clone(), view(Monitoring, 'c', 'b', 20, false)]), Approved::Digest(digest('c')));
        assert_eq!(approved(&[done.clone(), view(Promoting, 'c', 'b', 20, false)]), Approved::Changing);
        assert_eq!(approved(&[done.clone(), view(RolledBack, 'c', 'b', 20, true)]), Approved::Digest(digest('b')));
        assert_eq!(approved(&[done, view(RolledBack, 'c', 'b', 20, false)]), Approved::Changing);
    }

    #[test]
    fn drift_is_what_differs_from_the_approved_digest() {
        let approved_b = Approved::Digest(digest('b'));
        let on_b = observed(&format!("r.io/app@{}", digest('b')), None);
        assert!(drift(&approved_b, std::slice::from_ref(&on_b)).is_empty());
        // A stale break-glass mark on a workload that runs the approved digest is not drift.
        assert!(drift(&approved_b, &[observed(&format!("r.io/app@{}", digest('b')), Some("old"))]).is_empty());

        let glass = observed(&format!("r.io/app@{}", digest('e')), Some("INC-1 hotfix"));
        let found = drift(&approved_b, &[on_b.clone(), glass]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].approved_digest, Some(digest('b').to_string()));
        assert_eq!(found[0].break_glass.as_deref(), Some("INC-1 hotfix"));
        let text = describe(&found);
        assert!(text.contains("break-glass by bob: INC-1 hotfix") && text.contains("not the approved"), "{text}");

        let tag = drift(&approved_b, &[observed("r.io/app:latest", None)]);
        assert!(describe(&tag).contains("changed outside Tidegate"), "{tag:?}");
        assert!(drift(&Approved::Changing, &[observed("r.io/app:latest", None)]).is_empty());
        assert_eq!(drift(&Approved::Unknown, &[on_b, observed("r.io/app:x", Some("why"))]).len(), 1);
    }
}
