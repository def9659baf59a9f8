//! Adapters behind Tidegate's provider traits: OCI registry, builders, scanners, signer, deploy
//! targets (Kubernetes, Azure Container Apps).
//!
//! The traits and their first adapters arrive with the promotion engine; this crate holds nothing
//! else yet.
