//! The signature check right before a production write, and the verifications a rollout may lean
//! on for a short while.
//!
//! The first production write of a rollout (the pass that leaves `Approved`) always verifies the
//! signature afresh. While the same Promotion keeps converging production to the same digest
//! (`Promoting`, polled every few seconds), a verification it made itself less than
//! [`REUSE_FOR`] ago stands for the next one: each poll would otherwise ask the registry for the
//! referrers, the signature manifest and the envelope again, and an hour's approvals would queue
//! behind one another's re-verification. A Release's staging rollout leans on its own
//! verifications the same way. A proof belongs to one object (a Promotion's or a Release's uid)
//! and one digest; nothing else can use it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use tidegate_api::{Promotion, PromotionPhase};
use tidegate_core::{Digest, ImageRef};
use tidegate_providers::{ProviderError, Verification, registry};

use crate::context::Context;
use crate::error::Result;

/// How long a Promotion's verification stands for its own next production write.
pub const REUSE_FOR: Duration = Duration::from_secs(30);

/// Recent verifications, by the uid of the Promotion or Release that made them and digest.
#[derive(Debug, Default)]
pub struct SignatureProofs {
    proven: Mutex<HashMap<(String, Digest), Instant>>,
}

impl SignatureProofs {
    /// Whether Promotion `uid` verified the signature of `digest` less than [`REUSE_FOR`] ago.
    pub fn recent(&self, uid: &str, digest: &Digest, now: Instant) -> bool {
        let proven = self.proven.lock().unwrap_or_else(|e| e.into_inner());
        proven
            .get(&(uid.to_string(), digest.clone()))
            .is_some_and(|at| now.checked_duration_since(*at).is_some_and(|age| age < REUSE_FOR))
    }

    /// Promotion `uid` verified the signature of `digest` at `now`. Proofs past their time are
    /// dropped, so the map holds only rollouts of the last [`REUSE_FOR`].
    pub fn proven(&self, uid: &str, digest: &Digest, now: Instant) {
        let mut proven = self.proven.lock().unwrap_or_else(|e| e.into_inner());
        proven.retain(|_, at| now.checked_duration_since(*at).is_some_and(|age| age < REUSE_FOR));
        proven.insert((uid.to_string(), digest.clone()), now);
    }

    /// Forgets what Promotion `uid` proved: a failed verification ends reuse at once.
    pub fn forget(&self, uid: &str) {
        self.proven.lock().unwrap_or_else(|e| e.into_inner()).retain(|(u, _), _| u != uid);
    }
}

/// Why the signature of `digest` (in `repository`) does not allow the next production write of
/// `promotion` in `phase`, or `None` when it does: verified afresh (ahead of other registry work,
/// [`registry::urgent`]), or, while the rollout goes on (`Promoting`), by this Promotion's own
/// verification of the last [`REUSE_FOR`]. `signature` is the Release's recorded signature.
pub async fn problem_before_write(
    ctx: &Context,
    promotion: &Promotion,
    phase: PromotionPhase,
    repository: &ImageRef,
    digest: &Digest,
    signature: Option<&str>,
) -> Result<Option<String>> {
    let uid = promotion.uid();
    if phase == PromotionPhase::Promoting
        && uid.as_deref().is_some_and(|uid| ctx.signature_proofs.recent(uid, digest, Instant::now()))
    {
        return Ok(None);
    }
    let problem = match signature {
        None => Some(format!("{digest} was never signed")),
        Some(signature) => {
            match registry::urgent(ctx.signer.verify(&repository.pinned(digest), digest, signature)).await {
                Ok(Verification::Valid { .. }) => None,
                Ok(Verification::Invalid(why)) => Some(why),
                // No trust policy: nothing verifies, so production is not written.
                Err(ProviderError::NotConfigured(why)) => Some(why),
                Err(e) => return Err(e.into()),
            }
        }
    };
    if let Some(uid) = uid.as_deref() {
        match problem {
            None => ctx.signature_proofs.proven(uid, digest, Instant::now()),
            Some(_) => ctx.signature_proofs.forget(uid),
        }
    }
    Ok(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().expect("digest")
    }

    #[test]
    fn a_proof_stands_for_its_own_promotion_and_digest_only_and_not_for_long() {
        let proofs = SignatureProofs::default();
        let start = Instant::now();
        proofs.proven("uid-a", &digest('a'), start);
        assert!(proofs.recent("uid-a", &digest('a'), start + Duration::from_secs(29)));
        assert!(!proofs.recent("uid-b", &digest('a'), start), "another Promotion's proof");
        assert!(!proofs.recent("uid-a", &digest('b'), start), "another digest");
        assert!(!proofs.recent("uid-a", &digest('a'), start + REUSE_FOR), "too old");
    }

    #[test]
    fn old_proofs_are_dropped_and_a_failure_forgets() {
        let proofs = SignatureProofs::default();
        let start = Instant::now();
        proofs.proven("uid-a", &digest('a'), start);
        proofs.proven("uid-b", &digest('b'), start + REUSE_FOR);
        assert_eq!(proofs.proven.lock().unwrap().len(), 1, "uid-a's proof is past its time");
        proofs.forget("uid-b");
        assert!(!proofs.recent("uid-b", &digest('b'), start + REUSE_FOR));
    }
}
