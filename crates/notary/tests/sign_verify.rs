//! Sign with generated keys and certificates, verify, and check that every tampering or
//! certificate problem fails with the right reason.

mod common;

use common::*;
use rcgen::{CrlDistributionPoint, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, date_time_ymd};
use tidegate_notary::{
    Certificate, SignError, SignOptions, SignatureAlgorithm, Signer, ValidationAction, ValidationActions, VerifyError,
    VerifyOptions, sign, verify, verify_with_options,
};

const SIGNED_AT: &str = "2024-03-01T12:00:00Z";
const NOW: &str = "2025-01-15T08:30:00Z";

fn options() -> SignOptions {
    SignOptions { signing_time: ts(SIGNED_AT), expiry: None, signing_agent: "tidegate/test".into() }
}

fn sign_with(identity: &Identity, options: &SignOptions) -> Vec<u8> {
    Signer::from_pem(identity.key_pem.as_bytes(), identity.chain_pem().as_bytes())
        .expect("signer")
        .sign(&descriptor(), options)
        .expect("sign")
}

fn verify_ok(identity: &Identity, envelope: &[u8]) -> tidegate_notary::VerifiedSignature {
    verify(envelope, std::slice::from_ref(&identity.root), &descriptor().digest, ts(NOW)).expect("verifies")
}

fn verify_err(identity: &Identity, envelope: &[u8]) -> VerifyError {
    verify(envelope, std::slice::from_ref(&identity.root), &descriptor().digest, ts(NOW)).expect_err("must fail")
}

#[test]
fn every_key_type_signs_and_verifies() {
    let cases = [
        (KeyKind::P256, SignatureAlgorithm::Es256),
        (KeyKind::P384, SignatureAlgorithm::Es384),
        (KeyKind::Rsa2048, SignatureAlgorithm::Ps256),
        (KeyKind::Rsa3072, SignatureAlgorithm::Ps384),
        (KeyKind::Rsa4096, SignatureAlgorithm::Ps512),
        (KeyKind::Rsa2048Pkcs1, SignatureAlgorithm::Ps256),
        (KeyKind::P256Sec1, SignatureAlgorithm::Es256),
    ];
    for (kind, alg) in cases {
        let id = identity(kind);
        let signer = Signer::from_pem(id.key_pem.as_bytes(), id.chain_pem().as_bytes())
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(signer.algorithm(), alg, "{kind:?}");
        let envelope = signer.sign(&descriptor(), &options()).expect("sign");
        let verified = verify_ok(&id, &envelope);
        assert_eq!(verified.algorithm, alg, "{kind:?}");
        assert_eq!(verified.target, descriptor());
        assert_eq!(verified.signing_time, ts(SIGNED_AT));
        assert_eq!(verified.signer_subject, id.chain[0].subject());
        assert!(verified.signer_subject.contains("CN=signer"));
        assert_eq!(verified.trust_anchor_subject.as_deref(), Some(id.root.subject()));
        assert_eq!(verified.signing_agent.as_deref(), Some("tidegate/test"));
        assert!(verified.warnings.is_empty());
    }
}

#[test]
fn es512_with_a_p521_chain_made_by_openssl() {
    // rcgen (ring) cannot issue certificates for P-521 keys; this chain was made with openssl
    // (validity from 2026-11-27 for a century).
    let chain_pem = format!("{}{}", key_file("p521-leaf.pem"), key_file("p521-root.pem"));
    let root = Certificate::parse_pem(key_file("p521-root.pem").as_bytes()).expect("root");
    let signer = Signer::from_pem(key_file("p521-leaf-key.pem").as_bytes(), chain_pem.as_bytes()).expect("signer");
    assert_eq!(signer.algorithm(), SignatureAlgorithm::Es512);
    let options = SignOptions { signing_time: ts("2027-01-01T00:00:00Z"), ..options() };
    let envelope = signer.sign(&descriptor(), &options).expect("sign");
    let verified = verify(&envelope, &root, &descriptor().digest, ts("2030-01-01T00:00:00Z")).expect("verify");
    assert_eq!(verified.algorithm, SignatureAlgorithm::Es512);
}

