//! Timeouts, retry schedule and paging of the client, and the shared HTTP client builder.

use std::time::Duration;

use crate::error::{ClarifaiError, ErrorKind};

/// How the client talks to the upstream: timeouts, retries, budget and page size.
///
/// Holds no secret, so its `Debug` is safe to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// Time allowed to open a TCP (and TLS) connection. Applied by [`build_http_client`].
    pub connect_timeout: Duration,
    /// Total time allowed for one attempt: sending, waiting and reading the whole answer.
    pub request_timeout: Duration,
    /// Attempts per operation, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the second attempt; it doubles after each failure (full jitter).
    pub base_backoff: Duration,
    /// Upper bound of a computed backoff.
    pub max_backoff: Duration,
    /// Upper bound of a wait asked for by the upstream with `Retry-After`.
    pub max_retry_after: Duration,
    /// Total time for one operation, attempts and waits included; no retry starts after it.
    pub total_budget: Duration,
    /// Items per page when listing (the upstream allows at most 1000).
    pub per_page: u32,
    /// Longest wait for a slot in the account's request budget; a request that gets none in
    /// time is not sent ([`ErrorKind::Busy`]). Keep it within a lease's time to live.
    pub max_queue_wait: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            total_budget: Duration::from_secs(60),
            per_page: 1000,
            max_queue_wait: Duration::from_secs(10),
        }
    }
}

/// Builds the `reqwest::Client` to share between all tenants' [`crate::ClarifaiClient`]s:
/// rustls, the connect timeout of `config`, no redirects (a redirect would be a protocol
/// surprise, and must not carry the PAT elsewhere).
pub fn build_http_client(config: &ClientConfig) -> Result<reqwest::Client, ClarifaiError> {
    reqwest::Client::builder()
        .tls_backend_rustls()
        .connect_timeout(config.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("provisioner-clarifai/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|_| ClarifaiError::new(ErrorKind::Transport, "could not build the HTTP client"))
}
