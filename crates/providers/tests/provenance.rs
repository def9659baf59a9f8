//! Promotion records in a real registry: attached as in-toto referrers of the image, signed with
//! Notary Project so that the real `notation verify` accepts them, read back and verified by
//! Tidegate; an altered record, a record re-signed by an untrusted key and a record about another
//! digest are refused.

mod common;

use std::sync::Arc;

use common::Identity;
use serde_json::json;
use tidegate_api::{Promotion, RecordEvent};
use tidegate_core::Digest;
use tidegate_core::provenance::{MEDIA_TYPE, Proven, Statement, statement};
use tidegate_providers::Verification;
use tidegate_providers::provenance::Attestor;
use tidegate_providers::registry::artifact::Artifact;
use tidegate_providers::registry::{ClientOptions, RegistryClient, Repository};
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::tools::SupplyChainTools;

/// `notation verify --insecure-registry reference` with `identity`'s trust store and policy.
fn notation_verify(identity: &Identity, reference: &str) -> (bool, String) {
    SupplyChainTools::locate().expect("supply-chain tools").notation_verify(&identity.files, reference)
}

fn succeeded_promotion(digest: &Digest) -> Promotion {
    serde_json::from_value(json!({
        "metadata": {"name": "shop-app-1", "namespace": "shop", "uid": "p-uid"},
        "spec": {"policy": "shop-app", "release": "shop-app-base-1", "digest": digest.to_string()},
        "status": {"phase": "Succeeded", "approvedBy": ["alice"],
            "history": [{"action": "Approved", "user": "alice", "at": "2026-12-01T10:30:00Z"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "ok",
                            "lastTransitionTime": "2026-12-01T11:12:00Z"}]}
    }))
    .expect("promotion")
}

/// alice, the one proven approver.
fn alice() -> Proven {
    Proven { approvers: vec!["alice".into()], ..Proven::default() }
}

#[tokio::test]
async fn a_signed_record_is_attached_verified_by_notation_and_read_back() {
    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Referrers, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let plain_http = registry.plain_http_hosts().into_iter().collect();
    let client = Arc::new(RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client"));
    let repo = Repository::new(registry.host(), "shop/app");
    let digest: Digest =
        registry.push_test_image("shop/app", "v1", &[1024], &[]).await.expect("push").parse().expect("digest");
    let image = format!("{repo}@{digest}");
    let identity = Identity::new("tidegate");
    let signer = identity.signer(client.clone(), true);

    let record =
        statement(RecordEvent::Promoted, &succeeded_promotion(&digest), None, &repo.to_string(), &digest, &alice())
            .expect("statement");
    let first = signer.attach(&image, &digest, &record).await.expect("attach");
    // Attaching again (a controller that crashed before writing its status) adds nothing.
    let again = signer.attach(&image, &digest, &record).await.expect("attach again");
    assert_eq!(first, again);
    assert_eq!(client.referrers(&repo, digest.as_str(), Some(MEDIA_TYPE)).await.expect("referrers").len(), 1);
    assert_eq!(
        client.referrers(&repo, &first, Some(tidegate_notary::SIGNATURE_ARTIFACT_TYPE)).await.expect("sigs").len(),
        1,
        "signed once"
    );

    // The real notation CLI verifies the record with the same trust policy as the image.
    let (ok, out) = notation_verify(&identity, &format!("{repo}@{first}"));
    assert!(ok && out.contains("Successfully verified"), "notation verify of the record: {out}");

    let found = signer.records(&image, &digest).await.expect("records");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].is_trusted(), "{found:?}");
    assert_eq!(found[0].statement.as_ref(), Some(&record), "the content is what was attached");

    // An altered record: same subject, changed payload, and the original signature's envelope
    // copied onto it. Neither notation nor Tidegate accepts it.
    let mut altered = record.clone();
    altered.predicate.approvals[0].user = "mallory".into();
    let subject = client.head_manifest(&repo, digest.as_str()).await.expect("head").expect("subject");
    let payload = altered.to_bytes();
    let forged = client
        .push_artifact(
            &repo,
            &subject,
            &Artifact {
                artifact_type: MEDIA_TYPE,
                layer_media_type: MEDIA_TYPE,
                payload: &payload,
                annotations: Default::default(),
            },
        )
        .await
        .expect("push altered record");
    let signature = &client.referrers(&repo, &first, None).await.expect("signature")[0];
    let (envelope, annotations) = client
        .artifact_payload(&repo, &signature.digest, tidegate_notary::ENVELOPE_MEDIA_TYPE)
        .await
        .expect("envelope");
    let forged_subject = client.head_manifest(&repo, &forged).await.expect("head").expect("forged record");
    client
        .push_artifact(
            &repo,
            &forged_subject,
            &Artifact {
                artifact_type: tidegate_notary::SIGNATURE_ARTIFACT_TYPE,
                layer_media_type: tidegate_notary::ENVELOPE_MEDIA_TYPE,
                payload: &envelope,
                annotations,
            },
        )
        .await
        .expect("copy the signature");
    let (ok, out) = notation_verify(&identity, &format!("{repo}@{forged}"));
    assert!(!ok, "notation must refuse the altered record: {out}");

    // A record signed by a key the trust store does not hold.
    let stranger = Identity::new("stranger");
    let foreign =
        statement(RecordEvent::Promoted, &succeeded_promotion(&digest), None, "elsewhere/app", &digest, &alice())
            .expect("statement");
    let untrusted = stranger.signer(client.clone(), true).attach(&image, &digest, &foreign).await.expect("attach");

    let found = signer.records(&image, &digest).await.expect("records");
    assert_eq!(found.len(), 3, "{found:?}");
    for record in &found {
        let trusted = record.digest == first;
        assert_eq!(record.is_trusted(), trusted, "{record:?}");
        if record.digest == forged || record.digest == untrusted {
            assert!(matches!(record.verification, Verification::Invalid(_)), "{record:?}");
        }
    }

    // A statement about another digest, signed by the trusted key, is not a record of this one.
    let other: Digest =
        registry.push_test_image("shop/app", "v2", &[512], &[]).await.expect("push").parse().expect("digest");
    let elsewhere =
        statement(RecordEvent::Promoted, &succeeded_promotion(&other), None, &repo.to_string(), &other, &alice())
            .expect("statement");
    let payload = elsewhere.to_bytes();
    let misattached = client
        .push_artifact(
            &repo,
            &subject,
            &Artifact {
                artifact_type: MEDIA_TYPE,
                layer_media_type: MEDIA_TYPE,
                payload: &payload,
                annotations: Default::default(),
            },
        )
        .await
        .expect("push");
    let record_digest: Digest = misattached.parse().expect("digest");
    // Signed with the trusted key by notation: the controller itself never signs a non-image.
    let (signed, output) = common::notation_sign(&identity.files, &format!("{repo}@{record_digest}"));
    assert!(signed, "{output}");
    let found = signer.records(&image, &digest).await.expect("records");
    let wrong = found.iter().find(|r| r.digest == misattached).expect("found");
    assert!(wrong.verification.is_valid() && !wrong.is_trusted(), "{wrong:?}");
    assert!(wrong.problem.as_deref().unwrap_or_default().contains("another digest"), "{wrong:?}");
    assert!(Statement::parse(&payload, &digest).is_err());
}
