//! Properties of the generated schemas that `kubectl` users rely on.

use kube::CustomResourceExt;
use tidegate_api::{ImagePolicy, Promotion, Release};

fn printer_columns<K: CustomResourceExt>() -> Vec<String> {
    let crd = K::crd();
    crd.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .map(|cols| cols.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn printer_columns_answer_the_first_questions() {
    assert_eq!(printer_columns::<Release>(), ["Policy", "Phase", "Digest", "Blocking", "Reason", "Age"]);
    assert_eq!(printer_columns::<Promotion>(), ["Release", "Phase", "Approved By", "Digest", "Age"]);
    assert_eq!(printer_columns::<ImagePolicy>(), ["Image", "Production", "Staging", "Latest Release", "Age"]);
}

#[test]
fn every_property_has_a_description() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, prop) in props {
                let here = format!("{path}.{name}");
                // Condition and Time come from Kubernetes itself.
                if prop.get("description").is_none() && !path.ends_with(".conditions") {
                    missing.push(here.clone());
                }
                walk(&here, prop, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(path, items, missing);
        }
    }
    let mut missing = Vec::new();
    for (file, crd) in tidegate_api::crds::all() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema serialises");
        let root = &schema["openAPIV3Schema"]["properties"];
        for part in ["spec", "status"] {
            walk(&format!("{file}:{part}"), &root[part], &mut missing);
        }
    }
    assert!(missing.is_empty(), "properties without a doc comment (kubectl explain shows nothing): {missing:#?}");
}

#[test]
fn conditions_are_a_list_map_keyed_by_type() {
    for (file, crd) in tidegate_api::crds::all() {
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("schema serialises");
        let conditions = &schema["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{file}");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]), "{file}");
    }
}

#[test]
fn every_resource_has_status_subresource_short_name_and_category() {
    for (file, crd) in tidegate_api::crds::all() {
        assert_eq!(crd.spec.scope, "Namespaced", "{file}");
        assert!(crd.spec.versions[0].subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{file}");
        assert!(crd.spec.names.short_names.as_ref().is_some_and(|s| !s.is_empty()), "{file}");
        assert_eq!(crd.spec.names.categories.as_deref(), Some(&["tidegate".to_string()][..]), "{file}");
    }
}
