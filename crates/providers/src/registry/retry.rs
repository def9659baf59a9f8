//! When a registry request is tried again, and after how long. The decisions are pure (the time
//! and the jitter are arguments), so the request loop in `RegistryClient::send` only carries
//! them out.
//!
//! - Only idempotent requests are repeated (`GET`, `HEAD`, `PUT`, `DELETE`: RFC 9110 §9.2.2; a
//!   `PUT` of a manifest or blob is keyed by its digest or tag). A `POST` (starting an upload, a
//!   token form) fails at once and the caller's backoff takes over.
//! - What is worth repeating: `429`, `5xx` other than `501`/`505` (the server says it cannot do
//!   this at all), a connection that fails or closes before an answer, a timeout.
//! - How long to wait: what `Retry-After` says (seconds or an HTTP date), else exponential
//!   backoff with jitter. A `Retry-After` longer than the client's cap is not waited for inside
//!   one request: the error says when the registry asked to be contacted again. Whenever a
//!   request is given up on while the registry asked to wait, requests to that registry fail
//!   without being sent until the wait is over.

use std::time::{Duration, SystemTime};

use reqwest::{Method, StatusCode};

/// Why an attempt failed in a way that a later attempt may not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// `429 Too Many Requests`.
    RateLimited,
    /// A `5xx` answer.
    ServerError,
    /// The connection could not be made, or closed (or was reset) before an answer.
    Connection,
    /// No complete answer within the timeout.
    Timeout,
}

impl Cause {
    /// What happened, in words for logs and errors.
    pub fn describe(self) -> &'static str {
        match self {
            Self::RateLimited => "429 Too Many Requests",
            Self::ServerError => "a server error",
            Self::Connection => "a failed or dropped connection",
            Self::Timeout => "a timeout",
        }
    }
}

/// How hard to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (at least 1).
    pub attempts: u32,
    /// The first backoff delay; each further one doubles.
    pub base: Duration,
    /// The longest backoff delay.
    pub max_backoff: Duration,
    /// The longest `Retry-After` waited for within one request.
    pub max_retry_after: Duration,
}

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Wait this long, then try again.
    Retry(Duration),
    /// Report the failure.
    GiveUp,
}

/// Whether repeating `method` cannot change the outcome beyond what one request would.
pub fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS)
}

/// Whether an answer is worth trying again later, and why.
pub fn cause_of(status: StatusCode) -> Option<Cause> {
    match status {
        StatusCode::TOO_MANY_REQUESTS => Some(Cause::RateLimited),
        StatusCode::NOT_IMPLEMENTED | StatusCode::HTTP_VERSION_NOT_SUPPORTED => None,
        s if s.is_server_error() => Some(Cause::ServerError),
        _ => None,
    }
}

/// After `attempts` failed attempts of a request (the registry asking to wait `retry_after` if
/// it said so): try again after how long, or give up. `jitter` is a number in `[0, 1)`.
pub fn decide(
    policy: &RetryPolicy,
    attempts: u32,
    idempotent: bool,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Decision {
    if !idempotent || attempts >= policy.attempts.max(1) {
        return Decision::GiveUp;
    }
    match retry_after {
        Some(wait) if wait > policy.max_retry_after => Decision::GiveUp,
        Some(wait) => Decision::Retry(wait),
        None => Decision::Retry(backoff(policy, attempts, jitter)),
    }
}

/// The delay after the `attempts`-th failed attempt: `base · 2^(attempts-1)`, capped, then
/// scaled to between half and all of it by `jitter` (in `[0, 1)`) so that clients that failed
/// together do not retry together.
pub fn backoff(policy: &RetryPolicy, attempts: u32, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(16);
    let delay = policy.base.saturating_mul(1u32 << exponent).min(policy.max_backoff);
    let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 1.0 };
    delay.mul_f64(0.5 + jitter / 2.0)
}

/// A `Retry-After` value as a delay from `now`: delta-seconds, or an HTTP date (IMF-fixdate,
/// `Sun, 06 Nov 1994 08:49:37 GMT`); a date in the past is no wait. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly many seconds are still "a long time", not a parse error.
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new().parse_timestamp(value).ok()?;
    let at = SystemTime::from(at);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Until when a registry is left alone after a request to it was given up on while it asked to
/// wait `retry_after`: whatever the attempts, the next request waits for what it asked.
pub fn hold_until(now: std::time::Instant, retry_after: Option<Duration>) -> Option<std::time::Instant> {
    retry_after.filter(|wait| !wait.is_zero()).and_then(|wait| now.checked_add(wait))
}

