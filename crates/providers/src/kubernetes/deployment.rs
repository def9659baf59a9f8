//! Deployments: in place (a rolling update of the one Deployment), or side by side in two colour
//! slots: the user's Deployment is slot `blue`, Tidegate's copy `<name>-green` is slot `green`.
//! The live slot is recorded on the user's Deployment; for `http` workloads the Service selector
//! follows it (blue-green), for workers the other slot is scaled down (replace) or kept until the
//! monitor window ends (overlap).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, Patch, PostParams};
use serde_json::json;
use tidegate_core::promotion::{Health, Progress};
use tidegate_core::rollout::{Retire, RolloutPlan};

use super::{ANNOTATION_ACTIVE_SLOT, ANNOTATION_REPLICAS, KubernetesTargets, LABEL_SLOT, Resolved, container_index};
use crate::{ProviderError, Result};

const BLUE: &str = "blue";
const GREEN: &str = "green";

fn other(slot: &str) -> &'static str {
    if slot == GREEN { BLUE } else { GREEN }
}

fn slot_name(base: &str, slot: &str) -> String {
    if slot == BLUE { base.to_string() } else { format!("{base}-{GREEN}") }
}

async fn get_base(targets: &KubernetesTargets, target: &Resolved<'_>) -> Result<(Api<Deployment>, Deployment)> {
    let api: Api<Deployment> = Api::namespaced(targets.client().clone(), &target.namespace);
    let deployment = api
        .get_opt(&target.target.name)
        .await?
        .ok_or_else(|| ProviderError::Permanent(format!("target {} not found", target.display())))?;
    Ok((api, deployment))
}

/// A Deployment read only to look (never to change it): from the deployer watch's cache when
/// that can tell, else from the API server.
async fn look(targets: &KubernetesTargets, namespace: &str, name: &str) -> Result<Option<Deployment>> {
    if let Some(seen) = targets.cached(namespace, name) {
        return Ok(seen);
    }
    let api: Api<Deployment> = Api::namespaced(targets.client().clone(), namespace);
    Ok(api.get_opt(name).await?)
}

/// The base Deployment, read only to look.
async fn look_base(targets: &KubernetesTargets, target: &Resolved<'_>) -> Result<Deployment> {
    look(targets, &target.namespace, &target.target.name)
        .await?
        .ok_or_else(|| ProviderError::Permanent(format!("target {} not found", target.display())))
}

/// The managed container's image.
pub(crate) fn image_of(deployment: &Deployment, container: Option<&str>) -> Option<String> {
    let pod = deployment.spec.as_ref()?.template.spec.as_ref()?;
    let i = container_index(&pod.containers, container)?;
    pod.containers[i].image.clone()
}

fn container_name(deployment: &Deployment, container: Option<&str>) -> Result<String> {
    let pod = deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let containers = pod.map(|p| p.containers.as_slice()).unwrap_or_default();
    container_index(containers, container).map(|i| containers[i].name.clone()).ok_or_else(|| {
        ProviderError::Permanent(format!(
            "Deployment {} has no container {}",
            deployment.metadata.name.clone().unwrap_or_default(),
            container.unwrap_or("at all")
        ))
    })
}

/// Rolled out: the controller saw the current spec, every replica is updated and available, and
/// no old Pod is still terminating (it may still answer through the Service: a staging test run
/// then would reach the old version).
fn rolled_out(deployment: &Deployment) -> Result<bool> {
    let Some(status) = deployment.status.as_ref() else { return Ok(false) };
    if let Some(stuck) =
        status.conditions.as_ref().and_then(|c| c.iter().find(|c| c.type_ == "Progressing" && c.status == "False"))
    {
        return Err(ProviderError::Permanent(format!(
            "Deployment {} is not progressing: {}",
            deployment.metadata.name.clone().unwrap_or_default(),
            stuck.message.clone().unwrap_or_default()
        )));
    }
    let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    Ok(status.observed_generation >= deployment.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= wanted
        && status.available_replicas.unwrap_or(0) >= wanted
        && status.replicas.unwrap_or(0) == wanted
        && status.terminating_replicas.unwrap_or(0) == 0)
}

