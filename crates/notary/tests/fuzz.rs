//! Fuzzing the parsers of outside data in `tidegate-notary`: JWS signature envelopes (as bytes,
//! and part by part with the signed parts re-signed so that mutations get past the integrity
//! check), X.509 certificates (PEM and DER), CRLs (as bytes, and generated entry by entry and
//! signed by the trusted root so that mutations reach the revocation logic), trust policies,
//! trusted identities and signing keys. Each must answer `Ok` or `Err`, never panic.
//!
//! Seeds: Notation's own envelope, trust store and trust policies from `shared/fixtures/notation`,
//! and a PKI made here with rcgen. Bounded run: `cargo test -p tidegate-notary --test fuzz`.
//! Longer run: see `docs/fuzzing.md`.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Ca, KeyKind, descriptor, key_file, leaf_key, leaf_params, ts};
use jiff::Timestamp;
use p256::ecdsa::signature::Signer as _;
use pkcs8::DecodePrivateKey;
use rcgen::{CrlDistributionPoint, SerialNumber};
use serde_json::{Value, json};
use tidegate_fuzz::{Mutator, fixture, fixtures, target, text};
use tidegate_notary::{
    Certificate, DistinguishedName, FetchedCrls, Progress, SignOptions, Signer, SigningChain, TrustPolicyDocument,
    TrustStoreRef, TrustStores, ValidationAction, ValidationActions, VerifyOptions, crl_validity, verify,
    verify_with_crls, verify_with_policy_and_crls,
};

/// The digest Notation's fixture envelope signs.
const FIXTURE_DIGEST: &str = "sha256:60043cf45eaebc4c0867fea485a039b598f52fd09fd5b07b0b2d2f88fad9d74e";
const SIGNED_AT: &str = "2024-03-01T12:00:00Z";
const NOW: &str = "2025-01-15T08:30:00Z";
const LEAF_CRL: &str = "http://crl.test/root.crl";
const DELTA_CRL: &str = "http://crl.test/root-delta.crl";
const LEAF_SERIAL: u64 = 0x1234_5678;

/// A root that issues CRLs and a P-256 leaf that names [`LEAF_CRL`].
struct Pki {
    root: Ca,
    leaf_key: String,
    chain: Vec<Certificate>,
}

impl Pki {
    fn new() -> Self {
        let root = Ca::root("Fuzz Root");
        let mut params = leaf_params("fuzz signer");
        params.serial_number = Some(SerialNumber::from(LEAF_SERIAL));
        params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![LEAF_CRL.to_string()] }];
        let key = leaf_key(KeyKind::P256);
        let leaf = root.issue(&params, &key.spki);
        Self { chain: vec![leaf, root.cert.clone()], leaf_key: key.pem, root }
    }

    fn envelope(&self) -> Vec<u8> {
        let chain: String = self.chain.iter().map(Certificate::to_pem).collect();
        let options = SignOptions {
            signing_time: ts(SIGNED_AT),
            expiry: Some(ts("2026-01-01T00:00:00Z")),
            signing_agent: "fuzz".into(),
        };
        Signer::from_pem(self.leaf_key.as_bytes(), chain.as_bytes())
            .expect("signer")
            .sign(&descriptor(), &options)
            .expect("sign")
    }

    /// The root's subject name, DER.
    fn issuer_name(&self) -> Vec<u8> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(self.root.cert.der()).expect("root");
        cert.subject().as_raw().to_vec()
    }
}

fn fixture_anchors() -> Vec<Certificate> {
    Certificate::parse_pem(&fixture("notation/truststore/x509/ca/valid-trust-store/NotationTestRoot.pem"))
        .expect("fixture root")
}

fn revocation(action: ValidationAction) -> VerifyOptions {
    VerifyOptions { actions: ValidationActions { revocation: action, ..ValidationActions::strict() } }
}

/// An envelope's members, decoded.
struct Parts {
    protected: Vec<u8>,
    payload: Vec<u8>,
    header: serde_json::Map<String, Value>,
    signature: Vec<u8>,
}

