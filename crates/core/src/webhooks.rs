//! Events and their delivery to a tenant's webhook endpoints (docs/webhooks.md).
//!
//! An event is written through the outbox: it rides on the audit event of the state change
//! ([`crate::model::AuditEvent::events`]) and the store writes it, and one delivery per
//! matching endpoint, in the same transaction. A delivery worker sends each delivery, signed
//! per Standard Webhooks 1.0, retries it on a schedule, and disables endpoints that keep
//! failing. Payloads are thin (ids, state, a per-user version) and never carry a secret.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::TenantId;
use crate::model::{Timestamp, text_enum};

text_enum!(
    /// What happened.
    EventType {
        /// A user's app and key were created (or a provisioning finished after a crash).
        UserProvisioned => "user.provisioned",
        /// A provisioning failed for a reason retrying will not fix.
        UserProvisioningFailed => "user.provisioning_failed",
        /// A user's key was replaced (rotation, repair, key-age policy, tenant-wide rotation).
        UserKeyRotated => "user.key_rotated",
        /// A user's key was deleted and its app kept (SCIM deactivation under `revoke_key`).
        UserKeyRevoked => "user.key_revoked",
        /// A suspended user got a new key (SCIM reactivation).
        UserReactivated => "user.reactivated",
        /// A user's key and app were deleted.
        UserDeprovisioned => "user.deprovisioned",
        /// A bulk job finished.
        JobCompleted => "job.completed",
        /// A drift check found the upstream account differing from the records.
        DriftDetected => "drift.detected",
        /// The upstream refused the tenant's PAT.
        TenantUpstreamCredentialRejected => "tenant.upstream_credential_rejected",
        /// An endpoint was disabled (it answered 410, or failed for days).
        WebhookEndpointDisabled => "webhook_endpoint.disabled",
    }
);

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 10] = [
        EventType::UserProvisioned,
        EventType::UserProvisioningFailed,
        EventType::UserKeyRotated,
        EventType::UserKeyRevoked,
        EventType::UserReactivated,
        EventType::UserDeprovisioned,
        EventType::JobCompleted,
        EventType::DriftDetected,
        EventType::TenantUpstreamCredentialRejected,
        EventType::WebhookEndpointDisabled,
    ];
}

/// An event to deliver, as written through the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEvent {
    /// `msg_` + a UUID v7 (no `.`): the `webhook-id` of every delivery, identical on retries.
    pub id: String,
    /// The tenant whose endpoints receive it.
    pub tenant_id: TenantId,
    /// What happened.
    pub event_type: EventType,
    /// When.
    pub at: Timestamp,
    /// The payload's `data` (thin: ids, state, versions).
    pub data: Value,
}

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a Value,
}

impl OutboxEvent {
    /// A new event of `event_type` for `tenant` at `at`.
    pub fn new(tenant: &TenantId, event_type: EventType, at: Timestamp, data: Value) -> Self {
        Self {
            id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            tenant_id: tenant.clone(),
            event_type,
            at,
            data,
        }
    }

    /// The body every delivery sends, byte for byte (signatures cover these exact bytes):
    /// `{"type", "timestamp", "data"}`.
    pub fn body(&self) -> String {
        serde_json::to_string(&Payload {
            event_type: self.event_type.as_str(),
            timestamp: self.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            data: &self.data,
        })
        .unwrap_or_default()
    }
}

/// One secret of an endpoint, sealed (bound to the tenant and endpoint). During a rotation's
/// overlap the previous secret is kept with an expiry and both sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSecret {
    /// The `whsec_...` value, sealed under the master key.
    pub sealed: Vec<u8>,
    /// Created.
    pub created_at: Timestamp,
    /// Stops signing at this instant (`None`: the current secret).
    pub expires_at: Option<Timestamp>,
}

/// A tenant's webhook endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// `ep_` + a UUID v7.
    pub id: String,
    /// Owner.
    pub tenant_id: TenantId,
    /// Where deliveries are POSTed (`https://`, unless the service allows otherwise).
    pub url: String,
    /// For humans.
    pub description: Option<String>,
    /// Event types delivered; empty: all.
    pub event_types: Vec<EventType>,
    /// Disabled endpoints receive nothing (their pending deliveries wait, unless deleted).
    pub enabled: bool,
    /// Why it was disabled (by the service or an operator).
    pub disabled_reason: Option<String>,
    /// Current secret last; earlier ones in their overlap before it.
    pub secrets: Vec<EndpointSecret>,
    /// Since when every attempt failed (reset by any success).
    pub failing_since: Option<Timestamp>,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
    /// Incremented by every write (updates are conditioned on it).
    pub version: i64,
}

impl WebhookEndpoint {
    /// Whether it wants events of `t`.
    pub fn wants(&self, t: EventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&t)
    }

    /// The secrets that sign at `now` (the current one, and earlier ones in their overlap).
    pub fn signing_secrets(&self, now: Timestamp) -> impl Iterator<Item = &EndpointSecret> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at.is_none_or(|e| e > now))
    }
}

