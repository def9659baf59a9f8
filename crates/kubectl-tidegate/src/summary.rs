//! What `approve` and `rollback` show before they write: built from the Promotion, its
//! ImagePolicy and its Release as read, with a warning for everything an approver must not miss.
//! No I/O.

use tidegate_api::image_policy::Workload;
use tidegate_api::{ImagePolicy, Promotion, Release, ReleasePhase};

use crate::promotions::{phase, phase_name, recorded_approvers};
use crate::render::{ApprovalSummary, ReleaseFacts, RollbackSummary, TargetView, Targets};

/// An object as a command could read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<T> {
    /// Read.
    Found(T),
    /// The API server says it does not exist.
    Missing,
    /// Reading it failed; the error as one line.
    Unreadable(String),
}

impl<T> Lookup<T> {
    /// The object, when read.
    pub fn found(&self) -> Option<&T> {
        match self {
            Lookup::Found(object) => Some(object),
            _ => None,
        }
    }
}

/// The production target of each workload; a namespace left out is `namespace` (the policy's).
pub fn target_views(workloads: &[Workload], namespace: &str) -> Vec<TargetView> {
    workloads
        .iter()
        .map(|w| match &w.production.kubernetes {
            Some(k) => TargetView {
                workload: w.name.clone(),
                kind: phase_name(k.kind),
                object: format!("{}/{}", k.namespace.as_deref().unwrap_or(namespace), k.name),
            },
            None => {
                TargetView { workload: w.name.clone(), kind: "-".into(), object: "(not a Kubernetes target)".into() }
            }
        })
        .collect()
}

/// The targets of the Promotion's frozen rules, when the controller froze them.
pub fn frozen_targets(promotion: &Promotion, namespace: &str) -> Option<Vec<TargetView>> {
    promotion.status.as_ref().and_then(|s| s.rules.as_ref()).map(|rules| target_views(&rules.workloads, namespace))
}

/// The production targets a Promotion changes: its frozen rules (`status.rules.workloads`), or
/// else the policy's workloads that its `spec.workloads` names (all of them when it names none),
/// in the order the controller would freeze them. Adds a warning for a name the policy lacks,
/// and when neither source can be read.
pub fn targets(
    promotion: &Promotion,
    policy: &Lookup<ImagePolicy>,
    namespace: &str,
    warnings: &mut Vec<String>,
) -> Targets {
    if let Some(frozen) = frozen_targets(promotion, namespace) {
        return Targets::Frozen(frozen);
    }
    let Some(policy) = policy.found() else {
        warnings.push(format!(
            "the production targets are unknown: the Promotion's rules are not frozen yet and imagepolicy {namespace}/{} could not be read",
            promotion.spec.policy
        ));
        return Targets::Unknown;
    };
    let selected: Vec<Workload> = match &promotion.spec.workloads {
        None => policy.spec.workloads.clone(),
        Some(names) => {
            let missing: Vec<&str> = names
                .iter()
                .filter(|n| !policy.spec.workloads.iter().any(|w| &w.name == *n))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                warnings.push(format!(
                    "the Promotion names workloads that imagepolicy {namespace}/{} does not have ({}); the controller will refuse it",
                    promotion.spec.policy,
                    missing.join(", ")
                ));
            }
            names.iter().filter_map(|n| policy.spec.workloads.iter().find(|w| &w.name == n).cloned()).collect()
        }
    };
    Targets::Policy(target_views(&selected, namespace))
}

/// The approvals a Promotion needs: its frozen `requiredApprovals`, or the current policy's where
/// that is more (the controller applies the stricter of the two); `None` when neither is known.
pub fn required_approvals(promotion: &Promotion, policy: Option<&ImagePolicy>) -> Option<i32> {
    let frozen = promotion.status.as_ref().and_then(|s| s.rules.as_ref()).map(|r| r.required_approvals);
    let now = policy.map(|p| p.spec.promotion.required_approvals);
    match (frozen, now) {
        (Some(frozen), Some(now)) => Some(frozen.max(now)),
        (frozen, now) => frozen.or(now),
    }
}

