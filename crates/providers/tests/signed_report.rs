//! Signed Trivy reports in a real registry (`spec.scan.scanner: trivyReport`): CI attaches the
//! report to the digest as an OCI referrer and signs the report's manifest with the real
//! `notation` CLI. Only a fresh report of exactly that digest, signed by a key the trust policy
//! trusts, gives findings; everything else leaves the scan waiting. The controller's signer,
//! trusted by the same policy, signs images and refuses to sign a report (or any artifact) named
//! as a candidate, while promotion records are still signed.

mod common;

use std::sync::Arc;

use common::{Identity, Setup, notation_sign};
use serde_json::json;
use tidegate_api::{Promotion, RecordEvent};
use tidegate_core::Digest;
use tidegate_core::provenance::{Proven, statement};
use tidegate_notary::SIGNATURE_ARTIFACT_TYPE;
use tidegate_providers::provenance::Attestor;
use tidegate_providers::registry::fallback_tag;
use tidegate_providers::registry::types::{Descriptor, ImageIndex, OCI_INDEX, OCI_MANIFEST};
use tidegate_providers::signed_report::{REPORT_ARTIFACT_TYPE, SignedReportScanner};
use tidegate_providers::{ProviderError, ScanReport, ScanRequest, Scanner, Signer};
use tidegate_testenv::registry::RegistryKind;

/// A Trivy report (SchemaVersion 2) of `image`, made `hours_ago`, with one fixable HIGH finding `id`.
fn report(image: &str, hours_ago: i64, id: &str) -> String {
    let created = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(hours_ago);
    json!({
        "SchemaVersion": 2, "CreatedAt": created.to_string(), "ArtifactName": image, "ArtifactType": "container_image",
        "Results": [{"Target": "app (alpine 3.20)", "Vulnerabilities": [{"VulnerabilityID": id, "PkgName": "openssl",
            "InstalledVersion": "3.1.0-r0", "FixedVersion": "3.1.4-r0", "Severity": "HIGH"}]}]
    })
    .to_string()
}

/// What `scanner` says about `digest` of `image` now, reports counting up to a day old.
async fn scan(scanner: &SignedReportScanner, image: &str, digest: &Digest) -> Option<ScanReport> {
    let request = ScanRequest {
        namespace: "shop",
        image,
        digest,
        workload_namespaces: &[],
        max_age: jiff::SignedDuration::from_hours(24),
        now: jiff::Timestamp::now(),
        deadline: None,
    };
    scanner.scan(&request).await.expect("scan")
}

fn ids(report: &ScanReport) -> Vec<&str> {
    report.findings.iter().map(|f| f.id.as_str()).collect()
}

