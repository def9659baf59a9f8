//! Trust store loading, and policy verification of Tidegate's own signatures.

mod common;

use common::*;
use tidegate_notary::{
    PolicyOutcome, SignOptions, Signer, TrustPolicyDocument, TrustStoreError, TrustStoreRef, TrustStoreType,
    TrustStores, VerifyError, verify_with_policy,
};

#[test]
fn loads_the_notation_directory_layout() {
    let root_a = Ca::root("Root A");
    let root_b = Ca::root("Root B");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("x509/ca");
    std::fs::create_dir_all(ca.join("acme/sub-dir")).expect("mkdir");
    std::fs::create_dir_all(ca.join("empty")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("x509/tsa/stamps")).expect("mkdir");
    std::fs::write(ca.join("acme/a.pem"), root_a.cert.to_pem()).expect("write");
    std::fs::write(ca.join("acme/b.cer"), root_b.cert.der()).expect("write");
    std::fs::write(ca.join("acme/notes.txt"), "ignored").expect("write");
    std::fs::write(ca.join("acme/sub-dir/ignored.pem"), "not even a certificate").expect("write");
    std::fs::write(dir.path().join("x509/tsa/stamps/t.crt"), root_a.cert.to_pem()).expect("write");

    let stores = TrustStores::load_dir(dir.path()).expect("load");
    let acme = stores.get(&TrustStoreRef::ca("acme")).expect("acme");
    assert_eq!(acme, [root_a.cert.clone(), root_b.cert.clone()]);
    assert!(stores.get(&TrustStoreRef::ca("empty")).is_none());
    let tsa = TrustStoreRef { store_type: TrustStoreType::Tsa, name: "stamps".into() };
    assert_eq!(stores.get(&tsa).map(<[_]>::len), Some(1));
    assert_eq!(stores.iter().count(), 2);

    // A missing root directory is simply empty.
    let none = TrustStores::load_dir(&dir.path().join("absent")).expect("absent");
    assert_eq!(none.iter().count(), 0);

    // Broken certificate file.
    std::fs::write(ca.join("acme/broken.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        .expect("write");
    assert!(matches!(TrustStores::load_dir(dir.path()), Err(TrustStoreError::Certificate { .. })));
    std::fs::remove_file(ca.join("acme/broken.pem")).expect("rm");

    // Symlinks are refused.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(ca.join("acme/a.pem"), ca.join("acme/link.pem")).expect("symlink");
        assert!(matches!(TrustStores::load_dir(dir.path()), Err(TrustStoreError::Symlink(_))));
    }
}

#[test]
fn store_certificates_must_be_ca_or_self_signed() {
    let id = identity(KeyKind::P256);
    let mut stores = TrustStores::new();
    let err = stores.insert(TrustStoreRef::ca("leafs"), vec![id.chain[0].clone()]).expect_err("leaf");
    assert!(matches!(err, TrustStoreError::NotCaOrSelfSigned { .. }), "{err}");
    assert!(matches!(stores.insert(TrustStoreRef::ca("none"), vec![]), Err(TrustStoreError::Empty(_))));
    assert!(matches!(
        stores.insert(TrustStoreRef::ca("bad/name"), vec![id.root.clone()]),
        Err(TrustStoreError::InvalidName(_))
    ));
    stores.insert_pem(TrustStoreRef::ca("roots"), id.root.to_pem().as_bytes()).expect("root");
}

fn policy(identities: &str, level: &str) -> TrustPolicyDocument {
    let json = format!(
        r#"{{
            "version": "1.0",
            "trustPolicies": [
                {{
                    "name": "production",
                    "registryScopes": ["registry.example/team/app"],
                    "signatureVerification": {{ "level": "{level}" }},
                    "trustStores": ["ca:tidegate"],
                    "trustedIdentities": [{identities}]
                }},
                {{
                    "name": "unsigned-tools",
                    "registryScopes": ["registry.example/team/tools"],
                    "signatureVerification": {{ "level": "skip" }}
                }}
            ]
        }}"#
    );
    TrustPolicyDocument::parse(json.as_bytes()).expect("policy")
}

#[test]
fn tidegate_signatures_against_a_trust_policy() {
    let id = identity(KeyKind::Rsa2048);
    let envelope = Signer::from_pem(id.key_pem.as_bytes(), id.chain_pem().as_bytes())
        .expect("signer")
        .sign(
            &descriptor(),
            &SignOptions {
                signing_time: ts("2024-05-01T00:00:00Z"),
                expiry: None,
                signing_agent: "tidegate/0.1.0".into(),
            },
        )
        .expect("sign");
    let mut stores = TrustStores::new();
    stores.insert(TrustStoreRef::ca("tidegate"), vec![id.root.clone()]).expect("store");
    let reference = format!("registry.example/team/app@{}", descriptor().digest);
    let now = ts("2025-01-01T00:00:00Z");

    let trusted = format!(r#""x509.subject: C=US, ST=WA, O={SUBJECT_O}, CN=signer""#);
    let outcome =
        verify_with_policy(&envelope, &policy(&trusted, "strict"), &stores, &reference, now).expect("verified");
    let PolicyOutcome::Verified(v) = outcome else { panic!("not verified") };
    assert_eq!(v.policy.as_deref(), Some("production"));
    assert_eq!(v.signing_agent.as_deref(), Some("tidegate/0.1.0"));

    let several = format!(r#""x509.subject: C=US, ST=WA, O=Someone Else", "x509.subject: C=US, ST=WA, O={SUBJECT_O}""#);
    verify_with_policy(&envelope, &policy(&several, "strict"), &stores, &reference, now).expect("second identity");

    let err = verify_with_policy(
        &envelope,
        &policy(r#""x509.subject: C=US, ST=WA, O=Tidegate Test, CN=other""#, "strict"),
        &stores,
        &reference,
        now,
    )
    .expect_err("other CN");
    assert!(matches!(err, VerifyError::UntrustedIdentity { .. }), "{err}");

    // Identities of other types never match.
    let err = verify_with_policy(&envelope, &policy(r#""x509.san: signer""#, "strict"), &stores, &reference, now)
        .expect_err("non-x509 identity");
    assert!(matches!(err, VerifyError::UntrustedIdentity { detail: Some(_), .. }), "{err}");

    // Another store: untrusted chain.
    let mut other_stores = TrustStores::new();
    other_stores.insert(TrustStoreRef::ca("tidegate"), vec![Ca::root("Other").cert]).expect("store");
    let err = verify_with_policy(&envelope, &policy(r#""*""#, "strict"), &other_stores, &reference, now)
        .expect_err("untrusted");
    assert!(matches!(err, VerifyError::UntrustedChain { .. }), "{err}");

    // skip statement for the tools repository.
    let tools = format!("registry.example/team/tools@{}", descriptor().digest);
    assert_eq!(
        verify_with_policy(&envelope, &policy(r#""*""#, "strict"), &stores, &tools, now),
        Ok(PolicyOutcome::Skipped { policy: "unsigned-tools".into() })
    );
}
