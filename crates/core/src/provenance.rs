//! The promotion record: an in-toto statement about one digest that says how it got to
//! production (or why it did not, or how it left). The controller attaches it to the digest as an
//! OCI referrer and signs it with the image's Notary Project key, so the registry keeps the
//! history of a digest even when the cluster that promoted it is gone.
//!
//! [`statement`] derives the record only from what the Promotion and its Release already say
//! (recorded identities, recorded times), so the same facts give the same bytes: attaching again
//! after a crash produces the same record, not a second one. [`Statement::parse`] is what readers
//! use: it refuses a statement about another digest or of another type.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tidegate_api::{AuditAction, Promotion, PromotionStatus, RecordEvent, Release};

use crate::digest::Digest;

/// `_type` of an in-toto statement, version 1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// `predicateType` of Tidegate's promotion record.
pub const PREDICATE_TYPE: &str = "https://tidegate.dev/attestations/promotion/v1";
/// Media type of the record's layer and artifact type of its manifest.
pub const MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// An in-toto statement whose predicate is a [`PromotionRecord`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: String,
    /// The image digest the record is about (one subject).
    pub subject: Vec<Subject>,
    /// [`PREDICATE_TYPE`].
    pub predicate_type: String,
    /// What happened.
    pub predicate: PromotionRecord,
}

/// A subject of a statement: the repository and the digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Subject {
    /// The repository (`registry/name`).
    pub name: String,
    /// Algorithm → hex digest.
    pub digest: BTreeMap<String, String>,
}

/// How a digest got to production, or why it did not, or how it left.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromotionRecord {
    /// What happened.
    pub event: RecordEvent,
    /// When it happened (RFC 3339).
    pub at: String,
    /// The ImagePolicy.
    pub policy: PolicyRef,
    /// The Promotion.
    pub promotion: ObjectRef,
    /// The Release that produced the digest, when it still existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRecord>,
    /// The scan of the digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanRecord>,
    /// The staging tests and their results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TestRecord>,
    /// Each approver (authenticated by the API server) and when the controller saw the approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Actor>,
    /// Who rejected it and why, for `Rejected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    /// How production left the digest, for `RolledBack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
    /// What production ran, for `Promoted` and `RolledBack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub production: Option<Production>,
}

/// A namespaced object.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ObjectRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID, which tells apart two objects of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// The policy and the repository it promotes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PolicyRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The repository (`spec.image`).
    pub image: String,
}

/// Why the digest was built, and how.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRecord {
    /// Name of the Release.
    pub name: String,
    /// UID of the Release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Its trigger (`BaseImageUpdated`, `VulnerabilitiesFound`, `NewBuild`, `Schedule`, `Manual`).
    pub trigger: String,
    /// The base image change, for `BaseImageUpdated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<BaseChange>,
    /// Vulnerability ids that started it, for `VulnerabilitiesFound`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vulnerabilities: Vec<String>,
    /// An externally built source image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The build run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// Old and new base digests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BaseChange {
    /// The watched reference.
    pub reference: String,
    /// The digest the previous image was built on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_digest: Option<String>,
    /// The digest this one is built on.
    pub new_digest: String,
}

/// The scan result summary.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScanRecord {
    /// The scanner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner: Option<String>,
    /// When the scan result was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Findings by severity.
    pub critical: i32,
    /// High findings.
    pub high: i32,
    /// Medium findings.
    pub medium: i32,
    /// Low findings.
    pub low: i32,
    /// Findings the policy's gate blocks on.
    pub blocking: i32,
}

/// One staging test.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TestRecord {
    /// Its name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A person and a time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Actor {
    /// The authenticated user.
    pub user: String,
    /// When the controller first saw what they did.
    pub at: String,
}

/// A rejection.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Rejection {
    /// Who rejected, when a person did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Actor>,
    /// Why (the rejecter's reason, or the gate that refused the Release).
    pub reason: String,
}

/// A rollback.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    /// Who asked for it, when a person did (otherwise the monitor window failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<Actor>,
    /// Why.
    pub reason: String,
    /// The digest production was restored to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_digest: Option<String>,
}

/// Production around the change.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Production {
    /// The workloads changed, as `Kind namespace/name`.
    pub workloads: Vec<String>,
    /// The digest production ran before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_digest: Option<String>,
    /// When the production change started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_started_at: Option<String>,
    /// When every production workload ran the digest and was available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_since: Option<String>,
}

/// Why a record cannot be derived.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The Promotion has not reached the state the event needs.
    #[error("the Promotion has no {0:?} to record yet")]
    NotYet(RecordEvent),
    /// The statement is not a Tidegate promotion record about the expected digest.
    #[error("not a promotion record of {digest}: {why}")]
    Foreign {
        /// The digest the reader expected.
        digest: String,
        /// What is wrong.
        why: String,
    },
}

