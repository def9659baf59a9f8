//! Revocation with CRLs: which CRLs verification asks for, and what each CRL answer means under
//! `enforce` and `log`. CRLs are made with rcgen and handed over as fetched bytes; nothing is
//! fetched here.

mod common;

use std::sync::Arc;

use common::*;
use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope, CustomExtension,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason, RevokedCertParams, SerialNumber, date_time_ymd,
};
use tidegate_notary::{
    Certificate, FetchedCrls, PolicyOutcome, Progress, SignOptions, Signer, TrustPolicyDocument, TrustStoreRef,
    TrustStores, ValidationAction, ValidationActions, VerifiedSignature, VerifyError, VerifyOptions, crl_validity,
    verify, verify_with_crls, verify_with_policy_and_crls,
};

const SIGNED_AT: &str = "2024-03-01T12:00:00Z";
const NOW: &str = "2025-01-15T08:30:00Z";
const LEAF_CRL: &str = "http://crl.test/root.crl";
const LEAF_SERIAL: u64 = 0x1234_5678;

/// A root that issues CRLs, and a leaf signed by it whose certificate names `urls` as one
/// distribution point.
struct Pki {
    root: Ca,
    leaf_key: String,
    chain: Vec<Certificate>,
}

impl Pki {
    fn new(urls: &[&str]) -> Self {
        let root = Ca::root("Revocation Root");
        let mut params = leaf_params("revocable signer");
        params.serial_number = Some(SerialNumber::from(LEAF_SERIAL));
        if !urls.is_empty() {
            params.crl_distribution_points =
                vec![CrlDistributionPoint { uris: urls.iter().map(|u| u.to_string()).collect() }];
        }
        let key = leaf_key(KeyKind::P256);
        let leaf = root.issue(&params, &key.spki);
        let chain = vec![leaf, root.cert.clone()];
        Self { root, leaf_key: key.pem, chain }
    }

    fn envelope(&self) -> Vec<u8> {
        let chain: String = self.chain.iter().map(Certificate::to_pem).collect();
        let options = SignOptions { signing_time: ts(SIGNED_AT), expiry: None, signing_agent: "test".into() };
        Signer::from_pem(self.leaf_key.as_bytes(), chain.as_bytes())
            .expect("signer")
            .sign(&descriptor(), &options)
            .expect("sign")
    }

    fn anchors(&self) -> Vec<Certificate> {
        vec![self.root.cert.clone()]
    }
}

/// A CRL signed by `issuer`, valid from 2025-01-01 to 2025-02-01, listing `revoked`.
fn crl(issuer: &Issuer<'_, KeyPair>, revoked: Vec<RevokedCertParams>) -> Arc<[u8]> {
    crl_with(issuer, revoked, |_| {})
}

