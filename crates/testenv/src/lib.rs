//! A real local Kubernetes control plane for Tidegate's tests and demo.
//!
//! [`TestEnv`] starts etcd, kube-apiserver (TLS, client-certificate authentication, RBAC, the
//! admission plugins including ValidatingAdmissionPolicy), kube-controller-manager,
//! kube-scheduler and kwok on loopback with free ports, creates simulated nodes so that Pods of
//! Deployments and Jobs progress, and installs Tidegate's CRDs and the Trivy Operator's
//! `VulnerabilityReport` CRD ([`operator_crds`]). Dropping it stops everything and
//! removes its temporary directory. [`shared`] gives one environment per test binary, cleaned up
//! when the binary exits, also after a failed test. [`faults`] restarts, freezes and kills its
//! components and compacts etcd, for tests of how Tidegate recovers.
//!
//! [`registry`] runs real OCI registries on loopback: the CNCF distribution registry (anonymous,
//! basic or bearer-token auth) and `ocireg` (the OCI 1.1 referrers API).
//!
//! The binaries come from [`tools`]: built once from the pinned Go modules by
//! `cargo xtask tools` and cached outside the repository.

pub mod apply;
pub mod argo_rollouts;
pub mod azure;
pub mod cluster_services;
pub mod crds;
pub mod crl_authority;
mod env;
pub mod faults;
pub mod helm_tool;
pub mod kubeconfig;
mod loopback;
pub mod node_images;
pub mod nodes;
pub mod operator_crds;
pub mod pki;
pub mod ports;
pub mod process;
pub mod real_node;
pub mod registry;
pub mod scanner_tools;
mod shared;
pub mod tools;
pub mod workloads;

use std::path::{Path, PathBuf};

pub use env::{ADMIN_USER, Options, TestEnv, established_crds, ready_nodes};
pub use ports::free_port;
pub use registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
pub use shared::shared;

/// What can go wrong while building, starting or talking to the environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Control-plane binaries are missing.
    #[error("control-plane binaries missing in {dir}: {missing:?}; {hint}")]
    ToolsMissing {
        /// Where they were looked for.
        dir: PathBuf,
        /// File names not found.
        missing: Vec<String>,
        /// What to do about it.
        hint: String,
    },
    /// Building the binaries failed.
    #[error("building the control-plane binaries failed: {0}")]
    Tool(String),
    /// A component did not start.
    #[error("{component} did not start: {message}")]
    Start {
        /// The component.
        component: String,
        /// Why, with the end of its log.
        message: String,
    },
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Pki(String),
    /// Building a client failed.
    #[error("cannot build a Kubernetes client: {0}")]
    Client(String),
    /// A manifest could not be read.
    #[error("invalid manifest: {0}")]
    Manifest(String),
    /// A manifest is not valid YAML.
    #[error("invalid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// A test registry or its token server misbehaved, or a request to it failed.
    #[error("registry: {0}")]
    Registry(String),
    /// The API server answered with an error.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// A control-plane fault could not be injected or undone ([`faults`]).
    #[error("control-plane fault: {0}")]
    Fault(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}