impl Parts {
    fn of(envelope: &[u8]) -> Self {
        let value: Value = serde_json::from_slice(envelope).expect("envelope JSON");
        let member = |name: &str| URL_SAFE_NO_PAD.decode(value[name].as_str().expect(name)).expect(name);
        Self {
            protected: member("protected"),
            payload: member("payload"),
            header: value["header"].as_object().cloned().expect("header"),
            signature: member("signature"),
        }
    }

    fn signing_input(&self) -> String {
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&self.protected), URL_SAFE_NO_PAD.encode(&self.payload))
    }

    fn encode(&self) -> Vec<u8> {
        json!({
            "payload": URL_SAFE_NO_PAD.encode(&self.payload),
            "protected": URL_SAFE_NO_PAD.encode(&self.protected),
            "header": self.header,
            "signature": URL_SAFE_NO_PAD.encode(&self.signature),
        })
        .to_string()
        .into_bytes()
    }
}

/// Mutates one part of `envelope`; the signed parts of an ES256 envelope are signed again with
/// `key_pem` so that the mutation is seen by what comes after the integrity check.
fn mutate_envelope(m: &mut Mutator<'_>, envelope: &[u8], key_pem: Option<&str>, donors: &[Vec<u8>]) -> Vec<u8> {
    let mut parts = Parts::of(envelope);
    let mut resign_after = false;
    match m.rng.below(8) {
        0 | 1 => {
            parts.protected = m.json(&parts.protected).unwrap_or_else(|| m.bytes(parts.protected.clone()));
            resign_after = true;
        }
        2 => {
            parts.payload = m.json(&parts.payload).unwrap_or_else(|| m.bytes(parts.payload.clone()));
            resign_after = true;
        }
        3 => {
            // One certificate's DER changed.
            if let Some(Value::Array(x5c)) = parts.header.get_mut("x5c")
                && !x5c.is_empty()
            {
                let i = m.rng.below(x5c.len());
                let der = x5c[i].as_str().and_then(|t| STANDARD.decode(t).ok()).unwrap_or_default();
                x5c[i] = Value::String(STANDARD.encode(m.bytes(der)));
            }
        }
        4 => {
            // The chain reordered, shortened or given certificates of other chains.
            if let Some(Value::Array(x5c)) = parts.header.get_mut("x5c") {
                match m.rng.below(4) {
                    0 => x5c.reverse(),
                    1 if !x5c.is_empty() => {
                        x5c.remove(m.rng.below(x5c.len()));
                    }
                    _ => {
                        if let Some(donor) = m.rng.pick(donors) {
                            let at = m.rng.below(x5c.len() + 1);
                            x5c.insert(at, Value::String(STANDARD.encode(donor)));
                        }
                    }
                }
            }
        }
        5 => {
            let mut header = Value::Object(parts.header.clone());
            m.value(&mut header);
            if let Value::Object(map) = header {
                parts.header = map;
            }
        }
        6 => parts.signature = m.bytes(parts.signature.clone()),
        _ => return m.mutate(envelope),
    }
    if resign_after && let Some(key_pem) = key_pem {
        resign(&mut parts, key_pem);
    }
    parts.encode()
}

/// Signs the protected header and payload of `parts` again (ES256).
fn resign(parts: &mut Parts, key_pem: &str) {
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(key_pem).expect("p256 key");
    let signature: p256::ecdsa::Signature = key.sign(parts.signing_input().as_bytes());
    parts.signature = signature.to_bytes().to_vec();
}

