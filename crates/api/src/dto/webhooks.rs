//! A tenant's webhook endpoints, their messages and attempts on the wire
//! (`/v1/tenants/{tenant_id}/webhook-endpoints`). Secrets appear only in
//! [`WebhookEndpointSecretOut`], the answer of a create or a rotation.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use provisioner_core::service::{EndpointPatch, IssuedEndpoint, NewEndpoint};
use provisioner_core::webhooks::{
    Delivery, DeliveryAttempt, DeliveryStatus, EventType, WebhookEndpoint,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::present;
use crate::problem::{ApiError, FieldError};

/// An event type's name (documentation only: the body fields are strings, checked by
/// [`event_types`], so an unknown name is 422 with the known ones listed).
pub struct WebhookEventType;

impl PartialSchema for WebhookEventType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An event type (docs/webhooks.md describes each and its `data`).",
            ))
            .enum_values(Some(EventType::ALL.iter().map(|t| t.as_str())))
            .examples([EventType::UserProvisioned.as_str()])
            .into()
    }
}

impl ToSchema for WebhookEventType {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("WebhookEventType")
    }
}

/// Event type names, each known (422 at `/event_types/{i}` otherwise, listing the known ones),
/// sorted and de-duplicated by core.
fn event_types(names: &[String]) -> Result<Vec<EventType>, ApiError> {
    let mut out = Vec::with_capacity(names.len());
    let mut errors = Vec::new();
    for (i, n) in names.iter().enumerate() {
        match n.parse::<EventType>() {
            Ok(t) => out.push(t),
            Err(_) => errors.push(FieldError {
                pointer: format!("/event_types/{i}"),
                message: format!("unknown event type {n:?}"),
            }),
        }
    }
    if errors.is_empty() {
        return Ok(out);
    }
    let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    let unknown: Vec<&str> = errors
        .iter()
        .filter_map(|e| e.message.strip_prefix("unknown event type "))
        .collect();
    Err(ApiError::Validation {
        detail: format!(
            "unknown event type{} {}; the known ones are {}",
            if unknown.len() > 1 { "s" } else { "" },
            unknown.join(", "),
            known.join(", ")
        ),
        errors,
    })
}

/// `POST /v1/tenants/{tenant_id}/webhook-endpoints` body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointIn {
    /// Where deliveries are POSTed: an absolute `https://` URL (`http://` only where the
    /// service allows it), at most 2048 characters, no spaces. Redirects are not followed.
    #[schema(
        example = "https://hooks.example.com/provisioner",
        min_length = 1,
        max_length = 2048
    )]
    pub url: String,
    /// For humans: 1-500 characters, no control characters.
    #[schema(
        example = "Our provisioning listener",
        min_length = 1,
        max_length = 500
    )]
    pub description: Option<String>,
    /// Event types to deliver; absent or empty: all, including types added later.
    #[schema(value_type = Option<Vec<WebhookEventType>>)]
    pub event_types: Option<Vec<String>>,
}

impl TryFrom<WebhookEndpointIn> for NewEndpoint {
    type Error = ApiError;

    fn try_from(v: WebhookEndpointIn) -> Result<Self, ApiError> {
        Ok(NewEndpoint {
            event_types: event_types(v.event_types.as_deref().unwrap_or_default())?,
            url: v.url,
            description: v.description,
        })
    }
}

/// `PATCH /v1/tenants/{tenant_id}/webhook-endpoints/{endpoint_id}` body: absent fields keep
/// their value.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpointPatchIn {
    /// New URL (same rules as on create).
    #[schema(
        example = "https://hooks.example.com/provisioner",
        min_length = 1,
        max_length = 2048
    )]
    pub url: Option<String>,
    /// New description; `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 500)]
    pub description: Option<Option<String>>,
    /// New filter; empty: all event types.
    #[schema(value_type = Option<Vec<WebhookEventType>>)]
    pub event_types: Option<Vec<String>>,
    /// `true` enables the endpoint (clearing `disabled_reason` and `failing_since`; its
    /// `pending` messages are sent, `failed` ones stay failed until resent or recovered);
    /// `false` disables it: nothing is sent to it, its `pending` messages wait, and events
    /// written while it is disabled are not queued for it.
    pub enabled: Option<bool>,
}

impl TryFrom<WebhookEndpointPatchIn> for EndpointPatch {
    type Error = ApiError;

    fn try_from(v: WebhookEndpointPatchIn) -> Result<Self, ApiError> {
        Ok(EndpointPatch {
            event_types: v.event_types.as_deref().map(event_types).transpose()?,
            url: v.url,
            description: v.description,
            enabled: v.enabled,
        })
    }
}

