use proptest::prelude::*;

use super::*;

const OLD: &str = "r.example/app@sha256:0ld";
const NEW: &str = "r.example/app@sha256:feed";
const HEX: &str = "feedfeedfeedfeedfeed";

fn revision(name: &str, image: &str, active: bool, created: &str) -> RevisionView {
    RevisionView {
        name: name.into(),
        image: Some(image.into()),
        active,
        provisioning: Provisioning::Succeeded,
        healthy: true,
        state: "Healthy, Running".into(),
        restarts: 0,
        created: created.into(),
    }
}

fn weight(revision: Option<&str>, weight: i32, label: Option<&str>) -> Weight {
    Weight { revision: revision.map(Into::into), weight, label: label.map(Into::into) }
}

/// A multiple-revision app whose traffic follows the latest revision, which runs `OLD`.
fn app() -> AppView {
    AppView {
        multiple_revisions: true,
        ingress: true,
        traffic: vec![weight(None, 100, None)],
        latest_revision: Some("web--v1".into()),
        busy: false,
        revisions: vec![revision("web--v1", OLD, true, "2026-01-01T00:00:00Z")],
    }
}

/// `app` after `step`, as Azure would make it (new revisions provision at once and are healthy).
fn apply(app: &mut AppView, step: &Step, image: &str) {
    match step {
        Step::CreateRevision { suffix, traffic } => {
            let name = format!("web--{suffix}");
            app.revisions.push(revision(&name, image, true, "2026-02-01T00:00:00Z"));
            app.latest_revision = Some(name);
            if let Some(t) = traffic {
                app.traffic = t.clone();
            }
            if !app.multiple_revisions {
                let latest = app.latest_revision.clone();
                for r in &mut app.revisions {
                    r.active = Some(&r.name) == latest.as_ref();
                }
            }
        }
        Step::SetTraffic(t) => app.traffic = t.clone(),
        Step::Activate(name) => app.revisions.iter_mut().filter(|r| &r.name == name).for_each(|r| r.active = true),
        Step::Deactivate(names) => {
            app.revisions.iter_mut().filter(|r| names.contains(&r.name)).for_each(|r| r.active = false)
        }
        Step::Wait(_) | Step::Done | Step::Failed(_) => {}
    }
}

fn converge(app: &mut AppView, image: &str, goal: &Goal) -> Vec<Step> {
    let mut steps = Vec::new();
    for _ in 0..10 {
        let step = next_step(app, image, HEX, goal);
        steps.push(step.clone());
        if matches!(step, Step::Done | Step::Failed(_) | Step::Wait(_)) {
            return steps;
        }
        apply(app, &step, image);
    }
    panic!("no convergence: {steps:?}");
}

#[test]
fn blue_green_creates_a_pinned_revision_then_switches_and_keeps_the_previous() {
    let mut app = app();
    let steps = converge(&mut app, NEW, &Goal::Production { keep_previous: true, canary: None });
    assert_eq!(
        steps[0],
        Step::CreateRevision {
            suffix: "tg-feedfeedfeed".into(),
            traffic: Some(vec![weight(Some("web--v1"), 100, None)])
        }
    );
    assert_eq!(steps.last(), Some(&Step::Done));
    assert_eq!(app.weight_of("web--tg-feedfeedfeed"), 100);
    assert!(app.revision("web--v1").is_some_and(|r| r.active), "kept for an instant rollback");
    assert_eq!(health(&app, NEW), Health::Healthy);
    // Rollback: traffic goes back to the previous revision, which never stopped.
    let back = converge(&mut app, OLD, &Goal::Production { keep_previous: true, canary: None });
    assert_eq!(back.len(), 2, "{back:?}");
    assert_eq!(app.weight_of("web--v1"), 100);
    assert_eq!(app.weight_of("web--tg-feedfeedfeed"), 0);
}

#[test]
fn staging_in_the_production_app_is_a_labelled_revision_at_zero() {
    let mut app = app();
    let steps = converge(&mut app, NEW, &Goal::StagingRevision { label: "staging".into() });
    assert_eq!(steps.last(), Some(&Step::Done));
    assert_eq!(app.weight_of("web--v1"), 100, "production traffic untouched");
    assert!(app.traffic.contains(&weight(Some("web--tg-feedfeedfeed"), 0, Some("staging"))));
    // Production later finds the revision staging made and only moves traffic; the label stays.
    let steps = converge(&mut app, NEW, &Goal::Production { keep_previous: true, canary: None });
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert!(app.traffic.contains(&weight(Some("web--tg-feedfeedfeed"), 100, Some("staging"))));
    assert!(app.traffic.contains(&weight(Some("web--v1"), 0, None)));
}

