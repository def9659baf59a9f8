//! The Release planner, stage by stage, with a scripted executor.

use jiff::Timestamp;
use tidegate_api::ReleasePhase::{self, *};
use tidegate_api::image_policy::Severity;
use tidegate_api::release::{ReleaseStatus, StageRecord, TestResult};

use super::*;
use crate::gate::{Finding, GatePolicy};
use crate::promotion::Progress;
use crate::{Digest, ImageRef};

fn digest(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64)).parse().expect("digest")
}

fn facts(phase: ReleasePhase) -> ReleaseFacts {
    ReleaseFacts {
        namespace: "shop".into(),
        name: "web-base-1".into(),
        policy_name: "web".into(),
        generation: Some(1),
        created: Some(Timestamp::from_second(1_000).unwrap()),
        status: ReleaseStatus { phase, ..ReleaseStatus::default() },
        policy: PolicyState::Present {
            repository: Ok("registry.local/shop/web".parse::<ImageRef>().expect("ref")),
            workloads: vec!["web".into(), "worker".into()],
        },
        superseded_by: None,
        rolling_out: None,
        fixes: Vec::new(),
        observed: Observed::default(),
        watched: false,
        now: Timestamp::from_second(2_000).unwrap(),
    }
}

/// What a healthy world answers to each piece of work.
fn healthy(effect: &Effect, observed: &mut Observed) {
    match effect {
        Effect::StartBuild | Effect::FollowBuild { .. } => {
            observed.build =
                Some(BuildObservation::Done { digest: digest('a'), run: "rebase".into(), run_id: None, log_link: None })
        }
        Effect::Scan { .. } => {
            observed.scan = Some(ScanObservation::Report {
                findings: vec![Finding::new("CVE-low", Severity::Low, true)],
                gate: GatePolicy {
                    block: vec![Severity::Critical],
                    only_fixable: false,
                    exceptions: Vec::new(),
                    production: None,
                },
                scanner: Some("trivy".into()),
                produced_at: None,
                database: None,
            })
        }
        Effect::Sign { .. } => observed.sign = Some(SignObservation::Signed("sha256:sig".into())),
        Effect::VerifySignature { .. } => observed.signature = Some(SignatureCheck::Valid),
        Effect::DeployStaging { workload, .. } => observed
            .staging
            .push(StagingObservation { workload: workload.clone(), outcome: StagingOutcome::Progress(Progress::Done) }),
        Effect::RunTests { .. } => {
            observed.tests = Some(TestsObservation::Finished(vec![TestResult {
                name: "health".into(),
                passed: true,
                message: Some("200".into()),
                finished_at: None,
            }]))
        }
        Effect::OpenPromotion { .. } => {}
    }
}

/// One reconcile: plan, carry out the work the plan asks for, plan again.
fn pass(mut facts: ReleaseFacts, world: impl Fn(&Effect, &mut Observed)) -> ReleasePlan {
    for _ in 0..4 {
        let plan = plan(&facts);
        if !plan.awaits_work() {
            return plan;
        }
        for effect in plan.effects.iter().filter(|e| e.is_work()) {
            world(effect, &mut facts.observed);
        }
    }
    panic!("the plan keeps asking for work");
}

/// Reconciles until the phase stops changing; returns every plan that changed it.
fn run(mut facts: ReleaseFacts, world: impl Fn(&Effect, &mut Observed) + Copy) -> Vec<ReleasePlan> {
    let mut plans = Vec::new();
    loop {
        let plan = pass(facts.clone(), world);
        let changed = plan.phase != facts.status.phase;
        facts.status = plan.status.clone();
        plans.push(plan);
        if !changed {
            return plans;
        }
    }
}

