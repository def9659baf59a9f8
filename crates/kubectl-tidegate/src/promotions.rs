//! Pure rules about Promotions: phases, policy membership, the approver list, and which
//! Promotion a rollback of a policy means. No I/O.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tidegate_api::{
    ANNOTATION_APPROVED_BY, ANNOTATION_REJECTED_BY, LABEL_POLICY, Promotion, PromotionPhase, approvers,
};

/// Phases after which a Promotion never changes again.
pub const TERMINAL: [PromotionPhase; 6] = [
    PromotionPhase::Succeeded,
    PromotionPhase::RolledBack,
    PromotionPhase::Rejected,
    PromotionPhase::Expired,
    PromotionPhase::Superseded,
    PromotionPhase::Failed,
];

/// Phases `history` lists as finished Promotions.
pub const FINISHED: [PromotionPhase; 4] =
    [PromotionPhase::Succeeded, PromotionPhase::RolledBack, PromotionPhase::Rejected, PromotionPhase::Expired];

/// Whether the phase is terminal.
pub fn is_terminal(phase: PromotionPhase) -> bool {
    TERMINAL.contains(&phase)
}

/// The phase of a Promotion; one without status is waiting for approval.
pub fn phase(promotion: &Promotion) -> PromotionPhase {
    promotion.status.as_ref().map(|s| s.phase).unwrap_or_default()
}

/// The name of a phase as the API writes it.
pub fn phase_name<P: serde::Serialize + std::fmt::Debug>(phase: P) -> String {
    match serde_json::to_value(&phase) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{phase:?}"),
    }
}

/// Whether an object (Release or Promotion) belongs to `policy`: by the `tidegate.dev/policy`
/// label the controller sets, or by `spec.policy` when the label is absent.
pub fn belongs_to(meta: &ObjectMeta, spec_policy: &str, policy: &str) -> bool {
    match meta.labels.as_ref().and_then(|labels| labels.get(LABEL_POLICY)) {
        Some(label) => label == policy,
        None => spec_policy == policy,
    }
}

/// The policy an object belongs to: the label, else `spec.policy`.
pub fn policy_of<'a>(meta: &'a ObjectMeta, spec_policy: &'a str) -> &'a str {
    meta.labels.as_ref().and_then(|labels| labels.get(LABEL_POLICY)).map_or(spec_policy, String::as_str)
}

/// An annotation's value, when set and not blank.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref().and_then(|a| a.get(key)).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The names recorded in `tidegate.dev/approved-by`, in order.
pub fn recorded_approvers(meta: &ObjectMeta) -> Vec<String> {
    annotation(meta, ANNOTATION_APPROVED_BY).map(approvers).unwrap_or_default()
}

/// Approvers to show: those the controller accepted (`status.approvedBy`), or else the names in
/// the annotation. The flag says whether they came from the status.
pub fn shown_approvers(promotion: &Promotion) -> (Vec<String>, bool) {
    match promotion.status.as_ref().map(|s| &s.approved_by) {
        Some(accepted) if !accepted.is_empty() => (accepted.clone(), true),
        _ => (recorded_approvers(&promotion.metadata), false),
    }
}

/// The approver list after `user` approves: `None` when `user` is already in it.
pub fn add_approver(current: &[String], user: &str) -> Option<Vec<String>> {
    if current.iter().any(|name| name == user) {
        return None;
    }
    let mut next = current.to_vec();
    next.push(user.to_string());
    Some(next)
}

/// What approving means for one Promotion as read now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalPlan {
    /// Write this list to the annotation.
    Append(Vec<String>),
    /// The user is already in the list; nothing to write.
    Already(Vec<String>),
}

/// Decides an approval by `user`, or refuses it with a message that says why.
pub fn plan_approval(promotion: &Promotion, qualified_name: &str, user: &str) -> Result<ApprovalPlan, String> {
    let phase = phase(promotion);
    if is_terminal(phase) {
        return Err(format!(
            "promotion {qualified_name} is {}; a finished Promotion cannot be approved (create a new Promotion instead)",
            phase_name(phase)
        ));
    }
    if let Some(rejected_by) = annotation(&promotion.metadata, ANNOTATION_REJECTED_BY) {
        return Err(format!(
            "promotion {qualified_name} was rejected by {rejected_by}; it cannot be approved (remove the {ANNOTATION_REJECTED_BY} annotation first if the rejection was a mistake)"
        ));
    }
    if promotion.spec.requested_by.as_deref() == Some(user) {
        return Err(format!("you ({user}) requested promotion {qualified_name}; somebody else must approve it"));
    }
    let current = recorded_approvers(&promotion.metadata);
    Ok(match add_approver(&current, user) {
        Some(next) => ApprovalPlan::Append(next),
        None => ApprovalPlan::Already(current),
    })
}

/// The annotation value for an approver list.
pub fn approvers_annotation(names: &[String]) -> String {
    names.join(",")
}

/// Phases in which a rollback can be asked for: the digest reached (or is reaching) production.
pub const ROLLBACK_PHASES: [PromotionPhase; 3] =
    [PromotionPhase::Promoting, PromotionPhase::Monitoring, PromotionPhase::Succeeded];

