//! Installing CustomResourceDefinitions and waiting until the API server serves them.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

use crate::Error;

/// Field manager used for everything the environment applies.
pub const FIELD_MANAGER: &str = "tidegate-testenv";

/// Applies the CRDs (server-side apply) and waits until each one is Established.
pub async fn install(client: &kube::Client, crds: &[CustomResourceDefinition]) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for crd in crds {
        let mut crd = crd.clone();
        crd.metadata.managed_fields = None;
        crd.metadata.resource_version = None;
        api.patch(&crd.name_any(), &params, &Patch::Apply(&crd)).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for crd in crds {
        loop {
            let current = api.get(&crd.name_any()).await?;
            if is_established(&current) {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout(format!("CRD {} to become Established", crd.name_any())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Whether a CRD has `Established=True`.
pub fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"))
}