#[test]
fn envelopes_verify_or_fail_closed() {
    let pki = Pki::new();
    let fixture_envelope = fixture("notation/envelope/ca_valid_sig_env.json");
    let ours = pki.envelope();
    let seeds = vec![fixture_envelope.clone(), ours.clone()];
    let mut anchors = fixture_anchors();
    anchors.push(pki.root.cert.clone());
    let donors: Vec<Vec<u8>> =
        anchors.iter().chain(&pki.chain).map(|c| c.der().to_vec()).chain([b"\x30\x03\x02\x01\x00".to_vec()]).collect();
    let now = ts(NOW);
    let ours_digest = descriptor().digest;
    let check = |input: &[u8]| {
        for digest in [FIXTURE_DIGEST, ours_digest.as_str()] {
            if let Ok(verified) = verify(input, &anchors, digest, now)
                && verified.target.digest != digest
            {
                return Err(format!("digest: verified for {digest}, the payload names {}", verified.target.digest));
            }
        }
        Ok(())
    };
    assert!(verify(&fixture_envelope, &anchors, FIXTURE_DIGEST, now).is_ok(), "the fixture verifies");
    let key_pem = pki.leaf_key.clone();
    target("notary-envelope").iterations(60).run_with(
        &seeds,
        |m| {
            if m.rng.one_in(2) {
                mutate_envelope(m, &ours, Some(&key_pem), &donors)
            } else {
                mutate_envelope(m, &fixture_envelope, None, &donors)
            }
        },
        check,
    );
}

#[test]
fn envelopes_as_plain_bytes() {
    let pki = Pki::new();
    let seeds = vec![fixture("notation/envelope/ca_valid_sig_env.json"), pki.envelope()];
    let mut anchors = fixture_anchors();
    anchors.push(pki.root.cert.clone());
    let now = ts(NOW);
    target("notary-envelope-bytes").iterations(600).run(&seeds, |input| {
        let _ = verify(input, &anchors, FIXTURE_DIGEST, now);
        Ok(())
    });
}

#[test]
fn envelopes_against_a_trust_policy_with_crls() {
    let pki = Pki::new();
    let ours = pki.envelope();
    let policy = TrustPolicyDocument::parse(
        br#"{"version": "1.0", "trustPolicies": [{"name": "fuzz", "registryScopes": ["*"],
            "signatureVerification": {"level": "strict"}, "trustStores": ["ca:fuzz"], "trustedIdentities": ["*"]}]}"#,
    )
    .expect("policy");
    let mut stores = TrustStores::new();
    stores.insert(TrustStoreRef::ca("fuzz"), vec![pki.root.cert.clone()]).expect("store");
    let reference = format!("registry.example.com/shop/app@{}", descriptor().digest);
    let mut crls = FetchedCrls::new();
    crls.insert(LEAF_CRL, Ok(signed_crl(&pki, &[], &[])));
    let now = ts(NOW);
    let first = verify_with_policy_and_crls(&ours, &policy, &stores, &reference, now, &crls);
    assert!(matches!(first, Ok(Progress::Done(_))), "the seed verifies: {first:?}");
    let donors: Vec<Vec<u8>> = pki.chain.iter().map(|c| c.der().to_vec()).collect();
    let key_pem = pki.leaf_key.clone();
    target("notary-envelope-policy").iterations(60).run_with(
        std::slice::from_ref(&ours),
        |m| mutate_envelope(m, &ours, Some(&key_pem), &donors),
        |input| {
            let _ = verify_with_policy_and_crls(input, &policy, &stores, &reference, now, &crls);
            Ok(())
        },
    );
}

/// DER, by hand, for CRLs whose every part the fuzzer may change.
mod der {
    pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }

    pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &parts.concat())
    }

    pub fn int_bytes(mut bytes: Vec<u8>) -> Vec<u8> {
        if bytes.first().is_none_or(|b| b & 0x80 != 0) {
            bytes.insert(0, 0);
        }
        tlv(0x02, &bytes)
    }

    pub fn int(value: u64) -> Vec<u8> {
        int_bytes(value.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect())
    }

    pub fn ext(oid: &[u8], critical: bool, value: Vec<u8>) -> Vec<u8> {
        let mut parts = vec![tlv(0x06, oid)];
        if critical {
            parts.push(tlv(0x01, &[0xff]));
        }
        parts.push(tlv(0x04, &value));
        seq(&parts)
    }

    pub fn points(uri: &str) -> Vec<u8> {
        seq(&[seq(&[tlv(0xa0, &tlv(0xa0, &tlv(0x86, uri.as_bytes())))])])
    }

    pub const CRL_NUMBER: &[u8] = &[0x55, 0x1d, 0x14];
    pub const REASON_CODE: &[u8] = &[0x55, 0x1d, 0x15];
    pub const INVALIDITY_DATE: &[u8] = &[0x55, 0x1d, 0x18];
    pub const DELTA_CRL_INDICATOR: &[u8] = &[0x55, 0x1d, 0x1b];
    pub const ISSUING_DISTRIBUTION_POINT: &[u8] = &[0x55, 0x1d, 0x1c];
    pub const FRESHEST_CRL: &[u8] = &[0x55, 0x1d, 0x2e];
    pub const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
}