#[test]
fn walks_every_stage_to_verified_and_opens_one_promotion() {
    let plans = run(facts(Pending), healthy);
    let phases: Vec<ReleasePhase> = plans.iter().map(|p| p.phase).collect();
    assert_eq!(phases, [Building, Scanning, Signing, Staging, Testing, Verified, Verified]);
    let last = plans.last().expect("plans");
    let status = &last.status;
    assert_eq!(status.digest.as_deref(), Some(digest('a').as_str()));
    assert_eq!(status.image.as_deref(), Some(format!("registry.local/shop/web@{}", digest('a')).as_str()));
    assert_eq!(status.scan.as_ref().map(|s| s.low), Some(1));
    assert_eq!(status.staging.as_ref().and_then(|s| s.reference.clone()), status.image);
    assert_eq!(last.reason, "Verified");
    assert_eq!(last.message, "every gate passed; waiting for a promotion");
    assert_eq!(last.effects, [Effect::OpenPromotion { name: "web-base-1-aaaaaaaa".into(), digest: digest('a') }]);
    assert_eq!(last.requeue_after, None, "a Verified Release waits for a change");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.status, "True");
    let signed = status.conditions.iter().find(|c| c.type_ == "Signed").expect("Signed");
    assert_eq!((signed.status.as_str(), signed.reason.as_str()), ("True", "Signed"));
    let transitions: Vec<&str> = plans.iter().filter_map(|p| p.transition.as_ref()).map(|t| t.reason).collect();
    assert_eq!(transitions, ["Building", "Scanning", "Signing", "DeployingToStaging", "Testing", "Verified"]);
    assert_eq!(plans[5].effects.len(), 1, "the step into Verified opens the Promotion too");
}

#[test]
fn each_stage_asks_for_its_work_first() {
    let mut building = facts(Building);
    assert_eq!(plan(&building).effects, [Effect::StartBuild]);
    let started = Timestamp::from_second(1_500).unwrap();
    building.status.build = Some(StageRecord {
        started_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(started)),
        run_id: Some("ca1".into()),
        ..StageRecord::default()
    });
    assert_eq!(
        plan(&building).effects,
        [Effect::FollowBuild { started_at: Some(started), run_id: Some("ca1".into()) }]
    );
    let mut scanning = facts(Scanning);
    scanning.status.digest = Some(digest('a').to_string());
    assert_eq!(plan(&scanning).effects, [Effect::Scan { digest: digest('a'), built_at: scanning.created.unwrap() }]);
    let mut staging = facts(Staging);
    staging.status.digest = Some(digest('a').to_string());
    staging.status.signature = Some(StageRecord { reference: Some("sig".into()), ..StageRecord::default() });
    assert_eq!(
        plan(&staging).effects,
        [Effect::VerifySignature { digest: digest('a'), signature: "sig".into() }],
        "the signature verifies before anything is staged"
    );
    staging.observed.signature = Some(SignatureCheck::Valid);
    let image = format!("registry.local/shop/web@{}", digest('a'));
    assert_eq!(
        plan(&staging).effects,
        [
            Effect::DeployStaging { workload: "web".into(), image: image.clone() },
            Effect::DeployStaging { workload: "worker".into(), image },
        ]
    );
}

#[test]
fn a_started_build_is_recorded_and_followed() {
    let plan = pass(facts(Building), |_, o| {
        o.build = Some(BuildObservation::Started { run: "job shop/web-build".into(), run_id: Some("r1".into()) })
    });
    assert_eq!((plan.phase, plan.reason, plan.message.as_str()), (Building, "Building", "job shop/web-build"));
    let build = plan.status.build.as_ref().expect("build recorded");
    assert_eq!(build.run_id.as_deref(), Some("r1"));
    assert!(build.started_at.is_some() && build.finished_at.is_none());
    assert_eq!(plan.requeue_after, Some(POLL), "a running build is looked at again");
}

