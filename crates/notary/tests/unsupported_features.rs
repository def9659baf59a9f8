//! What the Notary Project specification defines but this implementation does not verify —
//! RFC 3161 timestamp countersignatures and the `notary.x509.signingAuthority` signing scheme —
//! is refused, never silently ignored: trust policies that ask for it do not load, and envelopes
//! that depend on it do not verify.

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use rcgen::date_time_ymd;
use tidegate_notary::{
    PolicyOutcome, SIGNING_SCHEME_SIGNING_AUTHORITY, TrustPolicyDocument, TrustPolicyError, TrustStoreRef,
    TrustStoreType, TrustStores, ValidationKind, VerifyError, verify, verify_with_policy,
};

const SIGNED_AT: &str = "2024-03-01T12:00:00Z";
const NOW: &str = "2025-01-15T08:30:00Z";
const SCOPE: &str = "registry.example/team/app";

fn document(trust_stores: &str, signature_verification: &str) -> String {
    format!(
        r#"{{"version":"1.0","trustPolicies":[{{"name":"production","registryScopes":["{SCOPE}"],
        "signatureVerification":{signature_verification},"trustStores":[{trust_stores}],
        "trustedIdentities":["*"]}}]}}"#
    )
}

fn parse(json: &str) -> Result<TrustPolicyDocument, TrustPolicyError> {
    TrustPolicyDocument::parse(json.as_bytes())
}

fn reference() -> String {
    format!("{SCOPE}@{}", descriptor().digest)
}

fn ca_stores(id: &Identity) -> TrustStores {
    let mut stores = TrustStores::new();
    stores.insert(TrustStoreRef::ca("acme"), vec![id.root.clone()]).expect("store");
    stores
}

