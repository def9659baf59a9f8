//! The Release reconciler: walks a candidate through build, scan, sign, staging and tests, then
//! opens its Promotion. It never touches production.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tidegate_api::release::{ScanSummary, StageRecord, TestResult};
use tidegate_api::{ImagePolicy, LABEL_POLICY, Promotion, PromotionSpec, Release, ReleasePhase, ReleaseStatus};
use tidegate_core::conditions::{self, Wanted};
use tidegate_core::gate;
use tidegate_core::release::{self, ReleasePhaseExt, StageOutcome};
use tidegate_core::{Digest, names};
use tidegate_providers::staging_tests::{self, JobOutcome};
use tidegate_providers::targets::Target;
use tidegate_providers::{BuildContext, BuildStep, ProviderError, ScanRequest};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::observe;

/// How often a stage that waits (a rollout, a test Job, a scan report) is looked at again.
const POLL: Duration = Duration::from_secs(2);

/// Reconciles one Release.
#[tracing::instrument(skip(release, ctx), fields(kind = "Release", namespace = %release.namespace().unwrap_or_default(), name = %release.name_any()))]
pub async fn reconcile(release: Arc<Release>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = release.namespace().unwrap_or_default();
    let name = release.name_any();
    let api: Api<Release> = Api::namespaced(ctx.client.clone(), &namespace);
    // Act on the latest status, not the watch cache: a cached copy can predate this
    // controller's own last write, and acting on it could repeat a started build or overwrite
    // the recorded rollback target.
    let Some(release) = api.get_opt(&name).await?.map(Arc::new) else { return Ok(Action::await_change()) };
    let old = release.status.clone();
    let mut status = old.clone().unwrap_or_default();
    let now = ctx.now();
    let phase = status.phase;

    let Some(policy) = observe::policy(&ctx, &namespace, &release.spec.policy).await? else {
        status.conditions = conditions::merge(
            &status.conditions,
            &[Wanted::new(
                "Ready",
                false,
                "PolicyNotFound",
                format!("ImagePolicy {namespace}/{} does not exist", release.spec.policy),
            )],
            release.meta().generation,
            now,
        );
        crate::status::apply(&ctx, &api, &name, old.as_ref(), &status).await?;
        return Ok(Action::await_change());
    };

    if phase.is_terminal() {
        return Ok(Action::await_change());
    }

    let superseded_by = newer_release(&ctx, &release, &namespace).await?;
    let outcome = if superseded_by.is_some() {
        StageOutcome::Done
    } else {
        match run_stage(&ctx, &policy, &release, &mut status, now).await {
            Ok(outcome) => outcome,
            Err(Error::Provider(e)) if !e.is_transient() => StageOutcome::Failed { message: e.to_string() },
            Err(Error::Invalid(message)) => StageOutcome::Failed { message },
            Err(e) => return Err(e),
        }
    };
    let step = release::step(phase, superseded_by.as_deref(), &outcome);
    status.phase = step.phase;
    status.observed_generation = release.meta().generation;
    let ready = step.phase == ReleasePhase::Verified;
    let failed = matches!(step.phase, ReleasePhase::Rejected | ReleasePhase::Failed);
    let mut wanted = vec![Wanted::new("Ready", ready, step.reason, step.message.clone())];
    if failed || step.phase == ReleasePhase::Superseded {
        wanted.push(Wanted::new("Blocked", failed, step.reason, step.message.clone()));
    }
    if phase == ReleasePhase::Signing && superseded_by.is_none() {
        // Whether the candidate got signed, and if not why (`SigningNotConfigured` names the flags).
        match &outcome {
            StageOutcome::Done => wanted.push(Wanted::new("Signed", true, "Signed", "the candidate is signed")),
            StageOutcome::Rejected { reason, message } => {
                wanted.push(Wanted::new("Signed", false, *reason, message.clone()))
            }
            StageOutcome::Failed { message } => {
                wanted.push(Wanted::new("Signed", false, "SigningFailed", message.clone()))
            }
            StageOutcome::InProgress(_) => {}
        }
    }
    status.conditions = conditions::merge(&status.conditions, &wanted, release.meta().generation, now);

    if step.phase == ReleasePhase::Verified {
        ensure_promotion(&ctx, &release, &status).await?;
    }
    crate::status::apply(&ctx, &api, &name, old.as_ref(), &status).await?;
    if step.phase != phase {
        ctx.metrics
            .transitions
            .get_or_create(&crate::metrics::PhaseLabels { kind: "Release", phase: format!("{:?}", step.phase) })
            .inc();
        ctx.event(release.as_ref(), failed, step.reason, step.message, &format!("{:?}", step.phase)).await;
    }
    Ok(match step.phase {
        p if p != phase => Action::requeue(Duration::ZERO),
        p if p.has_work() => Action::requeue(POLL),
        _ => Action::await_change(),
    })
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

fn digest(status: &ReleaseStatus) -> Result<Digest> {
    status
        .digest
        .as_deref()
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| Error::Invalid("status.digest is missing or malformed".into()))
}