async fn set_image(
    targets: &KubernetesTargets,
    api: &Api<Deployment>,
    deployment: &Deployment,
    container: Option<&str>,
    image: &str,
    replicas: Option<i32>,
) -> Result<()> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let container = container_name(deployment, container)?;
    let mut patch = json!({"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}});
    if let Some(replicas) = replicas {
        patch["spec"]["replicas"] = json!(replicas);
    }
    api.patch(&name, &targets.params(), &Patch::Strategic(&patch)).await?;
    Ok(())
}

/// Rolling update of the one Deployment.
pub(super) async fn converge_in_place(
    targets: &KubernetesTargets,
    target: &Resolved<'_>,
    image: &str,
) -> Result<Progress> {
    let container = target.target.container.as_deref();
    // A poll of a rollout under way, which writes nothing, is answered from the watch's copy.
    if let Some(Some(seen)) = targets.cached(&target.namespace, &target.target.name)
        && image_of(&seen, container).as_deref() == Some(image)
    {
        return Ok(in_place_progress(target, &seen, image));
    }
    let (api, deployment) = get_base(targets, target).await?;
    if image_of(&deployment, container).as_deref() != Some(image) {
        set_image(targets, &api, &deployment, container, image, None).await?;
        return Ok(Progress::InProgress(format!("{}: image set to {image}", target.display())));
    }
    Ok(in_place_progress(target, &deployment, image))
}

/// How far the rollout of `image`, which `deployment` already runs, got.
fn in_place_progress(target: &Resolved<'_>, deployment: &Deployment, image: &str) -> Progress {
    match rolled_out(deployment) {
        Ok(true) => Progress::Done,
        Ok(false) => Progress::InProgress(format!("{}: rolling out {image}", target.display())),
        Err(e) => Progress::Failed(e.to_string()),
    }
}

pub(super) async fn in_place_image(targets: &KubernetesTargets, target: &Resolved<'_>) -> Result<Option<String>> {
    let deployment = look_base(targets, target).await?;
    Ok(image_of(&deployment, target.target.container.as_deref()))
}

/// Makes the user's Deployment slot `blue`: its Pods carry the slot label, and it records the
/// live slot and the replicas a live slot runs.
async fn adopt(targets: &KubernetesTargets, api: &Api<Deployment>, base: Deployment) -> Result<Deployment> {
    if adopted(&base) {
        return Ok(base);
    }
    let annotations = base.metadata.annotations.clone().unwrap_or_default();
    let replicas = base.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let patch = json!({
        "metadata": {"annotations": {
            ANNOTATION_ACTIVE_SLOT: annotations.get(ANNOTATION_ACTIVE_SLOT).cloned().unwrap_or_else(|| BLUE.into()),
            ANNOTATION_REPLICAS: annotations.get(ANNOTATION_REPLICAS).cloned().unwrap_or_else(|| replicas.to_string()),
        }},
        "spec": {"template": {"metadata": {"labels": {LABEL_SLOT: BLUE}}}}
    });
    let name = base.metadata.name.clone().unwrap_or_default();
    Ok(api.patch(&name, &targets.params(), &Patch::Strategic(&patch)).await?)
}

/// Whether the user's Deployment is slot `blue` already (see [`adopt`]).
fn adopted(base: &Deployment) -> bool {
    let annotations = base.metadata.annotations.as_ref();
    let labelled = base
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .is_some_and(|l| l.get(LABEL_SLOT).map(String::as_str) == Some(BLUE));
    labelled
        && annotations.is_some_and(|a| a.contains_key(ANNOTATION_ACTIVE_SLOT) && a.contains_key(ANNOTATION_REPLICAS))
}

/// The one step of a side-by-side rollout that writes nothing and reads nothing but the two
/// Deployments: waiting for the idle slot, which runs `image` at full scale, to become available.
/// `None` for every other step.
fn waiting_for_idle_slot(
    target: &Resolved<'_>,
    base: &Deployment,
    green: Option<&Deployment>,
    image: &str,
) -> Option<Progress> {
    let container = target.target.container.as_deref();
    if !adopted(base) {
        return None;
    }
    let live = live_slot(base);
    let (live_deployment, idle_deployment) = if live == BLUE { (Some(base), green) } else { (green, Some(base)) };
    let idle_deployment = idle_deployment?;
    let ready_to_wait = image_of(live_deployment?, container).as_deref() != Some(image)
        && image_of(idle_deployment, container).as_deref() == Some(image)
        && idle_deployment.spec.as_ref().and_then(|s| s.replicas) == Some(slot_replicas(base));
    match ready_to_wait.then(|| rolled_out(idle_deployment))? {
        Ok(true) => None,
        Ok(false) => Some(Progress::InProgress(format!(
            "{}: waiting for slot {} to become available",
            target.display(),
            other(live)
        ))),
        Err(e) => Some(Progress::Failed(e.to_string())),
    }
}

fn live_slot(base: &Deployment) -> &str {
    match base.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_ACTIVE_SLOT)).map(String::as_str) {
        Some(GREEN) => GREEN,
        _ => BLUE,
    }
}

