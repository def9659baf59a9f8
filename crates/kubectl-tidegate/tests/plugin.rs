//! The built `kubectl-tidegate` binary against a real kube-apiserver, run as real
//! client-certificate users with RBAC. No approval admission policy is installed here: these
//! tests pin down what the plugin itself writes, reads and refuses.

mod common;

use std::time::Duration;

use common::{DIGEST_A, DIGEST_B, DIGEST_C, Ns, kubeconfig_file, run_plugin};
use serde_json::json;
use tidegate_api::{
    ANNOTATION_APPROVED_BY, ANNOTATION_APPROVER_GROUPS, ANNOTATION_REJECTED_BY, ANNOTATION_REJECTION_REASON,
    ANNOTATION_ROLLBACK_REQUESTED_BY,
};

const PROMOTION: &str = "shop-app-manual-1";

#[tokio::test]
async fn approve_appends_the_callers_name_in_order_and_only_once() {
    let ns = Ns::new("plugin-approve").await;
    ns.policy("shop-app", 2).await;
    ns.example_releases().await;
    ns.verified_release("shop-app-manual-1", DIGEST_B).await;
    ns.promotion(PROMOTION, "shop-app", "shop-app-manual-1", DIGEST_B).await;

    // Before the controller froze its rules, the targets are the policy's workloads it names.
    let out = ns.run_as("alice", &["approve", PROMOTION, "--yes"]).await;
    let text = out.ok();
    let expected = format!(
        "\
About to approve promotion plugin-approve/shop-app-manual-1 as alice
  phase       AwaitingApproval
  digest      {DIGEST_B}
  image       registry.example.com/shop/app@{DIGEST_B}
  policy      shop-app
  release     shop-app-manual-1, Verified
  scan        0 blocking; critical 0, high 1, medium 2, low 3; trivyReport
  tests       1 passed
  approvals   none so far, 2 required; yours makes 1; each counts for 24h
  production  3 targets (from the ImagePolicy; the Promotion's rules are not frozen yet):
    web             Deployment  shop/web
    worker          Deployment  shop/worker
    nightly-report  CronJob     shop/nightly-report
promotion plugin-approve/shop-app-manual-1 approved by alice (1 of 2 approvals)
"
    );
    assert_eq!(text, expected, "\n{text}");
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_APPROVED_BY).await.as_deref(), Some("alice"));
    // The groups that go with an approval are the admission policy's to record, never the plugin's.
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_APPROVER_GROUPS).await, None);

    // Once frozen, the frozen targets are what is shown.
    ns.freeze(PROMOTION, &["web"], "shop-prod", 2).await;
    let out = ns.run_as("bob", &["approve", PROMOTION, "-y"]).await;
    let text = out.ok();
    assert!(
        text.contains(
            "  approvals   1 so far (alice), 2 required; yours makes 2; each counts for 24h\n  \
production  1 target (frozen when the Promotion opened):\n    web  Deployment  shop-prod/web\n"
        ),
        "\n{text}"
    );
    assert!(!text.contains("WARNING"), "\n{text}");
    assert!(
        text.ends_with("promotion plugin-approve/shop-app-manual-1 approved by bob (2 of 2 approvals)\n"),
        "{text}"
    );
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_APPROVED_BY).await.as_deref(), Some("alice,bob"));

    // Approving twice changes nothing at all, not even the resourceVersion, and asks nothing.
    let before = ns.get_promotion(PROMOTION).await.metadata.resource_version;
    let out = ns.run_as("alice", &["approve", PROMOTION]).await;
    assert_eq!(out.ok(), "promotion plugin-approve/shop-app-manual-1 already approved by alice (2 of 2 approvals)\n");
    let after = ns.get_promotion(PROMOTION).await;
    assert_eq!(after.metadata.resource_version, before);
    assert_eq!(
        after.metadata.annotations.and_then(|a| a.get(ANNOTATION_APPROVED_BY).cloned()).as_deref(),
        Some("alice,bob")
    );
}