fn crl_with(
    issuer: &Issuer<'_, KeyPair>,
    revoked: Vec<RevokedCertParams>,
    change: impl FnOnce(&mut CertificateRevocationListParams),
) -> Arc<[u8]> {
    let mut params = CertificateRevocationListParams {
        this_update: date_time_ymd(2025, 1, 1),
        next_update: date_time_ymd(2025, 2, 1),
        crl_number: SerialNumber::from(7u64),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    change(&mut params);
    Arc::from(params.signed_by(issuer).expect("crl").der().as_ref())
}

fn revoked(serial: u64, reason: Option<RevocationReason>, day: u8) -> RevokedCertParams {
    RevokedCertParams {
        serial_number: SerialNumber::from(serial),
        revocation_time: date_time_ymd(2025, 1, day),
        reason_code: reason,
        invalidity_date: None,
    }
}

fn actions(revocation: ValidationAction) -> VerifyOptions {
    VerifyOptions { actions: ValidationActions { revocation, ..ValidationActions::strict() } }
}

fn run(
    pki: &Pki,
    crls: &FetchedCrls,
    revocation: ValidationAction,
) -> Result<Progress<VerifiedSignature>, VerifyError> {
    verify_with_crls(&pki.envelope(), &pki.anchors(), &descriptor().digest, ts(NOW), &actions(revocation), crls)
}

fn done(result: Result<Progress<VerifiedSignature>, VerifyError>) -> Result<VerifiedSignature, VerifyError> {
    result.map(|progress| match progress {
        Progress::Done(verified) => verified,
        Progress::NeedCrls(urls) => panic!("still needs {urls:?}"),
    })
}

fn fetched(url: &str, body: Arc<[u8]>) -> FetchedCrls {
    let mut crls = FetchedCrls::new();
    crls.insert(url, Ok(body));
    crls
}

#[test]
fn verification_asks_for_the_crl_then_accepts_a_certificate_it_does_not_list() {
    let pki = Pki::new(&[LEAF_CRL]);
    let first = run(&pki, &FetchedCrls::new(), ValidationAction::Enforce).expect("first pass");
    assert_eq!(first, Progress::NeedCrls(vec![LEAF_CRL.to_string()]));

    let other_serial = crl(&pki.root.issuer, vec![revoked(LEAF_SERIAL + 1, Some(RevocationReason::KeyCompromise), 3)]);
    let verified = done(run(&pki, &fetched(LEAF_CRL, other_serial), ValidationAction::Enforce)).expect("not revoked");
    assert!(verified.warnings.is_empty(), "{:?}", verified.warnings);
}

#[test]
fn a_listed_serial_is_revoked_with_its_reason_and_date() {
    let pki = Pki::new(&[LEAF_CRL]);
    let body = crl(&pki.root.issuer, vec![revoked(LEAF_SERIAL, Some(RevocationReason::KeyCompromise), 10)]);
    let err = done(run(&pki, &fetched(LEAF_CRL, body.clone()), ValidationAction::Enforce)).expect_err("revoked");
    match &err {
        VerifyError::Revoked { subject, serial, reason, revoked_at, crl } => {
            assert_eq!(subject, pki.chain[0].subject());
            assert_eq!(serial, "12:34:56:78");
            assert_eq!(reason.as_deref(), Some("keyCompromise"));
            assert_eq!(*revoked_at, ts("2025-01-10T00:00:00Z"));
            assert_eq!(crl, LEAF_CRL);
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("revocable signer") && text.contains("2025-01-10") && text.contains(LEAF_CRL), "{text}");

    // Logged, not enforced: verification passes with the revocation as a warning, as notation
    // does under `permissive`.
    let verified = done(run(&pki, &fetched(LEAF_CRL, body), ValidationAction::Log)).expect("logged");
    assert!(matches!(verified.warnings.as_slice(), [VerifyError::Revoked { .. }]), "{:?}", verified.warnings);
}

#[test]
fn a_crl_signed_by_another_key_is_not_trusted() {
    let pki = Pki::new(&[LEAF_CRL]);
    // Same name, different key: the CRL names the right issuer but its signature does not verify.
    let impostor = Ca::root("Revocation Root");
    let forged = crl(&impostor.issuer, vec![]);
    let err = done(run(&pki, &fetched(LEAF_CRL, forged), ValidationAction::Enforce)).expect_err("unknown");
    assert!(matches!(err, VerifyError::RevocationUnknown { .. }), "{err:?}");
    assert!(err.to_string().contains("signature does not verify"), "{err}");

    // A CRL of another CA altogether names the wrong issuer.
    let other = Ca::root("Another Root");
    let err =
        done(run(&pki, &fetched(LEAF_CRL, crl(&other.issuer, vec![])), ValidationAction::Enforce)).expect_err("issuer");
    assert!(err.to_string().contains("is issued by"), "{err}");
}

#[test]
fn an_expired_or_future_crl_gives_an_unknown_status() {
    let pki = Pki::new(&[LEAF_CRL]);
    let expired = crl_with(&pki.root.issuer, vec![], |p| {
        p.this_update = date_time_ymd(2024, 12, 1);
        p.next_update = date_time_ymd(2025, 1, 1);
    });
    let err = done(run(&pki, &fetched(LEAF_CRL, expired), ValidationAction::Enforce)).expect_err("expired");
    assert!(matches!(err, VerifyError::RevocationUnknown { .. }) && err.to_string().contains("expired"), "{err}");

    let future = crl_with(&pki.root.issuer, vec![], |p| {
        p.this_update = date_time_ymd(2025, 1, 20);
        p.next_update = date_time_ymd(2025, 2, 20);
    });
    let err = done(run(&pki, &fetched(LEAF_CRL, future), ValidationAction::Enforce)).expect_err("not yet valid");
    assert!(err.to_string().contains("not valid before"), "{err}");
}

#[test]
fn an_unreachable_crl_fails_closed_under_enforce_and_warns_under_log() {
    let pki = Pki::new(&[LEAF_CRL]);
    let mut crls = FetchedCrls::new();
    crls.insert(LEAF_CRL, Err("connection refused".into()));
    let err = done(run(&pki, &crls, ValidationAction::Enforce)).expect_err("enforced");
    match &err {
        VerifyError::RevocationUnknown { subject, reason } => {
            assert_eq!(subject, pki.chain[0].subject());
            assert!(reason.contains(LEAF_CRL) && reason.contains("connection refused"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let verified = done(run(&pki, &crls, ValidationAction::Log)).expect("logged");
    assert!(matches!(verified.warnings.as_slice(), [VerifyError::RevocationUnknown { .. }]));
    // Skipped: nothing is asked for.
    let verified = done(run(&pki, &FetchedCrls::new(), ValidationAction::Skip)).expect("skipped");
    assert!(verified.warnings.is_empty());
}

#[test]
fn garbage_instead_of_a_crl_is_an_unknown_status() {
    let pki = Pki::new(&[LEAF_CRL]);
    let err = done(run(&pki, &fetched(LEAF_CRL, Arc::from(&b"<html>moved</html>"[..])), ValidationAction::Enforce))
        .expect_err("not a crl");
    assert!(err.to_string().contains("not a DER CRL"), "{err}");
}

#[test]
fn a_chain_without_distribution_points_needs_no_crl() {
    let pki = Pki::new(&[]);
    let verified = done(run(&pki, &FetchedCrls::new(), ValidationAction::Enforce)).expect("nothing to check");
    assert!(verified.warnings.is_empty());
}

#[test]
fn the_strict_functions_without_crls_report_an_unknown_status() {
    let pki = Pki::new(&[LEAF_CRL]);
    let err = verify(&pki.envelope(), &pki.anchors(), &descriptor().digest, ts(NOW)).expect_err("no CRLs fetched");
    assert!(matches!(err, VerifyError::RevocationUnknown { .. }), "{err:?}");
    assert!(err.to_string().contains("does not fetch CRLs"), "{err}");
}

#[test]
fn an_untrusted_chain_makes_the_verifier_contact_nothing() {
    let pki = Pki::new(&[LEAF_CRL]);
    let stranger = Ca::root("Stranger");
    let audit = VerifyOptions {
        actions: ValidationActions {
            authenticity: ValidationAction::Log,
            revocation: ValidationAction::Log,
            ..ValidationActions::strict()
        },
    };
    let result = verify_with_crls(
        &pki.envelope(),
        std::slice::from_ref(&stranger.cert),
        &descriptor().digest,
        ts(NOW),
        &audit,
        &FetchedCrls::new(),
    );
    let verified = done(result).expect("audit logs");
    assert!(
        verified
            .warnings
            .iter()
            .any(|w| matches!(w, VerifyError::RevocationUnknown { reason, .. } if reason.contains("not contacted"))),
        "{:?}",
        verified.warnings
    );
}

#[test]
fn an_alternative_url_is_tried_when_the_first_fails() {
    let second = "http://mirror.crl.test/root.crl";
    let pki = Pki::new(&[LEAF_CRL, "ldap://ldap.crl.test/cn=root", second]);
    let mut crls = FetchedCrls::new();
    assert_eq!(run(&pki, &crls, ValidationAction::Enforce).expect("ask"), Progress::NeedCrls(vec![LEAF_CRL.into()]));
    crls.insert(LEAF_CRL, Err("HTTP 503".into()));
    assert_eq!(run(&pki, &crls, ValidationAction::Enforce).expect("ask"), Progress::NeedCrls(vec![second.into()]));
    crls.insert(second, Ok(crl(&pki.root.issuer, vec![])));
    done(run(&pki, &crls, ValidationAction::Enforce)).expect("the mirror answered");
}

#[test]
fn only_ldap_urls_give_an_unknown_status() {
    let pki = Pki::new(&["ldap://ldap.crl.test/cn=root"]);
    let err = done(run(&pki, &FetchedCrls::new(), ValidationAction::Enforce)).expect_err("ldap");
    assert!(err.to_string().contains("no http or https URL"), "{err}");
}

#[test]
fn certificate_hold_revokes_until_removed() {
    let pki = Pki::new(&[LEAF_CRL]);
    let held = crl(&pki.root.issuer, vec![revoked(LEAF_SERIAL, Some(RevocationReason::CertificateHold), 5)]);
    let err = done(run(&pki, &fetched(LEAF_CRL, held), ValidationAction::Enforce)).expect_err("held");
    assert!(matches!(&err, VerifyError::Revoked { reason: Some(r), .. } if r == "certificateHold"), "{err:?}");

    let released = crl(
        &pki.root.issuer,
        vec![
            revoked(LEAF_SERIAL, Some(RevocationReason::CertificateHold), 5),
            revoked(LEAF_SERIAL, Some(RevocationReason::RemoveFromCrl), 8),
        ],
    );
    done(run(&pki, &fetched(LEAF_CRL, released), ValidationAction::Enforce)).expect("released");

    let no_reason = crl(&pki.root.issuer, vec![revoked(LEAF_SERIAL, None, 5)]);
    let err = done(run(&pki, &fetched(LEAF_CRL, no_reason), ValidationAction::Enforce)).expect_err("revoked");
    assert!(matches!(&err, VerifyError::Revoked { reason: None, .. }), "{err:?}");
}

#[test]
fn a_crl_scoped_to_ca_certificates_does_not_cover_the_signing_certificate() {
    let pki = Pki::new(&[LEAF_CRL]);
    let scoped = crl_with(&pki.root.issuer, vec![], |p| {
        p.issuing_distribution_point = Some(CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint { uris: vec![LEAF_CRL.into()] },
            scope: Some(CrlScope::CaCertsOnly),
        });
    });
    let err = done(run(&pki, &fetched(LEAF_CRL, scoped), ValidationAction::Enforce)).expect_err("out of scope");
    assert!(err.to_string().contains("CA certificates only"), "{err}");

    let users = crl_with(&pki.root.issuer, vec![], |p| {
        p.issuing_distribution_point = Some(CrlIssuingDistributionPoint {
            distribution_point: CrlDistributionPoint { uris: vec![LEAF_CRL.into()] },
            scope: Some(CrlScope::UserCertsOnly),
        });
    });
    done(run(&pki, &fetched(LEAF_CRL, users), ValidationAction::Enforce)).expect("in scope");
}

#[test]
fn an_issuer_without_crl_sign_cannot_revoke() {
    // The root certificate in the chain allows keyCertSign only; rcgen signs the CRL with an
    // issuer description that claims cRLSign, with the same name and key.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
    let mut params = ca_params("Narrow Root");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let root_cert = Certificate::from_der(params.self_signed(&key).expect("root").der().to_vec()).expect("parse");
    let key_der = key.serialize_der();
    let issuer = Issuer::new(params.clone(), key);
    let mut leaf = leaf_params("narrow signer");
    leaf.serial_number = Some(SerialNumber::from(LEAF_SERIAL));
    leaf.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![LEAF_CRL.into()] }];
    let leaf_key = leaf_key(KeyKind::P256);
    let leaf_cert = Certificate::from_der(leaf.signed_by(&leaf_key.spki, &issuer).expect("leaf").der().to_vec())
        .expect("parse leaf");
    let pki =
        Pki { root: Ca { issuer, cert: root_cert.clone() }, leaf_key: leaf_key.pem, chain: vec![leaf_cert, root_cert] };
    let mut crl_params = ca_params("Narrow Root");
    crl_params.key_usages.push(KeyUsagePurpose::CrlSign);
    let crl_issuer = Issuer::new(crl_params, KeyPair::try_from(key_der.as_slice()).expect("same key"));
    let err = done(run(&pki, &fetched(LEAF_CRL, crl(&crl_issuer, vec![])), ValidationAction::Enforce))
        .expect_err("no cRLSign");
    assert!(err.to_string().contains("cRLSign"), "{err}");
}

#[test]
fn a_revoked_intermediate_is_found_with_the_root_crl() {
    let root_crl = "http://crl.test/root-for-intermediates.crl";
    let intermediate_crl = "http://crl.test/intermediate.crl";
    let root = Ca::root("Chain Root");
    let mut intermediate_params = ca_params("Chain Intermediate");
    intermediate_params.serial_number = Some(SerialNumber::from(99u64));
    intermediate_params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![root_crl.into()] }];
    let intermediate_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let intermediate_cert = Certificate::from_der(
        intermediate_params.signed_by(&intermediate_key, &root.issuer).expect("intermediate").der().to_vec(),
    )
    .expect("parse");
    let intermediate =
        Ca { issuer: Issuer::new(intermediate_params, intermediate_key), cert: intermediate_cert.clone() };
    let mut leaf = leaf_params("deep signer");
    leaf.serial_number = Some(SerialNumber::from(LEAF_SERIAL));
    leaf.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![intermediate_crl.into()] }];
    let key = leaf_key(KeyKind::P256);
    let leaf_cert = intermediate.issue(&leaf, &key.spki);
    let chain = vec![leaf_cert, intermediate_cert, root.cert.clone()];
    let pki = Pki { root, leaf_key: key.pem, chain };

    let first = run(&pki, &FetchedCrls::new(), ValidationAction::Enforce).expect("ask");
    assert_eq!(first, Progress::NeedCrls(vec![intermediate_crl.into(), root_crl.into()]));
    let mut crls = FetchedCrls::new();
    crls.insert(intermediate_crl, Ok(crl(&intermediate.issuer, vec![])));
    crls.insert(root_crl, Ok(crl(&pki.root.issuer, vec![revoked(99, Some(RevocationReason::CaCompromise), 2)])));
    let err = done(run(&pki, &crls, ValidationAction::Enforce)).expect_err("intermediate revoked");
    assert!(matches!(&err, VerifyError::Revoked { subject, .. } if subject == intermediate.cert.subject()), "{err:?}");
    // The leaf's CRL must come from the intermediate: the root's CRL does not do for it.
    crls.insert(intermediate_crl, Ok(crl(&pki.root.issuer, vec![])));
    crls.insert(root_crl, Ok(crl(&pki.root.issuer, vec![])));
    let err = done(run(&pki, &crls, ValidationAction::Enforce)).expect_err("wrong issuer for the leaf");
    assert!(matches!(&err, VerifyError::RevocationUnknown { subject, .. } if subject == pki.chain[0].subject()));
}

