//! Provisioner's domain: tenants, scope profiles, end users with one app and one scoped key
//! each, the crash-safe provisioning state machine, and the ports it drives.
//!
//! This crate knows no HTTP and no SQL: `crates/api` calls it, `crates/storage` and
//! `crates/clarifai` implement its ports.
#![forbid(unsafe_code)]

pub mod app_id;
pub mod budget;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod jobs;
pub mod marker;
pub mod model;
pub mod ports;
pub mod scim;
pub mod scope;
pub mod secret;
pub mod service;
#[cfg(test)]
mod simulation;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod trace;
pub mod webhooks;

pub use error::{DomainError, ParseError, StoreError, UpstreamError};
