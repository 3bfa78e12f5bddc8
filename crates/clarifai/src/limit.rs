//! Client-side protection of one upstream account: requests are paced to a rate and capped in
//! flight, so bulk work runs near the account's limit instead of into a storm of 429s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Paces requests to `requests_per_second` (evenly spaced, no burst) with at most
/// `max_concurrency` in flight. Shared by every client of the same account.
#[derive(Debug)]
pub struct AccountLimiter {
    interval: Duration,
    next_slot: Mutex<Instant>,
    in_flight: Arc<Semaphore>,
    settings: (u32, u32),
}

impl AccountLimiter {
    /// A limiter; zero values are treated as 1.
    pub fn new(requests_per_second: u32, max_concurrency: u32) -> Self {
        let rps = requests_per_second.max(1);
        let conc = max_concurrency.max(1);
        Self {
            interval: Duration::from_secs(1) / rps,
            next_slot: Mutex::new(Instant::now()),
            in_flight: Arc::new(Semaphore::new(conc as usize)),
            settings: (rps, conc),
        }
    }

    /// Waits for a free slot and a turn; the request may go while the permit lives.
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.in_flight.clone().acquire_owned().await.ok();
        let slot = {
            let mut next = self
                .next_slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
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

    #[tokio::test]
    async fn requests_are_paced_to_the_rate() {
        let l = AccountLimiter::new(20, 8);
        let start = Instant::now();
        for _ in 0..6 {
            drop(l.acquire().await);
        }
        // Five intervals of 50 ms after the first request.
        assert!(start.elapsed() >= Duration::from_millis(240));
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
