//! A request budget (per registry, per Azure subscription): a token bucket refilled at a steady rate. A request waits for a
//! token, so a burst of work never floods one registry (or burns its pull quota).

use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Mutex;

/// Token bucket.
#[derive(Debug)]
pub(crate) struct Budget {
    rate: f64,
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    /// `rate` requests per second, burst of one second's worth (at least one).
    pub(crate) fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 1.0 };
        Self { rate, state: Mutex::new((rate.max(1.0), Instant::now())) }
    }

    /// Waits until a request may be sent.
    pub(crate) async fn take(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().await;
                let (tokens, last) = &mut *state;
                let now = Instant::now();
                *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate.max(1.0));
                *last = now;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - *tokens) / self.rate)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spends_the_burst_then_paces() {
        let budget = Budget::new(5.0);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            budget.take().await;
        }
        assert!(start.elapsed() < Duration::from_millis(10), "the burst is free");
        for _ in 0..5 {
            budget.take().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(900), "then 5 per second: {:?}", start.elapsed());
    }
}