#[tokio::test]
async fn only_a_fresh_report_of_the_digest_signed_by_a_trusted_key_counts() {
    let s = Setup::new(RegistryKind::Distribution).await;
    let (a, b) = (s.image("1.0", 1024).await, s.image("1.1", 1100).await);
    let (image_a, image_b) = (s.pinned(&a), s.pinned(&b));
    let ci = Identity::new("ci");
    let stranger = Identity::new("stranger");
    let scanner = SignedReportScanner::new(Arc::new(ci.signer(s.client.clone(), false)));

    assert_eq!(scan(&scanner, &image_a, &a).await, None, "no report yet: the scan waits");

    // Unsigned.
    s.attach(&a, &report(&image_a, 1, "CVE-UNSIGNED"), "application/json").await;
    assert_eq!(scan(&scanner, &image_a, &a).await, None, "an unsigned report does not count");
    // Signed, but by a key the trust policy does not trust.
    s.attach_signed(&a, &report(&image_a, 1, "CVE-STRANGER"), &stranger.files).await;
    assert_eq!(scan(&scanner, &image_a, &a).await, None, "an untrusted signature does not count");
    // Signed by CI and attached to A, but a report of B.
    let of_b = s.attach_signed(&a, &report(&image_b, 1, "CVE-OF-B"), &ci.files).await;
    assert_eq!(scan(&scanner, &image_a, &a).await, None, "a report of another digest does not count");
    // Signed by CI, of A, but two days old.
    s.attach_signed(&a, &report(&image_a, 48, "CVE-STALE"), &ci.files).await;
    assert_eq!(scan(&scanner, &image_a, &a).await, None, "a stale report does not count");

    // Signed by CI, of A, fresh: its findings, dated by its CreatedAt.
    let fresh = report(&image_a, 2, "CVE-FRESH");
    let fresh_digest = s.attach_signed(&a, &fresh, &ci.files).await;
    let found = scan(&scanner, &image_a, &a).await.expect("the trusted fresh report counts");
    assert_eq!(ids(&found), ["CVE-FRESH"]);
    let created: jiff::Timestamp = serde_json::from_str::<serde_json::Value>(&fresh).expect("json")["CreatedAt"]
        .as_str()
        .expect("at")
        .parse()
        .expect("time");
    assert_eq!(found.produced_at, Some(created));
    let finding = &found.findings[0];
    assert!(finding.fixable && finding.package == "openssl", "{finding:?}");

    // Reports attached to A never count for B: not through B's referrers, and not when someone
    // lists them in B's referrers tag index (anyone who may push may write that tag), even the
    // trusted fresh report that names B.
    assert_eq!(scan(&scanner, &image_b, &b).await, None, "A's report is not B's");
    let listed = s.client.referrers(&s.repo, a.as_str(), Some(REPORT_ARTIFACT_TYPE)).await.expect("referrers");
    let forged = ImageIndex {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: listed.into_iter().filter(|d| d.digest == fresh_digest || d.digest == of_b).collect(),
        annotations: None,
    };
    assert_eq!(forged.manifests.len(), 2);
    let bytes = serde_json::to_vec(&forged).expect("index");
    s.client.put_manifest(&s.repo, &fallback_tag(b.as_str()), OCI_INDEX, &bytes).await.expect("forge B's index");
    assert_eq!(s.client.referrers(&s.repo, b.as_str(), Some(REPORT_ARTIFACT_TYPE)).await.expect("referrers").len(), 2);
    assert_eq!(scan(&scanner, &image_b, &b).await, None, "a report attached to A does not count for B");

    // A newer trusted report wins, its layer typed with the artifact type itself.
    let newer = s.attach(&a, &report(&image_a, 1, "CVE-NEWER"), REPORT_ARTIFACT_TYPE).await;
    let (ok, out) = notation_sign(&ci.files, &format!("{}@{newer}", s.repo));
    assert!(ok, "{out}");
    let found = scan(&scanner, &image_a, &a).await.expect("counts");
    assert_eq!(ids(&found), ["CVE-NEWER"], "the newest trusted report wins");
}

