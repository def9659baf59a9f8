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

use std::time::Instant;

use kube::ResourceExt;
use tidegate_api::{Promotion, PromotionPhase};
use tidegate_core::{Digest, ImageRef};
use tidegate_providers::{ProviderError, Verification, registry};

use crate::context::Context;
use crate::error::Result;
pub use crate::proofs::REUSE_FOR;

/// Recent verifications, by the uid of the Promotion or Release that made them and digest.
pub type SignatureProofs = crate::proofs::Proofs<Digest>;

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
