//! Fuzzing what the controller reads from registry push notifications (`POST
//! /webhooks/registry`, anyone who can reach the port can send one): the body is read as JSON,
//! [`parse_notification`] picks the pushes out of it (Distribution's envelope of events, or ACR's
//! single event), and [`notification_matches`] decides which watched base images each one wakes.
//! Each must answer, never panic; a push it reports must come from a `push` event and name its
//! host and repository.
//!
//! Bounded run: `cargo test -p tidegate-controller --test fuzz_notifications`. Longer run: see
//! `docs/fuzzing.md`.

use serde_json::{Value, json};
use tidegate_controller::watcher::parse_notification;
use tidegate_core::watch::notification_matches;
use tidegate_fuzz::target;

/// Notifications as CNCF Distribution and Azure Container Registry send them (written for this
/// test after their documented shapes).
fn seeds() -> Vec<Vec<u8>> {
    [
        json!({"events": [
            {"id": "1", "timestamp": "2025-01-15T08:30:00Z", "action": "push",
             "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 528,
                        "digest": "sha256:ce1b317e127fb4b0d72f66285df6a71cad81e71ec2ec2512fbdce9faa94939dc",
                        "repository": "base/runtime", "tag": "3.20"},
             "request": {"id": "r", "addr": "10.0.0.1:5000", "host": "127.0.0.1:5000", "method": "PUT", "useragent": "crane"},
             "actor": {"name": "ci"}, "source": {"addr": "registry:5000", "instanceID": "x"}},
            {"action": "pull", "target": {"repository": "base/runtime"}, "request": {"host": "127.0.0.1:5000"}}
        ]}),
        json!({"id": "2", "timestamp": "2025-01-15T08:30:00Z", "action": "push",
               "target": {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 524,
                          "digest": "sha256:00", "length": 524, "repository": "base/runtime", "tag": "3.20"},
               "request": {"id": "r", "host": "myregistry.azurecr.io", "method": "PUT", "useragent": "docker"}}),
        json!({"action": "delete", "target": {"repository": "base/runtime"}, "request": {"host": "h"}}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect()
}

#[test]
fn registry_notifications() {
    let watched = ["127.0.0.1:5000/base/runtime:3.20", "myregistry.azurecr.io/base/runtime", "r.io/a:b:c"];
    target("controller-registry-notification").iterations(20_000).run(&seeds(), |input| {
        // As the webhook handler does: a body that is not JSON is refused before parsing.
        let Ok(body) = serde_json::from_slice::<Value>(input) else { return Ok(()) };
        let pushes = parse_notification(&body);
        let events = body["events"].as_array().map_or(1, Vec::len);
        if pushes.len() > events {
            return Err(format!("push count: {} pushes from {events} events", pushes.len()));
        }
        for (repository, tag) in &pushes {
            if !repository.contains('/') {
                return Err(format!("push repository: {repository:?} names no host and repository"));
            }
            for reference in watched {
                let _ = notification_matches(reference, repository, tag.as_deref());
            }
        }
        Ok(())
    });
}
