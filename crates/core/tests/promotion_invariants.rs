//! Property tests: random sequences of approvals, rejections, rollbacks, time, rollout progress,
//! health changes, release changes and signature breakage, fed to the promotion planner, must never
//! break the approval contract.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use tidegate_api::{PromotionPhase, RecordEvent, ReleasePhase};
use tidegate_core::Digest;
use tidegate_core::approval::{self, ApprovalFacts, ApprovalRules, Evidence, Right};
use tidegate_core::promotion::{Effect, Health, Progress, PromotionFacts, PromotionPhaseExt, ReleaseState, plan};

const USERS: [&str; 4] = ["alice", "bob", "carol", "mallory"];
/// mallory never holds the approve verb; carol requested the promotion.
const AUTHORIZED: [&str; 3] = ["alice", "bob", "carol"];

#[derive(Clone, Debug)]
enum Event {
    Approve(usize),
    Reject(usize),
    RequestRollback(usize),
    Wait(u16),
    Converge,
    Unhealthy,
    Healthy,
    ReleaseBecomes(ReleasePhase),
    ReleaseDigestChanges,
    SignatureBreaks,
    Supersede,
    RevokeRights(usize),
    /// Someone with `promotions/status` writes a phase: status is a record, not an order.
    ForgePhase(PromotionPhase),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0..USERS.len()).prop_map(Event::Approve),
        1 => (0..USERS.len()).prop_map(Event::Reject),
        1 => (0..USERS.len()).prop_map(Event::RequestRollback),
        3 => (1u16..4000).prop_map(Event::Wait),
        4 => Just(Event::Converge),
        1 => Just(Event::Unhealthy),
        2 => Just(Event::Healthy),
        1 => prop_oneof![Just(ReleasePhase::Verified), Just(ReleasePhase::Superseded), Just(ReleasePhase::Rejected), Just(ReleasePhase::Testing)]
            .prop_map(Event::ReleaseBecomes),
        1 => Just(Event::ReleaseDigestChanges),
        1 => Just(Event::SignatureBreaks),
        1 => Just(Event::Supersede),
        1 => (0..USERS.len()).prop_map(Event::RevokeRights),
        1 => prop_oneof![Just(PromotionPhase::Approved), Just(PromotionPhase::Promoting), Just(PromotionPhase::Monitoring)]
            .prop_map(Event::ForgePhase),
    ]
}

fn digest(byte: char) -> Digest {
    format!("sha256:{}", byte.to_string().repeat(64)).parse().expect("digest")
}

struct World {
    phase: PromotionPhase,
    wanted: Digest,
    before: Digest,
    production: Digest,
    approvers: Vec<(String, Timestamp)>,
    authorized: BTreeSet<String>,
    rejected_by: Option<String>,
    rollback_by: Option<String>,
    release_phase: ReleasePhase,
    release_digest: Digest,
    signature_valid: bool,
    superseded: bool,
    healthy: bool,
    now: Timestamp,
    approved_at: Option<Timestamp>,
    previous: Option<Digest>,
    monitor_until: Option<Timestamp>,
    desired: Option<Digest>,
    required: usize,
    auto_rollback: bool,
    recorded: Vec<RecordEvent>,
    watched: bool,
}

impl World {
    fn new(required: usize, auto_rollback: bool) -> Self {
        Self {
            recorded: Vec::new(),
            watched: false,
            phase: PromotionPhase::AwaitingApproval,
            wanted: digest('d'),
            before: digest('0'),
            production: digest('0'),
            approvers: Vec::new(),
            authorized: AUTHORIZED.iter().map(|s| s.to_string()).collect(),
            rejected_by: None,
            rollback_by: None,
            release_phase: ReleasePhase::Verified,
            release_digest: digest('d'),
            signature_valid: true,
            superseded: false,
            healthy: true,
            now: Timestamp::from_second(1_700_000_000).expect("time"),
            approved_at: None,
            previous: None,
            monitor_until: None,
            desired: None,
            required,
            auto_rollback,
        }
    }

    fn apply(&mut self, event: &Event) {
        match event {
            Event::Approve(u) => self.approvers.push((USERS[*u].to_string(), self.now)),
            Event::Reject(u) if self.authorized.contains(USERS[*u]) => self.rejected_by = Some(USERS[*u].into()),
            Event::RequestRollback(u) if self.authorized.contains(USERS[*u]) => {
                self.rollback_by = Some(USERS[*u].into())
            }
            Event::Reject(_) | Event::RequestRollback(_) => {}
            Event::Wait(s) => self.now = self.now.checked_add(SignedDuration::from_secs(i64::from(*s))).expect("time"),
            Event::Converge => {
                if let Some(d) = &self.desired {
                    self.production = d.clone();
                }
            }
            Event::Unhealthy => self.healthy = false,
            Event::Healthy => self.healthy = true,
            Event::ReleaseBecomes(p) => self.release_phase = *p,
            Event::ReleaseDigestChanges => self.release_digest = digest('e'),
            Event::SignatureBreaks => self.signature_valid = false,
            Event::Supersede => self.superseded = true,
            Event::RevokeRights(u) => {
                self.authorized.remove(USERS[*u]);
            }
            Event::ForgePhase(phase) => self.phase = *phase,
        }
    }

