//! Which Azure resources each namespace's policies may change.
//!
//! Kubernetes targets are bounded by what a namespace owner let the namespace's deployer do.
//! Azure has no such per-namespace identity here: the controller holds one Azure credential for
//! all namespaces. So the controller's operator grants each namespace the Azure scopes its
//! policies may change (`--azure-grant shop=/subscriptions/S/resourceGroups/shop`), and every
//! Azure read or write for a policy first checks the target against its namespace's grants.
//! Without a grant, a policy in one namespace could name another team's production app.

use std::collections::BTreeMap;

use crate::acr_tasks::RegistryId;
use crate::azure::resource_id::ResourceId;
use crate::{ProviderError, Result};

/// Azure scopes granted to namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AzureScopes {
    grants: BTreeMap<String, Vec<String>>,
    production: Vec<String>,
}

impl AzureScopes {
    /// Parses `NAMESPACE=SCOPE` grants. A scope is a subscription (`/subscriptions/S`), a
    /// resource group (`/subscriptions/S/resourceGroups/RG`), one Container App or Job, or one
    /// container registry (where the namespace's `acrTask` builds may run).
    pub fn parse<S: AsRef<str>>(grants: &[S]) -> std::result::Result<Self, String> {
        let mut parsed = Self::default();
        for grant in grants {
            let grant = grant.as_ref();
            let (namespace, scope) = grant
                .split_once('=')
                .ok_or_else(|| format!("--azure-grant {grant:?}: expected NAMESPACE=/subscriptions/..."))?;
            let namespace = namespace.trim();
            if namespace.is_empty()
                || namespace.len() > 63
                || !namespace.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return Err(format!("--azure-grant {grant:?}: {namespace:?} is not a namespace name"));
            }
            let scope = scope.trim().trim_end_matches('/');
            check_scope(scope).map_err(|why| format!("--azure-grant {grant:?}: {why}"))?;
            parsed.grants.entry(namespace.to_string()).or_default().push(scope.to_string());
        }
        Ok(parsed)
    }

    /// Marks `scopes` as production (`--azure-production-scope`): a resource inside one changes
    /// only through an approved Promotion, or as a labelled 0 % staging revision of the
    /// production app itself; never as a staging app of its own.
    pub fn with_production<S: AsRef<str>>(mut self, scopes: &[S]) -> std::result::Result<Self, String> {
        for scope in scopes {
            let scope = scope.as_ref().trim().trim_end_matches('/');
            check_scope(scope).map_err(|why| format!("--azure-production-scope: {why}"))?;
            self.production.push(scope.to_string());
        }
        Ok(self)
    }

    /// Refuses `id` as a staging app of its own when it lies in a production scope: naming a
    /// production app as some policy's staging target must not put an unapproved image there.
    pub fn check_staging_app(&self, id: &ResourceId) -> Result<()> {
        match self.production.iter().find(|scope| id.is_within(scope)) {
            Some(scope) => Err(ProviderError::NotAllowed(format!(
                "{id} is inside production scope {scope} (--azure-production-scope): only an approved Promotion \
                 changes it; stage in an app outside production scopes, or as a labelled revision of the production \
                 app itself (staging resourceId equal to production's)"
            ))),
            None => Ok(()),
        }
    }

    /// The scopes granted to `namespace` (`--azure-grant`), as given.
    pub fn granted(&self, namespace: &str) -> &[String] {
        self.grants.get(namespace).map(Vec::as_slice).unwrap_or_default()
    }

    /// Whether any namespace was granted anything.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// The resource `id` as a target of a policy in `namespace`: parsed and within a scope
    /// granted to that namespace, or refused with what the operator must grant.
    pub fn check(&self, namespace: &str, id: &str) -> Result<ResourceId> {
        let resource = ResourceId::parse(id).map_err(|e| ProviderError::Permanent(format!("resourceId {id}: {e}")))?;
        let granted = self.grants.get(namespace).map(Vec::as_slice).unwrap_or_default();
        if granted.iter().any(|scope| resource.is_within(scope)) {
            return Ok(resource);
        }
        Err(self.out_of_reach(namespace, id))
    }

    /// The container registry `id` where a policy in `namespace` asks for an ACR Tasks run:
    /// parsed and within a scope granted to that namespace (the registry itself, its resource
    /// group or its subscription), or refused with what the operator must grant.
    pub fn check_registry(&self, namespace: &str, id: &str) -> Result<RegistryId> {
        let registry = RegistryId::parse(id)
            .map_err(|e| ProviderError::Permanent(format!("spec.build.acrTask.registryId: {e}")))?;
        let granted = self.grants.get(namespace).map(Vec::as_slice).unwrap_or_default();
        if granted.iter().any(|scope| registry.is_within(scope)) {
            return Ok(registry);
        }
        Err(self.out_of_reach(namespace, id))
    }

    fn out_of_reach(&self, namespace: &str, id: &str) -> ProviderError {
        let granted = self.grants.get(namespace).map(Vec::as_slice).unwrap_or_default();
        ProviderError::NotAllowed(format!(
            "Azure resource {id} is out of reach for policies in namespace {namespace}: the controller's operator grants \
             Azure scopes per namespace with --azure-grant {namespace}=<subscription, resource group or resource id> \
             (chart value azure.grants); granted now: {}",
            if granted.is_empty() { "none".to_string() } else { granted.join(", ") }
        ))
    }
}

