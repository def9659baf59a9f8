//! Signing with a key held elsewhere (a key vault): the envelope is prepared from the chain
//! alone, its digest signed by the key's holder, and finished only when the signature verifies
//! with the signing certificate's public key.

mod common;

use common::*;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use tidegate_notary::{RawPublicKey, SignError, SignOptions, SignatureAlgorithm, Signer, SigningChain, verify};

const SIGNED_AT: &str = "2024-03-01T12:00:00Z";
const NOW: &str = "2025-01-15T08:30:00Z";

fn options() -> SignOptions {
    SignOptions { signing_time: ts(SIGNED_AT), expiry: None, signing_agent: "tidegate/test".into() }
}

fn chain_of(id: &Identity) -> SigningChain {
    SigningChain::from_pem(id.chain_pem().as_bytes()).expect("chain")
}

/// What a key vault does with a digest: ECDSA over the prehash (raw `r || s`), RSA-PSS with a
/// salt as long as the hash.
fn vault_sign(key_pem: &str, alg: SignatureAlgorithm, digest: &[u8]) -> Vec<u8> {
    match alg {
        SignatureAlgorithm::Es256 => {
            let key = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem).expect("p256");
            let sig: p256::ecdsa::Signature = key.sign_prehash(digest).expect("sign");
            sig.to_bytes().to_vec()
        }
        SignatureAlgorithm::Es384 => {
            let key = p384::ecdsa::SigningKey::from_pkcs8_pem(key_pem).expect("p384");
            let sig: p384::ecdsa::Signature = key.sign_prehash(digest).expect("sign");
            sig.to_bytes().to_vec()
        }
        SignatureAlgorithm::Ps256 | SignatureAlgorithm::Ps384 | SignatureAlgorithm::Ps512 => {
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem).expect("rsa");
            let padding = match alg {
                SignatureAlgorithm::Ps256 => rsa::Pss::new_with_salt::<sha2::Sha256>(32),
                SignatureAlgorithm::Ps384 => rsa::Pss::new_with_salt::<sha2::Sha384>(48),
                _ => rsa::Pss::new_with_salt::<sha2::Sha512>(64),
            };
            key.sign_with_rng(&mut rsa::rand_core::OsRng, padding, digest).expect("sign")
        }
        other => panic!("{other} not used here"),
    }
}

fn raw_public_key(key_pem: &str) -> RawPublicKey {
    if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem) {
        return RawPublicKey::Rsa { n: key.n().to_bytes_be(), e: key.e().to_bytes_be() };
    }
    if let Ok(key) = p256::SecretKey::from_pkcs8_pem(key_pem) {
        let point = key.public_key().to_encoded_point(false);
        return RawPublicKey::Ec {
            curve: "P-256".into(),
            x: point.x().expect("x").to_vec(),
            y: point.y().expect("y").to_vec(),
        };
    }
    let key = p384::SecretKey::from_pkcs8_pem(key_pem).expect("a P-384 key");
    let point = key.public_key().to_encoded_point(false);
    RawPublicKey::Ec { curve: "P-384".into(), x: point.x().expect("x").to_vec(), y: point.y().expect("y").to_vec() }
}

#[test]
fn a_digest_signed_elsewhere_makes_an_envelope_that_verifies() {
    for (kind, alg, hash_len) in [
        (KeyKind::P256, SignatureAlgorithm::Es256, 32),
        (KeyKind::P384, SignatureAlgorithm::Es384, 48),
        (KeyKind::Rsa2048, SignatureAlgorithm::Ps256, 32),
        (KeyKind::Rsa3072, SignatureAlgorithm::Ps384, 48),
    ] {
        let id = identity(kind);
        let chain = chain_of(&id);
        assert_eq!(chain.algorithm(), alg, "{kind:?}");
        let prepared = chain.prepare(&descriptor(), &options()).expect("prepare");
        assert_eq!(prepared.algorithm(), alg);
        let digest = prepared.digest();
        assert_eq!(digest.len(), hash_len, "{kind:?}");
        assert_eq!(digest, alg.digest(prepared.signing_input()));
        let signature = vault_sign(&id.key_pem, alg, &digest);
        let envelope = prepared.finish(&signature).expect("finish");
        let verified =
            verify(&envelope, std::slice::from_ref(&id.root), &descriptor().digest, ts(NOW)).expect("verifies");
        assert_eq!(verified.algorithm, alg);
        assert_eq!(verified.signer_subject, id.chain[0].subject());
        assert_eq!(verified.signing_agent.as_deref(), Some("tidegate/test"));
    }
}

