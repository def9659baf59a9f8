//! Types and CEL rule fragments shared by the three resources.

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// API group of every Tidegate resource.
pub const GROUP: &str = "tidegate.dev";
/// Annotation that records an approval of a Promotion; its value is the approver's user name.
pub const ANNOTATION_APPROVED_BY: &str = "tidegate.dev/approved-by";
/// Annotation that records a rejection of a Promotion; its value is the rejecting user's name.
pub const ANNOTATION_REJECTED_BY: &str = "tidegate.dev/rejected-by";
/// Annotation that asks for a manual rollback; its value is the requesting user's name.
pub const ANNOTATION_ROLLBACK_REQUESTED_BY: &str = "tidegate.dev/rollback-requested-by";
/// Optional free-text reason that goes with a rejection.
pub const ANNOTATION_REJECTION_REASON: &str = "tidegate.dev/rejection-reason";
/// Annotation on an ImagePolicy that asks for a Release now (a manual trigger). Its value is any
/// token; each new value starts one Release, and a repeated value starts nothing new.
pub const ANNOTATION_TRIGGER: &str = "tidegate.dev/trigger";
/// Groups of each approver, recorded by the shipped MutatingAdmissionPolicy from the API server's
/// authenticated user info: one entry per name in `approved-by`, in the same order, entries
/// separated by `|`, groups within an entry by `,`. Users cannot forge it: the approval policy
/// accepts only the entry the API server itself would record.
pub const ANNOTATION_APPROVER_GROUPS: &str = "tidegate.dev/approved-by-groups";
/// Groups of the rejecting user, recorded like [`ANNOTATION_APPROVER_GROUPS`].
pub const ANNOTATION_REJECTER_GROUPS: &str = "tidegate.dev/rejected-by-groups";
/// Groups of the user who asked for a rollback, recorded like [`ANNOTATION_APPROVER_GROUPS`].
pub const ANNOTATION_ROLLBACK_GROUPS: &str = "tidegate.dev/rollback-requested-by-groups";
/// The authenticated user who created a Release, recorded at admission; that user may not
/// approve the Promotion of the Release's digest.
pub const ANNOTATION_CREATED_BY: &str = "tidegate.dev/created-by";
/// The authenticated user who last wrote `tidegate.dev/trigger` on an ImagePolicy, recorded at
/// admission; that user may not approve the Promotion of the Release the trigger started.
pub const ANNOTATION_TRIGGERED_BY: &str = "tidegate.dev/triggered-by";
/// Label on Releases and Promotions naming their ImagePolicy.
pub const LABEL_POLICY: &str = "tidegate.dev/policy";

/// Splits the `approved-by` annotation into user names: comma-separated, in approval order.
pub fn approvers(annotation: &str) -> Vec<String> {
    annotation.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Splits a recorded groups annotation into one group list per recorded user.
/// An empty annotation is one entry with no groups.
pub fn recorded_groups(annotation: &str) -> Vec<Vec<String>> {
    annotation
        .split('|')
        .map(|entry| entry.split(',').filter(|g| !g.is_empty()).map(str::to_string).collect())
        .collect()
}

/// CEL: the string is a `sha256:` digest (64 lowercase hex characters).
pub(crate) const CEL_DIGEST: &str = "self.matches('^sha256:[a-f0-9]{64}$')";

/// CEL: a bounded Go-style duration string (`90s`, `15m`, `1h30m`).
///
/// The regex is checked first so that an unparsable value is rejected by the message instead of
/// by a CEL evaluation error.
pub(crate) fn cel_duration_between(min: &str, max: &str) -> String {
    format!(
        "self.matches('^([0-9]+(ms|s|m|h))+$') && duration(self) >= duration('{min}') && duration(self) <= duration('{max}')"
    )
}

/// Schema override for `conditions`: a list-map keyed by `type`, so server-side apply merges
/// conditions one by one and two conditions of the same type are rejected.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    if let Some(object) = schema.as_object_mut() {
        object.insert("x-kubernetes-list-type".into(), "map".into());
        object.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    }
    schema
}
