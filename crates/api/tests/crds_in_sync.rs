//! `crds/` must be exactly what the Rust types generate; `cargo xtask crds` rewrites it.

use std::path::Path;

const DIRS: [&str; 2] = ["../../crds", "../../charts/tidegate/crds"];

#[test]
fn checked_in_crds_match_the_rust_types() {
    let mut drift = Vec::new();
    for dir in DIRS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        for (file, crd) in tidegate_api::crds::all() {
            let generated = tidegate_api::crds::to_yaml(&crd).expect("CRD serialises to YAML");
            let checked_in = std::fs::read_to_string(dir.join(file)).unwrap_or_default();
            if generated != checked_in {
                drift.push(dir.join(file).display().to_string());
            }
        }
    }
    assert!(drift.is_empty(), "crds/ is out of date for {drift:?}: run `cargo xtask crds` and commit the result");
}

#[test]
fn crds_directory_holds_no_stale_files() {
    let expected: Vec<&str> = tidegate_api::crds::all().iter().map(|(file, _)| *file).collect();
    let mut stale = Vec::new();
    for dir in DIRS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        stale.extend(
            std::fs::read_dir(&dir)
                .expect("CRD directory exists")
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !expected.contains(&name.as_str())),
        );
    }
    assert!(stale.is_empty(), "crds/ holds files no Rust type generates: {stale:?}");
}