    fn facts(&self) -> PromotionFacts {
        let rules = ApprovalRules { required: self.required, valid_for: Duration::from_secs(3600) };
        let evidence: Vec<Evidence> = self
            .approvers
            .iter()
            .map(|(user, seen_at)| Evidence {
                user: user.clone(),
                seen_at: *seen_at,
                right: if self.authorized.contains(user) { Right::Holds } else { Right::Lacks("revoked".into()) },
            })
            .collect();
        let excluded: BTreeSet<String> = ["carol".to_string()].into();
        let approval_facts = ApprovalFacts { approvals: &evidence, excluded: &excluded, unprovable: None };
        let progress = |target: Option<&Digest>| match target {
            Some(d) if *d == self.production => Progress::Done,
            _ => Progress::InProgress("converging".into()),
        };
        PromotionFacts {
            phase: self.phase,
            digest: self.wanted.clone(),
            release: ReleaseState::Present { phase: self.release_phase, digest: Some(self.release_digest.clone()) },
            approval: approval::evaluate(&approval_facts, &rules, self.now),
            rejected_by: self.rejected_by.clone(),
            rollback_requested_by: self.rollback_by.clone(),
            signature_valid: self.signature_valid,
            superseded: self.superseded,
            production: Some(self.production.clone()),
            previous_digest: self.previous.clone(),
            rollout: progress(Some(&self.wanted)),
            rollback: progress(self.previous.as_ref()),
            health: if self.healthy { Health::Healthy } else { Health::Unhealthy("restarts".into()) },
            monitor_until: self.monitor_until,
            monitor_window: Duration::from_secs(600),
            auto_rollback: self.auto_rollback,
            recorded: self.recorded.clone(),
            watched: self.watched,
            now: self.now,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn production_changes_only_as_the_contract_allows(
        events in proptest::collection::vec(event(), 1..60),
        required in 1usize..3,
        auto_rollback in any::<bool>(),
        watched in any::<bool>(),
    ) {
        let mut world = World::new(required, auto_rollback);
        world.watched = watched;
        let mut ended_without_production = false;
        for event in &events {
            if matches!(event, Event::ForgePhase(_)) {
                // A forged phase is checked by the gate assertions below, not by this history.
                ended_without_production = false;
            }
            world.apply(event);
            let facts = world.facts();
            let step = plan(&facts);

            let writes: Vec<&Effect> = step.effects.iter()
                .filter(|e| matches!(e, Effect::DeployProduction { .. } | Effect::RollbackProduction { .. }))
                .collect();
            prop_assert!(writes.len() <= 1, "more than one production write in one step: {:?}", step.effects);
            // A step into a new phase always says when to look again: the controller's own
            // status write starts no pass.
            if step.phase != facts.phase {
                prop_assert!(step.requeue_after.is_some(), "{:?} → {:?} waits for a change", facts.phase, step.phase);
            }
            // A write is followed by a look: soon, or, when its workloads wake the Promotion as
            // they change, a little later.
            if !writes.is_empty() {
                let wait = if watched { tidegate_core::promotion::WATCHED_POLL } else { Duration::from_secs(2) };
                prop_assert_eq!(step.requeue_after, Some(wait), "after {:?}", step.effects);
            }

            for effect in &step.effects {
                match effect {
                    Effect::DeployProduction { digest } => {
                        prop_assert_eq!(digest, &world.wanted, "only the promotion's own digest is deployed");
                        prop_assert!(!ended_without_production, "a rejected, superseded or expired promotion never reaches production");
                        // Whatever phase status claims, each write needs all of this now.
                        prop_assert!(matches!(world.phase, PromotionPhase::Approved | PromotionPhase::Promoting),
                            "deploy from phase {:?}", world.phase);
                        prop_assert!(facts.approval.is_approved(), "deploy needs valid approvals now: {:?}", facts.approval);
                        prop_assert_eq!(world.release_phase, ReleasePhase::Verified);
                        prop_assert_eq!(&world.release_digest, &world.wanted, "approval is bound to the release's digest");
                        prop_assert!(world.signature_valid, "signature re-verified before production");
                        prop_assert!(!world.superseded && world.rejected_by.is_none());
                    }
                    Effect::RollbackProduction { to } => {
                        prop_assert_eq!(to, &world.before, "a rollback restores exactly the previous digest");
                    }
                    Effect::RetirePrevious => prop_assert_eq!(step.phase, PromotionPhase::Succeeded),
                    Effect::Record { event } => {
                        prop_assert!(!world.recorded.contains(event), "{event:?} recorded twice");
                        let expected = match world.phase {
                            PromotionPhase::Succeeded => Some(RecordEvent::Promoted),
                            PromotionPhase::RolledBack => Some(RecordEvent::RolledBack),
                            PromotionPhase::Rejected => Some(RecordEvent::Rejected),
                            _ => None,
                        };
                        prop_assert_eq!(Some(*event), expected, "a record only of what the phase says happened");
                    }
                }
            }

            // Apply the plan to the world, as the controller would.
            if step.record.approved_at.is_some() { world.approved_at = step.record.approved_at; }
            if step.record.previous_digest.is_some() { world.previous = step.record.previous_digest.clone(); }
            if step.record.monitor_until.is_some() { world.monitor_until = step.record.monitor_until; }
            for effect in &step.effects {
                match effect {
                    Effect::DeployProduction { digest } => world.desired = Some(digest.clone()),
                    Effect::RollbackProduction { to } => world.desired = Some(to.clone()),
                    Effect::RetirePrevious => {}
                    Effect::Record { event } => world.recorded.push(*event),
                }
            }
            if matches!(step.phase, PromotionPhase::Rejected | PromotionPhase::Superseded | PromotionPhase::Expired)
                || (step.phase == PromotionPhase::Failed && !world.phase.touched_production())
            {
                ended_without_production = true;
            }
            if world.phase.is_terminal() && world.phase != PromotionPhase::Succeeded && world.phase != PromotionPhase::RolledBack {
                prop_assert_eq!(step.phase, world.phase, "terminal phases stay");
            }
            world.phase = step.phase;

            prop_assert!(world.production == world.before || world.production == world.wanted,
                "production only ever runs the previous or the approved digest");
        }
    }
}

#[test]
fn happy_path_reaches_succeeded_and_manual_rollback_restores() {
    let mut world = World::new(2, true);
    let mut phases = Vec::new();
    for event in [
        Event::Approve(0),
        Event::Approve(2), // carol requested it: does not count
        Event::Approve(1),
        Event::Wait(1),
        Event::Wait(1),
        Event::Converge,
        Event::Wait(1),
        Event::Wait(700),
        Event::RequestRollback(0),
        Event::Converge,
        Event::Wait(1),
    ] {
        world.apply(&event);
        let step = plan(&world.facts());
        if step.record.approved_at.is_some() {
            world.approved_at = step.record.approved_at;
        }
        if step.record.previous_digest.is_some() {
            world.previous = step.record.previous_digest.clone();
        }
        if step.record.monitor_until.is_some() {
            world.monitor_until = step.record.monitor_until;
        }
        for effect in &step.effects {
            match effect {
                Effect::DeployProduction { digest } => world.desired = Some(digest.clone()),
                Effect::RollbackProduction { to } => world.desired = Some(to.clone()),
                Effect::RetirePrevious => {}
                Effect::Record { event } => world.recorded.push(*event),
            }
        }
        world.phase = step.phase;
        phases.push(world.phase);
    }
    use PromotionPhase::*;
    assert_eq!(
        phases,
        [
            AwaitingApproval,
            AwaitingApproval,
            Approved,
            Promoting,
            Promoting,
            Monitoring,
            Monitoring,
            Succeeded,
            RolledBack,
            RolledBack,
            RolledBack
        ]
    );
    assert_eq!(world.production, world.before);
    assert_eq!(world.recorded, [RecordEvent::Promoted, RecordEvent::RolledBack], "one record per event, in order");
}

#[test]
fn a_rollout_recorded_as_done_counts_only_while_production_runs_the_digest() {
    // Approved by two, production still on the old digest, and a status that claims the rollout
    // is done (anyone who may write promotions/status could have written it).
    let mut world = World::new(1, true);
    world.apply(&Event::Approve(0));
    world.phase = PromotionPhase::Promoting;
    let mut facts = world.facts();
    facts.rollout = Progress::Done;
    let step = plan(&facts);
    assert_eq!(step.phase, PromotionPhase::Promoting, "{step:?}");
    assert_eq!(step.effects, [Effect::DeployProduction { digest: world.wanted.clone() }]);

    // Without a valid approval the claimed progress moves nothing either: the gate refuses.
    let mut unapproved = World::new(1, true);
    unapproved.phase = PromotionPhase::Promoting;
    let mut facts = unapproved.facts();
    facts.rollout = Progress::Done;
    let step = plan(&facts);
    assert_eq!(step.phase, PromotionPhase::Failed, "{step:?}");
    assert!(step.effects.iter().all(|e| !matches!(e, Effect::DeployProduction { .. })), "{step:?}");

    // Once production runs the digest, the record holds and the monitor window starts.
    world.production = world.wanted.clone();
    let step = plan(&world.facts());
    assert_eq!(step.phase, PromotionPhase::Monitoring, "{step:?}");
}
