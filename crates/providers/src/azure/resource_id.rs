//! ARM resource ids of the resources Tidegate deploys to, and the scopes they may lie within.
//!
//! ARM treats the fixed segments (`subscriptions`, `resourceGroups`, `providers`, the namespace
//! and the resource type) and the names case-insensitively; so does the comparison here. The
//! original spelling is kept for display and for the requests.

use std::fmt;
use std::str::FromStr;

use super::error::AzureError;

/// The kind of a Container Apps resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `Microsoft.App/containerApps`.
    ContainerApp,
    /// `Microsoft.App/jobs`.
    Job,
}

impl ResourceKind {
    /// The ARM resource type segment.
    pub fn type_segment(self) -> &'static str {
        match self {
            Self::ContainerApp => "containerApps",
            Self::Job => "jobs",
        }
    }
}

/// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.App/{containerApps|jobs}/{name}`.
#[derive(Clone, Debug)]
pub struct ResourceId {
    original: String,
    subscription: String,
    resource_group: String,
    name: String,
    kind: ResourceKind,
}

/// Checks an ARM path for what must never reach a URL: anything but printable ASCII, query
/// strings and fragments, empty segments, `.` and `..`. Returns its segments.
pub(crate) fn path_segments(path: &str) -> Result<Vec<&str>, AzureError> {
    let refuse = |why: &str| Err(AzureError::Refused(format!("invalid Azure resource path {path:?}: {why}")));
    if !path.starts_with('/') {
        return refuse("it must start with /subscriptions/");
    }
    if !path.bytes().all(|b| b.is_ascii_graphic()) {
        return refuse("only printable ASCII without spaces is allowed");
    }
    if path.contains(['?', '#', '\\', '%']) {
        return refuse("query strings, fragments, backslashes and escapes are not allowed");
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return refuse("empty segment");
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return refuse("'.' and '..' segments are not allowed");
    }
    if !segments[0].eq_ignore_ascii_case("subscriptions") || segments.len() < 2 {
        return refuse("it must start with /subscriptions/{subscription}");
    }
    Ok(segments)
}

impl ResourceId {
    /// Parses a Container App or Container Apps Job id.
    pub fn parse(id: &str) -> Result<Self, AzureError> {
        let segments = path_segments(id)?;
        let invalid = |why: &str| {
            AzureError::Config(format!(
                "{id:?} is not a Container App or Container Apps Job id ({why}); expected \
                 /subscriptions/{{subscription}}/resourceGroups/{{group}}/providers/Microsoft.App/containerApps/{{name}} \
                 or …/Microsoft.App/jobs/{{name}}"
            ))
        };
        let [subs, subscription, groups, group, providers, namespace, kind, name] = segments.as_slice() else {
            return Err(invalid("wrong number of segments"));
        };
        let fixed = [
            (subs, "subscriptions"),
            (groups, "resourceGroups"),
            (providers, "providers"),
            (namespace, "Microsoft.App"),
        ];
        for (got, want) in fixed {
            if !got.eq_ignore_ascii_case(want) {
                return Err(invalid(&format!("{got:?} where {want:?} belongs")));
            }
        }
        let kind = if kind.eq_ignore_ascii_case("containerApps") {
            ResourceKind::ContainerApp
        } else if kind.eq_ignore_ascii_case("jobs") {
            ResourceKind::Job
        } else {
            return Err(invalid(&format!("resource type {kind:?}")));
        };
        Ok(Self {
            original: id.to_string(),
            subscription: subscription.to_string(),
            resource_group: group.to_string(),
            name: name.to_string(),
            kind,
        })
    }

    /// The subscription id.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The resource group name.
    pub fn resource_group(&self) -> &str {
        &self.resource_group
    }

    /// The app's or job's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Container App or Job.
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    /// The id as it was given.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// A path below this resource: `{id}/{suffix}` (`revisions`, `revisions/{name}`, …).
    pub fn child(&self, suffix: &str) -> String {
        format!("{}/{}", self.original, suffix.trim_start_matches('/'))
    }

    /// Whether this resource lies within `scope`: a subscription (`/subscriptions/S`), a
    /// resource group (`/subscriptions/S/resourceGroups/RG`) or a resource id, compared segment
    /// by segment, case-insensitively. A scope that is not a valid path contains nothing.
    pub fn is_within(&self, scope: &str) -> bool {
        let scope = scope.strip_suffix('/').unwrap_or(scope);
        let Ok(scope) = path_segments(scope) else { return false };
        let Ok(own) = path_segments(&self.original) else { return false };
        scope.len() <= own.len() && scope.iter().zip(&own).all(|(a, b)| a.eq_ignore_ascii_case(b))
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.original.eq_ignore_ascii_case(&other.original)
    }
}

