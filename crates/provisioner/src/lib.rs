//! The Provisioner binary's library: configuration, telemetry, wiring, and the demo.
#![forbid(unsafe_code)]

pub mod config;
pub mod demo;
pub mod import;
pub mod metrics;
pub mod startup;
pub mod telemetry;
pub mod token;
