//! Short-lived proofs a rollout may lean on: something one object (a Promotion or a Release, by
//! uid) proved a moment ago, such as a signature that verified or an approver's right, stands for
//! that object's next few polls instead of being asked again each time. A proof belongs to one
//! object and one question; nothing else can use it, and a failed check ends reuse at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a proof stands for its own object.
pub const REUSE_FOR: Duration = Duration::from_secs(30);

/// Recent proofs, by the uid of the object that made them and what they prove.
#[derive(Debug)]
pub struct Proofs<T> {
    proven: Mutex<HashMap<(String, T), Instant>>,
}

impl<T> Default for Proofs<T> {
    fn default() -> Self {
        Self { proven: Mutex::default() }
    }
}

impl<T: Clone + Eq + Hash> Proofs<T> {
    /// Whether object `uid` proved `what` less than [`REUSE_FOR`] before `now`.
    pub fn recent(&self, uid: &str, what: &T, now: Instant) -> bool {
        let proven = self.proven.lock().unwrap_or_else(|e| e.into_inner());
        proven
            .get(&(uid.to_string(), what.clone()))
            .is_some_and(|at| now.checked_duration_since(*at).is_some_and(|age| age < REUSE_FOR))
    }

    /// Object `uid` proved `what` at `now`. Proofs past their time are dropped, so the map holds
    /// only those of the last [`REUSE_FOR`].
    pub fn proven(&self, uid: &str, what: &T, now: Instant) {
        let mut proven = self.proven.lock().unwrap_or_else(|e| e.into_inner());
        proven.retain(|_, at| now.checked_duration_since(*at).is_some_and(|age| age < REUSE_FOR));
        proven.insert((uid.to_string(), what.clone()), now);
    }

    /// Forgets everything object `uid` proved.
    pub fn forget(&self, uid: &str) {
        self.proven.lock().unwrap_or_else(|e| e.into_inner()).retain(|(u, _), _| u != uid);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.proven.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_stands_for_its_own_object_and_question_only_and_not_for_long() {
        let proofs = Proofs::<&str>::default();
        let start = Instant::now();
        proofs.proven("uid-a", &"a", start);
        assert!(proofs.recent("uid-a", &"a", start + Duration::from_secs(29)));
        assert!(!proofs.recent("uid-b", &"a", start), "another object's proof");
        assert!(!proofs.recent("uid-a", &"b", start), "another question");
        assert!(!proofs.recent("uid-a", &"a", start + REUSE_FOR), "too old");
    }

    #[test]
    fn old_proofs_are_dropped_and_forgetting_ends_every_proof_of_the_object() {
        let proofs = Proofs::<&str>::default();
        let start = Instant::now();
        proofs.proven("uid-a", &"a", start);
        proofs.proven("uid-b", &"b", start + REUSE_FOR);
        assert_eq!(proofs.len(), 1, "uid-a's proof is past its time");
        proofs.proven("uid-b", &"c", start + REUSE_FOR);
        proofs.forget("uid-b");
        assert!(!proofs.recent("uid-b", &"b", start + REUSE_FOR));
        assert!(!proofs.recent("uid-b", &"c", start + REUSE_FOR));
    }
}
