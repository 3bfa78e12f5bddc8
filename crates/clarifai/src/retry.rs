//! The retry loop: exponential backoff with full jitter, `Retry-After` honoured within a cap,
//! a total time budget, and no repeat of a write that may already have happened unless the
//! operation says it is safe to repeat.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::error::ClarifaiError;

/// Whether an operation may be sent again after it may have reached the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Repeating it is harmless: reads, deletes, and creates with a caller-chosen id (a repeat
    /// answers "already exists").
    Safe,
    /// A repeat could do it twice (creating a key). Retried only when the previous attempt
    /// certainly had no effect: the connection was never made, or the upstream throttled it.
    Unsafe,
}

/// What the loop needs to know about the operation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Op {
    /// Name for logs, e.g. `create_key`.
    pub name: &'static str,
    /// May it be repeated?
    pub idempotency: Idempotency,
    /// Does it change state upstream (anything but a GET)?
    pub writes: bool,
}

/// The full-jitter backoff before attempt `attempt + 1` (attempts count from 1): a uniformly
/// random pause between zero and `min(max_backoff, base_backoff * 2^(attempt-1))`.
pub fn backoff(config: &ClientConfig, attempt: u32) -> Duration {
    let exp = attempt.saturating_sub(1).min(30);
    let ceiling = config
        .base_backoff
        .saturating_mul(1u32 << exp)
        .min(config.max_backoff);
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(0..=ceiling_ms))
}

/// The pause before the next attempt: the upstream's `Retry-After` (capped) if given, and at
/// least the jittered backoff.
pub fn delay_before_retry(
    config: &ClientConfig,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let jitter = backoff(config, attempt);
    match retry_after {
        Some(asked) => asked.min(config.max_retry_after).max(jitter),
        None => jitter,
    }
}

