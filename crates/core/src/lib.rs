//! Tidegate's pure decision logic. No Kubernetes client, no I/O, no clock: a decision that needs
//! the time takes it as an argument.
//!
//! - [`acr_run`]: what an ACR Tasks run's status means, and which output image is the candidate.
//! - [`release`]: the automatic pipeline of a Release: `ReleaseFacts` → `ReleasePlan` (phase,
//!   effects, status, conditions, when to look again).
//! - [`promotion`]: the approval-gated pipeline of a Promotion; the only place that decides to
//!   change production.
//! - [`approval`]: distinct approvers, self-approval, expiry.
//! - [`drift`]: production that runs something other than what was approved.
//! - [`gate`]: which vulnerability findings block.
//! - [`rescan`]: when what runs is scanned again, and what its findings start.
//! - [`provenance`]: the signed record of what happened to a digest.
//! - [`rollout`]: strategies per workload kind.
//! - [`names`]: deterministic object names.
//! - [`conditions`]: condition bookkeeping that keeps status stable.

pub mod acr_run;
pub mod approval;
pub mod conditions;
pub mod container_apps;
pub mod digest;
pub mod drift;
pub mod duration;
pub mod gate;
pub mod names;
pub mod promotion;
pub mod provenance;
pub mod reference;
pub mod release;
pub mod rescan;
pub mod rollout;
pub mod watch;

pub use digest::Digest;
pub use duration::parse_duration;
pub use reference::ImageRef;