/// A CRL of the fuzz root, signed by it, with `entries` and `extensions` (DER) and the dates of
/// January 2025.
fn signed_crl(pki: &Pki, entries: &[Vec<u8>], extensions: &[Vec<u8>]) -> Arc<[u8]> {
    let dates = [der::tlv(0x17, b"250101000000Z"), der::tlv(0x17, b"250201000000Z")];
    Arc::from(signed_crl_parts(pki, &dates, entries, extensions))
}

fn signed_crl_parts(pki: &Pki, dates: &[Vec<u8>], entries: &[Vec<u8>], extensions: &[Vec<u8>]) -> Vec<u8> {
    use rcgen::SigningKey;
    let algorithm = der::seq(&[der::tlv(0x06, der::ECDSA_SHA384)]);
    let mut tbs = vec![der::int(1), algorithm.clone(), pki.issuer_name()];
    tbs.extend_from_slice(dates);
    if !entries.is_empty() {
        tbs.push(der::seq(entries));
    }
    if !extensions.is_empty() {
        tbs.push(der::tlv(0xa0, &der::seq(extensions)));
    }
    let tbs = der::seq(&tbs);
    let signature = pki.root.issuer.key().sign(&tbs).expect("sign");
    der::seq(&[tbs, algorithm, der::tlv(0x03, &[&[0u8][..], &signature].concat())])
}

/// A CRL made of random, partly mutated parts, signed by the root: entries (serials with
/// leading zeros, the leaf's serial, reason codes in and out of range, invalidity dates),
/// CRL numbers, delta indicators, issuing distribution points and freshest-CRL pointers.
fn generated_crl(m: &mut Mutator<'_>, pki: &Pki) -> Vec<u8> {
    let time = |m: &mut Mutator<'_>| match m.rng.below(6) {
        0 => der::tlv(0x17, b"250105000000Z"),
        1 => der::tlv(0x18, b"20250105000000Z"),
        2 => der::tlv(0x17, b"491231235959Z"),
        3 => der::tlv(0x18, b"99991231235959Z"),
        4 => der::tlv(0x17, &m.bytes(b"250105000000Z".to_vec())),
        _ => der::tlv(0x18, &m.bytes(b"19500101000000Z".to_vec())),
    };
    let mut entries = Vec::new();
    for _ in 0..m.rng.below(4) {
        let serial = match m.rng.below(4) {
            0 => der::int(LEAF_SERIAL),
            1 => der::int_bytes(vec![0, 0, 0x12, 0x34, 0x56, 0x78]),
            2 => der::tlv(0x02, &m.bytes(LEAF_SERIAL.to_be_bytes().to_vec())),
            _ => der::int(m.rng.next_u64()),
        };
        let mut parts = vec![serial, time(m)];
        let mut extensions = Vec::new();
        if m.rng.one_in(2) {
            let code = m.rng.below(16) as u8;
            extensions.push(der::ext(der::REASON_CODE, m.rng.one_in(4), der::tlv(0x0a, &[code])));
        }
        if m.rng.one_in(4) {
            extensions.push(der::ext(der::INVALIDITY_DATE, false, time(m)));
        }
        if !extensions.is_empty() {
            parts.push(der::seq(&extensions));
        }
        let entry = der::seq(&parts);
        entries.push(if m.rng.one_in(4) { m.bytes(entry) } else { entry });
    }
    let mut extensions = Vec::new();
    if !m.rng.one_in(4) {
        extensions.push(der::ext(der::CRL_NUMBER, false, der::int(m.rng.below(20) as u64)));
    }
    if m.rng.one_in(3) {
        extensions.push(der::ext(der::DELTA_CRL_INDICATOR, true, der::int(m.rng.below(20) as u64)));
    }
    if m.rng.one_in(3) {
        extensions.push(der::ext(der::FRESHEST_CRL, false, der::points(DELTA_CRL)));
    }
    if m.rng.one_in(4) {
        let idp = der::seq(&[der::tlv(0xa0, &der::tlv(0xa0, &der::tlv(0x86, LEAF_CRL.as_bytes())))]);
        extensions.push(der::ext(der::ISSUING_DISTRIBUTION_POINT, true, m.bytes(idp)));
    }
    if m.rng.one_in(4)
        && let Some(i) = (!extensions.is_empty()).then(|| m.rng.below(extensions.len()))
    {
        extensions[i] = m.bytes(extensions[i].clone());
    }
    let dates = if m.rng.one_in(5) {
        vec![time(m)]
    } else {
        vec![der::tlv(0x17, b"250101000000Z"), der::tlv(0x17, b"250201000000Z")]
    };
    let crl = signed_crl_parts(pki, &dates, &entries, &extensions);
    if m.rng.one_in(5) { m.bytes(crl) } else { crl }
}

