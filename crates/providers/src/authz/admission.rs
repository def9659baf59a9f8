//! Proof that the identities recorded in annotations were recorded by the API server.
//!
//! Kubernetes does not say who wrote an annotation. The shipped MutatingAdmissionPolicy records
//! the authenticated user (and groups) next to each approval, rejection, rollback request,
//! Release creation and manual trigger, and the shipped ValidatingAdmissionPolicies refuse any
//! value the API server did not itself record. That holds only while those policies are in force,
//! so before trusting a recorded identity the controller checks, every time, that each shipped
//! policy and binding exists, still says what the shipped manifest says (nothing removed, no
//! narrowing selectors), and was created before the object that carries the identity.
//!
//! A positive answer is remembered for [`PROVEN_FOR`] per set of recorded identities (the caller's
//! key names the objects and every annotation they carry), so a rollout polled every few seconds
//! does not re-read the four admission kinds each time. Any new or changed identity is a new key
//! and is checked against the API server before it counts; a removed policy shows within
//! [`PROVEN_FOR`] on identities that were already proven while it was in force.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

use crate::{ProviderError, Result};

/// The shipped admission policies (`deploy/approval-policy.yaml`), compiled in.
pub const SHIPPED_POLICIES: &str = include_str!("../../../../deploy/approval-policy.yaml");

/// Checks that the shipped admission policies are in force.
#[derive(Clone)]
pub struct AdmissionGuard {
    client: kube::Client,
    shipped: Vec<Value>,
    proven: Arc<Mutex<Proven>>,
}

/// How long a positive answer for one set of recorded identities is reused.
pub const PROVEN_FOR: Duration = Duration::from_secs(60);

/// Keys of identity sets proven recorded under the shipped policies, and when.
#[derive(Debug, Default)]
struct Proven {
    at: HashMap<String, Instant>,
}

impl Proven {
    /// Whether `key` was proven less than `ttl` before `now`.
    fn holds(&self, key: &str, now: Instant, ttl: Duration) -> bool {
        self.at.get(key).is_some_and(|at| now.saturating_duration_since(*at) < ttl)
    }

    /// Remembers `key` as proven at `now`, forgetting every key older than `ttl`.
    fn remember(&mut self, key: String, now: Instant, ttl: Duration) {
        self.at.retain(|_, at| now.saturating_duration_since(*at) < ttl);
        self.at.insert(key, now);
    }
}

impl AdmissionGuard {
    /// A guard reading through `client` (needs `get` on the four admission kinds).
    pub fn new(client: kube::Client) -> Result<Self> {
        let mut shipped = Vec::new();
        for document in serde_yaml::Deserializer::from_str(SHIPPED_POLICIES) {
            let value = <Value as serde::Deserialize>::deserialize(document)
                .map_err(|e| ProviderError::Permanent(format!("the compiled-in admission policies: {e}")))?;
            if value.is_object() {
                shipped.push(value);
            }
        }
        Ok(Self { client, shipped, proven: Arc::default() })
    }

    /// [`Self::in_force_since`] for the recorded identities that `key` names (the objects' uids
    /// and every annotation they carry): a positive answer for the same key within
    /// [`PROVEN_FOR`] is reused, anything else is read from the API server.
    pub async fn in_force_for(&self, key: &str, since: Option<Timestamp>) -> Result<std::result::Result<(), String>> {
        if self.proven.lock().map(|p| p.holds(key, Instant::now(), PROVEN_FOR)).unwrap_or(false) {
            return Ok(Ok(()));
        }
        let verdict = self.in_force_since(since).await?;
        if verdict.is_ok()
            && let Ok(mut proven) = self.proven.lock()
        {
            proven.remember(key.to_string(), Instant::now(), PROVEN_FOR);
        }
        Ok(verdict)
    }