#[test]
fn a_later_candidate_on_staging_survives_the_retirement_of_the_previous() {
    let mut app = app();
    converge(&mut app, NEW, &Goal::Production { keep_previous: true, canary: None });
    app.revisions.push(revision("web--next", "r.example/app@sha256:beef", true, "2026-03-01T00:00:00Z"));
    app.traffic.push(weight(Some("web--next"), 0, Some("staging")));
    assert_eq!(app.idle_besides("web--tg-feedfeedfeed"), vec!["web--v1".to_string()]);
}

#[test]
fn replace_deactivates_the_previous_once_the_new_one_is_healthy() {
    let mut app = AppView { ingress: false, traffic: vec![], ..app() };
    let steps = converge(&mut app, NEW, &Goal::Production { keep_previous: false, canary: None });
    assert_eq!(steps[0], Step::CreateRevision { suffix: "tg-feedfeedfeed".into(), traffic: None });
    assert_eq!(steps[1], Step::Deactivate(vec!["web--v1".into()]));
    assert_eq!(app.revisions.iter().filter(|r| r.active).count(), 1);
    // Rollback reactivates the previous revision and deactivates the bad one.
    let back = converge(&mut app, OLD, &Goal::Production { keep_previous: false, canary: None });
    assert_eq!(back[0], Step::Activate("web--v1".into()));
    assert_eq!(back[1], Step::Deactivate(vec!["web--tg-feedfeedfeed".into()]));
}

#[test]
fn single_revision_mode_lets_azure_switch_and_refuses_what_needs_two() {
    let mut app = AppView { multiple_revisions: false, ..app() };
    let steps = converge(&mut app, NEW, &Goal::Production { keep_previous: false, canary: None });
    assert_eq!(steps, vec![Step::CreateRevision { suffix: "tg-feedfeedfeed".into(), traffic: None }, Step::Done]);
    // Back to the old image in single mode: a new revision, since the old one is inactive.
    let back = converge(&mut app, OLD, &Goal::Production { keep_previous: false, canary: None });
    assert!(matches!(&back[0], Step::CreateRevision { suffix, .. } if suffix.starts_with("tg-")));
    for goal in
        [Goal::Production { keep_previous: true, canary: None }, Goal::StagingRevision { label: "staging".into() }]
    {
        assert!(
            matches!(next_step(&app, NEW, HEX, &goal), Step::Failed(m) if m.contains("activeRevisionsMode Multiple"))
        );
    }
}

#[test]
fn waits_for_provisioning_and_health_and_fails_on_a_failed_revision() {
    let mut app = app();
    app.revisions.push(RevisionView {
        provisioning: Provisioning::InProgress,
        ..revision("web--tg-feedfeedfeed", NEW, true, "2026-02-01T00:00:00Z")
    });
    let goal = Goal::Production { keep_previous: true, canary: None };
    assert!(matches!(next_step(&app, NEW, HEX, &goal), Step::Wait(m) if m.contains("provisioning")));
    app.revisions[1].provisioning = Provisioning::Succeeded;
    app.revisions[1].healthy = false;
    assert!(matches!(next_step(&app, NEW, HEX, &goal), Step::Wait(m) if m.contains("not healthy")));
    app.revisions[1].provisioning = Provisioning::Failed("image pull failed".into());
    assert!(matches!(next_step(&app, NEW, HEX, &goal), Step::Failed(m) if m.contains("image pull failed")));
    app.busy = true;
    assert!(matches!(next_step(&app, NEW, HEX, &goal), Step::Wait(_)));
}

#[test]
fn health_needs_the_active_revision_healthy_without_restarts_and_with_all_traffic() {
    let mut app = app();
    converge(&mut app, NEW, &Goal::Production { keep_previous: true, canary: None });
    assert_eq!(health(&app, NEW), Health::Healthy);
    app.revisions[1].restarts = 2;
    assert!(matches!(health(&app, NEW), Health::Unhealthy(m) if m.contains("restarted 2 times")));
    app.revisions[1].restarts = 0;
    app.revisions[1].healthy = false;
    assert!(matches!(health(&app, NEW), Health::Unhealthy(_)));
    assert!(matches!(health(&app, "r.example/app@sha256:none"), Health::Unhealthy(_)));
}

fn fresh() -> AppView {
    app()
}

fn canary(held: Option<u64>) -> Goal {
    Goal::Production {
        keep_previous: true,
        canary: Some(Canary {
            steps: vec![10, 50],
            hold: std::time::Duration::from_secs(60),
            held: held.map(std::time::Duration::from_secs),
        }),
    }
}

