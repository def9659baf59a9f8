//! Fetching the CRLs that Notary Project verification asks for ([`tidegate_notary::revocation`]),
//! with a cache.
//!
//! Verification names CRL URLs only once a signature's chain leads to a trusted certificate, so
//! the URLs come from certificates the trust store's CAs issued. Each is fetched with `GET`
//! over `http` or `https` (CRLs are signed, so plain HTTP is their usual transport; `https` uses
//! the system's roots), within [`FETCH_TIMEOUT`], following at most [`MAX_REDIRECTS`]
//! redirects, answered with `200` and at most [`MAX_CRL_BYTES`]. What the body is worth is
//! decided by the verifier (signature, issuer, validity); a failure here is recorded for the
//! verifier, which reports the revocation status as unknown.
//!
//! A fetched CRL is reused for the same URL while it is younger than the maximum age
//! (`--notary-crl-max-age-seconds`) and its `nextUpdate` has not passed. When a fetch fails and
//! the cached CRL's `nextUpdate` has not passed, the cached CRL is used (and a warning logged):
//! its issuer said it is valid until then, which is also how long notation's cache keeps it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tidegate_notary::{FetchedCrls, crl_validity};

/// How long one CRL download may take (notation's default for CRLs).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest CRL accepted (notation's limit).
pub const MAX_CRL_BYTES: usize = 32 * 1024 * 1024;
/// Redirects followed for one CRL URL.
pub const MAX_REDIRECTS: usize = 3;
/// Default reuse of a fetched CRL.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// CRL URLs fetched for one verification at most; further URLs count as failed.
pub const MAX_URLS_PER_VERIFICATION: usize = 16;
/// CRLs kept in the cache at most (the oldest is dropped first).
const MAX_CACHED: usize = 256;

/// A cached CRL.
#[derive(Clone, Debug)]
struct Cached {
    body: Arc<[u8]>,
    fetched_at: Timestamp,
    next_update: Timestamp,
}

/// What to do with what the cache holds for a URL.
#[derive(Debug, PartialEq, Eq)]
enum Use {
    /// Use the cached CRL without fetching.
    Cached,
    /// Fetch; if that fails, fall back to the cached CRL when `true`.
    Fetch { fallback: bool },
}

/// The cache rule: reuse while younger than `max_age` and not past `nextUpdate`; after that,
/// fetch, and fall back to the cached CRL until its `nextUpdate` if the fetch fails.
fn decide(cached: Option<&Cached>, now: Timestamp, max_age: Duration) -> Use {
    let Some(cached) = cached else {
        return Use::Fetch { fallback: false };
    };
    let current = now <= cached.next_update;
    let age = now.duration_since(cached.fetched_at);
    let young = age >= jiff::SignedDuration::ZERO && age.unsigned_abs() < max_age;
    if current && young { Use::Cached } else { Use::Fetch { fallback: current } }
}

/// Fetches CRLs over HTTP(S) and caches them.
pub struct CrlFetcher {
    http: Result<reqwest::Client, String>,
    max_age: Duration,
    cache: Mutex<BTreeMap<String, Cached>>,
}

impl std::fmt::Debug for CrlFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrlFetcher").field("max_age", &self.max_age).finish_non_exhaustive()
    }
}

impl Default for CrlFetcher {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_AGE)
    }
}

impl CrlFetcher {
    /// A fetcher that reuses a CRL for at most `max_age` (zero: fetch for every verification).
    pub fn new(max_age: Duration) -> Self {
        crate::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for CRLs: {e}"));
        Self { http, max_age, cache: Mutex::default() }
    }

    /// The maximum age of a reused CRL.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// Fetches each of `urls` (cache permitting) and records the result in `crls`. URLs beyond
    /// [`MAX_URLS_PER_VERIFICATION`] for this `crls` are recorded as failed without a request.
    pub async fn fetch_into(&self, urls: &[String], crls: &mut FetchedCrls, now: Timestamp) {
        for url in urls {
            if crls.contains(url) {
                continue;
            }
            if crls.len() >= MAX_URLS_PER_VERIFICATION {
                crls.insert(
                    url.clone(),
                    Err(format!("not fetched: one verification fetches at most {MAX_URLS_PER_VERIFICATION} CRLs")),
                );
                continue;
            }
            let result = self.get(url, now).await;
            crls.insert(url.clone(), result);
        }
    }