#[test]
fn crls_are_used_or_refused() {
    let pki = Pki::new();
    let envelope = pki.envelope();
    let anchors = vec![pki.root.cert.clone()];
    let digest = descriptor().digest;
    let now = ts(NOW);
    let revoking = signed_crl(
        &pki,
        &[der::seq(&[der::int(LEAF_SERIAL), der::tlv(0x17, b"250105000000Z")])],
        &[der::ext(der::CRL_NUMBER, false, der::int(7))],
    );
    let seeds = vec![revoking.to_vec(), signed_crl(&pki, &[], &[]).to_vec()];
    let first = verify_with_crls(&envelope, &anchors, &digest, now, &revocation(ValidationAction::Enforce), &{
        let mut crls = FetchedCrls::new();
        crls.insert(LEAF_CRL, Ok(revoking.clone()));
        crls
    });
    assert!(first.is_err(), "the seed CRL revokes the leaf: {first:?}");
    let pki = &pki;
    target("notary-crl").iterations(15).run_with(
        &seeds,
        |m| {
            if m.rng.one_in(3) {
                let seed = m.seed();
                m.mutate(seed)
            } else {
                generated_crl(m, pki)
            }
        },
        |input| {
            let _ = crl_validity(input);
            let body: Arc<[u8]> = Arc::from(input);
            let mut crls = FetchedCrls::new();
            crls.insert(LEAF_CRL, Ok(body.clone()));
            crls.insert(DELTA_CRL, Ok(body));
            // Enforce, or Log for inputs of odd length (each verification costs three ECDSA checks).
            let action = if input.len() % 2 == 0 { ValidationAction::Enforce } else { ValidationAction::Log };
            let _ = verify_with_crls(&envelope, &anchors, &digest, now, &revocation(action), &crls);
            Ok(())
        },
    );
}

#[test]
fn certificates_parse_or_refuse() {
    let pki = Pki::new();
    let mut seeds = vec![fixture("notation/truststore/x509/ca/valid-trust-store/NotationTestRoot.pem")];
    seeds.extend(pki.chain.iter().map(|c| c.der().to_vec()));
    seeds.push(pki.chain.iter().map(Certificate::to_pem).collect::<String>().into_bytes());
    seeds.push(pki.chain.iter().flat_map(|c| c.der().to_vec()).collect());
    for name in ["p521-leaf.pem", "p521-root.pem"] {
        seeds.push(key_file(name).into_bytes());
    }
    target("notary-certificates").iterations(3_000).run(&seeds, |input| {
        if let Ok(certs) = Certificate::parse_pem_or_der(input) {
            for cert in &certs {
                let again = Certificate::parse_pem(cert.to_pem().as_bytes())
                    .map_err(|e| format!("certificate re-read: {e}"))?;
                if again.len() != 1 || again[0].der() != cert.der() {
                    return Err("certificate round trip: a certificate does not read back as itself".into());
                }
                let _ = (cert.subject(), cert.not_before(), cert.not_after(), cert.sha256_fingerprint());
            }
            let _ = SigningChain::new(certs);
        }
        let _ = Certificate::from_der(input.to_vec());
        let _ = SigningChain::from_pem(input);
        Ok(())
    });
}

