//! The real Notation artifacts in `../shared/fixtures/notation`: a signature envelope made by
//! notation, its trust store, and notation's end-to-end trust policy examples.

mod common;

use common::ts;
use std::path::PathBuf;
use tidegate_notary::{
    PolicyOutcome, SignatureAlgorithm, TrustPolicyDocument, TrustPolicyError, TrustStoreRef, TrustStores,
    ValidationKind, VerifyError, verify, verify_with_policy,
};

const DIGEST: &str = "sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e";
const NOW: &str = "2025-06-01T00:00:00Z";

fn fixtures() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/notation");
    assert!(dir.is_dir(), "fixture directory {} is missing", dir.display());
    dir
}

fn envelope() -> Vec<u8> {
    std::fs::read(fixtures().join("envelope/ca_valid_sig_env.json")).expect("fixture envelope")
}

fn stores() -> TrustStores {
    TrustStores::load_dir(&fixtures().join("truststore")).expect("fixture trust store")
}

fn store() -> TrustStoreRef {
    TrustStoreRef::ca("valid-trust-store")
}

#[test]
fn real_envelope_verifies_with_its_trust_store() {
    let stores = stores();
    let anchors = stores.get(&store()).expect("valid-trust-store");
    assert_eq!(anchors.len(), 1);
    let verified = verify(&envelope(), anchors, DIGEST, ts(NOW)).expect("fixture verifies");
    assert_eq!(verified.algorithm, SignatureAlgorithm::Ps384);
    assert_eq!(verified.target.digest, DIGEST);
    assert_eq!(verified.target.size, 528);
    assert_eq!(verified.target.media_type, "application/vnd.docker.distribution.manifest.v2+json");
    assert_eq!(verified.signing_time, ts("2020-11-09T07:00:00Z"));
    assert_eq!(verified.expiry, Some(ts("2120-11-09T07:00:00Z")));
    assert_eq!(verified.signer_subject, "C=US, ST=WA, L=Seattle, O=Notary, CN=Notation Test Root");
    // The unprotected header spells the member `SigningAgent`; notation reads it regardless.
    assert_eq!(verified.signing_agent.as_deref(), Some("Notation/1.0.0"));
    assert_eq!(verified.chain_fingerprints.len(), 2);
    assert_eq!(verified.chain_fingerprints[1], anchors[0].sha256_fingerprint());
}

#[test]
fn real_envelope_failures() {
    let stores = stores();
    let anchors = stores.get(&store()).expect("valid-trust-store");
    let env = envelope();

    let other = format!("sha256:{}", "0".repeat(64));
    assert!(matches!(verify(&env, anchors, &other, ts(NOW)), Err(VerifyError::DigestMismatch { .. })));
    assert!(matches!(verify(&env, &[], DIGEST, ts(NOW)), Err(VerifyError::UntrustedChain { .. })));
    // The signature's own expiry (2120) passes before the certificates (2122) expire.
    assert!(matches!(
        verify(&env, anchors, DIGEST, ts("2121-01-01T00:00:00Z")),
        Err(VerifyError::SignatureExpired { .. })
    ));
    let err = verify(&env, anchors, DIGEST, ts("2123-01-01T00:00:00Z")).expect_err("expired");
    assert!(matches!(err, VerifyError::CertificateExpired { .. }), "{err}");
    assert_eq!(err.kind(), ValidationKind::AuthenticTimestamp);
    // Before the leaf's validity started (2020-10-09).
    let err = verify(&env, anchors, DIGEST, ts("2020-09-20T00:00:00Z")).expect_err("not yet valid");
    assert!(matches!(err, VerifyError::CertificateExpired { .. }), "{err}");

    // Payload altered: one character of the base64url payload changed.
    let text = String::from_utf8(env.clone()).expect("utf8");
    let marker = "\"payload\": \"eyJ0YXJnZXRBcnRpZmFjdCI6";
    let pos = text.find(marker).expect("payload member") + marker.len() + 5;
    let mut bytes = text.into_bytes();
    bytes[pos] = if bytes[pos] == b'A' { b'B' } else { b'A' };
    let err = verify(&bytes, anchors, DIGEST, ts(NOW)).expect_err("tampered");
    assert!(matches!(err, VerifyError::SignatureInvalid | VerifyError::MalformedEnvelope(_)), "{err}");
}

