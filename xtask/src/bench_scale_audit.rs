//! The kube-apiserver audit log of `cargo xtask bench scale`: the policy that records every
//! request of the controller's user (and nothing else), and counting those requests by verb and
//! resource within a time window.

use std::collections::BTreeMap;
use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

/// An audit policy that records every request of `user` at the `Metadata` level (verb, resource,
/// user, impersonated user, response code; no bodies), once it is answered, and nothing of anyone
/// else. Requests the controller makes as a namespace's deployer (impersonation) are recorded
/// under the controller's user too: the audit filter sees the authenticated user.
pub(crate) fn policy_yaml(user: &str) -> String {
    format!(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  users: [\"{user}\"]\n- level: None\n"
    )
}

/// One request of the controller, from the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// When the API server received it.
    pub(crate) at: Timestamp,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, …
    pub(crate) verb: String,
    /// `releases`, `releases/status`, `deployments`, … or the path of a non-resource request.
    pub(crate) resource: String,
    /// Sent as another identity (a namespace's deployer).
    pub(crate) impersonated: bool,
}

impl Request {
    /// A write that changes stored state: not a read, and not an access review (reviews are
    /// answered, never stored).
    pub(crate) fn is_write(&self) -> bool {
        matches!(self.verb.as_str(), "create" | "update" | "patch" | "delete" | "deletecollection")
            && !self.resource.ends_with("reviews")
    }

    /// A write to a `status` subresource.
    pub(crate) fn is_status_write(&self) -> bool {
        self.is_write() && self.resource.ends_with("/status")
    }

    /// A leader-election Lease renewal or acquisition.
    pub(crate) fn is_lease(&self) -> bool {
        self.resource == "leases"
    }
}

/// The requests of `user` in an audit log (JSON lines), each once: a watch or a long request
/// appears at several stages under one audit ID. Lines that are not audit events are skipped.
pub(crate) fn parse(text: &str, user: &str) -> Vec<Request> {
    let mut seen = BTreeSet::new();
    let mut requests = Vec::new();
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else { continue };
        if event["user"]["username"].as_str() != Some(user) {
            continue;
        }
        let Some(id) = event["auditID"].as_str() else { continue };
        if !seen.insert(id.to_string()) {
            continue;
        }
        let Some(at) = event["requestReceivedTimestamp"].as_str().and_then(|t| t.parse::<Timestamp>().ok()) else {
            continue;
        };
        let verb = event["verb"].as_str().unwrap_or("unknown").to_string();
        let resource = match event["objectRef"]["resource"].as_str() {
            Some(resource) => match event["objectRef"]["subresource"].as_str() {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.to_string(),
            },
            None => {
                let uri = event["requestURI"].as_str().unwrap_or("?");
                uri.split('?').next().unwrap_or(uri).to_string()
            }
        };
        let impersonated = event["impersonatedUser"].is_object();
        requests.push(Request { at, verb, resource, impersonated });
    }
    requests
}

/// Requests within a window, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    /// By `(verb, resource)`.
    pub(crate) by_verb_resource: BTreeMap<(String, String), u64>,
    /// Of them sent as a namespace's deployer.
    pub(crate) impersonated: u64,
    /// Writes to status subresources.
    pub(crate) status_writes: u64,
    /// Other writes, Lease renewals excluded.
    pub(crate) other_writes: u64,
    /// Lease writes (leader election).
    pub(crate) lease_writes: u64,
}

