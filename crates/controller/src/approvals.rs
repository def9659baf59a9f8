//! What the controller itself establishes about the people acting on a Promotion: who wrote each
//! approval, rejection and rollback request, whether they hold the `approve` verb now, when each
//! was first seen, and who may not approve because their action produced the candidate.

use std::collections::BTreeSet;
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use tidegate_api::{
    ANNOTATION_APPROVED_BY, ANNOTATION_APPROVER_GROUPS, ANNOTATION_CREATED_BY, ANNOTATION_REJECTED_BY,
    ANNOTATION_REJECTER_GROUPS, ANNOTATION_ROLLBACK_GROUPS, ANNOTATION_ROLLBACK_REQUESTED_BY, ANNOTATION_TRIGGERED_BY,
    AuditAction, AuditEntry, GROUP, Promotion, PromotionPhase, Release, approvers, recorded_groups,
};
use tidegate_core::approval::{Evidence, Right};
use tidegate_providers::authz::Subject;

use crate::context::Context;
use crate::error::Result;

/// The verb that approving, rejecting and asking for a rollback need.
const APPROVE: &str = "approve";

/// Everything established about the people acting on one Promotion.
#[derive(Debug, Default)]
pub struct People {
    /// One entry per name in `approved-by`, in order; empty when approvals were not asked
    /// about ([`Approvals::NotNeeded`]).
    pub approvals: Vec<Evidence>,
    /// Users who may not approve.
    pub excluded: BTreeSet<String>,
    /// Why recorded identities cannot be trusted at all, if so.
    pub unprovable: Option<String>,
    /// A rejection by a user who holds the right now.
    pub rejected_by: Option<String>,
    /// A rollback request by a user who holds the right now.
    pub rollback_requested_by: Option<String>,
    /// Actions that do not count, and why (for the condition message).
    pub refused: Vec<String>,
    /// New audit entries seen this time.
    pub new_entries: Vec<AuditEntry>,
}

fn annotation<'a>(object: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    object.annotations().get(key).map(String::as_str).filter(|v| !v.trim().is_empty())
}

/// Adds to `history` an entry for each action not yet recorded; returns the new entries.
pub fn record(promotion: &Promotion, history: &[AuditEntry], now: Timestamp) -> Vec<AuditEntry> {
    let mut seen: BTreeSet<(AuditAction, String)> = history.iter().map(|e| (e.action, e.user.clone())).collect();
    let mut new = Vec::new();
    let names = annotation(promotion, ANNOTATION_APPROVED_BY).map(approvers).unwrap_or_default();
    let actions = names
        .into_iter()
        .map(|n| (AuditAction::Approved, n))
        .chain(annotation(promotion, ANNOTATION_REJECTED_BY).map(|u| (AuditAction::Rejected, u.trim().to_string())))
        .chain(
            annotation(promotion, ANNOTATION_ROLLBACK_REQUESTED_BY)
                .map(|u| (AuditAction::RollbackRequested, u.trim().to_string())),
        );
    for (action, user) in actions {
        if seen.insert((action, user.clone())) {
            new.push(AuditEntry { action, user, at: Time(now) });
        }
    }
    new
}

/// Whether the approvers' rights are asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Approvals {
    /// Each approver's right is proven now (one access review per approver and namespace): the
    /// candidate may be written to production for the first time in this pass, or a record names
    /// the approvers.
    Prove,
    /// The rollout goes on (`Promoting`, polled every few seconds and woken by every change of
    /// its workloads): a right this Promotion proved less than [`crate::proofs::REUSE_FOR`] ago
    /// stands; any other is proven now. Each poll would otherwise ask the API server once per
    /// approver and namespace, and a morning's rollouts would queue the next approvals behind
    /// those reviews. A right found missing ends the reuse at once.
    ProveOrReuse,
    /// Nothing this pass does depends on who approved (the rollout is done; only rollbacks and
    /// records of them can follow), so no approver is asked about.
    NotNeeded,
}

impl Approvals {
    /// Whether the approvers' rights matter to a Promotion in `phase`: not once its rollout is
    /// done (monitoring, success, a rollback to what ran before: nothing that follows depends on
    /// who approved, and its Approved condition stays as it was); before production changes and
    /// while the rollout goes on every write is gated on approvals that hold now, and a Promotion
    /// that ended without changing production says what its approvals came to.
    pub fn for_phase(phase: PromotionPhase) -> Self {
        match phase {
            PromotionPhase::Monitoring | PromotionPhase::Succeeded | PromotionPhase::RolledBack => Self::NotNeeded,
            PromotionPhase::Promoting => Self::ProveOrReuse,
            _ => Self::Prove,
        }
    }
}

