//! Prometheus metrics and the `/metrics`, `/healthz` and `/readyz` endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::watcher::BaseWatcher;

/// Labels of reconcile metrics: the resource kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `ImagePolicy`, `Release` or `Promotion`; `Approval` for the approval lane's passes over
    /// Promotions.
    pub kind: &'static str,
}

/// Labels of failure metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// The resource kind.
    pub kind: &'static str,
    /// The error category (bounded).
    pub category: &'static str,
}

/// Labels of phase transitions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The resource kind.
    pub kind: &'static str,
    /// The phase entered.
    pub phase: String,
}

/// Labels of Azure Resource Manager requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AzureLabels {
    /// Method and resource types, without names (`PATCH containerApps`).
    pub operation: String,
    /// `sent`, `throttled`, `client_error`, `server_error` or `transport_error`.
    pub outcome: &'static str,
}

/// Where the Azure request counts come from: read when `/metrics` is scraped.
pub type AzureStats = Arc<dyn Fn() -> Vec<(String, [u64; 5])> + Send + Sync>;

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles run.
    pub reconciles: Family<KindLabel, Counter>,
    /// Reconciles failed, by category.
    pub failures: Family<FailureLabels, Counter>,
    /// Reconcile duration.
    pub duration: Family<KindLabel, Histogram>,
    /// Phase transitions.
    pub transitions: Family<PhaseLabels, Counter>,
    /// Status writes (a quiet cluster has none).
    pub status_writes: Family<KindLabel, Counter>,
    /// Azure Resource Manager requests, by operation and outcome.
    pub azure_requests: Family<AzureLabels, Counter>,
    /// Candidates' scans queued or running in the controller now.
    pub scans_pending: Gauge,
    azure_stats: std::sync::OnceLock<AzureStats>,
    ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tidegate");
        let reconciles = Family::<KindLabel, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let transitions = Family::<PhaseLabels, Counter>::default();
        let status_writes = Family::<KindLabel, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_failures", "Reconciles that failed, by error category", failures.clone());
        registry.register("reconcile_duration_seconds", "Time spent in one reconcile", duration.clone());
        registry.register("phase_transitions", "Phase transitions, by the phase entered", transitions.clone());
        registry.register("status_writes", "Status patches sent", status_writes.clone());
        let azure_requests = Family::<AzureLabels, Counter>::default();
        registry.register(
            "azure_requests",
            "Azure Resource Manager requests (retries and polls included), by operation and outcome",
            azure_requests.clone(),
        );
        let scans_pending = Gauge::default();
        registry.register(
            "scans_pending",
            "Candidates' scans queued or running in the controller (Trivy), whose Releases wait in Scanning",
            scans_pending.clone(),
        );
        Self {
            registry,
            reconciles,
            failures,
            duration,
            transitions,
            status_writes,
            azure_requests,
            scans_pending,
            azure_stats: std::sync::OnceLock::new(),
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    /// Records that a reconcile of `kind` took `elapsed`.
    pub fn observe(&self, kind: &'static str, elapsed: Duration) {
        self.reconciles.get_or_create(&KindLabel { kind }).inc();
        self.duration.get_or_create(&KindLabel { kind }).observe(elapsed.as_secs_f64());
    }

    /// Marks the controller ready (leader, caches synced) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Reports Azure request counts from `stats` on every scrape.
    pub fn set_azure_stats(&self, stats: AzureStats) {
        let _ = self.azure_stats.set(stats);
    }

    /// Brings the Azure counters up to the client's own counts.
    fn refresh_azure(&self) {
        let Some(stats) = self.azure_stats.get() else { return };
        const OUTCOMES: [&str; 5] = ["sent", "throttled", "client_error", "server_error", "transport_error"];
        for (operation, counts) in stats() {
            for (outcome, count) in OUTCOMES.iter().zip(counts) {
                let counter = self.azure_requests.get_or_create(&AzureLabels { operation: operation.clone(), outcome });
                counter.inc_by(count.saturating_sub(counter.get()));
            }
        }
    }

    fn encode(&self) -> String {
        self.refresh_azure();
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics`, `/healthz` (the process runs), `/readyz` (leader and controllers
/// started) and `POST /webhooks/registry` (registry push notifications) on `addr` until the
/// process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>, watcher: Arc<BaseWatcher>) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(metrics)
        .merge(axum::Router::new().route("/webhooks/registry", post(notification_handler)).with_state(watcher));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, app).await
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode())
}

async fn notification_handler(State(watcher): State<Arc<BaseWatcher>>, body: axum::body::Bytes) -> impl IntoResponse {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "expected a JSON registry notification".to_string());
    };
    let pushes = crate::watcher::parse_notification(&json);
    let matched: usize = pushes.iter().map(|(repository, tag)| watcher.notify(repository, tag.as_deref())).sum();
    (StatusCode::ACCEPTED, format!("{} push(es), {matched} watched base image(s) to check now", pushes.len()))
}

async fn ready_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not leading yet")
    }
}
