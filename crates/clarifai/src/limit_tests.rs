//! Tests of the per-account limiter, on paused time unless a runtime's end is the point.

use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use provisioner_core::StoreError;

use super::*;

fn limiter(max_concurrency: u32) -> Arc<AccountLimiter> {
    Arc::new(AccountLimiter::new(max_concurrency))
}

/// Grants `n` requests one after another (paused time: deterministic); their send times.
async fn grant(l: &Arc<AccountLimiter>, n: usize, lane: Lane, rate: u32) -> Vec<Instant> {
    let mut at = Vec::new();
    for _ in 0..n {
        drop(l.acquire(lane, "t", rate).await.unwrap());
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

/// `n` waiters spawned at once in `lane` for `tenant`; their send times.
fn spawn_waiters(
    l: &Arc<AccountLimiter>,
    n: usize,
    lane: Lane,
    tenant: &'static str,
    rate: u32,
) -> Vec<tokio::task::JoinHandle<Instant>> {
    (0..n)
        .map(|_| {
            let l = l.clone();
            tokio::spawn(async move {
                drop(l.acquire(lane, tenant, rate).await.unwrap());
                Instant::now()
            })
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_quiet_account_sends_at_once_and_no_second_holds_more_than_the_rate() {
    let l = limiter(64);
    let start = Instant::now();
    // A lone user's calls after a quiet moment: no wait at all.
    let lone = grant(&l, 3, Lane::Interactive, 15).await;
    assert!(lone.iter().all(|t| *t == start), "{lone:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Sustained work: every one-second window holds at most 15, and it runs at the rate.
    let from = Instant::now();
    let at = grant(&l, 150, Lane::Bulk, 15).await;
    at_most_per_second(&at, 15);
    let took = at.last().unwrap().duration_since(from);
    // 150 bulk requests at 15/s, evenly spaced (1025 ms / 15 apart): 149 gaps.
    let gap = Duration::from_micros(1_025_000 / 15);
    assert!(took <= gap * 149 + Duration::from_millis(150), "{took:?}");
    assert!(took >= gap * 149, "{took:?}");
    // Interactive calls go at once when the window has room (a burst), bulk ones do not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let burst = grant(&l, 15, Lane::Interactive, 15).await;
    assert_eq!(burst.first(), burst.last());
}

#[tokio::test(start_paused = true)]
async fn concurrent_waiters_share_the_window() {
    let l = limiter(100);
    let start = Instant::now();
    let mut tasks = spawn_waiters(&l, 12, Lane::Bulk, "t0", 10);
    tasks.extend(spawn_waiters(&l, 12, Lane::Bulk, "t1", 10));
    tasks.extend(spawn_waiters(&l, 11, Lane::Bulk, "t2", 10));
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
    let l = limiter(100);
    // Forty bulk requests queue up: four seconds of work.
    let bulk = spawn_waiters(&l, 40, Lane::Bulk, "bulk", 10);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asked = Instant::now();
    drop(l.acquire(Lane::Interactive, "other", 10).await.unwrap());
    let waited = asked.elapsed();
    // At most the one grant already reserved (a spacing away) goes before it.
    assert!(waited <= Duration::from_millis(110), "{waited:?}");
    let mut at = vec![Instant::now()];
    for t in bulk {
        at.push(t.await.unwrap());
    }
    at_most_per_second(&at, 10);
}

#[tokio::test(start_paused = true)]
async fn with_several_replicas_an_interactive_request_waits_at_most_one_grant_each() {
    // Eight replicas (limiters sharing one budget), each with bulk work queued.
    let budget: Arc<dyn UpstreamBudget> = Arc::new(LocalBudget::default());
    let replicas: Vec<_> = (0..8)
        .map(|_| {
            Arc::new(AccountLimiter::with_budget(
                "acct",
                16,
                budget.clone(),
                Duration::from_secs(30),
            ))
        })
        .collect();
    let mut bulk = Vec::new();
    for r in &replicas {
        bulk.extend(spawn_waiters(r, 20, Lane::Bulk, "bulk", 15));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let asked = Instant::now();
    drop(
        replicas[0]
            .acquire(Lane::Interactive, "other", 15)
            .await
            .unwrap(),
    );
    let waited = asked.elapsed();
    // Each replica holds at most one reservation: nine spacings at most.
    let spacing = Duration::from_micros(1_025_000 / 15);
    assert!(
        waited <= spacing * 9 + Duration::from_millis(10),
        "{waited:?}"
    );
    let mut at = vec![Instant::now()];
    for t in bulk {
        at.push(t.await.unwrap());
    }
    at_most_per_second(&at, 15);
}

#[tokio::test(start_paused = true)]
async fn tenants_on_one_account_take_turns_in_each_lane() {
    for lane in [Lane::Bulk, Lane::Interactive] {
        let l = limiter(100);
        let order = Arc::new(Mutex::new(Vec::new()));
        // Tenant a queues 30 requests first, then b queues 10.
        let mut tasks = Vec::new();
        for (tenant, n) in [("a", 30), ("b", 10)] {
            for _ in 0..n {
                let (l, order) = (l.clone(), order.clone());
                tasks.push(tokio::spawn(async move {
                    drop(l.acquire(lane, tenant, 10).await.unwrap());
                    order.lock().unwrap().push(tenant);
                }));
                tokio::task::yield_now().await;
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        // Once b waits, the two alternate: b's ten are served within 19 grants of its
        // first, not after all of a's thirty.
        let first_b = order.iter().position(|t| *t == "b").unwrap();
        let last_b = order.iter().rposition(|t| *t == "b").unwrap();
        assert!(last_b - first_b <= 19, "{lane:?}: {order:?}");
        assert!(first_b <= 11, "{lane:?}: {order:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_that_waits_too_long_gives_up_and_its_grant_goes_to_the_next() {
    let l = Arc::new(AccountLimiter::with_budget(
        "acct",
        100,
        Arc::new(LocalBudget::default()),
        Duration::from_millis(500),
    ));
    drop(l.acquire(Lane::Interactive, "t", 1).await.unwrap());
    // The next grant is a second away: past the wait allowed.
    assert_eq!(
        l.acquire(Lane::Interactive, "t", 1).await.unwrap_err(),
        QueueTimeout
    );
    // The grant it left is taken by the next request in line, not lost forever.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(l.acquire(Lane::Interactive, "t", 1).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_capped_and_tenants_with_other_settings_share_the_cap() {
    let ls = Limiters::default();
    let l = ls.get("acct", 2);
    let a = l.acquire(Lane::Bulk, "t", 1000).await.unwrap();
    let _b = l.acquire(Lane::Bulk, "t", 1000).await.unwrap();
    // Another tenant on the account, with other settings: the same limiter.
    let other = ls.get("acct", 3);
    assert!(Arc::ptr_eq(&l, &other));
    let _c = other.acquire(Lane::Bulk, "u", 500).await.unwrap();
    // Back to 2 (the latest setting wins): a fourth waits even though the budget has room.
    let l = ls.get("acct", 2);
    let fourth = {
        let l = l.clone();
        tokio::spawn(async move { l.acquire(Lane::Interactive, "t", 1000).await.is_ok() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!fourth.is_finished());
    drop(a);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // One permit came back, but the cap went down by one: still waiting.
    assert!(!fourth.is_finished());
    drop(_b);
    assert!(fourth.await.unwrap());
    assert!(!Arc::ptr_eq(&l, &ls.get("other acct", 2)));
}

/// A budget whose reservations take `delay` (the first `slow` of them).
struct SlowBudget {
    inner: LocalBudget,
    slow: AtomicU32,
    delay: Duration,
}

#[async_trait]
impl UpstreamBudget for SlowBudget {
    async fn reserve(
        &self,
        account: &str,
        rate: u32,
        lane: Lane,
    ) -> Result<provisioner_core::budget::Grant, StoreError> {
        let slow = self
            .slow
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        // The grant is decided at the start; the answer comes late (a slow commit).
        let grant = self.inner.reserve(account, rate, lane).await?;
        if slow {
            tokio::time::sleep(self.delay).await;
        }
        Ok(grant)
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_reservation_is_not_used_so_sends_never_crowd_a_window() {
    let budget = Arc::new(SlowBudget {
        inner: LocalBudget::default(),
        slow: AtomicU32::new(1),
        delay: Duration::from_millis(40),
    });
    let l = Arc::new(AccountLimiter::with_budget(
        "acct",
        64,
        budget,
        Duration::from_secs(10),
    ));
    // The first grant would be sent 40 ms late: with it, 16 sends would fall in one
    // second at rate 15.
    let at = grant(&l, 16, Lane::Interactive, 15).await;
    at_most_per_second(&at, 15);
}

#[tokio::test(start_paused = true)]
async fn a_slow_budget_never_runs_the_shared_window_ahead_of_time() {
    // Every reservation answers 30 ms after deciding: grants due at once come too late.
    let budget = Arc::new(SlowBudget {
        inner: LocalBudget::default(),
        slow: AtomicU32::new(u32::MAX),
        delay: Duration::from_millis(30),
    });
    let l = Arc::new(AccountLimiter::with_budget(
        "acct",
        8,
        budget.clone(),
        Duration::from_secs(10),
    ));
    // Bulk grants are spaced, so after the first they are decided ahead of time and used.
    let start = Instant::now();
    let at = grant(&l, 10, Lane::Bulk, 15).await;
    at_most_per_second(&at, 15);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // Whatever was spent unused, the budget's next grant is not far ahead of real time.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let next = budget
        .inner
        .reserve("acct", 15, Lane::Interactive)
        .await
        .unwrap();
    assert!(
        next.wait() < Duration::from_millis(100),
        "{:?}",
        next.wait()
    );
}

#[test]
fn a_pump_that_dies_with_its_runtime_is_replaced() {
    let l = Arc::new(AccountLimiter::with_budget(
        "acct",
        8,
        Arc::new(LocalBudget::default()),
        Duration::from_secs(3),
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        drop(l.acquire(Lane::Interactive, "t", 1).await.unwrap());
        // A second waiter: the pump sleeps a second for its grant.
        let l2 = l.clone();
        tokio::spawn(async move { l2.acquire(Lane::Interactive, "t", 1).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
    });
    // The runtime (and the pump on it) goes away mid-wait.
    drop(rt);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(l.acquire(Lane::Interactive, "t", 1).await.is_ok());
    });
}
