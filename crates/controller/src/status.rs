//! The one status write of a reconcile: server-side apply under one field manager, sent only when
//! the status differs from what the API server has.

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Context, MANAGER};
use crate::error::Result;
use crate::metrics::KindLabel;

/// Applies `new` as the status of `name` unless it equals `old`. Returns whether it wrote.
pub async fn apply<K, S>(ctx: &Context, api: &Api<K>, name: &str, old: Option<&S>, new: &S) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if old == Some(new) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": new,
    });
    let written = api.patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    // The next reconcile may take this version from the watch cache (see `stores::latest`).
    ctx.stores.versions.record(&written);
    let kind: &'static str = match K::kind(&()).as_ref() {
        "ImagePolicy" => "ImagePolicy",
        "Release" => "Release",
        "Promotion" => "Promotion",
        _ => "Other",
    };
    ctx.metrics.status_writes.get_or_create(&KindLabel { kind }).inc();
    Ok(true)
}