/// A webhook endpoint (never its secrets).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointOut {
    /// Its id (`ep_` and 32 hex digits).
    #[schema(example = "ep_0193a1b2c3d47e5f8a9b0c1d2e3f4a5b")]
    pub id: String,
    /// Owner tenant.
    pub tenant_id: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// For humans.
    pub description: Option<String>,
    /// Event types delivered, sorted; empty: all.
    #[schema(value_type = Vec<WebhookEventType>)]
    pub event_types: Vec<String>,
    /// Whether messages are sent to it; a disabled endpoint is sent nothing, and events written
    /// while it is disabled are not queued for it.
    pub enabled: bool,
    /// Why it is disabled (by an operator, an answer `410 Gone`, five days of failures);
    /// `null` while enabled.
    pub disabled_reason: Option<String>,
    /// Since when every attempt failed; `null` after any success.
    pub failing_since: Option<DateTime<Utc>>,
    /// How many secrets sign each message now: 1, or 2-3 within 24 h of a rotation (the
    /// `webhook-signature` header then carries one `v1,` signature per secret).
    #[schema(minimum = 1, example = 1)]
    pub secret_count: usize,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpointOut {
    /// The endpoint as shown at `now` (which secrets still sign).
    pub fn new(e: WebhookEndpoint, now: DateTime<Utc>) -> Self {
        WebhookEndpointOut {
            secret_count: e.signing_secrets(now).count(),
            id: e.id,
            tenant_id: e.tenant_id.to_string(),
            url: e.url,
            description: e.description,
            event_types: e
                .event_types
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its new signing secret, shown this once (create, rotate-secret).
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointSecretOut {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookEndpointOut,
    /// The new signing secret (`whsec_` and the base64 of 32 random bytes; Standard Webhooks
    /// 1.0): HMAC-SHA256 key of the `v1,` signatures. Stored sealed, never shown again.
    #[schema(example = "whsec_EXAMPLEonlyEXAMPLEonlyEXAMPLEonlyEXAMPLEonl=")]
    pub secret: String,
}

impl std::fmt::Debug for WebhookEndpointSecretOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpointSecretOut")
            .field("endpoint", &self.endpoint)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

impl WebhookEndpointSecretOut {
    /// The endpoint just issued a secret, as shown at `now`.
    pub fn new(issued: IssuedEndpoint, now: DateTime<Utc>) -> Self {
        WebhookEndpointSecretOut {
            secret: issued.secret.expose_secret().to_owned(),
            endpoint: WebhookEndpointOut::new(issued.endpoint, now),
        }
    }
}

/// A tenant's webhook endpoints, oldest first (at most 20: one page).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointList {
    /// The endpoints.
    pub items: Vec<WebhookEndpointOut>,
}

/// Where a message (one event's delivery to one endpoint) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookMessageStatusDto {
    /// To be sent: now, at `next_attempt_at`, or once the disabled endpoint is enabled.
    Pending,
    /// An attempt got a 2xx.
    Delivered,
    /// Every scheduled attempt failed: resend it, or recover the endpoint.
    Failed,
}

impl From<DeliveryStatus> for WebhookMessageStatusDto {
    fn from(s: DeliveryStatus) -> Self {
        match s {
            DeliveryStatus::Pending => Self::Pending,
            DeliveryStatus::Delivered => Self::Delivered,
            DeliveryStatus::Failed => Self::Failed,
        }
    }
}

impl From<WebhookMessageStatusDto> for DeliveryStatus {
    fn from(s: WebhookMessageStatusDto) -> Self {
        match s {
            WebhookMessageStatusDto::Pending => Self::Pending,
            WebhookMessageStatusDto::Delivered => Self::Delivered,
            WebhookMessageStatusDto::Failed => Self::Failed,
        }
    }
}

/// One event's delivery to the endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookMessageOut {
    /// The event's id: the `webhook-id` header of every attempt (`msg_` and 32 hex digits).
    #[schema(example = "msg_0193a1b2c3d47e5f8a9b0c1d2e3f4a5b")]
    pub event_id: String,
    /// The event's type.
    #[schema(value_type = WebhookEventType)]
    pub event_type: String,
    /// Where it stands.
    pub status: WebhookMessageStatusDto,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (while an attempt is in flight: until when a worker holds
    /// it); `null` when none is scheduled.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt, if it got an answer.
    pub last_status: Option<i64>,
    /// Why the last attempt failed, if it did (never the answer's body).
    pub last_error: Option<String>,
    /// When the event was written.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Delivery> for WebhookMessageOut {
    fn from(d: Delivery) -> Self {
        WebhookMessageOut {
            event_id: d.event_id,
            event_type: d.event_type.as_str().to_owned(),
            status: d.status.into(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// A page of an endpoint's messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookMessagePage {
    /// Messages, newest event first.
    pub items: Vec<WebhookMessageOut>,
    /// Cursor of the next page; `null` at the end.
    pub next_cursor: Option<String>,
}

/// `GET .../webhook-endpoints/{endpoint_id}/messages` query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WebhookMessageQuery {
    /// Only messages in this state.
    #[param(inline)]
    pub status: Option<WebhookMessageStatusDto>,
    /// Page size, 1-1000 (default 100).
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One attempt to deliver a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptOut {
    /// 1 for the first attempt (a resend continues the count).
    pub attempt: i64,
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// The HTTP status of the answer; `null` when none came (connection error, timeout, or a
    /// target refused before sending).
    pub status_code: Option<i64>,
    /// Why it failed, if it did (never the answer's body).
    pub error: Option<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: i64,
}

impl From<DeliveryAttempt> for WebhookAttemptOut {
    fn from(a: DeliveryAttempt) -> Self {
        WebhookAttemptOut {
            attempt: a.attempt,
            at: a.at,
            status_code: a.status_code,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

/// A message's attempts to the endpoint, in order.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptList {
    /// The attempts, first first.
    pub items: Vec<WebhookAttemptOut>,
}

/// The answer of a resend.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResendOut {
    /// Always `pending`: the message is due now.
    pub status: WebhookMessageStatusDto,
}

/// `POST .../webhook-endpoints/{endpoint_id}/recover` body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRecoverIn {
    /// Resend the endpoint's `failed` messages of events written at or after this instant
    /// (RFC 3339).
    #[serde(deserialize_with = "rfc3339")]
    #[schema(example = "2026-01-01T00:00:00Z")]
    pub since: DateTime<Utc>,
}

/// An RFC 3339 date-time, strictly (`T` between date and time, as JSON Schema's `date-time`;
/// chrono's own parsing also takes a space and padding).
fn rfc3339<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let s = String::deserialize(d)?;
    s.as_bytes()
        .get(10)
        .filter(|b| matches!(b, b'T' | b't'))
        .and_then(|_| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{s:?} is not an RFC 3339 date-time such as 2026-01-01T00:00:00Z"
            ))
        })
}

