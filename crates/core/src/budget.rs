//! The upstream's request budget: the rule that no one-second window holds more than an
//! account's limit, and the lanes calls wait in (docs/architecture.md, "One upstream budget").
//!
//! The rule is a sliding window over the account's recent grants: a request may go at once if
//! fewer than `rate` were granted in the last window, otherwise when the `rate`-th most recent
//! grant leaves it. It is one pure function, [`next_grant`], applied by the in-process
//! [`LocalBudget`] (one instance) and by the storage's shared budget (several replicas: the
//! grants live in the database and its clock is the one clock).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::StoreError;
use crate::ports::UpstreamBudget;

/// The length of the window the rule counts in: a second, plus a margin for jitter between
/// the moment a grant is used here and the moment the upstream counts it.
pub const BUDGET_WINDOW: Duration = Duration::from_millis(1025);

/// A reserved grant on this process's (monotonic) clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The latest instant the grant may stand for: the request may go from then on.
    pub at: Instant,
    /// How much earlier the grant may really have been (the time it took to read the budget's
    /// clock): a request sent at `at` is up to this late.
    pub doubt: Duration,
}

impl Grant {
    /// How long from now until the grant (zero once it has come).
    pub fn wait(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// Which queue an upstream call waits in for its slot. Interactive calls (a caller is waiting
/// for the answer) go ahead of bulk work (jobs, recovery, drift checks) on the same account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Lane {
    /// A caller waits for the answer.
    #[default]
    Interactive,
    /// Background work: bulk jobs, recovery, scheduled checks.
    Bulk,
}

impl Lane {
    /// A short stable name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Interactive => "interactive",
            Lane::Bulk => "bulk",
        }
    }
}

/// Grants further ahead than this many windows are taken for a clock that stepped back.
const MAX_AHEAD_WINDOWS: i64 = 64;

/// The sliding-window rule. `recent` holds the account's grants still in view, oldest first,
/// in microseconds on one clock; `now` is that clock's present. Returns the earliest instant,
/// not before `now` nor before the latest grant, at which fewer than `rate` grants fall in
/// the window ending there, and records it in `recent` (dropping grants no longer needed).
/// A `rate` of zero counts as one.
///
/// Bulk grants are also spaced: at least `window / rate` after the latest grant. So bulk work
/// runs evenly at the rate instead of spending each window in one burst, and an interactive
/// request (not spaced) that arrives while bulk work saturates the account waits at most one
/// spacing for a grant, not until the next window.
pub fn next_grant(
    recent: &mut VecDeque<i64>,
    now: i64,
    rate: u32,
    window_us: i64,
    lane: Lane,
) -> i64 {
    let spacing = match lane {
        Lane::Interactive => 0,
        Lane::Bulk => window_us / i64::from(rate.max(1)),
    };
    let rate = usize::try_from(rate.max(1)).unwrap_or(usize::MAX);
    // Each holder of the budget reserves one grant at a time, so grants lie a few windows
    // ahead at most. Far more means the clock stepped back: forget them rather than make
    // everyone wait out the step.
    if recent
        .back()
        .is_some_and(|t| *t > now.saturating_add(window_us.saturating_mul(MAX_AHEAD_WINDOWS)))
    {
        recent.clear();
    }
    while recent
        .front()
        .is_some_and(|t| t.saturating_add(window_us) <= now)
    {
        recent.pop_front();
    }
    let latest = recent
        .back()
        .map_or(now, |t| t.saturating_add(spacing))
        .max(now);
    let grant = match recent.len().checked_sub(rate) {
        // The rate-th most recent grant must have left the window.
        Some(i) => latest.max(recent[i].saturating_add(window_us)),
        None => latest,
    };
    recent.push_back(grant);
    // Only the last `rate` grants can ever decide a later one.
    while recent.len() > rate {
        recent.pop_front();
    }
    grant
}

/// The window in microseconds.
pub fn window_us() -> i64 {
    i64::try_from(BUDGET_WINDOW.as_micros()).unwrap_or(i64::MAX)
}

/// The budget of one process: right for a single instance (the SQLite default), wrong for
/// several replicas on one account (each would spend the whole limit).
#[derive(Debug)]
pub struct LocalBudget {
    epoch: Instant,
    grants: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Default for LocalBudget {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            grants: Mutex::default(),
        }
    }
}

