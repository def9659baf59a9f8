//! Leader election on a `coordination.k8s.io/v1` Lease, so that one replica acts at a time.
//!
//! The rules, the same as client-go's leader election:
//!
//! - The leader renews the Lease every [`RETRY_PERIOD`]. It may act only until
//!   *start of its last successful renew request* + [`RENEW_DEADLINE`], measured on its own
//!   monotonic clock; [`Leadership`] holds that instant, and every API call of the election has a
//!   timeout, so a hanging API server cannot keep a leader acting.
//! - A standby takes the Lease only when the record has not changed for the holder's own
//!   `leaseDurationSeconds` ([`LEASE_DURATION`] for ours), measured from when *it* first saw that
//!   record, on *its* monotonic clock. It never trusts `renewTime`, written with another
//!   machine's wall clock.
//!
//! A successful renew is written after its request started and can only be seen by a standby
//! after it was written, so the standby's takeover comes at least [`LEASE_DURATION`] after the
//! leader's request started, while the leader stopped acting [`RENEW_DEADLINE`] after it; the
//! difference absorbs clock-rate differences and scheduling delays.
//!
//! A leader whose process was frozen (SIGSTOP, cgroup freezer) resumes with its timers late, but
//! the monotonic clock kept running: [`Leadership::is_valid`] is false the moment it resumes. (Not
//! covered: a suspend of the whole machine, which `CLOCK_MONOTONIC` does not count.) The
//! process exits as soon as leadership is no longer valid ([`Leadership::exit_when_lost`]), and
//! code about to change production calls [`Leadership::check`] right before the write, so that
//! nothing is written in the short window between resuming and exiting.

use std::future::Future;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};

/// How long a standby waits, after it last saw the Lease record change, before taking it.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the leader may act after the start of its last successful renew request.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the leader renews and a standby tries to acquire.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// The longest any single API call of the election may take.
pub const API_CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// How often the fencing watchdog looks at the clock (it also wakes at the deadline itself).
const WATCHDOG_TICK: Duration = Duration::from_millis(100);

/// The timing of an election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// See [`LEASE_DURATION`]. Written to the Lease in whole seconds (rounded up).
    pub lease_duration: Duration,
    /// See [`RENEW_DEADLINE`].
    pub renew_deadline: Duration,
    /// See [`RETRY_PERIOD`].
    pub retry_period: Duration,
    /// See [`API_CALL_TIMEOUT`].
    pub api_call_timeout: Duration,
}

impl Timing {
    /// Lease 15 s, renew deadline 10 s, retry every 2 s, API calls at most 4 s.
    pub const DEFAULT: Self = Self {
        lease_duration: LEASE_DURATION,
        renew_deadline: RENEW_DEADLINE,
        retry_period: RETRY_PERIOD,
        api_call_timeout: API_CALL_TIMEOUT,
    };

    /// Whether one leader acts with this timing: the leader stops acting strictly before a
    /// standby may take over, and it gets more than one renew attempt before it must stop.
    pub const fn is_safe(&self) -> bool {
        self.renew_deadline.as_nanos() < self.lease_duration.as_nanos()
            && self.retry_period.as_nanos() < self.renew_deadline.as_nanos()
            && self.api_call_timeout.as_nanos() <= self.renew_deadline.as_nanos()
            && self.lease_duration.as_nanos() >= 1_000_000_000
    }

    /// The Lease's `leaseDurationSeconds`: whole seconds, never shorter than the duration.
    fn lease_duration_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs).unwrap_or(i32::MAX)
    }
}

const _: () = assert!(Timing::DEFAULT.is_safe(), "the renew deadline must be shorter than the lease duration");

/// Until when a leader whose successful renew request started at `request_started` may act.
pub fn valid_until(request_started: Instant, timing: &Timing) -> Instant {
    request_started + timing.renew_deadline
}

/// The lease duration the holder announced in `record`, or `fallback` when it announced none.
pub fn holder_lease_duration(record: &LeaseSpec, fallback: Duration) -> Duration {
    match record.lease_duration_seconds.and_then(|s| u64::try_from(s).ok()) {
        Some(secs) if secs > 0 => Duration::from_secs(secs),
        _ => fallback,
    }
}

