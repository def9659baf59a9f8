//! Approval rules: which recorded approvals count, how many distinct approvers are needed, how
//! long each approval lasts.
//!
//! The controller does not take the approval annotation's word for anything. For every name it
//! establishes, before it acts, the evidence in [`Evidence`]: that the name was written by that
//! user (the shipped admission policies are installed, unchanged, and older than the Promotion),
//! that the user holds the `approve` verb *now* (a SubjectAccessReview with the user's recorded
//! groups), and when the approval was first seen. This module decides what that evidence adds up
//! to; it never assumes a right the evidence does not show.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;

/// The rules a Promotion is held to (frozen when it opened; see `PromotionStatus.rules`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalRules {
    /// Distinct valid approvers needed.
    pub required: usize,
    /// How long each approval stays valid, counted from that approval.
    pub valid_for: Duration,
}

impl ApprovalRules {
    /// The stricter of two rule sets: more approvers, shorter validity. A Promotion is held to
    /// its frozen rules, or to the current policy's where those are stricter, so neither a later
    /// policy edit nor a rewritten status can loosen them.
    pub fn stricter(&self, other: &Self) -> Self {
        Self { required: self.required.max(other.required), valid_for: self.valid_for.min(other.valid_for) }
    }
}

/// Whether a user holds the `approve` verb right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Right {
    /// The SubjectAccessReviews allowed it.
    Holds,
    /// It does not (or could not be shown); the text says why.
    Lacks(String),
}

/// What the controller established about one name in the `approved-by` annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The user name.
    pub user: String,
    /// When the approval was first seen (the audit history entry).
    pub seen_at: Timestamp,
    /// The user's right to approve this Promotion and its production targets, now.
    pub right: Right,
}

/// What is known about the approvals of one Promotion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApprovalFacts<'a> {
    /// One entry per name in the `approved-by` annotation, in order.
    pub approvals: &'a [Evidence],
    /// Users whose action produced the candidate or asked for the Promotion (the Promotion's
    /// requester, the Release's creator, the user who triggered the Release). None of them
    /// approves this Promotion.
    pub excluded: &'a BTreeSet<String>,
    /// Set when the controller cannot establish who wrote the approvals at all (the admission
    /// policies that record and check them are missing, changed, or newer than the Promotion).
    pub unprovable: Option<String>,
}

/// Why a name in the annotation does not count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ignored {
    /// The user asked for the Promotion or produced the candidate.
    SelfApproval(String),
    /// The user does not (or no longer) hold the `approve` verb.
    NotAuthorized(String, String),
    /// The name appears more than once.
    Duplicate(String),
    /// The approval is older than the rules allow.
    Expired(String, Timestamp),
}

impl std::fmt::Display for Ignored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SelfApproval(u) => {
                write!(f, "{u} requested this promotion or produced its candidate and cannot approve it")
            }
            Self::NotAuthorized(u, why) => write!(f, "{u} may not approve now: {why}"),
            Self::Duplicate(u) => write!(f, "{u} approved more than once; counted once"),
            Self::Expired(u, at) => write!(f, "the approval by {u} (seen {at}) has expired"),
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
    /// Enough valid approvals, each within its own validity.
    Approved {
        /// The valid distinct approvers, in order.
        approvers: Vec<String>,
        /// Names that do not count, and why.
        ignored: Vec<Ignored>,
    },
    /// Too few valid approvals remain because some expired: a new Promotion is needed (an
    /// approver cannot add their name twice).
    Expired {
        /// The approver whose approval expired first.
        user: String,
        /// When that approval was seen.
        approved_at: Timestamp,
    },
    /// The controller cannot establish who wrote the approvals; nothing counts.
    Unprovable(String),
}

impl ApprovalDecision {
    /// Whether the Promotion may act now.
    pub fn is_approved(&self) -> bool {
        matches!(self, Self::Approved { .. })
    }
}