text_enum!(
    /// Where one event's delivery to one endpoint stands.
    DeliveryStatus {
        /// To be sent (now, or at `next_attempt_at`).
        Pending => "pending",
        /// An attempt got a 2xx.
        Delivered => "delivered",
        /// Every scheduled attempt failed (or the endpoint was disabled): resend or recover it.
        Failed => "failed",
    }
);

/// One event's delivery to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The event (`webhook-id`).
    pub event_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// Owner.
    pub tenant_id: TenantId,
    /// The event's type (for listings).
    pub event_type: EventType,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (also the claim of a worker sending it).
    pub next_attempt_at: Option<Timestamp>,
    /// The last attempt's HTTP status, if it got one.
    pub last_status: Option<i64>,
    /// The last attempt's failure, if any.
    pub last_error: Option<String>,
    /// Created (when the event was written).
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// One attempt of a delivery, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryAttempt {
    /// The event.
    pub event_id: String,
    /// The endpoint.
    pub endpoint_id: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    /// When it was sent.
    pub at: Timestamp,
    /// The HTTP status, if a response came.
    pub status_code: Option<i64>,
    /// Why it failed, if it did (never the response body).
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
}

/// What a worker does with a delivery after an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// The attempt to record.
    pub attempt: DeliveryAttempt,
    /// The delivery's new status.
    pub status: DeliveryStatus,
    /// When to try again (`Pending` only).
    pub next_attempt_at: Option<Timestamp>,
    /// `None`: it worked (the endpoint's failure clock stops); `Some(at)`: it failed (the clock
    /// starts at `at` unless it runs already).
    pub failing_since: Option<Timestamp>,
    /// Disable the endpoint (and write its `webhook_endpoint.disabled` event in the same
    /// transaction), if its failure clock, as stored after this attempt, started no later than
    /// `if_failing_since` (so a success or a re-enable meanwhile keeps it enabled).
    pub disable: Option<Disable>,
}

/// A disable an attempt asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disable {
    /// Why (shown on the endpoint).
    pub reason: String,
    /// The `webhook_endpoint.disabled` event.
    pub event: OutboxEvent,
    /// Only if the endpoint has failed since this instant or earlier.
    pub if_failing_since: Timestamp,
}

/// A request to send one delivery.
pub struct WebhookRequest {
    /// The endpoint's URL.
    pub url: String,
    /// `webhook-id`.
    pub msg_id: String,
    /// `webhook-timestamp` (Unix seconds of this attempt).
    pub timestamp: i64,
    /// The exact body.
    pub body: String,
    /// The `whsec_...` secrets that sign (each adds a `v1,` signature).
    pub secrets: Vec<secrecy::SecretString>,
}

impl std::fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Scheme and host only: a path or query may hold a token.
        let host_end = self
            .url
            .find("://")
            .map(|i| i + 3)
            .and_then(|start| self.url[start..].find(['/', '?', '#']).map(|e| start + e))
            .unwrap_or(self.url.len());
        f.debug_struct("WebhookRequest")
            .field("url", &&self.url[..host_end])
            .field("msg_id", &self.msg_id)
            .field("timestamp", &self.timestamp)
            .field("secrets", &format!("[{} REDACTED]", self.secrets.len()))
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendResult {
    /// A response came with this status (and `Retry-After`, if given).
    Status {
        /// The status code.
        code: u16,
        /// `Retry-After`, as a delay.
        retry_after: Option<Duration>,
    },
    /// No response: a connection error or a timeout (`timed_out`).
    NoResponse {
        /// Why (no URL query, no body).
        error: String,
        /// Whether it ran past the timeout.
        timed_out: bool,
    },
    /// Not sent: the target is not allowed (not HTTPS, or a private or loopback address).
    Refused(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_shows_neither_secrets_nor_the_urls_path_in_debug() {
        let r = WebhookRequest {
            url: "https://hooks.example/in/tok3n?key=s3cret".into(),
            msg_id: "msg_1".into(),
            timestamp: 1,
            body: "{}".into(),
            secrets: vec![secrecy::SecretString::from("whsec_abc".to_owned())],
        };
        let d = format!("{r:?}");
        assert!(d.contains("https://hooks.example"), "{d}");
        for hidden in ["tok3n", "s3cret", "whsec_abc"] {
            assert!(!d.contains(hidden), "{d}");
        }
    }

    #[test]
    fn the_body_is_type_timestamp_and_data() {
        let e = OutboxEvent::new(
            &TenantId::parse("acme").unwrap(),
            EventType::UserProvisioned,
            chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            serde_json::json!({"external_id": "ann"}),
        );
        assert!(e.id.starts_with("msg_") && !e.id.contains('.'));
        assert_eq!(
            e.body(),
            r#"{"type":"user.provisioned","timestamp":"2023-11-14T22:13:20.000Z","data":{"external_id":"ann"}}"#
        );
    }
}