fn policy(json: &str) -> TrustPolicyDocument {
    TrustPolicyDocument::parse(json.as_bytes()).expect("policy")
}

fn policy_for(level: &str, identity: &str) -> TrustPolicyDocument {
    policy(&format!(
        r#"{{"version":"1.0","trustPolicies":[{{"name":"fixture","registryScopes":["localhost:5000/net-monitor"],
        "signatureVerification":{{"level":"{level}"}},"trustStores":["ca:valid-trust-store"],
        "trustedIdentities":["{identity}"]}}]}}"#
    ))
}

#[test]
fn real_envelope_against_trust_policies() {
    let stores = stores();
    let env = envelope();
    let reference = format!("localhost:5000/net-monitor@{DIGEST}");

    let doc = policy_for("strict", "x509.subject: C=US, ST=WA, O=Notary");
    let PolicyOutcome::Verified(v) = verify_with_policy(&env, &doc, &stores, &reference, ts(NOW)).expect("verified")
    else {
        panic!("not verified");
    };
    assert_eq!(v.policy.as_deref(), Some("fixture"));
    assert!(v.warnings.is_empty());

    let doc = policy_for("strict", "x509.subject: C=US, ST=WA, O=Notary, CN=Notation Test Root");
    verify_with_policy(&env, &doc, &stores, &reference, ts(NOW)).expect("full subject");

    let doc = policy_for("strict", "x509.subject: C=US, ST=WA, O=Wabbit Networks");
    let err = verify_with_policy(&env, &doc, &stores, &reference, ts(NOW)).expect_err("identity");
    assert!(matches!(err, VerifyError::UntrustedIdentity { .. }), "{err}");

    // Audit: authenticity failures are logged, integrity still enforced.
    let doc = policy_for("audit", "x509.subject: C=US, ST=WA, O=Wabbit Networks");
    let PolicyOutcome::Verified(v) = verify_with_policy(&env, &doc, &stores, &reference, ts(NOW)).expect("audit")
    else {
        panic!("not verified");
    };
    assert!(matches!(v.warnings.as_slice(), [VerifyError::UntrustedIdentity { .. }]));
    let wrong = format!("localhost:5000/net-monitor@sha256:{}", "1".repeat(64));
    assert!(matches!(
        verify_with_policy(&env, &doc, &stores, &wrong, ts(NOW)),
        Err(VerifyError::DigestMismatch { .. })
    ));

    // Permissive: an expired signature is logged.
    let doc = policy_for("permissive", "*");
    let PolicyOutcome::Verified(v) =
        verify_with_policy(&env, &doc, &stores, &reference, ts("2121-01-01T00:00:00Z")).expect("permissive")
    else {
        panic!("not verified");
    };
    assert!(matches!(v.warnings.as_slice(), [VerifyError::SignatureExpired { .. }]));

    // No statement for another repository; missing trust store.
    let other = format!("localhost:5000/other@{DIGEST}");
    assert!(matches!(
        verify_with_policy(&env, &doc, &stores, &other, ts(NOW)),
        Err(VerifyError::NoApplicableTrustPolicy { .. })
    ));
    let doc = policy(
        r#"{"version":"1.0","trustPolicies":[{"name":"x","registryScopes":["*"],
        "signatureVerification":{"level":"strict"},"trustStores":["ca:absent"],"trustedIdentities":["*"]}]}"#,
    );
    assert_eq!(
        verify_with_policy(&env, &doc, &stores, &reference, ts(NOW)),
        Err(VerifyError::TrustStoreNotFound("ca:absent".into()))
    );
    assert!(matches!(
        verify_with_policy(&env, &doc, &stores, "localhost:5000/net-monitor:latest", ts(NOW)),
        Err(VerifyError::InvalidArtifactReference { .. })
    ));
}

type Check = fn(&Result<TrustPolicyDocument, TrustPolicyError>) -> bool;