/// Counts the requests received in `[from, to)`.
pub(crate) fn count(requests: &[Request], from: Timestamp, to: Timestamp) -> Counts {
    let mut counts = Counts::default();
    for r in requests.iter().filter(|r| r.at >= from && r.at < to) {
        counts.total += 1;
        *counts.by_verb_resource.entry((r.verb.clone(), r.resource.clone())).or_default() += 1;
        counts.impersonated += u64::from(r.impersonated);
        if r.is_status_write() {
            counts.status_writes += 1;
        } else if r.is_write() && r.is_lease() {
            counts.lease_writes += 1;
        } else if r.is_write() {
            counts.other_writes += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "system:serviceaccount:tidegate-system:tidegate-controller";

    fn event(id: &str, stage: &str, verb: &str, object: Value, at: &str, extra: Value) -> String {
        let mut e = serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
            "stage": stage, "requestURI": "/apis/tidegate.dev/v1alpha1/releases?watch=true", "verb": verb,
            "user": {"username": USER, "groups": ["system:serviceaccounts"]},
            "objectRef": object, "responseStatus": {"code": 200},
            "requestReceivedTimestamp": at, "stageTimestamp": at
        });
        if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
            e.extend(extra.clone());
        }
        e.to_string()
    }

    fn log() -> String {
        let releases = serde_json::json!({"resource": "releases", "apiGroup": "tidegate.dev"});
        let status =
            serde_json::json!({"resource": "releases", "subresource": "status", "namespace": "a", "name": "r"});
        let deployment = serde_json::json!({"resource": "deployments", "namespace": "a", "name": "app-1"});
        let lease = serde_json::json!({"resource": "leases", "namespace": "tidegate-system"});
        let review = serde_json::json!({"resource": "subjectaccessreviews", "apiGroup": "authorization.k8s.io"});
        let deployer =
            serde_json::json!({"impersonatedUser": {"username": "system:serviceaccount:a:tidegate-deployer"}});
        let other_user = serde_json::json!({"user": {"username": "alice"}});
        [
            // A watch: started and completed under one ID.
            event("1", "ResponseStarted", "watch", releases.clone(), "2026-12-03T02:00:00.100000Z", Value::Null),
            event("1", "ResponseComplete", "watch", releases.clone(), "2026-12-03T02:00:00.100000Z", Value::Null),
            event("2", "ResponseComplete", "patch", status.clone(), "2026-12-03T02:00:01.000000Z", Value::Null),
            event("3", "ResponseComplete", "patch", deployment, "2026-12-03T02:00:01.500000Z", deployer),
            event("4", "ResponseComplete", "update", lease, "2026-12-03T02:00:02.000000Z", Value::Null),
            event("5", "ResponseComplete", "create", review, "2026-12-03T02:00:02.500000Z", Value::Null),
            event("6", "ResponseComplete", "patch", status, "2026-12-03T02:00:03.000000Z", other_user),
            "not json".to_string(),
            serde_json::json!({"auditID": "7", "verb": "get", "requestURI": "/version?timeout=32s",
                "user": {"username": USER}, "requestReceivedTimestamp": "2026-12-03T02:00:04Z"})
            .to_string(),
        ]
        .join("\n")
    }

    #[test]
    fn each_request_of_the_user_is_read_once() {
        let requests = parse(&log(), USER);
        let seen: Vec<(&str, &str, bool)> =
            requests.iter().map(|r| (r.verb.as_str(), r.resource.as_str(), r.impersonated)).collect();
        assert_eq!(
            seen,
            [
                ("watch", "releases", false),
                ("patch", "releases/status", false),
                ("patch", "deployments", true),
                ("update", "leases", false),
                ("create", "subjectaccessreviews", false),
                ("get", "/version", false),
            ]
        );
    }

    #[test]
    fn counts_split_status_writes_other_writes_leases_and_reviews() {
        let requests = parse(&log(), USER);
        let all = count(&requests, "2026-12-03T02:00:00Z".parse().unwrap(), "2026-12-03T03:00:00Z".parse().unwrap());
        assert_eq!(all.total, 6);
        assert_eq!((all.status_writes, all.other_writes, all.lease_writes, all.impersonated), (1, 1, 1, 1));
        assert_eq!(all.by_verb_resource.get(&("patch".to_string(), "releases/status".to_string())), Some(&1));
        // The window is half-open and uses the time the request was received.
        let window = count(&requests, "2026-12-03T02:00:01Z".parse().unwrap(), "2026-12-03T02:00:02Z".parse().unwrap());
        assert_eq!((window.total, window.status_writes, window.other_writes), (2, 1, 1));
    }

    #[test]
    fn the_policy_records_only_the_controller() {
        let policy: Value = serde_yaml::from_str(&policy_yaml(USER)).unwrap();
        assert_eq!(policy["rules"][0]["users"][0], USER);
        assert_eq!(policy["rules"][0]["level"], "Metadata");
        assert_eq!(policy["rules"][1]["level"], "None");
        assert!(policy["rules"][1].get("users").is_none());
    }
}