/// Runs `attempt_fn(attempt, time_limit)` until it succeeds, fails in a way not worth
/// repeating, or attempts or budget run out. The final error of a write is marked `ambiguous`
/// when any attempt may have taken effect and no definite answer came after it.
pub(crate) async fn run<T, F, Fut>(
    config: &ClientConfig,
    op: Op,
    mut attempt_fn: F,
) -> Result<T, ClarifaiError>
where
    F: FnMut(u32, Duration) -> Fut,
    Fut: Future<Output = Result<T, ClarifaiError>>,
{
    let start = Instant::now();
    let max_attempts = config.max_attempts.max(1);
    let mut maybe_applied = false;
    let mut attempt = 1;
    loop {
        let remaining = config.total_budget.saturating_sub(start.elapsed());
        let limit = config
            .request_timeout
            .min(remaining)
            .max(Duration::from_millis(1));
        let mut err = match attempt_fn(attempt, limit).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        maybe_applied |= op.writes && err.may_have_applied();
        let repeatable = match op.idempotency {
            Idempotency::Safe => true,
            Idempotency::Unsafe => !maybe_applied,
        };
        let mut give_up = !err.kind.is_retryable() || !repeatable || attempt >= max_attempts;
        let delay = delay_before_retry(config, attempt, err.retry_after);
        if !give_up && start.elapsed() + delay >= config.total_budget {
            tracing::debug!(
                op = op.name,
                attempt,
                delay_ms = ms(delay),
                "clarifai retry budget exhausted"
            );
            give_up = true;
        }
        if give_up {
            // A failure that is no answer (retryable, or not sent for want of budget) leaves
            // an earlier attempt that may have applied undecided.
            err.ambiguous = maybe_applied
                && (err.kind.is_retryable() || err.kind == crate::error::ErrorKind::Busy);
            return Err(err);
        }
        tracing::debug!(op = op.name, attempt, delay_ms = ms(delay), kind = %err.kind, "clarifai retry scheduled");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::ErrorKind;

    fn fast() -> ClientConfig {
        ClientConfig {
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_retry_after: Duration::from_millis(5),
            ..ClientConfig::default()
        }
    }

    const READ: Op = Op {
        name: "get",
        idempotency: Idempotency::Safe,
        writes: false,
    };
    const SAFE_WRITE: Op = Op {
        name: "delete",
        idempotency: Idempotency::Safe,
        writes: true,
    };
    const UNSAFE: Op = Op {
        name: "create_key",
        idempotency: Idempotency::Unsafe,
        writes: true,
    };

    async fn count(
        config: &ClientConfig,
        op: Op,
        errs: Vec<ClarifaiError>,
    ) -> (u32, Result<(), ClarifaiError>) {
        let calls = AtomicU32::new(0);
        let r = run(config, op, |_, _| {
            let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
            let e = errs.get(n).cloned();
            async move { e.map_or(Ok(()), Err) }
        })
        .await;
        (calls.load(Ordering::SeqCst), r)
    }

    fn e(kind: ErrorKind, sent: bool) -> ClarifaiError {
        ClarifaiError {
            request_sent: sent,
            ..ClarifaiError::new(kind, "x")
        }
    }

    #[test]
    fn backoff_is_bounded_by_the_exponential_ceiling() {
        let c = ClientConfig::default();
        for attempt in 1..50 {
            let d = backoff(&c, attempt);
            assert!(d <= c.max_backoff);
            assert!(d <= c.base_backoff * 2u32.pow(attempt.saturating_sub(1).min(20)));
        }
        let d = delay_before_retry(&c, 1, Some(Duration::from_secs(3600)));
        assert_eq!(d, c.max_retry_after);
        assert!(delay_before_retry(&c, 1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let (n, r) = count(
            &fast(),
            READ,
            vec![
                e(ErrorKind::UpstreamInternal, true),
                e(ErrorKind::Timeout, true),
            ],
        )
        .await;
        assert_eq!((n, r.is_ok()), (3, true));
    }

    #[tokio::test]
    async fn rejections_are_never_retried() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::InvalidRequest,
            ErrorKind::Unauthenticated,
        ] {
            let (n, r) = count(&fast(), SAFE_WRITE, vec![e(kind, true); 5]).await;
            let err = r.unwrap_err();
            assert_eq!((n, err.kind, err.ambiguous), (1, kind, false));
        }
    }

    #[tokio::test]
    async fn exhausted_attempts_report_the_last_error() {
        let (n, r) = count(&fast(), READ, vec![e(ErrorKind::Throttled, true); 10]).await;
        let err = r.unwrap_err();
        assert_eq!(
            (n, err.kind, err.ambiguous),
            (5, ErrorKind::Throttled, false)
        );
        let (_, r) = count(&fast(), SAFE_WRITE, vec![e(ErrorKind::Timeout, true); 10]).await;
        assert!(
            r.unwrap_err().ambiguous,
            "a write that timed out may have happened"
        );
    }

    #[tokio::test]
    async fn unsafe_writes_repeat_only_what_certainly_did_not_happen() {
        let (n, r) = count(
            &fast(),
            UNSAFE,
            vec![
                e(ErrorKind::Transport, false),
                e(ErrorKind::Throttled, true),
            ],
        )
        .await;
        assert_eq!((n, r.is_ok()), (3, true));
        for kind in [
            ErrorKind::Timeout,
            ErrorKind::Transport,
            ErrorKind::UpstreamInternal,
            ErrorKind::Protocol,
        ] {
            let (n, r) = count(&fast(), UNSAFE, vec![e(kind, true); 5]).await;
            let err = r.unwrap_err();
            assert_eq!((n, err.kind, err.ambiguous), (1, kind, true));
        }
        // A connect failure is repeated; the timeout after it ends the operation, ambiguous.
        let (n, r) = count(
            &fast(),
            UNSAFE,
            vec![e(ErrorKind::Transport, false), e(ErrorKind::Timeout, true)],
        )
        .await;
        assert_eq!((n, r.unwrap_err().ambiguous), (2, true));
    }

    #[tokio::test]
    async fn the_total_budget_stops_retries() {
        let c = ClientConfig {
            total_budget: Duration::from_millis(50),
            max_retry_after: Duration::from_secs(10),
            max_attempts: 10,
            ..fast()
        };
        let mut throttled = e(ErrorKind::Throttled, true);
        throttled.retry_after = Some(Duration::from_secs(1));
        let (n, r) = count(&c, READ, vec![throttled; 10]).await;
        assert_eq!((n, r.unwrap_err().kind), (1, ErrorKind::Throttled));
    }
}
