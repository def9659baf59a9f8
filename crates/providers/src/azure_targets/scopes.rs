//! Which Azure resources each namespace's policies may change.
//!
//! Kubernetes targets are bounded by what a namespace owner let the namespace's deployer do.
//! Azure has no such per-namespace identity here: the controller holds one Azure credential for
//! all namespaces. So the controller's operator grants each namespace the Azure scopes its
//! policies may change (`--azure-grant shop=/subscriptions/S/resourceGroups/shop`), and every
//! Azure read or write for a policy first checks the target against its namespace's grants.
//! Without a grant, a policy in one namespace could name another team's production app.

use std::collections::BTreeMap;

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
    /// resource group (`/subscriptions/S/resourceGroups/RG`) or one Container App or Job.
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
        Err(ProviderError::NotAllowed(format!(
            "Azure resource {id} is out of reach for policies in namespace {namespace}: the controller's operator grants \
             Azure scopes per namespace with --azure-grant {namespace}=<subscription, resource group or resource id> \
             (chart value azure.grants); granted now: {}",
            if granted.is_empty() { "none".to_string() } else { granted.join(", ") }
        )))
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
        _ => ResourceId::parse(scope).map(drop).map_err(|e| {
            format!("{scope:?} is neither a subscription, a resource group nor a Container App or Job id ({e})")
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
