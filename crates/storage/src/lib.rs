//! sqlx implementation of core's [`Store`](provisioner_core::ports::Store) port, for SQLite
//! (the embedded default, WAL mode) and PostgreSQL (production, several replicas).
//!
//! One implementation serves both backends: it talks through sqlx's `Any` driver with
//! portable SQL (`$N` placeholders, `INSERT ... ON CONFLICT`, `UPDATE ... RETURNING`), and
//! branches on [`Backend`] only where the dialects differ (row locks). Rows are read into
//! `*Row` structs and parsed into domain types through `TryFrom`, so a corrupt row is a
//! [`StoreError::Backend`](provisioner_core::StoreError::Backend), never a panic; sqlx
//! errors are translated where they occur and never leave this crate.
//!
//! Migrations live in `migrations/{sqlite,postgres}` at the repository root and are embedded
//! at build time.
#![forbid(unsafe_code)]

mod accounts;
mod audit;
mod budget;
mod error;
mod idempotency;
mod jobs;
mod maintenance;
mod rows;
mod scim;
mod store;
mod tenants;
pub mod testing;
mod users;
mod webhooks;

pub use audit::AUDIT_TARGET;
pub use store::{Backend, SqlStore};