/// DER of an authority information access extension naming one OCSP responder.
fn ocsp_only_extension(url: &str) -> CustomExtension {
    let mut location = vec![0x86, u8::try_from(url.len()).expect("short url")];
    location.extend_from_slice(url.as_bytes());
    let ocsp_oid = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
    let mut description = vec![0x30, u8::try_from(ocsp_oid.len() + location.len()).expect("short")];
    description.extend_from_slice(&ocsp_oid);
    description.extend_from_slice(&location);
    let mut value = vec![0x30, u8::try_from(description.len()).expect("short")];
    value.extend_from_slice(&description);
    CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 1], value)
}

#[test]
fn a_certificate_with_only_ocsp_stays_unchecked() {
    let root = Ca::root("OCSP Root");
    let mut params = leaf_params("ocsp signer");
    params.custom_extensions = vec![ocsp_only_extension("http://ocsp.test/")];
    let key = leaf_key(KeyKind::P256);
    let leaf = root.issue(&params, &key.spki);
    let pki = Pki { chain: vec![leaf, root.cert.clone()], root, leaf_key: key.pem };
    let err = done(run(&pki, &FetchedCrls::new(), ValidationAction::Enforce)).expect_err("unchecked");
    assert!(matches!(err, VerifyError::RevocationUnchecked { .. }), "{err:?}");
    done(run(&pki, &FetchedCrls::new(), ValidationAction::Log)).expect("logged");
}

