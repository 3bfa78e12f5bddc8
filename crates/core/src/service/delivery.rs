//! Webhook delivery: claims due deliveries (replicas never share one), signs and sends each
//! through the [`WebhookSender`] port, and records the attempt with what comes next:
//!
//! - a 2xx: delivered; the endpoint's failure clock stops;
//! - `410 Gone`: the endpoint is disabled at once (and `webhook_endpoint.disabled` written);
//! - anything else (another status, no response, a timeout): tried again on Svix's schedule
//!   (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the first attempt) with ±20 % jitter; at
//!   least a minute after a 429, 502, 504 or a timeout; a `Retry-After` is honoured between
//!   the scheduled delay and twice it; after the last attempt the delivery is `failed`;
//! - an endpoint whose every attempt failed for five days is disabled;
//! - a target the sender refuses (not HTTPS, a private address) fails the delivery at once.
//!
//! At-least-once: a delivery is marked only after its attempt; a crash between the send and
//! the record leaves it claimed until the claim lapses, then it is sent again with the same
//! `webhook-id`.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::task::JoinSet;

use crate::error::DomainError;
use crate::model::Timestamp;
use crate::ports::{Clock, Store, WebhookSender};
use crate::secret::Sealer;
use crate::webhooks::{
    AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus, Disable, EventType, OutboxEvent,
    SendResult, WebhookRequest,
};

use super::webhooks::secret_aad;

/// Delivery policy.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Delays before the 2nd, 3rd, ... attempt; after the last, the delivery fails.
    pub schedule: Vec<Duration>,
    /// Relative jitter on each delay (0.2: ±20 %).
    pub jitter: f64,
    /// Least delay after a throttling answer (429, 502, 504) or a timeout.
    pub throttle_min: Duration,
    /// An endpoint failing for this long without a success is disabled.
    pub disable_after: Duration,
    /// How long a worker holds a claimed delivery (more than the sender's timeout).
    pub claim_ttl: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            schedule: vec![
                s(5),
                s(300),
                s(1800),
                s(7200),
                s(18_000),
                s(36_000),
                s(36_000),
            ],
            jitter: 0.2,
            throttle_min: s(60),
            disable_after: s(5 * 24 * 3600),
            claim_ttl: s(60),
        }
    }
}

/// What a pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Deliveries claimed.
    pub claimed: usize,
    /// Answered 2xx.
    pub delivered: usize,
    /// Failed and to be tried again.
    pub retried: usize,
    /// Failed for good (schedule exhausted, 410, refused target).
    pub failed: usize,
}

/// Sends the outbox's deliveries.
#[derive(Clone)]
pub struct WebhookDeliverer {
    store: Arc<dyn Store>,
    sender: Arc<dyn WebhookSender>,
    sealer: Arc<dyn Sealer>,
    clock: Arc<dyn Clock>,
    config: DeliveryConfig,
}

impl std::fmt::Debug for WebhookDeliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookDeliverer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Where an attempt leaves a delivery.
enum Next {
    Delivered,
    Retry { at: Timestamp, error: String },
    Fail(String),
    Disable(String),
}

impl WebhookDeliverer {
    /// Wires the deliverer to its ports.
    pub fn new(
        store: Arc<dyn Store>,
        sender: Arc<dyn WebhookSender>,
        sealer: Arc<dyn Sealer>,
        clock: Arc<dyn Clock>,
        config: DeliveryConfig,
    ) -> Self {
        Self {
            store,
            sender,
            sealer,
            clock,
            config,
        }
    }

