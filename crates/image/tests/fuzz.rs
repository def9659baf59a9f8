//! Fuzzing the parsers of `tidegate-image`, which builds the controller's own image from inputs
//! it reads: Go binaries' build information (Trivy's module version), `Cargo.lock`, `cargo
//! metadata` output, `--push` targets and layer paths; and the OCI documents it writes, read
//! back as manifests. Each must answer `Ok` or `Err` (or `None`), never panic.
//!
//! Bounded run: `cargo test -p tidegate-image --test fuzz`. Longer run: see `docs/fuzzing.md`.

use tidegate_fuzz::{fixture, fixtures, target, text};
use tidegate_image::push::Target;
use tidegate_image::sbom::{go_module_version, lock_checksums};
use tidegate_image::tar::Tree;
use tidegate_providers::registry::types::{ImageIndex, ImageManifest};

#[test]
fn go_build_information() {
    let seeds = vec![
        b"\xff Go buildinf:\x08\x02path\tgithub.com/aquasecurity/trivy/cmd/trivy\nmod\tgithub.com/aquasecurity/trivy\tv0.74.0\th1:abc=\ndep\tgithub.com/x/y\tv1.2.3\th1:def=\n\x00".to_vec(),
        b"dep\tgithub.com/aquasecurity/trivy\tv0.1\n".to_vec(),
    ];
    target("image-go-buildinfo").iterations(3_000).run(&seeds, |input| {
        for module in ["github.com/aquasecurity/trivy", "github.com/x/y", ""] {
            if let Some((version, sum)) = go_module_version(input, module)
                && (!version.starts_with('v') || sum.as_deref().is_some_and(|s| !s.starts_with("h1:")))
            {
                return Err(format!("module version: {version:?} {sum:?}"));
            }
        }
        Ok(())
    });
}

#[test]
fn cargo_lock_checksums() {
    let lock = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.lock")).expect("Cargo.lock");
    // The whole lock file is large; its first packages are seed enough.
    let seeds = vec![lock.iter().take(6_000).copied().collect::<Vec<u8>>()];
    target("image-cargo-lock").iterations(1_500).run(&seeds, |input| {
        let _ = lock_checksums(&text(input));
        Ok(())
    });
}

#[test]
fn push_targets_and_layer_paths() {
    let seeds: Vec<Vec<u8>> = [
        "registry.example.com:5000/team/tidegate-controller:0.1.0",
        "127.0.0.1:5000/tidegate",
        "/usr/local/bin/tidegate-controller",
        "etc/ssl/certs/ca-certificates.crt",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    target("image-targets-and-paths").iterations(2_000).run(&seeds, |input| {
        let input = text(input);
        if let Ok(parsed) = input.parse::<Target>()
            && parsed.repository.to_string().is_empty()
        {
            return Err(format!("push target: {input:?} parsed to an empty repository"));
        }
        let mut tree = Tree::new();
        if tree.file(&input, b"x".to_vec(), 0o644).is_ok() {
            let _ = tree.dir(&format!("{input}/sub"), 0o755, (65532, 65532));
            let _ = tree.to_tar(1_700_000_000);
        }
        Ok(())
    });
}

#[test]
fn oci_documents_read_back() {
    let mut seeds = fixtures("oci/examples", ".json");
    seeds.push(fixture("oci/schema/image-index-schema.json"));
    target("image-oci-documents").iterations(2_000).run(&seeds, |input| {
        let _ = serde_json::from_slice::<ImageManifest>(input);
        let _ = serde_json::from_slice::<ImageIndex>(input);
        Ok(())
    });
}
