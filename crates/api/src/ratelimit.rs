//! The caller rate limit: a GCRA bucket per token `sub` (governor), so one noisy caller cannot
//! starve the others. Over the limit the API answers 429 `rate_limited` with `Retry-After`.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::problem::ApiError;

/// Checks between two sweeps of idle keys.
const SWEEP_EVERY: u64 = 10_000;

/// The per-caller limiter shared by every worker (`None` when the limit is off).
#[derive(Clone)]
pub struct CallerLimiter {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl CallerLimiter {
    /// `per_sec` requests per second per caller, with a burst of the same size; 0 turns it off.
    pub fn new(per_sec: u32) -> Self {
        let inner = NonZeroU32::new(per_sec).map(|n| {
            Arc::new(Inner {
                limiter: RateLimiter::keyed(Quota::per_second(n)),
                checks: AtomicU64::new(0),
            })
        });
        Self { inner }
    }

    /// Counts one request of `subject`; `RateLimited` with the wait when over the limit.
    pub fn check(&self, subject: &str) -> Result<(), ApiError> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        if inner.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            inner.limiter.retain_recent();
        }
        inner
            .limiter
            .check_key(&subject.to_owned())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                ApiError::RateLimited {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_over_its_rate_is_told_when_to_retry() {
        let l = CallerLimiter::new(2);
        assert!(l.check("a").is_ok());
        assert!(l.check("a").is_ok());
        match l.check("a") {
            Err(ApiError::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("expected rate limited, got {other:?}"),
        }
        assert!(l.check("b").is_ok(), "another caller has its own bucket");
        let off = CallerLimiter::new(0);
        for _ in 0..100 {
            assert!(off.check("a").is_ok());
        }
    }
}
