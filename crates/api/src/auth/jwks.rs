//! A JWKS fetched from the identity provider and kept fresh, so that a key rotation needs no
//! restart.
//!
//! The keys held now are read without waiting (an `Arc` swapped under a lock). They are
//! replaced by each successful fetch, as a whole (a key the provider withdrew stops verifying);
//! a failed fetch (unreachable, an error status, a document that does not parse or holds no
//! usable key) keeps them. Fetches happen:
//!
//! - when the binary asks ([`RemoteJwks::refresh`], at start);
//! - periodically ([`RemoteJwks::run`]): every [`JwksRefresh::interval`], sooner when the
//!   answer's `Cache-Control: max-age` says so (never sooner than
//!   [`JwksRefresh::min_interval`]); after a failure, again after [`JwksRefresh::retry`],
//!   doubling up to `min_interval`;
//! - when a token names a key id no held key has ([`RemoteJwks::refresh_for_unknown_kid`]):
//!   at most one fetch per `min_interval` (counted from the start of the last fetch of any kind),
//!   so made-up key ids cannot turn the service against the provider.
//!
//! At most one fetch runs at a time: every caller wanting one meanwhile waits for it. It runs
//! as a task of its own, so a request that gives up does not cancel it for the others.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};

use super::{VerifyKey, log_skipped, usable_jwks_keys};

/// A fetched JWKS document.
#[derive(Clone, Debug)]
pub struct JwksDocument {
    /// The JSON text.
    pub json: String,
    /// The answer's `Cache-Control: max-age`, when it had one.
    pub max_age: Option<Duration>,
}

/// Where a JWKS is fetched from (the binary implements it over HTTPS, the API crate holds no
/// HTTP client).
pub trait JwksSource: Send + Sync {
    /// Where the keys come from, for logs (no credentials).
    fn describe(&self) -> String;
    /// Fetches the document once. The error text is logged, never shown to callers.
    fn fetch(&self) -> BoxFuture<'static, Result<JwksDocument, String>>;
}

/// When a fetched JWKS is refreshed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JwksRefresh {
    /// Periodic refresh (default 10 min); a shorter `Cache-Control: max-age` wins.
    pub interval: Duration,
    /// At most one refresh for an unknown key id per this much time (default 30 s); also the
    /// shortest period a `max-age` may set and the longest pause between retries.
    pub min_interval: Duration,
    /// The first retry after a failed fetch (default 1 s; doubles up to `min_interval`).
    pub retry: Duration,
    /// A fetch taking longer fails (default 10 s).
    pub fetch_timeout: Duration,
}

impl Default for JwksRefresh {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(600),
            min_interval: Duration::from_secs(30),
            retry: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(10),
        }
    }
}

impl JwksRefresh {
    /// Durations that cannot spin: each at least 1 ms, `interval` at least `min_interval`.
    fn sane(self) -> Self {
        let floor = Duration::from_millis(1);
        let min_interval = self.min_interval.max(floor);
        Self {
            interval: self.interval.max(min_interval),
            min_interval,
            retry: self.retry.max(floor),
            fetch_timeout: self.fetch_timeout.max(floor),
        }
    }

    /// The pause before the next periodic refresh after a success.
    fn period(&self, max_age: Option<Duration>) -> Duration {
        max_age.map_or(self.interval, |m| m.clamp(self.min_interval, self.interval))
    }

    /// The pause before retrying after `failures` consecutive failed fetches (at least one).
    fn backoff(&self, failures: u32) -> Duration {
        let cap = self.min_interval.max(self.retry);
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.retry.saturating_mul(factor).min(cap)
    }
}

/// The outcome of one fetch, shared by everyone waiting for it: the number of keys loaded.
type Flight = Shared<BoxFuture<'static, Result<usize, String>>>;