#[test]
fn canary_steps_are_held_then_advanced_and_fail_when_unhealthy() {
    let mut app = app();
    let first = converge(&mut app, NEW, &canary(None));
    assert!(matches!(first.last(), Some(Step::Wait(m)) if m.contains("at 10 %")), "{first:?}");
    assert_eq!(app.weight_of("web--tg-feedfeedfeed"), 10);
    assert_eq!(app.weight_of("web--v1"), 90);
    // Held long enough: the next step, then all traffic.
    let step = next_step(&app, NEW, HEX, &canary(Some(61)));
    assert!(matches!(&step, Step::SetTraffic(t) if t.iter().any(|w| w.weight == 50)), "{step:?}");
    apply(&mut app, &step, NEW);
    assert!(matches!(next_step(&app, NEW, HEX, &canary(Some(5))), Step::Wait(_)));
    let step = next_step(&app, NEW, HEX, &canary(Some(60)));
    apply(&mut app, &step, NEW);
    assert_eq!(app.weight_of("web--tg-feedfeedfeed"), 100);
    assert_eq!(next_step(&app, NEW, HEX, &canary(Some(0))), Step::Done);
    // A crashing canary fails the step (the Promotion then rolls back).
    let mut app2 = fresh();
    converge(&mut app2, NEW, &canary(None));
    app2.revisions[1].restarts = 1;
    assert!(matches!(next_step(&app2, NEW, HEX, &canary(Some(61))), Step::Failed(m) if m.contains("at 10 %")));
    // Rolling back is an ordinary switch back to the previous revision.
    let back = converge(&mut app2, OLD, &Goal::Production { keep_previous: true, canary: None });
    assert_eq!(back.len(), 2, "{back:?}");
    assert_eq!(app2.weight_of("web--v1"), 100);
}

#[test]
fn suffixes_are_deterministic_and_avoid_taken_names() {
    assert_eq!(revision_suffix("ABCDEF0123456789", &[]), "tg-abcdef012345");
    assert_eq!(revision_suffix("abcdef0123456789", &["web--tg-abcdef012345"]), "tg-abcdef012345-2");
    assert_eq!(
        revision_suffix("abcdef0123456789", &["web--tg-abcdef012345", "web--tg-abcdef012345-2"]),
        "tg-abcdef012345-3"
    );
}

fn arb_app() -> impl Strategy<Value = AppView> {
    let rev =
        (0..4usize, any::<bool>(), any::<bool>(), 0..3u8, 0..3u32).prop_map(|(i, active, healthy, p, restarts)| {
            RevisionView {
                name: format!("web--r{i}"),
                image: Some(if i % 2 == 0 { OLD.to_string() } else { NEW.to_string() }),
                active,
                provisioning: match p {
                    0 => Provisioning::Succeeded,
                    1 => Provisioning::InProgress,
                    _ => Provisioning::Failed("x".into()),
                },
                healthy,
                state: String::new(),
                restarts,
                created: format!("2026-01-0{}T00:00:00Z", i + 1),
            }
        });
    (proptest::collection::vec(rev, 0..4), any::<bool>(), any::<bool>(), 0..3usize).prop_map(
        |(mut revisions, multiple, ingress, pick)| {
            revisions.sort_by(|a, b| a.name.cmp(&b.name));
            revisions.dedup_by(|a, b| a.name == b.name);
            let latest = revisions.last().map(|r| r.name.clone());
            let traffic = match (ingress, revisions.get(pick % revisions.len().max(1))) {
                (true, Some(r)) => vec![weight(Some(&r.name), 100, None)],
                (true, None) => vec![],
                (false, _) => vec![],
            };
            AppView { multiple_revisions: multiple, ingress, traffic, latest_revision: latest, busy: false, revisions }
        },
    )
}

proptest! {
    /// Whatever the app looks like, a traffic step sums to 100 (or 0 when only labels are kept),
    /// and traffic goes only to revisions that exist; production is done only when the wanted
    /// image is what serves.
    #[test]
    fn steps_are_sound(app in arb_app(), production in any::<bool>(), keep in any::<bool>(), held in proptest::option::of(0..120u64)) {
        let goal = match (production, keep) {
            (true, _) if held.is_some() => canary(held),
            (true, keep) => Goal::Production { keep_previous: keep, canary: None },
            (false, _) => Goal::StagingRevision { label: "staging".into() },
        };
        match next_step(&app, NEW, HEX, &goal) {
            Step::SetTraffic(t) => {
                let sum: i32 = t.iter().map(|w| w.weight).sum();
                prop_assert!(sum == 100, "{t:?}");
                for w in &t {
                    let name = w.revision.as_deref().unwrap_or_default();
                    prop_assert!(app.revisions.iter().any(|r| r.name == name), "{t:?}");
                }
            }
            // Without ingress, `overlap` keeps both revisions active until the window ends.
            Step::Done if production && (app.ingress || !keep) => {
                let serving = app.live().and_then(|r| r.image.clone());
                prop_assert_eq!(serving.as_deref(), Some(NEW));
            }
            Step::Deactivate(names) => {
                for name in names {
                    prop_assert!(app.weight_of(&name) == 0);
                }
            }
            _ => {}
        }
    }
}