async fn run_stage(
    ctx: &Context,
    policy: &ImagePolicy,
    release: &Release,
    status: &mut ReleaseStatus,
    now: jiff::Timestamp,
) -> Result<StageOutcome> {
    let namespace = release.namespace().unwrap_or_default();
    let repository = observe::repository(policy)?;
    match status.phase {
        ReleasePhase::Pending | ReleasePhase::Verified => Ok(StageOutcome::Done),
        ReleasePhase::Building => {
            let started_at = status.build.as_ref().and_then(|b| b.started_at.as_ref()).map(|t| t.0);
            let run_id = status.build.as_ref().and_then(|b| b.run_id.clone());
            match ctx.builder.build(policy, release, &repository, &BuildContext { started_at, run_id, now }).await? {
                BuildStep::Done(built) => {
                    status.image = Some(repository.pinned(&built.digest));
                    status.digest = Some(built.digest.to_string());
                    status.build = Some(StageRecord {
                        reference: Some(built.run),
                        started_at: started_at.map(Time),
                        finished_at: Some(Time(now)),
                        run_id: built.run_id,
                        log_link: built.log_link,
                    });
                    Ok(StageOutcome::Done)
                }
                BuildStep::Started { run, run_id } => {
                    status.build = Some(StageRecord {
                        reference: Some(run.clone()),
                        started_at: Some(Time(now)),
                        finished_at: None,
                        run_id,
                        log_link: None,
                    });
                    Ok(StageOutcome::InProgress(run))
                }
                BuildStep::Waiting(message) => Ok(StageOutcome::InProgress(message)),
            }
        }
        ReleasePhase::Scanning => {
            let digest = digest(status)?;
            let image = repository.pinned(&digest);
            let scanner = match ctx.scanners.get(policy.spec.scan.scanner) {
                Ok(scanner) => scanner,
                Err(why) => {
                    return Ok(StageOutcome::Rejected {
                        reason: crate::scanners::SCANNER_NOT_CONFIGURED,
                        message: why,
                    });
                }
            };
            let max_age = crate::vulnerabilities::max_age(policy)?;
            let staging = crate::vulnerabilities::workload_namespaces(policy, false, &namespace)?;
            // The wait for a first result counts from when the candidate was built.
            let built = status.build.as_ref().and_then(|b| b.finished_at.as_ref()).map(|t| t.0);
            let built = built.or_else(|| release.meta().creation_timestamp.as_ref().map(|t| t.0)).unwrap_or(now);
            let request = ScanRequest {
                namespace: &namespace,
                image: &image,
                digest: &digest,
                workload_namespaces: &staging,
                max_age,
                now,
                deadline: crate::vulnerabilities::scan_deadline(policy, built)?,
            };
            let kind = policy.spec.scan.scanner;
            let report = match scanner.scan(&request).await {
                Ok(Some(report)) => report,
                Ok(None) => return Ok(StageOutcome::InProgress(crate::scanners::waiting_for(kind, &digest))),
                Err(ProviderError::NotAllowed(message)) => {
                    return Ok(StageOutcome::Rejected { reason: crate::scanners::not_allowed_reason(kind), message });
                }
                Err(ProviderError::NotConfigured(message)) => {
                    return Ok(StageOutcome::Rejected { reason: crate::scanners::SCANNER_NOT_CONFIGURED, message });
                }
                Err(e) => return Err(e.into()),
            };
            let (findings, produced_at, database) = (report.findings, report.produced_at, report.database);
            // No-regression: what production runs now is scanned with the same scanner; its
            // findings do not block the candidate. Without a production result, everything blocks.
            let production = match policy.spec.scan.no_regression {
                true => {
                    crate::vulnerabilities::production_findings(ctx, policy, scanner.as_ref(), max_age, now).await?
                }
                false => None,
            };
            let gate_policy = crate::vulnerabilities::gate_policy(policy, production);
            let decision = gate::evaluate(&findings, &gate_policy, now);
            status.scan = Some(ScanSummary {
                // As the API spells it (`trivy`, `trivyReport`, `configMapReport`).
                scanner: serde_json::to_value(policy.spec.scan.scanner).ok().and_then(|v| v.as_str().map(String::from)),
                critical: decision.counts[0],
                high: decision.counts[1],
                medium: decision.counts[2],
                low: decision.counts[3],
                blocking: i32::try_from(decision.blocking.len()).unwrap_or(i32::MAX),
                blocking_ids: decision.blocking.iter().take(50).cloned().collect(),
                expired_exceptions: decision.expired.iter().take(50).cloned().collect(),
                top: top_findings(&findings, &decision),
                inherited: decision.inherited.iter().take(50).cloned().collect(),
                produced_at: produced_at.map(Time),
                database,
                finished_at: Some(Time(now)),
            });
            if decision.passes() {
                Ok(StageOutcome::Done)
            } else {
                let mut message =
                    format!("{} blocking finding(s): {}", decision.blocking.len(), decision.blocking.join(", "));
                if !decision.expired.is_empty() {
                    message.push_str(&format!(
                        "; the exception of {} expired, so it blocks again (renew it in spec.scan.exceptions or fix it)",
                        decision.expired.join(", ")
                    ));
                }
                let reason_ids = release.spec.reason.vulnerabilities.clone().unwrap_or_default();
                let carried = tidegate_core::rescan::still_carried(&reason_ids, &decision.blocking);
                if !carried.is_empty() {
                    // Rescans start no second Release for the same findings on the same digest.
                    message = format!(
                        "the rebuilt image still carries {}, which this Release was started to fix: rebuilding \
                         onto the current base does not fix it, so no new Release is started for it; a newer base \
                         image or an application change must fix it. {message}",
                        carried.join(", ")
                    );
                    return Ok(StageOutcome::Rejected { reason: "FixNotEffective", message });
                }
                Ok(StageOutcome::Rejected { reason: "BlockingVulnerabilities", message })
            }
        }
        ReleasePhase::Signing => {
            let digest = digest(status)?;
            let image = repository.pinned(&digest);
            let signature = match ctx.signer.sign(&image, &digest).await {
                Ok(signature) => signature,
                // Nothing unsigned is staged: without signing configuration the Release stops here.
                Err(ProviderError::NotConfigured(why)) => {
                    return Ok(StageOutcome::Rejected {
                        reason: crate::signing::SIGNING_NOT_CONFIGURED,
                        message: format!("{why}; staging untouched"),
                    });
                }
                Err(e) => return Err(e.into()),
            };
            status.signature = Some(StageRecord {
                reference: Some(signature),
                finished_at: Some(Time(now)),
                ..StageRecord::default()
            });
            Ok(StageOutcome::Done)
        }
        ReleasePhase::Staging => {
            let digest = digest(status)?;
            let image = repository.pinned(&digest);
            if let Some(why) = signature_problem(ctx, &image, &digest, status).await? {
                return Ok(StageOutcome::Rejected {
                    reason: "SignatureInvalid",
                    message: format!("{why}; staging untouched"),
                });
            }
            let mut waiting = Vec::new();
            let targets = ctx.targets(&namespace)?;
            for workload in &policy.spec.workloads {
                let target = observe::target(workload, false, &namespace)?;
                let progress = match targets.converge(&target, &observe::staging_plan(workload), &image).await {
                    Ok(progress) => progress,
                    Err(e) => {
                        match crate::error::out_of_reach(&e, &namespace, &format!("staging {}", target.display())) {
                            Some(message) => return Ok(StageOutcome::Rejected { reason: "OutOfReach", message }),
                            None => return Err(e.into()),
                        }
                    }
                };
                match progress {
                    tidegate_core::promotion::Progress::Done => {}
                    tidegate_core::promotion::Progress::InProgress(m) => waiting.push(m),
                    tidegate_core::promotion::Progress::Failed(m) => return Ok(StageOutcome::Failed { message: m }),
                }
            }
            if !waiting.is_empty() {
                return Ok(StageOutcome::InProgress(waiting.join("; ")));
            }
            status.staging =
                Some(StageRecord { reference: Some(image), finished_at: Some(Time(now)), ..StageRecord::default() });
            Ok(StageOutcome::Done)
        }
        ReleasePhase::Testing => run_tests(ctx, policy, release, status, now).await,
        ReleasePhase::Rejected | ReleasePhase::Failed | ReleasePhase::Superseded => Ok(StageOutcome::Done),
    }
}

