//! Per-object exponential backoff with jitter: kube's controller retries failed objects, but the
//! delay is ours to choose, object by object, so one broken object neither spins nor slows others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

/// Failure counts per object key.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

/// First retry delay.
const BASE: Duration = Duration::from_millis(500);
/// Longest delay.
const CAP: Duration = Duration::from_secs(300);

impl Backoff {
    /// Records a failure of `key` and returns how long to wait before retrying it.
    pub fn failed(&self, key: &str) -> Duration {
        let attempt = {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            let n = failures.entry(key.to_string()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        let exponential = BASE.saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        let delay = exponential.min(CAP);
        // Full jitter between half and all of the delay, so retries of many objects spread out.
        let factor: f64 = rand::rng().random_range(0.5..=1.0);
        delay.mul_f64(factor)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// `interval` moved by up to a tenth either way, so that objects started together (a thousand
/// policies applied at once) do not look again all at once for ever after.
pub fn spread(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.9..=1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_stays_within_a_tenth() {
        let interval = Duration::from_secs(30);
        let seen: Vec<Duration> = (0..200).map(|_| spread(interval)).collect();
        assert!(seen.iter().all(|d| *d >= Duration::from_secs(27) && *d <= Duration::from_secs(33)), "{seen:?}");
        assert!(seen.iter().any(|d| *d != seen[0]), "the intervals are spread");
    }

    #[test]
    fn grows_jittered_capped_and_resets() {
        let backoff = Backoff::default();
        let first = backoff.failed("a");
        assert!(first >= BASE / 2 && first <= BASE, "{first:?}");
        let mut last = first;
        for _ in 0..30 {
            last = backoff.failed("a");
        }
        assert!(last <= CAP && last >= CAP / 2, "{last:?}");
        assert!(backoff.failed("b") <= BASE, "keys are independent");
        backoff.succeeded("a");
        assert!(backoff.failed("a") <= BASE);
    }
}