/// Who did what, as the controller proved it now (identities the admission policies recorded,
/// rights checked with SubjectAccessReviews), never as status says: whoever can write status must
/// not be able to make the controller sign a record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proven {
    /// Approvers whose approval is proven now, in order.
    pub approvers: Vec<String>,
    /// A proven rejection.
    pub rejected_by: Option<String>,
    /// A proven rollback request.
    pub rollback_requested_by: Option<String>,
}

/// What the controller observed of the world when a record is due.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct World {
    /// The Release of this policy is `Verified` with the digest.
    pub release_verified: bool,
    /// The Release of this policy was rejected by a gate.
    pub release_rejected: bool,
    /// The digest every production workload runs now, when they agree.
    pub production: Option<Digest>,
    /// Every production workload's own record (ReplicaSets, Jobs) shows it ran the digest.
    pub ran_digest: bool,
    /// Approvals the policy requires.
    pub required: usize,
}

/// Whether the world agrees with what a record of `event` would say. Status is not evidence: a
/// forged `Succeeded` with no approval, no rollout or no rejection gets no signed record.
pub fn check(
    event: RecordEvent,
    digest: &Digest,
    previous: Option<&Digest>,
    proven: &Proven,
    world: &World,
) -> Result<(), String> {
    match event {
        RecordEvent::Promoted => {
            if !world.release_verified {
                return Err(format!("the Release is not Verified with {digest}"));
            }
            if world.production.as_ref() != Some(digest) {
                return Err(format!("production does not run {digest}"));
            }
            if proven.approvers.len() < world.required.max(1) {
                return Err(format!(
                    "{} proven approval(s) of {} required",
                    proven.approvers.len(),
                    world.required.max(1)
                ));
            }
        }
        RecordEvent::RolledBack => {
            if !world.ran_digest {
                return Err(format!("production never ran {digest}"));
            }
            match (previous, &world.production) {
                (Some(previous), Some(running)) if previous == running => {}
                _ => return Err("production does not run the digest it was rolled back to".into()),
            }
        }
        RecordEvent::Rejected => {
            if proven.rejected_by.is_none() && !world.release_rejected {
                return Err("no proven rejection, and the Release was not rejected".into());
            }
        }
    }
    Ok(())
}

fn time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> String {
    rfc3339(t.0)
}

fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// When the condition `type_` last became `True`.
fn became_true(status: &PromotionStatus, type_: &str) -> Option<String> {
    status.conditions.iter().find(|c| c.type_ == type_ && c.status == "True").map(|c| time(&c.last_transition_time))
}

/// The last condition message of `type_`.
fn condition_message(status: &PromotionStatus, type_: &str) -> Option<String> {
    status.conditions.iter().find(|c| c.type_ == type_).map(|c| c.message.clone())
}

/// `user`, with the time the controller first saw them do `action`.
fn actor(status: &PromotionStatus, action: AuditAction, user: &str) -> Actor {
    let at = status.history.iter().find(|e| e.action == action && e.user == user).map(|e| time(&e.at));
    Actor { user: user.to_string(), at: at.unwrap_or_default() }
}