/// Why the candidate's signature does not verify, or `None` when it does.
async fn signature_problem(
    ctx: &Context,
    image: &str,
    digest: &Digest,
    status: &ReleaseStatus,
) -> Result<Option<String>> {
    let Some(signature) = status.signature.as_ref().and_then(|s| s.reference.as_deref()) else {
        return Ok(Some(format!("{digest} was never signed")));
    };
    Ok(match ctx.signer.verify(image, digest, signature).await {
        Ok(tidegate_providers::Verification::Valid { .. }) => None,
        Ok(tidegate_providers::Verification::Invalid(why)) => Some(why),
        Err(ProviderError::NotConfigured(why)) => Some(why),
        Err(e) => return Err(e.into()),
    })
}

async fn run_tests(
    ctx: &Context,
    policy: &ImagePolicy,
    release: &Release,
    status: &mut ReleaseStatus,
    now: jiff::Timestamp,
) -> Result<StageOutcome> {
    let namespace = release.namespace().unwrap_or_default();
    let digest = digest(status)?;
    let image = observe::repository(policy)?.pinned(&digest);
    let mut results = Vec::new();
    for check in &policy.spec.tests.http {
        let workload =
            policy.spec.workloads.iter().find(|w| w.name == check.workload).ok_or_else(|| {
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
            (None, _) => match ctx.targets(&namespace)?.staging_url(&target).await {
                Ok(Some(url)) => url,
                Ok(None) => {
                    return Err(Error::Invalid(format!(
                        "spec.tests.http {}: workload {}'s staging target has no URL; set baseUrl",
                        check.name, workload.name
                    )));
                }
                Err(e) if !e.is_transient() => {
                    return Ok(StageOutcome::Failed { message: format!("spec.tests.http {}: {e}", check.name) });
                }
                Err(e) => return Err(e.into()),
            },
        };
        let result = staging_tests::http_check(check, &base, &ctx.http_checks).await;
        results.push(TestResult {
            name: result.name,
            passed: result.passed,
            message: Some(result.message),
            finished_at: Some(Time(now)),
        });
    }
    let mut job_running = false;
    if let Some(job) = &policy.spec.tests.job {
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
        let outcome = match staging_tests::test_job(
            &ctx.reach.client(&namespace)?,
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
                    Some(message) => return Ok(StageOutcome::Rejected { reason: "OutOfReach", message }),
                    None => return Err(e.into()),
                }
            }
        };
        match outcome {
            JobOutcome::Running => job_running = true,
            JobOutcome::Succeeded => results.push(TestResult {
                name: "job".into(),
                passed: true,
                message: Some(format!("Job {staging_namespace}/{job_name} completed")),
                finished_at: Some(Time(now)),
            }),
            JobOutcome::Failed(message) => results.push(TestResult {
                name: "job".into(),
                passed: false,
                message: Some(message),
                finished_at: Some(Time(now)),
            }),
        }
    }
    // Keep recorded results stable while waiting, so the status is not rewritten every poll.
    if job_running {
        return Ok(StageOutcome::InProgress("waiting for the test Job".into()));
    }
    status.tests = results;
    let failed: Vec<String> = status
        .tests
        .iter()
        .filter(|t| !t.passed)
        .map(|t| format!("{}: {}", t.name, t.message.clone().unwrap_or_default()))
        .collect();
    if failed.is_empty() {
        Ok(StageOutcome::Done)
    } else {
        Ok(StageOutcome::Rejected { reason: "StagingTestsFailed", message: failed.join("; ") })
    }
}

