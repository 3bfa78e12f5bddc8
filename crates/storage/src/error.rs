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
    move |e| StoreError::Backend(format!("{context}: {e}"))
}
