//! What is learnt per upstream account (the `learn` policy of `auto_key_check`).

use std::sync::Arc;

use provisioner_core::ports::AccountStore;
use provisioner_storage::SqlStore;

use crate::fixtures::*;

pub async fn auto_key_learning_counts_clean_checks_and_a_sighting_resets_them(store: &SqlStore) {
    let a = "https://api.clarifai.com acme-ml";
    let other = "https://api.clarifai.com globex-ml";
    let fresh = store.auto_key_learning(a).await.expect("read");
    assert_eq!((fresh.clean_checks, fresh.last_seen_at), (0, None));
    for _ in 0..3 {
        store
            .record_auto_key_check(a, false, now())
            .await
            .expect("record");
    }
    assert_eq!(
        store.auto_key_learning(a).await.expect("read").clean_checks,
        3
    );
    let at = plus(now(), 7);
    store
        .record_auto_key_check(a, true, at)
        .await
        .expect("record");
    let seen = store.auto_key_learning(a).await.expect("read");
    assert_eq!((seen.clean_checks, seen.last_seen_at), (0, Some(at)));
    store
        .record_auto_key_check(a, false, now())
        .await
        .expect("record");
    let after = store.auto_key_learning(a).await.expect("read");
    assert_eq!((after.clean_checks, after.last_seen_at), (1, Some(at)));
    // Accounts are separate.
    assert_eq!(
        store
            .auto_key_learning(other)
            .await
            .expect("read")
            .clean_checks,
        0
    );
}

pub async fn concurrent_auto_key_records_lose_nothing(store: &SqlStore) {
    let store = Arc::new(store.clone());
    let a = "https://api.clarifai.com acme-ml";
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.record_auto_key_check(a, false, now()).await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("record");
    }
    assert_eq!(
        store.auto_key_learning(a).await.expect("read").clean_checks,
        16
    );
}
