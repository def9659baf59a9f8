//! Azure Container Apps and Container Apps Jobs as deploy targets.
//!
//! Each call reads the app (or job) as Azure has it, asks [`tidegate_core::container_apps`] for
//! the one next step, performs it and reports [`Progress`]; calling again when Azure already
//! matches writes nothing. Only the managed container's image, the revision suffix and the
//! traffic weights and labels are ever written; every other property is left as it is.

mod job;
pub mod scopes;

use std::sync::Arc;

use tidegate_core::container_apps::{self as aca, AppView, Goal, Provisioning, RevisionView, Step, Weight};
use tidegate_core::promotion::{Health, Progress};

use crate::azure::container_apps::ContainerApps;
use crate::azure::error::AzureError;
use crate::azure::models::{ContainerApp, Revision, Template, TrafficWeight};
use crate::azure::resource_id::ResourceId;
use crate::{ProviderError, Result};

pub use scopes::AzureScopes;

/// The label a staging candidate revision gets when the policy names none.
pub const DEFAULT_STAGING_LABEL: &str = "staging";

/// What an Azure target is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Staging in an app (or job) of its own.
    Staging {
        /// Label of the candidate revision.
        label: String,
        /// The staging target is the production app: the candidate runs beside it at 0 %.
        shares_production: bool,
        /// Jobs: start one execution and wait for it.
        verify_execution: bool,
    },
    /// Production.
    Production {
        /// Keep the previous revision active until the monitor window ends.
        keep_previous: bool,
        /// Canary steps, with how long the current one has been held.
        canary: Option<aca::Canary>,
    },
}

/// Container Apps and Jobs reached through one Azure credential, bounded per namespace by
/// [`AzureScopes`].
pub struct AzureTargets {
    apps: ContainerApps,
    scopes: AzureScopes,
}

impl AzureTargets {
    /// Targets changed through `apps`, for namespaces granted scopes in `scopes`.
    pub fn new(apps: ContainerApps, scopes: AzureScopes) -> Arc<Self> {
        Arc::new(Self { apps, scopes })
    }

    /// Requests sent to Azure so far, per operation: sent, throttled, client errors, server
    /// errors, transport errors.
    pub fn request_counts(&self) -> Vec<(String, [u64; 5])> {
        self.apps
            .arm()
            .stats()
            .into_iter()
            .map(|(op, s)| (op, [s.requests, s.throttled, s.client_errors, s.server_errors, s.transport_errors]))
            .collect()
    }

    /// ACR Tasks runs with the same Azure client and the same per-namespace grants.
    pub fn acr_tasks(&self) -> Arc<crate::acr_tasks::AcrTasks> {
        crate::acr_tasks::AcrTasks::new(self.apps.arm().clone(), self.scopes.clone())
    }

    /// The ARM client the targets use (shared with Azure's other adapters, so that they share
    /// the token cache and the request budget).
    pub fn arm(&self) -> &Arc<crate::azure::arm::Arm> {
        self.apps.arm()
    }

    /// The Azure scopes granted to namespaces.
    pub fn scopes(&self) -> &AzureScopes {
        &self.scopes
    }

    /// The resource id of a target of a policy in `namespace`, if the namespace may reach it.
    pub fn resolve(&self, namespace: &str, id: &str) -> Result<ResourceId> {
        self.scopes.check(namespace, id)
    }

    /// One convergence step of the app `id` towards `image` (`digest_hex` its digest's hex).
    pub async fn converge_app(
        &self,
        id: &ResourceId,
        container: Option<&str>,
        role: &Role,
        image: &str,
        digest_hex: &str,
    ) -> Result<Progress> {
        if let Role::Staging { shares_production: false, .. } = role {
            self.scopes.check_staging_app(id)?;
        }
        let goal = goal(role);
        let (app, view) = self.view(id, container, Some(image)).await?;
        let step = aca::next_step(&view, image, digest_hex, &goal);
        tracing::debug!(app = %id, ?step, "Container App step");
        let name = &app.name;
        Ok(match step {
            Step::CreateRevision { suffix, traffic } => {
                let traffic = traffic.map(|t| t.iter().map(to_azure).collect());
                self.apps.set_image(id, container, image, Some(&suffix), traffic).await.map_err(|e| self.error(e))?;
                Progress::InProgress(format!(
                    "Container App {name}: creating revision {name}--{suffix} running {image}"
                ))
            }
            Step::SetTraffic(traffic) => {
                let summary = describe(&traffic);
                self.apps.set_traffic(id, traffic.iter().map(to_azure).collect()).await.map_err(|e| self.error(e))?;
                Progress::InProgress(format!("Container App {name}: traffic set to {summary}"))
            }
            Step::Activate(revision) => {
                self.apps.activate(id, &revision).await.map_err(|e| self.error(e))?;
                Progress::InProgress(format!("Container App {name}: activated revision {revision}"))
            }
            Step::Deactivate(revisions) => {
                for revision in &revisions {
                    self.apps.deactivate(id, revision).await.map_err(|e| self.error(e))?;
                }
                Progress::InProgress(format!("Container App {name}: deactivated {}", revisions.join(", ")))
            }
            Step::Wait(why) => Progress::InProgress(format!("Container App {name}: {why}")),
            Step::Done => Progress::Done,
            Step::Failed(why) => Progress::Failed(format!("Container App {name}: {why}")),
        })
    }

