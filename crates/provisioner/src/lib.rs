//! The Provisioner binary's library: configuration, telemetry, wiring, and the demo.
#![forbid(unsafe_code)]

pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod healthcheck;
pub mod import;
pub mod jwks;
pub mod metrics;
pub mod startup;
pub mod telemetry;
pub mod token;
