//! The controller's OCI image, built without Docker and reproducibly (`cargo xtask image`).
//!
//! The same inputs give the same image digest: [`tar`] writes layers with sorted entries, one
//! mtime and fixed owners and modes; [`layout`] compresses them with a fixed gzip header and
//! writes the config and manifest (annotations included) from `SOURCE_DATE_EPOCH`; [`sbom`]
//! writes the SPDX document; [`push`] pushes by digest, attaches the SBOM and signs.
//! The binaries and the rest of [`rootfs::Inputs`] are read and built by the caller (`xtask`).

pub mod layout;
pub mod push;
pub mod rootfs;
pub mod sbom;
pub mod tar;

/// Why the image could not be built, written or pushed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input is missing or wrong.
    #[error("{0}")]
    Input(String),
    /// A path in a layer is not valid.
    #[error("layer: {0}")]
    Tree(String),
    /// Reading or writing a file.
    #[error("{0}")]
    Io(String),
    /// The registry refused or failed.
    #[error("push: {0}")]
    Registry(String),
    /// Signing, or verifying the new signature, failed.
    #[error("signing: {0}")]
    Signing(String),
}
