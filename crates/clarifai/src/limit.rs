//! Client-side protection of one upstream account: requests are paced to a rate and capped in
//! flight, so bulk work runs near the account's limit instead of into a storm of 429s.
//!
//! The pacing is a sliding window: a request goes at once if fewer than `requests_per_second`
//! went in the last second (plus a small margin for jitter between here and the upstream),
//! otherwise when the oldest of them leaves the window. So no one-second window ever holds more
//! than the limit, a lone user's calls go at once after a quiet moment, and sustained work runs
//! at the limit. Per process: replicas do not share it yet.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How much longer than a second the window is: requests sent exactly a second apart may
/// reach the upstream closer together.
const WINDOW_MARGIN: Duration = Duration::from_millis(25);

/// Paces requests to at most `requests_per_second` in any one-second window, with at most
/// `max_concurrency` in flight. Shared by every client of the same account.
#[derive(Debug)]
pub struct AccountLimiter {
    rate: usize,
    window: Duration,
    /// The send times granted in the current window, oldest first (some may be in the future:
    /// reserved by waiters).
    slots: Mutex<VecDeque<Instant>>,
    in_flight: Arc<Semaphore>,
    settings: (u32, u32),
}

impl AccountLimiter {
    /// A limiter; zero values are treated as 1.
    pub fn new(requests_per_second: u32, max_concurrency: u32) -> Self {
        let rps = requests_per_second.max(1);
        let conc = max_concurrency.max(1);
        Self {
            rate: rps as usize,
            window: Duration::from_secs(1) + WINDOW_MARGIN,
            slots: Mutex::new(VecDeque::with_capacity(rps as usize)),
            in_flight: Arc::new(Semaphore::new(conc as usize)),
            settings: (rps, conc),
        }
    }

    /// Waits for a free slot and a turn; the request may go while the permit lives.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.in_flight.clone().acquire_owned().await.ok();
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            while slots.front().is_some_and(|t| *t + self.window <= now) {
                slots.pop_front();
            }
            // Kept in order: a slot is never before one already granted.
            let latest = slots.back().copied().unwrap_or(now).max(now);
            let slot = if slots.len() < self.rate {
                latest
            } else {
                let oldest = slots.pop_front().unwrap_or(now);
                (oldest + self.window).max(latest)
            };
            slots.push_back(slot);
            slot
        };
        tokio::time::sleep_until(slot).await;
        permit
    }
}

/// The limiters of all accounts, by (base URL, user id): tenants sharing an upstream account
/// share its limit.
#[derive(Debug, Default)]
pub struct Limiters {
    by_account: Mutex<HashMap<(String, String), Arc<AccountLimiter>>>,
}

impl Limiters {
    /// The limiter of an account with these settings (replaced when the settings changed).
    pub fn get(
        &self,
        base_url: &str,
        user_id: &str,
        rps: u32,
        max_concurrency: u32,
    ) -> Arc<AccountLimiter> {
        let mut map = self
            .by_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (
            base_url.trim_end_matches('/').to_owned(),
            user_id.to_owned(),
        );
        let wanted = (rps.max(1), max_concurrency.max(1));
        match map.get(&key) {
            Some(l) if l.settings == wanted => l.clone(),
            _ => {
                let l = Arc::new(AccountLimiter::new(rps, max_concurrency));
                map.insert(key, l.clone());
                l
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Grants `n` requests one after another (paused time: deterministic); their send times.
    async fn grant(l: &AccountLimiter, n: usize) -> Vec<Instant> {
        let mut at = Vec::new();
        for _ in 0..n {
            drop(l.acquire().await);
            at.push(Instant::now());
        }
        at
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_account_sends_at_once_and_no_second_holds_more_than_the_rate() {
        let l = AccountLimiter::new(15, 64);
        let start = Instant::now();
        // A lone user's calls after a quiet moment: no wait at all.
        let lone = grant(&l, 3).await;
        assert!(lone.iter().all(|t| *t == start), "{lone:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Sustained work: every one-second window holds at most 15, and it runs at the rate.
        let from = Instant::now();
        let at = grant(&l, 150).await;
        for (i, t) in at.iter().enumerate() {
            let in_window = at[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= 15,
                "{in_window} requests in the second after #{i}"
            );
        }
        let took = at.last().unwrap().duration_since(from);
        // 150 at 15/s: 9 full windows after the first burst.
        assert!(took <= Duration::from_millis(9 * 1025 + 1), "{took:?}");
        assert!(took >= Duration::from_secs(9), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_share_the_window() {
        let l = Arc::new(AccountLimiter::new(10, 100));
        let start = Instant::now();
        let tasks: Vec<_> = (0..35)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move {
                    drop(l.acquire().await);
                    Instant::now()
                })
            })
            .collect();
        let mut at = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap());
        }
        at.sort();
        for (i, t) in at.iter().enumerate() {
            let in_window = at[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(in_window <= 10, "{in_window} in the second after #{i}");
        }
        assert_eq!(at.iter().filter(|t| **t == start).count(), 10);
    }

    #[tokio::test]
    async fn concurrency_is_capped() {
        let l = AccountLimiter::new(1000, 2);
        let a = l.acquire().await;
        let _b = l.acquire().await;
        assert_eq!(l.in_flight.available_permits(), 0);
        drop(a);
        assert_eq!(l.in_flight.available_permits(), 1);
    }

    #[test]
    fn accounts_share_a_limiter_until_settings_change() {
        let ls = Limiters::default();
        let a = ls.get("http://x/", "u", 15, 8);
        assert!(Arc::ptr_eq(&a, &ls.get("http://x", "u", 15, 8)));
        assert!(!Arc::ptr_eq(&a, &ls.get("http://x", "v", 15, 8)));
        assert!(!Arc::ptr_eq(&a, &ls.get("http://x", "u", 5, 8)));
    }
}