/// Refuses a rollback of a Promotion whose digest never reached production, or no longer runs
/// there (`production` is the policy's current production digest, when known).
pub fn check_rollback(promotion: &Promotion, qualified_name: &str, production: Option<&str>) -> Result<(), String> {
    let phase = phase(promotion);
    match phase {
        PromotionPhase::RolledBack => {
            return Err(format!("promotion {qualified_name} is already RolledBack"));
        }
        PromotionPhase::AwaitingApproval | PromotionPhase::Approved => {
            return Err(format!(
                "promotion {qualified_name} is {} and has not changed production; to stop it, use `kubectl tidegate reject {}`",
                phase_name(phase),
                promotion.metadata.name.as_deref().unwrap_or_default()
            ));
        }
        PromotionPhase::Failed => {
            return Err(format!(
                "promotion {qualified_name} is Failed: it could not be completed or rolled back automatically; see its conditions with `kubectl describe promotion {}`",
                promotion.metadata.name.as_deref().unwrap_or_default()
            ));
        }
        p if !ROLLBACK_PHASES.contains(&p) => {
            return Err(format!(
                "promotion {qualified_name} is {}; it never changed production, so there is nothing to roll back",
                phase_name(phase)
            ));
        }
        _ => {}
    }
    if phase == PromotionPhase::Succeeded
        && let Some(production) = production
        && production != promotion.spec.digest
    {
        return Err(format!(
            "promotion {qualified_name} deployed {} but production now runs {production}; roll back the Promotion that deployed it instead",
            promotion.spec.digest
        ));
    }
    Ok(())
}

/// When a Promotion last moved, in Unix seconds: the newest of its condition transitions,
/// `promotedAt`, `approvedAt` and its creation.
pub fn last_change(promotion: &Promotion) -> Option<i64> {
    let status = promotion.status.as_ref();
    let conditions = status.into_iter().flat_map(|s| s.conditions.iter()).map(|c| c.last_transition_time.0.as_second());
    let stamps = [
        status.and_then(|s| s.promoted_at.as_ref()),
        status.and_then(|s| s.approved_at.as_ref()),
        promotion.metadata.creation_timestamp.as_ref(),
    ];
    conditions.chain(stamps.into_iter().flatten().map(|t| t.0.as_second())).max()
}

fn created(promotion: &Promotion) -> Option<i64> {
    promotion.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second())
}

/// The Promotion a rollback of `policy` means: the one in Monitoring (the newest, if several),
/// or else the newest Succeeded one (by `promotedAt`, else creation).
pub fn rollback_target<'a>(policy: &str, promotions: &'a [Promotion]) -> Option<&'a Promotion> {
    let mine = || promotions.iter().filter(|p| belongs_to(&p.metadata, &p.spec.policy, policy));
    let newest = |p: &&Promotion| {
        let promoted = p.status.as_ref().and_then(|s| s.promoted_at.as_ref()).map(|t| t.0.as_second());
        (promoted.or_else(|| created(p)), created(p), p.metadata.name.clone())
    };
    mine()
        .filter(|p| phase(p) == PromotionPhase::Monitoring)
        .max_by_key(newest)
        .or_else(|| mine().filter(|p| phase(p) == PromotionPhase::Succeeded).max_by_key(newest))
}