fn policy_warning(policy: &Lookup<ImagePolicy>, qualified: &str, warnings: &mut Vec<String>) {
    match policy {
        Lookup::Found(policy) => {
            let drift = policy.status.as_ref().map(|s| s.drift.as_slice()).unwrap_or_default();
            if !drift.is_empty() {
                warnings.push(format!(
                    "production drifted from what was approved: {}",
                    tidegate_core::drift::describe(drift)
                ));
            }
        }
        Lookup::Missing => warnings.push(format!("imagepolicy {qualified} does not exist")),
        Lookup::Unreadable(error) => warnings.push(format!("imagepolicy {qualified} could not be read: {error}")),
    }
}

/// What `approve` shows: the Promotion, digest and image, policy, Release (phase, scan, staging
/// tests), approvals so far against those required, the production targets, and warnings for a
/// Release that is missing, not `Verified`, or for another digest, for blocking findings and
/// failed tests, and for an image that does not match.
pub fn approval(
    promotion: &Promotion,
    policy: &Lookup<ImagePolicy>,
    release: &Lookup<Release>,
    namespace: &str,
    user: &str,
) -> ApprovalSummary {
    let mut warnings = Vec::new();
    let digest = promotion.spec.digest.clone();
    let policy_name = promotion.spec.policy.clone();
    let release_name = promotion.spec.release.clone();
    let rules = promotion.status.as_ref().and_then(|s| s.rules.as_ref());
    let current = policy.found().map(|p| &p.spec);

    // The release: it must exist, be Verified, and be for this very digest.
    let mut facts = ReleaseFacts { name: release_name.clone(), ..Default::default() };
    match release {
        Lookup::Missing => warnings.push(format!(
            "release {namespace}/{release_name} does not exist: nothing shows that {digest} passed its scan, signing and staging tests"
        )),
        Lookup::Unreadable(error) => warnings.push(format!(
            "release {namespace}/{release_name} could not be read ({error}): whether {digest} passed its gates is unknown"
        )),
        Lookup::Found(release) => {
            let status = release.status.clone().unwrap_or_default();
            if status.phase != ReleasePhase::Verified {
                warnings.push(format!(
                    "release {namespace}/{release_name} is {}, not Verified: this digest has not passed every gate",
                    phase_name(status.phase)
                ));
            }
            match status.digest.as_deref() {
                None => warnings.push(format!(
                    "release {namespace}/{release_name} records no digest: nothing ties it to {digest}"
                )),
                Some(built) if built != digest => warnings.push(format!(
                    "release {namespace}/{release_name} is for {built}, not for {digest}, the digest this Promotion puts in production"
                )),
                Some(_) => {}
            }
            match &status.scan {
                None => warnings.push(format!("release {namespace}/{release_name} records no scan")),
                Some(scan) if scan.blocking > 0 => warnings.push(format!(
                    "the scan of release {namespace}/{release_name} found {} blocking {}",
                    scan.blocking,
                    if scan.blocking == 1 { "finding" } else { "findings" }
                )),
                Some(_) => {}
            }
            let failed: Vec<String> = status.tests.iter().filter(|t| !t.passed).map(|t| t.name.clone()).collect();
            if !failed.is_empty() {
                warnings.push(format!(
                    "staging tests of release {namespace}/{release_name} failed: {}",
                    failed.join(", ")
                ));
            }
            facts = ReleaseFacts {
                name: release_name.clone(),
                phase: Some(phase_name(status.phase)),
                tests_passed: status.tests.iter().filter(|t| t.passed).count(),
                tests_failed: failed,
                scan: status.scan,
            };
        }
    }

    // The image: the repository the rules froze, else the policy's.
    let repository = rules.map(|r| r.image.clone()).or_else(|| current.map(|spec| spec.image.clone()));
    if let (Some(frozen), Some(now)) = (rules.map(|r| &r.image), current.map(|spec| &spec.image))
        && frozen != now
    {
        warnings.push(format!(
            "imagepolicy {namespace}/{policy_name} now names {now}, but this Promotion was opened for {frozen}, which the controller promotes"
        ));
    }
    let image = repository.map(|repository| format!("{repository}@{digest}"));
    if let (Some(image), Some(built)) =
        (&image, release.found().and_then(|r| r.status.as_ref()).and_then(|s| s.image.as_deref()))
        && built != image
    {
        warnings.push(format!("release {namespace}/{release_name} built {built}, not {image}"));
    }

    policy_warning(policy, &format!("{namespace}/{policy_name}"), &mut warnings);
    let targets = targets(promotion, policy, namespace, &mut warnings);

    // The controller holds a Promotion to its frozen rules, or to the current policy's where
    // that is stricter.
    let required = required_approvals(promotion, policy.found());
    let valid_for = match (rules.map(|r| &r.approval_valid_for), current.map(|spec| &spec.promotion.approval_valid_for))
    {
        (Some(frozen), Some(now)) if frozen != now => {
            Some(format!("{frozen} or {now}, whichever is shorter (frozen rules, current policy)"))
        }
        (frozen, now) => frozen.or(now).cloned(),
    };

    // The warnings are in the order a reader checks: release, image, policy, targets.
    ApprovalSummary {
        promotion: format!("{namespace}/{}", promotion.metadata.name.as_deref().unwrap_or_default()),
        phase: phase_name(phase(promotion)),
        user: user.to_string(),
        digest,
        image,
        policy: policy_name,
        release: facts,
        approvers: recorded_approvers(&promotion.metadata),
        accepted: promotion.status.as_ref().map(|s| s.approved_by.clone()).unwrap_or_default(),
        required,
        valid_for,
        targets,
        warnings,
    }
}