#[test]
fn a_signature_by_another_key_gives_no_envelope() {
    let id = identity(KeyKind::P256);
    let other = identity(KeyKind::P256);
    let prepared = chain_of(&id).prepare(&descriptor(), &options()).expect("prepare");
    let signature = vault_sign(&other.key_pem, SignatureAlgorithm::Es256, &prepared.digest());
    match prepared.finish(&signature) {
        Err(SignError::SignatureDoesNotVerify { alg, subject }) => {
            assert_eq!(alg, SignatureAlgorithm::Es256);
            assert_eq!(subject, id.chain[0].subject());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_malformed_signature_gives_no_envelope() {
    let id = identity(KeyKind::Rsa2048);
    let chain = chain_of(&id);
    for signature in [&b""[..], b"not a signature", &[0u8; 256]] {
        let prepared = chain.prepare(&descriptor(), &options()).expect("prepare");
        assert!(matches!(prepared.finish(signature), Err(SignError::SignatureDoesNotVerify { .. })), "{signature:?}");
    }
    // A PKCS#1 v1.5 signature of the right key is not RSASSA-PSS.
    let prepared = chain.prepare(&descriptor(), &options()).expect("prepare");
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&id.key_pem).expect("rsa");
    let pkcs1 = key.sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &prepared.digest()).expect("sign");
    assert!(matches!(prepared.finish(&pkcs1), Err(SignError::SignatureDoesNotVerify { .. })));
}

#[test]
fn the_chain_is_validated_before_anything_is_signed() {
    let id = identity(KeyKind::P256);
    let late = SignOptions { signing_time: ts("2099-01-01T00:00:00Z"), ..options() };
    assert!(matches!(chain_of(&id).prepare(&descriptor(), &late), Err(SignError::InvalidChain(_))));
    let reversed: Vec<_> = id.chain.iter().rev().cloned().collect();
    let reversed = SigningChain::new(reversed).expect("a chain whose first certificate has a usable key");
    assert!(matches!(reversed.prepare(&descriptor(), &options()), Err(SignError::InvalidChain(_))));
    assert!(matches!(SigningChain::new(Vec::new()), Err(SignError::Certificate(_))));
}

#[test]
fn the_signing_certificate_key_is_compared_with_a_remote_key() {
    // The RSA test keys are fixed files, one per size: another RSA key is another size's.
    for (kind, other) in
        [(KeyKind::P256, KeyKind::P256), (KeyKind::P384, KeyKind::P384), (KeyKind::Rsa2048, KeyKind::Rsa3072)]
    {
        let id = identity(kind);
        let other = identity(other);
        let chain = chain_of(&id);
        assert!(chain.has_public_key(&raw_public_key(&id.key_pem)).expect("compare"), "{kind:?}");
        assert!(!chain.has_public_key(&raw_public_key(&other.key_pem)).expect("compare"), "{kind:?}");
    }
    let chain = chain_of(&identity(KeyKind::P256));
    let unknown = RawPublicKey::Ec { curve: "P-256K".into(), x: vec![1; 32], y: vec![2; 32] };
    assert!(matches!(chain.has_public_key(&unknown), Err(SignError::InvalidKey(_))));
    let off_curve = RawPublicKey::Ec { curve: "P-256".into(), x: vec![1; 32], y: vec![2; 32] };
    assert!(matches!(chain.has_public_key(&off_curve), Err(SignError::InvalidKey(_))));
    // A P-384 key is not the P-256 certificate's key, whatever its coordinates.
    assert!(!chain.has_public_key(&raw_public_key(&identity(KeyKind::P384).key_pem)).expect("compare"));
}

#[test]
fn local_signing_still_works_through_the_same_steps() {
    let id = identity(KeyKind::Rsa2048);
    let signer = Signer::from_pem(id.key_pem.as_bytes(), id.chain_pem().as_bytes()).expect("signer");
    let envelope = signer.sign(&descriptor(), &options()).expect("sign");
    verify(&envelope, std::slice::from_ref(&id.root), &descriptor().digest, ts(NOW)).expect("verifies");
    assert_eq!(signer.thumbprint_annotation_value(), chain_of(&id).thumbprint_annotation_value());
}