/// Whether a record first seen (locally) at `observed_at` and unchanged since has expired at
/// `now`: the holder has had `holder_duration` on this replica's clock to renew it.
pub fn observed_expired(observed_at: Instant, holder_duration: Duration, now: Instant) -> bool {
    now.saturating_duration_since(observed_at) >= holder_duration
}

/// What this replica last saw of the Lease record, and when it first saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The record (the Lease spec).
    pub record: LeaseSpec,
    /// When this replica first saw this exact record, on its own monotonic clock.
    pub at: Instant,
}

/// Updates the observation with the record read at `now`: the observation time moves only
/// when the record changed (any field: holder, renew time, transitions, ...).
pub fn observe(previous: Option<Observation>, record: &LeaseSpec, now: Instant) -> Observation {
    match previous {
        Some(seen) if seen.record == *record => seen,
        _ => Observation { record: record.clone(), at: now },
    }
}

/// What a replica does with the record it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// It holds the Lease: renew it.
    Renew,
    /// The Lease is free or expired by observation: take it.
    Take,
    /// Another replica holds a Lease that has not expired by observation.
    Wait,
}

/// The decision of replica `identity` on the `observed` record at `now`.
pub fn decide(observed: &Observation, identity: &str, fallback: Duration, now: Instant) -> Decision {
    match observed.record.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::Take,
        Some(_) if observed_expired(observed.at, holder_lease_duration(&observed.record, fallback), now) => {
            Decision::Take
        }
        Some(_) => Decision::Wait,
    }
}

/// Production was about to be changed by a replica that no longer holds the leader Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("leadership lost: this replica no longer holds the leader Lease and must not change production")]
pub struct LeadershipLost;

impl From<LeadershipLost> for crate::error::Error {
    fn from(lost: LeadershipLost) -> Self {
        // Another replica (or this one after a restart) does the work; the process is exiting.
        Self::Provider(tidegate_providers::ProviderError::Transient(lost.to_string()))
    }
}

/// Whether this replica may act now: a cheap, shared handle (one atomic load and a clock read).
///
/// Call [`Leadership::check`] right before every production write.
#[derive(Debug)]
pub struct Leadership {
    base: Instant,
    /// Nanoseconds after `base` until which this replica may act; [`PENDING`] before the Lease
    /// was first acquired, [`ALWAYS`] without leader election.
    until: AtomicU64,
    /// Set once validity lapsed or the Lease was lost; never cleared.
    lost: AtomicBool,
}

const PENDING: u64 = 0;
const ALWAYS: u64 = u64::MAX;

impl Leadership {
    fn pending() -> Arc<Self> {
        Arc::new(Self { base: Instant::now(), until: AtomicU64::new(PENDING), lost: AtomicBool::new(false) })
    }

    /// Always valid: for `--no-leader-election` (a single replica) and tests.
    pub fn unfenced() -> Arc<Self> {
        Arc::new(Self { base: Instant::now(), until: AtomicU64::new(ALWAYS), lost: AtomicBool::new(false) })
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(ALWAYS - 1).max(1)
    }

    fn lapsed(&self, now: Instant) -> bool {
        if self.lost.load(Ordering::SeqCst) {
            return true;
        }
        match self.until.load(Ordering::SeqCst) {
            PENDING => false,
            ALWAYS => false,
            until => self.nanos(now) >= until,
        }
    }

    /// Whether this replica may act now.
    pub fn is_valid(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
            && match self.until.load(Ordering::SeqCst) {
                PENDING => false,
                ALWAYS => true,
                until => self.nanos(Instant::now()) < until,
            }
    }

    /// `Ok` while this replica may act; call right before a production write. (A freeze between
    /// this check and the write itself cannot be fenced from the client: the workload APIs take no
    /// fencing token. The window is one check-then-send, not the whole reconcile.)
    pub fn check(&self) -> Result<(), LeadershipLost> {
        if self.is_valid() { Ok(()) } else { Err(LeadershipLost) }
    }