#[test]
fn envelope_has_the_notary_jws_shape() {
    let id = identity(KeyKind::P256);
    let options = SignOptions {
        signing_time: ts("2024-03-01T12:00:00.987Z"),
        expiry: Some(ts("2026-03-01T12:00:00Z")),
        signing_agent: "tidegate/test".into(),
    };
    let envelope = sign_with(&id, &options);
    let map = envelope_json(&envelope);
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["header", "payload", "protected", "signature"]);

    let protected = b64url_json(map["protected"].as_str().expect("protected"));
    assert_eq!(protected["alg"], "ES256");
    assert_eq!(protected["cty"], "application/vnd.cncf.notary.payload.v1+json");
    assert_eq!(protected["io.cncf.notary.signingScheme"], "notary.x509");
    assert_eq!(protected["io.cncf.notary.signingTime"], "2024-03-01T12:00:00Z");
    assert_eq!(protected["io.cncf.notary.expiry"], "2026-03-01T12:00:00Z");
    assert_eq!(protected["crit"], serde_json::json!(["io.cncf.notary.signingScheme", "io.cncf.notary.expiry"]));
    let payload = b64url_json(map["payload"].as_str().expect("payload"));
    assert_eq!(payload, serde_json::json!({ "targetArtifact": descriptor() }));
    let header = map["header"].as_object().expect("header");
    assert_eq!(header["io.cncf.notary.signingAgent"], "tidegate/test");
    let x5c = header["x5c"].as_array().expect("x5c");
    assert_eq!(x5c.len(), 2);

    let verified = verify_ok(&id, &envelope);
    assert_eq!(verified.expiry, Some(ts("2026-03-01T12:00:00Z")));
    assert_eq!(verified.chain_fingerprints.len(), 2);
    assert_eq!(
        tidegate_notary::thumbprint_annotation_value(&id.chain),
        serde_json::json!(verified.chain_fingerprints).to_string()
    );
}

#[test]
fn free_sign_function_and_intermediate_chain() {
    let root = Ca::root("Tidegate Test Root");
    let intermediate = root.intermediate("Tidegate Test Intermediate");
    let key = leaf_key(KeyKind::P384);
    let leaf = intermediate.issue(&leaf_params("signer"), &key.spki);
    let chain = [leaf, intermediate.cert.clone(), root.cert.clone()];
    let chain_pem: String = chain.iter().map(Certificate::to_pem).collect();
    let envelope =
        sign(&descriptor(), key.pem.as_bytes(), chain_pem.as_bytes(), ts(SIGNED_AT), None, "").expect("sign");
    let digest = descriptor().digest;
    let verified = verify(&envelope, std::slice::from_ref(&root.cert), &digest, ts(NOW)).expect("root");
    assert_eq!(verified.signing_agent, None);
    // Pinning the intermediate is accepted too (any certificate of the chain may be trusted).
    verify(&envelope, std::slice::from_ref(&intermediate.cert), &digest, ts(NOW)).expect("pinned");

    // Wrong order: root first.
    let reversed: String = chain.iter().rev().map(Certificate::to_pem).collect();
    let err = Signer::from_pem(key.pem.as_bytes(), reversed.as_bytes()).expect_err("mismatch");
    assert!(matches!(err, SignError::KeyCertificateMismatch { .. }), "{err}");
    // Missing root: the chain must end with a self-signed certificate.
    let no_root: String = chain[..2].iter().map(Certificate::to_pem).collect();
    let err =
        sign(&descriptor(), key.pem.as_bytes(), no_root.as_bytes(), ts(SIGNED_AT), None, "").expect_err("no root");
    assert!(matches!(err, SignError::InvalidChain(VerifyError::InvalidCertificateChain(_))), "{err}");
    // Skipping the intermediate: the leaf is not issued by the root.
    let gap: String = [&chain[0], &chain[2]].iter().map(|c| c.to_pem()).collect();
    let err = sign(&descriptor(), key.pem.as_bytes(), gap.as_bytes(), ts(SIGNED_AT), None, "").expect_err("gap");
    assert!(matches!(err, SignError::InvalidChain(VerifyError::InvalidCertificateChain(_))), "{err}");
}

#[test]
fn self_signed_signing_certificate() {
    // What `notation cert generate-test` produces: one self-signed, non-CA code signing cert.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = leaf_params("self-signed").self_signed(&key).expect("cert");
    let cert = Certificate::from_der(cert.der().to_vec()).expect("parse");
    let id = Identity { key_pem: key.serialize_pem(), chain: vec![cert.clone()], root: cert };
    let envelope = sign_with(&id, &options());
    verify_ok(&id, &envelope);
}