    /// `Ok(())` when every shipped policy and binding is installed as shipped and was created no
    /// later than `since`; otherwise what is wrong, in words an operator can act on.
    pub async fn in_force_since(&self, since: Option<Timestamp>) -> Result<std::result::Result<(), String>> {
        for wanted in &self.shipped {
            let kind = wanted["kind"].as_str().unwrap_or_default();
            let name = wanted["metadata"]["name"].as_str().unwrap_or_default();
            let (group, version) =
                wanted["apiVersion"].as_str().unwrap_or_default().split_once('/').unwrap_or_default();
            let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            let Some(live) = api.get_opt(name).await? else {
                return Ok(Err(format!("{kind} {name} is not installed (deploy/approval-policy.yaml)")));
            };
            let live = serde_json::to_value(&live).map_err(|e| ProviderError::Permanent(e.to_string()))?;
            if let Err(path) = contains(&live["spec"], &wanted["spec"], "spec") {
                return Ok(Err(format!("{kind} {name} differs from the shipped policy at {path}")));
            }
            for narrowing in ["matchConditions", "paramKind", "paramRef"] {
                if !live["spec"][narrowing].is_null() && live["spec"][narrowing] != wanted["spec"][narrowing] {
                    return Ok(Err(format!("{kind} {name} sets spec.{narrowing}, which the shipped policy does not")));
                }
            }
            let selectors = &live["spec"]["matchResources"];
            for selector in ["namespaceSelector", "objectSelector"] {
                if selectors[selector].as_object().is_some_and(|s| s.values().any(|v| !is_empty(v))) {
                    return Ok(Err(format!("{kind} {name} narrows spec.matchResources.{selector}")));
                }
            }
            if !is_empty(&selectors["excludeResourceRules"]) {
                return Ok(Err(format!("{kind} {name} excludes resources (spec.matchResources.excludeResourceRules)")));
            }
            let created = live["metadata"]["creationTimestamp"].as_str().and_then(|t| t.parse::<Timestamp>().ok());
            match (created, since) {
                (Some(created), Some(since)) if created > since => {
                    return Ok(Err(format!(
                        "{kind} {name} was installed at {created}, after the object was created ({since}); \
                         identities recorded before it cannot be trusted"
                    )));
                }
                (None, _) => return Ok(Err(format!("{kind} {name} has no creation time"))),
                _ => {}
            }
        }
        Ok(Ok(()))
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.values().all(is_empty),
        _ => false,
    }
}

/// Whether `live` holds everything `wanted` says (the API server adds defaults; it may not take
/// anything away). Lists must have the same length and match element by element.
fn contains(live: &Value, wanted: &Value, path: &str) -> std::result::Result<(), String> {
    match (live, wanted) {
        (Value::Object(live), Value::Object(wanted)) => {
            for (key, value) in wanted {
                contains(live.get(key).unwrap_or(&Value::Null), value, &format!("{path}.{key}"))?;
            }
            Ok(())
        }
        (Value::Array(live), Value::Array(wanted)) if live.len() == wanted.len() => {
            for (i, (l, w)) in live.iter().zip(wanted).enumerate() {
                contains(l, w, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::String(live), Value::String(wanted)) if live.trim() == wanted.trim() => Ok(()),
        (live, wanted) if live == wanted => Ok(()),
        _ => Err(path.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shipped_manifest_parses_into_policies_and_bindings() {
        let guard_docs: Vec<Value> = serde_yaml::Deserializer::from_str(SHIPPED_POLICIES)
            .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("yaml"))
            .filter(Value::is_object)
            .collect();
        let kinds: Vec<&str> = guard_docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        assert!(kinds.contains(&"ValidatingAdmissionPolicy"));
        assert!(kinds.contains(&"MutatingAdmissionPolicy"));
        assert!(kinds.contains(&"MutatingAdmissionPolicyBinding"));
    }

    #[test]
    fn a_proven_key_is_reused_only_within_its_time_and_old_keys_are_forgotten() {
        let ttl = Duration::from_secs(60);
        let start = Instant::now();
        let mut proven = Proven::default();
        assert!(!proven.holds("a", start, ttl), "nothing is proven at first");
        proven.remember("a".into(), start, ttl);
        assert!(proven.holds("a", start + Duration::from_secs(59), ttl));
        assert!(!proven.holds("a", start + ttl, ttl), "expired");
        assert!(!proven.holds("b", start, ttl), "another set of identities is checked afresh");
        proven.remember("b".into(), start + ttl, ttl);
        assert_eq!(proven.at.len(), 1, "expired keys are dropped when another is remembered");
    }

    #[test]
    fn defaults_may_be_added_but_nothing_taken_away() {
        let wanted = json!({"failurePolicy": "Fail", "validations": [{"expression": "a"}, {"expression": "b"}]});
        let defaulted = json!({"failurePolicy": "Fail", "matchPolicy": "Equivalent", "validations": [{"expression": "a"}, {"expression": "b"}]});
        assert_eq!(contains(&defaulted, &wanted, "spec"), Ok(()));
        let dropped = json!({"failurePolicy": "Fail", "validations": [{"expression": "a"}]});
        assert_eq!(contains(&dropped, &wanted, "spec"), Err("spec.validations".into()));
        let loosened = json!({"failurePolicy": "Ignore", "validations": [{"expression": "a"}, {"expression": "b"}]});
        assert_eq!(contains(&loosened, &wanted, "spec"), Err("spec.failurePolicy".into()));
        let edited = json!({"failurePolicy": "Fail", "validations": [{"expression": "a"}, {"expression": "true"}]});
        assert_eq!(contains(&edited, &wanted, "spec"), Err("spec.validations[1].expression".into()));
    }
}