#[test]
fn the_trust_policy_decides_enforce_or_log() {
    let pki = Pki::new(&[LEAF_CRL]);
    let mut stores = TrustStores::new();
    stores.insert(TrustStoreRef::ca("revocation"), pki.anchors()).expect("store");
    let reference = format!("registry.test/app@{}", descriptor().digest);
    let body = crl(&pki.root.issuer, vec![revoked(LEAF_SERIAL, Some(RevocationReason::Superseded), 4)]);
    let crls = fetched(LEAF_CRL, body);
    for (level, enforced) in [("strict", true), ("permissive", false)] {
        let document = TrustPolicyDocument::parse(
            format!(
                r#"{{"version": "1.0", "trustPolicies": [{{"name": "p", "registryScopes": ["*"],
                "signatureVerification": {{"level": "{level}"}}, "trustStores": ["ca:revocation"],
                "trustedIdentities": ["*"]}}]}}"#
            )
            .as_bytes(),
        )
        .expect("policy");
        let asked =
            verify_with_policy_and_crls(&pki.envelope(), &document, &stores, &reference, ts(NOW), &FetchedCrls::new())
                .expect("first pass");
        assert_eq!(asked, Progress::NeedCrls(vec![LEAF_CRL.into()]), "{level}");
        let result = verify_with_policy_and_crls(&pki.envelope(), &document, &stores, &reference, ts(NOW), &crls);
        match (result, enforced) {
            (Err(VerifyError::Revoked { .. }), true) => {}
            (Ok(Progress::Done(PolicyOutcome::Verified(v))), false) => {
                assert!(matches!(v.warnings.as_slice(), [VerifyError::Revoked { .. }]), "{level}");
            }
            (other, _) => panic!("{level}: {other:?}"),
        }
    }
}