#[test]
fn tampered_payload_header_or_signature_fail_integrity() {
    let id = identity(KeyKind::P256);
    let envelope = sign_with(&id, &options());
    let map = envelope_json(&envelope);

    // Payload naming another digest, original signature.
    let mut other = descriptor();
    other.digest = format!("sha256:{}", "cd".repeat(32));
    let payload = b64url(Crafted::payload_for(&other).as_bytes());
    let tampered = replace_member(&envelope, "payload", payload.into());
    assert_eq!(verify_err(&id, &tampered), VerifyError::SignatureInvalid);

    // Protected header with another signing time, original signature.
    let mut protected = b64url_json(map["protected"].as_str().expect("protected"));
    protected["io.cncf.notary.signingTime"] = "2024-03-02T12:00:00Z".into();
    let tampered = replace_member(&envelope, "protected", b64url(protected.to_string().as_bytes()).into());
    assert_eq!(verify_err(&id, &tampered), VerifyError::SignatureInvalid);

    // Flipped signature bit.
    let mut sig = base64_decode(map["signature"].as_str().expect("signature"));
    sig[10] ^= 0x01;
    let tampered = replace_member(&envelope, "signature", b64url(&sig).into());
    assert_eq!(verify_err(&id, &tampered), VerifyError::SignatureInvalid);

    // Truncated signature.
    let tampered = replace_member(&envelope, "signature", b64url(&sig[..40]).into());
    assert_eq!(verify_err(&id, &tampered), VerifyError::SignatureInvalid);

    // Another signer's certificate (same subject, other key) swapped into x5c.
    let other_id = identity(KeyKind::P256);
    let mut header = map["header"].clone();
    header["x5c"][0] = base64_std(other_id.chain[0].der()).into();
    let tampered = replace_member(&envelope, "header", header);
    assert!(matches!(verify_err(&id, &tampered), VerifyError::SignatureInvalid));

    // alg changed to the one of another key type.
    let mut protected = b64url_json(map["protected"].as_str().expect("protected"));
    protected["alg"] = "ES384".into();
    let tampered = replace_member(&envelope, "protected", b64url(protected.to_string().as_bytes()).into());
    assert!(matches!(verify_err(&id, &tampered), VerifyError::AlgorithmMismatch { .. }));
    protected["alg"] = "none".into();
    let tampered = replace_member(&envelope, "protected", b64url(protected.to_string().as_bytes()).into());
    assert_eq!(verify_err(&id, &tampered), VerifyError::UnsupportedAlgorithm("none".into()));

    // Unknown top-level member; padding in base64url.
    let tampered = replace_member(&envelope, "signatures", serde_json::json!([]));
    assert!(matches!(verify_err(&id, &tampered), VerifyError::MalformedEnvelope(_)));
    let padded = format!("{}==", map["payload"].as_str().expect("payload"));
    let tampered = replace_member(&envelope, "payload", padded.into());
    assert!(matches!(verify_err(&id, &tampered), VerifyError::MalformedEnvelope(_)));
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

fn base64_std(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn crafted_headers_are_checked_even_when_correctly_signed() {
    let id = identity(KeyKind::P256);
    let good = crafted(&id, Crafted::protected_header(SIGNED_AT, None));
    verify_ok(&id, &good.sign_p256(&id.key_pem));

    let mut header: serde_json::Value =
        serde_json::from_str(&Crafted::protected_header(SIGNED_AT, None)).expect("json");

    // Unknown critical header (e.g. a verification plugin requirement).
    let mut h = header.clone();
    h["io.cncf.notary.verificationPlugin"] = "com.example.plugin".into();
    h["crit"] = serde_json::json!(["io.cncf.notary.signingScheme", "io.cncf.notary.verificationPlugin"]);
    let env = crafted(&id, h.to_string()).sign_p256(&id.key_pem);
    assert_eq!(
        verify_err(&id, &env),
        VerifyError::UnsupportedCriticalHeader("io.cncf.notary.verificationPlugin".into())
    );

    // Unknown non-critical header: ignored.
    let mut h = header.clone();
    h["io.example.note"] = "hello".into();
    verify_ok(&id, &crafted(&id, h.to_string()).sign_p256(&id.key_pem));

    // Missing crit.
    let mut h = header.clone();
    h.as_object_mut().expect("object").remove("crit");
    let env = crafted(&id, h.to_string()).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::InvalidCriticalHeaders(_)));

    // Expiry present but not critical.
    let mut h = header.clone();
    h["io.cncf.notary.expiry"] = "2030-01-01T00:00:00Z".into();
    let env = crafted(&id, h.to_string()).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::InvalidCriticalHeaders(_)));

    // Other signing scheme.
    let mut h = header.clone();
    h["io.cncf.notary.signingScheme"] = "notary.x509.signingAuthority".into();
    let env = crafted(&id, h.to_string()).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::UnsupportedSigningScheme(_)));

    // Other content type.
    let mut h = header.clone();
    h["cty"] = "application/json".into();
    let env = crafted(&id, h.to_string()).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::UnsupportedContentType(_)));

    // Missing signing time; unparsable signing time.
    let mut h = header.clone();
    h.as_object_mut().expect("object").remove("io.cncf.notary.signingTime");
    let env = crafted(&id, h.to_string()).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::MalformedEnvelope(_)));
    header["io.cncf.notary.signingTime"] = "yesterday".into();
    let env = crafted(&id, header.to_string()).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::MalformedEnvelope(_)));

    // Duplicate key in the signed header (parsers could disagree on its value).
    let dup = Crafted::protected_header(SIGNED_AT, None).replacen(
        "{",
        r#"{"io.cncf.notary.signingTime":"2019-01-01T00:00:00Z","#,
        1,
    );
    let env = crafted(&id, dup).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::MalformedEnvelope(_)));

    // Signed payload that is not a Notary payload.
    let mut c = crafted(&id, Crafted::protected_header(SIGNED_AT, None));
    c.payload = r#"{"targetArtifact":{"mediaType":"x","digest":"sha256:abc","size":1}}"#.into();
    assert!(matches!(verify_err(&id, &c.sign_p256(&id.key_pem)), VerifyError::MalformedEnvelope(_)));
    c.payload = "[]".into();
    assert!(matches!(verify_err(&id, &c.sign_p256(&id.key_pem)), VerifyError::MalformedEnvelope(_)));

    // Empty x5c; x5c not base64; signing agent ignored whatever its case.
    let mut c = crafted(&id, Crafted::protected_header(SIGNED_AT, None));
    c.header_extra.push(("io.cncf.notary.SigningAgent".into(), "Notation/1.0.0".into()));
    let verified = verify_ok(&id, &c.sign_p256(&id.key_pem));
    assert_eq!(verified.signing_agent.as_deref(), Some("Notation/1.0.0"));
    c.x5c.clear();
    assert!(matches!(verify_err(&id, &c.sign_p256(&id.key_pem)), VerifyError::MalformedEnvelope(_)));
    c.header_extra = vec![("x5c".into(), serde_json::json!(["not base64!"]))];
    assert!(matches!(verify_err(&id, &c.sign_p256(&id.key_pem)), VerifyError::MalformedCertificate { index: 0, .. }));
}