    /// The image the app serves for `role`: the managed container of the revision with the most
    /// traffic (or the newest active one without ingress); for a staging revision beside
    /// production, of the revision carrying the staging label.
    pub async fn app_image(&self, id: &ResourceId, container: Option<&str>, role: &Role) -> Result<Option<String>> {
        let (_, view) = self.view(id, container, None).await?;
        if let Role::Staging { label, shares_production: true, .. } = role {
            let labelled = view.traffic.iter().find(|w| w.label.as_deref() == Some(label.as_str()));
            let revision = labelled.and_then(|w| w.revision.clone().or_else(|| view.latest_revision.clone()));
            let image = revision.and_then(|name| view.revisions.iter().find(|r| r.name == name)?.image.clone());
            return Ok(image);
        }
        Ok(view.live().and_then(|r| r.image.clone()))
    }

    /// The percentage of traffic the revision running `image` gets.
    pub async fn app_weight(&self, id: &ResourceId, container: Option<&str>, image: &str) -> Result<i32> {
        let (_, view) = self.view(id, container, None).await?;
        Ok(view.running(image).map(|r| view.weight_of(&r.name)).unwrap_or(0))
    }

    /// Health of the revision running `image`, with its replicas' restarts.
    pub async fn app_health(&self, id: &ResourceId, container: Option<&str>, image: &str) -> Result<Health> {
        let (_, view) = self.view(id, container, Some(image)).await?;
        Ok(aca::health(&view, image))
    }

