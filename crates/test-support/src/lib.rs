//! Test doubles for Tidegate's provider traits, and the binary `tidegate-controller-fakes`: the
//! controller library with these doubles injected through
//! [`tidegate_controller::run_with`].
//!
//! Nothing here ships. The product binary `tidegate-controller` does not depend on this crate, and
//! `crates/controller/tests/product_binary.rs` checks that it stays so.
//!
//! - [`InProcessBuilder`]: invents candidates without a registry (digests derived from the build
//!   inputs).
//! - [`HmacSigner`]: signs with a shared HMAC key that no other tool can verify.
//! - [`fakes`]: in-memory doubles of every provider in the controller's context (its objects,
//!   Events, deploy targets, the authorizer, test Jobs, registry tags, scanners, records) and
//!   [`fakes::World`], in which reconcilers run in unit tests.

pub mod fakes;
pub mod inprocess;

pub use inprocess::{HmacSigner, InProcessBuilder};
