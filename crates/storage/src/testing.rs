//! Fresh, migrated databases for tests (this crate's and other crates').
//!
//! These helpers panic with a clear message when setup fails: they are test fixtures.
//!
//! PostgreSQL: [`fresh_postgres`] connects to `PROVISIONER_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), creates a database named
//! `prov_test_<uuid v7, simple>`, migrates it, and drops it when the [`PgDbGuard`] is dropped.
//! Databases left behind by killed test runs are dropped at a later creation once they are an
//! hour old (the UUID v7 in the name carries the creation time). When PostgreSQL cannot be
//! reached it returns `None`, unless `PROVISIONER_TEST_REQUIRE_PG=1`: then it panics, so CI
//! fails instead of skipping.

use std::path::Path;
use std::time::Duration;

use sqlx::{AnyConnection, Connection, Executor};

use crate::SqlStore;

/// Default admin URL of the test PostgreSQL server.
pub const DEFAULT_TEST_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PREFIX: &str = "prov_test_";
/// Test databases older than this are considered leaked and dropped.
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Owns the temporary directory of a test SQLite database; deletes it when dropped.
#[derive(Debug)]
pub struct TempDirGuard(tempfile::TempDir);

impl TempDirGuard {
    /// The directory holding the database file.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// A URL of a new SQLite database file (`db.sqlite`, created on first connect, not migrated)
/// in a fresh temporary directory. For tests that hand the URL to a child process.
pub fn fresh_sqlite_url() -> (String, TempDirGuard) {
    let dir = tempfile::Builder::new()
        .prefix("prov-test-")
        .tempdir()
        .unwrap_or_else(|e| panic!("creating a temporary directory for SQLite: {e}"));
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    (url, TempDirGuard(dir))
}

/// A new, migrated SQLite store in a fresh temporary directory.
pub async fn fresh_sqlite() -> (SqlStore, TempDirGuard) {
    let (url, guard) = fresh_sqlite_url();
    let store = SqlStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("opening a test SQLite database: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrating a test SQLite database: {e}"));
    (store, guard)
}

/// Drops its test database (best effort) when dropped.
#[derive(Debug)]
pub struct PgDbGuard {
    admin_url: String,
    name: String,
}

impl PgDbGuard {
    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgDbGuard {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, where we cannot block on a future: use a thread
        // with its own runtime, and wait for it so the database is gone when the test ends.
        // WITH (FORCE) ends connections the test's pool may still hold.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) = admin_connection(&admin_url).await {
                    let _ = drop_database(&mut conn, &name).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// A new, migrated PostgreSQL store on a database of its own, its URL, and the guard that drops
/// it; `None` if PostgreSQL is unreachable (unless `PROVISIONER_TEST_REQUIRE_PG=1`).
pub async fn fresh_postgres() -> Option<(SqlStore, String, PgDbGuard)> {
    let admin_url =
        std::env::var("PROVISIONER_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_TEST_PG_URL.to_owned());
    let required = std::env::var("PROVISIONER_TEST_REQUIRE_PG").is_ok_and(|v| v == "1");
    let mut admin = match admin_connection(&admin_url).await {
        Ok(c) => c,
        Err(e) if required => panic!(
            "PostgreSQL is required (PROVISIONER_TEST_REQUIRE_PG=1) but unreachable via \
             PROVISIONER_TEST_PG_URL or the default {DEFAULT_TEST_PG_URL}: {e}"
        ),
        Err(_) => return None,
    };
    drop_stale_databases(&mut admin).await;
    let name = format!("{PREFIX}{}", uuid::Uuid::now_v7().simple());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .await
        .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    let _ = admin.close().await;
    let guard = PgDbGuard {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };
    let url = with_database(&admin_url, &name);
    let store = SqlStore::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connecting to test database {name}: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrating test database {name}: {e}"));
    Some((store, url, guard))
}

async fn admin_connection(url: &str) -> Result<AnyConnection, String> {
    sqlx::any::install_default_drivers();
    match tokio::time::timeout(Duration::from_secs(5), AnyConnection::connect(url)).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out after 5 s".into()),
    }
}

async fn drop_database(conn: &mut AnyConnection, name: &str) -> Result<(), sqlx::Error> {
    conn.execute(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .await
    .map(|_| ())
}

/// Drops `prov_test_*` databases created more than an hour ago (left by killed runs).
async fn drop_stale_databases(conn: &mut AnyConnection) {
    let names: Vec<String> = match sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'prov\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    {
        Ok(n) => n,
        Err(_) => return,
    };
    let now = std::time::SystemTime::now();
    for name in names {
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|hex| uuid::Uuid::parse_str(hex).ok())
            .and_then(|u| u.get_timestamp())
            .map(|ts| {
                let (secs, nanos) = ts.to_unix();
                std::time::UNIX_EPOCH + Duration::new(secs, nanos)
            });
        let stale =
            created.is_some_and(|c| now.duration_since(c).is_ok_and(|age| age > STALE_AFTER));
        if stale {
            let _ = drop_database(conn, &name).await;
        }
    }
}

/// `url` with its database (the path) replaced by `name`, keeping any query string.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}

/// A write transaction holding one audit event, not yet committed: a writer whose commit comes
/// late (for tests of the audit cursor).
pub struct OpenAuditTx(sqlx::Transaction<'static, sqlx::Any>);

impl OpenAuditTx {
    /// Commits the event.
    pub async fn commit(self) -> Result<(), provisioner_core::StoreError> {
        self.0
            .commit()
            .await
            .map_err(|e| provisioner_core::StoreError::Backend(format!("commit: {e}")))
    }
}

impl SqlStore {
    /// Opens a write transaction, inserts `event` in it and returns it uncommitted.
    pub async fn begin_audit_for_test(
        &self,
        event: &provisioner_core::model::AuditEvent,
    ) -> Result<OpenAuditTx, provisioner_core::StoreError> {
        let mut tx = self.begin_write().await?;
        crate::audit::insert_audit(&mut tx, event).await?;
        Ok(OpenAuditTx(tx))
    }
}

/// Runs one statement as is (tests that corrupt a row on purpose).
pub async fn execute_raw(store: &crate::SqlStore, sql: &'static str) {
    sqlx::query(sql)
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The store's connection pool, for tests that act as another holder of the database.
pub fn pool(store: &SqlStore) -> &sqlx::AnyPool {
    store.pool()
}