#[test]
fn trust_policies_parse_or_refuse() {
    let seeds = fixtures("notation/trustpolicy", ".json");
    let references = [
        format!("registry.acme-rockets.io/software/net-monitor@{FIXTURE_DIGEST}"),
        format!("localhost:5000/test-repo@{FIXTURE_DIGEST}"),
        "registry.example.com/app:tag".to_string(),
        String::new(),
    ];
    target("notary-trust-policy").iterations(4_000).run(&seeds, |input| {
        if let Ok(document) = TrustPolicyDocument::parse(input) {
            for reference in &references {
                let _ = document.applicable_policy(reference);
            }
            let _ = document.applicable_policy(&text(input));
        }
        Ok(())
    });
}

#[test]
fn trusted_identities_parse_or_refuse_and_round_trip() {
    let seeds: Vec<Vec<u8>> = [
        "C=US, ST=WA, L=Seattle, O=Notary, CN=Notation Test Root",
        "CN=fuzz signer,O=Tidegate Test,C=US",
        r"C=US, O=Acme\, Inc., OU=R\+D, CN=signer\=1",
        "C=US, ST=WA, O=wabbit-network.io, OU=org1, CN=\\#hash",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    target("notary-trusted-identity").iterations(10_000).run(&seeds, |input| {
        let input = text(input);
        let Ok(name) = DistinguishedName::parse_trusted_identity(&input) else { return Ok(()) };
        let again = DistinguishedName::parse_trusted_identity(&name.to_string())
            .map_err(|e| format!("identity re-parse: {input:?} → {name} does not parse again: {e}"))?;
        if again != name || !name.is_subset_of(&again) {
            return Err(format!("identity round trip: {input:?} → {name} → {again}"));
        }
        Ok(())
    });
}

#[test]
fn signing_keys_load_or_refuse() {
    let pki = Pki::new();
    let chain: String = pki.chain.iter().map(Certificate::to_pem).collect();
    // The key and its chain in one input, split at a marker (as a Secret holds both).
    let join = |key: &str, chain: &str| format!("{key}\u{1f}{chain}").into_bytes();
    let seeds = vec![
        join(&pki.leaf_key, &chain),
        join(&key_file("ec-p256-sec1.pem"), &chain),
        join(&key_file("p521-leaf-key.pem"), &(key_file("p521-leaf.pem") + &key_file("p521-root.pem"))),
        join(&key_file("rsa-2048-pkcs1.pem"), &chain),
    ];
    let options = SignOptions { signing_time: Timestamp::UNIX_EPOCH, expiry: None, signing_agent: "fuzz".into() };
    target("notary-signing-key").iterations(200).run(&seeds, |input| {
        let (key, chain) = match input.iter().position(|b| *b == 0x1f) {
            Some(at) => (&input[..at], &input[at + 1..]),
            None => (input, &b""[..]),
        };
        if let Ok(signer) = Signer::from_pem(key, chain) {
            let _ = signer.sign(&descriptor(), &options);
        }
        Ok(())
    });
}

#[test]
fn resigned_envelopes_and_generated_crls_verify() {
    // The helpers above make envelopes and CRLs the library accepts; if they did not, the fuzz
    // targets would only ever test refusals.
    let pki = Pki::new();
    let mut parts = Parts::of(&pki.envelope());
    resign(&mut parts, &pki.leaf_key);
    let mut crls = FetchedCrls::new();
    crls.insert(LEAF_CRL, Ok(signed_crl(&pki, &[], &[der::ext(der::CRL_NUMBER, false, der::int(1))])));
    let result = verify_with_crls(
        &parts.encode(),
        std::slice::from_ref(&pki.root.cert),
        &descriptor().digest,
        ts(NOW),
        &revocation(ValidationAction::Enforce),
        &crls,
    );
    assert!(matches!(result, Ok(Progress::Done(_))), "{result:?}");
}