    /// Until when this replica may act (`None` before acquisition, after loss, or unfenced).
    pub fn valid_until(&self) -> Option<Instant> {
        if self.lost.load(Ordering::SeqCst) {
            return None;
        }
        match self.until.load(Ordering::SeqCst) {
            PENDING | ALWAYS => None,
            until => Some(self.base + Duration::from_nanos(until)),
        }
    }

    /// Extends validity to `until`, unless it already lapsed (loss is final) or `until` has
    /// passed. Returns whether this replica may act now.
    fn extend(&self, until: Instant) -> bool {
        let now = Instant::now();
        if self.lapsed(now) {
            self.lost.store(true, Ordering::SeqCst);
            return false;
        }
        if until <= now {
            return self.is_valid();
        }
        self.until.fetch_max(self.nanos(until), Ordering::SeqCst);
        self.is_valid()
    }

    /// Marks leadership as lost for good.
    fn revoke(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// The fencing hook: a plain thread (independent of the async runtime, so a starved or
    /// frozen-and-resumed runtime cannot delay it) that exits the process with status 1 as soon
    /// as leadership, once acquired, is no longer valid. Does nothing when unfenced.
    pub fn exit_when_lost(self: &Arc<Self>) {
        if self.until.load(Ordering::SeqCst) == ALWAYS {
            return;
        }
        let leadership = self.clone();
        let spawned = std::thread::Builder::new().name("leader-fence".into()).spawn(move || {
            loop {
                let now = Instant::now();
                if leadership.lapsed(now) {
                    tracing::error!(
                        "leadership lost: the Lease was not renewed in time; exiting so that one replica acts"
                    );
                    std::process::exit(1);
                }
                let wait = leadership.valid_until().map_or(WATCHDOG_TICK, |until| until.saturating_duration_since(now));
                std::thread::sleep(wait.clamp(Duration::from_millis(1), WATCHDOG_TICK));
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "leadership lost: cannot start the fencing watchdog; exiting");
            std::process::exit(1);
        }
    }
}

/// Why one attempt to acquire or renew did not answer.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("the API server did not answer the Lease {0} within {1:?}")]
    Timeout(&'static str, Duration),
}

/// The answer of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// This replica holds the Lease (it just wrote it).
    Held,
    /// Another replica holds it (and, when acquiring, it has not expired by observation).
    HeldByOther(String),
    /// Someone else wrote the Lease between our read and our write.
    Conflict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Acquire,
    Renew,
}

async fn call<T>(
    limit: Duration,
    what: &'static str,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, AttemptError> {
    match tokio::time::timeout(limit, request).await {
        Ok(answer) => Ok(answer?),
        Err(_) => Err(AttemptError::Timeout(what, limit)),
    }
}

fn is_conflict(e: &AttemptError) -> bool {
    matches!(e, AttemptError::Api(kube::Error::Api(s)) if s.code == 409)
}

/// A Lease to compete for.
#[derive(Clone)]
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Arc<Mutex<Option<Observation>>>,
    leadership: Arc<Leadership>,
}

impl LeaderElection {
    /// Competes for Lease `namespace/name` as `identity`, with [`Timing::DEFAULT`].
    pub fn new(client: kube::Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self::with_timing(client, namespace, name, identity, Timing::DEFAULT)
    }

