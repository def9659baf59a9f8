//! The Release reconciler: observes a Release and its policy, asks
//! [`tidegate_core::release::plan`] what to do, carries out the work the plan asks for (build,
//! scan, sign, verify, deploy to staging, test, open the Promotion), and writes status once. Every
//! decision is the planner's. It never touches production.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tidegate_api::release::TestResult;
use tidegate_api::{ImagePolicy, LABEL_POLICY, Promotion, PromotionPhase, PromotionSpec, Release, ReleasePhase};
use tidegate_core::promotion::Progress;
use tidegate_core::release::{
    self, BuildObservation, Effect, Observed, PolicyState, ReleaseFacts, ReleasePhaseExt, ReleasePlan, ScanObservation,
    SignObservation, SignatureCheck, StagingObservation, StagingOutcome, TestsObservation,
};
use tidegate_core::{Digest, ImageRef};
use tidegate_providers::staging_tests::{self, JobOutcome};
use tidegate_providers::targets::{Deploy, Target};
use tidegate_providers::{BuildContext, BuildStep, ProviderError, ScanRequest};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::observe;

/// Rounds of work one reconcile carries out before the plan decides (staging needs three:
/// verify the signature, converge the targets, decide). The planner never asks twice for work
/// whose outcome it was given (`release_invariants` in core), so this bound is never reached.
const MAX_ROUNDS: usize = 4;

/// Reconciles one Release.
#[tracing::instrument(skip(release, ctx), fields(kind = "Release", namespace = %release.namespace().unwrap_or_default(), name = %release.name_any()))]
pub async fn reconcile(release: Arc<Release>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = release.namespace().unwrap_or_default();
    let name = release.name_any();
    if settled(&ctx, &namespace, &release).await? {
        return Ok(Action::await_change());
    }
    // Boxed: the work below is a large future (about 24 KiB), and kube spawns every reconcile as
    // a task of its own, all at once when the watches list. Inline, each ended Release of a
    // cluster's history would hold that much while its reconcile is queued or waits for the
    // stores; boxed, only a Release that goes on pays for it.
    Box::pin(advance(release, ctx, namespace, name)).await
}

