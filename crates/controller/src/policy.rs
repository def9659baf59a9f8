//! The ImagePolicy reconciler: turns manual triggers into Releases and keeps the policy's status
//! (production and staging digests, history, latest Release) true to the world.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tidegate_api::image_policy::DigestRecord;
use tidegate_api::release::{BaseImageChange, ReasonKind, ReleaseReason};
use tidegate_api::{
    ANNOTATION_TRIGGER, ANNOTATION_TRIGGERED_BY, ImagePolicy, LABEL_POLICY, PromotionPhase, Release, ReleaseSpec,
};
use tidegate_core::conditions::{self, Wanted};
use tidegate_core::{drift, names};

use crate::context::Context;
use crate::error::Result;
use crate::observe;

/// Production history entries kept.
const HISTORY: usize = 10;

/// Reconciles one ImagePolicy.
#[tracing::instrument(skip(policy, ctx), fields(kind = "ImagePolicy", namespace = %policy.namespace().unwrap_or_default(), name = %policy.name_any()))]
pub async fn reconcile(policy: Arc<ImagePolicy>, ctx: Arc<Context>) -> Result<Action> {
    // Not a copy older than this process's own last status write, when the watch brings that in
    // time: the write below is skipped when nothing changed since.
    let policy = crate::stores::settled(&ctx.stores.policies, &ctx.stores.versions, policy).await;
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let old = policy.status.clone();
    let mut status = old.clone().unwrap_or_default();
    let now = ctx.now();
    // Releases this pass creates: the latest of them is the policy's latest before the watch
    // shows it.
    let mut started = Vec::new();

    if let Some(token) = policy.annotations().get(ANNOTATION_TRIGGER).filter(|t| !t.trim().is_empty()) {
        let reason = ReleaseReason {
            kind: ReasonKind::Manual,
            base_image: None,
            vulnerabilities: None,
            message: Some(format!("requested with {ANNOTATION_TRIGGER}={token}")),
        };
        started.extend(start_release(&ctx, &policy, names::release_name(&name, "manual", token), reason).await?);
    }
    if let Some(base) = &policy.spec.triggers.base_image
        && let Some(digest) = ctx.watcher.digest(&base.reference)
    {
        match status.base_digest.clone() {
            // The first digest seen is the baseline, not a change.
            None => status.base_digest = Some(digest),
            Some(old) if old != digest => {
                let reason = ReleaseReason {
                    kind: ReasonKind::BaseImageUpdated,
                    base_image: Some(BaseImageChange {
                        reference: base.reference.clone(),
                        old_digest: Some(old),
                        new_digest: digest.clone(),
                    }),
                    vulnerabilities: None,
                    message: None,
                };
                started
                    .extend(start_release(&ctx, &policy, names::release_name(&name, "base", &digest), reason).await?);
                status.base_digest = Some(digest);
            }
            Some(_) => {}
        }
    }

    let all: Vec<&tidegate_api::image_policy::Workload> = policy.spec.workloads.iter().collect();
    let mut problems = Vec::new();
    if let Some(base) = &policy.spec.triggers.base_image
        && let Some(error) = ctx.watcher.error(&base.reference)
    {
        problems.push(format!(
            "checking base image {} failed (checked again at its interval or on a registry notification): {error}",
            base.reference
        ));
    }
    let base_unavailable = !problems.is_empty();
    // While every target is watched, what the last read found stands until a change of those
    // Deployments is seen (or the resync interval passes); the token is taken before reading, so
    // a change during the read makes the next reconcile read again.
    let token = ctx.workload_watches.token(&policy);
    let (live, staging) = match token.and_then(|t| ctx.workload_watches.reuse(&policy, t, ctx.resync_interval)) {
        Some(kept) => (Some(kept.production), kept.staging),
        None => {
            let live = observe_live(&ctx, &namespace, &all).await;
            let staging = staging_digest(&ctx, &policy).await;
            if let (Some(token), Ok(live), Ok(staging)) = (token, &live, &staging) {
                ctx.workload_watches.keep(&policy, token, live.clone(), staging.clone());
            }
            let live = live.map_err(|e| problems.push(e.to_string())).ok();
            let staging = staging.map_err(|e| problems.push(e.to_string())).ok().flatten();
            (live, staging)
        }
    };
    let production = live.as_deref().and_then(common_digest);
    status.production_digest = production.as_ref().map(|d| d.to_string());
    status.staging_digest = staging.map(|d| d.to_string());
    // After observing production: a tag whose digest already runs there is no new build.
    if let Some(trigger) = &policy.spec.triggers.new_build
        && let Err(e) = new_build(&ctx, &policy, &trigger.tag_pattern, status.production_digest.as_deref()).await
    {
        tracing::warn!(error = %e, "looking for new builds failed");
    }

    // A CVE in what runs: rescan production when due; a fixable finding starts a Release.
    let found = match crate::rescan::run(&ctx, &policy, &mut status, production.as_ref(), now).await {
        Ok(found) => found,
        Err(e) => {
            problems.push(format!("rescanning production: {e}"));
            None
        }
    };

    let releases = observe::releases_of(&ctx, &namespace, &name).await?;
    status.latest_release =
        releases.iter().chain(&started).max_by_key(|r| observe::creation_key(*r)).map(ResourceExt::name_any);
    let promotions = observe::promotions_of(&ctx, &namespace, &name).await?;
    status.production_history = history(&promotions, status.production_digest.as_deref());
    // Drift keeps its last known value while production cannot be read.
    if let Some(live) = &live {
        status.drift = drift::drift(&drift::approved(&promotion_views(&promotions)), live);
    }
    let drifted = !status.drift.is_empty();
    status.observed_generation = policy.meta().generation;
    let ready = problems.is_empty();
    let message = if ready { "watching the policy's workloads".to_string() } else { problems.join("; ") };
    let mut wanted = vec![
        Wanted::new(
            "Ready",
            ready,
            match (ready, base_unavailable) {
                (true, _) => "Observed",
                (false, true) => "BaseImageUnavailable",
                (false, false) => "TargetsUnavailable",
            },
            message,
        ),
        Wanted::new(
            "ProductionDrift",
            drifted,
            if drifted { "Drifted" } else { "AsApproved" },
            if drifted {
                drift::describe(&status.drift)
            } else {
                "production runs what Tidegate deployed with an approved Promotion".to_string()
            },
        ),
    ];
    wanted.extend(crate::rescan::condition(&status));
    status.conditions = conditions::merge(&status.conditions, &wanted, policy.meta().generation, now);
    if status.production_scan.is_none() {
        status.conditions.retain(|c| c.type_ != crate::rescan::CONDITION);
    }
    crate::status::apply(&ctx, ctx.objects.policies.as_ref(), &namespace, &name, old.as_ref(), &status).await?;
    if let Some(found) = found {
        ctx.event(policy.as_ref(), true, "VulnerabilitiesFound", found, "Rescan").await;
    }
    let old_drift = old.as_ref().map(|s| s.drift.as_slice()).unwrap_or_default();
    if status.drift != old_drift {
        if drifted {
            let note = format!("production drifted from what was approved: {}", drift::describe(&status.drift));
            ctx.event(policy.as_ref(), true, "ProductionDrift", note, "Observe").await;
        } else {
            let note = "production runs what Tidegate deployed with an approved Promotion again".to_string();
            ctx.event(policy.as_ref(), false, "DriftResolved", note, "Observe").await;
        }
    }
    // The observed digests are refreshed when nothing else happens (rescans notice a new scanner
    // database then); a refresh that finds nothing new writes nothing, and one of a watched policy
    // with no change seen reads nothing either.
    Ok(Action::requeue(crate::backoff::spread(ctx.observe_interval)))
}