/// How long a registry is still left alone at `now`, if it is.
pub fn still_held(now: std::time::Instant, until: Option<std::time::Instant>) -> Option<Duration> {
    until.and_then(|until| until.checked_duration_since(now)).filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(250),
        max_backoff: Duration::from_secs(10),
        max_retry_after: Duration::from_secs(60),
    };

    #[test]
    fn idempotent_requests_only() {
        for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            assert!(idempotent(&method), "{method}");
        }
        assert!(!idempotent(&Method::POST));
        assert!(!idempotent(&Method::PATCH));
        assert_eq!(decide(&POLICY, 1, false, None, 0.0), Decision::GiveUp);
    }

    #[test]
    fn what_is_worth_retrying() {
        assert_eq!(cause_of(StatusCode::TOO_MANY_REQUESTS), Some(Cause::RateLimited));
        for status in [500, 502, 503, 504, 507] {
            assert_eq!(cause_of(StatusCode::from_u16(status).expect("status")), Some(Cause::ServerError), "{status}");
        }
        for status in [200, 201, 202, 400, 401, 403, 404, 501, 505] {
            assert_eq!(cause_of(StatusCode::from_u16(status).expect("status")), None, "{status}");
        }
    }

    #[test]
    fn attempts_are_bounded() {
        assert!(matches!(decide(&POLICY, 1, true, None, 0.5), Decision::Retry(_)));
        assert!(matches!(decide(&POLICY, 2, true, None, 0.5), Decision::Retry(_)));
        assert_eq!(decide(&POLICY, 3, true, None, 0.5), Decision::GiveUp);
        assert_eq!(decide(&POLICY, 30, true, None, 0.5), Decision::GiveUp);
        let once = RetryPolicy { attempts: 0, ..POLICY };
        assert_eq!(decide(&once, 1, true, None, 0.5), Decision::GiveUp, "at least one attempt");
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        assert_eq!(backoff(&POLICY, 1, 0.0), Duration::from_millis(125), "half of the base at the least");
        assert_eq!(backoff(&POLICY, 1, 1.0), Duration::from_millis(250), "all of it at the most");
        assert_eq!(backoff(&POLICY, 2, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(&POLICY, 3, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&POLICY, 40, 1.0), Duration::from_secs(10), "capped");
        assert_eq!(backoff(&POLICY, 40, 0.0), Duration::from_secs(5));
        let spread: std::collections::BTreeSet<Duration> =
            (0..10).map(|i| backoff(&POLICY, 2, f64::from(i) / 10.0)).collect();
        assert_eq!(spread.len(), 10, "jitter spreads retries");
        assert_eq!(backoff(&POLICY, 1, f64::NAN), Duration::from_millis(250));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(decide(&POLICY, 1, true, wait, 0.9), Decision::Retry(Duration::from_secs(7)));
        assert_eq!(decide(&POLICY, 1, true, Some(Duration::ZERO), 0.9), Decision::Retry(Duration::ZERO));
        assert_eq!(decide(&POLICY, 1, true, Some(Duration::from_secs(61)), 0.9), Decision::GiveUp);
        assert_eq!(decide(&POLICY, 3, true, wait, 0.9), Decision::GiveUp, "still bounded");
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO), "in the past");
        assert_eq!(parse_retry_after("99999999999999999999999", now), Some(Duration::from_secs(u64::MAX)));
        for bad in ["", "-5", "1.5", "soon", "Sun, 99 Nov 1994 08:50:07 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn a_registry_that_asked_for_a_pause_is_left_alone_until_then() {
        let now = std::time::Instant::now();
        assert_eq!(hold_until(now, None), None);
        assert_eq!(hold_until(now, Some(Duration::ZERO)), None);
        assert_eq!(hold_until(now, Some(Duration::from_secs(u64::MAX))), None, "beyond the clock: not held");
        let until = hold_until(now, Some(Duration::from_secs(3600)));
        assert_eq!(until, Some(now + Duration::from_secs(3600)));
        assert_eq!(still_held(now, until), Some(Duration::from_secs(3600)));
        assert_eq!(still_held(now + Duration::from_secs(1800), until), Some(Duration::from_secs(1800)));
        assert_eq!(still_held(now + Duration::from_secs(3600), until), None);
        assert_eq!(still_held(now, None), None);
    }
}
