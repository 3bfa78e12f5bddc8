//! What only the SQLite backend has: a file it creates, WAL mode.

use provisioner_core::ports::{Store, TenantStore};
use provisioner_storage::testing::fresh_sqlite_url;
use provisioner_storage::{Backend, SqlStore};

use crate::fixtures::*;

#[tokio::test]
async fn connect_creates_missing_directories_and_uses_wal() {
    // Arrange: a database two directories below an empty temp dir.
    let (_, dir) = fresh_sqlite_url();
    let file = dir.path().join("nested/data/provisioner.db");
    let url = format!("sqlite://{}", file.display());

    // Act
    let store = SqlStore::connect(&url).await.expect("connect");
    let before = store.ready().await;
    store.migrate().await.expect("migrate");
    store
        .insert_tenant(
            &tenant("acme"),
            &[],
            &event(Some("acme"), "tenant.create", "acme"),
        )
        .await
        .expect("write");

    // Assert: the file exists, a write went through the write-ahead log, and readiness
    // followed the migrations.
    assert_eq!(store.backend(), Backend::Sqlite);
    assert!(before.is_err(), "an unmigrated database must not be ready");
    store.ready().await.expect("ready after migrate");
    assert!(file.exists());
    assert!(
        dir.path().join("nested/data/provisioner.db-wal").exists(),
        "WAL mode is on"
    );
    store.close().await;
}

#[tokio::test]
async fn an_unknown_url_scheme_is_refused_without_echoing_the_url() {
    let err = SqlStore::connect("mysql://root:hunter2@localhost/db")
        .await
        .expect_err("refused");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