#[test]
fn crl_validity_reads_this_and_next_update() {
    let root = Ca::root("Validity Root");
    let validity = crl_validity(&crl(&root.issuer, vec![])).expect("validity");
    assert_eq!(validity.this_update, ts("2025-01-01T00:00:00Z"));
    assert_eq!(validity.next_update, Some(ts("2025-02-01T00:00:00Z")));
    assert!(crl_validity(b"nope").is_err());
}

/// DER, by hand, for what rcgen cannot make: delta CRLs and CRLs that name them.
mod der {
    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(u8::try_from(len).expect("short"));
        } else {
            let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
            out.push(0x80 | u8::try_from(bytes.len()).expect("length of length"));
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }

    pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    pub fn int(value: u64) -> Vec<u8> {
        let mut bytes: Vec<u8> = value.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        if bytes.first().is_none_or(|b| b & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        tlv(0x02, &bytes)
    }

    /// `YYMMDDHHMMSSZ`.
    pub fn utc(text: &str) -> Vec<u8> {
        tlv(0x17, text.as_bytes())
    }

    pub fn ext(oid: &[u8], critical: bool, value: Vec<u8>) -> Vec<u8> {
        let mut parts = vec![tlv(0x06, oid)];
        if critical {
            parts.push(tlv(0x01, &[0xff]));
        }
        parts.push(tlv(0x04, &value));
        seq(&parts)
    }

    pub const CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];
    pub const REASON_CODE: &[u8] = &[0x55, 0x1d, 0x15];
    pub const DELTA_CRL_INDICATOR: &[u8] = &[0x55, 0x1d, 0x1b];
    pub const FRESHEST_CRL: &[u8] = &[0x55, 0x1d, 0x2e];
    const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];

    /// CRLDistributionPoints with one point of one URI (also the freshest CRL syntax).
    pub fn points(uri: &str) -> Vec<u8> {
        seq(&[seq(&[tlv(0xa0, &tlv(0xa0, &tlv(0x86, uri.as_bytes())))])])
    }

    pub fn entry(serial: u64, date: &str, reason: Option<u8>) -> Vec<u8> {
        let mut parts = vec![int(serial), utc(date)];
        if let Some(code) = reason {
            parts.push(seq(&[ext(REASON_CODE, false, tlv(0x0a, &[code]))]));
        }
        seq(&parts)
    }

    /// A CRL from 2025-01-01 to 2025-02-01 signed with the P-384 `key` for the issuer name
    /// `issuer` (DER).
    pub fn crl(key: &rcgen::KeyPair, issuer: &[u8], entries: &[Vec<u8>], extensions: &[Vec<u8>]) -> Vec<u8> {
        use rcgen::SigningKey;
        let algorithm = seq(&[tlv(0x06, ECDSA_SHA384)]);
        let mut tbs = vec![int(1), algorithm.clone(), issuer.to_vec(), utc("250101000000Z"), utc("250201000000Z")];
        if !entries.is_empty() {
            tbs.push(seq(entries));
        }
        tbs.push(tlv(0xa0, &seq(extensions)));
        let tbs = seq(&tbs);
        let signature = key.sign(&tbs).expect("sign");
        seq(&[tbs, algorithm, tlv(0x03, &[&[0u8][..], &signature].concat())])
    }
}

