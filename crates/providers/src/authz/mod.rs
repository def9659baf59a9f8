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
