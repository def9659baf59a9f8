//! Azure: the identity Tidegate signs in as ([`identity`]), the Azure Resource Manager client
//! ([`arm`]: pipeline, retries, long-running operations, paging, the request budget), Container
//! Apps resource ids, models and typed operations ([`resource_id`], [`models`],
//! [`container_apps`]).
//!
//! Everything is built on the official `azure_core` and `azure_identity` crates, with the
//! workspace's reqwest/rustls client as their HTTP transport ([`transport`]), so token requests
//! and ARM requests trust the same roots (system roots plus `--azure-ca-file`).

pub mod arm;
pub mod container_apps;
pub mod error;
pub mod identity;
pub mod key_vault;
mod key_vault_auth;
pub mod key_vault_key;
pub mod models;
mod policies;
pub mod registry_identity;
pub mod resource_id;
pub mod transport;

pub use arm::{API_VERSION, Arm};
pub use container_apps::ContainerApps;
pub use error::{ArmError, AzureError};
pub use identity::{AzureConfig, AzureCredentialKind};
pub use models::{
    Container, ContainerApp, Job, JobExecution, Replica, ReplicaContainer, Revision, Template, TrafficWeight,
};
pub use policies::OperationStats;
pub use resource_id::{ResourceId, ResourceKind};
