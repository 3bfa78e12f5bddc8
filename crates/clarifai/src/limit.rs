//! Client-side protection of one upstream account: requests wait for a grant of the account's
//! budget, in a lane, and are capped in flight, so bulk work runs near the account's limit
//! instead of into a storm of 429s, and a caller waiting for an answer goes first.
//!
//! The budget ([`UpstreamBudget`]) says when the next request may go (core's sliding-window
//! rule: no window holds more than the limit, a quiet account's requests go at once). It is
//! in-process for one instance and in the database for several replicas; either way, each
//! process asks it for one grant at a time per account, and only when a request is waiting.
//!
//! Who gets a grant is decided here when it comes due, not when it was asked for: an
//! interactive request first (oldest first), otherwise the bulk lane, served round-robin
//! between tenants so one tenant's job does not starve another's on a shared account. A
//! request that cannot get a grant within `max_wait` gives up before sending anything, so a
//! queue never holds a lease for long.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use provisioner_core::budget::{Lane, LocalBudget};
use provisioner_core::ports::UpstreamBudget;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// A request waiting for its grant: the permit to send is handed over through it.
type Waiter = oneshot::Sender<OwnedSemaphorePermit>;

/// The request waited `max_wait` without a grant; nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueTimeout;

/// The queues of one account.
#[derive(Default)]
struct Queue {
    interactive: VecDeque<Waiter>,
    /// Bulk waiters by tenant.
    bulk: BTreeMap<String, VecDeque<Waiter>>,
    /// The tenant the bulk lane served last (round robin).
    last_bulk: Option<String>,
    /// Whether a task is asking the budget for grants.
    pumping: bool,
}

impl Queue {
    fn push(&mut self, lane: Lane, tenant: &str, waiter: Waiter) {
        match lane {
            Lane::Interactive => self.interactive.push_back(waiter),
            Lane::Bulk => self
                .bulk
                .entry(tenant.to_owned())
                .or_default()
                .push_back(waiter),
        }
    }

    /// The lane of the waiter that would be served next.
    fn next_lane(&self) -> Lane {
        if self.interactive.iter().any(|w| !w.is_closed()) {
            Lane::Interactive
        } else {
            Lane::Bulk
        }
    }

    /// Forgets waiters that gave up; whether anyone still waits.
    fn anyone_waiting(&mut self) -> bool {
        self.interactive.retain(|w| !w.is_closed());
        self.bulk.retain(|_, q| {
            q.retain(|w| !w.is_closed());
            !q.is_empty()
        });
        !self.interactive.is_empty() || !self.bulk.is_empty()
    }

    /// The waiter to serve next: the oldest interactive one, else the next tenant's oldest
    /// bulk one after the tenant served last.
    fn pop_next(&mut self) -> Option<Waiter> {
        while let Some(w) = self.interactive.pop_front() {
            if !w.is_closed() {
                return Some(w);
            }
        }
        loop {
            let after = self
                .last_bulk
                .as_deref()
                .map_or(Bound::Unbounded, Bound::Excluded);
            let tenant = self
                .bulk
                .range::<str, _>((after, Bound::Unbounded))
                .next()
                .or_else(|| self.bulk.iter().next())
                .map(|(t, _)| t.clone())?;
            let queue = self.bulk.get_mut(&tenant)?;
            let waiter = queue.pop_front();
            if queue.is_empty() {
                self.bulk.remove(&tenant);
            }
            if let Some(w) = waiter.filter(|w| !w.is_closed()) {
                self.last_bulk = Some(tenant);
                return Some(w);
            }
        }
    }
}

/// Paces one account's requests through its budget, at most `max_concurrency` in flight.
/// Shared by every client of the same account in this process.
pub struct AccountLimiter {
    account: String,
    rate: u32,
    budget: Arc<dyn UpstreamBudget>,
    in_flight: Arc<Semaphore>,
    max_wait: Duration,
    queue: Mutex<Queue>,
    settings: (u32, u32),
}

impl std::fmt::Debug for AccountLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountLimiter")
            .field("account", &self.account)
            .field("rate", &self.rate)
            .field("max_concurrency", &self.settings.1)
            .finish_non_exhaustive()
    }
}

impl AccountLimiter {
    /// A limiter with a budget of its own (in-process); zero values are treated as 1.
    pub fn new(requests_per_second: u32, max_concurrency: u32) -> Self {
        Self::with_budget(
            "account",
            requests_per_second,
            max_concurrency,
            Arc::new(LocalBudget::default()),
            Duration::from_secs(10),
        )
    }

