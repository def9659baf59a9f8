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
//! The controller keeps a live copy of each shipped object with a watch (one per object, selected
//! by name) and, while every watch is listed, checks the copies on every call: no request, and a
//! change counts as soon as its event arrives. Otherwise it reads them from the API server, and a
//! positive answer is remembered for [`PROVEN_FOR`] per set of recorded identities (the caller's
//! key names the objects and every annotation they carry), so a rollout polled every few seconds
//! does not re-read the four admission kinds each time. Any new or changed identity is a new key
//! and is checked against the API server before it counts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
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
    /// The live copy of each shipped object (same order as `shipped`), while a watch keeps it.
    copies: Arc<Vec<Copy>>,
}

/// What the watch of one shipped object has seen.
#[derive(Debug, Default)]
struct Copy(RwLock<Option<Option<Value>>>);

impl Copy {
    /// `Some(object or None when absent)` while the watch is listed; `None` when it is not
    /// (starting, or failed since), and the API server must be asked.
    fn current(&self) -> Option<Option<Value>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, state: Option<Option<Value>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = state;
    }
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
        let copies = Arc::new(shipped.iter().map(|_| Copy::default()).collect());
        Ok(Self { client, shipped, proven: Arc::default(), copies })
    }

    /// Keeps a live copy of each shipped object, one watch per object (`metadata.name`
    /// selected; needs `list` and `watch` on the four admission kinds). While every watch is
    /// listed, checks read the copies: no request, and a removed or edited policy counts from the
    /// moment its watch event arrives, for every identity. A watch that fails sends checks back to
    /// the API server until it lists again. Call once, inside the runtime.
    pub fn keep_copies(&self) {
        for (wanted, copy) in self.shipped.iter().zip(self.copies.iter().enumerate()) {
            let (api, name) = self.api(wanted);
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let copies = self.copies.clone();
            let index = copy.0;
            tokio::spawn(async move {
                let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
                let mut listing: Option<Value> = None;
                while let Some(event) = events.next().await {
                    let copy = &copies[index];
                    match event {
                        Ok(Event::Init) => listing = None,
                        Ok(Event::InitApply(object)) => listing = serde_json::to_value(&object).ok(),
                        Ok(Event::InitDone) => copy.set(Some(listing.take())),
                        Ok(Event::Apply(object)) => copy.set(serde_json::to_value(&object).ok().map(Some)),
                        Ok(Event::Delete(_)) => copy.set(Some(None)),
                        Err(e) => {
                            if copy.current().is_some() {
                                tracing::warn!(error = %e, name, "watching an admission policy failed; asking the API server until it recovers");
                            }
                            copy.set(None);
                        }
                    }
                }
            });
        }
    }

    /// The shipped objects' live copies, when every watch is listed.
    fn copies(&self) -> Option<Vec<Option<Value>>> {
        self.copies.iter().map(Copy::current).collect()
    }

    fn api(&self, wanted: &Value) -> (Api<DynamicObject>, String) {
        let kind = wanted["kind"].as_str().unwrap_or_default();
        let (group, version) = wanted["apiVersion"].as_str().unwrap_or_default().split_once('/').unwrap_or_default();
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        (Api::all_with(self.client.clone(), &resource), wanted["metadata"]["name"].as_str().unwrap_or_default().into())
    }

    /// Whether the shipped policies are in force for the recorded identities that `key` names
    /// (the objects' uids and every annotation they carry): from the live copies when every
    /// watch is listed; otherwise [`Self::in_force_since`], a positive answer for the same key
    /// within [`PROVEN_FOR`] reused.
    pub async fn in_force_for(&self, key: &str, since: Option<Timestamp>) -> Result<std::result::Result<(), String>> {
        // Live copies are checked every time: nothing is reused across a change of them.
        if let Some(copies) = self.copies() {
            return Ok(self.check(copies, since));
        }
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
        let mut live = Vec::with_capacity(self.shipped.len());
        for wanted in &self.shipped {
            let (api, name) = self.api(wanted);
            live.push(match api.get_opt(&name).await? {
                Some(object) => {
                    Some(serde_json::to_value(&object).map_err(|e| ProviderError::Permanent(e.to_string()))?)
                }
                None => None,
            });
        }
        Ok(self.check(live, since))
    }

    /// Checks each shipped object against its live version (`None`: not installed), in order.
    fn check(&self, live: Vec<Option<Value>>, since: Option<Timestamp>) -> std::result::Result<(), String> {
        for (wanted, live) in self.shipped.iter().zip(live) {
            let kind = wanted["kind"].as_str().unwrap_or_default();
            let name = wanted["metadata"]["name"].as_str().unwrap_or_default();
            let Some(live) = live else {
                return Err(format!("{kind} {name} is not installed (deploy/approval-policy.yaml)"));
            };
            if let Err(path) = contains(&live["spec"], &wanted["spec"], "spec") {
                return Err(format!("{kind} {name} differs from the shipped policy at {path}"));
            }
            for narrowing in ["matchConditions", "paramKind", "paramRef"] {
                if !live["spec"][narrowing].is_null() && live["spec"][narrowing] != wanted["spec"][narrowing] {
                    return Err(format!("{kind} {name} sets spec.{narrowing}, which the shipped policy does not"));
                }
            }
            let selectors = &live["spec"]["matchResources"];
            for selector in ["namespaceSelector", "objectSelector"] {
                if selectors[selector].as_object().is_some_and(|s| s.values().any(|v| !is_empty(v))) {
                    return Err(format!("{kind} {name} narrows spec.matchResources.{selector}"));
                }
            }
            if !is_empty(&selectors["excludeResourceRules"]) {
                return Err(format!("{kind} {name} excludes resources (spec.matchResources.excludeResourceRules)"));
            }
            let created = live["metadata"]["creationTimestamp"].as_str().and_then(|t| t.parse::<Timestamp>().ok());
            match (created, since) {
                (Some(created), Some(since)) if created > since => {
                    return Err(format!(
                        "{kind} {name} was installed at {created}, after the object was created ({since}); \
                         identities recorded before it cannot be trusted"
                    ));
                }
                (None, _) => return Err(format!("{kind} {name} has no creation time")),
                _ => {}
            }
        }
        Ok(())
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

    /// A guard whose API server is a closed loopback port: any request it makes fails.
    fn offline_guard() -> AdmissionGuard {
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("url"));
        AdmissionGuard::new(kube::Client::try_from(config).expect("client")).expect("guard")
    }

    fn installed_at(guard: &AdmissionGuard, at: &str) -> Vec<Option<Value>> {
        guard
            .shipped
            .iter()
            .map(|wanted| {
                let mut live = wanted.clone();
                live["metadata"]["creationTimestamp"] = json!(at);
                Some(live)
            })
            .collect()
    }

    #[tokio::test]
    async fn live_copies_decide_without_a_request_and_every_change_counts_at_once() {
        let guard = offline_guard();
        let since: Timestamp = "2026-06-01T00:00:00Z".parse().unwrap();
        for (copy, live) in guard.copies.iter().zip(installed_at(&guard, "2026-01-01T00:00:00Z")) {
            copy.set(Some(live));
        }
        assert_eq!(guard.in_force_for("k", Some(since)).await.expect("no request"), Ok(()));
        // Removed: refused at once, also for the identities just proven.
        guard.copies[1].set(Some(None));
        let refused = guard.in_force_for("k", Some(since)).await.expect("no request").unwrap_err();
        assert!(refused.contains("is not installed"), "{refused}");
        // Re-created after the object: still refused.
        guard.copies[1].set(installed_at(&guard, "2026-07-01T00:00:00Z").swap_remove(1).map(Some));
        let refused = guard.in_force_for("k", Some(since)).await.expect("no request").unwrap_err();
        assert!(refused.contains("after the object was created"), "{refused}");
        // A watch that is not listed sends the check to the API server (here: unreachable).
        guard.copies[1].set(None);
        assert!(guard.in_force_for("k", Some(since)).await.is_err(), "fails closed when it cannot read");
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