    /// Competes with another timing.
    ///
    /// # Panics
    /// If the timing is not [safe](Timing::is_safe).
    pub fn with_timing(client: kube::Client, namespace: &str, name: &str, identity: &str, timing: Timing) -> Self {
        assert!(timing.is_safe(), "unsafe leader-election timing {timing:?}");
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            observed: Arc::new(Mutex::new(None)),
            leadership: Leadership::pending(),
        }
    }

    /// The shared handle that says whether this replica may act (not valid before
    /// [`acquire`](Self::acquire) returns).
    pub fn leadership(&self) -> Arc<Leadership> {
        self.leadership.clone()
    }

    /// Waits until this replica holds the Lease. Fails only when the API server refuses this
    /// replica access to the Lease (401, 403); other failures are retried.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        let mut logged = false;
        loop {
            let started = tokio::time::Instant::now();
            let attempt = tokio::time::timeout(self.timing.renew_deadline, self.attempt(Mode::Acquire)).await;
            match attempt {
                Ok(Ok(Outcome::Held)) => {
                    if self.leadership.extend(valid_until(started.into_std(), &self.timing)) {
                        tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
                        return Ok(());
                    }
                    tracing::warn!(lease = %self.name, "acquiring the lease took too long; trying again");
                }
                Ok(Ok(Outcome::HeldByOther(holder))) => {
                    if !logged {
                        tracing::info!(lease = %self.name, %holder, "another replica leads; waiting");
                        logged = true;
                    }
                }
                Ok(Ok(Outcome::Conflict)) => {}
                Ok(Err(AttemptError::Api(kube::Error::Api(s)))) if s.code == 401 || s.code == 403 => {
                    return Err(kube::Error::Api(s));
                }
                Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "trying to acquire the lease failed"),
                Err(_) => tracing::warn!(lease = %self.name, "trying to acquire the lease timed out"),
            }
            tokio::time::sleep_until(started + self.timing.retry_period).await;
        }
    }

    /// Renews until leadership is lost, then returns (the caller exits the process). Every
    /// attempt is cut off when validity ends, so a hanging API server cannot extend it.
    pub async fn keep_renewing(&self) {
        let mut next = tokio::time::Instant::now() + self.timing.retry_period;
        loop {
            tokio::time::sleep_until(next).await;
            let started = tokio::time::Instant::now();
            next = started + self.timing.retry_period;
            let Some(until) = self.leadership.valid_until().filter(|until| *until > started.into_std()) else {
                self.leadership.revoke();
                tracing::error!(lease = %self.name, "leadership lost: the lease was not renewed within the renew deadline");
                return;
            };
            match tokio::time::timeout_at(until.into(), self.attempt(Mode::Renew)).await {
                Ok(Ok(Outcome::Held)) => {
                    if !self.leadership.extend(valid_until(started.into_std(), &self.timing)) {
                        self.leadership.revoke();
                        tracing::error!(lease = %self.name, "leadership lost: the renewal came too late");
                        return;
                    }
                    tracing::debug!(lease = %self.name, "renewed the lease");
                }
                Ok(Ok(Outcome::HeldByOther(holder))) => {
                    self.leadership.revoke();
                    tracing::error!(lease = %self.name, %holder, "leadership lost: another replica holds the lease");
                    return;
                }
                Ok(Ok(Outcome::Conflict)) => {
                    tracing::warn!(lease = %self.name, "renewing the lease conflicted with another write; retrying")
                }
                Ok(Err(e)) => tracing::warn!(lease = %self.name, error = %e, "renewing the lease failed; retrying"),
                Err(_) => {
                    self.leadership.revoke();
                    tracing::error!(
                        lease = %self.name,
                        "leadership lost: the API server did not confirm a renewal within the renew deadline"
                    );
                    return;
                }
            }
        }
    }

    /// Remembers the record read (or written) at `now`; returns the updated observation.
    fn observe(&self, record: &LeaseSpec, now: Instant) -> Observation {
        let mut observed = self.observed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let updated = observe(observed.take(), record, now);
        *observed = Some(updated.clone());
        updated
    }

    /// One attempt: create the Lease, take a free or expired one (acquiring only), or renew ours.
    /// The writes carry the resourceVersion read, so of two concurrent writers one conflicts.
    async fn attempt(&self, mode: Mode) -> Result<Outcome, AttemptError> {
        let limit = self.timing.api_call_timeout;
        let wall = Timestamp::now();
        let Some(mut lease) = call(limit, "read", self.api.get_opt(&self.name)).await? else {
            if mode == Mode::Renew {
                return Ok(Outcome::HeldByOther(String::new()));
            }
            let mut lease = Lease::default();
            lease.metadata.name = Some(self.name.clone());
            lease.spec = Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.timing.lease_duration_seconds()),
                acquire_time: Some(MicroTime(wall)),
                renew_time: Some(MicroTime(wall)),
                lease_transitions: Some(0),
                ..Default::default()
            });
            return match call(limit, "create", self.api.create(&PostParams::default(), &lease)).await {
                Ok(created) => {
                    self.observe(&created.spec.unwrap_or_default(), Instant::now());
                    Ok(Outcome::Held)
                }
                Err(e) if is_conflict(&e) => Ok(Outcome::Conflict),
                Err(e) => Err(e),
            };
        };
        let record = lease.spec.clone().unwrap_or_default();
        let observed = self.observe(&record, Instant::now());
        let holder = record.holder_identity.clone().unwrap_or_default();
        let decision = decide(&observed, &self.identity, self.timing.lease_duration, Instant::now());
        match (mode, decision) {
            (_, Decision::Wait) | (Mode::Renew, Decision::Take) => return Ok(Outcome::HeldByOther(holder)),
            (_, Decision::Renew) | (Mode::Acquire, Decision::Take) => {}
        }
        let spec = lease.spec.get_or_insert_with(Default::default);
        if decision == Decision::Take {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(wall));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.renew_time = Some(MicroTime(wall));
        spec.lease_duration_seconds = Some(self.timing.lease_duration_seconds());
        match call(limit, "update", self.api.replace(&self.name, &PostParams::default(), &lease)).await {
            Ok(written) => {
                self.observe(&written.spec.unwrap_or_default(), Instant::now());
                Ok(Outcome::Held)
            }
            Err(e) if is_conflict(&e) => Ok(Outcome::Conflict),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(MicroTime("2000-01-01T00:00:00Z".parse().unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn the_renew_deadline_is_strictly_shorter_than_the_lease_duration() {
        let t = Timing::DEFAULT;
        assert!(t.is_safe());
        assert!(t.renew_deadline < t.lease_duration);
        assert!(t.retry_period < t.renew_deadline);
        assert!(t.api_call_timeout <= t.renew_deadline);
        assert_eq!(t.lease_duration_seconds(), 15);
        // A leader whose renew request started at `s` stops acting before the earliest moment a
        // standby can take over (it sees the write no earlier than `s`).
        let s = Instant::now();
        assert!(valid_until(s, &t) < s + t.lease_duration);
        assert_eq!(valid_until(s, &t), s + Duration::from_secs(10));
        for unsafe_timing in [
            Timing { renew_deadline: LEASE_DURATION, ..t },
            Timing { renew_deadline: LEASE_DURATION + Duration::from_secs(1), ..t },
            Timing { retry_period: RENEW_DEADLINE, ..t },
            Timing { api_call_timeout: RENEW_DEADLINE + Duration::from_millis(1), ..t },
        ] {
            assert!(!unsafe_timing.is_safe(), "{unsafe_timing:?}");
        }
    }

    #[test]
    fn a_standby_measures_expiry_from_its_own_observation_not_from_renew_time() {
        let start = Instant::now();
        // renewTime says the year 2000 (another machine's clock), yet the record was only now
        // seen for the first time: not expired.
        let seen = observe(None, &record("a", 15), start);
        assert_eq!(decide(&seen, "b", LEASE_DURATION, start), Decision::Wait);
        let seen = observe(Some(seen), &record("a", 15), start + Duration::from_secs(14));
        assert_eq!(seen.at, start, "an unchanged record keeps its first observation time");
        assert_eq!(decide(&seen, "b", LEASE_DURATION, start + Duration::from_millis(14_999)), Decision::Wait);
        assert_eq!(decide(&seen, "b", LEASE_DURATION, start + Duration::from_secs(15)), Decision::Take);
    }

    #[test]
    fn any_change_of_the_record_restarts_the_wait() {
        let start = Instant::now();
        let seen = observe(None, &record("a", 15), start);
        let mut renewed = record("a", 15);
        renewed.renew_time = Some(MicroTime("2000-01-01T00:00:02Z".parse().unwrap()));
        let later = start + Duration::from_secs(14);
        let seen = observe(Some(seen), &renewed, later);
        assert_eq!(seen.at, later);
        assert_eq!(decide(&seen, "b", LEASE_DURATION, start + Duration::from_secs(20)), Decision::Wait);
        assert_eq!(decide(&seen, "b", LEASE_DURATION, later + LEASE_DURATION), Decision::Take);
    }

    #[test]
    fn the_holders_own_lease_duration_counts() {
        let start = Instant::now();
        let seen = observe(None, &record("a", 30), start);
        assert_eq!(decide(&seen, "b", LEASE_DURATION, start + Duration::from_secs(20)), Decision::Wait);
        assert_eq!(decide(&seen, "b", LEASE_DURATION, start + Duration::from_secs(30)), Decision::Take);
        let seen = observe(None, &record("a", 0), start);
        assert_eq!(holder_lease_duration(&seen.record, LEASE_DURATION), LEASE_DURATION, "0 means ours");
        let mut none = record("a", 1);
        none.lease_duration_seconds = None;
        assert_eq!(holder_lease_duration(&none, LEASE_DURATION), LEASE_DURATION);
    }

    #[test]
    fn a_free_lease_is_taken_and_our_own_is_renewed() {
        let now = Instant::now();
        let free = observe(None, &LeaseSpec::default(), now);
        assert_eq!(decide(&free, "b", LEASE_DURATION, now), Decision::Take);
        let empty = observe(None, &record("", 15), now);
        assert_eq!(decide(&empty, "b", LEASE_DURATION, now), Decision::Take);
        let ours = observe(None, &record("b", 15), now);
        assert_eq!(decide(&ours, "b", LEASE_DURATION, now), Decision::Renew);
    }

    #[test]
    fn leadership_is_valid_until_the_deadline_and_loss_is_final() {
        let leadership = Leadership::pending();
        assert!(!leadership.is_valid(), "not valid before acquisition");
        assert_eq!(leadership.check(), Err(LeadershipLost));
        assert!(leadership.extend(Instant::now() + Duration::from_millis(200)));
        assert!(leadership.is_valid());
        assert_eq!(leadership.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(250));
        assert!(!leadership.is_valid(), "lapsed by the monotonic clock alone");
        assert!(!leadership.extend(Instant::now() + Duration::from_secs(10)), "a late renewal does not revive it");
        assert!(!leadership.is_valid());
        assert_eq!(leadership.valid_until(), None);

        let revoked = Leadership::pending();
        assert!(revoked.extend(Instant::now() + Duration::from_secs(10)));
        revoked.revoke();
        assert!(!revoked.is_valid());
        assert!(!revoked.extend(Instant::now() + Duration::from_secs(10)));

        let unfenced = Leadership::unfenced();
        assert!(unfenced.is_valid());
        assert_eq!(unfenced.valid_until(), None);
        let e: crate::error::Error = LeadershipLost.into();
        assert!(e.to_string().contains("leadership lost"), "{e}");
    }

    /// An API server that accepts connections and never answers.
    async fn hanging_api_server() -> (kube::Client, tokio::task::JoinHandle<()>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config = kube::Config::new(url.parse().unwrap());
        (kube::Client::try_from(config).unwrap(), server)
    }

    const FAST: Timing = Timing {
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(200),
        api_call_timeout: Duration::from_millis(300),
    };

    #[tokio::test]
    async fn a_hanging_api_server_cannot_keep_a_leader_acting() {
        let (client, server) = hanging_api_server().await;
        let election = LeaderElection::with_timing(client, "ns", "lease", "me", FAST);
        let leadership = election.leadership();
        let started = Instant::now();
        assert!(leadership.extend(valid_until(started, &FAST)));
        let renewing = tokio::time::timeout(Duration::from_secs(5), election.keep_renewing()).await;
        assert!(renewing.is_ok(), "keep_renewing returned although every API call hangs");
        let elapsed = started.elapsed();
        assert!(elapsed >= FAST.renew_deadline, "gave up before the deadline: {elapsed:?}");
        assert!(elapsed < FAST.renew_deadline + Duration::from_millis(500), "fenced late: {elapsed:?}");
        assert!(!leadership.is_valid());
        server.abort();
    }

    #[tokio::test]
    async fn every_api_call_of_the_election_has_a_timeout() {
        let (client, server) = hanging_api_server().await;
        let election = LeaderElection::with_timing(client, "ns", "lease", "me", FAST);
        let started = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), election.attempt(Mode::Acquire)).await;
        assert!(matches!(answer, Ok(Err(AttemptError::Timeout("read", _)))), "{answer:?}");
        assert!(started.elapsed() < FAST.api_call_timeout + Duration::from_millis(500));
        assert!(!election.leadership().is_valid());
        server.abort();
    }
}