/// What `rollback` shows: the digest production runs now, the digest it goes back to, and the
/// targets; warnings when production runs another digest than the Promotion's, or the Promotion
/// records no digest to go back to.
pub fn rollback(promotion: &Promotion, policy: &Lookup<ImagePolicy>, namespace: &str, user: &str) -> RollbackSummary {
    let mut warnings = Vec::new();
    let qualified = format!("{namespace}/{}", promotion.metadata.name.as_deref().unwrap_or_default());
    let rules = promotion.status.as_ref().and_then(|s| s.rules.as_ref());
    let production = policy.found().and_then(|p| p.status.as_ref()).and_then(|s| s.production_digest.clone());
    let back_to = promotion.status.as_ref().and_then(|s| s.previous_digest.clone());
    if let Some(production) = &production
        && *production != promotion.spec.digest
    {
        warnings.push(format!(
            "production runs {production}, not {}, the digest of promotion {qualified}",
            promotion.spec.digest
        ));
    }
    if back_to.is_none() {
        warnings.push(format!(
            "promotion {qualified} records no previous digest (status.previousDigest): the controller has no digest to restore"
        ));
    }
    policy_warning(policy, &format!("{namespace}/{}", promotion.spec.policy), &mut warnings);
    let targets = targets(promotion, policy, namespace, &mut warnings);
    RollbackSummary {
        promotion: qualified,
        phase: phase_name(phase(promotion)),
        user: user.to_string(),
        policy: promotion.spec.policy.clone(),
        image: rules.map(|r| r.image.clone()).or_else(|| policy.found().map(|p| p.spec.image.clone())),
        promotion_digest: promotion.spec.digest.clone(),
        production,
        back_to,
        targets,
        warnings,
    }
}

