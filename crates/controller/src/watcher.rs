//! The base-image watcher: resolves every base image reference that any ImagePolicy watches, once
//! per interval however many policies share it, and wakes the policy reconciler when a digest
//! changes. Registry push notifications make it look at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::reflector::Store;
use tidegate_api::ImagePolicy;
use tidegate_core::watch::{Watched, due, notification_matches};
use tidegate_core::{ImageRef, parse_duration};
use tidegate_providers::registry::{Repository, Resolver};
use tokio::sync::{Notify, mpsc};

/// Shared watcher state.
pub struct BaseWatcher {
    registry: Arc<dyn Resolver>,
    state: Mutex<BTreeMap<String, Watched>>,
    /// Why the last check of a reference failed, until one succeeds.
    errors: Mutex<BTreeMap<String, String>>,
    wake: Notify,
}

impl BaseWatcher {
    /// A watcher resolving through `registry`.
    pub fn new(registry: Arc<dyn Resolver>) -> Self {
        Self { registry, state: Mutex::default(), errors: Mutex::default(), wake: Notify::new() }
    }

    /// Why the last check of `reference` failed, if it did (cleared by the next success).
    pub fn error(&self, reference: &str) -> Option<String> {
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).get(reference).cloned()
    }

    /// The digest last seen behind `reference`.
    pub fn digest(&self, reference: &str) -> Option<String> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).get(reference).and_then(|w| w.digest.clone())
    }

    /// A registry reported a push of `repository` (`host/path`) with `tag`: check matching
    /// references now. Returns how many references matched.
    pub fn notify(&self, repository: &str, tag: Option<&str>) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut matched = 0;
        for (reference, watched) in state.iter_mut() {
            if notification_matches(reference, repository, tag) {
                watched.notified = true;
                matched += 1;
            }
        }
        drop(state);
        if matched > 0 {
            self.wake.notify_one();
        }
        matched
    }

    /// Runs forever: checks due references, and sends `()` when any digest changed.
    pub async fn run(self: Arc<Self>, policies: Store<ImagePolicy>, changed: mpsc::Sender<()>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = self.wake.notified() => {}
            }
            let wanted: Vec<(String, Duration)> = policies
                .state()
                .iter()
                .filter_map(|p| p.spec.triggers.base_image.as_ref())
                .map(|b| (b.reference.clone(), parse_duration(&b.interval).unwrap_or(Duration::from_secs(900))))
                .collect();
            let now = jiff::Timestamp::now();
            let todo = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                // Forget references no policy watches any more.
                state.retain(|r, _| wanted.iter().any(|(w, _)| w == r));
                due(&wanted, &state, now)
            };
            self.errors.lock().unwrap_or_else(|e| e.into_inner()).retain(|r, _| wanted.iter().any(|(w, _)| w == r));
            let mut any_changed = false;
            for reference in todo {
                let digest = match self.resolve(&reference).await {
                    Ok(digest) => {
                        if self.errors.lock().unwrap_or_else(|e| e.into_inner()).remove(&reference).is_some() {
                            // The policies' Ready condition names the failure until it clears.
                            any_changed = true;
                        }
                        digest
                    }
                    Err(e) => {
                        tracing::warn!(%reference, error = %e, "resolving a base image failed");
                        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
                        any_changed |= errors.get(&reference) != Some(&e);
                        errors.insert(reference.clone(), e);
                        None
                    }
                };
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let watched = state.entry(reference.clone()).or_default();
                watched.checked_at = Some(now);
                watched.notified = false;
                if digest.is_some() && digest != watched.digest {
                    tracing::info!(%reference, digest = ?digest, "base image digest changed");
                    watched.digest = digest;
                    any_changed = true;
                }
            }
            if any_changed {
                let _ = changed.send(()).await;
            }
        }
    }

    async fn resolve(&self, reference: &str) -> Result<Option<String>, String> {
        let image: ImageRef = reference.parse().map_err(|e| format!("{e}"))?;
        let tag = image.tag.clone().unwrap_or_else(|| "latest".into());
        let head = self.registry.head_manifest(&Repository::from(&image), &tag).await.map_err(|e| e.to_string())?;
        Ok(head.map(|d| d.digest))
    }
}

/// Pushes named in a registry notification body: the CNCF distribution registry's envelope
/// (`{"events": [{"action": "push", "target": {...}, "request": {"host": ...}}]}`) or an Azure
/// Container Registry webhook (`{"action": "push", "target": {...}, "request": {"host": ...}}`).
/// Returns `(host/repository, tag)` pairs.
pub fn parse_notification(body: &serde_json::Value) -> Vec<(String, Option<String>)> {
    let events: Vec<&serde_json::Value> = match body["events"].as_array() {
        Some(events) => events.iter().collect(),
        None => vec![body],
    };
    events
        .into_iter()
        .filter(|e| e["action"].as_str() == Some("push"))
        .filter_map(|e| {
            let repository = e["target"]["repository"].as_str()?;
            let host = e["request"]["host"].as_str()?;
            let tag = e["target"]["tag"].as_str().map(str::to_string);
            Some((format!("{host}/{repository}"), tag))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_distribution_and_acr_notifications() {
        let distribution = serde_json::json!({"events": [
            {"action": "push", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "repository": "base/runtime", "digest": "sha256:ab", "tag": "3.20"}, "request": {"host": "127.0.0.1:5000"}},
            {"action": "pull", "target": {"repository": "base/runtime"}, "request": {"host": "127.0.0.1:5000"}}
        ]});
        assert_eq!(
            parse_notification(&distribution),
            [("127.0.0.1:5000/base/runtime".to_string(), Some("3.20".to_string()))]
        );
        let acr = serde_json::json!({"id": "1", "action": "push", "target": {"repository": "base/runtime", "tag": "3.20", "digest": "sha256:ab"}, "request": {"host": "myregistry.azurecr.io"}});
        assert_eq!(
            parse_notification(&acr),
            [("myregistry.azurecr.io/base/runtime".to_string(), Some("3.20".to_string()))]
        );
        assert!(parse_notification(&serde_json::json!({"action": "delete"})).is_empty());
    }
}
