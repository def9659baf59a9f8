//! `kubectl tidegate provenance` against a real registry: records attached by Tidegate's Notary
//! signer are shown verified; a record signed by a key the trust store does not hold is shown as
//! REFUSED; a digest without a trusted record, and an image named by tag, exit 1 with a reason.

use std::process::Command;
use std::sync::Arc;

use serde_json::json;
use tidegate_api::{Promotion, RecordEvent};
use tidegate_core::Digest;
use tidegate_core::provenance::{Proven, statement};
use tidegate_providers::notary_signer::NotarySigner;
use tidegate_providers::provenance::Attestor;
use tidegate_providers::registry::{ClientOptions, RegistryClient};
use tidegate_testenv::pki::{CodeSigningFiles, write_code_signing_identity};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};

fn signer(files: &CodeSigningFiles, registry: Arc<RegistryClient>) -> NotarySigner {
    NotarySigner::from_files(registry, Some((&files.key, &files.chain)), &files.trust_policy, &files.trust_store)
        .expect("signer")
}

fn promotion(digest: &Digest) -> Promotion {
    serde_json::from_value(json!({
        "metadata": {"name": "shop-app-1", "namespace": "shop"},
        "spec": {"policy": "shop-app", "release": "shop-app-base-1", "digest": digest.to_string()},
        "status": {"phase": "Succeeded", "approvedBy": ["alice"], "previousDigest": format!("sha256:{}", "0".repeat(64)),
            "history": [{"action": "Approved", "user": "alice", "at": "2026-12-01T10:30:00Z"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "ok",
                            "lastTransitionTime": "2026-12-01T11:12:00Z"}]}
    }))
    .expect("promotion")
}

fn plugin(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-tidegate"))
        .args(args)
        // No kubeconfig, no notation configuration: the command needs neither.
        .env("HOME", "/nonexistent")
        .env_remove("KUBECONFIG")
        .output()
        .expect("run kubectl-tidegate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// alice, the one proven approver.
fn alice() -> Proven {
    Proven { approvers: vec!["alice".into()], ..Proven::default() }
}

#[tokio::test]
async fn provenance_shows_verified_records_and_refuses_the_rest() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Referrers, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let hosts: Vec<String> = registry.plain_http_hosts().into_iter().collect();
    let client = Arc::new(
        RegistryClient::new(ClientOptions { plain_http: hosts.iter().cloned().collect(), ..Default::default() })
            .expect("client"),
    );
    let repo = format!("{}/shop/app", registry.host());
    let digest: Digest =
        registry.push_test_image("shop/app", "1.1", &[900], &[]).await.expect("push").parse().expect("digest");
    let unrecorded: Digest =
        registry.push_test_image("shop/app", "1.2", &[700], &[]).await.expect("push").parse().expect("digest");
    let image = format!("{repo}@{digest}");

    let keys = tempfile::tempdir().expect("keys");
    let ours = write_code_signing_identity(&keys.path().join("ours"), "tidegate", "tidegate").expect("identity");
    let theirs = write_code_signing_identity(&keys.path().join("theirs"), "stranger", "stranger").expect("identity");
    let record =
        statement(RecordEvent::Promoted, &promotion(&digest), None, &repo, &digest, &alice()).expect("statement");
    let trusted = signer(&ours, client.clone()).attach(&image, &digest, &record).await.expect("attach");
    let mut forged = record.clone();
    forged.predicate.approvals[0].user = "mallory".into();
    let untrusted = signer(&theirs, client.clone()).attach(&image, &digest, &forged).await.expect("attach");

    let policy = ours.trust_policy.display().to_string();
    let store = ours.trust_store.display().to_string();
    let mut args = vec!["provenance", "--trust-policy", &policy, "--trust-store", &store];
    for host in &hosts {
        args.extend(["--plain-http", host.as_str()]);
    }
    let (ok, out, err) = plugin(&[&args[..], &[image.as_str()]].concat());
    assert!(ok, "{out}{err}");
    eprintln!("{out}");
    assert!(out.contains(&format!("PROMOTED  2026-12-01T11:12:00Z  (record {trusted}")), "{out}");
    assert!(out.contains("approved    by alice at 2026-12-01T10:30:00Z"), "{out}");
    assert!(out.contains(&format!("REFUSED  record {untrusted}")), "{out}");
    assert!(!out.contains("mallory"), "a refused record's content is not shown: {out}");

    let (ok, out, err) = plugin(&[&args[..], &["-o", "json", image.as_str()]].concat());
    assert!(ok, "{err}");
    let statements: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(statements.as_array().map(Vec::len), Some(1), "only the verified record: {out}");
    assert_eq!(statements[0]["predicate"]["approvals"][0]["user"], "alice");

    let none = format!("{repo}@{unrecorded}");
    let (ok, _, err) = plugin(&[&args[..], &[none.as_str()]].concat());
    assert!(!ok && err.contains("no trusted promotion record"), "{err}");
    let tag = format!("{repo}:1.1");
    let (ok, _, err) = plugin(&[&args[..], &[tag.as_str()]].concat());
    assert!(!ok && err.contains("by digest"), "{err}");
    // Without a trust policy nothing is shown, and the error says what to pass.
    let (ok, _, err) = plugin(&["provenance", image.as_str()]);
    assert!(!ok && err.contains("--trust-policy"), "{err}");
}
