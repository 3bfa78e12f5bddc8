//! Integration tests of the simulator over HTTP (one test binary; modules under `sim/`).

#[path = "sim/api.rs"]
mod api;
#[path = "sim/binary.rs"]
mod binary;
#[path = "sim/faults.rs"]
mod faults;
#[path = "sim/helpers.rs"]
mod helpers;
#[path = "sim/keys.rs"]
mod keys;
