//! The upstream budget in the database: reservations from concurrent holders (replicas share
//! the database the way these tasks share the pool) obey the sliding window together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use provisioner_core::budget::Lane;
use provisioner_core::ports::UpstreamBudget;
use provisioner_storage::SqlStore;

/// How many of `grants` (sorted) fall in the busiest window of length `window`.
fn busiest(grants: &[Instant], window: Duration) -> usize {
    grants
        .iter()
        .enumerate()
        .map(|(i, t)| grants[i..].iter().take_while(|u| **u < *t + window).count())
        .max()
        .unwrap_or(0)
}

pub async fn concurrent_reservations_share_one_window(store: &SqlStore) {
    let store = Arc::new(store.clone());
    let rate = 20;
    // Four holders at once, ten bulk reservations each, on one account.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut grants = Vec::new();
                for _ in 0..10 {
                    let grant = store.reserve("acct one", rate, Lane::Bulk).await.unwrap();
                    assert!(grant.doubt < Duration::from_millis(100));
                    grants.push(grant.at.into_std());
                }
                grants
            })
        })
        .collect();
    let mut grants = Vec::new();
    for t in tasks {
        grants.extend(t.await.unwrap());
    }
    grants.sort();
    // The database's clock decides; allow this side's latency (a few ms) as slack.
    let slack = Duration::from_millis(40);
    assert!(
        busiest(&grants, Duration::from_millis(1025) - slack) <= rate as usize,
        "more than {rate} grants in one window"
    );
    // Spaced evenly: forty bulk grants take 39 gaps of 1025 ms / 20.
    let span = *grants.last().unwrap() - grants[0];
    assert!(
        span >= Duration::from_micros(39 * 51_250) - slack,
        "{span:?}"
    );
    // Another account has a budget of its own.
    assert_eq!(
        store
            .reserve("acct two", rate, Lane::Bulk)
            .await
            .unwrap()
            .wait(),
        Duration::ZERO
    );
}

pub async fn interactive_reservations_burst_until_the_window_is_full(store: &SqlStore) {
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .reserve("acct", 5, Lane::Interactive)
                    .await
                    .map(|g| g.wait())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), Duration::ZERO);
    }
    // The sixth waits for the first to leave the window.
    let wait = store
        .reserve("acct", 5, Lane::Interactive)
        .await
        .unwrap()
        .wait();
    assert!(
        wait > Duration::from_millis(900) && wait <= Duration::from_millis(1025),
        "{wait:?}"
    );
    // A lower rate is obeyed at once: the window already holds more than it.
    let wait = store
        .reserve("acct", 2, Lane::Interactive)
        .await
        .unwrap()
        .wait();
    assert!(wait > Duration::from_millis(900), "{wait:?}");
}

pub async fn a_holder_that_stalls_mid_reservation_does_not_block_the_account(store: &SqlStore) {
    if store.backend() != provisioner_storage::Backend::Postgres {
        // SQLite: one writer at a time by design; its busy timeout bounds the wait.
        return;
    }
    store.reserve("stalled", 15, Lane::Bulk).await.unwrap();
    // Another replica took the account's row lock and froze before committing.
    let mut tx = provisioner_storage::testing::pool(store)
        .begin()
        .await
        .unwrap();
    sqlx::query("UPDATE upstream_budget SET grants = grants WHERE account = 'stalled'")
        .execute(&mut *tx)
        .await
        .unwrap();
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        store.reserve("stalled", 15, Lane::Bulk),
    )
    .await
    .expect("the reservation gives up instead of queueing behind the stalled holder");
    assert!(r.is_err(), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Other accounts are not affected.
    assert_eq!(
        store.reserve("free", 15, Lane::Bulk).await.unwrap().wait(),
        Duration::ZERO
    );
    tx.rollback().await.unwrap();
}