const DELTA_CRL: &str = "http://crl.test/root-delta.crl";

/// The root's subject name, DER.
fn issuer_name(pki: &Pki) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(pki.root.cert.der()).expect("root");
    cert.subject().as_raw().to_vec()
}

fn base_with_delta(pki: &Pki, number: u64, entries: &[Vec<u8>]) -> Arc<[u8]> {
    let extensions = [
        der::ext(der::CRL_NUMBER, false, der::int(number)),
        der::ext(der::FRESHEST_CRL, false, der::points(DELTA_CRL)),
    ];
    Arc::from(der::crl(pki.root.issuer.key(), &issuer_name(pki), entries, &extensions))
}

fn delta(pki: &Pki, number: u64, base: u64, entries: &[Vec<u8>]) -> Arc<[u8]> {
    let extensions =
        [der::ext(der::CRL_NUMBER, false, der::int(number)), der::ext(der::DELTA_CRL_INDICATOR, true, der::int(base))];
    Arc::from(der::crl(pki.root.issuer.key(), &issuer_name(pki), entries, &extensions))
}

#[test]
fn a_delta_crl_named_by_the_base_crl_is_fetched_and_can_revoke() {
    let pki = Pki::new(&[LEAF_CRL]);
    let mut crls = fetched(LEAF_CRL, base_with_delta(&pki, 10, &[]));
    assert_eq!(run(&pki, &crls, ValidationAction::Enforce).expect("ask"), Progress::NeedCrls(vec![DELTA_CRL.into()]));

    crls.insert(DELTA_CRL, Ok(delta(&pki, 11, 10, &[])));
    done(run(&pki, &crls, ValidationAction::Enforce)).expect("neither lists it");

    crls.insert(DELTA_CRL, Ok(delta(&pki, 11, 10, &[der::entry(LEAF_SERIAL, "250112000000Z", Some(1))])));
    let err = done(run(&pki, &crls, ValidationAction::Enforce)).expect_err("the delta revokes");
    match &err {
        VerifyError::Revoked { crl, reason, revoked_at, .. } => {
            assert_eq!(crl, DELTA_CRL);
            assert_eq!(reason.as_deref(), Some("keyCompromise"));
            assert_eq!(*revoked_at, ts("2025-01-12T00:00:00Z"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_delta_crl_can_release_a_hold_of_the_base_crl() {
    let pki = Pki::new(&[LEAF_CRL]);
    let held = [der::entry(LEAF_SERIAL, "250105000000Z", Some(6))];
    let mut crls = fetched(LEAF_CRL, base_with_delta(&pki, 10, &held));
    crls.insert(DELTA_CRL, Ok(delta(&pki, 11, 10, &[])));
    let err = done(run(&pki, &crls, ValidationAction::Enforce)).expect_err("held in the base");
    assert!(
        matches!(&err, VerifyError::Revoked { reason: Some(r), crl, .. } if r == "certificateHold" && crl == LEAF_CRL)
    );
    crls.insert(DELTA_CRL, Ok(delta(&pki, 11, 10, &[der::entry(LEAF_SERIAL, "250110000000Z", Some(8))])));
    done(run(&pki, &crls, ValidationAction::Enforce)).expect("released by the delta");
}

#[test]
fn a_delta_crl_that_does_not_fit_its_base_gives_an_unknown_status() {
    let pki = Pki::new(&[LEAF_CRL]);
    let base = base_with_delta(&pki, 10, &[]);
    for (bad, why) in [
        (delta(&pki, 10, 10, &[]), "not greater"),
        (delta(&pki, 12, 11, &[]), "needs base CRL 11"),
        (base.clone(), "no delta CRL indicator"),
    ] {
        let mut crls = fetched(LEAF_CRL, base.clone());
        crls.insert(DELTA_CRL, Ok(bad));
        let err = done(run(&pki, &crls, ValidationAction::Enforce)).expect_err(why);
        assert!(matches!(err, VerifyError::RevocationUnknown { .. }) && err.to_string().contains(why), "{why}: {err}");
    }
    let mut crls = fetched(LEAF_CRL, base);
    crls.insert(DELTA_CRL, Err("connection refused".into()));
    let err = done(run(&pki, &crls, ValidationAction::Enforce)).expect_err("unreachable delta");
    assert!(err.to_string().contains("the delta CRL at"), "{err}");
}

#[test]
fn a_delta_crl_served_as_the_complete_crl_is_refused() {
    let pki = Pki::new(&[LEAF_CRL]);
    let err = done(run(&pki, &fetched(LEAF_CRL, delta(&pki, 11, 10, &[])), ValidationAction::Enforce))
        .expect_err("a delta at the distribution point");
    assert!(err.to_string().contains("is a delta CRL"), "{err}");
}

#[test]
fn a_delta_crl_named_only_by_the_certificate_is_not_supported() {
    let root = Ca::root("Revocation Root");
    let mut params = leaf_params("revocable signer");
    params.serial_number = Some(SerialNumber::from(LEAF_SERIAL));
    params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![LEAF_CRL.into()] }];
    params.custom_extensions = vec![CustomExtension::from_oid_content(&[2, 5, 29, 46], der::points(DELTA_CRL))];
    let key = leaf_key(KeyKind::P256);
    let leaf = root.issue(&params, &key.spki);
    let pki = Pki { chain: vec![leaf, root.cert.clone()], root, leaf_key: key.pem };
    let err = done(run(&pki, &fetched(LEAF_CRL, crl(&pki.root.issuer, vec![])), ValidationAction::Enforce))
        .expect_err("certificate-only delta");
    assert!(err.to_string().contains("named only by the certificate"), "{err}");
}
