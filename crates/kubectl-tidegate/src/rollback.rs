//! `kubectl tidegate rollback POLICY_OR_PROMOTION`.

use anyhow::{anyhow, bail};
use tidegate_api::{ANNOTATION_ROLLBACK_REQUESTED_BY, ImagePolicy, Promotion};

use crate::client::{Session, Step, update_promotion};
use crate::confirm::{self, Request};
use crate::promotions::{annotation, annotations, check_rollback, rollback_target};
use crate::render::{self, short_digest};
use crate::summary::{self, Lookup};

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

/// Resolves the target, shows the digest production runs now and the one it goes back to, asks
/// unless `yes`, then sets `tidegate.dev/rollback-requested-by` to the caller. A rollback that
/// was already requested writes nothing and asks nothing.
pub async fn run(session: &Session, argument: &str, yes: bool) -> anyhow::Result<String> {
    let target = parse_target(argument).map_err(|e| anyhow!(e))?;
    let user = session.whoami().await?;
    let (shown, policy) = resolve(session, target).await?;
    let name = shown.metadata.name.clone().unwrap_or_default();
    let qualified = session.qualified(&name);
    let production = policy.found().and_then(|p| p.status.as_ref()).and_then(|s| s.production_digest.clone());
    // Refusals and the no-op come before any question.
    check_rollback(&shown, &qualified, production.as_deref()).map_err(|e| anyhow!(e))?;
    if let Some(by) = annotation(&shown.metadata, ANNOTATION_ROLLBACK_REQUESTED_BY) {
        return Ok(already(&qualified, by));
    }
    let facts = summary::rollback(&shown, &policy, &session.namespace, &user);
    let text = render::rollback_summary(&facts);
    let question = match &facts.back_to {
        Some(back_to) => format!("Roll back production to {back_to}?"),
        None => format!("Request a rollback of promotion {qualified}?"),
    };
    let declined = format!("no rollback of promotion {qualified} was requested: nothing was written");
    let shown_summary =
        confirm::confirm(yes, Request { summary: &text, question: &question, verb: "roll back", declined: &declined })
            .await?;

    let outcome = update_promotion(session, &name, |promotion| {
        summary::still_shown(promotion, &shown, &facts.targets, &session.namespace).map_err(|e| anyhow!(e))?;
        check_rollback(promotion, &qualified, production.as_deref()).map_err(|e| anyhow!(e))?;
        if let Some(by) = annotation(&promotion.metadata, ANNOTATION_ROLLBACK_REQUESTED_BY) {
            return Ok(Step::Stop(already(&qualified, by)));
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
    .await?;
    Ok(shown_summary + &outcome)
}

fn already(qualified: &str, by: &str) -> String {
    format!("rollback of promotion {qualified} already requested by {by}\n")
}

/// The Promotion to roll back, and its policy as it could be read.
async fn resolve(session: &Session, target: Target<'_>) -> anyhow::Result<(Promotion, Lookup<ImagePolicy>)> {
    let promotion_what = |name: &str| format!("promotion {}", session.qualified(name));
    let policy_what = |name: &str| format!("imagepolicy {}", session.qualified(name));
    match target {
        Target::Promotion(name) => {
            let promotion: Promotion = session.get(name, &promotion_what(name)).await?;
            let policy = session.lookup(&promotion.spec.policy, &policy_what(&promotion.spec.policy)).await;
            Ok((promotion, policy))
        }
        Target::Policy(name) => {
            let policy: ImagePolicy = session.get(name, &policy_what(name)).await?;
            Ok((pick(session, name).await?, Lookup::Found(policy)))
        }
        Target::Either(name) => match session.get_opt::<Promotion>(name, &promotion_what(name)).await? {
            Some(promotion) => {
                if session.api::<ImagePolicy>().get_opt(name).await.ok().flatten().is_some() {
                    bail!(
                        "both a Promotion and an ImagePolicy are named {name} in namespace {}; write promotion/{name} or imagepolicy/{name}",
                        session.namespace
                    );
                }
                let policy = session.lookup(&promotion.spec.policy, &policy_what(&promotion.spec.policy)).await;
                Ok((promotion, policy))
            }
            None => match session.get_opt::<ImagePolicy>(name, &policy_what(name)).await? {
                Some(policy) => Ok((pick(session, name).await?, Lookup::Found(policy))),
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