    /// A limiter of `account` ([`provisioner_core::model::UpstreamAccount::key`]) spending
    /// `budget`; a request gives up after `max_wait` without a grant.
    pub fn with_budget(
        account: &str,
        requests_per_second: u32,
        max_concurrency: u32,
        budget: Arc<dyn UpstreamBudget>,
        max_wait: Duration,
    ) -> Self {
        let rps = requests_per_second.max(1);
        let conc = max_concurrency.max(1);
        Self {
            account: account.to_owned(),
            rate: rps,
            budget,
            in_flight: Arc::new(Semaphore::new(conc as usize)),
            max_wait,
            queue: Mutex::default(),
            settings: (rps, conc),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a grant in `lane` (bulk waiters take turns by `tenant`); the request may go
    /// while the permit lives.
    pub async fn acquire(
        self: &Arc<Self>,
        lane: Lane,
        tenant: &str,
    ) -> Result<OwnedSemaphorePermit, QueueTimeout> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue();
            q.push(lane, tenant, tx);
            !std::mem::replace(&mut q.pumping, true)
        };
        if start {
            tokio::spawn(self.clone().pump());
        }
        match tokio::time::timeout(self.max_wait, rx).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(QueueTimeout),
        }
    }

    /// Stops the pump if nobody waits (decided under the queue's lock, so a waiter that
    /// arrives later starts a new one).
    fn idle(&self) -> bool {
        let mut q = self.queue();
        if q.anyone_waiting() {
            false
        } else {
            q.pumping = false;
            true
        }
    }

    /// While anyone waits: take a permit to send, reserve the budget's next grant, wait for
    /// it, and hand the permit to whoever is first in line then.
    async fn pump(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.idle() {
                return;
            }
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                self.queue().pumping = false;
                return;
            };
            if self.idle() {
                return;
            }
            let lane = self.queue().next_lane();
            let wait = match self.budget.reserve(&self.account, self.rate, lane).await {
                Ok(wait) => {
                    backoff = Duration::from_millis(50);
                    wait
                }
                Err(e) => {
                    // The waiters give up at their own deadline if this lasts.
                    tracing::warn!(account = %self.account, error.message = %e, "the upstream budget could not be read; retrying");
                    drop(permit);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            tokio::time::sleep(wait).await;
            let mut permit = permit;
            loop {
                let Some(waiter) = self.queue().pop_next() else {
                    // Everyone gave up meanwhile: the grant is spent unused.
                    break;
                };
                match waiter.send(permit) {
                    Ok(()) => break,
                    Err(back) => permit = back,
                }
            }
        }
    }
}

/// The limiters of all accounts, by account key: tenants sharing an upstream account share
/// its budget.
pub struct Limiters {
    budget: Arc<dyn UpstreamBudget>,
    max_wait: Duration,
    by_account: Mutex<HashMap<String, Arc<AccountLimiter>>>,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters")
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

impl Default for Limiters {
    fn default() -> Self {
        Self::new(Arc::new(LocalBudget::default()), Duration::from_secs(10))
    }
}

impl Limiters {
    /// Limiters spending `budget`, each request waiting at most `max_wait` for its grant.
    pub fn new(budget: Arc<dyn UpstreamBudget>, max_wait: Duration) -> Self {
        Self {
            budget,
            max_wait,
            by_account: Mutex::default(),
        }
    }

