//! `Release`: one candidate image, walked through the automatic stages.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{CEL_DIGEST, Condition, conditions_schema};

/// One candidate image of an ImagePolicy, walked automatically through build, scan, sign,
/// staging deployment and staging tests. A Release never touches production; a Promotion does.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tidegate.dev",
    version = "v1alpha1",
    kind = "Release",
    namespaced,
    doc = "A Release is one candidate image of an ImagePolicy, walked automatically through build, scan, sign, staging and tests. It never touches production.",
    status = "ReleaseStatus",
    shortname = "rel",
    category = "tidegate",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policy"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Digest", type_ = "string", json_path = ".status.digest"),
    printcolumn(
        name = "Blocking",
        type_ = "integer",
        json_path = ".status.scan.blocking",
        description = "Findings that block this Release"
    ),
    printcolumn(name = "Reason", type_ = "string", json_path = ".spec.reason.type", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("spec is immutable: a Release records one candidate; create a new Release instead"))]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSpec {
    /// Name of the ImagePolicy (same namespace) this Release belongs to.
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// Why this Release exists.
    pub reason: ReleaseReason,
    /// For an externally built image: where it is. A tag is resolved to a digest once, when the
    /// Release starts; only that digest is used after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ReleaseSource>,
}

/// Why a Release exists.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type != 'BaseImageUpdated' || has(self.baseImage)")
        .message("spec.reason.baseImage is required when spec.reason.type is BaseImageUpdated"),
    validation = Rule::new("self.type != 'VulnerabilitiesFound' || (has(self.vulnerabilities) && size(self.vulnerabilities) > 0)")
        .message("spec.reason.vulnerabilities must list at least one ID when spec.reason.type is VulnerabilitiesFound")
)]
pub struct ReleaseReason {
    /// `BaseImageUpdated`, `VulnerabilitiesFound`, `NewBuild`, `Schedule` or `Manual`.
    #[serde(rename = "type")]
    pub kind: ReasonKind,
    /// The base image change that triggered this Release.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "baseImage")]
    pub base_image: Option<BaseImageChange>,
    /// IDs of the vulnerabilities found in what runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub vulnerabilities: Option<Vec<String>>,
    /// Free text for people: who asked and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

/// Why a Release exists.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasonKind {
    /// The base image digest changed.
    BaseImageUpdated,
    /// A rescan found blocking vulnerabilities in what runs.
    VulnerabilitiesFound,
    /// A new application build was pushed.
    NewBuild,
    /// A scheduled rebuild.
    Schedule,
    /// Requested by a person.
    Manual,
}

/// A base image digest change.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BaseImageChange {
    /// The base image reference that is watched.
    #[serde(rename = "ref")]
    #[schemars(length(min = 1, max = 512))]
    pub reference: String,
    /// The digest the image was built on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(CEL_DIGEST)
        .message("spec.reason.baseImage.oldDigest must be sha256: followed by 64 lowercase hex characters"))]
    #[schemars(length(max = 71))]
    pub old_digest: Option<String>,
    /// The new digest behind the reference.
    #[x_kube(validation = Rule::new(CEL_DIGEST)
        .message("spec.reason.baseImage.newDigest must be sha256: followed by 64 lowercase hex characters"))]
    #[schemars(length(max = 71))]
    pub new_digest: String,
}

/// An externally built image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseSource {
    /// Image reference, by tag (`repo:tag`) or by digest (`repo@sha256:…`), in the policy's
    /// repository.
    #[x_kube(validation = Rule::new("self.matches('^[^@]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[a-f0-9]{64})$')")
        .message("spec.source.image must be repo:tag or repo@sha256:<64 hex>"))]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
}

/// Where a Release is in its pipeline.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ReleasePhase {
    /// Accepted, waiting to start.
    #[default]
    Pending,
    /// The image is being rebuilt.
    Building,
    /// The image is being scanned.
    Scanning,
    /// The image is being signed.
    Signing,
    /// The image is being deployed to staging.
    Staging,
    /// Staging tests are running.
    Testing,
    /// Every gate passed; ready for a Promotion.
    Verified,
    /// A gate said no; the reason is in the conditions.
    Rejected,
    /// Infrastructure failed after retries.
    Failed,
    /// A newer Release of the same policy replaced this one.
    Superseded,
}

/// What happened to a Release.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Current phase.
    #[serde(default)]
    pub phase: ReleasePhase,
    /// The exact digest of the candidate image, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The candidate as a full reference, `repo@sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The build run that produced the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<StageRecord>,
    /// Scan summary and gate decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanSummary>,
    /// The signature artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<StageRecord>,
    /// The staging deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<StageRecord>,
    /// Staging test results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tests: Vec<TestResult>,
    /// Current conditions (`Ready`, `Blocked`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

/// One stage's outcome.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StageRecord {
    /// What the stage produced: a build run ID, a signature digest, a staging revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// When the stage started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the stage finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// The build's run ID in the system that ran it (the ACR run ID of an `acrTask` build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub run_id: Option<String>,
    /// Where the build's log can be read (for an `acrTask` build, the link Azure hands out for
    /// the run's log; it carries a time-limited access signature and expires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub log_link: Option<String>,
}

/// Scan summary.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScanSummary {
    /// Which scanner ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scanner: Option<String>,
    /// Critical findings.
    #[serde(default)]
    pub critical: i32,
    /// High findings.
    #[serde(default)]
    pub high: i32,
    /// Medium findings.
    #[serde(default)]
    pub medium: i32,
    /// Low findings.
    #[serde(default)]
    pub low: i32,
    /// Findings that block this Release after exceptions and the fixable filter.
    #[serde(default)]
    pub blocking: i32,
    /// IDs of the blocking findings (at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocking_ids: Vec<String>,
    /// Blocking findings whose exception expired (they block again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub expired_exceptions: Vec<String>,
    /// The most important findings, blocking ones first, then by severity (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub top: Vec<TopFinding>,
    /// Findings let through because the digest production runs has them too (`noRegression`;
    /// at most 50).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub inherited: Vec<String>,
    /// When the scanner produced these findings (a report's `CreatedAt`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub produced_at: Option<Time>,
    /// Which vulnerability data the scan used (Trivy's database update time), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// When the gate decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}

/// One finding, as shown on the Release.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopFinding {
    /// Vulnerability ID.
    pub id: String,
    /// Severity (`CRITICAL`, `HIGH`, …).
    pub severity: String,
    /// The affected package.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub package: String,
    /// The installed version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub installed_version: String,
    /// The first fixed version, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_version: Option<String>,
    /// Whether it blocks this Release.
    pub blocking: bool,
}

/// One staging test result.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    /// The check's name.
    pub name: String,
    /// Whether it passed.
    pub passed: bool,
    /// What was observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}
