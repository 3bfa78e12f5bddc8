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
use tokio::time::Instant;

/// A grant that would be used later than this after its time (a slow commit, a stalled task,
/// or doubt in mapping the database's clock onto ours) is not used: the window's margin is
/// 25 ms, and the request still has to be written. It is spent all the same.
const MAX_LATENESS: Duration = Duration::from_millis(20);

/// How often a waiter checks that a task still asks the budget for it (the one that did may
/// have died with the runtime it ran on).
const PUMP_CHECK: Duration = Duration::from_millis(250);

/// The request waited `max_wait` without a grant; nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueTimeout;

/// A request waiting for its grant: the permit to send is handed over through `tx`.
struct Waiter {
    tx: oneshot::Sender<OwnedSemaphorePermit>,
    /// The limit of the waiter's tenant (tenants sharing an account may differ: the lowest
    /// of those waiting is obeyed).
    rate: u32,
}

/// One lane: waiters by tenant, served round-robin, each tenant's oldest first.
#[derive(Default)]
struct Turns {
    by_tenant: BTreeMap<String, VecDeque<Waiter>>,
    /// The tenant served last.
    last: Option<String>,
}

impl Turns {
    fn push(&mut self, tenant: &str, waiter: Waiter) {
        self.by_tenant
            .entry(tenant.to_owned())
            .or_default()
            .push_back(waiter);
    }

    /// Forgets waiters that gave up; whether anyone still waits.
    fn prune(&mut self) -> bool {
        self.by_tenant.retain(|_, q| {
            q.retain(|w| !w.tx.is_closed());
            !q.is_empty()
        });
        !self.by_tenant.is_empty()
    }

    fn min_rate(&self) -> Option<u32> {
        self.by_tenant.values().flatten().map(|w| w.rate).min()
    }

    /// The next tenant's oldest waiter, after the tenant served last.
    fn pop_next(&mut self) -> Option<Waiter> {
        loop {
            let after = self
                .last
                .as_deref()
                .map_or(Bound::Unbounded, Bound::Excluded);
            let tenant = self
                .by_tenant
                .range::<str, _>((after, Bound::Unbounded))
                .next()
                .or_else(|| self.by_tenant.iter().next())
                .map(|(t, _)| t.clone())?;
            let queue = self.by_tenant.get_mut(&tenant)?;
            let waiter = queue.pop_front();
            if queue.is_empty() {
                self.by_tenant.remove(&tenant);
            }
            if let Some(w) = waiter.filter(|w| !w.tx.is_closed()) {
                self.last = Some(tenant);
                return Some(w);
            }
        }
    }
}

/// The queues of one account.
#[derive(Default)]
struct Queue {
    interactive: Turns,
    bulk: Turns,
    /// Whether a task is asking the budget for grants.
    pumping: bool,
}

impl Queue {
    /// Forgets waiters that gave up; whether anyone still waits.
    fn anyone_waiting(&mut self) -> bool {
        // Both lanes are pruned.
        let interactive = self.interactive.prune();
        self.bulk.prune() || interactive
    }

    /// The waiter to serve next: interactive first, then bulk.
    fn pop_next(&mut self) -> Option<Waiter> {
        self.interactive.pop_next().or_else(|| self.bulk.pop_next())
    }
}

/// Paces one account's requests through its budget, capped in flight. One per account in a
/// process, shared by every tenant on it.
pub struct AccountLimiter {
    account: String,
    budget: Arc<dyn UpstreamBudget>,
    in_flight: Arc<Semaphore>,
    /// The cap in force, and how many permits still have to be retired to reach it (taken
    /// out of circulation by the pump as they come back).
    cap: Mutex<(u32, u32)>,
    max_wait: Duration,
    queue: Mutex<Queue>,
}

impl std::fmt::Debug for AccountLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountLimiter")
            .field("account", &self.account)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

/// Resets `pumping` if a pump task is dropped before it decided to stop (its runtime shut
/// down), so the next waiter starts another.
struct PumpGuard {
    limiter: Arc<AccountLimiter>,
    armed: bool,
}

impl Drop for PumpGuard {
    fn drop(&mut self) {
        if self.armed {
            self.limiter.queue().pumping = false;
        }
    }
}

impl AccountLimiter {
    /// A limiter with a budget of its own (in-process); zero values are treated as 1.
    pub fn new(max_concurrency: u32) -> Self {
        Self::with_budget(
            "account",
            max_concurrency,
            Arc::new(LocalBudget::default()),
            Duration::from_secs(10),
        )
    }