#[async_trait]
impl UpstreamBudget for LocalBudget {
    async fn reserve(&self, account: &str, rate: u32, lane: Lane) -> Result<Grant, StoreError> {
        let asked = Instant::now();
        let now = i64::try_from(asked.duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX);
        let grant = {
            let mut grants = self.grants.lock().unwrap_or_else(PoisonError::into_inner);
            let recent = grants.entry(account.to_owned()).or_default();
            next_grant(recent, now, rate, window_us(), lane)
        };
        Ok(Grant {
            at: asked
                + Duration::from_micros(u64::try_from(grant.saturating_sub(now)).unwrap_or(0)),
            doubt: Duration::ZERO,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Checks a run of grants (asked at, granted at, rate, lane) against the rule.
    fn check(grants: &[(i64, i64, u32, Lane)], window: i64) -> Result<(), TestCaseError> {
        for (i, &(asked, granted, rate, lane)) in grants.iter().enumerate() {
            prop_assert!(granted >= asked, "grant {i} before it was asked for");
            let prev = if i > 0 { Some(grants[i - 1].1) } else { None };
            prop_assert!(prev.is_none_or(|p| granted >= p), "grant {i} out of order");
            let spacing = match lane {
                Lane::Interactive => 0,
                Lane::Bulk => window / i64::from(rate.max(1)),
            };
            if let Some(p) = prev {
                prop_assert!(granted >= p + spacing, "bulk grant {i} not spaced");
            }
            let rate = rate.max(1) as usize;
            // No window ending at this grant holds more than `rate` grants (this one included).
            let in_window = grants[..=i]
                .iter()
                .filter(|(_, g, _, _)| *g > granted - window)
                .count();
            prop_assert!(
                in_window <= rate,
                "{in_window} grants in the window ending at grant {i} (rate {rate})"
            );
            // And it did not wait for nothing: a moment earlier would have broken the window,
            // or it is when it was asked for, or as early as order and spacing allow.
            let earlier = granted - 1;
            if granted > asked && prev.is_none_or(|p| granted > p + spacing) {
                let would_hold = grants[..i]
                    .iter()
                    .filter(|(_, g, _, _)| *g > earlier - window && *g <= earlier)
                    .count();
                prop_assert!(
                    would_hold >= rate,
                    "grant {i} waited though the window had room ({would_hold} < {rate})"
                );
            }
        }
        Ok(())
    }

    proptest! {
        /// Random arrivals, lanes and rate changes: every grant obeys the window, bulk grants
        /// are spaced, and each is the earliest allowed.
        #[test]
        fn grants_obey_the_window_and_never_wait_for_nothing(
            // (Fewer than MAX_AHEAD_WINDOWS at once: each holder reserves one at a time.)
            steps in prop::collection::vec((0i64..400_000, 1u32..6, any::<bool>()), 1..60),
        ) {
            let window = 1_000_000;
            let mut recent = VecDeque::new();
            let mut now = 0;
            let mut grants = Vec::new();
            for (advance, rate, bulk) in steps {
                now += advance;
                let lane = if bulk { Lane::Bulk } else { Lane::Interactive };
                let g = next_grant(&mut recent, now, rate, window, lane);
                grants.push((now, g, rate, lane));
            }
            check(&grants, window)?;
        }
    }

    #[test]
    fn a_quiet_account_grants_at_once_and_a_full_window_waits_for_its_oldest() {
        let w = 1_000_000;
        let i = Lane::Interactive;
        let mut recent = VecDeque::new();
        assert_eq!(next_grant(&mut recent, 10, 3, w, i), 10);
        assert_eq!(next_grant(&mut recent, 20, 3, w, i), 20);
        assert_eq!(next_grant(&mut recent, 30, 3, w, i), 30);
        // The fourth waits until the first leaves the window.
        assert_eq!(next_grant(&mut recent, 40, 3, w, i), 10 + w);
        // Later grants never go before an earlier one.
        assert_eq!(next_grant(&mut recent, 50, 3, w, i), 20 + w);
        // After a quiet window, at once again.
        assert_eq!(next_grant(&mut recent, 5 * w, 3, w, i), 5 * w);
    }

    #[test]
    fn bulk_grants_are_spaced_and_interactive_ones_are_not() {
        let w = 1_000_000;
        let mut recent = VecDeque::new();
        assert_eq!(next_grant(&mut recent, 0, 4, w, Lane::Bulk), 0);
        assert_eq!(next_grant(&mut recent, 0, 4, w, Lane::Bulk), w / 4);
        // An interactive request goes at once (the window has room).
        assert_eq!(next_grant(&mut recent, 10, 4, w, Lane::Interactive), w / 4);
        assert_eq!(next_grant(&mut recent, 10, 4, w, Lane::Bulk), w / 2);
    }

    #[test]
    fn a_clock_that_stepped_back_does_not_hold_the_account_for_the_step() {
        let w = 1_000_000;
        let hour = 3_600_000_000;
        let mut recent: VecDeque<i64> = (0..5).map(|i| hour + i).collect();
        assert_eq!(next_grant(&mut recent, 0, 5, w, Lane::Interactive), 0);
        // Grants a little ahead (other holders' reservations) are kept and waited for.
        let mut recent: VecDeque<i64> = (0..5).map(|i| w / 2 + i).collect();
        assert_eq!(
            next_grant(&mut recent, 0, 5, w, Lane::Interactive),
            w / 2 + w
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_local_budget_keeps_accounts_apart() {
        let b = LocalBudget::default();
        let i = Lane::Interactive;
        for _ in 0..2 {
            assert_eq!(b.reserve("a", 2, i).await.unwrap().wait(), Duration::ZERO);
        }
        assert_eq!(b.reserve("a", 2, i).await.unwrap().wait(), BUDGET_WINDOW);
        // Another account has its own window.
        assert_eq!(b.reserve("b", 2, i).await.unwrap().wait(), Duration::ZERO);
    }
}
