//! [`SqlStore`]: connecting, migrating, transactions, readiness.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use provisioner_core::StoreError;
use provisioner_core::ports::Store;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Transaction};

use crate::error::backend;

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// How long SQLite waits for another connection's write lock before failing (ms).
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;
/// Connections per SQLite pool: readers run concurrently in WAL mode, writers take turns.
const SQLITE_POOL_SIZE: u32 = 4;
/// Connections per PostgreSQL pool (per replica).
const POSTGRES_POOL_SIZE: u32 = 10;

/// Which database a [`SqlStore`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, one file (or memory), WAL mode.
    Sqlite,
    /// PostgreSQL (or a compatible engine).
    Postgres,
}

impl Backend {
    /// The backend a database URL names, from its scheme.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            // The URL itself is not echoed: it may hold a password.
            Err(StoreError::Backend(
                "unsupported database URL: expected sqlite:// or postgres://".into(),
            ))
        }
    }
}

/// The [`Store`] implementation: a connection pool and the backend it talks to.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Connects to `sqlite://path` (creating the file and its directory) or `postgres://...`.
    ///
    /// Does not migrate: call [`SqlStore::migrate`] (the binary does it on `migrate` and at
    /// start-up).
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        // Idempotent (sqlx guards it with a `Once`).
        install_default_drivers();
        let kind = Backend::from_url(url)?;
        let pool = match kind {
            Backend::Sqlite => connect_sqlite(url).await?,
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(POSTGRES_POOL_SIZE)
                .acquire_timeout(Duration::from_secs(10))
                .connect(url)
                .await
                .map_err(backend("connecting to PostgreSQL"))?,
        };
        Ok(SqlStore {
            pool,
            backend: kind,
        })
    }

    /// Applies the migrations this build embeds that the database lacks. Safe to repeat and,
    /// on PostgreSQL, to run from several replicas at once (sqlx takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator()
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Backend(format!("migrating the database: {e}")))
    }

    /// Which backend this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        }
    }

    /// The pool, for single statements (autocommit).
    /// Connections of the pool now: (open, idle, most allowed).
    pub fn pool_stats(&self) -> (u32, u32, u32) {
        let p = self.pool();
        (
            p.size(),
            u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
            p.options().get_max_connections(),
        )
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Begins a transaction that will write.
    ///
    /// On SQLite it is `BEGIN IMMEDIATE`: the write lock is taken up front, where the busy
    /// timeout applies. A deferred transaction that reads first and writes later would have to
    /// upgrade its lock, and in WAL mode SQLite fails such an upgrade at once with
    /// `SQLITE_BUSY` when another connection wrote meanwhile (the busy handler is not used, as
    /// waiting could not help: the snapshot is stale). With IMMEDIATE, writers queue on the lock
    /// for up to the busy timeout while readers keep running, so the pool can hold several
    /// connections. Single-statement writes in autocommit take the write lock as their
    /// first step and are safe the same way.
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        };
        tx.map_err(backend("beginning a transaction"))
    }
}

/// Opens a SQLite pool: creates the parent directory, opens with `mode=rwc`, and sets the
/// pragmas on every new connection.
async fn connect_sqlite(url: &str) -> Result<AnyPool, StoreError> {
    let (path, query) = match url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split_once('?')
    {
        Some((p, q)) => (p, Some(q)),
        None => (
            url.trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:"),
            None,
        ),
    };
    let in_memory =
        path.is_empty() || path == ":memory:" || query.is_some_and(|q| q.contains("mode=memory"));
    let mut url = url.to_owned();
    if !in_memory {
        if let Some(dir) = Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Backend(format!(
                    "creating the directory of the SQLite database: {e}"
                ))
            })?;
        }
        if !query.is_some_and(|q| q.contains("mode=")) {
            url.push_str(if query.is_some() {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
    }
    let options = AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // journal_mode=WAL persists in the file; repeating it on a WAL database is a
                // no-op. busy_timeout and foreign_keys are per connection. synchronous=NORMAL
                // is durable across application crashes in WAL mode (only a power loss may
                // drop the last commits) and avoids an fsync per commit.
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;"
                )))
                .await?;
                Ok(())
            })
        });
    // An in-memory database exists per connection: keep exactly one, forever.
    let options = if in_memory {
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        options.max_connections(SQLITE_POOL_SIZE)
    };
    // `connect` opens one connection before returning, so the first `journal_mode = WAL`
    // (which needs the database to itself) runs before any other connection exists.
    options
        .connect(&url)
        .await
        .map_err(backend("opening the SQLite database"))
}

#[async_trait]
impl Store for SqlStore {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn ready(&self) -> Result<(), StoreError> {
        let expected = self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count();
        // Also proves the database answers. A missing table means "never migrated".
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await
                .map_err(backend(
                    "checking applied migrations (is the database migrated?)",
                ))?;
        if usize::try_from(applied).unwrap_or(0) < expected {
            return Err(StoreError::Backend(format!(
                "database has {applied} of {expected} migrations applied; run `provisioner migrate`"
            )));
        }
        Ok(())
    }
}