    /// The limiter of an account with these settings (replaced when the settings changed).
    pub fn get(&self, account: &str, rps: u32, max_concurrency: u32) -> Arc<AccountLimiter> {
        let mut map = self
            .by_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let wanted = (rps.max(1), max_concurrency.max(1));
        match map.get(account) {
            Some(l) if l.settings == wanted => l.clone(),
            _ => {
                let l = Arc::new(AccountLimiter::with_budget(
                    account,
                    rps,
                    max_concurrency,
                    self.budget.clone(),
                    self.max_wait,
                ));
                map.insert(account.to_owned(), l.clone());
                l
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;

    /// Grants `n` requests one after another (paused time: deterministic); their send times.
    async fn grant(l: &Arc<AccountLimiter>, n: usize, lane: Lane) -> Vec<Instant> {
        let mut at = Vec::new();
        for _ in 0..n {
            drop(l.acquire(lane, "t").await.unwrap());
            at.push(Instant::now());
        }
        at
    }

    fn at_most_per_second(at: &[Instant], rate: usize) {
        let mut at = at.to_vec();
        at.sort();
        for (i, t) in at.iter().enumerate() {
            let in_window = at[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(
                in_window <= rate,
                "{in_window} requests in the second after #{i}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_account_sends_at_once_and_no_second_holds_more_than_the_rate() {
        let l = Arc::new(AccountLimiter::new(15, 64));
        let start = Instant::now();
        // A lone user's calls after a quiet moment: no wait at all.
        let lone = grant(&l, 3, Lane::Interactive).await;
        assert!(lone.iter().all(|t| *t == start), "{lone:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Sustained work: every one-second window holds at most 15, and it runs at the rate.
        let from = Instant::now();
        let at = grant(&l, 150, Lane::Bulk).await;
        at_most_per_second(&at, 15);
        let took = at.last().unwrap().duration_since(from);
        // 150 bulk requests at 15/s, evenly spaced (1025 ms / 15 apart): 149 gaps.
        let gap = Duration::from_micros(1_025_000 / 15);
        assert!(took <= gap * 149 + Duration::from_millis(1), "{took:?}");
        assert!(took >= gap * 149, "{took:?}");
        // Interactive calls go at once when the window has room (a burst), bulk ones do not.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let burst = grant(&l, 15, Lane::Interactive).await;
        assert_eq!(burst.first(), burst.last());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_waiters_share_the_window() {
        let l = Arc::new(AccountLimiter::new(10, 100));
        let start = Instant::now();
        let tasks: Vec<_> = (0..35)
            .map(|i| {
                let l = l.clone();
                tokio::spawn(async move {
                    let tenant = format!("t{}", i % 3);
                    drop(l.acquire(Lane::Bulk, &tenant).await.unwrap());
                    Instant::now()
                })
            })
            .collect();
        let mut at = Vec::new();
        for t in tasks {
            at.push(t.await.unwrap());
        }
        at_most_per_second(&at, 10);
        // Bulk work is spread evenly over the window, starting at once.
        at.sort();
        assert_eq!(at[0], start);
        for pair in at.windows(2) {
            // (The timer wakes on whole milliseconds.)
            assert!(pair[1] - pair[0] >= Duration::from_millis(101), "{at:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_interactive_request_goes_ahead_of_queued_bulk_work() {
        let l = Arc::new(AccountLimiter::new(10, 100));
        // Forty bulk requests queue up: four seconds of work.
        let bulk: Vec<_> = (0..40)
            .map(|_| {
                let l = l.clone();
                tokio::spawn(async move {
                    drop(l.acquire(Lane::Bulk, "bulk").await.unwrap());
                    Instant::now()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let asked = Instant::now();
        drop(l.acquire(Lane::Interactive, "other").await.unwrap());
        let waited = asked.elapsed();
        // At most one grant already reserved (the pump holds one at a time) goes before it.
        assert!(waited <= Duration::from_millis(110), "{waited:?}");
        let mut at = vec![Instant::now()];
        for t in bulk {
            at.push(t.await.unwrap());
        }
        at_most_per_second(&at, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn tenants_on_one_account_take_turns_in_the_bulk_lane() {
        let l = Arc::new(AccountLimiter::new(10, 100));
        let order = Arc::new(Mutex::new(Vec::new()));
        // Tenant a queues 30 requests first, then b queues 10.
        let mut tasks = Vec::new();
        for (tenant, n) in [("a", 30), ("b", 10)] {
            for _ in 0..n {
                let (l, order) = (l.clone(), order.clone());
                tasks.push(tokio::spawn(async move {
                    drop(l.acquire(Lane::Bulk, tenant).await.unwrap());
                    order.lock().unwrap().push(tenant);
                }));
                tokio::task::yield_now().await;
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        // Once b waits, the two alternate: b's ten are served within 19 grants of its first,
        // not after all of a's thirty.
        let first_b = order.iter().position(|t| *t == "b").unwrap();
        let last_b = order.iter().rposition(|t| *t == "b").unwrap();
        assert!(last_b - first_b <= 19, "{order:?}");
        assert!(first_b <= 2, "{order:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_waits_too_long_gives_up_and_its_grant_goes_to_the_next() {
        let l = Arc::new(AccountLimiter::with_budget(
            "acct",
            1,
            100,
            Arc::new(LocalBudget::default()),
            Duration::from_millis(500),
        ));
        drop(l.acquire(Lane::Bulk, "t").await.unwrap());
        // The next grant is a second away: past the wait allowed.
        assert_eq!(l.acquire(Lane::Bulk, "t").await.unwrap_err(), QueueTimeout);
        // The grant it left is taken by the next request in line, not lost forever.
        let asked = Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got = l.acquire(Lane::Interactive, "t").await;
        assert!(got.is_ok(), "waited {:?}", asked.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped() {
        let l = Arc::new(AccountLimiter::new(1000, 2));
        let a = l.acquire(Lane::Bulk, "t").await.unwrap();
        let _b = l.acquire(Lane::Bulk, "t").await.unwrap();
        assert_eq!(l.in_flight.available_permits(), 0);
        // A third waits for a permit even though the budget has room.
        let third = {
            let l = l.clone();
            tokio::spawn(async move { l.acquire(Lane::Interactive, "t").await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished());
        drop(a);
        assert!(third.await.unwrap());
    }

    #[test]
    fn accounts_share_a_limiter_until_settings_change() {
        let ls = Limiters::default();
        let a = ls.get("http://x u", 15, 8);
        assert!(Arc::ptr_eq(&a, &ls.get("http://x u", 15, 8)));
        assert!(!Arc::ptr_eq(&a, &ls.get("http://x v", 15, 8)));
        assert!(!Arc::ptr_eq(&a, &ls.get("http://x u", 5, 8)));
    }
}
