//! Applying YAML manifests (any kind, several documents per file) with server-side apply, the way
//! `kubectl apply --server-side` does.

use std::path::Path;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};

use crate::Error;

/// Applies every document of a multi-document YAML text. Namespaced objects without a namespace
/// go to `default_namespace`. Returns the applied objects as `Kind/namespace/name`.
pub async fn apply_yaml(
    client: &kube::Client,
    yaml: &str,
    default_namespace: &str,
    field_manager: &str,
) -> Result<Vec<String>, Error> {
    let mut applied = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject = serde_yaml::from_value(value)?;
        let types = object.types.clone().ok_or_else(|| Error::Manifest("a document has no apiVersion/kind".into()))?;
        let gvk = GroupVersionKind::try_from(&types).map_err(|e| Error::Manifest(e.to_string()))?;
        let name = object
            .metadata
            .name
            .clone()
            .ok_or_else(|| Error::Manifest(format!("a {} has no metadata.name", gvk.kind)))?;
        let (resource, capabilities) = discovery::pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let ns = object.metadata.namespace.clone().unwrap_or_else(|| default_namespace.to_string());
                applied.push(format!("{}/{ns}/{name}", gvk.kind));
                Api::namespaced_with(client.clone(), &ns, &resource)
            }
            Scope::Cluster => {
                applied.push(format!("{}/{name}", gvk.kind));
                Api::all_with(client.clone(), &resource)
            }
        };
        api.patch(&name, &PatchParams::apply(field_manager).force(), &Patch::Apply(&object)).await?;
    }
    Ok(applied)
}

/// Applies every `*.yaml` file of a directory, in file-name order.
pub async fn apply_dir(
    client: &kube::Client,
    dir: &Path,
    default_namespace: &str,
    field_manager: &str,
) -> Result<Vec<String>, Error> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    let mut applied = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        applied.extend(apply_yaml(client, &text, default_namespace, field_manager).await?);
    }
    Ok(applied)
}
