//! The Tidegate controller: watches ImagePolicy, Release and Promotion, observes the world, asks
//! `tidegate-core` for a plan, executes it through the provider traits and writes status once.
//!
//! The reconcilers arrive with the promotion engine; this crate holds nothing else yet.
