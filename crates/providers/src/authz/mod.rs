//! Who may do what: the controller's reach into namespaces, approvers' rights, and proof that the
//! admission policies that record identities are in force.
//!
//! - [`Reach`]: every write to a workload, and every Job, goes through a client that impersonates
//!   the ServiceAccount `tidegate-deployer` of the policy's namespace, so the API server itself
//!   refuses what no namespace owner granted.
//! - [`Access`]: SubjectAccessReviews for approvers, with the groups recorded at admission.
//! - [`AdmissionGuard`]: checks that the shipped admission policies are installed, unchanged, and
//!   older than the object whose recorded identities the controller is about to trust.

mod access;
mod admission;
mod reach;

pub use access::{Access, Subject};
pub use admission::{AdmissionGuard, SHIPPED_POLICIES};
pub use reach::{DEPLOYER_SERVICE_ACCOUNT, PROMOTION_EXTRA, Reach, deployer_user};

/// What the approval gate asks of the cluster's authorization: whether a person holds a verb now,
/// and whether the admission policies that recorded their identity are in force.
/// [`ClusterAuthorizer`] asks the API server; tests use in-memory doubles
/// (crate `tidegate-test-support`).
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync {
    /// Whether `subject` may `verb` the `resource` of `group` in `namespace` (and object `name`,
    /// if given). `Err(why)` inside `Ok` carries the authorizer's reason when it says no.
    async fn may(
        &self,
        subject: &Subject,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> crate::Result<std::result::Result<(), String>>;

    /// `Ok(())` when the shipped admission policies are in force and were created no later than
    /// `since`, for the recorded identities `key` names; otherwise what is wrong.
    async fn admission_in_force_for(
        &self,
        key: &str,
        since: Option<jiff::Timestamp>,
    ) -> crate::Result<std::result::Result<(), String>>;
}

/// The product's [`Authorizer`]: SubjectAccessReviews ([`Access`]) and the admission check
/// ([`AdmissionGuard`]) against the API server.
#[derive(Clone)]
pub struct ClusterAuthorizer {
    access: Access,
    admission: AdmissionGuard,
}

impl ClusterAuthorizer {
    /// Asks through `client` (needs `create` on `subjectaccessreviews` and `get` on the four
    /// admission kinds).
    pub fn new(client: kube::Client) -> crate::Result<Self> {
        Ok(Self { access: Access::new(client.clone()), admission: AdmissionGuard::new(client)? })
    }

    /// Keeps live copies of the shipped admission objects ([`AdmissionGuard::keep_copies`]; needs
    /// `list` and `watch` on the four admission kinds). Call once, inside the runtime.
    pub fn keep_admission_copies(&self) {
        self.admission.keep_copies();
    }
}

#[async_trait::async_trait]
impl Authorizer for ClusterAuthorizer {
    async fn may(
        &self,
        subject: &Subject,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> crate::Result<std::result::Result<(), String>> {
        self.access.may(subject, verb, group, resource, namespace, name).await
    }

    async fn admission_in_force_for(
        &self,
        key: &str,
        since: Option<jiff::Timestamp>,
    ) -> crate::Result<std::result::Result<(), String>> {
        self.admission.in_force_for(key, since).await
    }
}