impl Eq for ResourceId {}

impl std::hash::Hash for ResourceId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.original.to_ascii_lowercase().hash(state);
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.original)
    }
}

impl FromStr for ResourceId {
    type Err = AzureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const APP: &str = "/subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345/resourceGroups/rg/providers/Microsoft.App/containerApps/web";

    #[test]
    fn parses_apps_and_jobs() {
        let id = ResourceId::parse(APP).unwrap();
        assert_eq!(id.subscription(), "34adfa4f-cedf-4dc0-ba29-b6d1a69ab345");
        assert_eq!(id.resource_group(), "rg");
        assert_eq!(id.name(), "web");
        assert_eq!(id.kind(), ResourceKind::ContainerApp);
        assert_eq!(id.to_string(), APP);
        assert_eq!(id.child("revisions/web--a"), format!("{APP}/revisions/web--a"));

        let job = ResourceId::parse("/SUBSCRIPTIONS/s/resourcegroups/RG/Providers/microsoft.app/JOBS/nightly").unwrap();
        assert_eq!(job.kind(), ResourceKind::Job);
        assert_eq!(job.resource_group(), "RG");
        assert_eq!(job.to_string(), "/SUBSCRIPTIONS/s/resourcegroups/RG/Providers/microsoft.app/JOBS/nightly");
        assert_eq!(
            job,
            ResourceId::parse("/subscriptions/S/resourceGroups/rg/providers/Microsoft.App/jobs/NIGHTLY").unwrap()
        );
    }

    #[test]
    fn rejects_what_is_not_an_app_or_job() {
        for bad in [
            "",
            "subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/web",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Web/sites/web",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/managedEnvironments/env",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/web/revisions/x",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/web/",
            "/subscriptions/s/resourceGroups//providers/Microsoft.App/containerApps/web",
            "/subscriptions/s/resourceGroups/../providers/Microsoft.App/containerApps/web",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/web?api-version=1",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/wéb",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/w b",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/w%2F",
            "/tenants/t/resourceGroups/rg/providers/Microsoft.App/containerApps/web",
        ] {
            assert!(ResourceId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    #[test]
    fn scopes_are_whole_segment_prefixes() {
        let id = ResourceId::parse(APP).unwrap();
        let sub = "/subscriptions/34adfa4f-cedf-4dc0-ba29-b6d1a69ab345";
        assert!(id.is_within(sub));
        assert!(id.is_within(&format!("{sub}/")));
        assert!(id.is_within(&sub.to_uppercase()));
        assert!(id.is_within(&format!("{sub}/resourcegroups/RG")));
        assert!(id.is_within(APP));
        assert!(!id.is_within(&format!("{sub}/resourceGroups/r")), "a prefix of a name is not a scope");
        assert!(!id.is_within("/subscriptions/34adfa4f"));
        assert!(!id.is_within(&format!("{sub}/resourceGroups/other")));
        assert!(!id.is_within(&format!("{APP}/revisions/x")));
        assert!(!id.is_within("/"));
        assert!(!id.is_within(&format!("{sub}/resourceGroups/../resourceGroups/rg")));
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,120}") {
            let _ = ResourceId::parse(&s);
        }

        #[test]
        fn valid_ids_round_trip_and_sit_in_their_scopes(
            sub in "[a-f0-9-]{1,36}", rg in "[A-Za-z0-9_.()-]{1,30}", name in "[a-z0-9-]{1,32}", job in any::<bool>(), upper in any::<bool>()
        ) {
            prop_assume!(rg != "." && rg != "..");
            let kind = if job { "jobs" } else { "containerApps" };
            let id = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.App/{kind}/{name}");
            let parsed = ResourceId::parse(&id).unwrap();
            prop_assert_eq!(parsed.to_string(), id.clone());
            prop_assert_eq!(parsed.name(), name.as_str());
            let group_scope = format!("/subscriptions/{sub}/resourceGroups/{rg}");
            let group_scope = if upper { group_scope.to_uppercase() } else { group_scope };
            prop_assert!(parsed.is_within(&group_scope));
            let other_group = format!("/subscriptions/{sub}/resourceGroups/{rg}x");
            prop_assert!(!parsed.is_within(&other_group));
        }
    }
}
