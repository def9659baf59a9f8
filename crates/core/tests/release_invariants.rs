//! Property tests: random recorded statuses (including ones nobody but a forger would write),
//! random policies, supersession and random outcomes of every piece of work, fed to the Release
//! planner, must keep the pipeline's contract.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use proptest::prelude::*;
use tidegate_api::ReleasePhase;
use tidegate_api::image_policy::Severity;
use tidegate_api::release::{ReleaseStatus, StageRecord, TestResult};
use tidegate_core::gate::{Finding, GatePolicy};
use tidegate_core::promotion::Progress;
use tidegate_core::release::{
    BuildObservation, Effect, Observed, PolicyState, ReleaseFacts, ReleasePhaseExt, ReleasePlan, ScanObservation,
    SignObservation, SignatureCheck, StagingObservation, StagingOutcome, TestsObservation, plan,
};
use tidegate_core::{Digest, ImageRef};

const REPOSITORY: &str = "registry.local/shop/web";
const WORKLOADS: [&str; 3] = ["web", "worker", "nightly"];

fn digest(c: char) -> Digest {
    format!("sha256:{}", c.to_string().repeat(64)).parse().expect("digest")
}

fn phase() -> impl Strategy<Value = ReleasePhase> {
    use ReleasePhase::*;
    prop_oneof![
        Just(Pending),
        Just(Building),
        Just(Scanning),
        Just(Signing),
        Just(Staging),
        Just(Testing),
        Just(Verified),
        Just(Rejected),
        Just(Failed),
        Just(Superseded),
    ]
}

fn policy() -> impl Strategy<Value = PolicyState> {
    prop_oneof![
        1 => Just(PolicyState::Missing),
        1 => Just(PolicyState::Present { repository: Err("spec.image: no registry".into()), workloads: vec!["web".into()] }),
        8 => (0..=WORKLOADS.len()).prop_map(|n| PolicyState::Present {
            repository: Ok(REPOSITORY.parse::<ImageRef>().expect("ref")),
            workloads: WORKLOADS[..n].iter().map(|w| w.to_string()).collect(),
        }),
    ]
}

/// A recorded status: any phase, with or without a digest (well-formed or not), a build record
/// and a signature, as the controller or a forger may have left it.
fn status() -> impl Strategy<Value = ReleaseStatus> {
    (
        phase(),
        prop_oneof![Just(None), Just(Some(digest('a').to_string())), Just(Some("latest".to_string()))],
        any::<(bool, bool, bool)>(),
    )
        .prop_map(|(phase, digest, (build, run_id, signature))| ReleaseStatus {
            phase,
            digest,
            build: build.then(|| StageRecord {
                started_at: Some(Time(Timestamp::from_second(1_500).expect("time"))),
                run_id: run_id.then(|| "run-1".to_string()),
                ..StageRecord::default()
            }),
            signature: signature.then(|| StageRecord { reference: Some("sig".into()), ..StageRecord::default() }),
            ..ReleaseStatus::default()
        })
}

fn progress() -> impl Strategy<Value = Progress> {
    prop_oneof![
        3 => Just(Progress::Done),
        1 => Just(Progress::InProgress("rolling out".into())),
        1 => Just(Progress::Failed("target gone".into())),
    ]
}

/// How the world answers one piece of work.
#[derive(Clone, Debug)]
struct World {
    build: u8,
    scan: u8,
    blocking: bool,
    sign: bool,
    signature: bool,
    staging: Vec<StagingOutcome>,
    tests: u8,
    test_passes: bool,
    failure: bool,
}

fn world() -> impl Strategy<Value = World> {
    (
        (0u8..3, 0u8..4, any::<bool>(), any::<bool>(), any::<bool>()),
        prop::collection::vec(
            prop_oneof![
                4 => progress().prop_map(StagingOutcome::Progress),
                1 => Just(StagingOutcome::OutOfReach("out of reach".into())),
            ],
            WORKLOADS.len(),
        ),
        (0u8..3, any::<bool>(), prop::bool::weighted(0.1)),
    )
        .prop_map(|((build, scan, blocking, sign, signature), staging, (tests, test_passes, failure))| World {
            build,
            scan,
            blocking,
            sign,
            signature,
            staging,
            tests,
            test_passes,
            failure,
        })
}