struct State {
    /// When the last fetch started.
    last_attempt: Option<Instant>,
    /// When the periodic refresh is due.
    next_due: Instant,
    /// Consecutive failed fetches.
    failures: u32,
    /// The fetch under way, and its number.
    in_flight: Option<(u64, Flight)>,
    /// Fetches started so far.
    fetches: u64,
}

/// A JWKS fetched from a [`JwksSource`] and kept fresh (see the module documentation).
pub struct RemoteJwks {
    source: Arc<dyn JwksSource>,
    policy: JwksRefresh,
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    state: Mutex<State>,
}

impl std::fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("source", &self.source.describe())
            .field("keys", &self.keys().len())
            .field("policy", &self.policy)
            .finish()
    }
}

impl RemoteJwks {
    /// A JWKS holding no key yet: nothing is fetched until [`RemoteJwks::refresh`],
    /// [`RemoteJwks::run`] or a token with an unknown key id asks.
    pub fn new(source: Arc<dyn JwksSource>, policy: JwksRefresh) -> Arc<Self> {
        Arc::new(Self {
            source,
            policy: policy.sane(),
            keys: RwLock::new(Arc::new(Vec::new())),
            state: Mutex::new(State {
                last_attempt: None,
                next_due: Instant::now(),
                failures: 0,
                in_flight: None,
                fetches: 0,
            }),
        })
    }

    /// The keys held now.
    pub(super) fn keys(&self) -> Arc<Vec<VerifyKey>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key ids held now (keys without one count as `-`).
    pub fn key_ids(&self) -> Vec<String> {
        self.keys()
            .iter()
            .map(|k| k.kid.clone().unwrap_or_else(|| "-".into()))
            .collect()
    }

    /// Fetches started so far (every kind).
    pub fn fetches(&self) -> u64 {
        self.lock().fetches
    }

    /// Where the keys come from.
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fetches now (or waits for the fetch under way) and returns the number of keys loaded;
    /// on failure the keys held are kept. Needs a tokio runtime.
    pub async fn refresh(self: &Arc<Self>) -> Result<usize, String> {
        // A forced refresh always starts or joins a fetch.
        let Some(flight) = self.start_or_join(true) else {
            return Err("no JWKS fetch could start".into());
        };
        flight.await
    }