/// Expected outcome of parsing each trust policy fixture, from the spec and notation's e2e tests.
fn expectation(file: &str) -> Option<Check> {
    use TrustPolicyError as E;
    let ok: Check = |r| r.is_ok();
    let check: Check = match file {
        // Valid documents. Some are "invalid" only at verification time in notation's e2e
        // tests: a scope no artifact matches, a trust store that does not exist, an identity
        // that does not match the signer.
        "any_registry_scope_trust_policy.json"
        | "audit_trustpolicy.json"
        | "generate_test_trustpolicy.json"
        | "invalid_registry_scope_trustpolicy.json"
        | "invalid_trust_store_trustpolicy.json"
        | "invalid_trusted_identity_trustpolicy.json"
        | "multi_statements_with_wildcard_registry_scope_trustpolicy.json"
        | "multiple_registry_scope_trustpolicy.json"
        | "multiple_trust_store_trustpolicy.json"
        | "multiple_trusted_identity_trustpolicy.json"
        | "overlapped_trust_store_trustpolicy.json"
        | "override_audit_trustpolicy.json"
        | "override_permissive_trustpolicy.json"
        | "override_strict_trustpolicy.json"
        | "permissive_trustpolicy.json"
        | "quickstart_trustpolicy.json"
        | "registry_scope_trustpolicy.json"
        | "skip_trustpolicy.json"
        | "trustpolicy.json"
        | "valid_trusted_identity_trustpolicy.json" => ok,
        // Valid for notation, refused here: they ask for RFC 3161 timestamp verification (a
        // `tsa:` trust store and `verifyTimestamp`), which is not implemented. Accepting them
        // and ignoring timestamps would pass signatures without a (valid) countersignature.
        "timestamp_after_cert_expiry_trustpolicy.json" => |r| {
            matches!(r, Err(E::TimestampVerificationUnsupported { statement, setting })
                if statement == "e2e" && setting.contains("afterCertExpiry"))
        },
        "timestamp_trustpolicy.json" => |r| {
            matches!(r, Err(E::TimestampVerificationUnsupported { statement, setting })
                if statement == "e2e" && setting.contains("always"))
        },
        // Blob trust policies have no registry scopes: not valid OCI trust policies (reported
        // before the timestamp statement of trustpolicy.blob.json is refused).
        "blob_trust_policy.json" | "trustpolicy.blob.json" => |r| matches!(r, Err(E::NoRegistryScopes(_))),
        "empty_registry_scope_trustpolicy.json" => |r| matches!(r, Err(E::NoRegistryScopes(_))),
        "empty_trusted_identity_trustpolicy.json" => |r| matches!(r, Err(E::EmptyTrustedIdentity(_))),
        "malformed_registry_scope_trustpolicy.json" => |r| matches!(r, Err(E::InvalidRegistryScope { .. })),
        "malformed_trust_store_trustpolicy.json" => |r| matches!(r, Err(E::InvalidTrustStoreName { .. })),
        "malformed_trusted_identity_trustpolicy.json" => |r| matches!(r, Err(E::IdentityMissingSeparator { .. })),
        "missing_country_trusted_identity_trustpolicy.json"
        | "missing_organization_trusted_identity_trustpolicy.json"
        | "missing_state_trusted_identity_trustpolicy.json" => |r| matches!(r, Err(E::InvalidDistinguishedName { .. })),
        "multi_statements_with_multi_wildcard_registry_scope_trustpolicy.json"
        | "multi_statements_with_the_same_registry_scope_trustpolicy.json"
        | "overlapped_registry_scope_trustpolicy.json" => |r| matches!(r, Err(E::DuplicateRegistryScope(_))),
        "multi_statements_with_the_same_name_trustpolicy.json" => |r| matches!(r, Err(E::DuplicateName(_))),
        "overlapped_trusted_identity_trustpolicy.json" => |r| matches!(r, Err(E::OverlappingIdentities { .. })),
        "override_integrity_for_permissive_trustpolicy.json" => {
            |r| matches!(r, Err(E::InvalidSignatureVerification { .. }))
        }
        "unset_trust_store_trustpolicy.json" | "unset_trusted_identity_trustpolicy.json" => {
            |r| matches!(r, Err(E::MissingTrustStoresOrIdentities(_)))
        }
        "wildcard_plus_other_registry_scope_trustpolicy.json" => |r| matches!(r, Err(E::WildcardScopeWithOthers(_))),
        "wildcard_plus_other_trusted_identity_trustpolicy.json" => {
            |r| matches!(r, Err(E::WildcardIdentityWithOthers(_)))
        }
        "wildcard_trust_store_trustpolicy.json" => |r| matches!(r, Err(E::MalformedTrustStore { .. })),
        _ => return None,
    };
    Some(check)
}

