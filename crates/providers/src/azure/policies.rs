//! The pieces of the ARM pipeline that are Tidegate's own: the retry policy (Retry-After capped,
//! exponential backoff with jitter otherwise), the per-subscription request budget, request-id
//! logging and per-operation counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::http::headers::{HeaderName, Headers};
use azure_core::http::policies::{Policy, PolicyResult, RetryHeaders, RetryPolicy};
use azure_core::http::{Context, Request, StatusCode};
use azure_core::time::OffsetDateTime;
use tokio::time::Instant;

use crate::registry::budget::Budget;
use tracing::{debug, warn};

/// `x-ms-request-id`: ARM's id of a request, for Azure support.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
// The standard header: azure_core reads it as seconds or an HTTP date (others as milliseconds).
const RETRY_AFTER: HeaderName = HeaderName::from_static_standard("retry-after");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");

/// How long the server asked to wait: `x-ms-retry-after-ms` / `retry-after-ms` (milliseconds)
/// first, then `Retry-After` as seconds or as an HTTP date (a date in the past means now).
pub(crate) fn retry_after(headers: &Headers, now: OffsetDateTime) -> Option<Duration> {
    for name in [X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS] {
        if let Some(ms) = headers.get_optional_str(&name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    let value = headers.get_optional_str(&RETRY_AFTER)?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = azure_core::time::parse_rfc7231(value).ok()?;
    let wait = at - now;
    Some(if wait.is_negative() { Duration::ZERO } else { wait.unsigned_abs() })
}

/// Retries of requests answered with 408, 429 or 5xx, or failed in transport. A server's
/// `Retry-After` is honoured up to `max_retry_after`; otherwise the delay doubles from `initial`
/// up to `max_delay`, with up to 50 % random jitter so that reconcilers sharing one throttled
/// subscription do not retry in lockstep.
#[derive(Debug)]
pub(crate) struct ArmRetry {
    pub(crate) max_retries: u32,
    pub(crate) max_elapsed: Duration,
    pub(crate) initial: Duration,
    pub(crate) max_delay: Duration,
    pub(crate) max_retry_after: Duration,
    headers: RetryHeaders,
    statuses: &'static [StatusCode],
}

impl ArmRetry {
    /// Retries for reads and idempotent writes (GET, PUT, PATCH): 408, 429 and 5xx.
    pub(crate) fn new(max_retries: u32) -> Self {
        Self {
            statuses: RETRY_STATUS,
            max_retries,
            max_elapsed: Duration::from_secs(120),
            initial: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            headers: RetryHeaders { retry_headers: vec![X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS, RETRY_AFTER] },
        }
    }

    /// Retries for actions (POST `…/start`, `…/activate`): only 429, which ARM answers before
    /// doing anything; a server error may have started the action already, and starting a job
    /// twice is worse than reporting the error.
    pub(crate) fn for_actions(max_retries: u32) -> Self {
        Self { statuses: &[StatusCode::TooManyRequests], ..Self::new(max_retries) }
    }

    /// The delay before retry number `retry` (1-based) when the server said nothing.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let base = self.initial.saturating_mul(2u32.saturating_pow(retry.saturating_sub(1))).min(self.max_delay);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.5);
        (base + jitter).min(self.max_delay)
    }

    /// The delay before retry number `retry`, given what the server asked for.
    pub(crate) fn delay(&self, retry: u32, server: Option<Duration>) -> Duration {
        match server {
            Some(asked) => asked.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }
}

const RETRY_STATUS: &[StatusCode] = &[
    StatusCode::RequestTimeout,
    StatusCode::TooManyRequests,
    StatusCode::InternalServerError,
    StatusCode::BadGateway,
    StatusCode::ServiceUnavailable,
    StatusCode::GatewayTimeout,
];

#[async_trait::async_trait]
impl RetryPolicy for ArmRetry {
    fn is_expired(&self, since_start: azure_core::time::Duration, retry_count: u32) -> bool {
        retry_count >= self.max_retries || since_start.unsigned_abs() >= self.max_elapsed
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        self.statuses
    }

    fn sleep_duration(&self, retry_count: u32) -> azure_core::time::Duration {
        azure_core::time::Duration::try_from(self.backoff(retry_count)).unwrap_or(azure_core::time::Duration::ZERO)
    }

    async fn wait(&self, retry_count: u32, retry_after: Option<azure_core::time::Duration>) {
        let server = retry_after.map(|d| if d.is_negative() { Duration::ZERO } else { d.unsigned_abs() });
        let delay = self.delay(retry_count, server);
        debug!(retry = retry_count, delay_ms = delay.as_millis() as u64, "retrying an Azure request");
        tokio::time::sleep(delay).await;
    }
}

/// Requests sent for one kind of operation, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OperationStats {
    /// Every HTTP request sent (retries and polls included).
    pub requests: u64,
    /// Answers with 429.
    pub throttled: u64,
    /// Answers with another 4xx.
    pub client_errors: u64,
    /// Answers with 5xx.
    pub server_errors: u64,
    /// Requests that got no answer (connection, TLS, timeout).
    pub transport_errors: u64,
}

/// A bounded label for a request: the method and the resource types of its path, without names
/// (`PATCH containerApps`, `POST containerApps/revisions/activate`, `GET jobs/executions`).
pub(crate) fn operation_label(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    // Key Vault: `/keys/{name}/{version}/sign` is `POST keys/sign`, `/keys/{name}` is `GET keys`.
    if let Some(collection @ ("keys" | "certificates")) = segments.first().copied() {
        return match segments.get(3) {
            Some(action) => format!("{method} {collection}/{action}"),
            None => format!("{method} {collection}"),
        };
    }
    let after = segments.iter().rposition(|s| s.eq_ignore_ascii_case("providers")).map_or(0, |i| i + 2);
    let types: Vec<&str> = segments.iter().skip(after).step_by(2).copied().collect();
    let types = if types.is_empty() {
        segments.iter().step_by(2).copied().collect::<Vec<_>>().join("/")
    } else {
        types.join("/")
    };
    format!("{method} {types}")
}

/// Per-try policy: waits for the subscription's budget, counts the request and logs ARM's
/// request id with the outcome.
#[derive(Debug)]
pub(crate) struct ObservePolicy {
    rate: f64,
    budgets: Mutex<HashMap<String, Arc<Budget>>>,
    pub(crate) stats: Mutex<BTreeMap<String, OperationStats>>,
}

impl ObservePolicy {
    pub(crate) fn new(rate: f64) -> Self {
        Self { rate, budgets: Mutex::default(), stats: Mutex::default() }
    }

    fn budget(&self, path: &str) -> Arc<Budget> {
        let mut segments = path.trim_start_matches('/').split('/');
        let subscription = match (segments.next(), segments.next()) {
            (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => id.to_ascii_lowercase(),
            _ => String::new(),
        };
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        budgets.entry(subscription).or_insert_with(|| Arc::new(Budget::new(self.rate))).clone()
    }

    fn count(&self, label: String, outcome: impl FnOnce(&mut OperationStats)) {
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        let entry = stats.entry(label).or_default();
        entry.requests += 1;
        outcome(entry);
    }
}

#[async_trait::async_trait]
impl Policy for ObservePolicy {
    async fn send(&self, ctx: &Context, request: &mut Request, next: &[Arc<dyn Policy>]) -> PolicyResult {
        let path = request.url().path().to_string();
        let method = request.method().to_string();
        self.budget(&path).take().await;
        let label = operation_label(&method, &path);
        let started = Instant::now();
        let Some((first, rest)) = next.split_first() else {
            return Err(azure_core::Error::with_message(azure_core::error::ErrorKind::Other, "empty Azure pipeline"));
        };
        match first.send(ctx, request, rest).await {
            Ok(response) => {
                let status = u16::from(response.status());
                let request_id = response.headers().get_optional_str(&REQUEST_ID).unwrap_or("-").to_string();
                let elapsed_ms = started.elapsed().as_millis() as u64;
                if status == 429 {
                    warn!(%method, %path, status, %request_id, elapsed_ms, "Azure throttled a request");
                } else {
                    debug!(%method, %path, status, %request_id, elapsed_ms, "Azure answered");
                }
                self.count(label, |s| match status {
                    429 => s.throttled += 1,
                    400..=499 => s.client_errors += 1,
                    500..=599 => s.server_errors += 1,
                    _ => {}
                });
                Ok(response)
            }
            Err(e) => {
                debug!(%method, %path, error = %e, "Azure request failed");
                self.count(label, |s| s.transport_errors += 1);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azure_core::time::OffsetDateTime;

    fn headers(pairs: &[(&'static str, &'static str)]) -> Headers {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_static(k), *v);
        }
        h
    }

    fn now() -> OffsetDateTime {
        azure_core::time::parse_rfc7231("Fri, 01 Jan 2021 00:00:00 GMT").unwrap()
    }

    #[test]
    fn retry_after_in_every_form() {
        assert_eq!(retry_after(&headers(&[("retry-after", "7")]), now()), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "Fri, 01 Jan 2021 00:00:10 GMT")]), now()),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "Thu, 31 Dec 2020 23:59:00 GMT")]), now()),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after-ms", "250")]), now()), Some(Duration::from_millis(250)));
        assert_eq!(
            retry_after(&headers(&[("x-ms-retry-after-ms", "1500"), ("retry-after", "9")]), now()),
            Some(Duration::from_millis(1500)),
            "the precise header wins"
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now()), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")]), now()), None);
        assert_eq!(retry_after(&headers(&[]), now()), None);
    }

    #[test]
    fn azure_core_reads_our_retry_headers_as_seconds_and_dates() {
        let retry = ArmRetry::new(1);
        let read = |h: &Headers| azure_core::http::policies::get_retry_after(h, now, &retry.headers.retry_headers);
        assert_eq!(read(&headers(&[("retry-after", "7")])), Some(azure_core::time::Duration::seconds(7)));
        assert_eq!(
            read(&headers(&[("retry-after", "Fri, 01 Jan 2021 00:00:03 GMT")])),
            Some(azure_core::time::Duration::seconds(3))
        );
        assert_eq!(read(&headers(&[("retry-after-ms", "20")])), Some(azure_core::time::Duration::milliseconds(20)));
    }

    #[test]
    fn retry_after_is_capped_and_backoff_grows_with_jitter() {
        let retry = ArmRetry::new(5);
        assert_eq!(retry.delay(1, Some(Duration::from_secs(3600))), Duration::from_secs(60));
        assert_eq!(retry.delay(1, Some(Duration::from_secs(2))), Duration::from_secs(2));
        for attempt in 1..=8 {
            let d = retry.delay(attempt, None);
            let base = Duration::from_millis(500).saturating_mul(1 << (attempt - 1)).min(Duration::from_secs(30));
            assert!(d >= base && d <= base.mul_f64(1.5).min(Duration::from_secs(30)), "{attempt}: {d:?}");
        }
        assert!(retry.is_expired(azure_core::time::Duration::seconds(1), 5));
        assert!(!retry.is_expired(azure_core::time::Duration::seconds(1), 4));
        assert!(retry.is_expired(azure_core::time::Duration::seconds(121), 0));
    }

    #[test]
    fn operation_labels_have_no_names() {
        let app = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.App/containerApps/web";
        assert_eq!(operation_label("PATCH", app), "PATCH containerApps");
        assert_eq!(operation_label("GET", &format!("{app}/revisions")), "GET containerApps/revisions");
        assert_eq!(
            operation_label("POST", &format!("{app}/revisions/web--x/activate")),
            "POST containerApps/revisions/activate"
        );
        assert_eq!(
            operation_label(
                "GET",
                "/subscriptions/s/providers/Microsoft.App/locations/eastus/containerappOperationStatuses/1"
            ),
            "GET locations/containerappOperationStatuses"
        );
        assert_eq!(operation_label("GET", "/subscriptions/s/resourceGroups/rg"), "GET subscriptions/resourceGroups");
        assert_eq!(operation_label("POST", "/keys/signer/0123abcd/sign"), "POST keys/sign");
        assert_eq!(operation_label("GET", "/keys/signer/0123abcd"), "GET keys");
        assert_eq!(operation_label("GET", "/certificates/tidegate"), "GET certificates");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_spends_its_burst_then_paces() {
        let budget = Budget::new(4.0);
        let start = Instant::now();
        for _ in 0..8 {
            budget.take().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(990), "{:?}", start.elapsed());
        assert!(start.elapsed() < Duration::from_millis(1100), "{:?}", start.elapsed());
    }
}
