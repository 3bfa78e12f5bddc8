//! A typed async client of the Clarifai v2 REST API (apps, app-scoped keys, the PAT's own
//! scopes) that survives the upstream's failures, and its implementation of core's
//! [`provisioner_core::ports::Upstream`] port.
//!
//! - [`ClarifaiClient`]: one account (base URL, user id, PAT) over a shared `reqwest::Client`
//!   built with [`build_http_client`].
//! - Every answer goes through one decoder ([`decode::decode`]): `status.code` (number or
//!   name) is the truth, the HTTP status a hint; errors are a [`ClarifaiError`] whose
//!   [`ErrorKind`] says what to do next.
//! - Retries ([`retry`]): exponential backoff with full jitter on throttling, 5xx and
//!   transport failures, `Retry-After` honoured within a cap, a total budget; never on
//!   rejections; an unsafe operation (creating a key) is never repeated once it may have
//!   arrived, and such a failure is reported `ambiguous`.
//! - [`limit`]: requests to one upstream account are paced to its rate and capped in flight.
//! - [`breaker`]: a circuit breaker per upstream account makes calls fail fast while that
//!   account's upstream keeps failing, and probes it before letting traffic through again.
//! - Logs carry method, a redacted path (`/keys/{key}`), status, code, attempt and duration;
//!   never the PAT, a key id or a body.
#![forbid(unsafe_code)]

pub mod breaker;
mod client;
pub mod config;
pub mod decode;
pub mod error;
pub mod limit;
mod ops;
pub mod port;
pub mod retry;
mod types;
mod wire;

pub use breaker::{BreakerConfig, BreakerState, BreakerStatus};
pub use client::ClarifaiClient;
pub use config::{ClientConfig, build_http_client};
pub use error::{ClarifaiError, ErrorKind};
pub use limit::{AccountLimiter, Limiters};
pub use port::ClarifaiUpstream;
pub use retry::Idempotency;
pub use types::{ApiKey, App, AppSpec, KeySpec};