/// The record of `event` for `promotion` (whose status the controller wrote), with its Release
/// if it still exists. `repository` is the repository the digest lives in. People come from
/// `proven` (see [`check`]); status gives only times and the rollout's record.
pub fn statement(
    event: RecordEvent,
    promotion: &Promotion,
    release: Option<&Release>,
    repository: &str,
    digest: &Digest,
    proven: &Proven,
) -> Result<Statement, RecordError> {
    use tidegate_api::PromotionPhase as P;
    let status = promotion.status.clone().unwrap_or_default();
    let namespace = promotion.metadata.namespace.clone().unwrap_or_default();
    let rules = status.rules.as_ref();
    let production = || Production {
        workloads: rules
            .map(|r| r.workloads.iter().map(|w| production_target(w, &namespace)).collect())
            .unwrap_or_default(),
        previous_digest: status.previous_digest.clone(),
        change_started_at: status.promoted_at.as_ref().map(time),
        running_since: became_true(&status, "RolledOut"),
    };
    let approvals: Vec<Actor> =
        proven.approvers.iter().map(|user| actor(&status, AuditAction::Approved, user)).collect();

    let (at, rejection, rollback, production) = match event {
        RecordEvent::Promoted => {
            if status.phase != P::Succeeded {
                return Err(RecordError::NotYet(event));
            }
            let at = became_true(&status, "Ready").ok_or(RecordError::NotYet(event))?;
            (at, None, None, Some(production()))
        }
        RecordEvent::RolledBack => {
            if status.phase != P::RolledBack {
                return Err(RecordError::NotYet(event));
            }
            let at = became_true(&status, "RollbackComplete").ok_or(RecordError::NotYet(event))?;
            let rollback = Rollback {
                requested_by: proven
                    .rollback_requested_by
                    .as_deref()
                    .map(|user| actor(&status, AuditAction::RollbackRequested, user)),
                reason: condition_message(&status, "RolledBack").unwrap_or_else(|| "rolled back".into()),
                restored_digest: status.previous_digest.clone(),
            };
            (at, None, Some(rollback), Some(production()))
        }
        RecordEvent::Rejected => {
            if status.phase != P::Rejected {
                return Err(RecordError::NotYet(event));
            }
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready").ok_or(RecordError::NotYet(event))?;
            let by = proven.rejected_by.as_deref().map(|user| actor(&status, AuditAction::Rejected, user));
            let reason = promotion
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(tidegate_api::common::ANNOTATION_REJECTION_REASON))
                .filter(|_| by.is_some())
                .cloned()
                .unwrap_or_else(|| ready.message.clone());
            (time(&ready.last_transition_time), Some(Rejection { by, reason }), None, None)
        }
    };

    let release_record = release.map(|r| ReleaseRecord {
        name: r.metadata.name.clone().unwrap_or_default(),
        uid: r.metadata.uid.clone(),
        trigger: format!("{:?}", r.spec.reason.kind),
        base_image: r.spec.reason.base_image.as_ref().map(|b| BaseChange {
            reference: b.reference.clone(),
            old_digest: b.old_digest.clone(),
            new_digest: b.new_digest.clone(),
        }),
        vulnerabilities: r.spec.reason.vulnerabilities.clone().unwrap_or_default(),
        source: r.spec.source.as_ref().map(|s| s.image.clone()),
        build: r.status.as_ref().and_then(|s| s.build.as_ref()).and_then(|b| b.reference.clone()),
    });
    let release_status = release.and_then(|r| r.status.as_ref());
    let scan = release_status.and_then(|s| s.scan.as_ref()).map(|s| ScanRecord {
        scanner: s.scanner.clone(),
        finished_at: s.finished_at.as_ref().map(time),
        critical: s.critical,
        high: s.high,
        medium: s.medium,
        low: s.low,
        blocking: s.blocking,
    });
    let tests = release_status
        .map(|s| {
            s.tests
                .iter()
                .map(|t| TestRecord {
                    name: t.name.clone(),
                    passed: t.passed,
                    message: t.message.clone(),
                    finished_at: t.finished_at.as_ref().map(time),
                })
                .collect()
        })
        .unwrap_or_default();

    Ok(Statement {
        type_: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: repository.to_string(),
            digest: BTreeMap::from([("sha256".to_string(), digest.hex().to_string())]),
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: PromotionRecord {
            event,
            at,
            policy: PolicyRef {
                namespace: namespace.clone(),
                name: promotion.spec.policy.clone(),
                image: rules.map(|r| r.image.clone()).unwrap_or_default(),
            },
            promotion: ObjectRef {
                namespace,
                name: promotion.metadata.name.clone().unwrap_or_default(),
                uid: promotion.metadata.uid.clone(),
            },
            release: release_record,
            scan,
            tests,
            approvals,
            rejection,
            rollback,
            production,
        },
    })
}

fn production_target(workload: &tidegate_api::image_policy::Workload, namespace: &str) -> String {
    match &workload.production.kubernetes {
        Some(k) => format!("{:?} {}/{}", k.kind, k.namespace.as_deref().unwrap_or(namespace), k.name),
        None => workload.name.clone(),
    }
}

impl Statement {
    /// The canonical bytes of the statement (fields in declaration order, no whitespace).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain structs of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a statement and checks that it is a Tidegate promotion record about `digest`.
    pub fn parse(bytes: &[u8], digest: &Digest) -> Result<Self, RecordError> {
        let foreign = |why: String| RecordError::Foreign { digest: digest.to_string(), why };
        let statement: Statement =
            serde_json::from_slice(bytes).map_err(|e| foreign(format!("unreadable statement: {e}")))?;
        if statement.type_ != STATEMENT_TYPE {
            return Err(foreign(format!("_type is {:?}", statement.type_)));
        }
        if statement.predicate_type != PREDICATE_TYPE {
            return Err(foreign(format!("predicateType is {:?}", statement.predicate_type)));
        }
        match statement.subject.as_slice() {
            [subject] if subject.digest.get("sha256").map(String::as_str) == Some(digest.hex()) => Ok(statement),
            _ => Err(foreign("its subject is another digest".into())),
        }
    }
}

#[cfg(test)]
mod tests;