    /// A token named a key id no held key has: fetches unless a fetch started less than
    /// `min_interval` ago (waits for one under way). Returns whether a fetch this call waited
    /// for succeeded.
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>) -> bool {
        match self.start_or_join(false) {
            Some(flight) => flight.await.is_ok(),
            None => {
                tracing::debug!(source = %self.source.describe(), "JWKS: unknown key id, but refreshed less than the minimum interval ago");
                false
            }
        }
    }

    /// Refreshes periodically, for ever (the binary spawns it and aborts it at shutdown). Wakes
    /// at least every `min_interval` to notice a failure of another refresh, to retry it soon.
    pub async fn run(self: Arc<Self>) {
        loop {
            let wait = self
                .lock()
                .next_due
                .saturating_duration_since(Instant::now());
            if wait.is_zero() {
                let _ = self.refresh().await;
            } else {
                tokio::time::sleep(wait.min(self.policy.min_interval)).await;
            }
        }
    }

    /// Joins the fetch under way, or starts one (`forced`, or `min_interval` has passed since
    /// the last one started); `None` when rate-limited.
    fn start_or_join(self: &Arc<Self>, forced: bool) -> Option<Flight> {
        let mut st = self.lock();
        if let Some((_, flight)) = &st.in_flight {
            return Some(flight.clone());
        }
        if !forced
            && st
                .last_attempt
                .is_some_and(|t| t.elapsed() < self.policy.min_interval)
        {
            return None;
        }
        st.last_attempt = Some(Instant::now());
        st.fetches += 1;
        let id = st.fetches;
        let this = self.clone();
        let task = tokio::spawn(async move { this.fetch_and_store(id).await });
        let this = self.clone();
        let flight = async move {
            match task.await {
                Ok(outcome) => outcome,
                Err(_) => {
                    // The runtime that ran the fetch is gone: free the slot for the next one.
                    this.clear_flight(id);
                    Err("the JWKS fetch was cancelled".to_owned())
                }
            }
        }
        .boxed()
        .shared();
        st.in_flight = Some((id, flight.clone()));
        Some(flight)
    }

    fn clear_flight(&self, id: u64) {
        let mut st = self.lock();
        if st.in_flight.as_ref().is_some_and(|(i, _)| *i == id) {
            st.in_flight = None;
        }
    }

    /// One fetch: on success the keys are replaced, on failure kept; the next periodic refresh
    /// is scheduled either way.
    async fn fetch_and_store(&self, id: u64) -> Result<usize, String> {
        let source = self.source.describe();
        let fetched =
            match tokio::time::timeout(self.policy.fetch_timeout, self.source.fetch()).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "no answer within {} ms",
                    self.policy.fetch_timeout.as_millis()
                )),
            };
        let parsed = fetched.and_then(|doc| {
            // A document that parses is the identity provider's word: one with no usable key
            // withdraws every key (a failed fetch keeps the last good ones).
            usable_jwks_keys(&doc.json)
                .map(|(keys, skipped)| (keys, skipped, doc.max_age))
                .map_err(|e| e.to_string())
        });
        let now = Instant::now();
        let outcome = match parsed {
            Ok((keys, skipped, max_age)) => {
                let count = keys.len();
                let kids = |ks: &[VerifyKey]| {
                    let mut v: Vec<Option<String>> = ks.iter().map(|k| k.kid.clone()).collect();
                    v.sort();
                    v
                };
                let old = std::mem::replace(
                    &mut *self.keys.write().unwrap_or_else(PoisonError::into_inner),
                    Arc::new(keys),
                );
                let changed = kids(&old) != kids(&self.keys());
                let period = self.policy.period(max_age);
                if count == 0 {
                    log_skipped(&skipped);
                    tracing::warn!(%source, "JWKS holds no usable key: every token it verified is refused until it publishes one");
                } else if changed {
                    log_skipped(&skipped);
                    tracing::info!(%source, keys = count, key_ids = ?self.key_ids(), next_refresh_secs = period.as_secs(), "JWKS loaded");
                } else {
                    tracing::debug!(%source, keys = count, next_refresh_secs = period.as_secs(), "JWKS refreshed, unchanged");
                }
                let mut st = self.lock();
                st.failures = 0;
                st.next_due = now + period;
                Ok(count)
            }
            Err(error) => {
                let mut st = self.lock();
                st.failures = st.failures.saturating_add(1);
                let retry = self.policy.backoff(st.failures);
                st.next_due = now + retry;
                let held = self.keys().len();
                tracing::warn!(%source, error.message = %error, keys_kept = held, retry_in_ms = retry.as_millis() as u64, "JWKS fetch failed; the keys held are kept");
                Err(error)
            }
        };
        self.clear_flight(id);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_honoured_within_the_bounds_and_retries_back_off() {
        let p = JwksRefresh::default();
        assert_eq!(p.period(None), Duration::from_secs(600));
        assert_eq!(
            p.period(Some(Duration::from_secs(120))),
            Duration::from_secs(120)
        );
        assert_eq!(
            p.period(Some(Duration::from_secs(0))),
            Duration::from_secs(30)
        );
        assert_eq!(
            p.period(Some(Duration::from_secs(86_400))),
            Duration::from_secs(600)
        );
        let backoff: Vec<u64> = (1..=7).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(backoff, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(p.backoff(u32::MAX), Duration::from_secs(30));
        let odd = JwksRefresh {
            interval: Duration::ZERO,
            min_interval: Duration::ZERO,
            retry: Duration::ZERO,
            fetch_timeout: Duration::ZERO,
        }
        .sane();
        assert!(odd.interval >= odd.min_interval && !odd.min_interval.is_zero());
        assert!(!odd.retry.is_zero() && !odd.fetch_timeout.is_zero());
    }
}