/// Applies the rules at time `now`.
pub fn evaluate(facts: &ApprovalFacts<'_>, rules: &ApprovalRules, now: Timestamp) -> ApprovalDecision {
    if let Some(why) = &facts.unprovable {
        return ApprovalDecision::Unprovable(why.clone());
    }
    let mut valid: Vec<String> = Vec::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut ignored = Vec::new();
    for evidence in facts.approvals {
        let name = evidence.user.as_str();
        if !seen.insert(name) {
            ignored.push(Ignored::Duplicate(name.to_string()));
        } else if facts.excluded.contains(name) {
            ignored.push(Ignored::SelfApproval(name.to_string()));
        } else if let Right::Lacks(why) = &evidence.right {
            ignored.push(Ignored::NotAuthorized(name.to_string(), why.clone()));
        } else if expired(evidence.seen_at, rules.valid_for, now) {
            ignored.push(Ignored::Expired(name.to_string(), evidence.seen_at));
        } else {
            valid.push(name.to_string());
        }
    }
    let required = rules.required.max(1);
    if valid.len() >= required {
        return ApprovalDecision::Approved { approvers: valid, ignored };
    }
    if let Some((user, at)) = ignored.iter().find_map(|i| match i {
        Ignored::Expired(u, at) => Some((u.clone(), *at)),
        _ => None,
    }) {
        return ApprovalDecision::Expired { user, approved_at: at };
    }
    ApprovalDecision::Pending { valid, required, ignored }
}

fn expired(seen_at: Timestamp, valid_for: Duration, now: Timestamp) -> bool {
    let age = now.duration_since(seen_at);
    age.is_positive() && age.unsigned_abs() > valid_for
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(user: &str, at: Timestamp) -> Evidence {
        Evidence { user: user.into(), seen_at: at, right: Right::Holds }
    }

    fn rules(required: usize) -> ApprovalRules {
        ApprovalRules { required, valid_for: Duration::from_secs(3600) }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn counts_distinct_authorized_non_excluded() {
        let t = at(0);
        let approvals = vec![
            holds("carol", t),
            holds("alice", t),
            holds("alice", t),
            Evidence { user: "mallory".into(), seen_at: t, right: Right::Lacks("no approve verb".into()) },
            holds("bob", t),
        ];
        let excluded: BTreeSet<String> = ["carol".to_string()].into();
        let facts = ApprovalFacts { approvals: &approvals, excluded: &excluded, unprovable: None };
        match evaluate(&facts, &rules(2), t) {
            ApprovalDecision::Approved { approvers, ignored } => {
                assert_eq!(approvers, ["alice", "bob"]);
                assert_eq!(
                    ignored,
                    [
                        Ignored::SelfApproval("carol".into()),
                        Ignored::Duplicate("alice".into()),
                        Ignored::NotAuthorized("mallory".into(), "no approve verb".into())
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(evaluate(&facts, &rules(3), t), ApprovalDecision::Pending { required: 3, .. }));
    }

    #[test]
    fn each_approval_expires_on_its_own() {
        let approvals = vec![holds("alice", at(0)), holds("bob", at(1800))];
        let excluded = BTreeSet::new();
        let facts = ApprovalFacts { approvals: &approvals, excluded: &excluded, unprovable: None };
        assert!(evaluate(&facts, &rules(2), at(3600)).is_approved());
        // Alice's approval is 1 s too old, though Bob's (the one that completed the count) is fresh.
        assert_eq!(
            evaluate(&facts, &rules(2), at(3601)),
            ApprovalDecision::Expired { user: "alice".into(), approved_at: at(0) }
        );
        assert!(evaluate(&facts, &rules(1), at(3601)).is_approved(), "bob alone still suffices for one");
    }

    #[test]
    fn nothing_counts_when_authorship_is_unprovable() {
        let approvals = vec![holds("alice", at(0)), holds("bob", at(0))];
        let excluded = BTreeSet::new();
        let facts =
            ApprovalFacts { approvals: &approvals, excluded: &excluded, unprovable: Some("policy missing".into()) };
        assert_eq!(evaluate(&facts, &rules(1), at(0)), ApprovalDecision::Unprovable("policy missing".into()));
    }

    #[test]
    fn zero_required_still_needs_one() {
        let excluded = BTreeSet::new();
        let facts = ApprovalFacts { approvals: &[], excluded: &excluded, unprovable: None };
        assert!(!evaluate(&facts, &rules(0), at(0)).is_approved());
    }

    #[test]
    fn stricter_rules_win() {
        let frozen = ApprovalRules { required: 2, valid_for: Duration::from_secs(3600) };
        let lowered = ApprovalRules { required: 1, valid_for: Duration::from_secs(7200) };
        assert_eq!(frozen.stricter(&lowered), frozen);
        let raised = ApprovalRules { required: 3, valid_for: Duration::from_secs(600) };
        assert_eq!(frozen.stricter(&raised), raised);
    }
}
