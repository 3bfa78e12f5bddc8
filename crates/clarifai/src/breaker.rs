//! A circuit breaker per upstream account: when an account's upstream keeps failing, calls for
//! it fail fast instead of each spending its whole retry budget, and one probe tests it before
//! traffic resumes.
//!
//! - **Closed**: calls go through; consecutive operation failures that mean "the upstream is
//!   unwell" (after retries: throttled, 5xx, transport, timeout, protocol) are counted. A
//!   success or a rejection (the upstream answered: unauthorized, not found, already exists,
//!   invalid) resets the count. At [`BreakerConfig::failure_threshold`] it opens.
//! - **Open**: every call fails at once, without sending anything, for
//!   [`BreakerConfig::open_for`].
//! - **HalfOpen**: after that, exactly one call (the probe) goes through while concurrent
//!   callers still fail fast. Its success or rejection closes the breaker; its failure opens it
//!   again for `open_for`. A probe that is cancelled lets the next caller probe.
//!
//! Accounts are keyed like the rate limiters ([`crate::limit::Limiters`]): base URL (without a
//! trailing slash) and user id. The state sits behind a `std::sync::Mutex` that is only taken
//! for short, synchronous updates, never across an `.await`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use crate::error::ErrorKind;

/// The message of the error returned while the breaker is open.
pub const OPEN_MESSAGE: &str = "circuit open: the upstream kept failing; retry later";

/// When the breaker opens and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed operations (after retries) that open the breaker; 0 disables it.
    pub failure_threshold: u32,
    /// How long calls fail fast before one probe is let through.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    /// Opens after 5 consecutive failures, for 10 seconds.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(10),
        }
    }
}

impl BreakerConfig {
    /// A breaker that never opens (and tracks nothing).
    pub fn disabled() -> Self {
        Self {
            failure_threshold: 0,
            ..Self::default()
        }
    }

    /// Whether the breaker can open at all.
    pub fn is_enabled(&self) -> bool {
        self.failure_threshold > 0
    }
}

/// The state of one account's breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail fast.
    Open,
    /// One probe call may go (or is in flight); others fail fast.
    HalfOpen,
}

impl BreakerState {
    /// A short stable name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one account's breaker looks like now, for metrics and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerStatus {
    /// The account without secrets: base URL (no credentials, query or fragment) and user id.
    pub account: String,
    /// The current state (an open breaker whose time is up reads `HalfOpen`: the next call
    /// probes it).
    pub state: BreakerState,
    /// Consecutive failures counted while closed.
    pub consecutive_failures: u32,
    /// How many times it has opened (a failed probe counts as opening again).
    pub times_opened: u64,
}

/// How an admitted operation ended, as far as the breaker cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream answered (a success or a rejection).
    Answered,
    /// The upstream is unwell (throttled, failing or unreachable, after retries).
    Failed,
}

