//! `cargo xtask demo --azure` end to end: the Azure Container Apps part of the demo runs on the
//! local control plane and the ARM stand-in, exits 0 and shows each step it promises (a
//! zero-weight `staging` revision, the staging check on the label's URL, the approval as a
//! `kubectl annotate`, the traffic switch, the monitor window, the previous revision
//! deactivated, and writes that change only the image and the traffic). About three minutes.

use std::process::Command;

#[test]
fn the_azure_demo_releases_a_container_app_step_by_step() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("repository root").to_path_buf();
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(&root)
        .args(["demo", "--azure"])
        .output()
        .expect("run cargo xtask demo --azure");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the demo failed ({}):\n{stdout}\n{stderr}", output.status);

    let lines: Vec<&str> = stdout.lines().collect();
    let has = |parts: &[&str]| lines.iter().any(|l| parts.iter().all(|p| l.contains(p)));
    let expected: &[(&str, &[&str])] = &[
        ("says it is not real Azure", &["LOCAL STAND-IN of Azure Resource Manager (not real Azure)"]),
        ("points to the live mode", &["see docs/azure.md for the live mode"]),
        ("the seeded app", &["traffic:", "web--v1 100% (latestRevision)"]),
        ("the grant for the demo namespace only", &["--azure-grant shop=/subscriptions/", "/resourceGroups/shop-prod"]),
        ("the client secret from a file", &["--azure-client-secret-file", "/azure/client-secret"]),
        ("a rescan starts the Release", &["starts a Release by itself"]),
        ("the candidate at 0 % with label staging", &["traffic:", "web--v1 100%", "web--tg-", "0% label staging"]),
        (
            "the staging check on the label's URL",
            &["staging check health: passed", "https://web---staging.standin.azurecontainerapps.test/healthz"],
        ),
        ("the Release verified", &["→ Verified"]),
        ("waiting for a human", &["AwaitingApproval"]),
        ("the approval as kubectl annotate", &["$ kubectl annotate promotion ", "tidegate.dev/approved-by=alice"]),
        ("the traffic switch", &["traffic:", "web--tg-", "100%", "web--v1 0%"]),
        ("the previous revision active during the window", &["revision:", "web--v1", " active ", "   0%"]),
        ("the monitor window", &["→ Monitoring", "watching until"]),
        ("the promotion succeeded", &["→ Succeeded"]),
        ("the previous revision deactivated", &["revision:", "web--v1", "inactive"]),
        ("the deactivation in the request log", &["POST", "revisions/web--v1/deactivate → 200"]),
        ("the writes: only image and traffic", &["every PATCH changed only the image of container `app`"]),
        ("the end", &["Demo finished in"]),
    ];
    for (what, parts) in expected {
        assert!(has(parts), "the demo's output does not show {what} (a line with {parts:?}):\n{stdout}");
    }
    let patches = lines.iter().filter(|l| l.contains(" PATCH ") && l.contains("containerApps/web → 2")).count();
    assert!(patches >= 2, "the request log shows the PATCHes ({patches}):\n{stdout}");
}