impl World {
    /// Carries out `effect`, as the controller would, into `observed`.
    fn answer(&self, effect: &Effect, observed: &mut Observed) {
        if self.failure {
            observed.failure = Some("permanent provider error".into());
            return;
        }
        match effect {
            Effect::StartBuild | Effect::FollowBuild { .. } => {
                observed.build = Some(match self.build {
                    0 => {
                        BuildObservation::Done { digest: digest('b'), run: "run".into(), run_id: None, log_link: None }
                    }
                    1 => BuildObservation::Started { run: "run".into(), run_id: Some("run-1".into()) },
                    _ => BuildObservation::Waiting("waiting for the image".into()),
                })
            }
            Effect::Scan { .. } => {
                observed.scan = Some(match self.scan {
                    0 => ScanObservation::Report {
                        findings: vec![Finding::new(
                            "CVE-1",
                            if self.blocking { Severity::Critical } else { Severity::Low },
                            true,
                        )],
                        gate: GatePolicy {
                            block: vec![Severity::Critical],
                            only_fixable: false,
                            exceptions: Vec::new(),
                            production: None,
                        },
                        scanner: Some("trivy".into()),
                        produced_at: None,
                        database: None,
                    },
                    1 => ScanObservation::Waiting("waiting for the scan report".into()),
                    2 => ScanObservation::Queued("scanning in the controller".into()),
                    _ => ScanObservation::Refused { reason: "ScannerNotConfigured", message: "no scanner".into() },
                })
            }
            Effect::Sign { .. } => {
                observed.sign = Some(match self.sign {
                    true => SignObservation::Signed("sig".into()),
                    false => SignObservation::NotConfigured("no signing key".into()),
                })
            }
            Effect::VerifySignature { .. } => {
                observed.signature = Some(match self.signature {
                    true => SignatureCheck::Valid,
                    false => SignatureCheck::Invalid("no trusted signature".into()),
                })
            }
            Effect::DeployStaging { workload, .. } => {
                // The controller stops at the first workload that fails or is out of reach.
                let stopped = observed.staging.iter().any(|s| {
                    matches!(s.outcome, StagingOutcome::OutOfReach(_) | StagingOutcome::Progress(Progress::Failed(_)))
                });
                if !stopped {
                    let index = WORKLOADS.iter().position(|w| w == workload).expect("a policy workload");
                    observed
                        .staging
                        .push(StagingObservation { workload: workload.clone(), outcome: self.staging[index].clone() });
                }
            }
            Effect::RunTests { .. } => {
                observed.tests = Some(match self.tests {
                    0 => TestsObservation::Finished(vec![TestResult {
                        name: "health".into(),
                        passed: self.test_passes,
                        message: Some("checked".into()),
                        finished_at: None,
                    }]),
                    1 => TestsObservation::JobRunning,
                    _ => TestsObservation::OutOfReach("test Job out of reach".into()),
                })
            }
            Effect::OpenPromotion { .. } => {}
        }
    }
}

fn facts() -> impl Strategy<Value = ReleaseFacts> {
    (
        status(),
        policy(),
        prop::option::weighted(0.2, Just("web-newer".to_string())),
        any::<bool>(),
        prop::option::weighted(0.2, Just("web-base-1".to_string())),
        any::<bool>(),
    )
        .prop_map(|(status, policy, superseded_by, fixing, rolling_out, watched)| ReleaseFacts {
            namespace: "shop".into(),
            name: "web-base-1".into(),
            policy_name: "web".into(),
            generation: Some(1),
            created: Some(Timestamp::from_second(1_000).expect("time")),
            status,
            policy,
            superseded_by,
            rolling_out,
            fixes: if fixing { vec!["CVE-1".into()] } else { Vec::new() },
            observed: Observed::default(),
            watched,
            now: Timestamp::from_second(2_000).expect("time"),
        })
}

