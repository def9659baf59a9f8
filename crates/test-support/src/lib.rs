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

pub mod inprocess;

pub use inprocess::{HmacSigner, InProcessBuilder};
