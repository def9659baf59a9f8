//! Custom resource types of Tidegate, group `tidegate.dev`, version `v1alpha1`.
//!
//! - [`ImagePolicy`]: the lifecycle rules of one image (triggers, build, scan, sign, workloads,
//!   tests, promotion).
//! - [`Release`]: one candidate image walked through the automatic stages up to `Verified`.
//! - [`Promotion`]: the request, gated by human approval, to run one Release's digest in production.
//!
//! Every field carries a doc comment: it becomes the text of `kubectl explain`. Validation that
//! the API server enforces at admission (schema and CEL rules) is declared next to the field it
//! guards, each rule with a message that names the field.

#![allow(clippy::duplicated_attributes)] // kube's derive repeats `printcolumn` by design

pub mod common;
pub mod crds;
pub mod image_policy;
pub mod promotion;
pub mod release;

pub use common::{
    ANNOTATION_APPROVED_BY, ANNOTATION_APPROVER_GROUPS, ANNOTATION_CREATED_BY, ANNOTATION_REJECTED_BY,
    ANNOTATION_REJECTER_GROUPS, ANNOTATION_REJECTION_REASON, ANNOTATION_ROLLBACK_GROUPS,
    ANNOTATION_ROLLBACK_REQUESTED_BY, ANNOTATION_TRIGGER, ANNOTATION_TRIGGERED_BY, Condition, GROUP, LABEL_POLICY,
    approvers, recorded_groups,
};
pub use image_policy::{ImagePolicy, ImagePolicySpec, ImagePolicyStatus};
pub use promotion::{
    AuditAction, AuditEntry, FrozenRules, Promotion, PromotionPhase, PromotionSpec, PromotionStatus, RecordEntry,
    RecordEvent, RolloutProgress, RolloutState,
};
pub use release::{Release, ReleasePhase, ReleaseSpec, ReleaseStatus};