#[tokio::test]
async fn approve_without_a_terminal_and_without_yes_writes_nothing() {
    let ns = Ns::new("plugin-no-tty").await;
    ns.policy("shop-app", 1).await;
    ns.example_releases().await;
    ns.verified_release("shop-app-manual-1", DIGEST_B).await;
    ns.promotion(PROMOTION, "shop-app", "shop-app-manual-1", DIGEST_B).await;
    ns.promotion("live", "shop-app", "shop-app-manual-1", DIGEST_C).await;
    ns.promotion_status("live", json!({"phase": "Monitoring", "previousDigest": DIGEST_B})).await;
    let before = ns.get_promotion(PROMOTION).await.metadata.resource_version;

    // Standard input is /dev/null.
    let error = ns.run_as("alice", &["approve", PROMOTION]).await;
    assert_eq!(error.failed(), "error: stdin is not a terminal: pass --yes to approve without a prompt");
    // A "y" from a pipe is not an answer either.
    let error = ns.run_piped("alice", &["approve", PROMOTION], "y\n").await;
    assert_eq!(error.failed(), "error: stdin is not a terminal: pass --yes to approve without a prompt");
    let error = ns.run_piped("dave", &["rollback", "promotion/live"], "yes\n").await;
    assert_eq!(error.failed(), "error: stdin is not a terminal: pass --yes to roll back without a prompt");

    assert_eq!(ns.get_promotion(PROMOTION).await.metadata.resource_version, before, "nothing written");
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_APPROVED_BY).await, None);
    assert_eq!(ns.annotation("live", ANNOTATION_ROLLBACK_REQUESTED_BY).await, None);
}

#[tokio::test]
async fn approve_on_a_terminal_asks_and_only_yes_writes() {
    let ns = Ns::new("plugin-tty").await;
    ns.policy("shop-app", 1).await;
    ns.example_releases().await;
    ns.verified_release("shop-app-manual-1", DIGEST_B).await;
    ns.promotion(PROMOTION, "shop-app", "shop-app-manual-1", DIGEST_B).await;
    let question = format!("Approve {DIGEST_B} for production? [y/N]");

    let Some(no) = ns.run_in_terminal("alice", &["approve", PROMOTION], "n\n", None).await else {
        eprintln!("skipped: util-linux `script` cannot run here, so no pseudo-terminal");
        return;
    };
    println!("{}", no.stdout);
    assert_eq!(no.code, 1, "{no:#?}");
    assert!(no.stdout.contains("About to approve promotion plugin-tty/shop-app-manual-1 as alice\n"), "{no:#?}");
    assert!(no.stdout.contains(&format!("  digest      {DIGEST_B}\n")), "{no:#?}");
    assert!(no.stdout.contains(&question), "{no:#?}");
    assert!(
        no.stdout.contains("error: promotion plugin-tty/shop-app-manual-1 was not approved: nothing was written"),
        "{no:#?}"
    );
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_APPROVED_BY).await, None);

    // An empty answer is no.
    let empty = ns.run_in_terminal("alice", &["approve", PROMOTION], "\n", None).await.expect("script ran before");
    assert_eq!(empty.code, 1, "{empty:#?}");
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_APPROVED_BY).await, None);

    let yes = ns.run_in_terminal("alice", &["approve", PROMOTION], "y\n", None).await.expect("script ran before");
    assert_eq!(yes.code, 0, "{yes:#?}");
    assert!(yes.stdout.contains(&question), "{yes:#?}");
    assert!(
        yes.stdout.contains("promotion plugin-tty/shop-app-manual-1 approved by alice (1 of 1 approval)\n"),
        "{yes:#?}"
    );
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_APPROVED_BY).await.as_deref(), Some("alice"));

    // With standard output redirected, the summary is repeated on standard error, so the person
    // answering still sees what they approve; standard output gets the summary and the result.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let out = ns.run_in_terminal("bob", &["approve", PROMOTION], "y\n", Some(file.path())).await.expect("script ran");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("About to approve promotion plugin-tty/shop-app-manual-1 as bob\n"), "{out:#?}");
    assert!(out.stdout.contains(&question), "{out:#?}");
    let stdout = std::fs::read_to_string(file.path()).expect("stdout file");
    assert!(stdout.starts_with("About to approve promotion plugin-tty/shop-app-manual-1 as bob\n"), "{stdout}");
    assert!(stdout.ends_with("promotion plugin-tty/shop-app-manual-1 approved by bob (2 of 1 approval)\n"), "{stdout}");
    assert!(!stdout.contains("[y/N]"), "the question is on standard error: {stdout}");

    // A rollback asks the same way.
    ns.promotion("live", "shop-app", "shop-app-manual-1", DIGEST_C).await;
    ns.promotion_status("live", json!({"phase": "Monitoring", "previousDigest": DIGEST_B})).await;
    let no =
        ns.run_in_terminal("dave", &["rollback", "promotion/live"], "no\n", None).await.expect("script ran before");
    println!("{}", no.stdout);
    assert_eq!(no.code, 1, "{no:#?}");
    assert!(no.stdout.contains(&format!("Roll back production to {DIGEST_B}? [y/N]")), "{no:#?}");
    assert_eq!(ns.annotation("live", ANNOTATION_ROLLBACK_REQUESTED_BY).await, None);
    let yes =
        ns.run_in_terminal("dave", &["rollback", "promotion/live"], "yes\n", None).await.expect("script ran before");
    assert_eq!(yes.code, 0, "{yes:#?}");
    assert_eq!(ns.annotation("live", ANNOTATION_ROLLBACK_REQUESTED_BY).await.as_deref(), Some("dave"));
}