#[test]
fn wrong_digest_is_rejected() {
    let id = identity(KeyKind::P256);
    let envelope = sign_with(&id, &options());
    let other = format!("sha256:{}", "00".repeat(32));
    let err = verify(&envelope, std::slice::from_ref(&id.root), &other, ts(NOW)).expect_err("digest");
    assert_eq!(err, VerifyError::DigestMismatch { expected: other, actual: descriptor().digest });
}

#[test]
fn untrusted_root_is_rejected() {
    let id = identity(KeyKind::P256);
    let envelope = sign_with(&id, &options());
    let stranger = Ca::root("Some Other Root");
    let err =
        verify(&envelope, std::slice::from_ref(&stranger.cert), &descriptor().digest, ts(NOW)).expect_err("untrusted");
    assert!(matches!(err, VerifyError::UntrustedChain { .. }), "{err}");
    let err = verify(&envelope, &[], &descriptor().digest, ts(NOW)).expect_err("no anchors");
    assert!(matches!(err, VerifyError::UntrustedChain { .. }), "{err}");

    // Audit-like options only log it.
    let options = VerifyOptions {
        actions: ValidationActions { authenticity: ValidationAction::Log, ..ValidationActions::strict() },
    };
    let verified = verify_with_options(&envelope, &[], &descriptor().digest, ts(NOW), &options).expect("logged");
    assert_eq!(verified.trust_anchor_subject, None);
    assert!(matches!(verified.warnings.as_slice(), [VerifyError::UntrustedChain { .. }]));
}

