//! Who may approve, and whether admission recorded identities: decided by the test.

use std::collections::BTreeSet;
use std::sync::Mutex;

use tidegate_providers::Result;
use tidegate_providers::authz::{Authorizer, Subject};

/// Grants exactly what the test granted: `(user, verb, resource, namespace)`, with or without a
/// group; every question is kept.
#[derive(Default)]
pub struct FakeAuthorizer {
    grants: Mutex<BTreeSet<(String, String, String, String)>>,
    admission_problem: Mutex<Option<String>>,
    asked: Mutex<Vec<String>>,
}

impl FakeAuthorizer {
    /// Lets `user` (or anyone in the group `user`) `verb` the `resource` in `namespace`.
    pub fn grant(&self, user: &str, verb: &str, resource: &str, namespace: &str) {
        self.grants.lock().unwrap_or_else(|e| e.into_inner()).insert((
            user.into(),
            verb.into(),
            resource.into(),
            namespace.into(),
        ));
    }

    /// Takes every grant of `user` away.
    pub fn revoke(&self, user: &str) {
        self.grants.lock().unwrap_or_else(|e| e.into_inner()).retain(|(u, ..)| u != user);
    }

    /// The admission policies are not in force, for `why` (`None`: they are).
    pub fn admission(&self, why: Option<&str>) {
        *self.admission_problem.lock().unwrap_or_else(|e| e.into_inner()) = why.map(str::to_string);
    }

    /// Every access question asked so far, as `user verb resource namespace[/name]`.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl Authorizer for FakeAuthorizer {
    async fn may(
        &self,
        subject: &Subject,
        verb: &str,
        _group: &str,
        resource: &str,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<std::result::Result<(), String>> {
        let object = name.map(|n| format!("{namespace}/{n}")).unwrap_or_else(|| namespace.to_string());
        self.asked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{} {verb} {resource} {object}", subject.user));
        let grants = self.grants.lock().unwrap_or_else(|e| e.into_inner());
        let held = std::iter::once(&subject.user)
            .chain(subject.groups.iter())
            .any(|who| grants.contains(&(who.clone(), verb.to_string(), resource.to_string(), namespace.to_string())));
        Ok(if held { Ok(()) } else { Err(format!("{} may not {verb} {resource} in {namespace}", subject.user)) })
    }

    async fn admission_in_force_for(
        &self,
        _key: &str,
        _since: Option<jiff::Timestamp>,
    ) -> Result<std::result::Result<(), String>> {
        Ok(match self.admission_problem.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(why) => Err(why),
            None => Ok(()),
        })
    }
}