/// Reconciles a Release that has not settled: plans, carries out the work, writes status.
async fn advance(release: Arc<Release>, ctx: Arc<Context>, namespace: String, name: String) -> Result<Action> {
    // Act on the latest status: a cached copy that predates this controller's own last write
    // could repeat a started build, so the watch cache serves only the version this process last
    // wrote or read (`stores::latest`).
    let Some(release) =
        crate::stores::latest(ctx.objects.releases.as_ref(), &ctx.stores.releases, &ctx.stores.versions, &release)
            .await?
    else {
        return Ok(Action::await_change());
    };
    let old = release.status.clone();

    // Observe.
    let policy = observe::policy(&ctx, &namespace, &release.spec.policy).await?;
    let mut facts = facts(&ctx, &release, policy.as_ref()).await?;

    // Plan, carrying out the work the plan asks for until it decides.
    let mut plan = release::plan(&facts);
    if let Some(policy) = &policy {
        let mut work = Work::new(&ctx, policy, &release);
        for _ in 0..MAX_ROUNDS {
            if !plan.awaits_work() {
                break;
            }
            work.carry_out(&plan, &mut facts.observed).await?;
            plan = release::plan(&facts);
        }
    }
    if plan.awaits_work() {
        return Err(Error::Invalid(format!(
            "the Release planner still asks for {:?} after {MAX_ROUNDS} rounds",
            plan.effects
        )));
    }

    // Execute what follows from the decision, then write status once.
    for effect in &plan.effects {
        if let Effect::OpenPromotion { name, digest } = effect {
            open_promotion(&ctx, &release, name, digest).await?;
        }
    }
    crate::status::apply(&ctx, ctx.objects.releases.as_ref(), &namespace, &name, old.as_ref(), &plan.status).await?;
    announce(&ctx, &release, &plan).await;
    Ok(match plan.requeue_after {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// Whether `release` has ended and planning it again changes nothing. An ended Release stays
/// ended (a newer version would arrive as a watch event of its own), so such a copy from the
/// watch cache needs no fresh read: a cluster's history costs no request when the controller
/// starts or its watches relist.
///
/// Awaits nothing but the stores' first lists, so that its future stays small: every ended
/// Release's reconcile is a task of its own while the watches list.
async fn settled(ctx: &Context, namespace: &str, release: &Release) -> Result<bool> {
    let Some(status) = release.status.as_ref().filter(|s| s.phase.is_terminal()) else { return Ok(false) };
    ctx.stores.ready().await?;
    let policy = ctx.stores.policies.get(&ObjectRef::new(&release.spec.policy).within(namespace));
    // An ended Release is never superseded again.
    let plan = release::plan(&facts_with(ctx, release, policy.as_deref(), None, None));
    Ok(plan.effects.is_empty() && plan.requeue_after.is_none() && plan.status == *status)
}

/// What the planner needs to know before any work is done.
async fn facts(ctx: &Context, release: &Release, policy: Option<&ImagePolicy>) -> Result<ReleaseFacts> {
    let namespace = release.namespace().unwrap_or_default();
    // Only a Release that can still move needs to know whether a newer one replaces it.
    let superseded_by = match (policy, &release.status) {
        (Some(_), Some(status)) if status.phase.is_terminal() => None,
        (Some(_), _) => newer_release(ctx, release, &namespace).await?,
        (None, _) => None,
    };
    // Whether an approved rollout of it is under way matters only to a Release about to be
    // superseded.
    let rolling_out = match (&superseded_by, &release.status) {
        (Some(_), Some(status)) if status.phase == ReleasePhase::Verified => {
            rolling_out(ctx, release, &namespace).await?
        }
        _ => None,
    };
    Ok(facts_with(ctx, release, policy, superseded_by, rolling_out))
}

/// [`facts`], given the newer Release that replaces this one and the Promotion of it that is
/// changing production, if any.
fn facts_with(
    ctx: &Context,
    release: &Release,
    policy: Option<&ImagePolicy>,
    superseded_by: Option<String>,
    rolling_out: Option<String>,
) -> ReleaseFacts {
    let namespace = release.namespace().unwrap_or_default();
    let status = release.status.clone().unwrap_or_default();
    ReleaseFacts {
        name: release.name_any(),
        policy_name: release.spec.policy.clone(),
        generation: release.meta().generation,
        created: release.meta().creation_timestamp.as_ref().map(|t| t.0),
        status,
        policy: match policy {
            None => PolicyState::Missing,
            Some(policy) => PolicyState::Present {
                repository: observe::repository(policy).map_err(|e| match e {
                    Error::Invalid(message) => message,
                    other => other.to_string(),
                }),
                workloads: policy.spec.workloads.iter().map(|w| w.name.clone()).collect(),
            },
        },
        superseded_by,
        rolling_out,
        fixes: release.spec.reason.vulnerabilities.clone().unwrap_or_default(),
        observed: Observed::default(),
        watched: policy.is_some_and(|p| ctx.workload_watches.cover(p)),
        now: ctx.now(),
        namespace,
    }
}

/// The newest other Release of the same policy, if it is newer than this one and still in the
/// running (not Rejected or Failed).
async fn newer_release(ctx: &Context, release: &Release, namespace: &str) -> Result<Option<String>> {
    let mine = observe::creation_key(release);
    Ok(observe::releases_of(ctx, namespace, &release.spec.policy)
        .await?
        .into_iter()
        .filter(|r| observe::creation_key(r) > mine)
        .filter(|r| !matches!(r.status.as_ref().map(|s| s.phase), Some(ReleasePhase::Rejected | ReleasePhase::Failed)))
        .max_by_key(observe::creation_key)
        .map(|r| r.name_any()))
}

/// The name of a Promotion of `release` that is changing production (`Approved` or
/// `Promoting`), read from the API server: the watch cache may not show yet that one just left
/// `AwaitingApproval`.
async fn rolling_out(ctx: &Context, release: &Release, namespace: &str) -> Result<Option<String>> {
    let digest = release.status.as_ref().and_then(|s| s.digest.as_deref());
    for reference in ctx.stores.promotion_refs_of(release) {
        let Some(promotion) = ctx.objects.promotions.get(namespace, &reference.name).await? else { continue };
        let phase = promotion.status.as_ref().map(|s| s.phase);
        if promotion.spec.release == release.name_any()
            && promotion.spec.policy == release.spec.policy
            && Some(promotion.spec.digest.as_str()) == digest
            && matches!(phase, Some(PromotionPhase::Approved | PromotionPhase::Promoting))
        {
            return Ok(Some(promotion.name_any()));
        }
    }
    Ok(None)
}

/// Metrics and an Event when the phase changed.
async fn announce(ctx: &Context, release: &Release, plan: &ReleasePlan) {
    let Some(transition) = &plan.transition else { return };
    let phase = format!("{:?}", plan.phase);
    ctx.metrics.transitions.get_or_create(&crate::metrics::PhaseLabels { kind: "Release", phase: phase.clone() }).inc();
    ctx.event(release, transition.warning, transition.reason, transition.message.clone(), &phase).await;
}

/// Carries out a plan's work for one Release, within one reconcile.
struct Work<'a> {
    ctx: &'a Context,
    policy: &'a ImagePolicy,
    release: &'a Release,
    namespace: String,
    /// Staging targets as the policy namespace's deployer, made once per reconcile.
    targets: Option<Arc<dyn Deploy>>,
}

impl<'a> Work<'a> {
    fn new(ctx: &'a Context, policy: &'a ImagePolicy, release: &'a Release) -> Self {
        Self { ctx, policy, release, namespace: release.namespace().unwrap_or_default(), targets: None }
    }

    /// Carries out every piece of work `plan` asks for, in order, recording what each came to
    /// in `observed`. Work that fails for good is recorded as a failure and ends the round, as
    /// does a staging target that fails or is out of reach; transient errors end the reconcile
    /// (it is retried with backoff).
    async fn carry_out(&mut self, plan: &ReleasePlan, observed: &mut Observed) -> Result<()> {
        for effect in plan.effects.iter().filter(|e| e.is_work()) {
            match self.effect(effect, observed).await {
                Ok(()) => {}
                Err(Error::Provider(e)) if !e.is_transient() => observed.failure = Some(e.to_string()),
                Err(Error::Invalid(message)) => observed.failure = Some(message),
                Err(e) => return Err(e),
            }
            let staging_stopped = observed.staging.last().is_some_and(|s| {
                matches!(s.outcome, StagingOutcome::OutOfReach(_) | StagingOutcome::Progress(Progress::Failed(_)))
            });
            if observed.failure.is_some() || staging_stopped {
                break;
            }
        }
        Ok(())
    }

    async fn effect(&mut self, effect: &Effect, observed: &mut Observed) -> Result<()> {
        let now = self.ctx.now();
        match effect {
            Effect::StartBuild => observed.build = Some(self.build(None, None, now).await?),
            Effect::FollowBuild { started_at, run_id } => {
                observed.build = Some(self.build(*started_at, run_id.clone(), now).await?)
            }
            Effect::Scan { digest, built_at } => observed.scan = Some(self.scan(digest, *built_at, now).await?),
            Effect::Sign { digest } => {
                let image = self.repository()?.pinned(digest);
                observed.sign = Some(match self.ctx.signer.sign(&image, digest).await {
                    Ok(signature) => SignObservation::Signed(signature),
                    Err(ProviderError::NotConfigured(why)) => SignObservation::NotConfigured(why),
                    Err(e) => return Err(e.into()),
                });
            }
            Effect::VerifySignature { digest, signature } => {
                observed.signature = Some(self.verify_signature(digest, signature).await?);
            }
            Effect::DeployStaging { workload, image } => {
                let outcome = self.deploy_staging(workload, image).await?;
                observed.staging.push(StagingObservation { workload: workload.clone(), outcome });
            }
            Effect::RunTests { digest } => observed.tests = Some(self.run_tests(digest, now).await?),
            // Not work: carried out once the plan has decided.
            Effect::OpenPromotion { .. } => {}
        }
        Ok(())
    }

    fn repository(&self) -> Result<ImageRef> {
        observe::repository(self.policy)
    }

    /// Whether the recorded signature of `digest` verifies: asked of the registry, or, while this
    /// Release's staging rollout goes on, its own verification of the last
    /// [`crate::signature_proofs::REUSE_FOR`] (each poll would otherwise fetch the referrers, the
    /// signature manifest and the envelope again).
    async fn verify_signature(&self, digest: &Digest, signature: &str) -> Result<SignatureCheck> {
        let proofs = &self.ctx.signature_proofs;
        let uid = self.release.uid();
        if uid.as_deref().is_some_and(|uid| proofs.recent(uid, digest, std::time::Instant::now())) {
            return Ok(SignatureCheck::Valid);
        }
        let image = self.repository()?.pinned(digest);
        let check = match self.ctx.signer.verify(&image, digest, signature).await {
            Ok(tidegate_providers::Verification::Valid { .. }) => SignatureCheck::Valid,
            Ok(tidegate_providers::Verification::Invalid(why)) => SignatureCheck::Invalid(why),
            Err(ProviderError::NotConfigured(why)) => SignatureCheck::Invalid(why),
            Err(e) => return Err(e.into()),
        };
        if let Some(uid) = uid.as_deref() {
            match check {
                SignatureCheck::Valid => proofs.proven(uid, digest, std::time::Instant::now()),
                SignatureCheck::Invalid(_) => proofs.forget(uid),
            }
        }
        Ok(check)
    }

    fn targets(&mut self) -> Result<&dyn Deploy> {
        let targets = match self.targets.take() {
            Some(targets) => targets,
            None => self.ctx.targets(&self.namespace)?,
        };
        Ok(&**self.targets.insert(targets))
    }

    async fn build(
        &self,
        started_at: Option<jiff::Timestamp>,
        run_id: Option<String>,
        now: jiff::Timestamp,
    ) -> Result<BuildObservation> {
        let repository = self.repository()?;
        let context = BuildContext { started_at, run_id, now };
        Ok(match self.ctx.builder.build(self.policy, self.release, &repository, &context).await? {
            BuildStep::Done(built) => BuildObservation::Done {
                digest: built.digest,
                run: built.run,
                run_id: built.run_id,
                log_link: built.log_link,
            },
            BuildStep::Started { run, run_id } => BuildObservation::Started { run, run_id },
            BuildStep::Waiting(message) => BuildObservation::Waiting(message),
        })
    }

    async fn scan(&self, digest: &Digest, built_at: jiff::Timestamp, now: jiff::Timestamp) -> Result<ScanObservation> {
        let policy = self.policy;
        let kind = policy.spec.scan.scanner;
        let scanner = match self.ctx.scanners.get(kind) {
            Ok(scanner) => scanner,
            Err(why) => {
                return Ok(ScanObservation::Refused { reason: crate::scanners::SCANNER_NOT_CONFIGURED, message: why });
            }
        };
        let image = self.repository()?.pinned(digest);
        let max_age = crate::vulnerabilities::max_age(policy)?;
        let staging = crate::vulnerabilities::workload_namespaces(policy, false, &self.namespace)?;
        let request = ScanRequest {
            namespace: &self.namespace,
            image: &image,
            digest,
            workload_namespaces: &staging,
            max_age,
            now,
            deadline: crate::vulnerabilities::scan_deadline(policy, built_at)?,
        };
        let answer = match scanner.scans_itself() {
            // A scan that runs here waits its turn in the background, not in this reconcile.
            true => {
                let key = crate::vulnerabilities::ScanKey::new(kind, &self.namespace, digest);
                let queued = crate::scan_queue::Request::of(&request);
                match self.ctx.scan_queue.poll(key, scanner.clone(), queued, ObjectRef::from_obj(self.release)) {
                    Some(answer) => answer,
                    None => return Ok(ScanObservation::Queued(crate::scanners::queued_for(kind, digest))),
                }
            }
            false => scanner.scan(&request).await,
        };
        let report = match answer {
            Ok(Some(report)) => report,
            Ok(None) => return Ok(ScanObservation::Waiting(crate::scanners::waiting_for(kind, digest))),
            Err(ProviderError::NotAllowed(message)) => {
                return Ok(ScanObservation::Refused { reason: crate::scanners::not_allowed_reason(kind), message });
            }
            Err(ProviderError::NotConfigured(message)) => {
                return Ok(ScanObservation::Refused { reason: crate::scanners::SCANNER_NOT_CONFIGURED, message });
            }
            Err(e) => return Err(e.into()),
        };
        // No-regression: what production runs now is scanned with the same scanner; its
        // findings do not block the candidate. Without a production result, everything blocks.
        let production = match policy.spec.scan.no_regression {
            true => {
                crate::vulnerabilities::production_findings(self.ctx, policy, scanner.as_ref(), max_age, now).await?
            }
            false => None,
        };
        Ok(ScanObservation::Report {
            findings: report.findings,
            gate: crate::vulnerabilities::gate_policy(policy, production),
            scanner: crate::scanners::spelled(kind),
            produced_at: report.produced_at,
            database: report.database,
        })
    }

    /// One convergence step of `workload`'s staging target (never its production target).
    async fn deploy_staging(&mut self, workload: &str, image: &str) -> Result<StagingOutcome> {
        let namespace = self.namespace.clone();
        let policy = self.policy;
        let workload = policy
            .spec
            .workloads
            .iter()
            .find(|w| w.name == workload)
            .ok_or_else(|| Error::Invalid(format!("spec.workloads: no workload {workload}")))?;
        let target = observe::target(workload, false, &namespace)?;
        let targets = self.targets()?;
        match targets.converge(&target, &observe::staging_plan(workload), image).await {
            Ok(progress) => Ok(StagingOutcome::Progress(progress)),
            Err(e) => match crate::error::out_of_reach(&e, &namespace, &format!("staging {}", target.display())) {
                Some(message) => Ok(StagingOutcome::OutOfReach(message)),
                None => Err(e.into()),
            },
        }
    }

    async fn run_tests(&mut self, digest: &Digest, now: jiff::Timestamp) -> Result<TestsObservation> {
        let namespace = self.namespace.clone();
        let policy = self.policy;
        let release = self.release;
        let image = self.repository()?.pinned(digest);
        let mut results = Vec::new();
        for check in &policy.spec.tests.http {
            let workload = policy.spec.workloads.iter().find(|w| w.name == check.workload).ok_or_else(|| {
                Error::Invalid(format!("spec.tests.http {}: no workload {}", check.name, check.workload))
            })?;
            let target = observe::target(workload, false, &namespace)?;
            let base = match (&check.base_url, &target) {
                (Some(url), _) => url.clone(),
                (None, Target::Kubernetes(k)) => match &k.target.service {
                    Some(service) => format!("http://{service}.{}.svc", k.namespace),
                    None => {
                        return Err(Error::Invalid(format!(
                            "spec.tests.http {}: set baseUrl, or a service on workload {}'s staging target",
                            check.name, workload.name
                        )));
                    }
                },
                (None, _) => match self.targets()?.staging_url(&target).await {
                    Ok(Some(url)) => url,
                    Ok(None) => {
                        return Err(Error::Invalid(format!(
                            "spec.tests.http {}: workload {}'s staging target has no URL; set baseUrl",
                            check.name, workload.name
                        )));
                    }
                    Err(e) if !e.is_transient() => {
                        return Err(Error::Invalid(format!("spec.tests.http {}: {e}", check.name)));
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            let result = staging_tests::http_check(check, &base, &self.ctx.http_checks).await;
            results.push(TestResult {
                name: result.name,
                passed: result.passed,
                message: Some(result.message),
                finished_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
            });
        }
        let Some(job) = &policy.spec.tests.job else { return Ok(TestsObservation::Finished(results)) };
        let staging_namespace = policy
            .spec
            .workloads
            .first()
            .map(|w| observe::target(w, false, &namespace).map(|t| t.namespace().to_string()))
            .transpose()?
            .unwrap_or_else(|| namespace.clone());
        let job_name = format!("{}-test", release.name_any().chars().take(57).collect::<String>());
        // The test Job is created as the policy namespace's deployer: it runs only where a
        // namespace owner let that deployer create Jobs, and the template is read the same way.
        let outcome = match self
            .ctx
            .test_jobs
            .test_job(
                &namespace,
                &job.template_config_map,
                &staging_namespace,
                &job_name,
                &image,
                &[(LABEL_POLICY, &policy.name_any()), ("tidegate.dev/release", &release.name_any())],
            )
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => {
                let what = format!("the test Job {staging_namespace}/{job_name}");
                match crate::error::out_of_reach(&e, &namespace, &what) {
                    Some(message) => return Ok(TestsObservation::OutOfReach(message)),
                    None => return Err(e.into()),
                }
            }
        };
        let time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
        match outcome {
            JobOutcome::Running => return Ok(TestsObservation::JobRunning),
            JobOutcome::Succeeded => results.push(TestResult {
                name: "job".into(),
                passed: true,
                message: Some(format!("Job {staging_namespace}/{job_name} completed")),
                finished_at: time,
            }),
            JobOutcome::Failed(message) => results.push(TestResult {
                name: "job".into(),
                passed: false,
                message: Some(message),
                finished_at: time,
            }),
        }
        Ok(TestsObservation::Finished(results))
    }
}

/// Opens the Promotion of a Verified Release; a later call finds it already there. Every pass
/// of a Verified Release asks for it, so the watch's copy answers first and only a Promotion the
/// watch does not show (not opened yet, or not seen yet) is created: a cluster of Releases
/// waiting for approval costs no request per pass.
async fn open_promotion(ctx: &Context, release: &Release, name: &str, digest: &Digest) -> Result<()> {
    let namespace = release.namespace().unwrap_or_default();
    if ctx.stores.promotions.get(&ObjectRef::new(name).within(&namespace)).is_some() {
        return Ok(());
    }
    let api = ctx.objects.promotions.as_ref();
    let mut promotion = Promotion::new(
        name,
        PromotionSpec {
            policy: release.spec.policy.clone(),
            release: release.name_any(),
            digest: digest.to_string(),
            workloads: None,
            requested_by: Some(ctx.identity.clone()),
        },
    );
    promotion.metadata.namespace = Some(namespace.clone());
    promotion.metadata.labels = Some([(LABEL_POLICY.to_string(), release.spec.policy.clone())].into());
    // No owner reference: deleting the Release must not delete an approved or in-flight
    // Promotion (and with it the audit record and the monitor window). Created outright: one the
    // watch does not show yet is refused as a conflict.
    match api.create(&namespace, &promotion).await {
        Ok(created) => {
            // This process wrote that version: the Promotion's first reconcile may act on the
            // watch's copy of it.
            ctx.stores.versions.record(&created);
            ctx.event(
                release,
                false,
                "PromotionOpened",
                format!("promotion {name} waits for approval"),
                "OpenPromotion",
            )
            .await;
            Ok(())
        }
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => Ok(()),
        Err(Error::Kube(e)) => Err(Error::Provider(ProviderError::Kube(e))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_planner_and_the_signing_setup_name_the_same_reason() {
        // `kubectl` users and the signing docs read one reason for "no signing key".
        assert_eq!(tidegate_core::release::SIGNING_NOT_CONFIGURED, crate::signing::SIGNING_NOT_CONFIGURED);
    }
}
