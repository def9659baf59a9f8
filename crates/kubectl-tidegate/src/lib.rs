//! `kubectl tidegate`: approve, reject, roll back, and show the state of policies, releases and
//! promotions.
//!
//! The commands arrive with the promotion engine; this crate holds nothing else yet.
