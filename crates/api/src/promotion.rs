//! `Promotion`: the request to run one Release's digest in production.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CEL_DIGEST, Condition, conditions_schema};
use crate::image_policy::Workload;

/// The request to run one Release's exact digest in production. Nothing happens until it is
/// approved: `kubectl annotate promotion <name> tidegate.dev/approved-by=<your user name>`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tidegate.dev",
    version = "v1alpha1",
    kind = "Promotion",
    namespaced,
    doc = "A Promotion is the request to run one Release's exact digest in production. It waits for approval: kubectl annotate promotion NAME tidegate.dev/approved-by=USER.",
    status = "PromotionStatus",
    shortname = "promo",
    category = "tidegate",
    printcolumn(name = "Release", type_ = "string", json_path = ".spec.release"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Approved By", type_ = "string", json_path = ".status.approvedBy"),
    printcolumn(name = "Digest", type_ = "string", json_path = ".spec.digest", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PromotionSpec {
    /// Name of the ImagePolicy (same namespace) whose production this changes.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.policy is immutable"))]
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// Name of the Release (same namespace) to promote. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf")
        .message("spec.release is immutable: create a new Promotion to promote another Release"))]
    #[schemars(length(min = 1, max = 253))]
    pub release: String,
    /// The exact digest to run in production, `sha256:` and 64 hex characters; it must be the
    /// Release's digest. Immutable: an approval is bound to this digest.
    #[x_kube(
        validation = Rule::new(CEL_DIGEST)
            .message("spec.digest must be sha256: followed by 64 lowercase hex characters; tags are never promoted"),
        validation = Rule::new("self == oldSelf")
            .message("spec.digest is immutable: an approval is bound to one digest")
    )]
    #[schemars(length(max = 71))]
    pub digest: String,
    /// Names of the policy's workloads to change. Default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(min = 1, max = 32))]
    pub workloads: Option<Vec<String>>,
    /// Who asked for this Promotion: the user that creates it must put its own name here (the
    /// approval policy checks it), and that user may not approve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub requested_by: Option<String>,
}

/// Where a Promotion is.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PromotionPhase {
    /// Waiting for enough valid approvals.
    #[default]
    AwaitingApproval,
    /// Approved; checks before the change are running.
    Approved,
    /// Production is being changed.
    Promoting,
    /// Production runs the digest; the monitor window is open.
    Monitoring,
    /// The monitor window closed healthy.
    Succeeded,
    /// Production was restored to the previous digest.
    RolledBack,
    /// A person rejected it.
    Rejected,
    /// The approval or the request expired.
    Expired,
    /// A newer Promotion replaced this one before it ran.
    Superseded,
    /// The change failed and could not be completed or rolled back.
    Failed,
}

/// What happened to a Promotion.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromotionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current phase.
    #[serde(default)]
    pub phase: PromotionPhase,
    /// Approvers the controller accepted, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approved_by: Vec<String>,
    /// When the last accepted approval was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Time>,
    /// The production digest this Promotion replaced: the rollback target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_digest: Option<String>,
    /// When production was changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Time>,
    /// When the monitor window closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_until: Option<Time>,
    /// The rules this Promotion is held to, copied from the ImagePolicy when the controller first
    /// saw the Promotion. Later edits of the policy affect only new Promotions; where the current
    /// policy is stricter (more approvals, a shorter validity), the stricter rule applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<FrozenRules>,
    /// Who approved, rejected and asked for a rollback, and when the controller first saw it.
    /// Entries are only ever added. An approval counts for `approvalValidFor` from its own entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub history: Vec<AuditEntry>,
    /// The signed promotion records attached to the digest in the registry (OCI referrers
    /// holding an in-toto statement, signed with Notary Project): one per event, in order.
    /// Read them with `kubectl tidegate provenance IMAGE@DIGEST`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub records: Vec<RecordEntry>,
    /// Canary progress of each workload switched in steps: the weight the new revision was
    /// last seen at and since when (each step is held from then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub canary: Vec<CanaryProgress>,
    /// How far production got towards the promoted digest (the `RolledOut` condition says the
    /// same for people); absent until the first production write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutProgress>,
    /// How far a rollback got towards the previous digest (the `RollbackComplete` condition says
    /// the same for people); absent unless production is being rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RolloutProgress>,
    /// Current conditions (`Approved`, `Healthy`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// Where a production rollout (or rollback) stands, as the controller last saw it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutProgress {
    /// `InProgress`, `Done` (every workload runs the digest and is available) or `Failed`.
    pub state: RolloutState,
    /// What the controller saw: the workloads still converging, or why the rollout failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 4096))]
    pub message: String,
}

/// The state of a production rollout or rollback.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutState {
    /// Workloads are still converging on the digest.
    InProgress,
    /// Every workload runs the digest and is available.
    Done,
    /// The rollout cannot converge (the target is gone, the rollout timed out).
    Failed,
}

/// The promotion rules of the ImagePolicy as they were when the Promotion opened.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FrozenRules {
    /// The policy's `spec.image`: the repository the digest is promoted from.
    pub image: String,
    /// Distinct approvers needed.
    pub required_approvals: i32,
    /// How long each approval stays valid, counted from that approval.
    pub approval_valid_for: String,
    /// How long production is watched after the change.
    pub monitor_window: String,
    /// Whether an unhealthy monitor window rolls back on its own.
    pub auto_rollback: bool,
    /// The workloads this Promotion changes, with their production targets and strategies.
    #[schemars(length(max = 32))]
    pub workloads: Vec<Workload>,
    /// When the rules were copied.
    pub frozen_at: Time,
}

/// What a person did to a Promotion.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuditAction {
    /// Added their name to `tidegate.dev/approved-by`.
    Approved,
    /// Set `tidegate.dev/rejected-by`.
    Rejected,
    /// Set `tidegate.dev/rollback-requested-by`.
    RollbackRequested,
}

/// What a promotion record says happened to a digest.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordEvent {
    /// Production ran the digest through a healthy monitor window.
    Promoted,
    /// Production was restored to the digest it ran before.
    RolledBack,
    /// The digest was refused before it reached production.
    Rejected,
}

/// One promotion record the controller attached (or could not attach) to the digest.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RecordEntry {
    /// What the record says happened.
    pub event: RecordEvent,
    /// Digest of the record's manifest in the image's repository (`sha256:…`); absent when no
    /// record was attached, and `message` says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 71))]
    pub record: Option<String>,
    /// Why no record was attached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
    /// When the controller attached it (or gave up).
    pub at: Time,
}

/// One recorded action.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// What was done.
    pub action: AuditAction,
    /// The authenticated user who did it.
    #[schemars(length(max = 256))]
    pub user: String,
    /// When the controller first saw it.
    pub at: Time,
}

/// Where a canary switch of one workload stands.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryProgress {
    /// The workload.
    pub workload: String,
    /// Percentage of traffic the new revision gets.
    pub weight: i32,
    /// When the controller first saw this weight.
    pub since: Time,
}