/// One reconcile: every plan made along the way, the last one deciding. Panics if the planner
/// asks for the same work again after its outcome was observed.
fn pass(mut facts: ReleaseFacts, world: &World) -> (Vec<ReleasePlan>, ReleaseFacts) {
    let mut plans: Vec<ReleasePlan> = Vec::new();
    let mut done: Vec<Effect> = Vec::new();
    loop {
        let plan = plan(&facts);
        let work: Vec<Effect> = plan.effects.iter().filter(|e| e.is_work()).cloned().collect();
        plans.push(plan);
        if work.is_empty() {
            return (plans, facts);
        }
        for effect in work {
            assert!(!done.contains(&effect), "asked twice for {effect:?}");
            world.answer(&effect, &mut facts.observed);
            done.push(effect);
        }
        assert!(plans.len() <= 4, "a pass needs at most three rounds of work: {plans:#?}");
    }
}

fn position(phase: ReleasePhase) -> Option<usize> {
    phase.order()
}

fn check_plan(facts: &ReleaseFacts, plan: &ReleasePlan) {
    let before = facts.status.phase;
    assert_eq!(plan, &tidegate_core::release::plan(facts), "deterministic");

    // A terminal phase never changes, and nothing is done for it.
    if before.is_terminal() {
        assert_eq!(plan.phase, before);
        assert!(plan.effects.is_empty(), "{before:?} does nothing: {:?}", plan.effects);
        assert_eq!(plan.requeue_after, None);
        return;
    }
    // Phases only move forward along the pipeline, one stage at a time, or end.
    match (position(before), position(plan.phase)) {
        (Some(from), Some(to)) => assert!(to == from || to == from + 1, "{before:?} -> {:?}", plan.phase),
        (Some(_), None) => assert!(plan.phase.is_terminal()),
        (None, _) => unreachable!("{before:?} is terminal"),
    }
    // A superseded Release does nothing more: no staging, no tests, no Promotion. A Verified one
    // whose approved Promotion is changing production stays Verified until that is done, and
    // does nothing meanwhile either.
    if facts.superseded_by.is_some() && facts.policy != PolicyState::Missing {
        let held = before == ReleasePhase::Verified && facts.rolling_out.is_some();
        assert_eq!(plan.phase, if held { ReleasePhase::Verified } else { ReleasePhase::Superseded });
        assert!(plan.effects.is_empty(), "superseded yet {:?}", plan.effects);
        if held {
            assert_eq!(plan.status, facts.status, "a held supersession writes nothing");
            assert!(plan.requeue_after.is_some(), "and looks again");
        }
    }
    if facts.policy == PolicyState::Missing {
        // Nothing can move without the policy: it waits for the policy to come back.
        assert!(plan.effects.is_empty() && plan.phase == before && plan.requeue_after.is_none());
        return;
    }
    // Work pending means a look again; a phase that waits for a change has nothing running.
    if plan.awaits_work() || plan.phase.has_work() || plan.phase != before {
        assert!(plan.requeue_after.is_some(), "work pending but no requeue: {plan:#?}");
    }
    // Nothing pending waits long for its next look; only what wakes the Release when it
    // changes (a staging rollout of watched workloads, a scan queued in the controller) is
    // polled less often than every POLL.
    if let Some(after) = plan.requeue_after
        && plan.phase.has_work()
        && plan.phase == before
    {
        let queued = matches!(facts.observed.scan, Some(ScanObservation::Queued(_)));
        match plan.phase {
            ReleasePhase::Scanning if queued => assert_eq!(after, tidegate_core::release::QUEUED_POLL),
            ReleasePhase::Staging if facts.watched => {
                assert!(after <= tidegate_core::release::WATCHED_POLL, "{after:?}")
            }
            _ => assert!(after <= tidegate_core::release::POLL, "{:?} waiting polled every {after:?}", plan.phase),
        }
    }
    for effect in &plan.effects {
        match effect {
            // Staging only the recorded digest, only after its signature verified in this very
            // pass, and only the policy's own workloads.
            Effect::DeployStaging { workload, image } => {
                assert_eq!(before, ReleasePhase::Staging);
                assert_eq!(
                    facts.observed.signature,
                    Some(SignatureCheck::Valid),
                    "staged without a verified signature"
                );
                let recorded: Digest = facts.status.digest.as_deref().expect("a digest").parse().expect("well-formed");
                assert_eq!(image, &format!("{REPOSITORY}@{recorded}"));
                let PolicyState::Present { workloads, .. } = &facts.policy else { panic!("no policy") };
                assert!(workloads.contains(workload));
            }
            Effect::OpenPromotion { digest, .. } => {
                assert_eq!(plan.phase, ReleasePhase::Verified, "a Promotion opens only for a Verified Release");
                assert_eq!(Some(digest.to_string()), plan.status.digest);
                if before == ReleasePhase::Testing {
                    let Some(TestsObservation::Finished(results)) = &facts.observed.tests else {
                        panic!("Verified without finished tests")
                    };
                    assert!(results.iter().all(|t| t.passed));
                }
            }
            Effect::VerifySignature { signature, .. } => {
                assert_eq!(before, ReleasePhase::Staging);
                assert_eq!(Some(signature), facts.status.signature.as_ref().and_then(|s| s.reference.as_ref()));
            }
            Effect::StartBuild | Effect::FollowBuild { .. } => assert_eq!(before, ReleasePhase::Building),
            Effect::Scan { .. } => assert_eq!(before, ReleasePhase::Scanning),
            Effect::Sign { .. } => assert_eq!(before, ReleasePhase::Signing),
            Effect::RunTests { .. } => assert_eq!(before, ReleasePhase::Testing),
        }
    }
    // The status kept says the phase decided, and changes only with it or a recorded outcome.
    assert_eq!(plan.status.phase, if plan.awaits_work() { before } else { plan.phase });
    assert_eq!(plan.transition.is_some(), plan.phase != before);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Every plan of every pass keeps the contract, and a pass ends after at most three rounds of
    /// work.
    #[test]
    fn every_plan_keeps_the_pipeline_contract(facts in facts(), world in world()) {
        let (plans, last) = pass(facts.clone(), &world);
        let mut observed = facts.clone();
        for plan in &plans {
            check_plan(&observed, plan);
            for effect in plan.effects.iter().filter(|e| e.is_work()) {
                world.answer(effect, &mut observed.observed);
            }
        }
        prop_assert_eq!(observed.observed, last.observed);
    }

    /// Random histories from Pending: passes in a row with a world that changes between passes,
    /// and a newer Release that may appear at any time. The Release ends Verified only through
    /// every stage, with a signature, a staging record and passing tests.
    #[test]
    fn histories_reach_verified_only_through_every_gate(
        worlds in prop::collection::vec(world(), 1..30),
        supersede_at in prop::option::of(0usize..30),
    ) {
        let mut facts = ReleaseFacts {
            namespace: "shop".into(),
            name: "web-base-1".into(),
            policy_name: "web".into(),
            generation: Some(1),
            created: Some(Timestamp::from_second(1_000).expect("time")),
            status: ReleaseStatus::default(),
            policy: PolicyState::Present {
                repository: Ok(REPOSITORY.parse::<ImageRef>().expect("ref")),
                workloads: WORKLOADS.iter().map(|w| w.to_string()).collect(),
            },
            superseded_by: None,
            rolling_out: None,
            fixes: Vec::new(),
            observed: Observed::default(),
            watched: false,
            now: Timestamp::from_second(2_000).expect("time"),
        };
        let mut visited = vec![facts.status.phase];
        for (i, world) in worlds.iter().enumerate() {
            facts.superseded_by = (supersede_at == Some(i)).then(|| "web-newer".to_string());
            let (plans, _) = pass(facts.clone(), world);
            let decided = plans.last().expect("a plan").clone();
            if facts.superseded_by.is_some() && !facts.status.phase.is_terminal() {
                prop_assert_eq!(decided.phase, ReleasePhase::Superseded);
            }
            facts.status = decided.status;
            facts.now = facts.now.checked_add(Duration::from_secs(2)).expect("time");
            if visited.last() != Some(&facts.status.phase) {
                visited.push(facts.status.phase);
            }
        }
        if facts.status.phase == ReleasePhase::Verified {
            use ReleasePhase::*;
            prop_assert_eq!(visited, vec![Pending, Building, Scanning, Signing, Staging, Testing, Verified]);
            prop_assert!(facts.status.signature.is_some() && facts.status.staging.is_some());
            prop_assert!(!facts.status.tests.is_empty() && facts.status.tests.iter().all(|t| t.passed));
            prop_assert_eq!(facts.status.scan.as_ref().map(|s| s.blocking), Some(0));
        }
    }
}