/// Refuses to write when the Promotion read again is not the one that was shown: deleted and
/// created again under the same name, or frozen since with other production targets.
pub fn still_shown(
    fresh: &Promotion,
    shown: &Promotion,
    shown_targets: &Targets,
    namespace: &str,
) -> Result<(), String> {
    let qualified = format!("{namespace}/{}", fresh.metadata.name.as_deref().unwrap_or_default());
    if fresh.metadata.uid != shown.metadata.uid || fresh.spec.digest != shown.spec.digest {
        return Err(format!(
            "promotion {qualified} was replaced after it was shown to you; nothing was written, run the command again"
        ));
    }
    if let Some(frozen) = frozen_targets(fresh, namespace) {
        let shown_list = match shown_targets {
            Targets::Frozen(list) | Targets::Policy(list) => Some(list),
            Targets::Unknown => None,
        };
        if shown_list != Some(&frozen) {
            return Err(format!(
                "the controller froze the rules of promotion {qualified} after it was shown to you, with other production targets; nothing was written, run the command again"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promotions::tests::{DIGEST, promotion, time};
    use crate::render;
    use tidegate_api::release::{ReasonKind, ReleaseReason, ScanSummary, TestResult};
    use tidegate_api::{
        ANNOTATION_APPROVED_BY, FrozenRules, ImagePolicySpec, ImagePolicyStatus, PromotionPhase, PromotionStatus,
        ReleaseSpec, ReleaseStatus,
    };

    const OTHER: &str = "sha256:7bde398e02aa6cd6426e4feaf3330e1d6cd0268d6667a553417a3c2b7dcd417d";

    fn workload(name: &str, kind: &str, namespace: Option<&str>) -> Workload {
        let mut production = serde_json::json!({"kind": kind, "name": name});
        if let Some(namespace) = namespace {
            production["namespace"] = namespace.into();
        }
        serde_json::from_value(serde_json::json!({
            "name": name,
            "kind": if kind == "CronJob" { "job" } else { "http" },
            "staging": {"kubernetes": {"kind": kind, "namespace": "shop-staging", "name": name}},
            "production": {"kubernetes": production},
        }))
        .expect("workload")
    }

    fn policy(required: i32) -> ImagePolicy {
        let mut spec: ImagePolicySpec = serde_json::from_value(serde_json::json!({
            "image": "registry.example.com/shop/app",
            "workloads": [],
        }))
        .expect("spec");
        spec.workloads = vec![
            workload("web", "Deployment", Some("shop-prod")),
            workload("worker", "Deployment", None),
            workload("nightly", "CronJob", Some("shop-prod")),
        ];
        spec.promotion.required_approvals = required;
        let mut p = ImagePolicy::new("shop-app", spec);
        p.metadata.namespace = Some("shop".into());
        p
    }

    fn release(phase: ReleasePhase, digest: Option<&str>, blocking: i32) -> Release {
        let mut r = Release::new(
            "p-release",
            ReleaseSpec {
                policy: "shop-app".into(),
                reason: ReleaseReason {
                    kind: ReasonKind::Manual,
                    base_image: None,
                    vulnerabilities: None,
                    message: None,
                },
                source: None,
            },
        );
        r.status = Some(ReleaseStatus {
            phase,
            digest: digest.map(str::to_string),
            scan: Some(ScanSummary {
                scanner: Some("trivyReport".into()),
                critical: 0,
                high: 1,
                medium: 3,
                low: 2,
                blocking,
                blocking_ids: (0..blocking).map(|i| format!("CVE-2026-{i:04}")).collect(),
                finished_at: Some(time(1_767_261_600)),
                ..Default::default()
            }),
            tests: vec![TestResult { name: "health".into(), passed: true, message: None, finished_at: None }],
            ..Default::default()
        });
        r
    }

    fn frozen(workloads: Vec<Workload>, required: i32) -> FrozenRules {
        FrozenRules {
            image: "registry.example.com/shop/app".into(),
            required_approvals: required,
            approval_valid_for: "24h".into(),
            monitor_window: "10m".into(),
            auto_rollback: true,
            workloads,
            frozen_at: time(1_767_261_600),
        }
    }

    fn waiting() -> Promotion {
        let mut p = promotion("p", "shop-app", None);
        p.metadata.annotations = Some([(ANNOTATION_APPROVED_BY.to_string(), "alice".to_string())].into());
        p
    }

    #[test]
    fn a_clean_approval_lists_everything_without_warnings() {
        let mut p = waiting();
        p.status = Some(PromotionStatus {
            rules: Some(frozen(
                vec![workload("web", "Deployment", Some("shop-prod")), workload("worker", "Deployment", None)],
                2,
            )),
            ..Default::default()
        });
        let s = approval(
            &p,
            &Lookup::Found(policy(1)),
            &Lookup::Found(release(ReleasePhase::Verified, Some(DIGEST), 0)),
            "shop",
            "bob",
        );
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        assert_eq!(s.required, Some(2), "the frozen rule is stricter than the current policy");
        let text = render::approval_summary(&s);
        let expected = format!(
            "\
About to approve promotion shop/p as bob
  phase       AwaitingApproval
  digest      {DIGEST}
  image       registry.example.com/shop/app@{DIGEST}
  policy      shop-app
  release     p-release, Verified
  scan        0 blocking; critical 0, high 1, medium 3, low 2; trivyReport, finished 2026-01-01T10:00:00Z
  tests       1 passed
  approvals   1 so far (alice), 2 required; yours makes 2; each counts for 24h
  production  2 targets (frozen when the Promotion opened):
    web     Deployment  shop-prod/web
    worker  Deployment  shop/worker
"
        );
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn targets_come_from_the_policy_filtered_by_the_promotion_until_frozen() {
        let mut p = waiting();
        p.spec.workloads = Some(vec!["nightly".into(), "web".into(), "gone".into()]);
        let mut warnings = Vec::new();
        let selected = targets(&p, &Lookup::Found(policy(1)), "shop", &mut warnings);
        assert_eq!(
            selected,
            Targets::Policy(vec![
                TargetView { workload: "nightly".into(), kind: "CronJob".into(), object: "shop-prod/nightly".into() },
                TargetView { workload: "web".into(), kind: "Deployment".into(), object: "shop-prod/web".into() },
            ])
        );
        assert!(warnings.len() == 1 && warnings[0].contains("(gone)"), "{warnings:?}");

        p.spec.workloads = None;
        let mut warnings = Vec::new();
        let Targets::Policy(all) = targets(&p, &Lookup::Found(policy(1)), "shop", &mut warnings) else {
            panic!("targets from the policy")
        };
        assert_eq!(all.len(), 3);
        assert!(warnings.is_empty());
        let text = render::approval_summary(&approval(&p, &Lookup::Found(policy(1)), &Lookup::Missing, "shop", "bob"));
        assert!(
            text.contains(
                "  production  3 targets (from the ImagePolicy; the Promotion's rules are not frozen yet):\n    web "
            ),
            "{text}"
        );

        let mut warnings = Vec::new();
        assert_eq!(targets(&p, &Lookup::Unreadable("forbidden".into()), "shop", &mut warnings), Targets::Unknown);
        assert!(warnings[0].contains("production targets are unknown"), "{warnings:?}");
    }

    #[test]
    fn a_missing_unverified_or_foreign_release_is_a_warning() {
        let p = waiting();
        let policy = Lookup::Found(policy(1));
        let warned = |release: Lookup<Release>| approval(&p, &policy, &release, "shop", "bob").warnings;

        let missing = warned(Lookup::Missing);
        assert!(missing.len() == 1 && missing[0].contains("release shop/p-release does not exist"), "{missing:?}");
        let text = render::approval_summary(&approval(&p, &policy, &Lookup::Missing, "shop", "bob"));
        assert!(text.contains("  release     p-release, unknown\n  scan        unknown\n"), "{text}");
        assert!(text.ends_with("WARNING: release shop/p-release does not exist: nothing shows that sha256:4c184c0d25773ebecb5b46cfb86c87aede83bf6fb921f9d21292fab3deb4aa26 passed its scan, signing and staging tests\n"), "{text}");

        let rejected = warned(Lookup::Found(release(ReleasePhase::Rejected, Some(DIGEST), 2)));
        assert_eq!(rejected.len(), 2, "{rejected:?}");
        assert!(rejected[0].contains("is Rejected, not Verified"), "{rejected:?}");
        assert!(rejected[1].contains("found 2 blocking findings"), "{rejected:?}");
        let text = render::approval_summary(&approval(
            &p,
            &policy,
            &Lookup::Found(release(ReleasePhase::Rejected, Some(DIGEST), 2)),
            "shop",
            "bob",
        ));
        assert!(text.contains("  scan        2 blocking (CVE-2026-0000, CVE-2026-0001); critical 0"), "{text}");

        let foreign = warned(Lookup::Found(release(ReleasePhase::Verified, Some(OTHER), 0)));
        assert!(foreign.len() == 1 && foreign[0].contains(&format!("is for {OTHER}, not for {DIGEST}")), "{foreign:?}");
        let none = warned(Lookup::Found(release(ReleasePhase::Verified, None, 0)));
        assert!(none.len() == 1 && none[0].contains("records no digest"), "{none:?}");
        let unreadable = warned(Lookup::Unreadable("forbidden".into()));
        assert!(unreadable[0].contains("could not be read (forbidden)"), "{unreadable:?}");

        let mut failing = release(ReleasePhase::Verified, Some(DIGEST), 0);
        failing.status.as_mut().expect("status").tests.push(TestResult {
            name: "checkout".into(),
            passed: false,
            message: None,
            finished_at: None,
        });
        assert_eq!(
            warned(Lookup::Found(failing.clone())),
            ["staging tests of release shop/p-release failed: checkout"]
        );
        let text = render::approval_summary(&approval(&p, &policy, &Lookup::Found(failing), "shop", "bob"));
        assert!(text.contains("  tests       1 passed, 1 failed (checkout)\n"), "{text}");
    }

    #[test]
    fn approvals_and_image_without_the_policy() {
        let mut p = promotion("p", "shop-app", None);
        let s = approval(
            &p,
            &Lookup::Missing,
            &Lookup::Found(release(ReleasePhase::Verified, Some(DIGEST), 0)),
            "shop",
            "bob",
        );
        assert_eq!((s.image.as_deref(), s.required), (None, None));
        assert_eq!(s.targets, Targets::Unknown);
        assert!(s.warnings.iter().any(|w| w == "imagepolicy shop/shop-app does not exist"), "{:?}", s.warnings);
        let text = render::approval_summary(&s);
        assert!(text.contains("  image       unknown\n"), "{text}");
        assert!(text.contains("  approvals   none so far; yours makes 1; the number required is unknown\n"), "{text}");
        assert!(text.contains("  production  targets unknown\n"), "{text}");

        // Frozen rules name the image even without the policy; a policy that moved is a warning.
        p.status = Some(PromotionStatus {
            rules: Some(frozen(vec![], 1)),
            approved_by: vec!["carol".into()],
            ..Default::default()
        });
        let mut moved = policy(3);
        moved.spec.image = "registry.example.com/shop/other".into();
        moved.spec.promotion.approval_valid_for = "1h".into();
        let s = approval(
            &p,
            &Lookup::Found(moved),
            &Lookup::Found(release(ReleasePhase::Verified, Some(DIGEST), 0)),
            "shop",
            "bob",
        );
        assert_eq!(s.image, Some(format!("registry.example.com/shop/app@{DIGEST}")));
        assert_eq!(s.required, Some(3), "the current policy is stricter");
        assert!(s.warnings.iter().any(|w| w.contains("now names registry.example.com/shop/other")), "{:?}", s.warnings);
        let text = render::approval_summary(&s);
        assert!(text.contains("each counts for 24h or 1h, whichever is shorter"), "{text}");
        assert!(text.contains("  accepted    carol (by the controller)\n"), "{text}");
        assert!(text.contains("  production  no targets (frozen when the Promotion opened)\n"), "{text}");
    }

    #[test]
    fn a_rollback_shows_current_and_target_digests() {
        let mut p = promotion("p", "shop-app", Some(PromotionPhase::Monitoring));
        p.status.as_mut().expect("status").previous_digest = Some(OTHER.into());
        p.status.as_mut().expect("status").rules = Some(frozen(vec![workload("web", "Deployment", None)], 1));
        let mut live = policy(1);
        live.status = Some(ImagePolicyStatus { production_digest: Some(DIGEST.into()), ..Default::default() });
        let s = rollback(&p, &Lookup::Found(live.clone()), "shop", "dave");
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let text = render::rollback_summary(&s);
        let expected = format!(
            "\
About to request a rollback of promotion shop/p as dave
  phase       Monitoring
  policy      shop-app
  image       registry.example.com/shop/app
  current     {DIGEST} (production now, from this Promotion)
  back to     {OTHER} (what production ran before this Promotion)
  production  1 target (frozen when the Promotion opened):
    web  Deployment  shop/web
"
        );
        assert_eq!(text, expected, "\n{text}");

        live.status = Some(ImagePolicyStatus { production_digest: Some(OTHER.into()), ..Default::default() });
        p.status.as_mut().expect("status").previous_digest = None;
        let s = rollback(&p, &Lookup::Found(live), "shop", "dave");
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        let text = render::rollback_summary(&s);
        assert!(text.contains(&format!("  current     {OTHER} (production now)\n  promotion   {DIGEST} (this Promotion's digest)\n  back to     unknown\n")), "{text}");
        assert!(text.contains("WARNING: promotion shop/p records no previous digest"), "{text}");
    }

    #[test]
    fn production_drift_is_a_warning_for_approvers() {
        let mut drifted = policy(1);
        drifted.status = Some(ImagePolicyStatus {
            drift: vec![tidegate_api::image_policy::ProductionDrift {
                workload: "Deployment shop-prod/web".into(),
                image: Some(format!("registry.example.com/shop/app@{OTHER}")),
                approved_digest: Some(DIGEST.into()),
                break_glass: Some("INC-7 checkout down".into()),
                break_glass_by: Some("oncall".into()),
            }],
            ..Default::default()
        });
        let s = approval(&waiting(), &Lookup::Found(drifted), &Lookup::Missing, "shop", "alice");
        let warning = s.warnings.iter().find(|w| w.contains("production drifted")).expect("a drift warning");
        assert!(
            warning.contains("break-glass by oncall: INC-7 checkout down") && warning.contains(DIGEST),
            "{warning}"
        );
        let clean = approval(&waiting(), &Lookup::Found(policy(1)), &Lookup::Missing, "shop", "alice");
        assert!(!clean.warnings.iter().any(|w| w.contains("drifted")), "{:?}", clean.warnings);
    }

    #[test]
    fn a_write_is_refused_when_the_promotion_is_not_the_one_shown() {
        let mut shown = promotion("p", "shop-app", None);
        shown.metadata.uid = Some("uid-1".into());
        let policy_targets = Targets::Policy(vec![TargetView {
            workload: "web".into(),
            kind: "Deployment".into(),
            object: "shop/web".into(),
        }]);
        assert_eq!(still_shown(&shown, &shown, &policy_targets, "shop"), Ok(()));
        let mut again = shown.clone();
        again.metadata.uid = Some("uid-2".into());
        assert!(still_shown(&again, &shown, &policy_targets, "shop").expect_err("replaced").contains("was replaced"));
        // Frozen since, with the targets that were shown: fine; with others: refused.
        let mut frozen_same = shown.clone();
        frozen_same.status = Some(PromotionStatus {
            rules: Some(frozen(vec![workload("web", "Deployment", None)], 1)),
            ..Default::default()
        });
        assert_eq!(still_shown(&frozen_same, &shown, &policy_targets, "shop"), Ok(()));
        let mut frozen_other = shown.clone();
        frozen_other.status = Some(PromotionStatus {
            rules: Some(frozen(vec![workload("web", "Deployment", Some("elsewhere"))], 1)),
            ..Default::default()
        });
        assert!(still_shown(&frozen_other, &shown, &policy_targets, "shop").expect_err("moved").contains("froze"));
        assert!(still_shown(&frozen_same, &shown, &Targets::Unknown, "shop").is_err());
    }
}