#[tokio::test]
async fn the_signer_signs_images_and_records_but_never_a_report_named_as_a_candidate() {
    let s = Setup::new(RegistryKind::Referrers).await;
    let image_digest = s.image("1.0", 2048).await;
    let image = s.pinned(&image_digest);
    let controller = Identity::new("tidegate");
    let signer = controller.signer(s.client.clone(), true);
    let scanner = SignedReportScanner::new(Arc::new(controller.signer(s.client.clone(), false)));

    // An image: signed and verified.
    signer.sign(&image, &image_digest).await.expect("sign the image");
    assert!(signer.verify(&image, &image_digest, "").await.expect("verify").is_valid());

    // A report someone pushed, named as a Release's candidate: refused, nothing signed, and so
    // it never becomes a trusted report.
    let text = report(&image, 1, "CVE-FORGED");
    let report_digest: Digest = s.attach(&image_digest, &text, "application/json").await.parse().expect("digest");
    let report_image = s.pinned(&report_digest);
    match signer.sign(&report_image, &report_digest).await {
        Err(ProviderError::Permanent(why)) => {
            assert!(why.contains("not a container image") && why.contains(REPORT_ARTIFACT_TYPE), "{why}")
        }
        other => panic!("a report artifact must not be signed: {other:?}"),
    }
    let signatures = s.client.referrers(&s.repo, report_digest.as_str(), Some(SIGNATURE_ARTIFACT_TYPE)).await;
    assert!(signatures.expect("referrers").is_empty(), "nothing was signed");
    assert_eq!(scan(&scanner, &image, &image_digest).await, None);

    // The older artifact form, without artifactType and with the report type as config: refused too.
    let config = s.client.push_blob(&s.repo, b"{}").await.expect("config");
    let layer = s.client.push_blob(&s.repo, text.as_bytes()).await.expect("layer");
    let legacy = json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": REPORT_ARTIFACT_TYPE, "digest": config, "size": 2},
        "layers": [{"mediaType": "application/json", "digest": layer, "size": text.len()}]
    });
    let bytes = serde_json::to_vec(&legacy).expect("manifest");
    let (legacy_digest, _) = s.client.put_manifest(&s.repo, "legacy", OCI_MANIFEST, &bytes).await.expect("push");
    let legacy_digest: Digest = legacy_digest.parse().expect("digest");
    let refused = signer.sign(&s.pinned(&legacy_digest), &legacy_digest).await.expect_err("refused");
    assert!(refused.to_string().contains("config media type"), "{refused}");

    // An index of images is signed; an index listing the report is not.
    let index = |manifests: Vec<Descriptor>| {
        serde_json::to_vec(&ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.into()),
            manifests,
            annotations: None,
        })
        .expect("index")
    };
    let image_entry = s.client.head_manifest(&s.repo, image_digest.as_str()).await.expect("head").expect("image");
    let report_entry = s.client.head_manifest(&s.repo, report_digest.as_str()).await.expect("head").expect("report");
    let (good, _) =
        s.client.put_manifest(&s.repo, "multi", OCI_INDEX, &index(vec![image_entry.clone()])).await.expect("push");
    let good: Digest = good.parse().expect("digest");
    signer.sign(&s.pinned(&good), &good).await.expect("an index of images is signed");
    let (bad, _) = s
        .client
        .put_manifest(&s.repo, "mixed", OCI_INDEX, &index(vec![image_entry, report_entry]))
        .await
        .expect("push");
    let bad: Digest = bad.parse().expect("digest");
    let refused = signer.sign(&s.pinned(&bad), &bad).await.expect_err("refused");
    assert!(refused.to_string().contains("listed in the index"), "{refused}");

    // The controller's own promotion records are still signed (through the artifact path).
    let promotion: Promotion = serde_json::from_value(json!({
        "metadata": {"name": "shop-app-1", "namespace": "shop"},
        "spec": {"policy": "shop-app", "release": "shop-app-1", "digest": image_digest.to_string()},
        "status": {"phase": "Rejected", "conditions": [{"type": "Ready", "status": "False", "reason": "Rejected",
            "message": "no", "lastTransitionTime": "2026-12-01T11:12:00Z"}]}
    }))
    .expect("promotion");
    let record =
        statement(RecordEvent::Rejected, &promotion, None, &s.repo.to_string(), &image_digest, &Proven::default())
            .expect("statement");
    let record_digest = signer.attach(&image, &image_digest, &record).await.expect("attach a record");
    let records = signer.records(&image, &image_digest).await.expect("records");
    assert!(records.iter().any(|r| r.digest == record_digest && r.is_trusted()), "{records:?}");

    // Through the referrers API too, a report CI attached and signed counts.
    s.attach_signed(&image_digest, &report(&image, 1, "CVE-CI"), &controller.files).await;
    let found = scan(&scanner, &image, &image_digest).await.expect("counts");
    assert_eq!(ids(&found), ["CVE-CI"]);
}