#[tokio::test]
async fn approve_warns_about_a_release_that_is_missing_unverified_or_for_another_digest() {
    let ns = Ns::new("plugin-warn").await;
    ns.policy("shop-app", 1).await;
    ns.example_releases().await;
    ns.promotion("no-release", "shop-app", "gone", DIGEST_B).await;
    ns.release_status(
        "shop-app-base-7bde398e02aa",
        json!({"phase": "Rejected", "digest": DIGEST_C, "scan": {"blocking": 2, "critical": 1, "high": 1, "blockingIds": ["CVE-2026-1", "CVE-2026-2"]}}),
    )
    .await;
    ns.promotion("bad-release", "shop-app", "shop-app-base-7bde398e02aa", DIGEST_B).await;

    let out = ns.run_as("alice", &["approve", "no-release", "--yes"]).await;
    let text = out.ok();
    assert!(text.contains("  release     gone, unknown\n  scan        unknown\n"), "\n{text}");
    assert!(
        text.contains(&format!(
            "WARNING: release plugin-warn/gone does not exist: nothing shows that {DIGEST_B} passed its scan, signing and staging tests\n"
        )),
        "\n{text}"
    );

    let out = ns.run_as("alice", &["approve", "bad-release", "--yes"]).await;
    let text = out.ok();
    assert!(text.contains("  release     shop-app-base-7bde398e02aa, Rejected\n"), "\n{text}");
    assert!(
        text.contains("  scan        2 blocking (CVE-2026-1, CVE-2026-2); critical 1, high 1, medium 0, low 0\n"),
        "\n{text}"
    );
    for warning in [
        "WARNING: release plugin-warn/shop-app-base-7bde398e02aa is Rejected, not Verified".to_string(),
        format!("WARNING: release plugin-warn/shop-app-base-7bde398e02aa is for {DIGEST_C}, not for {DIGEST_B}"),
        "WARNING: the scan of release plugin-warn/shop-app-base-7bde398e02aa found 2 blocking findings\n".to_string(),
    ] {
        assert!(text.contains(&warning), "{warning:?} in\n{text}");
    }
    assert!(text.ends_with("promotion plugin-warn/bad-release approved by alice (1 of 1 approval)\n"), "{text}");
}

