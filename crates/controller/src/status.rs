//! The one status write of a reconcile: server-side apply under one field manager, sent only when
//! the status differs from what the API server has.

use kube::Resource;
use serde::Serialize;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::metrics::KindLabel;
use crate::objects::ObjectApi;

/// Applies `new` as the status of `namespace`/`name` unless it equals `old`. Returns the object
/// as written (without managedFields), or `None` when nothing needed writing.
pub async fn apply<K, S>(
    ctx: &Context,
    api: &dyn ObjectApi<K>,
    namespace: &str,
    name: &str,
    old: Option<&S>,
    new: &S,
) -> Result<Option<K>>
where
    K: Resource<DynamicType = ()>,
    S: Serialize + PartialEq,
{
    if old == Some(new) {
        return Ok(None);
    }
    let status = serde_json::to_value(new).map_err(|e| Error::Invalid(format!("status: {e}")))?;
    let mut written = api.apply_status(namespace, name, status).await?;
    crate::stores::trim(&mut written);
    // The next reconcile may take this version from the watch cache (see `stores::latest`), and
    // its watch event starts no pass of its own (`stores::changed_by_others`).
    ctx.stores.versions.wrote(&written);
    let kind: &'static str = match K::kind(&()).as_ref() {
        "ImagePolicy" => "ImagePolicy",
        "Release" => "Release",
        "Promotion" => "Promotion",
        _ => "Other",
    };
    ctx.metrics.status_writes.get_or_create(&KindLabel { kind }).inc();
    Ok(Some(written))
}
