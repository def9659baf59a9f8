//! Helpers for the end-to-end tests in `tests/tests/`.

use std::path::PathBuf;

use serde_json::Value;

/// The repository's `docs/examples` directory.
pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/examples")
}

/// One object (by kind and name) from a YAML file under `docs/examples`, as JSON.
pub fn example(file: &str, kind: &str, name: &str) -> Value {
    let path = examples_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {}", path.display()))
}

/// Sets the value at a JSON pointer, creating objects on the way; `Null` removes the field.
pub fn set(object: &mut Value, pointer: &str, value: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap_or_else(|| panic!("bad pointer {pointer}"));
    let mut target = object;
    for part in parent.split('/').skip(1) {
        target = match part.parse::<usize>() {
            Ok(index) => &mut target[index],
            Err(_) => {
                if target.get(part).is_none() {
                    target[part] = Value::Object(Default::default());
                }
                &mut target[part]
            }
        };
    }
    match (value, target) {
        (Value::Null, Value::Object(map)) => {
            map.remove(key);
        }
        (value, target) => target[key] = value,
    }
}