#[test]
fn expired_certificate_and_expired_signature() {
    // Leaf valid 2021..2023: signing in 2022 works, verifying in 2025 fails.
    let mut params = leaf_params("short-lived");
    params.not_after = date_time_ymd(2023, 1, 1);
    let id = identity_with(KeyKind::P256, &params);
    let opts = SignOptions { signing_time: ts("2022-06-01T00:00:00Z"), ..options() };
    let envelope = sign_with(&id, &opts);
    verify(&envelope, std::slice::from_ref(&id.root), &descriptor().digest, ts("2022-07-01T00:00:00Z"))
        .expect("valid in 2022");
    let err = verify_err(&id, &envelope);
    assert!(matches!(err, VerifyError::CertificateExpired { .. }), "{err}");

    // Signing outside the certificate's validity is refused, and a crafted one is rejected.
    let err = Signer::from_pem(id.key_pem.as_bytes(), id.chain_pem().as_bytes())
        .expect("signer")
        .sign(&descriptor(), &options())
        .expect_err("signing after expiry");
    assert!(matches!(err, SignError::InvalidChain(VerifyError::CertificateNotValidAtSigningTime { .. })), "{err}");
    let env = crafted(&id, Crafted::protected_header("2024-01-01T00:00:00Z", None)).sign_p256(&id.key_pem);
    let err = verify(&env, std::slice::from_ref(&id.root), &descriptor().digest, ts("2022-07-01T00:00:00Z"))
        .expect_err("signed after expiry");
    assert!(matches!(err, VerifyError::CertificateNotValidAtSigningTime { .. }), "{err}");

    // Signature expiry.
    let id = identity(KeyKind::P256);
    let opts = SignOptions { expiry: Some(ts("2024-12-31T00:00:00Z")), ..options() };
    let envelope = sign_with(&id, &opts);
    verify(&envelope, std::slice::from_ref(&id.root), &descriptor().digest, ts("2024-06-01T00:00:00Z"))
        .expect("not yet expired");
    let err = verify_err(&id, &envelope);
    assert_eq!(err, VerifyError::SignatureExpired { expiry: ts("2024-12-31T00:00:00Z"), now: ts(NOW) });
    let err = Signer::from_pem(id.key_pem.as_bytes(), id.chain_pem().as_bytes())
        .expect("signer")
        .sign(&descriptor(), &SignOptions { expiry: Some(ts(SIGNED_AT)), ..options() })
        .expect_err("expiry = signing time");
    assert!(matches!(err, SignError::ExpiryNotAfterSigningTime { .. }));
}

#[test]
fn signing_certificate_requirements() {
    // Key usage beyond digitalSignature; no key usage at all.
    let mut params = leaf_params("ku");
    params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    let id = identity_with(KeyKind::P256, &params);
    let env = crafted(&id, Crafted::protected_header(SIGNED_AT, None)).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::CertificateRequirement { .. }));
    let mut params = leaf_params("no-ku");
    params.key_usages.clear();
    let id = identity_with(KeyKind::P256, &params);
    let env = crafted(&id, Crafted::protected_header(SIGNED_AT, None)).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::CertificateRequirement { .. }));

    // A CA certificate cannot sign artifacts.
    let mut params = leaf_params("ca-leaf");
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let id = identity_with(KeyKind::P256, &params);
    let env = crafted(&id, Crafted::protected_header(SIGNED_AT, None)).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::CertificateRequirement { .. }));
}