/// Annotations as a map, for a patch.
pub fn annotations<const N: usize>(pairs: [(&str, String); N]) -> BTreeMap<String, String> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use tidegate_api::{PromotionSpec, PromotionStatus};

    pub(crate) const DIGEST: &str = "sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26";

    pub(crate) fn time(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid time"))
    }

    pub(crate) fn promotion(name: &str, policy: &str, phase: Option<PromotionPhase>) -> Promotion {
        let mut p = Promotion::new(
            name,
            PromotionSpec {
                policy: policy.into(),
                release: format!("{name}-release"),
                digest: DIGEST.into(),
                workloads: None,
                requested_by: None,
            },
        );
        p.metadata.namespace = Some("shop".into());
        p.status = phase.map(|phase| PromotionStatus { phase, ..Default::default() });
        p
    }

    fn annotate(p: &mut Promotion, key: &str, value: &str) {
        p.metadata.annotations.get_or_insert_with(Default::default).insert(key.into(), value.into());
    }

    #[test]
    fn approver_is_appended_once_in_order() {
        let none: Vec<String> = vec![];
        assert_eq!(add_approver(&none, "alice"), Some(vec!["alice".to_string()]));
        let one = vec!["alice".to_string()];
        assert_eq!(add_approver(&one, "bob"), Some(vec!["alice".to_string(), "bob".to_string()]));
        assert_eq!(add_approver(&one, "alice"), None);
        assert_eq!(approvers_annotation(&["alice".into(), "bob".into()]), "alice,bob");
    }

    #[test]
    fn approval_plan_reads_the_annotation_with_spaces_and_blanks() {
        let mut p = promotion("p", "shop-app", None);
        annotate(&mut p, ANNOTATION_APPROVED_BY, " alice , ,bob");
        assert_eq!(
            plan_approval(&p, "shop/p", "carol"),
            Ok(ApprovalPlan::Append(vec!["alice".into(), "bob".into(), "carol".into()]))
        );
        assert_eq!(plan_approval(&p, "shop/p", "bob"), Ok(ApprovalPlan::Already(vec!["alice".into(), "bob".into()])));
    }

    #[test]
    fn approval_is_refused_for_terminal_rejected_or_own_promotions() {
        for phase in TERMINAL {
            let p = promotion("p", "shop-app", Some(phase));
            let error = plan_approval(&p, "shop/p", "alice").expect_err("terminal");
            assert!(error.contains(&phase_name(phase)) && error.contains("shop/p"), "{error}");
        }
        for phase in [PromotionPhase::AwaitingApproval, PromotionPhase::Approved, PromotionPhase::Monitoring] {
            assert!(plan_approval(&promotion("p", "x", Some(phase)), "shop/p", "alice").is_ok());
        }
        let mut rejected = promotion("p", "shop-app", None);
        annotate(&mut rejected, ANNOTATION_REJECTED_BY, "carol");
        assert!(plan_approval(&rejected, "shop/p", "alice").expect_err("rejected").contains("rejected by carol"));
        let mut own = promotion("p", "shop-app", None);
        own.spec.requested_by = Some("alice".into());
        assert!(plan_approval(&own, "shop/p", "alice").expect_err("own").contains("somebody else"));
        assert!(plan_approval(&own, "shop/p", "bob").is_ok());
    }

    #[test]
    fn membership_prefers_the_label() {
        let mut p = promotion("p", "a", None);
        assert!(belongs_to(&p.metadata, &p.spec.policy, "a"));
        p.metadata.labels = Some([(LABEL_POLICY.to_string(), "b".to_string())].into());
        assert!(belongs_to(&p.metadata, &p.spec.policy, "b"));
        assert!(!belongs_to(&p.metadata, &p.spec.policy, "a"));
        assert_eq!(policy_of(&p.metadata, &p.spec.policy), "b");
    }

    #[test]
    fn rollback_prefers_monitoring_then_newest_succeeded() {
        let mut old = promotion("old", "app", Some(PromotionPhase::Succeeded));
        old.status.as_mut().expect("status").promoted_at = Some(time(1_000));
        let mut new = promotion("new", "app", Some(PromotionPhase::Succeeded));
        new.status.as_mut().expect("status").promoted_at = Some(time(2_000));
        let other = promotion("other", "elsewhere", Some(PromotionPhase::Monitoring));
        let waiting = promotion("waiting", "app", None);
        let list = vec![old.clone(), new.clone(), other.clone(), waiting];
        assert_eq!(rollback_target("app", &list).and_then(|p| p.metadata.name.as_deref()), Some("new"));
        let monitoring = promotion("monitoring", "app", Some(PromotionPhase::Monitoring));
        let list = vec![old, monitoring, new, other];
        assert_eq!(rollback_target("app", &list).and_then(|p| p.metadata.name.as_deref()), Some("monitoring"));
        assert!(rollback_target("nothing", &list).is_none());
    }

    #[test]
    fn rollback_is_refused_before_production_and_after_it_moved_on() {
        let waiting = promotion("p", "app", None);
        assert!(check_rollback(&waiting, "shop/p", None).expect_err("waiting").contains("kubectl tidegate reject p"));
        let rejected = promotion("p", "app", Some(PromotionPhase::Rejected));
        assert!(check_rollback(&rejected, "shop/p", None).expect_err("rejected").contains("nothing to roll back"));
        let done = promotion("p", "app", Some(PromotionPhase::RolledBack));
        assert!(check_rollback(&done, "shop/p", None).expect_err("done").contains("already RolledBack"));
        let succeeded = promotion("p", "app", Some(PromotionPhase::Succeeded));
        assert!(check_rollback(&succeeded, "shop/p", Some(DIGEST)).is_ok());
        assert!(check_rollback(&succeeded, "shop/p", None).is_ok());
        let moved = check_rollback(&succeeded, "shop/p", Some("sha256:0000")).expect_err("moved on");
        assert!(moved.contains("production now runs sha256:0000"), "{moved}");
        let monitoring = promotion("p", "app", Some(PromotionPhase::Monitoring));
        assert!(check_rollback(&monitoring, "shop/p", Some("sha256:0000")).is_ok());
    }

    #[test]
    fn last_change_takes_the_newest_stamp() {
        let mut p = promotion("p", "app", Some(PromotionPhase::Succeeded));
        p.metadata.creation_timestamp = Some(time(100));
        assert_eq!(last_change(&p), Some(100));
        p.status.as_mut().expect("status").promoted_at = Some(time(300));
        p.status.as_mut().expect("status").approved_at = Some(time(200));
        assert_eq!(last_change(&p), Some(300));
    }

    #[test]
    fn phases_are_named_as_in_the_api() {
        assert_eq!(phase_name(PromotionPhase::AwaitingApproval), "AwaitingApproval");
        assert_eq!(phase(&promotion("p", "a", None)), PromotionPhase::AwaitingApproval);
    }
}