#[tokio::test]
async fn approve_refuses_finished_rejected_and_own_promotions_locally() {
    let ns = Ns::new("plugin-refuse").await;
    ns.policy("shop-app", 1).await;
    ns.promotion("finished", "shop-app", "r1", DIGEST_A).await;
    ns.promotion_status("finished", json!({"phase": "Succeeded"})).await;
    ns.promotion("rejected", "shop-app", "r2", DIGEST_B).await;
    ns.run_as("carol", &["reject", "rejected"]).await.ok();
    let mut own = common::example("manual/promotion.yaml", "Promotion", PROMOTION);
    own["metadata"]["name"] = json!("own");
    own["spec"]["requestedBy"] = json!("alice");
    ns.apply(own).await;

    let error = ns.run_as("alice", &["approve", "finished", "--yes"]).await;
    assert_eq!(
        error.failed(),
        "error: promotion plugin-refuse/finished is Succeeded; a finished Promotion cannot be approved (create a new Promotion instead)"
    );
    let error = ns.run_as("alice", &["approve", "rejected", "--yes"]).await;
    assert!(error.failed().contains("was rejected by carol"), "{error:?}");
    let error = ns.run_as("alice", &["approve", "own", "--yes"]).await;
    assert!(error.failed().contains("you (alice) requested promotion plugin-refuse/own"), "{error:?}");
    for name in ["finished", "rejected", "own"] {
        assert_eq!(ns.annotation(name, ANNOTATION_APPROVED_BY).await, None, "{name} untouched");
    }
    // Somebody else may approve the one alice requested.
    ns.run_as("bob", &["approve", "own", "--yes"]).await.ok();
    assert_eq!(ns.annotation("own", ANNOTATION_APPROVED_BY).await.as_deref(), Some("bob"));

    let error = ns.run_as("alice", &["approve", "nope", "--yes"]).await;
    assert_eq!(error.failed(), "error: promotion plugin-refuse/nope not found");
}

#[tokio::test]
async fn reject_records_the_caller_and_the_reason() {
    let ns = Ns::new("plugin-reject").await;
    ns.policy("shop-app", 1).await;
    ns.promotion(PROMOTION, "shop-app", "shop-app-manual-1", DIGEST_B).await;

    let out = ns.run_as("carol", &["reject", PROMOTION, "--reason", "checkout fails on staging"]).await;
    assert_eq!(out.ok(), "promotion plugin-reject/shop-app-manual-1 rejected by carol: checkout fails on staging\n");
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_REJECTED_BY).await.as_deref(), Some("carol"));
    assert_eq!(
        ns.annotation(PROMOTION, ANNOTATION_REJECTION_REASON).await.as_deref(),
        Some("checkout fails on staging")
    );

    // A second person does not overwrite the first rejection.
    let out = ns.run_as("dave", &["reject", PROMOTION, "--reason", "other"]).await;
    assert_eq!(out.ok(), "promotion plugin-reject/shop-app-manual-1 already rejected by carol\n");
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_REJECTED_BY).await.as_deref(), Some("carol"));
    assert_eq!(
        ns.annotation(PROMOTION, ANNOTATION_REJECTION_REASON).await.as_deref(),
        Some("checkout fails on staging")
    );

    // Without a reason, only the name.
    ns.promotion("quiet", "shop-app", "r2", DIGEST_A).await;
    ns.run_as("dave", &["reject", "quiet"]).await.ok();
    assert_eq!(ns.annotation("quiet", ANNOTATION_REJECTED_BY).await.as_deref(), Some("dave"));
    assert_eq!(ns.annotation("quiet", ANNOTATION_REJECTION_REASON).await, None);

    ns.promotion_status("quiet", json!({"phase": "Rejected"})).await;
    let error = ns.run_as("carol", &["reject", "quiet"]).await;
    assert!(error.failed().contains("is Rejected; a finished Promotion cannot be rejected"), "{error:?}");
}

