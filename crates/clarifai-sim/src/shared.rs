//! State shared by every worker of one simulator: data, faults, rate limiter and counters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::config::{FaultCounts, SimConfig};
use crate::faults::FaultEngine;
use crate::ratelimit::RateLimiter;
use crate::state::State;

/// How many `traceparent` headers the simulator keeps.
pub(crate) const TRACE_LOG: usize = 1000;

/// Everything the handlers share. Each mutex is held for one short, synchronous step only.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) faults: Mutex<FaultEngine>,
    pub(crate) limiter: Mutex<RateLimiter>,
    pub(crate) counts: Mutex<FaultCounts>,
    pub(crate) requests: AtomicU64,
    /// The last `traceparent` headers seen on `/v2` (at most [`TRACE_LOG`]).
    pub(crate) traceparents: Mutex<std::collections::VecDeque<String>>,
    pub(crate) throttle_code_numeric: AtomicBool,
}

impl Shared {
    pub(crate) fn new(config: SimConfig) -> Self {
        let mut state = State::new(config.accounts);
        state.auto_app_key = config.auto_app_key;
        Self {
            state: Mutex::new(state),
            faults: Mutex::new(FaultEngine::new(config.faults)),
            limiter: Mutex::new(RateLimiter::new(config.rate_limit_per_sec)),
            counts: Mutex::new(FaultCounts::default()),
            requests: AtomicU64::new(0),
            traceparents: Mutex::default(),
            throttle_code_numeric: AtomicBool::new(false),
        }
    }

    /// The data.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Adds one to a counter.
    pub(crate) fn count(&self, pick: impl FnOnce(&mut FaultCounts) -> &mut u64) {
        *pick(&mut lock(&self.counts)) += 1;
    }

    /// Snapshot of the counters.
    pub(crate) fn fault_counts(&self) -> FaultCounts {
        *lock(&self.counts)
    }

    /// Requests seen on `/v2`.
    pub(crate) fn request_count(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether `CONN_THROTTLED` is sent as a string (the default).
    pub(crate) fn throttle_code_as_name(&self) -> bool {
        !self.throttle_code_numeric.load(Ordering::Relaxed)
    }
}

/// Locks a mutex, recovering from poisoning (a panicked test thread must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
