//! `kubectl tidegate rollback POLICY_OR_PROMOTION`.

use anyhow::{anyhow, bail};
use tidegate_api::{ANNOTATION_ROLLBACK_REQUESTED_BY, ImagePolicy, Promotion};

use crate::client::{Session, Step, update_promotion};
use crate::promotions::{annotation, annotations, check_rollback, rollback_target};
use crate::render::short_digest;

/// What the argument names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// `promotion/NAME`.
    Promotion(&'a str),
    /// `imagepolicy/NAME`.
    Policy(&'a str),
    /// A bare name: a Promotion or an ImagePolicy, whichever exists.
    Either(&'a str),
}

/// Parses `NAME`, `promotion/NAME` or `imagepolicy/NAME` (kubectl's spellings: plural, short
/// name, `.tidegate.dev` suffix).
pub fn parse_target(argument: &str) -> Result<Target<'_>, String> {
    let Some((kind, name)) = argument.split_once('/') else {
        return Ok(Target::Either(argument));
    };
    if name.is_empty() || name.contains('/') {
        return Err(format!("{argument:?} is not NAME, promotion/NAME or imagepolicy/NAME"));
    }
    let kind = kind.to_ascii_lowercase();
    match kind.strip_suffix(".tidegate.dev").unwrap_or(&kind) {
        "promotion" | "promotions" | "promo" => Ok(Target::Promotion(name)),
        "imagepolicy" | "imagepolicies" | "ipol" => Ok(Target::Policy(name)),
        other => Err(format!("cannot roll back a {other}: give an ImagePolicy or a Promotion")),
    }
}

/// Resolves the target and sets `tidegate.dev/rollback-requested-by` to the caller.
pub async fn run(session: &Session, argument: &str) -> anyhow::Result<String> {
    let target = parse_target(argument).map_err(|e| anyhow!(e))?;
    let user = session.whoami().await?;
    let (promotion, policy) = resolve(session, target).await?;
    let name = promotion.metadata.name.clone().unwrap_or_default();
    let qualified = session.qualified(&name);
    let production = policy.and_then(|p| p.status).and_then(|s| s.production_digest);
    update_promotion(session, &name, |promotion| {
        check_rollback(promotion, &qualified, production.as_deref()).map_err(|e| anyhow!(e))?;
        if let Some(by) = annotation(&promotion.metadata, ANNOTATION_ROLLBACK_REQUESTED_BY) {
            return Ok(Step::Stop(format!("rollback of promotion {qualified} already requested by {by}\n")));
        }
        let back_to = promotion
            .status
            .as_ref()
            .and_then(|s| s.previous_digest.as_deref())
            .map_or_else(|| "the previous production digest".to_string(), short_digest);
        Ok(Step::Patch {
            annotations: annotations([(ANNOTATION_ROLLBACK_REQUESTED_BY, user.clone())]),
            outcome: format!(
                "rollback of promotion {qualified} ({}) requested by {user}; production returns to {back_to}\n",
                short_digest(&promotion.spec.digest)
            ),
        })
    })
    .await
}

/// The Promotion to roll back, and its policy when readable.
async fn resolve(session: &Session, target: Target<'_>) -> anyhow::Result<(Promotion, Option<ImagePolicy>)> {
    let promotion_what = |name: &str| format!("promotion {}", session.qualified(name));
    let policy_what = |name: &str| format!("imagepolicy {}", session.qualified(name));
    match target {
        Target::Promotion(name) => {
            let promotion: Promotion = session.get(name, &promotion_what(name)).await?;
            let policy = session.api::<ImagePolicy>().get(&promotion.spec.policy).await.ok();
            Ok((promotion, policy))
        }
        Target::Policy(name) => {
            let policy: ImagePolicy = session.get(name, &policy_what(name)).await?;
            Ok((pick(session, name).await?, Some(policy)))
        }
        Target::Either(name) => match session.get_opt::<Promotion>(name, &promotion_what(name)).await? {
            Some(promotion) => {
                if session.api::<ImagePolicy>().get_opt(name).await.ok().flatten().is_some() {
                    bail!(
                        "both a Promotion and an ImagePolicy are named {name} in namespace {}; write promotion/{name} or imagepolicy/{name}",
                        session.namespace
                    );
                }
                let policy = session.api::<ImagePolicy>().get(&promotion.spec.policy).await.ok();
                Ok((promotion, policy))
            }
            None => match session.get_opt::<ImagePolicy>(name, &policy_what(name)).await? {
                Some(policy) => Ok((pick(session, name).await?, Some(policy))),
                None => bail!("no Promotion or ImagePolicy named {name} in namespace {}", session.namespace),
            },
        },
    }
}

/// The policy's Promotion in Monitoring, or else its newest Succeeded one.
async fn pick(session: &Session, policy: &str) -> anyhow::Result<Promotion> {
    let promotions: Vec<Promotion> = session.list(&format!("promotions in namespace {}", session.namespace)).await?;
    rollback_target(policy, &promotions).cloned().ok_or_else(|| {
        anyhow!(
            "imagepolicy {} has no Promotion in Monitoring or Succeeded; nothing to roll back",
            session.qualified(policy)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_kubectl() {
        assert_eq!(parse_target("shop-app"), Ok(Target::Either("shop-app")));
        assert_eq!(parse_target("promotion/p1"), Ok(Target::Promotion("p1")));
        assert_eq!(parse_target("promo/p1"), Ok(Target::Promotion("p1")));
        assert_eq!(parse_target("Promotions.tidegate.dev/p1"), Ok(Target::Promotion("p1")));
        assert_eq!(parse_target("imagepolicy/a"), Ok(Target::Policy("a")));
        assert_eq!(parse_target("ipol/a"), Ok(Target::Policy("a")));
        assert!(parse_target("release/r").expect_err("release").contains("cannot roll back a release"));
        assert!(parse_target("promotion/").is_err());
    }
}
