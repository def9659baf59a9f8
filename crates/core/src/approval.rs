//! Approval rules: who may approve, how many distinct approvers, how long an approval lasts.
//!
//! The admission policy already refuses forged names, self-approval and approvers without the
//! `approve` verb. The controller re-checks all of it here before it acts, because rights can be
//! revoked after an approval was recorded and because a policy can be uninstalled.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;

/// The rules from `ImagePolicy.spec.promotion`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRules {
    /// Distinct valid approvers needed.
    pub required: usize,
    /// How long an approval stays valid once it is complete.
    pub valid_for: Duration,
}

/// What is known about the approvals of one Promotion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalFacts<'a> {
    /// Names from the `approved-by` annotation, in order.
    pub approvers: &'a [String],
    /// `spec.requestedBy`, who may not approve.
    pub requested_by: Option<&'a str>,
    /// Approvers that currently hold the `approve` verb (from SubjectAccessReviews).
    pub authorized: &'a BTreeSet<String>,
    /// When the approvals first became sufficient (`status.approvedAt`), if they did.
    pub approved_at: Option<Timestamp>,
}

/// Why a name in the annotation does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// The user requested the Promotion.
    SelfApproval(String),
    /// The user does not (or no longer) hold the `approve` verb.
    NotAuthorized(String),
    /// The name appears more than once.
    Duplicate(String),
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SelfApproval(u) => write!(f, "{u} requested this promotion and cannot approve it"),
            Self::NotAuthorized(u) => write!(f, "{u} does not hold the approve verb on promotions.tidegate.dev"),
            Self::Duplicate(u) => write!(f, "{u} approved more than once; counted once"),
        }
    }
}

/// The outcome of the approval rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalDecision {
    /// Not enough valid approvals yet.
    Pending {
        /// Valid distinct approvers so far.
        valid: Vec<String>,
        /// Approvers needed.
        required: usize,
        /// Names that do not count, and why.
        ignored: Vec<Ignored>,
    },
    /// Enough valid approvals, still within their validity.
    Approved {
        /// The valid distinct approvers, in order.
        approvers: Vec<String>,
        /// Names that do not count, and why.
        ignored: Vec<Ignored>,
    },
    /// The approvals were sufficient but are older than the policy allows.
    Expired {
        /// When they became sufficient.
        approved_at: Timestamp,
    },
}

impl ApprovalDecision {
    /// Whether the Promotion may act now.
    pub fn is_approved(&self) -> bool {
        matches!(self, Self::Approved { .. })
    }
}

/// Applies the rules at time `now`.
pub fn evaluate(facts: &ApprovalFacts<'_>, rules: &ApprovalRules, now: Timestamp) -> ApprovalDecision {
    let mut valid: Vec<String> = Vec::new();
    let mut ignored = Vec::new();
    for name in facts.approvers {
        if valid.contains(name) || ignored.iter().any(|i| matches!(i, Ignored::Duplicate(n) if n == name)) {
            ignored.push(Ignored::Duplicate(name.clone()));
        } else if facts.requested_by == Some(name.as_str()) {
            ignored.push(Ignored::SelfApproval(name.clone()));
        } else if !facts.authorized.contains(name) {
            ignored.push(Ignored::NotAuthorized(name.clone()));
        } else {
            valid.push(name.clone());
        }
    }
    let required = rules.required.max(1);
    if valid.len() < required {
        return ApprovalDecision::Pending { valid, required, ignored };
    }
    if let Some(approved_at) = facts.approved_at {
        let age = now.duration_since(approved_at);
        if age.is_positive() && age.unsigned_abs() > rules.valid_for {
            return ApprovalDecision::Expired { approved_at };
        }
    }
    ApprovalDecision::Approved { approvers: valid, ignored }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn rules(required: usize) -> ApprovalRules {
        ApprovalRules { required, valid_for: Duration::from_secs(3600) }
    }

    #[test]
    fn counts_distinct_authorized_non_requesters() {
        let approvers = names(&["carol", "alice", "alice", "mallory", "bob"]);
        let authorized: BTreeSet<String> = names(&["alice", "bob", "carol"]).into_iter().collect();
        let facts = ApprovalFacts {
            approvers: &approvers,
            requested_by: Some("carol"),
            authorized: &authorized,
            approved_at: None,
        };
        let now = Timestamp::UNIX_EPOCH;
        match evaluate(&facts, &rules(2), now) {
            ApprovalDecision::Approved { approvers, ignored } => {
                assert_eq!(approvers, ["alice", "bob"]);
                assert_eq!(
                    ignored,
                    [
                        Ignored::SelfApproval("carol".into()),
                        Ignored::Duplicate("alice".into()),
                        Ignored::NotAuthorized("mallory".into())
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(evaluate(&facts, &rules(3), now), ApprovalDecision::Pending { required: 3, .. }));
    }

    #[test]
    fn approvals_expire() {
        let approvers = names(&["alice"]);
        let authorized: BTreeSet<String> = approvers.iter().cloned().collect();
        let at = Timestamp::UNIX_EPOCH;
        let facts =
            ApprovalFacts { approvers: &approvers, requested_by: None, authorized: &authorized, approved_at: Some(at) };
        let just_in = at.checked_add(jiff::SignedDuration::from_secs(3600)).unwrap();
        let too_late = at.checked_add(jiff::SignedDuration::from_secs(3601)).unwrap();
        assert!(evaluate(&facts, &rules(1), just_in).is_approved());
        assert_eq!(evaluate(&facts, &rules(1), too_late), ApprovalDecision::Expired { approved_at: at });
    }

    #[test]
    fn zero_required_still_needs_one() {
        let authorized = BTreeSet::new();
        let facts = ApprovalFacts { approvers: &[], requested_by: None, authorized: &authorized, approved_at: None };
        assert!(!evaluate(&facts, &rules(0), Timestamp::UNIX_EPOCH).is_approved());
    }
}