/// The live version of every production workload.
async fn observe_live(
    ctx: &Context,
    namespace: &str,
    workloads: &[&tidegate_api::image_policy::Workload],
) -> Result<Vec<drift::Observed>> {
    let targets = ctx.targets(namespace)?;
    let mut observed = Vec::new();
    for workload in workloads {
        let target = observe::target(workload, true, namespace)?;
        let live = targets.live(&target, &observe::production_plan(workload)?).await?;
        observed.push(drift::Observed {
            workload: target.display(),
            image: live.image,
            break_glass: live.break_glass,
            break_glass_by: live.break_glass_by,
        });
    }
    Ok(observed)
}

/// The digest every workload runs, when they agree.
fn common_digest(live: &[drift::Observed]) -> Option<tidegate_core::Digest> {
    let mut digests = live.iter().map(|o| o.image.as_deref().and_then(observe::digest_of));
    let first = digests.next()??;
    digests.all(|d| d.as_ref() == Some(&first)).then_some(first)
}

fn promotion_views(promotions: &[tidegate_api::Promotion]) -> Vec<drift::PromotionView> {
    promotions
        .iter()
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            Some(drift::PromotionView {
                phase: status.phase,
                digest: p.spec.digest.parse().ok()?,
                previous: status.previous_digest.as_deref().and_then(|d| d.parse().ok()),
                promoted_at: status.promoted_at.as_ref().map(|t| t.0),
                rollback_done: status.conditions.iter().any(|c| c.type_ == "RollbackComplete" && c.status == "True"),
            })
        })
        .collect()
}