/// The signing certificate's extended key usage (signature specification, "Leaf
/// Certificates"): the extension is optional; when present it must contain codeSigning and none
/// of anyExtendedKeyUsage, serverAuth, clientAuth, emailProtection, timeStamping, OCSPSigning.
#[test]
fn signing_certificate_extended_key_usage() {
    use ExtendedKeyUsagePurpose as Eku;
    let with_ekus = |cn: &str, ekus: Vec<Eku>| {
        let mut params = leaf_params(cn);
        params.extended_key_usages = ekus;
        identity_with(KeyKind::P256, &params)
    };

    // No extended key usage extension: signs, and verifies (also with an intermediate).
    let id = with_ekus("no-eku", vec![]);
    assert!(!has_eku_extension(&id.chain[0]), "the test certificate must have no EKU extension");
    assert!(has_eku_extension(&identity(KeyKind::P256).chain[0]));
    let envelope = sign_with(&id, &options());
    assert_eq!(verify_ok(&id, &envelope).signer_subject, id.chain[0].subject());
    let env = crafted(&id, Crafted::protected_header(SIGNED_AT, None)).sign_p256(&id.key_pem);
    verify_ok(&id, &env);
    let root = Ca::root("Root");
    let intermediate = root.intermediate("Intermediate");
    let key = leaf_key(KeyKind::P256);
    let mut params = leaf_params("no-eku-via-intermediate");
    params.extended_key_usages.clear();
    let leaf = intermediate.issue(&params, &key.spki);
    let chained =
        Identity { key_pem: key.pem, chain: vec![leaf, intermediate.cert.clone(), root.cert.clone()], root: root.cert };
    verify_ok(&chained, &sign_with(&chained, &options()));

    // codeSigning alone, or with a purpose the specification does not forbid: verifies.
    let id = identity(KeyKind::P256);
    verify_ok(&id, &sign_with(&id, &options()));
    let document_signing = Eku::Other(vec![1, 3, 6, 1, 4, 1, 311, 10, 3, 12]);
    let id = with_ekus("code-and-doc", vec![Eku::CodeSigning, document_signing.clone()]);
    verify_ok(&id, &sign_with(&id, &options()));

    // An extension without codeSigning: refused at signing and rejected at verification.
    for (cn, ekus) in [("doc-only", vec![document_signing]), ("tls-only", vec![Eku::ServerAuth])] {
        let id = with_ekus(cn, ekus);
        let err = Signer::from_pem(id.key_pem.as_bytes(), id.chain_pem().as_bytes())
            .expect("signer")
            .sign(&descriptor(), &options())
            .expect_err("no codeSigning");
        assert!(matches!(err, SignError::InvalidChain(_)), "{cn}: {err}");
        let env = crafted(&id, Crafted::protected_header(SIGNED_AT, None)).sign_p256(&id.key_pem);
        let err = verify_err(&id, &env);
        match cn {
            "doc-only" => assert!(matches!(err, VerifyError::MissingCodeSigningEku { .. }), "{cn}: {err}"),
            _ => assert!(matches!(err, VerifyError::CertificateRequirement { .. }), "{cn}: {err}"),
        }
    }

    // codeSigning with a forbidden purpose: rejected, naming it.
    for (forbidden, name) in [
        (Eku::Any, "anyExtendedKeyUsage"),
        (Eku::ServerAuth, "serverAuth"),
        (Eku::ClientAuth, "clientAuth"),
        (Eku::EmailProtection, "emailProtection"),
        (Eku::TimeStamping, "timeStamping"),
        (Eku::OcspSigning, "OCSPSigning"),
    ] {
        let id = with_ekus(name, vec![Eku::CodeSigning, forbidden]);
        let env = crafted(&id, Crafted::protected_header(SIGNED_AT, None)).sign_p256(&id.key_pem);
        let err = verify_err(&id, &env);
        assert!(
            matches!(&err, VerifyError::CertificateRequirement { reason, .. } if reason.contains(name)),
            "{name}: {err}"
        );
        let err = Signer::from_pem(id.key_pem.as_bytes(), id.chain_pem().as_bytes())
            .expect("signer")
            .sign(&descriptor(), &options())
            .expect_err("forbidden EKU");
        assert!(matches!(err, SignError::InvalidChain(VerifyError::CertificateRequirement { .. })), "{name}: {err}");
    }
}

/// Whether a certificate carries the extended key usage extension (OID 2.5.29.37).
fn has_eku_extension(cert: &Certificate) -> bool {
    // DER of the OID 2.5.29.37: 06 03 55 1d 25.
    cert.der().windows(5).any(|w| w == [0x06, 0x03, 0x55, 0x1d, 0x25])
}

