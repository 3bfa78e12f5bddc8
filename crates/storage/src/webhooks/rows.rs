//! Rows of the webhook tables and their conversions to core's records (the SQL is in
//! `mod.rs`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use provisioner_core::StoreError;
use provisioner_core::ids::TenantId;
use provisioner_core::webhooks::{
    Delivery, DeliveryAttempt, EndpointSecret, EventType, OutboxEvent, WebhookEndpoint,
};
use serde::{Deserialize, Serialize};

use crate::rows::{ms, time, to_json};

fn corrupt(row: &str, field: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("corrupt {row} row: {field}: {why}"))
}

/// One secret as stored in `webhook_endpoints.secrets`.
#[derive(Serialize, Deserialize)]
pub(super) struct SecretJson {
    /// The sealed secret, base64 (standard, padded).
    pub(super) sealed: String,
    pub(super) created_at: i64,
    pub(super) expires_at: Option<i64>,
}

/// A `webhook_endpoints` row.
#[derive(sqlx::FromRow)]
pub(super) struct EndpointRow {
    pub(super) id: String,
    pub(super) tenant_id: String,
    pub(super) url: String,
    pub(super) description: Option<String>,
    pub(super) event_types: String,
    pub(super) enabled: i64,
    pub(super) disabled_reason: Option<String>,
    pub(super) secrets: String,
    pub(super) failing_since: Option<i64>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) version: i64,
}

pub(super) const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, description, event_types, enabled, \
     disabled_reason, secrets, failing_since, created_at, updated_at, version";

impl EndpointRow {
    pub(super) fn from_endpoint(e: &WebhookEndpoint) -> Result<Self, StoreError> {
        let types: Vec<&str> = e.event_types.iter().map(|t| t.as_str()).collect();
        let secrets: Vec<SecretJson> = e
            .secrets
            .iter()
            .map(|s| SecretJson {
                sealed: BASE64.encode(&s.sealed),
                created_at: ms(s.created_at),
                expires_at: s.expires_at.map(ms),
            })
            .collect();
        Ok(EndpointRow {
            id: e.id.clone(),
            tenant_id: e.tenant_id.as_str().to_owned(),
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: to_json(&types)?,
            enabled: i64::from(e.enabled),
            disabled_reason: e.disabled_reason.clone(),
            secrets: to_json(&secrets)?,
            failing_since: e.failing_since.map(ms),
            created_at: ms(e.created_at),
            updated_at: ms(e.updated_at),
            version: e.version,
        })
    }
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = StoreError;

    fn try_from(r: EndpointRow) -> Result<Self, StoreError> {
        let row = "webhook_endpoints";
        let types: Vec<String> =
            serde_json::from_str(&r.event_types).map_err(|e| corrupt(row, "event_types", e))?;
        let event_types = types
            .iter()
            .map(|t| t.parse::<EventType>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| corrupt(row, "event_types", e))?;
        let secrets: Vec<SecretJson> =
            serde_json::from_str(&r.secrets).map_err(|e| corrupt(row, "secrets", e))?;
        let secrets = secrets
            .into_iter()
            .map(|s| {
                Ok(EndpointSecret {
                    sealed: BASE64
                        .decode(&s.sealed)
                        .map_err(|e| corrupt(row, "secrets", e))?,
                    created_at: time(row, "secrets", s.created_at)?,
                    expires_at: s.expires_at.map(|t| time(row, "secrets", t)).transpose()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(WebhookEndpoint {
            tenant_id: TenantId::parse(&r.tenant_id).map_err(|e| corrupt(row, "tenant_id", e))?,
            id: r.id,
            url: r.url,
            description: r.description,
            event_types,
            enabled: r.enabled != 0,
            disabled_reason: r.disabled_reason,
            secrets,
            failing_since: r
                .failing_since
                .map(|t| time(row, "failing_since", t))
                .transpose()?,
            created_at: time(row, "created_at", r.created_at)?,
            updated_at: time(row, "updated_at", r.updated_at)?,
            version: r.version,
        })
    }
}

/// A `webhook_events` row.
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    pub(super) id: String,
    pub(super) tenant_id: String,
    pub(super) event_type: String,
    pub(super) at: i64,
    pub(super) data: String,
    pub(super) body: String,
}

impl TryFrom<EventRow> for (OutboxEvent, String) {
    type Error = StoreError;

    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        let row = "webhook_events";
        let event = OutboxEvent {
            tenant_id: TenantId::parse(&r.tenant_id).map_err(|e| corrupt(row, "tenant_id", e))?,
            event_type: r
                .event_type
                .parse()
                .map_err(|e| corrupt(row, "event_type", e))?,
            at: time(row, "at", r.at)?,
            data: serde_json::from_str(&r.data).map_err(|e| corrupt(row, "data", e))?,
            id: r.id,
        };
        Ok((event, r.body))
    }
}

/// A `webhook_deliveries` row.
#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
    pub(super) event_id: String,
    pub(super) endpoint_id: String,
    pub(super) tenant_id: String,
    pub(super) event_type: String,
    pub(super) status: String,
    pub(super) attempts: i64,
    pub(super) next_attempt_at: Option<i64>,
    pub(super) last_status: Option<i64>,
    pub(super) last_error: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
}

pub(super) const DELIVERY_COLUMNS: &str = "event_id, endpoint_id, tenant_id, event_type, status, \
     attempts, next_attempt_at, last_status, last_error, created_at, updated_at";

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;

    fn try_from(r: DeliveryRow) -> Result<Self, StoreError> {
        let row = "webhook_deliveries";
        Ok(Delivery {
            tenant_id: TenantId::parse(&r.tenant_id).map_err(|e| corrupt(row, "tenant_id", e))?,
            event_type: r
                .event_type
                .parse()
                .map_err(|e| corrupt(row, "event_type", e))?,
            status: r.status.parse().map_err(|e| corrupt(row, "status", e))?,
            event_id: r.event_id,
            endpoint_id: r.endpoint_id,
            attempts: r.attempts,
            next_attempt_at: r
                .next_attempt_at
                .map(|t| time(row, "next_attempt_at", t))
                .transpose()?,
            last_status: r.last_status,
            last_error: r.last_error,
            created_at: time(row, "created_at", r.created_at)?,
            updated_at: time(row, "updated_at", r.updated_at)?,
        })
    }
}

/// A `webhook_attempts` row.
#[derive(sqlx::FromRow)]
pub(super) struct AttemptRow {
    pub(super) event_id: String,
    pub(super) endpoint_id: String,
    pub(super) attempt: i64,
    pub(super) at: i64,
    pub(super) status_code: Option<i64>,
    pub(super) error: Option<String>,
    pub(super) duration_ms: i64,
}

impl TryFrom<AttemptRow> for DeliveryAttempt {
    type Error = StoreError;

    fn try_from(r: AttemptRow) -> Result<Self, StoreError> {
        Ok(DeliveryAttempt {
            at: time("webhook_attempts", "at", r.at)?,
            event_id: r.event_id,
            endpoint_id: r.endpoint_id,
            attempt: r.attempt,
            status_code: r.status_code,
            error: r.error,
            duration_ms: r.duration_ms,
        })
    }
}