#[test]
fn every_trust_policy_fixture_parses_or_is_rejected_for_its_reason() {
    let dir = fixtures().join("trustpolicy");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("trustpolicy dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 43, "fixture count changed: review the expectations");
    let mut valid = 0;
    for file in &files {
        let check = expectation(file).unwrap_or_else(|| panic!("no expectation for fixture {file}"));
        let bytes = std::fs::read(dir.join(file)).expect("read");
        let result = TrustPolicyDocument::parse(&bytes);
        assert!(check(&result), "{file}: unexpected {result:?}");
        if result.is_ok() {
            valid += 1;
        } else if let Err(e) = &result {
            // Every rejection names a reason a person can act on.
            assert!(!e.to_string().is_empty());
        }
    }
    // 22 are valid for notation; the 2 timestamp policies are refused here.
    assert_eq!(valid, 20);
}

#[test]
fn fixture_policies_select_by_scope() {
    let dir = fixtures().join("trustpolicy");
    let load = |f: &str| TrustPolicyDocument::parse(&std::fs::read(dir.join(f)).expect("read")).expect(f);
    let digest = format!("@sha256:{}", "a".repeat(64));

    let doc = load("multi_statements_with_wildcard_registry_scope_trustpolicy.json");
    let pick = |doc: &TrustPolicyDocument, repo: &str| {
        doc.applicable_policy(&format!("{repo}{digest}")).map(|p| p.name.clone())
    };
    assert_eq!(pick(&doc, "localhost:5000/test-repo9").ok().as_deref(), Some("e2e"));
    assert_eq!(pick(&doc, "localhost:5000/elsewhere").ok().as_deref(), Some("e2e2"));

    let doc = load("multiple_registry_scope_trustpolicy.json");
    assert!(pick(&doc, "localhost:5000/test-repo2").is_ok());
    assert!(pick(&doc, "localhost:5000/test-repo3").is_ok());
    assert!(matches!(pick(&doc, "localhost:5000/test-repo4"), Err(VerifyError::NoApplicableTrustPolicy { .. })));

    let doc = load("invalid_registry_scope_trustpolicy.json");
    assert!(pick(&doc, "localhost:5000/test-repo").is_err());

    // skip: nothing is verified, even a garbage envelope.
    let doc = load("skip_trustpolicy.json");
    let outcome = verify_with_policy(b"garbage", &doc, &TrustStores::new(), &format!("reg.io/x{digest}"), ts(NOW));
    assert_eq!(outcome, Ok(PolicyOutcome::Skipped { policy: "e2e".into() }));
}

#[test]
fn timestamp_fixture_policies_are_refused_and_load_without_timestamping() {
    let dir = fixtures().join("trustpolicy");
    for (file, value) in
        [("timestamp_trustpolicy.json", "always"), ("timestamp_after_cert_expiry_trustpolicy.json", "afterCertExpiry")]
    {
        let bytes = std::fs::read(dir.join(file)).expect("read");
        let err = TrustPolicyDocument::parse(&bytes).expect_err(file);
        let message = err.to_string();
        assert!(message.contains("\"e2e\"") && message.contains(value), "{file}: {message}");
        assert!(message.contains("timestamp verification") && message.contains("not supported yet"), "{message}");

        // Without verifyTimestamp, the tsa store alone is still refused.
        let mut json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        let statement = &mut json["trustPolicies"][0];
        statement["signatureVerification"].as_object_mut().expect("object").remove("verifyTimestamp");
        let err = TrustPolicyDocument::parse(json.to_string().as_bytes()).expect_err("tsa store");
        assert!(
            matches!(&err, TrustPolicyError::TimestampVerificationUnsupported { setting, .. } if setting.contains("tsa:e2e")),
            "{err:?}"
        );

        // Without either, the statement loads, and the notation-made envelope (which has no
        // timestamp) verifies with the certificates valid now.
        json["trustPolicies"][0]["trustStores"] = serde_json::json!(["ca:valid-trust-store"]);
        let doc = TrustPolicyDocument::parse(json.to_string().as_bytes()).expect("ca only");
        let reference = format!("localhost:5000/net-monitor@{DIGEST}");
        let outcome = verify_with_policy(&envelope(), &doc, &stores(), &reference, ts(NOW)).expect("verifies");
        assert!(matches!(outcome, PolicyOutcome::Verified(_)));
    }
}