/// Establishes the evidence for `promotion`, whose production targets lie in
/// `target_namespaces`; `history` already includes this pass's new entries. Rejections and
/// rollback requests are always proven.
pub async fn establish(
    ctx: &Context,
    promotion: &Promotion,
    release: Option<&Release>,
    target_namespaces: &BTreeSet<String>,
    history: &[AuditEntry],
    approvals: Approvals,
) -> Result<People> {
    let mut people = People::default();

    // Nobody whose action produced the candidate approves it.
    people.excluded.extend(promotion.spec.requested_by.iter().cloned());
    if let Some(release) = release {
        for key in [ANNOTATION_CREATED_BY, ANNOTATION_TRIGGERED_BY] {
            if let Some(user) = annotation(release, key) {
                people.excluded.insert(user.trim().to_string());
            }
        }
    }
    // The controller opens Promotions but is nobody's approver either.
    people.excluded.insert(ctx.identity.clone());

    // Recorded identities mean something only under the shipped admission policies, installed
    // before the Promotion (and its Release) existed.
    let oldest = [promotion.creation_timestamp(), release.and_then(|r| r.creation_timestamp())]
        .into_iter()
        .flatten()
        .map(|t| t.0)
        .min();
    if let Err(why) = ctx.authorizer.admission_in_force_for(&identity_key(promotion, release), oldest).await? {
        people.unprovable = Some(why);
    }
    if release.is_some_and(|r| annotation(r, ANNOTATION_CREATED_BY).is_none()) && people.unprovable.is_none() {
        people.unprovable =
            Some(format!("Release {} has no recorded creator ({ANNOTATION_CREATED_BY})", promotion.spec.release));
    }

    let seen_at = |action: AuditAction, user: &str| {
        history.iter().find(|e| e.action == action && e.user == user).map(|e| e.at.0).unwrap_or_else(|| ctx.now())
    };
    let names = match approvals {
        Approvals::Prove | Approvals::ProveOrReuse => {
            annotation(promotion, ANNOTATION_APPROVED_BY).map(approvers).unwrap_or_default()
        }
        Approvals::NotNeeded => Vec::new(),
    };
    let groups = recorded_groups(annotation(promotion, ANNOTATION_APPROVER_GROUPS).unwrap_or_default());
    for (i, user) in names.iter().enumerate() {
        let right = match groups.get(i).filter(|_| groups.len() == names.len()) {
            None => Right::Lacks(format!(
                "the groups of the approvers were not recorded ({ANNOTATION_APPROVER_GROUPS} has {} entries for {} \
                 approvers)",
                groups.len(),
                names.len()
            )),
            Some(groups) => {
                let subject = Subject { user: user.clone(), groups: groups.clone() };
                let reuse = approvals == Approvals::ProveOrReuse;
                right(ctx, &subject, promotion, target_namespaces, reuse).await?
            }
        };
        people.approvals.push(Evidence { user: user.clone(), seen_at: seen_at(AuditAction::Approved, user), right });
    }

    for (key, groups_key, slot) in [
        (ANNOTATION_REJECTED_BY, ANNOTATION_REJECTER_GROUPS, &mut people.rejected_by),
        (ANNOTATION_ROLLBACK_REQUESTED_BY, ANNOTATION_ROLLBACK_GROUPS, &mut people.rollback_requested_by),
    ] {
        let Some(user) = annotation(promotion, key).map(|u| u.trim().to_string()) else { continue };
        if let Some(why) = &people.unprovable {
            people.refused.push(format!("{key}={user} does not count: {why}"));
            continue;
        }
        let groups = recorded_groups(annotation(promotion, groups_key).unwrap_or_default());
        let subject = Subject { user: user.clone(), groups: groups.into_iter().next().unwrap_or_default() };
        // Always proven now: a rejection or a rollback request changes what production runs.
        match right(ctx, &subject, promotion, target_namespaces, false).await? {
            Right::Holds => *slot = Some(user),
            Right::Lacks(why) => people.refused.push(format!("{key}={user} does not count: {why}")),
        }
    }
    Ok(people)
}