/// A scope: `/subscriptions/S`, `/subscriptions/S/resourceGroups/RG`, or a Microsoft.App
/// resource id below it.
fn check_scope(scope: &str) -> std::result::Result<(), String> {
    let segments: Vec<&str> = scope.strip_prefix('/').unwrap_or("").split('/').collect();
    let ok_segment = |s: &&str| {
        !s.is_empty() && *s != "." && *s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
    };
    if !scope.starts_with('/') || !segments.iter().all(ok_segment) {
        return Err(format!(
            "{scope:?} is not an Azure scope (plain ASCII path segments, starting with /subscriptions/)"
        ));
    }
    match segments.as_slice() {
        [s, _] if s.eq_ignore_ascii_case("subscriptions") => Ok(()),
        [s, _, g, _] if s.eq_ignore_ascii_case("subscriptions") && g.eq_ignore_ascii_case("resourceGroups") => Ok(()),
        _ => ResourceId::parse(scope).map(drop).or_else(|e| {
            RegistryId::parse(scope).map(drop).map_err(|_| {
                format!(
                    "{scope:?} is neither a subscription, a resource group, a Container App or Job id nor a container \
                     registry id ({e})"
                )
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "/subscriptions/s1/resourceGroups/shop/providers/Microsoft.App/containerApps/web";

    #[test]
    fn a_namespace_reaches_only_what_it_was_granted() {
        let scopes = AzureScopes::parse(&[
            "shop=/subscriptions/s1/resourceGroups/shop",
            "jobs=/subscriptions/s1/resourceGroups/batch/providers/Microsoft.App/jobs/nightly",
            "all=/subscriptions/s2",
        ])
        .unwrap();
        assert!(scopes.check("shop", APP).is_ok());
        assert!(scopes.check("shop", &APP.replace("resourceGroups", "resourcegroups")).is_ok(), "ARM ids ignore case");
        let refused = scopes.check("other", APP).unwrap_err().to_string();
        assert!(refused.contains("--azure-grant other=") && refused.contains("granted now: none"), "{refused}");
        assert!(
            scopes
                .check("shop", "/subscriptions/s1/resourceGroups/shop-prod/providers/Microsoft.App/containerApps/web")
                .is_err(),
            "a prefix of a name is not a scope"
        );
        assert!(
            scopes.check("jobs", "/subscriptions/s1/resourceGroups/batch/providers/Microsoft.App/jobs/nightly").is_ok()
        );
        assert!(
            scopes
                .check("jobs", "/subscriptions/s1/resourceGroups/batch/providers/Microsoft.App/jobs/nightly2")
                .is_err()
        );
        assert!(scopes.check("all", "/subscriptions/s2/resourceGroups/x/providers/Microsoft.App/jobs/j").is_ok());
        assert!(matches!(scopes.check("shop", "/subscriptions/s1/../s2"), Err(ProviderError::Permanent(_))));
    }

    #[test]
    fn a_registry_is_reached_through_its_own_grant_or_a_wider_one() {
        const REGISTRY: &str =
            "/subscriptions/s1/resourceGroups/shop/providers/Microsoft.ContainerRegistry/registries/shopacr";
        let scopes = AzureScopes::parse(&[
            "shop=/subscriptions/s1/resourceGroups/shop".to_string(),
            format!("builds={REGISTRY}"),
            "all=/subscriptions/s1".to_string(),
            "apps=/subscriptions/s1/resourceGroups/shop/providers/Microsoft.App/containerApps/web".to_string(),
        ])
        .unwrap();
        for namespace in ["shop", "builds", "all"] {
            assert!(scopes.check_registry(namespace, REGISTRY).is_ok(), "{namespace}");
        }
        assert!(scopes.check_registry("shop", &REGISTRY.to_uppercase()).is_ok(), "ARM ids ignore case");
        for (namespace, id) in [
            ("apps", REGISTRY.to_string()),
            ("other", REGISTRY.to_string()),
            ("builds", format!("{REGISTRY}2")),
            ("shop", REGISTRY.replace("/shop/", "/shop-prod/")),
        ] {
            let refused = scopes.check_registry(namespace, &id).unwrap_err();
            assert!(
                matches!(&refused, ProviderError::NotAllowed(m) if m.contains(&format!("--azure-grant {namespace}="))),
                "{namespace} {id}: {refused}"
            );
        }
        // A registry grant reaches no app, and an app id is no registry.
        assert!(
            scopes
                .check("builds", "/subscriptions/s1/resourceGroups/shop/providers/Microsoft.App/containerApps/web")
                .is_err()
        );
        assert!(matches!(
            scopes.check_registry(
                "shop",
                "/subscriptions/s1/resourceGroups/shop/providers/Microsoft.App/containerApps/web"
            ),
            Err(ProviderError::Permanent(_))
        ));
    }

    #[test]
    fn a_production_scope_refuses_a_staging_app_of_its_own() {
        let scopes = AzureScopes::parse(&["shop=/subscriptions/s1/resourceGroups/shop"])
            .unwrap()
            .with_production(&["/subscriptions/s1/resourceGroups/shop/providers/Microsoft.App/containerApps/web"])
            .unwrap();
        let production = ResourceId::parse(APP).unwrap();
        let staging = ResourceId::parse(&APP.replace("/web", "/web-staging")).unwrap();
        let refused = scopes.check_staging_app(&production).unwrap_err().to_string();
        assert!(refused.contains("--azure-production-scope"), "{refused}");
        assert!(scopes.check_staging_app(&staging).is_ok());
        assert!(AzureScopes::default().with_production(&["/subscriptions/s/.."]).is_err());
    }

    #[test]
    fn malformed_grants_are_refused_at_start() {
        for bad in [
            "shop",
            "=/subscriptions/s",
            "Shop=/subscriptions/s",
            "shop=subscriptions/s",
            "shop=/subscriptions/s/resourceGroups",
            "shop=/subscriptions/s/../x",
            "shop=/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
            "shop=/subscriptions/s?x=1",
        ] {
            assert!(AzureScopes::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