#[tokio::test]
async fn rollback_of_a_policy_picks_monitoring_then_the_newest_succeeded() {
    let ns = Ns::new("plugin-rollback").await;
    ns.policy("shop-app", 1).await;
    ns.promotion("p-old", "shop-app", "r1", DIGEST_A).await;
    ns.promotion_status("p-old", json!({"phase": "Succeeded", "promotedAt": "2026-01-01T10:00:00Z"})).await;
    ns.promotion("p-new", "shop-app", "r2", DIGEST_B).await;
    ns.promotion_status(
        "p-new",
        json!({"phase": "Succeeded", "promotedAt": "2026-01-02T10:00:00Z", "previousDigest": DIGEST_A}),
    )
    .await;
    ns.promotion("p-monitoring", "shop-app", "r3", DIGEST_C).await;
    ns.promotion_status("p-monitoring", json!({"phase": "Monitoring", "previousDigest": DIGEST_B})).await;
    ns.promotion("p-waiting", "shop-app", "r4", DIGEST_C).await;

    let out = ns.run_as("dave", &["rollback", "shop-app", "--yes"]).await;
    let text = out.ok();
    assert!(
        text.starts_with("About to request a rollback of promotion plugin-rollback/p-monitoring as dave\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "  current     {DIGEST_C} (this Promotion's digest; the policy does not record what production runs)\n  \
back to     {DIGEST_B} (what production ran before this Promotion)\n"
        )),
        "\n{text}"
    );
    assert!(
        text.contains("  production  3 targets (from the ImagePolicy; the Promotion's rules are not frozen yet):\n"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "rollback of promotion plugin-rollback/p-monitoring (sha256:7bde398e02aa) requested by dave; production returns to sha256:4c184c0d2577\n"
        ),
        "{text}"
    );
    assert_eq!(ns.annotation("p-monitoring", ANNOTATION_ROLLBACK_REQUESTED_BY).await.as_deref(), Some("dave"));

    // Once that one rolled back, the policy means its newest Succeeded Promotion.
    ns.promotion_status("p-monitoring", json!({"phase": "RolledBack"})).await;
    ns.policy_status("shop-app", json!({"productionDigest": DIGEST_B})).await;
    let out = ns.run_as("alice", &["rollback", "imagepolicy/shop-app", "-y"]).await;
    let text = out.ok();
    assert!(text.starts_with("About to request a rollback of promotion plugin-rollback/p-new as alice\n"), "{text}");
    assert!(text.contains(&format!("  current     {DIGEST_B} (production now, from this Promotion)\n")), "{text}");
    assert!(
        text.contains(&format!("  back to     {DIGEST_A} (what production ran before this Promotion)\n")),
        "{text}"
    );
    assert!(!text.contains("WARNING"), "{text}");
    assert!(text.contains("\nrollback of promotion plugin-rollback/p-new "), "{text}");
    assert_eq!(ns.annotation("p-new", ANNOTATION_ROLLBACK_REQUESTED_BY).await.as_deref(), Some("alice"));
    assert_eq!(ns.annotation("p-old", ANNOTATION_ROLLBACK_REQUESTED_BY).await, None);

    // Asking again is a no-op that says who asked.
    let out = ns.run_as("bob", &["rollback", "promotion/p-new"]).await;
    assert_eq!(out.ok(), "rollback of promotion plugin-rollback/p-new already requested by alice\n");

    // A Promotion that never reached production cannot be rolled back.
    let error = ns.run_as("alice", &["rollback", "p-waiting"]).await;
    assert!(
        error.failed().contains("has not changed production; to stop it, use `kubectl tidegate reject p-waiting`"),
        "{error:?}"
    );
    assert_eq!(ns.annotation("p-waiting", ANNOTATION_ROLLBACK_REQUESTED_BY).await, None);

    // Once production runs another digest, an old Succeeded Promotion is not the one to roll back.
    ns.policy_status("shop-app", json!({"productionDigest": DIGEST_C})).await;
    let error = ns.run_as("alice", &["rollback", "p-old"]).await;
    assert!(error.failed().contains("but production now runs sha256:7bde398e02aa"), "{error:?}");

    let error = ns.run_as("alice", &["rollback", "nothing"]).await;
    assert_eq!(error.failed(), "error: no Promotion or ImagePolicy named nothing in namespace plugin-rollback");
    ns.policy("quiet-app", 1).await;
    let error = ns.run_as("alice", &["rollback", "quiet-app"]).await;
    assert_eq!(
        error.failed(),
        "error: imagepolicy plugin-rollback/quiet-app has no Promotion in Monitoring or Succeeded; nothing to roll back"
    );
}