    async fn get(&self, url: &str, now: Timestamp) -> Result<Arc<[u8]>, String> {
        let cached = self.lock().get(url).cloned();
        let fallback = match decide(cached.as_ref(), now, self.max_age) {
            Use::Cached => return cached.map(|c| c.body).ok_or_else(|| "the cached CRL disappeared".into()),
            Use::Fetch { fallback } => fallback,
        };
        match self.download(url).await {
            Ok(body) => {
                if let Ok(validity) = crl_validity(&body)
                    && let Some(next_update) = validity.next_update
                    && now <= next_update
                {
                    self.remember(url, Cached { body: body.clone(), fetched_at: now, next_update });
                }
                Ok(body)
            }
            Err(why) => match cached {
                Some(cached) if fallback => {
                    tracing::warn!(
                        url,
                        error = %why,
                        next_update = %cached.next_update,
                        "fetching a CRL failed; using the CRL fetched at {} until its nextUpdate",
                        cached.fetched_at
                    );
                    Ok(cached.body)
                }
                _ => Err(why),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, url: &str, entry: Cached) {
        let mut cache = self.lock();
        cache.insert(url.to_string(), entry);
        while cache.len() > MAX_CACHED {
            let oldest = cache.iter().min_by_key(|(_, c)| c.fetched_at).map(|(u, _)| u.clone());
            match oldest {
                Some(url) => cache.remove(&url),
                None => break,
            };
        }
    }

    async fn download(&self, url: &str) -> Result<Arc<[u8]>, String> {
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("only http and https CRL URLs are fetched, not {}", parsed.scheme()));
        }
        let mut response = http.get(parsed).send().await.map_err(|e| describe(&e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("HTTP {status}"));
        }
        if response.content_length().is_some_and(|n| n > MAX_CRL_BYTES as u64) {
            return Err(format!("the CRL is larger than {MAX_CRL_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
            if body.len() + chunk.len() > MAX_CRL_BYTES {
                return Err(format!("the CRL is larger than {MAX_CRL_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Arc::from(body))
    }
}

/// A transport error with its causes (reqwest's own message hides them).
fn describe(error: &reqwest::Error) -> String {
    let mut text =
        if error.is_timeout() { format!("timed out after {}s", FETCH_TIMEOUT.as_secs()) } else { error.to_string() };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidegate_notary::CrlSource;

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn entry(fetched_at: &str, next_update: &str) -> Cached {
        Cached { body: Arc::from(&b"crl"[..]), fetched_at: at(fetched_at), next_update: at(next_update) }
    }

    #[test]
    fn a_young_current_crl_is_reused() {
        let cached = entry("2025-01-01T10:00:00Z", "2025-01-08T00:00:00Z");
        let five_minutes = Duration::from_secs(300);
        assert_eq!(decide(Some(&cached), at("2025-01-01T10:04:59Z"), five_minutes), Use::Cached);
        assert_eq!(
            decide(Some(&cached), at("2025-01-01T10:05:00Z"), five_minutes),
            Use::Fetch { fallback: true },
            "older than the maximum age: fetched again, the cached one only if that fails"
        );
    }

    #[test]
    fn a_crl_past_next_update_is_never_used() {
        let cached = entry("2025-01-01T10:00:00Z", "2025-01-01T10:01:00Z");
        let hour = Duration::from_secs(3600);
        assert_eq!(decide(Some(&cached), at("2025-01-01T10:02:00Z"), hour), Use::Fetch { fallback: false });
    }

    #[test]
    fn zero_max_age_fetches_every_time() {
        let cached = entry("2025-01-01T10:00:00Z", "2025-01-08T00:00:00Z");
        assert_eq!(decide(Some(&cached), at("2025-01-01T10:00:00Z"), Duration::ZERO), Use::Fetch { fallback: true });
        assert_eq!(decide(None, at("2025-01-01T10:00:00Z"), Duration::ZERO), Use::Fetch { fallback: false });
    }

    #[test]
    fn a_clock_that_went_back_does_not_make_a_crl_young() {
        let cached = entry("2025-01-01T10:00:00Z", "2025-01-08T00:00:00Z");
        assert_eq!(
            decide(Some(&cached), at("2025-01-01T09:00:00Z"), Duration::from_secs(300)),
            Use::Fetch { fallback: true }
        );
    }

    #[tokio::test]
    async fn only_http_urls_are_fetched_and_failures_are_recorded() {
        let fetcher = CrlFetcher::new(Duration::ZERO);
        let mut crls = FetchedCrls::new();
        let now = at("2025-01-01T10:00:00Z");
        fetcher.fetch_into(&["ldap://ldap.example/cn=ca".into(), "not a url".into()], &mut crls, now).await;
        match crls.lookup("ldap://ldap.example/cn=ca") {
            tidegate_notary::CrlLookup::Failed(why) => assert!(why.contains("only http and https"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(crls.lookup("not a url"), tidegate_notary::CrlLookup::Failed(_)));
    }

    #[tokio::test]
    async fn one_verification_fetches_a_bounded_number_of_crls() {
        let fetcher = CrlFetcher::new(Duration::ZERO);
        let mut crls = FetchedCrls::new();
        let urls: Vec<String> = (0..MAX_URLS_PER_VERIFICATION + 2).map(|i| format!("ftp://h/{i}")).collect();
        fetcher.fetch_into(&urls, &mut crls, at("2025-01-01T10:00:00Z")).await;
        match crls.lookup(&urls[MAX_URLS_PER_VERIFICATION]) {
            tidegate_notary::CrlLookup::Failed(why) => assert!(why.contains("at most"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