#[test]
fn ca_certificate_requirements() {
    // Root without keyCertSign.
    let mut root_params = ca_params("Weak Root");
    root_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let root = Ca::root_with(root_params);
    let key = leaf_key(KeyKind::P256);
    let leaf = root.issue(&leaf_params("signer"), &key.spki);
    let id = Identity { key_pem: key.pem, chain: vec![leaf, root.cert.clone()], root: root.cert };
    let env = crafted(&id, Crafted::protected_header(SIGNED_AT, None)).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::CertificateRequirement { .. }));

    // Path length 0 on the root with an intermediate below it.
    let mut root_params = ca_params("Constrained Root");
    root_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    let root = Ca::root_with(root_params);
    let intermediate = root.intermediate("Intermediate");
    let key = leaf_key(KeyKind::P256);
    let leaf = intermediate.issue(&leaf_params("signer"), &key.spki);
    let id =
        Identity { key_pem: key.pem, chain: vec![leaf, intermediate.cert.clone(), root.cert.clone()], root: root.cert };
    let env = crafted(&id, Crafted::protected_header(SIGNED_AT, None)).sign_p256(&id.key_pem);
    assert!(matches!(verify_err(&id, &env), VerifyError::CertificateRequirement { .. }));
}

#[test]
fn key_and_certificate_must_match() {
    let id = identity(KeyKind::P256);
    let other = leaf_key(KeyKind::P256);
    let err = Signer::from_pem(other.pem.as_bytes(), id.chain_pem().as_bytes()).expect_err("mismatch");
    assert!(matches!(err, SignError::KeyCertificateMismatch { .. }), "{err}");
    let err = Signer::from_pem(b"not a key", id.chain_pem().as_bytes()).expect_err("no key");
    assert!(matches!(err, SignError::InvalidKey(_)), "{err}");
    let err = Signer::from_pem(id.key_pem.as_bytes(), b"").expect_err("no chain");
    assert!(matches!(err, SignError::Certificate(_)), "{err}");
}

#[test]
fn crl_distribution_points_fail_closed_without_crls_unless_skipped() {
    let mut params = leaf_params("with-crl");
    params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec!["http://crl.example/ca.crl".into()] }];
    let id = identity_with(KeyKind::P256, &params);
    let envelope = sign_with(&id, &options());
    // `verify` fetches no CRL (see tests/revocation.rs for verification with CRLs).
    assert!(matches!(verify_err(&id, &envelope), VerifyError::RevocationUnknown { .. }));
    let skip = VerifyOptions {
        actions: ValidationActions { revocation: ValidationAction::Skip, ..ValidationActions::strict() },
    };
    verify_with_options(&envelope, std::slice::from_ref(&id.root), &descriptor().digest, ts(NOW), &skip)
        .expect("revocation skipped");
}

#[test]
fn invalid_descriptors_are_not_signed() {
    let id = identity(KeyKind::P256);
    let signer = Signer::from_pem(id.key_pem.as_bytes(), id.chain_pem().as_bytes()).expect("signer");
    let mut bad = descriptor();
    bad.digest = "sha256:xyz".into();
    assert!(matches!(signer.sign(&bad, &options()), Err(SignError::InvalidDescriptor(_))));
    let mut bad = descriptor();
    bad.media_type.clear();
    assert!(matches!(signer.sign(&bad, &options()), Err(SignError::InvalidDescriptor(_))));
}

#[test]
fn garbage_never_panics() {
    let id = identity(KeyKind::P256);
    let envelope = sign_with(&id, &options());
    // Every truncation and a byte flip at many positions: errors, never panics, never success
    // except for the untouched envelope.
    for len in (0..envelope.len()).step_by(7) {
        assert!(verify(&envelope[..len], std::slice::from_ref(&id.root), &descriptor().digest, ts(NOW)).is_err());
    }
    for pos in (0..envelope.len()).step_by(11) {
        let mut copy = envelope.clone();
        copy[pos] = copy[pos].wrapping_add(1);
        let result = verify(&copy, std::slice::from_ref(&id.root), &descriptor().digest, ts(NOW));
        if let Ok(v) = result {
            // Only bytes outside the signed data (e.g. whitespace-free JSON has none) could
            // change without effect; the signed target must be unchanged.
            assert_eq!(v.target, descriptor());
        }
    }
}