#[tokio::test]
async fn status_shows_each_policy_as_a_tree() {
    let ns = Ns::new("plugin-status").await;
    let out = ns.run_as("alice", &["status"]).await;
    assert_eq!(out.ok(), "no ImagePolicies in namespace plugin-status\n");

    ns.policy("shop-app", 1).await;
    ns.policy("another-app", 1).await;
    ns.policy_status("shop-app", json!({"productionDigest": DIGEST_A, "stagingDigest": DIGEST_B})).await;
    let releases = common::example_documents("manual/release.yaml");
    // shop-app-manual-1 first, then (a second later, so it is newer) the base image Release.
    ns.apply(releases[0].clone()).await;
    ns.release_status(
        "shop-app-manual-1",
        json!({"phase": "Verified", "digest": DIGEST_B, "scan": {"blocking": 0, "critical": 0, "high": 0}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ns.apply(releases[1].clone()).await;
    ns.release_status(
        "shop-app-base-7bde398e02aa",
        json!({"phase": "Rejected", "digest": DIGEST_C, "scan": {"blocking": 3, "critical": 1, "high": 2}}),
    )
    .await;
    ns.promotion(PROMOTION, "shop-app", "shop-app-manual-1", DIGEST_B).await;
    ns.run_as("bob", &["approve", PROMOTION, "--yes"]).await.ok();

    let out = ns.run_as("alice", &["status"]).await;
    let text = out.ok();
    println!("{text}");
    assert!(!text.contains('\x1b'), "no colours when stdout is not a terminal:\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    let at = |prefix: &str| {
        lines.iter().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix:?} in\n{text}"))
    };
    // Policies in name order, each with image and digests.
    assert!(at("ImagePolicy plugin-status/another-app") < at("ImagePolicy plugin-status/shop-app"), "\n{text}");
    let shop = at("ImagePolicy plugin-status/shop-app");
    assert_eq!(lines[shop + 1], "  image       registry.example.com/shop/app");
    assert_eq!(lines[shop + 2], format!("  production  {DIGEST_A}"));
    assert_eq!(lines[shop + 3], format!("  staging     {DIGEST_B}"));
    assert_eq!(lines[shop + 4], "  releases");
    // Newest Release first; its columns, then the older one with its Promotion under it.
    let words = |line: &str| line.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let (base, manual, promotion) = (lines[shop + 5], lines[shop + 6], lines[shop + 7]);
    let mut expected = vec![
        "├─",
        "shop-app-base-7bde398e02aa",
        "Rejected",
        "sha256:7bde398e02aa",
        "AGE",
        "3",
        "blocking",
        "BaseImageUpdated",
    ];
    let mut seen = words(base);
    assert!(base.starts_with("  ├─ shop-app-base-7bde398e02aa  "), "{base:?}\n{text}");
    assert!(seen[4].ends_with('s'), "an age in seconds: {base:?}");
    seen[4] = "AGE".into();
    assert_eq!(seen, expected, "{text}");
    expected = vec!["└─", "shop-app-manual-1", "Verified", "sha256:4c184c0d2577", "AGE", "0", "blocking", "Manual"];
    seen = words(manual);
    seen[4] = "AGE".into();
    assert_eq!(seen, expected, "{text}");
    expected =
        vec!["└─", "shop-app-manual-1", "AwaitingApproval", "sha256:4c184c0d2577", "AGE", "approved", "by", "bob"];
    seen = words(promotion);
    seen[4] = "AGE".into();
    assert_eq!(seen, expected, "{text}");
    assert!(
        promotion.starts_with("     └─ shop-app-manual-1  "),
        "the Promotion hangs under its Release: {promotion:?}"
    );
    // Columns line up: phase and digest start at the same place on every row.
    let phase_at = base.find("Rejected").expect("phase column");
    assert_eq!(manual.find("Verified"), Some(phase_at), "\n{text}");
    assert_eq!(promotion.find("AwaitingApproval"), Some(phase_at), "\n{text}");
    let digest_at = base.find("sha256:").expect("digest column");
    assert_eq!(manual.find("sha256:"), Some(digest_at), "\n{text}");
    assert_eq!(promotion.find("sha256:"), Some(digest_at), "\n{text}");
    assert_eq!(manual.find("blocking"), base.find("blocking"), "\n{text}");

    // The empty policy says so; one policy can be asked for alone.
    assert!(text.contains("  staging     (none)\n  releases    (none)\n"), "\n{text}");
    let one = ns.run_as("alice", &["status", "shop-app"]).await;
    assert!(!one.ok().contains("another-app") && one.ok().contains("shop-app-manual-1"), "{one:?}");
    let error = ns.run_as("alice", &["status", "missing-app"]).await;
    assert_eq!(error.failed(), "error: imagepolicy plugin-status/missing-app not found");
}

#[tokio::test]
async fn history_lists_production_and_finished_promotions_newest_first() {
    let ns = Ns::new("plugin-history").await;
    ns.policy("shop-app", 1).await;
    ns.policy_status(
        "shop-app",
        json!({
            "productionDigest": DIGEST_C,
            "productionHistory": [
                {"digest": DIGEST_B, "promotion": "p2", "deployedAt": "2026-01-02T10:00:00Z"},
                {"digest": DIGEST_A, "deployedAt": "2026-01-01T10:00:00Z"},
            ],
        }),
    )
    .await;
    // Created a second apart, so that each ended after the one before.
    ns.promotion("p2", "shop-app", "r2", DIGEST_B).await;
    ns.promotion_status("p2", json!({"phase": "RolledBack", "promotedAt": "2026-01-02T10:00:00Z"})).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ns.promotion("p3", "shop-app", "r3", DIGEST_C).await;
    ns.promotion_status(
        "p3",
        json!({"phase": "Succeeded", "promotedAt": "2026-01-03T10:00:00Z", "approvedBy": ["alice", "bob"]}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    ns.promotion("p-rejected", "shop-app", "r4", DIGEST_A).await;
    ns.run_as("carol", &["reject", "p-rejected", "--reason", "wrong build"]).await.ok();
    ns.promotion_status("p-rejected", json!({"phase": "Rejected"})).await;
    ns.promotion("p-waiting", "shop-app", "r5", DIGEST_A).await;
    ns.promotion("p-superseded", "shop-app", "r6", DIGEST_A).await;
    ns.promotion_status("p-superseded", json!({"phase": "Superseded"})).await;

    let out = ns.run_as("dave", &["history", "shop-app"]).await;
    let text = out.ok();
    println!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "ImagePolicy plugin-history/shop-app  registry.example.com/shop/app");
    assert_eq!(lines[1], "production, newest first");
    assert!(
        lines[2].starts_with(&format!("  now     {DIGEST_C}  promotion p3  deployed 2026-01-03T10:00:00Z (")),
        "{text}"
    );
    assert!(
        lines[3].starts_with(&format!("  before  {DIGEST_B}  promotion p2  deployed 2026-01-02T10:00:00Z (")),
        "{text}"
    );
    assert!(
        lines[4].starts_with(&format!("          {DIGEST_A}  -             deployed 2026-01-01T10:00:00Z (")),
        "{text}"
    );
    assert_eq!(lines[5], "finished promotions, newest first");
    assert!(lines[6].starts_with("  p-rejected  Rejected    sha256:ce1b317e127f  release r4  "), "{text}");
    assert!(lines[6].ends_with("  no approvals; rejected by carol: wrong build"), "{text}");
    assert!(lines[7].starts_with("  p3          Succeeded   sha256:7bde398e02aa  release r3  "), "{text}");
    assert!(lines[7].ends_with("  approved by alice,bob"), "{text}");
    assert!(lines[8].starts_with("  p2          RolledBack  sha256:4c184c0d2577  release r2  "), "{text}");
    assert_eq!(lines.len(), 9, "waiting and superseded Promotions are not history:\n{text}");
}

#[tokio::test]
async fn a_user_without_rights_gets_one_clear_line() {
    let ns = Ns::new("plugin-forbidden").await;
    ns.policy("shop-app", 1).await;
    ns.promotion(PROMOTION, "shop-app", "shop-app-manual-1", DIGEST_B).await;

    let error = ns.run_as("mallory", &["approve", PROMOTION, "--yes"]).await;
    assert_eq!(
        error.failed(),
        "error: promotions.tidegate.dev \"shop-app-manual-1\" is forbidden: User \"mallory\" cannot get resource \"promotions\" in API group \"tidegate.dev\" in the namespace \"plugin-forbidden\""
    );
    let error = ns.run_as("mallory", &["status"]).await;
    assert!(error.failed().contains("User \"mallory\" cannot list resource \"imagepolicies\""), "{error:?}");
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_APPROVED_BY).await, None);
}

#[tokio::test]
async fn namespace_and_context_come_from_the_kubeconfig() {
    let ns = Ns::new("plugin-context").await;
    ns.policy("shop-app", 1).await;
    ns.promotion(PROMOTION, "shop-app", "shop-app-manual-1", DIGEST_B).await;

    // No -n: the context's namespace.
    let kubeconfig = kubeconfig_file(ns.env, "alice", Some("plugin-context"));
    let out = run_plugin(&kubeconfig, &["approve", PROMOTION, "--yes"]).await;
    let text = out.ok();
    assert!(text.starts_with("About to approve promotion plugin-context/shop-app-manual-1 as alice\n"), "{text}");
    assert!(
        text.ends_with("promotion plugin-context/shop-app-manual-1 approved by alice (1 of 1 approval)\n"),
        "{text}"
    );
    // -n wins over the context.
    let out = run_plugin(&kubeconfig, &["-n", "default", "status"]).await;
    assert!(out.failed().contains("in the namespace \"default\""), "{out:?}");
    // The context is chosen by name.
    let out = run_plugin(&kubeconfig, &["--context", "alice@tidegate-local", "status"]).await;
    assert!(out.ok().contains("ImagePolicy plugin-context/shop-app"), "{out:?}");
    let out = run_plugin(&kubeconfig, &["--context", "nowhere", "status"]).await;
    assert!(out.failed().contains("nowhere"), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_change_is_not_lost_the_update_is_retried() {
    use kube::api::{Api, Patch, PatchParams};
    use kubectl_tidegate::client::{Session, Step, update_promotion};
    use kubectl_tidegate::promotions::{ApprovalPlan, annotations, approvers_annotation, plan_approval};

    let ns = Ns::new("plugin-conflict").await;
    ns.policy("shop-app", 2).await;
    ns.promotion(PROMOTION, "shop-app", "shop-app-manual-1", DIGEST_B).await;
    let session = Session {
        client: ns.env.client_for("alice", &[]).await.expect("alice's client"),
        namespace: ns.name.clone(),
        server: ns.env.server().to_string(),
    };
    let admin: Api<tidegate_api::Promotion> = Api::namespaced(ns.client.clone(), &ns.name);
    let mut reads = 0;
    let approvers = update_promotion(&session, PROMOTION, |promotion| {
        reads += 1;
        if reads == 1 {
            // Bob approves between alice's read and alice's write.
            let patch = json!({"metadata": {"annotations": {ANNOTATION_APPROVED_BY: "bob"}}});
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(admin.patch(
                    PROMOTION,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                ))
            })
            .expect("bob's approval");
        }
        match plan_approval(promotion, "plugin-conflict/shop-app-manual-1", "alice").map_err(anyhow::Error::msg)? {
            ApprovalPlan::Append(list) => Ok(Step::Patch {
                annotations: annotations([(ANNOTATION_APPROVED_BY, approvers_annotation(&list))]),
                outcome: list,
            }),
            ApprovalPlan::Already(list) => Ok(Step::Stop(list)),
        }
    })
    .await
    .expect("approved after a retry");
    assert_eq!(reads, 2, "the first write conflicted and was decided again on a fresh read");
    assert_eq!(approvers, ["bob", "alice"]);
    assert_eq!(ns.annotation(PROMOTION, ANNOTATION_APPROVED_BY).await.as_deref(), Some("bob,alice"));
}