impl Outcome {
    /// The outcome of an operation that ended with `error` (`None`: it succeeded).
    pub fn of(error: Option<ErrorKind>) -> Self {
        match error {
            Some(kind) if kind.is_retryable() => Outcome::Failed,
            _ => Outcome::Answered,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// Bumped on every transition, so outcomes of calls admitted before it are ignored.
    generation: u64,
    times_opened: u64,
}

/// The breaker of one upstream account.
#[derive(Debug)]
pub struct AccountBreaker {
    label: String,
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Leave to make one call; report how it ended with [`Permit::record`]. Dropped without a
/// report (the call was cancelled), a probe frees its place for the next caller.
#[derive(Debug)]
#[must_use = "report the outcome with Permit::record"]
pub struct Permit {
    breaker: Arc<AccountBreaker>,
    generation: u64,
    probe: bool,
    done: bool,
}

impl AccountBreaker {
    /// A closed breaker for the account named `label` (which must hold no secret).
    pub fn new(label: impl Into<String>, config: BreakerConfig) -> Self {
        Self {
            label: label.into(),
            config,
            inner: Mutex::new(Inner {
                phase: Phase::Closed { failures: 0 },
                generation: 0,
                times_opened: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call through (`Some`) or refuses it because the breaker is open or a probe is
    /// already in flight (`None`).
    pub fn admit(self: &Arc<Self>) -> Option<Permit> {
        self.admit_at(Instant::now())
    }

    fn admit_at(self: &Arc<Self>, now: Instant) -> Option<Permit> {
        let mut inner = self.lock();
        let probe = match inner.phase {
            Phase::Closed { .. } => false,
            Phase::Open { until } if now < until => return None,
            Phase::Open { .. } => {
                inner.phase = Phase::HalfOpen { probing: true };
                inner.generation += 1;
                tracing::info!(
                    account = %self.label,
                    "clarifai circuit half-open: letting one probe call through"
                );
                true
            }
            Phase::HalfOpen { probing: true } => return None,
            Phase::HalfOpen { probing: false } => {
                inner.phase = Phase::HalfOpen { probing: true };
                true
            }
        };
        Some(Permit {
            breaker: self.clone(),
            generation: inner.generation,
            probe,
            done: false,
        })
    }

    fn record_at(&self, generation: u64, outcome: Outcome, now: Instant) {
        let mut inner = self.lock();
        if inner.generation != generation {
            // Admitted before the last transition: it says nothing about the current state.
            return;
        }
        match (inner.phase, outcome) {
            (Phase::Closed { .. }, Outcome::Answered) => {
                inner.phase = Phase::Closed { failures: 0 };
            }
            (Phase::Closed { failures }, Outcome::Failed) => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    self.open(&mut inner, now);
                    tracing::warn!(
                        account = %self.label,
                        failures,
                        open_for_ms = duration_ms(self.config.open_for),
                        "clarifai circuit opened: the upstream kept failing; calls fail fast"
                    );
                } else {
                    inner.phase = Phase::Closed { failures };
                }
            }
            (Phase::HalfOpen { .. }, Outcome::Answered) => {
                inner.phase = Phase::Closed { failures: 0 };
                inner.generation += 1;
                tracing::info!(
                    account = %self.label,
                    "clarifai circuit closed: the probe call got an answer"
                );
            }
            (Phase::HalfOpen { .. }, Outcome::Failed) => {
                self.open(&mut inner, now);
                tracing::warn!(
                    account = %self.label,
                    open_for_ms = duration_ms(self.config.open_for),
                    "clarifai circuit re-opened: the probe call failed"
                );
            }
            // Not reachable with a matching generation (opening bumps it); nothing to do.
            (Phase::Open { .. }, _) => {}
        }
    }

    fn open(&self, inner: &mut Inner, now: Instant) {
        inner.phase = Phase::Open {
            until: now + self.config.open_for,
        };
        inner.generation += 1;
        inner.times_opened += 1;
    }

    fn release_probe(&self, generation: u64) {
        let mut inner = self.lock();
        if inner.generation == generation
            && matches!(inner.phase, Phase::HalfOpen { probing: true })
        {
            inner.phase = Phase::HalfOpen { probing: false };
        }
    }

    /// The current state.
    pub fn status(&self) -> BreakerStatus {
        self.status_at(Instant::now())
    }

    /// The state at `now`: an open breaker whose time is up reads half-open (the next call
    /// probes), so a gauge does not show an account open long after its outage when no call
    /// came to move it on.
    fn status_at(&self, now: Instant) -> BreakerStatus {
        let inner = self.lock();
        let (state, consecutive_failures) = match inner.phase {
            Phase::Closed { failures } => (BreakerState::Closed, failures),
            Phase::Open { until } if now >= until => (BreakerState::HalfOpen, 0),
            Phase::Open { .. } => (BreakerState::Open, 0),
            Phase::HalfOpen { .. } => (BreakerState::HalfOpen, 0),
        };
        BreakerStatus {
            account: self.label.clone(),
            state,
            consecutive_failures,
            times_opened: inner.times_opened,
        }
    }
}

impl Permit {
    /// Reports how the call ended.
    pub fn record(mut self, outcome: Outcome) {
        self.done = true;
        self.breaker
            .record_at(self.generation, outcome, Instant::now());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.release_probe(self.generation);
        }
    }
}

/// The breakers of all accounts, by (base URL, user id), all with one configuration.
#[derive(Debug, Default)]
pub struct Breakers {
    config: BreakerConfig,
    by_account: Mutex<HashMap<(String, String), Arc<AccountBreaker>>>,
}

impl Breakers {
    /// No breakers yet; each account's is made on first use.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            by_account: Mutex::default(),
        }
    }

    /// The configuration every account's breaker uses.
    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// The breaker of an account, or `None` when breakers are disabled.
    pub fn get(&self, base_url: &str, user_id: &str) -> Option<Arc<AccountBreaker>> {
        if !self.config.is_enabled() {
            return None;
        }
        let key = (
            base_url.trim_end_matches('/').to_owned(),
            user_id.to_owned(),
        );
        let mut map = self
            .by_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let breaker = map.entry(key).or_insert_with(|| {
            Arc::new(AccountBreaker::new(
                account_label(base_url, user_id),
                self.config,
            ))
        });
        Some(breaker.clone())
    }

    /// The state of one account's breaker, if it has one yet (never creates one).
    pub fn status_of(&self, base_url: &str, user_id: &str) -> Option<BreakerStatus> {
        let key = (
            base_url.trim_end_matches('/').to_owned(),
            user_id.to_owned(),
        );
        let breaker = self
            .by_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        breaker.map(|b| b.status())
    }

    /// Every account's state, sorted by account label.
    pub fn statuses(&self) -> Vec<BreakerStatus> {
        let breakers: Vec<Arc<AccountBreaker>> = self
            .by_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut out: Vec<BreakerStatus> = breakers.iter().map(|b| b.status()).collect();
        out.sort_by(|a, b| a.account.cmp(&b.account));
        out
    }
}

/// `"{base URL} user {user id}"`, with any credentials, query and fragment removed from the URL.
pub fn account_label(base_url: &str, user_id: &str) -> String {
    let base = match Url::parse(base_url.trim()) {
        Ok(mut url) => {
            // Both only fail for URLs that cannot have credentials.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_owned()
        }
        Err(_) => "(invalid base url)".to_owned(),
    };
    format!("{base} user {user_id}")
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Arc<AccountBreaker> {
        Arc::new(AccountBreaker::new(
            "http://x user u",
            BreakerConfig {
                failure_threshold: threshold,
                open_for: Duration::from_secs(10),
            },
        ))
    }

    fn run(b: &Arc<AccountBreaker>, outcome: Outcome, now: Instant) -> bool {
        match b.admit_at(now) {
            Some(mut p) => {
                p.done = true;
                b.record_at(p.generation, outcome, now);
                true
            }
            None => false,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_answers_reset_the_count() {
        let b = breaker(3);
        let t = Instant::now();
        assert!(run(&b, Outcome::Failed, t));
        assert!(run(&b, Outcome::Failed, t));
        assert!(run(&b, Outcome::Answered, t));
        assert_eq!(b.status().consecutive_failures, 0);
        for _ in 0..3 {
            assert!(run(&b, Outcome::Failed, t));
        }
        let s = b.status();
        assert_eq!((s.state, s.times_opened), (BreakerState::Open, 1));
        assert!(b.admit_at(t + Duration::from_secs(9)).is_none());
        // Once its time is up it reads half-open, even with no call to move it on.
        assert_eq!(
            b.status_at(t + Duration::from_secs(9)).state,
            BreakerState::Open
        );
        assert_eq!(
            b.status_at(t + Duration::from_secs(11)).state,
            BreakerState::HalfOpen
        );
    }

    #[test]
    fn one_probe_after_open_for_closes_or_reopens() {
        let b = breaker(1);
        let t = Instant::now();
        assert!(run(&b, Outcome::Failed, t));
        let later = t + Duration::from_secs(10);
        let probe = b.admit_at(later).unwrap();
        assert!(probe.probe);
        assert!(b.admit_at(later).is_none(), "concurrent callers fail fast");
        assert_eq!(b.status().state, BreakerState::HalfOpen);
        b.record_at(probe.generation, Outcome::Failed, later);
        drop(probe);
        assert_eq!(
            (b.status().state, b.status().times_opened),
            (BreakerState::Open, 2)
        );
        assert!(b.admit_at(later + Duration::from_secs(5)).is_none());
        let again = later + Duration::from_secs(10);
        assert!(run(&b, Outcome::Answered, again));
        assert_eq!(b.status().state, BreakerState::Closed);
        assert!(run(&b, Outcome::Answered, again));
    }

    #[test]
    fn a_cancelled_probe_lets_the_next_caller_probe() {
        let b = breaker(1);
        let t = Instant::now();
        assert!(run(&b, Outcome::Failed, t));
        let later = t + Duration::from_secs(11);
        drop(b.admit_at(later).unwrap());
        assert!(b.admit_at(later).unwrap().probe);
    }

    #[test]
    fn late_outcomes_of_earlier_calls_are_ignored() {
        let b = breaker(1);
        let t = Instant::now();
        let mut slow = b.admit_at(t).unwrap();
        assert!(run(&b, Outcome::Failed, t));
        slow.done = true;
        b.record_at(slow.generation, Outcome::Answered, t);
        assert_eq!(b.status().state, BreakerState::Open);
    }

    #[test]
    fn breakers_are_per_account_and_labels_hold_no_secrets() {
        let bs = Breakers::new(BreakerConfig::default());
        let a = bs.get("http://x/", "u").unwrap();
        assert!(Arc::ptr_eq(&a, &bs.get("http://x", "u").unwrap()));
        assert!(!Arc::ptr_eq(&a, &bs.get("http://x", "v").unwrap()));
        assert_eq!(bs.statuses().len(), 2);
        assert_eq!(
            account_label("https://me:s3cret@h.example/v2/?t=s3cret#s3cret", "u"),
            "https://h.example/v2 user u"
        );
        assert!(
            Breakers::new(BreakerConfig::disabled())
                .get("http://x", "u")
                .is_none()
        );
        assert_eq!(Outcome::of(Some(ErrorKind::NotFound)), Outcome::Answered);
        assert_eq!(Outcome::of(Some(ErrorKind::Timeout)), Outcome::Failed);
        assert_eq!(Outcome::of(None), Outcome::Answered);
    }
}
