//! A request budget (per registry, per Azure subscription): a token bucket refilled at a steady rate. A request waits for a
//! token, so a burst of work never floods one registry (or burns its pull quota).
//!
//! Requests made inside [`urgent`] go first: while one of them waits for a token, no other
//! request takes one. The promotion gate's checks run so, so that approved changes are not queued
//! behind a morning's rebuilds.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

tokio::task_local! {
    static URGENT: ();
}

/// Runs `work` with its budgeted requests ahead of every other request (see the module docs).
pub async fn urgent<F: Future>(work: F) -> F::Output {
    URGENT.scope((), work).await
}

/// Whether the running task is inside [`urgent`].
fn is_urgent() -> bool {
    URGENT.try_with(|_| ()).is_ok()
}

/// Token bucket.
#[derive(Debug)]
pub(crate) struct Budget {
    rate: f64,
    state: Mutex<(f64, Instant)>,
    /// Urgent requests waiting for a token.
    urgent_waiting: AtomicUsize,
}

/// Counts an urgent request as waiting until it is dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Budget {
    /// `rate` requests per second, burst of one second's worth (at least one).
    pub(crate) fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() && rate > 0.0 { rate } else { 1.0 };
        Self { rate, state: Mutex::new((rate.max(1.0), Instant::now())), urgent_waiting: AtomicUsize::new(0) }
    }

    /// Waits until a request may be sent.
    pub(crate) async fn take(&self) {
        let urgent = is_urgent();
        let _waiting = urgent.then(|| {
            self.urgent_waiting.fetch_add(1, Ordering::SeqCst);
            Waiting(&self.urgent_waiting)
        });
        loop {
            let wait = {
                let mut state = self.state.lock().await;
                let (tokens, last) = &mut *state;
                let now = Instant::now();
                *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.rate.max(1.0));
                *last = now;
                let yields = !urgent && self.urgent_waiting.load(Ordering::SeqCst) > 0;
                if *tokens >= 1.0 && !yields {
                    *tokens -= 1.0;
                    return;
                }
                // Short of a token: until the next one is due. Behind urgent requests: one
                // token's time, the one they take.
                let short = if yields { 1.0 } else { 1.0 - *tokens };
                Duration::from_secs_f64(short / self.rate)
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

    #[tokio::test(start_paused = true)]
    async fn urgent_requests_go_before_waiting_ones() {
        let budget = std::sync::Arc::new(Budget::new(2.0));
        // Spend the burst, so that everything from here waits.
        budget.take().await;
        budget.take().await;
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (budget, order) = (budget.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                budget.take().await;
                order.lock().unwrap().push(format!("background {i}"));
            }));
        }
        tokio::task::yield_now().await;
        let (b, o) = (budget.clone(), order.clone());
        let gate = tokio::spawn(urgent(async move {
            for i in 0..2 {
                b.take().await;
                o.lock().unwrap().push(format!("gate {i}"));
            }
        }));
        gate.await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        let gates: Vec<usize> =
            order.iter().enumerate().filter(|(_, w)| w.starts_with("gate")).map(|(i, _)| i).collect();
        // At most the one background request whose token was already due gets in first.
        assert!(gates.iter().all(|&i| i <= 2), "{order:?}");
        assert_eq!(order.len(), 6, "nobody is starved: {order:?}");
    }
}