    /// Runs until `stop`: up to `concurrency` deliveries in flight, polling every 250 ms when
    /// idle.
    pub async fn run(&self, concurrency: u32, mut stop: tokio::sync::watch::Receiver<bool>) {
        const IDLE: Duration = Duration::from_millis(250);
        let concurrency = concurrency.max(1);
        let mut running: JoinSet<()> = JoinSet::new();
        loop {
            if *stop.borrow() {
                return;
            }
            let free = concurrency.saturating_sub(u32::try_from(running.len()).unwrap_or(u32::MAX));
            let mut claimed = 0;
            if free > 0 {
                match self.claim(free).await {
                    Ok(ds) => {
                        claimed = ds.len();
                        for d in ds {
                            let this = self.clone();
                            running.spawn(async move {
                                this.deliver(d).await;
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error.message = %e, "claiming webhook deliveries failed")
                    }
                }
            }
            if claimed > 0 && running.len() < concurrency as usize {
                continue;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => return,
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(IDLE) => {}
            }
        }
    }

    /// One pass: claims up to `limit` due deliveries and sends them one after another.
    pub async fn run_pass(&self, limit: u32) -> Result<DeliveryReport, DomainError> {
        let ds = self.claim(limit).await?;
        let mut r = DeliveryReport {
            claimed: ds.len(),
            ..Default::default()
        };
        for d in ds {
            match self.deliver(d).await {
                Some(DeliveryStatus::Delivered) => r.delivered += 1,
                Some(DeliveryStatus::Pending) => r.retried += 1,
                Some(DeliveryStatus::Failed) => r.failed += 1,
                None => {}
            }
        }
        Ok(r)
    }

    async fn claim(&self, limit: u32) -> Result<Vec<Delivery>, DomainError> {
        let now = self.clock.now();
        let until = now + chrono::Duration::from_std(self.config.claim_ttl).unwrap_or_default();
        Ok(self.store.claim_deliveries(now, until, limit).await?)
    }

    /// Sends one claimed delivery and records the attempt; the status it leaves (`None`: not
    /// recorded, the claim lapses and it is sent again).
    async fn deliver(&self, d: Delivery) -> Option<DeliveryStatus> {
        let event = match self.store.get_event(&d.event_id).await {
            Ok(Some((_, body))) => body,
            Ok(None) => String::new(),
            Err(e) => {
                tracing::warn!(error.message = %e, "reading a webhook event failed");
                return None;
            }
        };
        let endpoint = match self.store.get_endpoint(&d.tenant_id, &d.endpoint_id).await {
            Ok(Some(ep)) => ep,
            // Deleted meanwhile (its deliveries go with it).
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error.message = %e, "reading a webhook endpoint failed");
                return None;
            }
        };
        let now = self.clock.now();
        let secrets: Vec<SecretString> = endpoint
            .signing_secrets(now)
            .filter_map(|s| {
                self.sealer
                    .open(&s.sealed, &secret_aad(&d.tenant_id, &endpoint.id))
                    .ok()
            })
            .collect();
        let started = tokio::time::Instant::now();
        let result = if event.is_empty() {
            SendResult::Refused("the event is gone".into())
        } else if secrets.is_empty() {
            SendResult::Refused("no secret of the endpoint opens (wrong master key?)".into())
        } else {
            self.sender
                .send(&WebhookRequest {
                    url: endpoint.url.clone(),
                    msg_id: d.event_id.clone(),
                    timestamp: now.timestamp(),
                    body: event,
                    secrets,
                })
                .await
        };
        let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let at = self.clock.now();
        let attempt_no = d.attempts + 1;
        let (status_code, next) = self.next(&result, attempt_no, at);
        let failing = !matches!(next, Next::Delivered);
        let failing_since = if failing {
            Some(endpoint.failing_since.unwrap_or(at))
        } else {
            None
        };
        let window = chrono::Duration::from_std(self.config.disable_after)
            .unwrap_or(chrono::Duration::days(5));
        // The store disables only if its own clock (the earliest failure since the last
        // success) agrees: a success or a re-enable this read missed keeps the endpoint.
        let mut if_failing_since = at;
        let next = match (next, failing_since) {
            (Next::Retry { error, .. }, Some(since)) if at - since >= window => {
                if_failing_since = at - window;
                Next::Disable(format!(
                    "every attempt failed for {} days (last: {error})",
                    self.config.disable_after.as_secs() / 86_400
                ))
            }
            (n, _) => n,
        };
        let failing_since = failing.then_some(at);
        let (status, next_attempt_at, error, disable) = match next {
            Next::Delivered => (DeliveryStatus::Delivered, None, None, None),
            Next::Retry { at: t, error } => (DeliveryStatus::Pending, Some(t), Some(error), None),
            Next::Fail(e) => (DeliveryStatus::Failed, None, Some(e), None),
            Next::Disable(reason) => {
                let event = OutboxEvent::new(
                    &d.tenant_id,
                    EventType::WebhookEndpointDisabled,
                    at,
                    serde_json::json!({
                        "tenant_id": d.tenant_id.as_str(),
                        "endpoint_id": endpoint.id,
                        "reason": reason,
                    }),
                );
                (
                    DeliveryStatus::Failed,
                    None,
                    Some(reason.clone()),
                    Some(Disable {
                        reason,
                        event,
                        if_failing_since,
                    }),
                )
            }
        };
        let outcome = AttemptOutcome {
            attempt: DeliveryAttempt {
                event_id: d.event_id.clone(),
                endpoint_id: d.endpoint_id.clone(),
                attempt: attempt_no,
                at,
                status_code,
                error,
                duration_ms,
            },
            status,
            next_attempt_at,
            failing_since,
            disable,
        };
        match self.store.record_attempt(&d.tenant_id, &outcome).await {
            Ok(()) => Some(status),
            Err(e) => {
                // Sent but not recorded: the claim lapses and it goes again (same id).
                tracing::warn!(error.message = %e, "recording a webhook attempt failed");
                None
            }
        }
    }

    /// Classifies an attempt: its status code, and what comes next.
    fn next(&self, result: &SendResult, attempt_no: i64, at: Timestamp) -> (Option<i64>, Next) {
        let scheduled = usize::try_from(attempt_no - 1)
            .ok()
            .and_then(|i| self.config.schedule.get(i).copied());
        let retry = |min: Duration, retry_after: Option<Duration>, error: String| -> Next {
            let Some(base) = scheduled else {
                return Next::Fail(format!(
                    "gave up after {attempt_no} attempts (last: {error})"
                ));
            };
            let mut delay = jittered(base, self.config.jitter).max(min);
            if let Some(ra) = retry_after {
                delay = ra.clamp(delay, delay * 2);
            }
            Next::Retry {
                at: at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1)),
                error,
            }
        };
        match result {
            SendResult::Status { code, .. } if (200..300).contains(code) => {
                (Some(i64::from(*code)), Next::Delivered)
            }
            SendResult::Status { code: 410, .. } => (
                Some(410),
                Next::Disable("the endpoint answered 410 Gone".into()),
            ),
            SendResult::Status { code, retry_after } => {
                let throttled = matches!(code, 429 | 502 | 504);
                let min = if throttled {
                    self.config.throttle_min
                } else {
                    Duration::ZERO
                };
                (
                    Some(i64::from(*code)),
                    retry(min, *retry_after, format!("the endpoint answered {code}")),
                )
            }
            SendResult::NoResponse { error, timed_out } => {
                let min = if *timed_out {
                    self.config.throttle_min
                } else {
                    Duration::ZERO
                };
                (None, retry(min, None, error.clone()))
            }
            SendResult::Refused(reason) => (None, Next::Fail(format!("not sent: {reason}"))),
        }
    }
}

fn jittered(d: Duration, jitter: f64) -> Duration {
    let f = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
    d.mul_f64(f.max(0.0))
}