/// The answer of a recovery.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookRecoverOut {
    /// How many failed messages were made `pending` again.
    #[schema(minimum = 0)]
    pub requeued: u64,
}

/// The `{endpoint_id}` path segment (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct WebhookEndpointIdParam {
    /// The endpoint's id (as created or listed).
    #[param(example = "ep_0193a1b2c3d47e5f8a9b0c1d2e3f4a5b")]
    endpoint_id: String,
}

/// The `{event_id}` path segment (documentation only).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct WebhookEventIdParam {
    /// The event's id (a message's `event_id`, the `webhook-id` header).
    #[param(example = "msg_0193a1b2c3d47e5f8a9b0c1d2e3f4a5b")]
    event_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_event_types_are_422_listing_the_known_ones() {
        let names = vec!["user.provisioned".to_owned(), "user.exploded".to_owned()];
        let e = event_types(&names).unwrap_err();
        let p = e.problem();
        assert_eq!(p.status, 422);
        assert!(p.detail.contains("\"user.exploded\""), "{}", p.detail);
        for t in EventType::ALL {
            assert!(p.detail.contains(t.as_str()), "{}", p.detail);
        }
        let errors = p.errors.unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pointer, "/event_types/1");
        assert_eq!(
            event_types(&["job.completed".to_owned()]).unwrap(),
            [EventType::JobCompleted]
        );
    }

    #[test]
    fn the_documented_event_types_are_every_known_one() {
        let s = serde_json::to_value(WebhookEventType::schema()).unwrap();
        let names: Vec<&str> = s["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, known);
    }

    #[test]
    fn since_is_a_strict_rfc_3339_date_time() {
        let at =
            |s: &str| serde_json::from_value::<WebhookRecoverIn>(serde_json::json!({"since": s}));
        assert_eq!(
            at("2026-01-01T01:00:00+01:00").unwrap().since,
            at("2026-01-01t00:00:00z").unwrap().since
        );
        for bad in [
            "2026-01-01 00:00:00Z",
            "2026-01-01",
            "yesterday",
            "2026-01-01T00:00:00",
        ] {
            assert!(at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_patch_tells_null_from_absent_and_refuses_unknown_fields() {
        let p: WebhookEndpointPatchIn = serde_json::from_str(r#"{"description":null}"#).unwrap();
        assert_eq!(p.description, Some(None));
        let p: WebhookEndpointPatchIn = serde_json::from_str(r#"{"enabled":false}"#).unwrap();
        assert_eq!(p.description, None);
        assert!(serde_json::from_str::<WebhookEndpointPatchIn>(r#"{"secret":"x"}"#).is_err());
        assert!(
            serde_json::from_str::<WebhookEndpointIn>(r#"{"url":"https://x","id":"ep_1"}"#)
                .is_err()
        );
    }
}
