//! Per-account rate limit: a token bucket per Clarifai account (PAT owner).
//!
//! The bucket holds `per_sec` tokens and refills at `per_sec` tokens a second, so a burst of
//! `per_sec` requests passes and a steady stream is held to `per_sec` a second (upstream: 15 rps
//! per account, answered with `CONN_THROTTLED`).

use std::collections::HashMap;
use std::time::Instant;

/// Token buckets, one per account.
#[derive(Debug, Default)]
pub(crate) struct RateLimiter {
    per_sec: Option<u32>,
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter; `None` or `Some(0)` is off.
    pub(crate) fn new(per_sec: Option<u32>) -> Self {
        Self {
            per_sec: per_sec.filter(|n| *n > 0),
            buckets: HashMap::new(),
        }
    }

    /// Changes the limit and forgets the buckets.
    pub(crate) fn set(&mut self, per_sec: Option<u32>) {
        *self = Self::new(per_sec);
    }

    /// The limit in force.
    pub(crate) fn limit(&self) -> Option<u32> {
        self.per_sec
    }

    /// Takes one token for `account`; `Err(limit)` when the bucket is empty.
    pub(crate) fn check(&mut self, account: &str, now: Instant) -> Result<(), u32> {
        let Some(limit) = self.per_sec else {
            return Ok(());
        };
        let cap = f64::from(limit);
        let bucket = self.buckets.entry(account.to_owned()).or_insert(Bucket {
            tokens: cap,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * cap).min(cap);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(limit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_passes_then_the_bucket_refills() {
        let mut rl = RateLimiter::new(Some(3));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rl.check("a", t0).is_ok());
        }
        assert_eq!(rl.check("a", t0), Err(3));
        assert!(rl.check("b", t0).is_ok(), "accounts are independent");
        assert!(rl.check("a", t0 + Duration::from_millis(400)).is_ok());
    }

    #[test]
    fn zero_or_none_is_off() {
        for limit in [None, Some(0)] {
            let mut rl = RateLimiter::new(limit);
            let t0 = Instant::now();
            assert!((0..100).all(|_| rl.check("a", t0).is_ok()));
        }
    }
}