    /// A limiter of `account` ([`provisioner_core::model::UpstreamAccount::key`]) spending
    /// `budget`; a request gives up after `max_wait` without a grant.
    pub fn with_budget(
        account: &str,
        max_concurrency: u32,
        budget: Arc<dyn UpstreamBudget>,
        max_wait: Duration,
    ) -> Self {
        let cap = max_concurrency.max(1);
        Self {
            account: account.to_owned(),
            budget,
            in_flight: Arc::new(Semaphore::new(cap as usize)),
            cap: Mutex::new((cap, 0)),
            max_wait,
            queue: Mutex::default(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves the cap on requests in flight to `max_concurrency` (at least 1). Lowering it
    /// takes effect as requests in flight end.
    pub fn set_concurrency(&self, max_concurrency: u32) {
        let wanted = max_concurrency.max(1);
        let mut guard = self.cap.lock().unwrap_or_else(PoisonError::into_inner);
        let (cap, debt) = &mut *guard;
        if wanted > *cap {
            // Cancel what was still to be retired first, then add the rest.
            let more = wanted - *cap;
            let cancelled = more.min(*debt);
            *debt -= cancelled;
            self.in_flight.add_permits((more - cancelled) as usize);
        } else if wanted < *cap {
            // Retire what is free now; the rest as permits come back (see `pay_debt`).
            let fewer = *cap - wanted;
            let retired = u32::try_from(self.in_flight.forget_permits(fewer as usize))
                .unwrap_or(fewer)
                .min(fewer);
            *debt += fewer - retired;
        }
        *cap = wanted;
    }

    /// Retires `permit` instead of using it when the cap was lowered; whether it did.
    fn pay_debt(&self, permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        let mut guard = self.cap.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.1 > 0 {
            guard.1 -= 1;
            permit.forget();
            None
        } else {
            Some(permit)
        }
    }

    /// Waits for a grant in `lane` at `rate` per window (waiters of each lane take turns by
    /// `tenant`); the request may go while the permit lives.
    pub async fn acquire(
        self: &Arc<Self>,
        lane: Lane,
        tenant: &str,
        rate: u32,
    ) -> Result<OwnedSemaphorePermit, QueueTimeout> {
        let (tx, mut rx) = oneshot::channel();
        let waiter = Waiter {
            tx,
            rate: rate.max(1),
        };
        {
            let mut q = self.queue();
            match lane {
                Lane::Interactive => q.interactive.push(tenant, waiter),
                Lane::Bulk => q.bulk.push(tenant, waiter),
            }
        }
        let deadline = Instant::now() + self.max_wait;
        loop {
            self.ensure_pump();
            let check = (Instant::now() + PUMP_CHECK).min(deadline);
            match tokio::time::timeout_at(check, &mut rx).await {
                Ok(Ok(permit)) => return Ok(permit),
                Ok(Err(_)) => return Err(QueueTimeout),
                Err(_) if Instant::now() >= deadline => return Err(QueueTimeout),
                Err(_) => {}
            }
        }
    }

    /// Starts a pump unless one runs.
    fn ensure_pump(self: &Arc<Self>) {
        let start = !std::mem::replace(&mut self.queue().pumping, true);
        if start {
            let guard = PumpGuard {
                limiter: self.clone(),
                armed: true,
            };
            tokio::spawn(guard.limiter.clone().pump(guard));
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

    /// While anyone waits: take a permit to send, reserve the budget's next grant (at the
    /// lowest rate of those waiting, spaced unless an interactive request waits), wait for it,
    /// and hand the permit to whoever is first in line then.
    async fn pump(self: Arc<Self>, mut guard: PumpGuard) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.idle() {
                guard.armed = false;
                return;
            }
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                return;
            };
            let Some(permit) = self.pay_debt(permit) else {
                continue;
            };
            let (lane, rate) = {
                let mut q = self.queue();
                if !q.anyone_waiting() {
                    continue;
                }
                let lane = if q.interactive.by_tenant.is_empty() {
                    Lane::Bulk
                } else {
                    Lane::Interactive
                };
                let rate = q
                    .interactive
                    .min_rate()
                    .into_iter()
                    .chain(q.bulk.min_rate())
                    .min()
                    .unwrap_or(1);
                (lane, rate)
            };
            let grant = match self.budget.reserve(&self.account, rate, lane).await {
                Ok(grant) => {
                    backoff = Duration::from_millis(50);
                    grant
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
            if !grant.wait().is_zero() {
                tokio::time::sleep_until(grant.at).await;
            }
            let late = Instant::now().saturating_duration_since(grant.at) + grant.doubt;
            if late > MAX_LATENESS {
                // Spent, not sent. Its time has passed, so the next reservation cannot run the
                // shared budget ahead of real time.
                tracing::debug!(account = %self.account, late_ms = late.as_millis(), "a grant that came too late is not used");
                continue;
            }
            let mut permit = permit;
            loop {
                let Some(waiter) = self.queue().pop_next() else {
                    // Everyone gave up meanwhile: the grant is spent unused.
                    break;
                };
                match waiter.tx.send(permit) {
                    Ok(()) => break,
                    Err(back) => permit = back,
                }
            }
        }
    }
}

/// The limiters of all accounts, by account key: tenants sharing an upstream account share
/// its limiter and budget.
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

    /// The limiter of an account, its cap on requests in flight moved to `max_concurrency`
    /// (the latest setting wins; the rate is given with each request).
    pub fn get(&self, account: &str, max_concurrency: u32) -> Arc<AccountLimiter> {
        let limiter = {
            let mut map = self
                .by_account
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.entry(account.to_owned())
                .or_insert_with(|| {
                    Arc::new(AccountLimiter::with_budget(
                        account,
                        max_concurrency,
                        self.budget.clone(),
                        self.max_wait,
                    ))
                })
                .clone()
        };
        limiter.set_concurrency(max_concurrency);
        limiter
    }
}

#[cfg(test)]
#[path = "limit_tests.rs"]
mod tests;
