//! Translation of sqlx errors into [`StoreError`], at the source.
//!
//! Messages carry the operation and the database's own message, never bound values: the
//! sealed secrets are opaque anyway, but nothing here needs them.

use provisioner_core::StoreError;

/// Maps a driver error to domain meaning: a unique violation means the row exists, a foreign
/// key violation means the parent (the tenant) does not, anything else is a backend failure
/// described with `context`.
pub(crate) fn db_error(context: &'static str, e: sqlx::Error) -> StoreError {
    match &e {
        _ if is_contention(&e) => StoreError::Busy(format!("{context}: {e}")),
        // The users table has two unique keys: its primary key (the row exists) and
        // (tenant_id, app_id) (another user holds the app id). PostgreSQL names the index,
        // SQLite the columns.
        sqlx::Error::Database(db)
            if db.is_unique_violation()
                && (db.constraint() == Some("users_tenant_app_id")
                    || db.message().contains("users.app_id")) =>
        {
            StoreError::AppIdTaken
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::AlreadyExists,
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        sqlx::Error::RowNotFound => StoreError::NotFound,
        _ => StoreError::Backend(format!("{context}: {e}")),
    }
}

/// A closure for `map_err` that tags the error with `context`.
pub(crate) fn ctx(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| db_error(context, e)
}

/// Like [`db_error`], but every failure is a backend failure (for statements where a
/// constraint violation cannot mean "exists" or "not found", e.g. the audit insert whose
/// duplicate id must not be mistaken for a duplicate user).
pub(crate) fn backend(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| {
        if is_contention(&e) {
            StoreError::Busy(format!("{context}: {e}"))
        } else {
            StoreError::Backend(format!("{context}: {e}"))
        }
    }
}

/// PostgreSQL aborted the transaction for contention: a serialization failure (40001) or a
/// deadlock (40P01). Running the whole transaction again is the documented remedy.
fn is_contention(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

/// How many times a write aborted for contention is run in all.
const CONTENTION_ATTEMPTS: u32 = 5;

/// Runs `op` (one whole transaction or statement) again, after a short jittered pause, when
/// the database aborted it for contention ([`StoreError::Busy`]); at most
/// [`CONTENTION_ATTEMPTS`] runs. Any other outcome is returned as it is.
pub(crate) async fn retrying<T, F, Fut>(mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(StoreError::Busy(m)) if attempt < CONTENTION_ATTEMPTS => {
                tracing::debug!(error.message = %m, attempt, "write aborted for contention; retrying");
                let pause = 5u64 << attempt;
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(
                    pause..pause * 2,
                )))
                .await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// Raises a real PostgreSQL error with the given SQLSTATE.
    async fn raise(store: &crate::SqlStore, code: &str) -> Result<(), StoreError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{code}'; END $$"
        )))
        .execute(store.pool())
        .await
        .map(|_| ())
        .map_err(backend("test statement"))
    }

    #[tokio::test]
    async fn contention_is_retried_and_other_errors_are_not() {
        let Some((store, _url, _guard)) = crate::testing::fresh_postgres().await else {
            return;
        };
        for code in ["40001", "40P01"] {
            // Fails twice, then succeeds: retried to success.
            let calls = AtomicU32::new(0);
            let out = retrying(|| async {
                if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                    raise(&store, code).await
                } else {
                    Ok(())
                }
            })
            .await;
            assert!(out.is_ok(), "{code}: {out:?}");
            assert_eq!(calls.load(Ordering::SeqCst), 3);
            // Always fails: reported as busy after the last attempt.
            let calls = AtomicU32::new(0);
            let out = retrying(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                raise(&store, code).await
            })
            .await;
            assert!(matches!(out, Err(StoreError::Busy(_))), "{code}: {out:?}");
            assert_eq!(calls.load(Ordering::SeqCst), CONTENTION_ATTEMPTS);
        }
        // Anything else is not retried.
        let calls = AtomicU32::new(0);
        let out = retrying(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            raise(&store, "23505").await
        })
        .await;
        assert!(matches!(out, Err(StoreError::Backend(_))), "{out:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        store.close().await;
    }
}