#[test]
fn gates_reject_with_their_reasons() {
    let mut scanning = facts(Scanning);
    scanning.status.digest = Some(digest('a').to_string());
    let blocked = pass(scanning.clone(), |_, o| {
        o.scan = Some(ScanObservation::Report {
            findings: vec![Finding::new("CVE-1", Severity::Critical, true)],
            gate: GatePolicy {
                block: vec![Severity::Critical],
                only_fixable: true,
                exceptions: Vec::new(),
                production: None,
            },
            scanner: None,
            produced_at: None,
            database: None,
        })
    });
    assert_eq!((blocked.phase, blocked.reason), (Rejected, "BlockingVulnerabilities"));
    assert_eq!(blocked.status.scan.as_ref().map(|s| s.blocking_ids.clone()), Some(vec!["CVE-1".to_string()]));
    assert!(blocked.transition.as_ref().is_some_and(|t| t.warning));
    let blocking = blocked.status.conditions.iter().find(|c| c.type_ == "Blocked").expect("Blocked");
    assert_eq!(blocking.status, "True");
    assert_eq!(blocked.requeue_after, Some(std::time::Duration::ZERO));

    let refused = pass(scanning, |_, o| {
        o.scan = Some(ScanObservation::Refused { reason: "ScannerNotConfigured", message: "no trivy".into() })
    });
    assert_eq!(
        (refused.phase, refused.reason, refused.message.as_str()),
        (Rejected, "ScannerNotConfigured", "no trivy")
    );

    let mut signing = facts(Signing);
    signing.status.digest = Some(digest('a').to_string());
    let unsigned = pass(signing.clone(), |_, o| o.sign = Some(SignObservation::NotConfigured("no key".into())));
    assert_eq!((unsigned.phase, unsigned.reason), (Rejected, SIGNING_NOT_CONFIGURED));
    assert_eq!(unsigned.message, "no key; staging untouched");
    let signed = unsigned.status.conditions.iter().find(|c| c.type_ == "Signed").expect("Signed");
    assert_eq!((signed.status.as_str(), signed.reason.as_str()), ("False", SIGNING_NOT_CONFIGURED));
    let failed = pass(signing, |_, o| o.failure = Some("registry refused the signature".into()));
    assert_eq!((failed.phase, failed.reason), (Failed, "StageFailed"));
    let signed = failed.status.conditions.iter().find(|c| c.type_ == "Signed").expect("Signed");
    assert_eq!(signed.reason, "SigningFailed");

    let mut testing = facts(Testing);
    testing.status.digest = Some(digest('a').to_string());
    let result = |name: &str, passed: bool| TestResult {
        name: name.into(),
        passed,
        message: Some(if passed { "ok" } else { "500" }.into()),
        finished_at: None,
    };
    let tested = pass(testing.clone(), |_, o| {
        o.tests = Some(TestsObservation::Finished(vec![result("health", false), result("job", true)]))
    });
    assert_eq!((tested.phase, tested.reason, tested.message.as_str()), (Rejected, "StagingTestsFailed", "health: 500"));
    assert_eq!(tested.status.tests.len(), 2);
    assert!(tested.effects.is_empty(), "no Promotion opens");
    let waiting = pass(testing, |_, o| o.tests = Some(TestsObservation::JobRunning));
    assert_eq!((waiting.phase, waiting.message.as_str()), (Testing, "waiting for the test Job"));
    assert!(waiting.status.tests.is_empty(), "results are recorded once the Job ends");
}

#[test]
fn staging_waits_for_every_workload_and_stops_at_the_first_that_cannot_converge() {
    let mut staging = facts(Staging);
    staging.status.digest = Some(digest('a').to_string());
    staging.status.signature = Some(StageRecord { reference: Some("sig".into()), ..StageRecord::default() });
    let rolling = pass(staging.clone(), |e, o| match e {
        Effect::VerifySignature { .. } => o.signature = Some(SignatureCheck::Valid),
        Effect::DeployStaging { workload, .. } => o.staging.push(StagingObservation {
            workload: workload.clone(),
            outcome: StagingOutcome::Progress(Progress::InProgress(format!("{workload}: 0 of 1 updated"))),
        }),
        _ => {}
    });
    assert_eq!((rolling.phase, rolling.reason), (Staging, "DeployingToStaging"));
    assert_eq!(rolling.message, "web: 0 of 1 updated; worker: 0 of 1 updated");
    assert!(rolling.status.staging.is_none());

    let out_of_reach = pass(staging.clone(), |e, o| match e {
        Effect::VerifySignature { .. } => o.signature = Some(SignatureCheck::Valid),
        Effect::DeployStaging { workload, .. } if o.staging.is_empty() => o.staging.push(StagingObservation {
            workload: workload.clone(),
            outcome: StagingOutcome::OutOfReach("staging web is out of reach".into()),
        }),
        _ => {}
    });
    assert_eq!((out_of_reach.phase, out_of_reach.reason), (Rejected, "OutOfReach"));

    let forged = pass(staging.clone(), |e, o| {
        if let Effect::VerifySignature { .. } = e {
            o.signature = Some(SignatureCheck::Invalid("no trusted signature".into()))
        }
    });
    assert_eq!((forged.phase, forged.reason), (Rejected, "SignatureInvalid"));
    assert_eq!(forged.message, "no trusted signature; staging untouched");

    staging.status.signature = None;
    let never_signed = plan(&staging);
    assert_eq!((never_signed.phase, never_signed.reason), (Rejected, "SignatureInvalid"));
    assert!(never_signed.effects.is_empty(), "nothing is verified or staged");
}

