//! SubjectAccessReviews: does this user, with these groups, hold this verb now?

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

use crate::Result;

/// An authenticated user as recorded at admission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// User name.
    pub user: String,
    /// Groups, as the API server reported them when the user acted.
    pub groups: Vec<String>,
}

/// Asks the API server's authorizer.
#[derive(Clone)]
pub struct Access {
    client: kube::Client,
}

impl Access {
    /// Reviews through `client` (needs `create` on `subjectaccessreviews`).
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    /// Whether `subject` may `verb` the `resource` of `group` in `namespace` (and object `name`,
    /// if given). `Err(why)` inside `Ok` carries the authorizer's reason when it says no.
    pub async fn may(
        &self,
        subject: &Subject,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<std::result::Result<(), String>> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(subject.user.clone()),
                groups: Some(subject.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.to_string()),
                    resource: Some(resource.to_string()),
                    verb: Some(verb.to_string()),
                    namespace: Some(namespace.to_string()),
                    name: name.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let answer = api.create(&PostParams::default(), &review).await?;
        let status = answer.status.unwrap_or_default();
        let target = match name {
            Some(name) => format!("{resource}.{group} {namespace}/{name}"),
            None => format!("{resource}.{group} in namespace {namespace}"),
        };
        Ok(if status.allowed && status.denied != Some(true) {
            Ok(())
        } else {
            Err(format!("{} may not {verb} {target}", subject.user))
        })
    }
}
