//! `crds/` must be exactly what the Rust types generate; `cargo xtask crds` rewrites it.

use std::path::Path;

#[test]
fn checked_in_crds_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let mut drift = Vec::new();
    for (file, crd) in tidegate_api::crds::all() {
        let generated = tidegate_api::crds::to_yaml(&crd).expect("CRD serialises to YAML");
        let checked_in = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        if generated != checked_in {
            drift.push(file);
        }
    }
    assert!(drift.is_empty(), "crds/ is out of date for {drift:?}: run `cargo xtask crds` and commit the result");
}

#[test]
fn crds_directory_holds_no_stale_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let expected: Vec<&str> = tidegate_api::crds::all().iter().map(|(file, _)| *file).collect();
    let stale: Vec<String> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !expected.contains(&name.as_str()))
        .collect();
    assert!(stale.is_empty(), "crds/ holds files no Rust type generates: {stale:?}");
}