/// Digests production ran before `current`, newest first, learned from the Promotions that
/// changed production: each one recorded the digest it replaced.
fn history(promotions: &[tidegate_api::Promotion], current: Option<&str>) -> Vec<DigestRecord> {
    let promoted_at = |p: &tidegate_api::Promotion| p.status.as_ref().and_then(|s| s.promoted_at.clone());
    let mut touched: Vec<&tidegate_api::Promotion> = promotions
        .iter()
        .filter(|p| {
            p.status.as_ref().is_some_and(|s| {
                matches!(s.phase, PromotionPhase::Monitoring | PromotionPhase::Succeeded | PromotionPhase::RolledBack)
            })
        })
        .filter(|p| promoted_at(p).is_some())
        .collect();
    touched.sort_by_key(|p| std::cmp::Reverse(promoted_at(p)));
    let mut records: Vec<DigestRecord> = Vec::new();
    for (i, promotion) in touched.iter().enumerate() {
        let Some(previous) = promotion.status.as_ref().and_then(|s| s.previous_digest.clone()) else { continue };
        if Some(previous.as_str()) == current || records.iter().any(|r| r.digest == previous) {
            continue;
        }
        // The Promotion that had deployed it: an older one with that digest.
        let deployed_by = touched[i + 1..].iter().find(|p| p.spec.digest == previous);
        records.push(DigestRecord {
            digest: previous,
            promotion: deployed_by.map(|p| p.name_any()),
            deployed_at: deployed_by.and_then(|p| promoted_at(p)),
        });
        if records.len() == HISTORY {
            break;
        }
    }
    records
}

/// Starts a Release for the newest tag matching `pattern`, resolved to its digest once; the tag's
/// Release name is deterministic, so each tag is built at most once.
async fn new_build(ctx: &Context, policy: &ImagePolicy, pattern: &str, production: Option<&str>) -> Result<()> {
    let regex = regex::Regex::new(&format!("^(?:{pattern})$"))
        .map_err(|e| crate::error::Error::Invalid(format!("spec.triggers.newBuild.tagPattern: {e}")))?;
    let image = observe::repository(policy)?;
    let repository = tidegate_providers::registry::Repository::from(&image);
    let tags = ctx.registry.tags(&repository).await.map_err(tidegate_providers::ProviderError::from)?;
    let Some(newest) = tags.iter().filter(|t| regex.is_match(t)).max_by(|a, b| version_order(a, b)) else {
        return Ok(());
    };
    let name = names::release_name(&policy.name_any(), "build", newest);
    // Known from the watch: no request. A Release the watch has not delivered yet is found by
    // the check before creating it.
    if ctx.stores.release(&policy.namespace().unwrap_or_default(), &name).await?.is_some() {
        return Ok(());
    }
    let Some(head) =
        ctx.registry.head_manifest(&repository, newest).await.map_err(tidegate_providers::ProviderError::from)?
    else {
        return Ok(());
    };
    if production == Some(head.digest.as_str()) {
        return Ok(());
    }
    let reason = ReleaseReason {
        kind: ReasonKind::NewBuild,
        base_image: None,
        vulnerabilities: None,
        message: Some(format!("new build {newest}")),
    };
    let source = tidegate_api::release::ReleaseSource { image: format!("{}@{}", image.repository_ref(), head.digest) };
    start_release_with_source(ctx, policy, name, reason, Some(source)).await.map(drop)
}

/// Orders tags so that `v1.10.0` comes after `v1.9.0`: digit runs compare as numbers.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn parts(s: &str) -> Vec<(bool, String)> {
        let mut out: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let digit = c.is_ascii_digit();
            match out.last_mut() {
                Some((d, text)) if *d == digit => text.push(c),
                _ => out.push((digit, c.to_string())),
            }
        }
        out
    }
    let (pa, pb) = (parts(a), parts(b));
    for ((da, ta), (db, tb)) in pa.iter().zip(&pb) {
        let ordering = if *da && *db {
            ta.trim_start_matches('0')
                .len()
                .cmp(&tb.trim_start_matches('0').len())
                .then_with(|| ta.trim_start_matches('0').cmp(tb.trim_start_matches('0')))
        } else {
            ta.cmp(tb)
        };
        if ordering != std::cmp::Ordering::Equal {
            return ordering;
        }
    }
    pa.len().cmp(&pb.len())
}

/// Starts a Release under a deterministic name: a trigger that fires again finds it there.
pub(crate) async fn start_release(
    ctx: &Context,
    policy: &ImagePolicy,
    name: String,
    reason: ReleaseReason,
) -> Result<Option<Release>> {
    start_release_with_source(ctx, policy, name, reason, None).await
}

