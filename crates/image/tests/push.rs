//! The image built from small stand-in files: twice the same digest, and pushed to a real
//! loopback registry, where the manifest comes back with its annotations, the SBOM as a referrer
//! and a Notary Project signature that the real `notation verify` accepts.

use std::process::Command;
use std::sync::Arc;

use serde_json::json;
use tidegate_image::layout::{self, Metadata};
use tidegate_image::push::{self, Target};
use tidegate_image::rootfs::Inputs;
use tidegate_image::sbom::{self, GoModule, SPDX_MEDIA_TYPE};
use tidegate_providers::registry::types::ImageManifest;
use tidegate_providers::registry::{ClientOptions, RegistryClient};
use tidegate_testenv::pki::write_code_signing_identity;
use tidegate_testenv::registry::{Registry, RegistryAuth, RegistryKind, RegistryOptions};
use tidegate_testenv::tools::SupplyChainTools;

fn inputs() -> Inputs {
    Inputs {
        controller: b"\x7fELF stand-in controller".to_vec(),
        kubectl_plugin: b"\x7fELF stand-in plugin".to_vec(),
        trivy: b"\x7fELF stand-in trivy\ndep\tgithub.com/aquasecurity/trivy\tv0.74.0\th1:abc=\n".to_vec(),
        ca_certificates: b"-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n".to_vec(),
    }
}

fn metadata() -> Metadata {
    Metadata {
        source_date_epoch: 1_700_000_000,
        source: "https://github.com/tidegate/tidegate".into(),
        revision: "0123456789abcdef0123456789abcdef01234567".into(),
        version: "0.1.0".into(),
        title: "tidegate-controller".into(),
        licenses: Some("Apache-2.0".into()),
    }
}

fn sbom_for(digest: &str) -> Vec<u8> {
    let cargo_metadata = json!({
        "packages": [{"id": "path+file:///src#tidegate-controller@0.1.0", "name": "tidegate-controller",
                      "version": "0.1.0", "source": null, "license": "Apache-2.0"}],
        "resolve": {"nodes": [{"id": "path+file:///src#tidegate-controller@0.1.0", "deps": []}]},
    });
    let (version, sum) = sbom::go_module_version(&inputs().trivy, "github.com/aquasecurity/trivy").expect("trivy");
    let go = GoModule {
        path: "github.com/aquasecurity/trivy".into(),
        version,
        sum,
        file: "/usr/local/bin/trivy".into(),
        sha256: "00".repeat(32),
    };
    sbom::spdx(&cargo_metadata, "", &["tidegate-controller"], &go, &metadata(), digest).expect("sbom")
}

#[tokio::test]
async fn the_image_is_reproducible_and_pushed_with_annotations_sbom_and_a_signature_notation_verifies() {
    // Built twice, written twice: the same digest and the same layout bytes.
    let image = layout::build(&inputs(), &metadata()).expect("build");
    let again = layout::build(&inputs(), &metadata()).expect("build again");
    assert_eq!(image.digest(), again.digest());
    let (one, two) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let sbom = sbom_for(&image.digest());
    layout::write_layout(one.path(), &image, "0.1.0", &sbom).expect("layout");
    layout::write_layout(two.path(), &again, "0.1.0", &sbom_for(&again.digest())).expect("layout");
    for file in ["index.json", layout::SBOM_FILE] {
        assert_eq!(
            std::fs::read(one.path().join(file)).expect("read"),
            std::fs::read(two.path().join(file)).expect("read")
        );
    }

    let registry = Registry::start(RegistryOptions { kind: RegistryKind::Referrers, auth: RegistryAuth::Anonymous })
        .await
        .expect("registry");
    let plain_http = registry.plain_http_hosts().into_iter().collect();
    let client = Arc::new(RegistryClient::new(ClientOptions { plain_http, ..Default::default() }).expect("client"));
    let target: Target = format!("{}/tidegate/controller:0.1.0", registry.host()).parse().expect("target");
    let pushed = push::push(&client, &target, &image, &sbom).await.expect("push");
    assert_eq!(pushed.reference, format!("{}/tidegate/controller@{}", registry.host(), image.digest()));

    // The manifest, by digest and by tag, is the one built here, with its annotations.
    let repo = &target.repository;
    let fetched = client.get_manifest(repo, &pushed.digest).await.expect("manifest");
    assert_eq!(fetched.bytes, image.manifest);
    assert_eq!(client.get_manifest(repo, "0.1.0").await.expect("tag").digest, pushed.digest);
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes).expect("parse");
    let annotations = manifest.annotations.expect("annotations");
    assert_eq!(annotations["org.opencontainers.image.revision"], metadata().revision);
    assert_eq!(annotations["org.opencontainers.image.created"], "2023-11-14T22:13:20Z");
    assert_eq!(annotations["org.opencontainers.image.version"], "0.1.0");
    assert_eq!(client.get_blob(repo, &manifest.layers[2].digest).await.expect("layer"), image.layers[2]);

    // The SBOM is a referrer of the image.
    let referrers = client.referrers(repo, &pushed.digest, Some(SPDX_MEDIA_TYPE)).await.expect("referrers");
    assert_eq!(referrers.iter().map(|d| d.digest.as_str()).collect::<Vec<_>>(), [pushed.sbom.as_str()]);
    let (payload, _) = client.artifact_payload(repo, &pushed.sbom, SPDX_MEDIA_TYPE).await.expect("sbom");
    assert_eq!(payload, sbom);
    let document: serde_json::Value = serde_json::from_slice(&payload).expect("spdx");
    assert_eq!(document["spdxVersion"], "SPDX-2.3");

    // Signed with the Notary Project; the real notation CLI verifies it with the root trusted.
    let pki = tempfile::tempdir().expect("pki");
    let identity = write_code_signing_identity(pki.path(), "tidegate-release", "tidegate").expect("identity");
    let (key, chain) = (std::fs::read(&identity.key).expect("key"), std::fs::read(&identity.chain).expect("chain"));
    let (signature, signer) = push::sign(client.clone(), &pushed, &key, &chain).await.expect("sign");
    assert!(signature.starts_with("sha256:") && signer.contains("tidegate-release"), "{signature} {signer}");
    let home = tempfile::tempdir().expect("notation home");
    let notation = |args: &[&str]| {
        let tools = SupplyChainTools::locate().expect("supply-chain tools");
        let output = Command::new(tools.notation())
            .args(args)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .output()
            .expect("run notation");
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "notation {args:?}: {text}");
        text
    };
    notation(&["cert", "add", "--type", "ca", "--store", "tidegate", &identity.root.display().to_string()]);
    notation(&["policy", "import", "--force", &identity.trust_policy.display().to_string()]);
    let out = notation(&["verify", "--insecure-registry", &pushed.reference]);
    assert!(out.contains("Successfully verified"), "{out}");

    // A key that does not match its certificate is refused before anything is pushed.
    let other = write_code_signing_identity(pki.path().join("other").as_path(), "other", "other").expect("other");
    let err = push::sign(client.clone(), &pushed, &std::fs::read(&other.key).expect("key"), &chain).await.unwrap_err();
    assert!(err.to_string().contains("signing"), "{err}");
}
