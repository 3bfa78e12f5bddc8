//! Configuration of a simulator: accounts, rate limit and injected faults.

use serde::{Deserialize, Serialize};

/// Default `Retry-After` seconds of the injected 429 (used when `retry_after_secs` is 0).
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;
/// Default length of an injected hang (used when `hang_ms` is 0).
pub const DEFAULT_HANG_MS: u64 = 30_000;

/// Everything a simulator starts with.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Upstream accounts, each reachable with its PAT.
    pub accounts: Vec<Account>,
    /// Requests per second per account; `None` or `Some(0)` turns the limit off. Default 15.
    pub rate_limit_per_sec: Option<u32>,
    /// Faults injected from the start.
    pub faults: Faults,
    /// actix-web worker threads (default 2).
    pub workers: usize,
    /// Whether creating an app also mints a key on it, as the portal does ("A key is
    /// automatically generated when you create a new application"): no marker in its
    /// description, every grantable scope. Off by default (whether PostApps does it is
    /// unconfirmed); switchable at run time (`PUT /_sim/auto_app_key`).
    pub auto_app_key: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            accounts: Vec::new(),
            rate_limit_per_sec: Some(15),
            faults: Faults::none(),
            workers: 2,
            auto_app_key: false,
        }
    }
}

/// One Clarifai account (user) and its personal access token.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The Clarifai user id that owns apps and keys.
    pub user_id: String,
    /// The personal access token (a secret: never logged, never shown by `Debug`).
    pub pat: String,
    /// Scopes of the PAT, as MyScopes reports them.
    pub scopes: Vec<String>,
}

impl Account {
    /// An account whose PAT has the scope `All`.
    pub fn new(user_id: impl Into<String>, pat: impl Into<String>) -> Self {
        Self {
            user_id: user_id.into(),
            pat: pat.into(),
            scopes: vec!["All".to_owned()],
        }
    }

    /// The same account with these PAT scopes.
    pub fn with_scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("user_id", &self.user_id)
            .field("pat", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Faults injected into `/v2` routes (never into `/_sim` admin routes).
///
/// Probabilities are per request and are tried in the order 500, HTML 503, 429 with
/// `Retry-After`, 429, hang, commit-then-drop; their sum should stay at or below 1.
/// `retry_after_secs` 0 means 1 and `hang_ms` 0 means 30000, so `Faults::default()` is usable.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Fixed extra latency of every `/v2` request.
    pub latency_ms: u64,
    /// Random extra latency, uniform in `0..=latency_jitter_ms`.
    pub latency_jitter_ms: u64,
    /// HTTP 500 with a status body (98004).
    pub p_500: f64,
    /// HTTP 503 with an HTML page, as a load balancer sends it.
    pub p_503_html: f64,
    /// HTTP 429 with `Retry-After: retry_after_secs`.
    pub p_429_retry_after: f64,
    /// HTTP 429 without `Retry-After`.
    pub p_429: f64,
    /// Seconds in the injected `Retry-After` header.
    pub retry_after_secs: u64,
    /// Sleep `hang_ms`, then answer normally.
    pub p_hang: f64,
    /// Length of a hang in milliseconds.
    pub hang_ms: u64,
    /// Apply the request, then close the connection without an answer.
    pub p_commit_drop: f64,
    /// Seed of the fault RNG, for reproducible runs.
    pub seed: Option<u64>,
}

impl Faults {
    /// No faults, no latency.
    pub fn none() -> Self {
        Self {
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
            hang_ms: DEFAULT_HANG_MS,
            ..Self::default()
        }
    }

    /// `total_probability` spread evenly over the six fault kinds, with a fixed seed.
    pub fn mixed(total_probability: f64, seed: u64) -> Self {
        let p = clamp_probability(total_probability) / 6.0;
        Self {
            p_500: p,
            p_503_html: p,
            p_429_retry_after: p,
            p_429: p,
            p_hang: p,
            p_commit_drop: p,
            seed: Some(seed),
            ..Self::none()
        }
    }

    /// `Retry-After` seconds, with the default applied.
    pub fn effective_retry_after_secs(&self) -> u64 {
        if self.retry_after_secs == 0 {
            DEFAULT_RETRY_AFTER_SECS
        } else {
            self.retry_after_secs
        }
    }

    /// Hang length, with the default applied.
    pub fn effective_hang_ms(&self) -> u64 {
        if self.hang_ms == 0 {
            DEFAULT_HANG_MS
        } else {
            self.hang_ms
        }
    }

    /// The probabilities in decision order, each clamped to `0..=1`.
    pub(crate) fn probabilities(&self) -> [f64; 6] {
        [
            self.p_500,
            self.p_503_html,
            self.p_429_retry_after,
            self.p_429,
            self.p_hang,
            self.p_commit_drop,
        ]
        .map(clamp_probability)
    }
}

fn clamp_probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

/// How many faults of each kind were injected, plus the rate-limit refusals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// HTTP 500 answers.
    pub error_500: u64,
    /// HTML 503 answers.
    pub html_503: u64,
    /// 429 answers with `Retry-After`.
    pub throttled_retry_after: u64,
    /// 429 answers without `Retry-After`.
    pub throttled: u64,
    /// Hangs.
    pub hang: u64,
    /// Requests applied, then dropped.
    pub commit_drop: u64,
    /// Real (not injected) rate-limit refusals.
    pub rate_limited: u64,
}

impl FaultCounts {
    /// All injected faults (rate-limit refusals excluded).
    pub fn total_injected(&self) -> u64 {
        self.error_500
            + self.html_503
            + self.throttled_retry_after
            + self.throttled
            + self.hang
            + self.commit_drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixed_spreads_the_probability_over_six_kinds() {
        let f = Faults::mixed(0.6, 7);
        let sum: f64 = f.probabilities().iter().sum();
        assert!((sum - 0.6).abs() < 1e-9);
        assert_eq!(f.seed, Some(7));
        assert_eq!(f.effective_hang_ms(), DEFAULT_HANG_MS);
    }

    #[test]
    fn defaults_apply_to_zero_fields() {
        let f = Faults::default();
        assert_eq!(f.effective_retry_after_secs(), 1);
        assert_eq!(f.effective_hang_ms(), 30_000);
        assert_eq!(Faults::none().retry_after_secs, 1);
    }

    #[test]
    fn partial_json_deserializes() {
        let f: Faults = serde_json::from_str(r#"{"p_500": 0.5}"#).expect("faults json");
        assert_eq!(f.p_500, 0.5);
        assert_eq!(f.latency_ms, 0);
    }

    #[test]
    fn account_debug_hides_the_pat() {
        let a = Account::new("u1", "secret-pat");
        assert!(!format!("{a:?}").contains("secret-pat"));
    }
}