async fn start_release_with_source(
    ctx: &Context,
    policy: &ImagePolicy,
    name: String,
    reason: ReleaseReason,
    source: Option<tidegate_api::release::ReleaseSource>,
) -> Result<Option<Release>> {
    let namespace = policy.namespace().unwrap_or_default();
    // The trigger fired before (a manual trigger stays on the policy; a policy reconciled again
    // before its own status write is seen fires its base trigger again): the watch shows it.
    if ctx.stores.releases.get(&ObjectRef::new(&name).within(&namespace)).is_some() {
        return Ok(None);
    }
    let api = ctx.objects.releases.as_ref();
    let why = format!("{:?}", reason.kind);
    let manual = reason.kind == tidegate_api::release::ReasonKind::Manual;
    let mut release = Release::new(&name, ReleaseSpec { policy: policy.name_any(), reason, source });
    release.metadata.namespace = Some(namespace.clone());
    release.metadata.labels = Some([(LABEL_POLICY.to_string(), policy.name_any())].into());
    // Whoever asked for this Release by hand may not approve its Promotion.
    if let Some(user) = policy.annotations().get(ANNOTATION_TRIGGERED_BY).filter(|_| manual) {
        release.metadata.annotations = Some([(ANNOTATION_TRIGGERED_BY.to_string(), user.clone())].into());
    }
    release.metadata.owner_references = Some(vec![OwnerReference {
        api_version: ImagePolicy::api_version(&()).to_string(),
        kind: ImagePolicy::kind(&()).to_string(),
        name: policy.name_any(),
        uid: policy.uid().unwrap_or_default(),
        controller: Some(false),
        block_owner_deletion: None,
    }]);
    // Created outright: one the watch does not show yet is refused as a conflict.
    match api.create(&namespace, &release).await {
        Ok(created) => {
            // This process wrote that version: the Release's first reconcile may act on the
            // watch's copy of it instead of reading it again.
            ctx.stores.versions.record(&created);
            ctx.event(policy, false, "ReleaseStarted", format!("release {name} started ({why})"), "Trigger").await;
            Ok(Some(created))
        }
        Err(crate::error::Error::Kube(kube::Error::Api(s))) if s.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}

async fn staging_digest(ctx: &Context, policy: &ImagePolicy) -> Result<Option<tidegate_core::Digest>> {
    let namespace = policy.namespace().unwrap_or_default();
    let mut seen = None;
    let targets = ctx.targets(&namespace)?;
    for workload in &policy.spec.workloads {
        let target = observe::target(workload, false, &namespace)?;
        let Some(digest) = targets
            .current_image(&target, &observe::staging_plan(workload))
            .await?
            .as_deref()
            .and_then(observe::digest_of)
        else {
            return Ok(None);
        };
        if seen.as_ref().is_some_and(|d| *d != digest) {
            return Ok(None);
        }
        seen = Some(digest);
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use tidegate_api::{Promotion, PromotionSpec, PromotionStatus};

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn promotion(name: &str, d: char, previous: char, at: i64, phase: PromotionPhase) -> Promotion {
        let mut p = Promotion::new(
            name,
            PromotionSpec {
                policy: "p".into(),
                release: "r".into(),
                digest: digest(d),
                workloads: None,
                requested_by: None,
            },
        );
        p.status = Some(PromotionStatus {
            phase,
            previous_digest: Some(digest(previous)),
            promoted_at: Some(Time(jiff::Timestamp::from_second(at).expect("time"))),
            ..Default::default()
        });
        p
    }

    #[test]
    fn newest_tag_by_version() {
        let mut tags = vec!["v1.9.0", "v1.10.0", "v1.2.10", "v1.2.9"];
        tags.sort_by(|a, b| version_order(a, b));
        assert_eq!(tags, ["v1.2.9", "v1.2.10", "v1.9.0", "v1.10.0"]);
        assert_eq!(version_order("build-007", "build-10"), std::cmp::Ordering::Less);
    }

    #[test]
    fn history_lists_replaced_digests_newest_first() {
        let first = promotion("one", 'a', '0', 100, PromotionPhase::Succeeded);
        let second = promotion("two", 'b', 'a', 200, PromotionPhase::Succeeded);
        let waiting = promotion("three", 'c', 'b', 300, PromotionPhase::AwaitingApproval);
        let records = history(&[first.clone(), second.clone(), waiting], Some(&digest('b')));
        let got: Vec<(String, Option<String>)> =
            records.iter().map(|r| (r.digest.clone(), r.promotion.clone())).collect();
        assert_eq!(got, [(digest('a'), Some("one".into())), (digest('0'), None)]);
        // After rolling "two" back, production runs "a" again: only the original digest is earlier.
        let rolled_back = promotion("two", 'b', 'a', 200, PromotionPhase::RolledBack);
        let records = history(&[first, rolled_back], Some(&digest('a')));
        assert_eq!(records.iter().map(|r| r.digest.clone()).collect::<Vec<_>>(), [digest('0')]);
    }
}