/// Names the identities recorded on `promotion` and `release`: their uids and every annotation,
/// so that any new or changed annotation is proven afresh.
fn identity_key(promotion: &Promotion, release: Option<&Release>) -> String {
    let part = |uid: Option<String>, annotations: &std::collections::BTreeMap<String, String>| serde_json::json!({ "uid": uid, "annotations": annotations });
    serde_json::json!(
        [part(promotion.uid(), promotion.annotations()), release.map(|r| part(r.uid(), r.annotations())),]
    )
    .to_string()
}

/// Whether `subject` holds `approve` on this Promotion and on Promotions in every namespace
/// the Promotion changes: an approver bound in one namespace does not approve another's
/// production. With `reuse`, what this Promotion proved lately stands ([`Approvals::ProveOrReuse`]).
async fn right(
    ctx: &Context,
    subject: &Subject,
    promotion: &Promotion,
    target_namespaces: &BTreeSet<String>,
    reuse: bool,
) -> Result<Right> {
    let namespace = promotion.namespace().unwrap_or_default();
    let name = promotion.name_any();
    let uid = promotion.uid();
    if let Err(why) = may_approve(ctx, subject, uid.as_deref(), reuse, &namespace, Some(&name)).await? {
        return Ok(Right::Lacks(why));
    }
    for target in target_namespaces.iter().filter(|t| **t != namespace) {
        if let Err(why) = may_approve(ctx, subject, uid.as_deref(), reuse, target, None).await? {
            return Ok(Right::Lacks(format!("{why} (production is there)")));
        }
    }
    Ok(Right::Holds)
}

/// Who was asked about, and where: the user, the groups admission recorded, the namespace and
/// the Promotion's name (none for a namespace where production lies).
type Asked = (String, Vec<String>, String, Option<String>);

/// Rights to approve proven lately, by the uid of the Promotion that asked.
pub type RightProofs = crate::proofs::Proofs<Asked>;

/// Whether `subject` may approve Promotions in `namespace` (`name`: this one): asked of the API
/// server, or with `reuse`, what Promotion `uid` proved lately. An answer is kept for that
/// Promotion only; a refusal forgets everything it proved.
async fn may_approve(
    ctx: &Context,
    subject: &Subject,
    uid: Option<&str>,
    reuse: bool,
    namespace: &str,
    name: Option<&str>,
) -> Result<std::result::Result<(), String>> {
    let asked: Asked = (subject.user.clone(), subject.groups.clone(), namespace.to_string(), name.map(str::to_string));
    let now = Instant::now();
    if reuse && uid.is_some_and(|uid| ctx.right_proofs.recent(uid, &asked, now)) {
        return Ok(Ok(()));
    }
    let answer = ctx.authorizer.may(subject, APPROVE, GROUP, "promotions", namespace, name).await?;
    if let Some(uid) = uid {
        match &answer {
            Ok(()) => ctx.right_proofs.proven(uid, &asked, now),
            Err(_) => ctx.right_proofs.forget(uid),
        }
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn promotion(annotations: &[(&str, &str)]) -> Promotion {
        let mut p: Promotion = serde_json::from_value(serde_json::json!({
            "apiVersion": "tidegate.dev/v1alpha1", "kind": "Promotion",
            "metadata": {"name": "p", "namespace": "shop", "uid": "u-1"},
            "spec": {"policy": "web", "release": "web-1", "digest": format!("sha256:{}", "a".repeat(64))}
        }))
        .expect("promotion");
        for (k, v) in annotations {
            p.annotations_mut().insert((*k).to_string(), (*v).to_string());
        }
        p
    }

    #[test]
    fn every_recorded_identity_is_part_of_the_key() {
        let plain = identity_key(&promotion(&[]), None);
        let approved = identity_key(&promotion(&[(ANNOTATION_APPROVED_BY, "alice")]), None);
        assert_ne!(plain, approved, "a new approval is proven afresh");
        let groups = identity_key(
            &promotion(&[(ANNOTATION_APPROVED_BY, "alice"), (ANNOTATION_APPROVER_GROUPS, "[[\"x\"]]")]),
            None,
        );
        assert_ne!(approved, groups, "changed groups are proven afresh");
        assert_eq!(approved, identity_key(&promotion(&[(ANNOTATION_APPROVED_BY, "alice")]), None), "same identities");
        let mut other = promotion(&[(ANNOTATION_APPROVED_BY, "alice")]);
        other.metadata.uid = Some("u-2".into());
        assert_ne!(approved, identity_key(&other, None), "a recreated Promotion is another object");
    }
}