    /// Deactivates the revisions kept for rollback (after the monitor window).
    pub async fn retire_app(&self, id: &ResourceId, container: Option<&str>) -> Result<()> {
        let (_, view) = self.view(id, container, None).await?;
        let Some(live) = view.live() else { return Ok(()) };
        if !view.multiple_revisions {
            return Ok(());
        }
        for revision in view.idle_besides(&live.name) {
            self.apps.deactivate(id, &revision).await.map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// Whether any revision of the app (active or not) ran `image`: Azure's own record.
    pub async fn app_ran(&self, id: &ResourceId, container: Option<&str>, image: &str) -> Result<bool> {
        let revisions = self.apps.revisions(id).await.map_err(|e| self.error(e))?;
        Ok(revisions.iter().any(|r| revision_image(r, container).as_deref() == Some(image)))
    }

    /// The URL staging tests call for the app: its label's
    /// (`https://<app>---<label>.<environment domain>`) when the candidate carries a label, the
    /// app's own otherwise.
    pub async fn staging_url(&self, id: &ResourceId, role: &Role) -> Result<String> {
        let app = self.apps.app(id).await.map_err(|e| self.error(e))?;
        let fqdn = app.properties.configuration.ingress.as_ref().and_then(|i| i.fqdn.clone()).ok_or_else(|| {
            ProviderError::Permanent(format!(
                "Container App {} has no ingress FQDN: HTTP checks need ingress on the staging app",
                app.name
            ))
        })?;
        let multiple = is_multiple(&app);
        Ok(match (role, multiple) {
            (Role::Staging { label, .. }, true) => label_url(&app.name, &fqdn, label),
            _ => format!("https://{fqdn}"),
        })
    }

    /// The app and the rollout's view of it; replicas are read for the revision running
    /// `image` only (their restarts decide health).
    async fn view(
        &self,
        id: &ResourceId,
        container: Option<&str>,
        image: Option<&str>,
    ) -> Result<(ContainerApp, AppView)> {
        let app = self.apps.app(id).await.map_err(|e| self.error(e))?;
        let revisions = self.apps.revisions(id).await.map_err(|e| self.error(e))?;
        let mut views: Vec<RevisionView> = revisions.iter().map(|r| revision_view(r, container)).collect();
        if let Some(image) = image {
            let running = views.iter_mut().filter(|r| r.image.as_deref() == Some(image) && r.active);
            for view in running {
                let replicas = self.apps.replicas(id, &view.name).await.map_err(|e| self.error(e))?;
                view.restarts = replicas
                    .iter()
                    .flat_map(|r| &r.properties.containers)
                    .filter(|c| container.is_none_or(|name| c.name == name))
                    .map(|c| u32::try_from(c.restart_count.unwrap_or(0).max(0)).unwrap_or(u32::MAX))
                    .sum();
            }
        }
        let ingress = app.properties.configuration.ingress.as_ref();
        let view = AppView {
            multiple_revisions: is_multiple(&app),
            ingress: ingress.is_some(),
            traffic: ingress.map(|i| i.traffic.iter().map(from_azure).collect()).unwrap_or_default(),
            latest_revision: app.properties.latest_revision_name.clone(),
            busy: app.properties.provisioning_state.as_deref().is_some_and(|s| !is_final(s)),
            revisions: views,
        };
        Ok((app, view))
    }
}

fn goal(role: &Role) -> Goal {
    match role {
        Role::Staging { label, shares_production: true, .. } => Goal::StagingRevision { label: label.clone() },
        Role::Staging { label, .. } => Goal::StagingApp { label: label.clone() },
        Role::Production { keep_previous, canary } => {
            Goal::Production { keep_previous: *keep_previous, canary: canary.clone() }
        }
    }
}

fn is_multiple(app: &ContainerApp) -> bool {
    app.properties.configuration.active_revisions_mode.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("multiple"))
}

/// Whether a provisioning state is final (`Succeeded`, `Failed`, `Canceled`).
fn is_final(state: &str) -> bool {
    ["Succeeded", "Failed", "Canceled"].iter().any(|s| s.eq_ignore_ascii_case(state))
}

/// The image of the managed container (the named one, or the first) of a template.
pub(crate) fn template_image(template: &Template, container: Option<&str>) -> Option<String> {
    let containers = &template.containers;
    let found = match container {
        Some(name) => containers.iter().find(|c| c.name == name),
        None => containers.first(),
    };
    found.map(|c| c.image.clone()).filter(|i| !i.is_empty())
}

/// The image of the managed container of a revision.
fn revision_image(revision: &Revision, container: Option<&str>) -> Option<String> {
    template_image(&revision.properties.template, container)
}

fn revision_view(revision: &Revision, container: Option<&str>) -> RevisionView {
    let p = &revision.properties;
    let provisioning = match p.provisioning_state.as_deref() {
        Some(s) if s.eq_ignore_ascii_case("Provisioned") => Provisioning::Succeeded,
        Some(s) if s.eq_ignore_ascii_case("Failed") => Provisioning::Failed(
            p.provisioning_error.clone().unwrap_or_else(|| "no provisioning error given".to_string()),
        ),
        _ => Provisioning::InProgress,
    };
    let running_ok = p
        .running_state
        .as_deref()
        .is_none_or(|s| ["Running", "RunningAtMaxScale", "Processing"].iter().any(|ok| ok.eq_ignore_ascii_case(s)));
    RevisionView {
        name: revision.name.clone(),
        image: revision_image(revision, container),
        active: p.active.unwrap_or(false),
        provisioning,
        healthy: p.health_state.as_deref().is_some_and(|h| h.eq_ignore_ascii_case("Healthy")) && running_ok,
        state: format!(
            "health {}, running {}, {} replicas",
            p.health_state.as_deref().unwrap_or("unknown"),
            p.running_state.as_deref().unwrap_or("unknown"),
            p.replicas.unwrap_or(0)
        ),
        restarts: 0,
        created: p.created_time.clone().unwrap_or_default(),
    }
}

fn from_azure(w: &TrafficWeight) -> Weight {
    Weight {
        revision: if w.latest_revision == Some(true) { None } else { w.revision_name.clone() },
        weight: w.weight.unwrap_or(0),
        label: w.label.clone(),
    }
}

fn to_azure(w: &Weight) -> TrafficWeight {
    TrafficWeight {
        revision_name: w.revision.clone(),
        weight: Some(w.weight),
        latest_revision: w.revision.is_none().then_some(true),
        label: w.label.clone(),
    }
}

fn describe(traffic: &[Weight]) -> String {
    traffic
        .iter()
        .map(|w| {
            let label = w.label.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
            format!("{} {}%{label}", w.revision.as_deref().unwrap_or("latest"), w.weight)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `https://<app>---<label>.<domain>`, the domain taken from the app's FQDN `<app>.<domain>`.
fn label_url(app: &str, fqdn: &str, label: &str) -> String {
    let domain = fqdn.split_once('.').map(|(_, d)| d).unwrap_or(fqdn);
    format!("https://{app}---{label}.{domain}")
}

impl AzureTargets {
    /// Azure's failures as provider errors: throttling, conflicts and server errors are retried,
    /// everything else says what to fix; an authentication or authorization failure also says
    /// which identity the controller signed in as.
    pub(crate) fn error(&self, e: AzureError) -> ProviderError {
        let auth = e.arm().is_some_and(|a| a.is_auth());
        let message = match auth {
            true => format!("{e} (Tidegate signs in to Azure with {})", self.apps.arm().credential()),
            false => e.to_string(),
        };
        if e.is_transient() { ProviderError::Transient(message) } else { ProviderError::Permanent(message) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_urls_follow_the_documented_form() {
        assert_eq!(
            label_url("web", "web.happyhill-70162bb9.eastus.azurecontainerapps.io", "staging"),
            "https://web---staging.happyhill-70162bb9.eastus.azurecontainerapps.io"
        );
    }

    #[test]
    fn traffic_round_trips_through_the_azure_model() {
        for w in [
            Weight { revision: None, weight: 100, label: None },
            Weight { revision: Some("web--tg-1".into()), weight: 0, label: Some("staging".into()) },
        ] {
            assert_eq!(from_azure(&to_azure(&w)), w);
        }
    }
}