/// Opens the Promotion of a Verified Release; a second call finds it already there.
async fn ensure_promotion(ctx: &Context, release: &Release, status: &ReleaseStatus) -> Result<()> {
    let namespace = release.namespace().unwrap_or_default();
    let digest = digest(status)?;
    let name = names::promotion_name(&release.name_any(), digest.hex());
    let api: Api<Promotion> = Api::namespaced(ctx.client.clone(), &namespace);
    if api.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let mut promotion = Promotion::new(
        &name,
        PromotionSpec {
            policy: release.spec.policy.clone(),
            release: release.name_any(),
            digest: digest.to_string(),
            workloads: None,
            requested_by: Some(ctx.identity.clone()),
        },
    );
    promotion.metadata.namespace = Some(namespace);
    promotion.metadata.labels = Some([(LABEL_POLICY.to_string(), release.spec.policy.clone())].into());
    // No owner reference: deleting the Release must not delete an approved or in-flight
    // Promotion (and with it the audit record and the monitor window).
    match api
        .create(&PostParams { field_manager: Some(crate::context::MANAGER.into()), ..Default::default() }, &promotion)
        .await
    {
        Ok(_) => {
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
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::Provider(ProviderError::Kube(e))),
    }
}

/// The findings worth showing on the Release: blocking ones first, then by severity, at most 10.
fn top_findings(findings: &[gate::Finding], decision: &gate::GateDecision) -> Vec<tidegate_api::release::TopFinding> {
    let rank = |f: &gate::Finding| (!decision.blocking.contains(&f.id), f.severity, f.id.clone());
    let mut sorted: Vec<&gate::Finding> = findings.iter().collect();
    sorted.sort_by_key(|f| rank(f));
    sorted.dedup_by_key(|f| (f.id.clone(), f.package.clone()));
    sorted
        .into_iter()
        .take(10)
        .map(|f| tidegate_api::release::TopFinding {
            id: f.id.clone(),
            severity: format!("{:?}", f.severity).to_uppercase(),
            package: f.package.clone(),
            installed_version: f.installed_version.clone(),
            fixed_version: f.fixed_version.clone(),
            blocking: decision.blocking.contains(&f.id),
        })
        .collect()
}
