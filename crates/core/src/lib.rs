//! Tidegate's pure decision logic. No Kubernetes client, no I/O, no clock: a decision that needs
//! the time takes it as an argument.

pub mod digest;
pub mod duration;
pub mod reference;

pub use digest::Digest;
pub use duration::parse_duration;
pub use reference::ImageRef;