#[test]
fn policies_naming_a_tsa_store_are_refused() {
    for level in ["strict", "permissive", "audit"] {
        let json = document(r#""ca:acme","tsa:acme-tsa""#, &format!(r#"{{"level":"{level}"}}"#));
        let err = parse(&json).expect_err("tsa store");
        assert!(
            matches!(&err, TrustPolicyError::TimestampVerificationUnsupported { statement, setting }
                if statement == "production" && setting.contains("tsa:acme-tsa")),
            "{level}: {err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("timestamp verification") && message.contains("not supported"), "{message}");
    }
    // A tsa store alone (no ca store) too.
    assert!(matches!(
        parse(&document(r#""tsa:acme-tsa""#, r#"{"level":"strict"}"#)),
        Err(TrustPolicyError::TimestampVerificationUnsupported { .. })
    ));
}

#[test]
fn policies_setting_verify_timestamp_are_refused() {
    for value in ["always", "afterCertExpiry", ""] {
        let json = document(r#""ca:acme""#, &format!(r#"{{"level":"strict","verifyTimestamp":"{value}"}}"#));
        let err = parse(&json).expect_err("verifyTimestamp");
        assert!(
            matches!(&err, TrustPolicyError::TimestampVerificationUnsupported { setting, .. }
                if setting.contains("verifyTimestamp")),
            "{value:?}: {err:?}"
        );
    }
    // An invalid value is reported as notation reports it.
    let json = document(r#""ca:acme""#, r#"{"level":"strict","verifyTimestamp":"sometimes"}"#);
    assert!(matches!(parse(&json), Err(TrustPolicyError::InvalidSignatureVerification { .. })));
    // Without either, the same statement loads.
    parse(&document(r#""ca:acme""#, r#"{"level":"strict"}"#)).expect("ca only");
}

#[test]
fn policies_naming_a_signing_authority_store_are_refused() {
    for stores in [r#""signingAuthority:acme-sa""#, r#""ca:acme","signingAuthority:acme-sa""#] {
        let err = parse(&document(stores, r#"{"level":"strict"}"#)).expect_err("signingAuthority store");
        assert!(
            matches!(&err, TrustPolicyError::SigningAuthorityUnsupported { statement, store }
                if statement == "production" && store == "signingAuthority:acme-sa"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(SIGNING_SCHEME_SIGNING_AUTHORITY) && message.contains("not supported"), "{message}");
    }
}

#[test]
fn document_mistakes_are_reported_before_unsupported_features() {
    // The second statement is refused, so the whole document is.
    let json = r#"{"version":"1.0","trustPolicies":[
        {"name":"a","registryScopes":["registry.example/a"],"signatureVerification":{"level":"strict"},
         "trustStores":["ca:acme"],"trustedIdentities":["*"]},
        {"name":"b","registryScopes":["registry.example/b"],"signatureVerification":{"level":"strict"},
         "trustStores":["ca:acme","tsa:acme-tsa"],"trustedIdentities":["*"]}]}"#;
    assert!(matches!(
        parse(json),
        Err(TrustPolicyError::TimestampVerificationUnsupported { statement, .. }) if statement == "b"
    ));
    // A rule notation enforces (a repeated scope) is reported first.
    let json = json.replace("registry.example/b", "registry.example/a");
    assert!(matches!(parse(&json), Err(TrustPolicyError::DuplicateRegistryScope(_))));
}

#[test]
fn hand_built_policies_with_unsupported_stores_fail_verification() {
    let id = identity(KeyKind::P256);
    let envelope = crafted(&id, Crafted::protected_header(SIGNED_AT, None)).sign_p256(&id.key_pem);
    let base = parse(&document(r#""ca:acme""#, r#"{"level":"strict"}"#)).expect("policy");
    let stores = ca_stores(&id);
    let outcome = verify_with_policy(&envelope, &base, &stores, &reference(), ts(NOW)).expect("ca only verifies");
    assert!(matches!(outcome, PolicyOutcome::Verified(_)));

    for store_type in [TrustStoreType::Tsa, TrustStoreType::SigningAuthority] {
        let mut doc = base.clone();
        doc.policies[0].trust_stores.push(TrustStoreRef { store_type, name: "extra".into() });
        let err = verify_with_policy(&envelope, &doc, &stores, &reference(), ts(NOW)).expect_err("unsupported store");
        assert!(matches!(err, VerifyError::UnsupportedTrustPolicy(_)), "{store_type:?}: {err}");
        assert_eq!(err.kind(), ValidationKind::Policy);
    }
}

/// An envelope with the `notary.x509.signingAuthority` scheme, well formed per the JWS envelope
/// specification, signed by a valid identity.
fn signing_authority_envelope(id: &Identity) -> Vec<u8> {
    let header = serde_json::json!({
        "alg": "ES256",
        "cty": "application/vnd.cncf.notary.payload.v1+json",
        "io.cncf.notary.signingScheme": SIGNING_SCHEME_SIGNING_AUTHORITY,
        "io.cncf.notary.authenticSigningTime": SIGNED_AT,
        "crit": ["io.cncf.notary.signingScheme", "io.cncf.notary.authenticSigningTime"],
    });
    crafted(id, header.to_string()).sign_p256(&id.key_pem)
}

#[test]
fn signing_authority_envelopes_fail_naming_the_scheme() {
    let id = identity(KeyKind::P256);
    let envelope = signing_authority_envelope(&id);
    let err = verify(&envelope, std::slice::from_ref(&id.root), &descriptor().digest, ts(NOW)).expect_err("scheme");
    assert_eq!(err, VerifyError::UnsupportedSigningScheme(SIGNING_SCHEME_SIGNING_AUTHORITY.into()));
    assert_eq!(err.kind(), ValidationKind::Integrity);
    let message = err.to_string();
    assert!(
        message.contains(SIGNING_SCHEME_SIGNING_AUTHORITY)
            && message.contains("not supported")
            && message.contains("RFC 3161"),
        "{message}"
    );

    // Also under a policy, at every level that verifies (integrity is always enforced).
    for level in ["strict", "permissive", "audit"] {
        let doc = parse(&document(r#""ca:acme""#, &format!(r#"{{"level":"{level}"}}"#))).expect("policy");
        let err = verify_with_policy(&envelope, &doc, &ca_stores(&id), &reference(), ts(NOW)).expect_err(level);
        assert_eq!(err, VerifyError::UnsupportedSigningScheme(SIGNING_SCHEME_SIGNING_AUTHORITY.into()), "{level}");
    }

    // Any other scheme: also named.
    let header = Crafted::protected_header(SIGNED_AT, None).replace("\"notary.x509\"", "\"notary.example\"");
    let env = crafted(&id, header).sign_p256(&id.key_pem);
    let err = verify(&env, std::slice::from_ref(&id.root), &descriptor().digest, ts(NOW)).expect_err("scheme");
    assert!(err.to_string().contains("notary.example"), "{err}");
}

#[test]
fn timestamp_tokens_in_envelopes_never_extend_trust() {
    let token = STANDARD.encode(b"not verified: any bytes");

    // A leaf valid 2021..2023, signed in 2022: with or without a timestamp token, it verifies in
    // 2022 and fails once the certificate has expired (no timestamp can make it valid later).
    let mut params = leaf_params("short-lived");
    params.not_after = date_time_ymd(2023, 1, 1);
    let id = identity_with(KeyKind::P256, &params);
    let signed_2022 = Crafted::protected_header("2022-06-01T00:00:00Z", None);
    for name in ["io.cncf.notary.timestampSignature", "io.cncf.notary.timestamp"] {
        let mut c = crafted(&id, signed_2022.clone());
        c.header_extra.push((name.into(), token.clone().into()));
        let envelope = c.sign_p256(&id.key_pem);
        verify(&envelope, std::slice::from_ref(&id.root), &descriptor().digest, ts("2022-07-01T00:00:00Z"))
            .expect("valid in 2022");
        let err = verify(&envelope, std::slice::from_ref(&id.root), &descriptor().digest, ts(NOW)).expect_err(name);
        assert!(matches!(err, VerifyError::CertificateExpired { .. }), "{name}: {err}");
        let doc = parse(&document(r#""ca:acme""#, r#"{"level":"strict"}"#)).expect("policy");
        let err = verify_with_policy(&envelope, &doc, &ca_stores(&id), &reference(), ts(NOW)).expect_err(name);
        assert!(matches!(err, VerifyError::CertificateExpired { .. }), "{name}: {err}");
    }

    // A token that is not base64 (notation cannot decode the envelope either): malformed.
    let id = identity(KeyKind::P256);
    for name in ["io.cncf.notary.timestampSignature", "io.cncf.notary.TimestampSignature", "io.cncf.notary.timestamp"] {
        for value in [serde_json::json!("not base64!"), serde_json::json!(42)] {
            let mut c = crafted(&id, Crafted::protected_header(SIGNED_AT, None));
            c.header_extra.push((name.into(), value.clone()));
            let err = verify(&c.sign_p256(&id.key_pem), std::slice::from_ref(&id.root), &descriptor().digest, ts(NOW))
                .expect_err("malformed token");
            assert!(matches!(err, VerifyError::MalformedEnvelope(_)), "{name} {value}: {err}");
        }
    }
}
