//! What production workloads are known to have run.
//!
//! A rollback goes only to a digest its target shows a record of running (a ReplicaSet of the
//! Deployment, a revision of the app): `status.previousDigest` is a pointer, not proof. That a
//! workload ran an image is history, so once the target showed it, it stays known here and the
//! Promotion's later looks (every few seconds while it rolls out and is monitored) need not list
//! the workload's history again. Only what the target showed is kept, never what a status said,
//! and only for the namespace whose deployer saw it.

use std::collections::HashSet;
use std::sync::Mutex;

/// How many facts are kept before the set starts afresh (each is a few hundred bytes).
const MAX_KNOWN: usize = 20_000;

/// Facts "the deployer of `namespace` saw `target` run `image`".
#[derive(Debug, Default)]
pub struct KnownRuns {
    seen: Mutex<HashSet<(String, String, String)>>,
}

impl KnownRuns {
    fn key(namespace: &str, target: &str, image: &str) -> (String, String, String) {
        (namespace.to_string(), target.to_string(), image.to_string())
    }

    /// Whether the deployer of `namespace` has seen `target` (as it displays) run `image`.
    pub fn known(&self, namespace: &str, target: &str, image: &str) -> bool {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).contains(&Self::key(namespace, target, image))
    }

    /// The deployer of `namespace` saw `target` run `image`.
    pub fn learned(&self, namespace: &str, target: &str, image: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_KNOWN {
            seen.clear();
        }
        seen.insert(Self::key(namespace, target, image));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_known_only_to_the_namespace_that_saw_it_on_that_target_with_that_image() {
        let runs = KnownRuns::default();
        runs.learned("shop", "Deployment shop/web", "r.io/app@sha256:aa");
        assert!(runs.known("shop", "Deployment shop/web", "r.io/app@sha256:aa"));
        assert!(!runs.known("other", "Deployment shop/web", "r.io/app@sha256:aa"), "another namespace's deployer");
        assert!(!runs.known("shop", "Deployment shop/api", "r.io/app@sha256:aa"), "another target");
        assert!(!runs.known("shop", "Deployment shop/web", "r.io/app@sha256:bb"), "another image");
    }

    #[test]
    fn the_set_stays_bounded() {
        let runs = KnownRuns::default();
        for i in 0..=MAX_KNOWN {
            runs.learned("shop", "Deployment shop/web", &format!("r.io/app@{i}"));
        }
        assert!(runs.seen.lock().unwrap().len() <= MAX_KNOWN);
        assert!(runs.known("shop", "Deployment shop/web", &format!("r.io/app@{MAX_KNOWN}")), "the newest is kept");
    }
}