#[test]
fn supersession_policy_loss_and_terminal_phases() {
    let mut verified = facts(Verified);
    verified.status.digest = Some(digest('a').to_string());
    verified.superseded_by = Some("web-base-2".into());
    let superseded = plan(&verified);
    assert_eq!((superseded.phase, superseded.reason), (Superseded, "Superseded"));
    assert_eq!(superseded.message, "release web-base-2 of the same policy replaces this one");
    assert!(superseded.effects.is_empty());
    let blocked = superseded.status.conditions.iter().find(|c| c.type_ == "Blocked").expect("Blocked");
    assert_eq!(blocked.status, "False");

    // While its approved Promotion changes production, the Release stays Verified (the rollout's
    // gate checks need it) and looks again; the newer Release takes over afterwards.
    verified.rolling_out = Some("web-base-1".into());
    let held = plan(&verified);
    assert_eq!((held.phase, held.reason), (Verified, "SupersessionHeld"));
    assert_eq!(
        held.message,
        "release web-base-2 of the same policy replaces this one once promotion web-base-1 has changed production"
    );
    assert!(held.effects.is_empty() && held.transition.is_none());
    assert_eq!(held.status, verified.status, "nothing is written");
    assert_eq!(held.requeue_after, Some(POLL * 5));
    let mut testing = verified.clone();
    testing.status.phase = Testing;
    assert_eq!(plan(&testing).phase, Superseded, "only a Verified Release has a rollout to wait for");

    let mut orphan = facts(Testing);
    orphan.policy = PolicyState::Missing;
    let orphan = plan(&orphan);
    assert_eq!((orphan.phase, orphan.reason, orphan.requeue_after), (Testing, "PolicyNotFound", None));
    assert_eq!(orphan.message, "ImagePolicy shop/web does not exist");
    assert!(orphan.effects.is_empty() && orphan.transition.is_none());

    for phase in [Rejected, Failed, Superseded] {
        let mut ended = facts(phase);
        ended.superseded_by = Some("newer".into());
        let plan = plan(&ended);
        assert_eq!(
            (plan.phase, plan.status.clone(), plan.requeue_after),
            (phase, ended.status, None),
            "{phase:?} stays"
        );
    }
}

#[test]
fn a_phase_without_its_digest_fails_instead_of_guessing() {
    for phase in [Scanning, Signing, Staging, Testing, Verified] {
        let mut forged = facts(phase);
        forged.status.digest = Some("latest".into());
        let plan = plan(&forged);
        assert_eq!((plan.phase, plan.reason), (Failed, "StageFailed"), "{phase:?}");
        assert_eq!(plan.message, "status.digest is missing or malformed");
        assert!(plan.effects.is_empty());
    }
    let mut bad_image = facts(Pending);
    bad_image.policy =
        PolicyState::Present { repository: Err("spec.image: no registry".into()), workloads: Vec::new() };
    assert_eq!(plan(&bad_image).message, "spec.image: no registry");
}

#[test]
fn a_policy_without_workloads_stages_nothing_and_moves_on() {
    let mut staging = facts(Staging);
    staging.policy =
        PolicyState::Present { repository: Ok("registry.local/shop/web".parse().expect("ref")), workloads: Vec::new() };
    staging.status.digest = Some(digest('a').to_string());
    staging.status.signature = Some(StageRecord { reference: Some("sig".into()), ..StageRecord::default() });
    let plan = pass(staging, healthy);
    assert_eq!(plan.phase, Testing);
}