fn slot_replicas(base: &Deployment) -> i32 {
    base.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REPLICAS))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| base.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))
}

/// Labels with which a GitOps tool marks an object as part of what it applies from Git. The green
/// slot is Tidegate's object, not in Git, so it does not inherit them: with Argo CD's label
/// tracking (`app.kubernetes.io/instance` by default, `argocd.argoproj.io/instance` as the usual
/// custom key) a copy carrying the Application's label counts as an extra resource of that
/// Application and an automated sync with pruning deletes it. Flux prunes only what its
/// inventory lists, so its labels would not get the copy deleted, but they would name a
/// Kustomization that never applied it. Annotations (Argo CD's `argocd.argoproj.io/tracking-id`
/// among them) are not copied at all.
const GITOPS_TRACKING_LABELS: [&str; 4] = [
    "app.kubernetes.io/instance",
    "argocd.argoproj.io/instance",
    "kustomize.toolkit.fluxcd.io/name",
    "kustomize.toolkit.fluxcd.io/namespace",
];

/// A copy of the base Deployment for slot green.
fn green_from(base: &Deployment, image: &str, container: Option<&str>, replicas: i32) -> Result<Deployment> {
    let name = slot_name(base.metadata.name.as_deref().unwrap_or_default(), GREEN);
    let mut spec =
        base.spec.clone().ok_or_else(|| ProviderError::Permanent(format!("Deployment {name}: base has no spec")))?;
    spec.replicas = Some(replicas);
    spec.selector.match_labels.get_or_insert_with(BTreeMap::new).insert(LABEL_SLOT.into(), GREEN.into());
    let template_meta = spec.template.metadata.get_or_insert_with(Default::default);
    template_meta.labels.get_or_insert_with(BTreeMap::new).insert(LABEL_SLOT.into(), GREEN.into());
    let pod = spec
        .template
        .spec
        .as_mut()
        .ok_or_else(|| ProviderError::Permanent(format!("Deployment {name}: no pod spec")))?;
    let i = container_index(&pod.containers, container)
        .ok_or_else(|| ProviderError::Permanent(format!("Deployment {name}: container not found")))?;
    pod.containers[i].image = Some(image.to_string());
    let mut labels = base.metadata.labels.clone().unwrap_or_default();
    labels.retain(|key, _| !GITOPS_TRACKING_LABELS.contains(&key.as_str()));
    labels.insert(LABEL_SLOT.into(), GREEN.into());
    labels.insert("app.kubernetes.io/managed-by".into(), "tidegate".into());
    Ok(Deployment {
        metadata: kube::api::ObjectMeta {
            name: Some(name),
            namespace: base.metadata.namespace.clone(),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

async fn switch_service(targets: &KubernetesTargets, target: &Resolved<'_>, slot: &str) -> Result<bool> {
    let Some(service) = target.target.service.as_deref() else { return Ok(false) };
    let api: Api<Service> = Api::namespaced(targets.client().clone(), &target.namespace);
    let current = api
        .get_opt(service)
        .await?
        .ok_or_else(|| ProviderError::Permanent(format!("Service {}/{service} not found", target.namespace)))?;
    let selected =
        current.spec.as_ref().and_then(|s| s.selector.as_ref()).and_then(|s| s.get(LABEL_SLOT)).map(String::as_str);
    if selected == Some(slot) {
        return Ok(false);
    }
    let patch = json!({"spec": {"selector": {LABEL_SLOT: slot}}});
    api.patch(service, &targets.params(), &Patch::Strategic(&patch)).await?;
    Ok(true)
}

/// One step of a side-by-side rollout to `image`.
pub(super) async fn converge_slots(
    targets: &KubernetesTargets,
    target: &Resolved<'_>,
    plan: &RolloutPlan,
    image: &str,
) -> Result<Progress> {
    // A poll while the idle slot comes up, which writes nothing, is answered from the watch's copy.
    if let Some(Some(base)) = targets.cached(&target.namespace, &target.target.name)
        && let Some(green) = targets.cached(&target.namespace, &slot_name(&target.target.name, GREEN))
        && let Some(waiting) = waiting_for_idle_slot(target, &base, green.as_ref(), image)
    {
        return Ok(waiting);
    }
    let (api, base) = get_base(targets, target).await?;
    let base = adopt(targets, &api, base).await?;
    let container = target.target.container.as_deref();
    let replicas = slot_replicas(&base);
    let live = live_slot(&base).to_string();
    let base_name = target.target.name.clone();
    let slot = |s: &str| slot_name(&base_name, s);
    let green = api.get_opt(&slot(GREEN)).await?;
    let deployment_of = |s: &str| if s == BLUE { Some(base.clone()) } else { green.clone() };

    let live_deployment = deployment_of(&live)
        .ok_or_else(|| ProviderError::Permanent(format!("live slot {live} of {} is missing", target.display())))?;
    if image_of(&live_deployment, container).as_deref() == Some(image) {
        // The live slot runs the image: make sure traffic points at it and it is healthy.
        if plan.switch_traffic && switch_service(targets, target, &live).await? {
            return Ok(Progress::InProgress(format!("{}: traffic switched to slot {live}", target.display())));
        }
        if live_deployment.spec.as_ref().and_then(|s| s.replicas) != Some(replicas) {
            set_image(targets, &api, &live_deployment, container, image, Some(replicas)).await?;
            return Ok(Progress::InProgress(format!("{}: scaling slot {live} to {replicas}", target.display())));
        }
        if !rolled_out(&live_deployment).map_err(|e| ProviderError::Permanent(e.to_string()))? {
            return Ok(Progress::InProgress(format!("{}: slot {live} is not available yet", target.display())));
        }
        if plan.retire_previous == Retire::WhenAvailable {
            retire(targets, &api, deployment_of(other(&live))).await?;
        }
        return Ok(Progress::Done);
    }

    // Bring the idle slot up with the image, then make it live.
    let idle = other(&live);
    match deployment_of(idle) {
        None => {
            let created = green_from(&base, image, container, replicas)?;
            api.create(&PostParams { field_manager: targets.params().field_manager, ..Default::default() }, &created)
                .await?;
            return Ok(Progress::InProgress(format!("{}: created slot {idle} with {image}", target.display())));
        }
        Some(deployment) => {
            let running = image_of(&deployment, container);
            let scaled = deployment.spec.as_ref().and_then(|s| s.replicas) == Some(replicas);
            if running.as_deref() != Some(image) || !scaled {
                set_image(targets, &api, &deployment, container, image, Some(replicas)).await?;
                return Ok(Progress::InProgress(format!("{}: slot {idle} set to {image}", target.display())));
            }
            match rolled_out(&deployment) {
                Ok(true) => {}
                Ok(false) => {
                    return Ok(Progress::InProgress(format!(
                        "{}: waiting for slot {idle} to become available",
                        target.display()
                    )));
                }
                Err(e) => return Ok(Progress::Failed(e.to_string())),
            }
        }
    }
    let patch = json!({"metadata": {"annotations": {ANNOTATION_ACTIVE_SLOT: idle}}});
    api.patch(&base_name, &targets.params(), &Patch::Merge(&patch)).await?;
    if plan.switch_traffic {
        switch_service(targets, target, idle).await?;
    }
    Ok(Progress::InProgress(format!("{}: slot {idle} is live", target.display())))
}

async fn retire(targets: &KubernetesTargets, api: &Api<Deployment>, deployment: Option<Deployment>) -> Result<()> {
    let Some(deployment) = deployment else { return Ok(()) };
    if deployment.spec.as_ref().and_then(|s| s.replicas) == Some(0) {
        return Ok(());
    }
    let name = deployment.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &targets.params(), &Patch::Merge(&json!({"spec": {"replicas": 0}}))).await?;
    Ok(())
}

pub(super) async fn retire_idle(targets: &KubernetesTargets, target: &Resolved<'_>) -> Result<()> {
    let (api, base) = get_base(targets, target).await?;
    let idle = other(live_slot(&base));
    let deployment =
        if idle == BLUE { Some(base.clone()) } else { api.get_opt(&slot_name(&target.target.name, GREEN)).await? };
    retire(targets, &api, deployment).await
}

/// Whether a ReplicaSet of the Deployment or of its colour slot ran `image`.
pub(super) async fn ran(targets: &KubernetesTargets, target: &Resolved<'_>, image: &str) -> Result<bool> {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    let owners = [target.target.name.clone(), slot_name(&target.target.name, GREEN)];
    let sets: Api<ReplicaSet> = Api::namespaced(targets.client().clone(), &target.namespace);
    Ok(sets.list(&Default::default()).await?.items.iter().any(|rs| {
        rs.metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| o.iter().any(|r| r.kind == "Deployment" && owners.contains(&r.name)))
            && rs
                .spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .and_then(|t| t.spec.as_ref())
                .is_some_and(|p| p.containers.iter().any(|c| c.image.as_deref() == Some(image)))
    }))
}

pub(super) async fn live_slot_image(targets: &KubernetesTargets, target: &Resolved<'_>) -> Result<Option<String>> {
    let (_, live) = base_and_live_slot(targets, target).await?;
    Ok(live.and_then(|d| image_of(&d, target.target.container.as_deref())))
}

/// The base Deployment and the Deployment of the live slot (the base itself while blue is live),
/// each read once, only to look.
pub(super) async fn base_and_live_slot(
    targets: &KubernetesTargets,
    target: &Resolved<'_>,
) -> Result<(Deployment, Option<Deployment>)> {
    let base = look_base(targets, target).await?;
    if live_slot(&base) == BLUE {
        Ok((base.clone(), Some(base)))
    } else {
        let green = look(targets, &target.namespace, &slot_name(&target.target.name, GREEN)).await?;
        Ok((base, green))
    }
}

/// The base Deployment, read only to look.
pub(super) async fn base(targets: &KubernetesTargets, target: &Resolved<'_>) -> Result<Deployment> {
    look_base(targets, target).await
}

/// Available, and no container of the live Pods running `image` has restarted.
pub(super) async fn health(
    targets: &KubernetesTargets,
    target: &Resolved<'_>,
    plan: &RolloutPlan,
    image: &str,
) -> Result<Health> {
    let (deployment, slot) = if plan.side_by_side {
        let (base, live) = base_and_live_slot(targets, target).await?;
        (live, Some(live_slot(&base).to_string()))
    } else {
        (Some(look_base(targets, target).await?), None)
    };
    let Some(deployment) = deployment else {
        return Ok(Health::Unhealthy(format!("{}: the live Deployment is gone", target.display())));
    };
    let available = deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Available" && c.status == "True"));
    if !available {
        return Ok(Health::Unhealthy(format!(
            "{}: Deployment {} is not Available",
            target.display(),
            deployment.metadata.name.clone().unwrap_or_default()
        )));
    }
    let mut selector: BTreeMap<String, String> =
        deployment.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    if let Some(slot) = slot {
        selector.insert(LABEL_SLOT.into(), slot);
    }
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let pods: Api<Pod> = Api::namespaced(targets.client().clone(), &target.namespace);
    let pods = pods.list(&ListParams::default().labels(&labels.join(","))).await?;
    for pod in pods.items {
        let runs_image =
            pod.spec.as_ref().is_some_and(|s| s.containers.iter().any(|c| c.image.as_deref() == Some(image)));
        if !runs_image {
            continue;
        }
        let restarts: i32 = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0);
        if restarts > 0 {
            return Ok(Health::Unhealthy(format!(
                "{}: Pod {} restarted {restarts} time(s)",
                target.display(),
                pod.metadata.name.unwrap_or_default()
            )));
        }
    }
    Ok(Health::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_api::image_policy::KubernetesTarget;

    fn base() -> Deployment {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web", "namespace": "shop",
                "labels": {
                    "app.kubernetes.io/name": "web",
                    "app.kubernetes.io/instance": "shop-prod",
                    "argocd.argoproj.io/instance": "shop-prod",
                    "kustomize.toolkit.fluxcd.io/name": "apps",
                    "kustomize.toolkit.fluxcd.io/namespace": "flux-system"
                },
                "annotations": {"argocd.argoproj.io/tracking-id": "shop-prod:apps/Deployment:shop/web"}
            },
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "shop-prod"}},
                    "spec": {"containers": [{"name": "app", "image": "registry.example/shop/app@sha256:old"}]}
                }
            }
        }))
        .expect("deployment")
    }

    #[test]
    fn a_rollout_is_done_only_once_no_old_pod_is_terminating() {
        let mut deployment = base();
        deployment.metadata.generation = Some(2);
        deployment.status = Some(serde_json::from_value(json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2, "terminatingReplicas": 1
        })).expect("status"));
        assert!(!rolled_out(&deployment).expect("progressing"), "an old Pod may still answer through the Service");
        deployment.status.as_mut().expect("status").terminating_replicas = Some(0);
        assert!(rolled_out(&deployment).expect("progressing"));
        deployment.status.as_mut().expect("status").terminating_replicas = None;
        assert!(rolled_out(&deployment).expect("progressing"), "API servers without the field");
    }

    #[test]
    fn only_the_wait_for_the_idle_slot_is_answered_without_a_fresh_read() {
        let spec: KubernetesTarget =
            serde_json::from_value(json!({"kind": "Deployment", "name": "web", "namespace": "shop"})).expect("target");
        let target = Resolved::new(&spec, "shop");
        let new = "registry.example/shop/app@sha256:new";
        let mut blue = base();
        blue.metadata.annotations = Some(
            [
                (ANNOTATION_ACTIVE_SLOT.to_string(), BLUE.to_string()),
                (ANNOTATION_REPLICAS.to_string(), "2".to_string()),
            ]
            .into(),
        );
        let labels = blue.spec.as_mut().and_then(|s| s.template.metadata.as_mut()).and_then(|m| m.labels.as_mut());
        labels.expect("labels").insert(LABEL_SLOT.into(), BLUE.into());
        let mut green = green_from(&blue, new, None, 2).expect("copy");
        green.metadata.generation = Some(1);
        green.status = Some(serde_json::from_value(json!({"observedGeneration": 1, "replicas": 2})).expect("status"));
        let waiting = |blue: &Deployment, green: &Deployment| waiting_for_idle_slot(&target, blue, Some(green), new);

        assert!(
            matches!(waiting(&blue, &green), Some(Progress::InProgress(m)) if m.contains("waiting for slot green"))
        );
        let mut stuck = green.clone();
        stuck.status = Some(
            serde_json::from_value(json!({"conditions": [
            {"type": "Progressing", "status": "False", "message": "deadline exceeded"}]}))
            .expect("status"),
        );
        assert!(matches!(waiting(&blue, &stuck), Some(Progress::Failed(m)) if m.contains("deadline exceeded")));

        // Every other step writes, or reads more than the two Deployments: it reads them fresh.
        let mut available = green.clone();
        available.status = Some(
            serde_json::from_value(json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
                "availableReplicas": 2}))
            .expect("status"),
        );
        assert_eq!(waiting(&blue, &available), None, "making it live is a write");
        let mut scaled_down = green.clone();
        scaled_down.spec.as_mut().expect("spec").replicas = Some(0);
        assert_eq!(waiting(&blue, &scaled_down), None, "scaling it up is a write");
        let older = green_from(&blue, "registry.example/shop/app@sha256:older", None, 2).expect("copy");
        assert_eq!(waiting(&blue, &older), None, "setting its image is a write");
        assert_eq!(waiting(&base(), &green), None, "adopting the base is a write");
        let mut green_live = blue.clone();
        green_live
            .metadata
            .annotations
            .as_mut()
            .expect("annotations")
            .insert(ANNOTATION_ACTIVE_SLOT.into(), GREEN.into());
        assert_eq!(waiting(&green_live, &green), None, "the live slot runs it: traffic and health are read");
        assert_eq!(waiting_for_idle_slot(&target, &blue, None, new), None, "creating the slot is a write");
    }

    #[test]
    fn the_green_copy_carries_no_gitops_tracking_marks() {
        let green = green_from(&base(), "registry.example/shop/app@sha256:new", None, 2).expect("copy");
        let labels = green.metadata.labels.clone().unwrap_or_default();
        for key in GITOPS_TRACKING_LABELS {
            assert!(!labels.contains_key(key), "{key} copied: {labels:?}");
        }
        assert_eq!(green.metadata.annotations, None);
        assert_eq!(labels.get("app.kubernetes.io/name").map(String::as_str), Some("web"));
        assert_eq!(labels.get(LABEL_SLOT).map(String::as_str), Some(GREEN));
        assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("tidegate"));
        // The Pods keep their labels: GitOps tools track top-level objects, and Services select Pods.
        let spec = green.spec.expect("spec");
        let pod_labels = spec.template.metadata.and_then(|m| m.labels).unwrap_or_default();
        assert_eq!(pod_labels.get("app.kubernetes.io/instance").map(String::as_str), Some("shop-prod"));
        assert_eq!(pod_labels.get(LABEL_SLOT).map(String::as_str), Some(GREEN));
        let image = spec.template.spec.and_then(|p| p.containers.into_iter().next()).and_then(|c| c.image);
        assert_eq!(image.as_deref(), Some("registry.example/shop/app@sha256:new"));
    }
}
