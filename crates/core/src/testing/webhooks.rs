//! [`WebhookStore`] for [`MemStore`], and its outbox: the SQL stores' rules (an audit event's
//! events and their deliveries in the same "transaction", claims, requeues).

use async_trait::async_trait;

use super::MemStore;
use super::lock;
use super::store::MemState;
use crate::error::StoreError;
use crate::ids::TenantId;
use crate::model::{AuditEvent, Timestamp};
use crate::ports::WebhookStore;
use crate::webhooks::{
    AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus, OutboxEvent, WebhookEndpoint,
};

/// Writes an event and one pending delivery per enabled endpoint of its tenant that wants it.
pub(super) fn write_event(st: &mut MemState, e: &OutboxEvent) {
    let targets: Vec<String> = st
        .endpoints
        .values()
        .filter(|ep| ep.tenant_id == e.tenant_id && ep.enabled && ep.wants(e.event_type))
        .map(|ep| ep.id.clone())
        .collect();
    // An event no endpoint wants is not kept.
    if targets.is_empty() {
        return;
    }
    st.events.insert(e.id.clone(), (e.clone(), e.body()));
    for ep in targets {
        st.deliveries.insert(
            (e.id.clone(), ep.clone()),
            Delivery {
                event_id: e.id.clone(),
                endpoint_id: ep,
                tenant_id: e.tenant_id.clone(),
                event_type: e.event_type,
                status: DeliveryStatus::Pending,
                attempts: 0,
                next_attempt_at: None,
                last_status: None,
                last_error: None,
                created_at: e.at,
                updated_at: e.at,
            },
        );
    }
}

#[async_trait]
impl WebhookStore for MemStore {
    async fn insert_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if !st.tenants.contains_key(&endpoint.tenant_id) {
            return Err(StoreError::NotFound);
        }
        if st.endpoints.contains_key(&endpoint.id) {
            return Err(StoreError::AlreadyExists);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.endpoints.insert(endpoint.id.clone(), endpoint.clone());
        Ok(())
    }
    async fn get_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<WebhookEndpoint>, StoreError> {
        Ok(lock(&self.state)
            .endpoints
            .get(id)
            .filter(|e| &e.tenant_id == tenant)
            .cloned())
    }
    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let mut out: Vec<WebhookEndpoint> = lock(&self.state)
            .endpoints
            .values()
            .filter(|e| &e.tenant_id == tenant)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }
    async fn update_endpoint(
        &self,
        endpoint: &WebhookEndpoint,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let Some(stored) = st
            .endpoints
            .get(&endpoint.id)
            .filter(|e| e.tenant_id == endpoint.tenant_id)
        else {
            return Err(StoreError::NotFound);
        };
        if stored.version != read_version {
            return Err(StoreError::Stale);
        }
        let mut next = endpoint.clone();
        next.created_at = stored.created_at;
        next.version = read_version + 1;
        self.write_audit(&mut st, Some(audit))?;
        st.endpoints.insert(next.id.clone(), next);
        Ok(())
    }
    async fn delete_endpoint(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        if !st.endpoints.get(id).is_some_and(|e| &e.tenant_id == tenant) {
            return Ok(false);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.endpoints.remove(id);
        st.deliveries.retain(|(_, ep), _| ep != id);
        st.attempts.retain(|a| a.endpoint_id != id);
        Ok(true)
    }
    async fn get_event(&self, id: &str) -> Result<Option<(OutboxEvent, String)>, StoreError> {
        Ok(lock(&self.state).events.get(id).cloned())
    }
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        claim_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut st = lock(&self.state);
        let mut due: Vec<(Timestamp, (String, String))> = st
            .deliveries
            .values()
            .filter(|d| {
                d.status == DeliveryStatus::Pending
                    && d.next_attempt_at.is_none_or(|t| t <= now)
                    && st.endpoints.get(&d.endpoint_id).is_some_and(|e| e.enabled)
            })
            .map(|d| {
                (
                    d.next_attempt_at.unwrap_or(d.created_at),
                    (d.event_id.clone(), d.endpoint_id.clone()),
                )
            })
            .collect();
        due.sort();
        let mut out = Vec::new();
        for (_, key) in due.into_iter().take(limit as usize) {
            if let Some(d) = st.deliveries.get_mut(&key) {
                d.next_attempt_at = Some(claim_until);
                out.push(d.clone());
            }
        }
        Ok(out)
    }
    async fn record_attempt(
        &self,
        tenant: &TenantId,
        outcome: &AttemptOutcome,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let a = &outcome.attempt;
        let key = (a.event_id.clone(), a.endpoint_id.clone());
        let Some(d) = st
            .deliveries
            .get_mut(&key)
            .filter(|d| &d.tenant_id == tenant)
        else {
            return Err(StoreError::NotFound);
        };
        // A late attempt (a lapsed claim, a resend racing a send) never undoes a delivery.
        if d.status == DeliveryStatus::Delivered && outcome.status != DeliveryStatus::Delivered {
            return Ok(());
        }
        d.status = outcome.status;
        d.next_attempt_at = outcome.next_attempt_at;
        d.last_status = a.status_code;
        d.last_error = a.error.clone();
        d.attempts += 1;
        d.updated_at = a.at;
        st.attempts.push(a.clone());
        let mut disabled = false;
        if let Some(ep) = st.endpoints.get_mut(&a.endpoint_id) {
            ep.failing_since = match outcome.failing_since {
                None => None,
                Some(at) => Some(ep.failing_since.map_or(at, |f| f.min(at))),
            };
            if let Some(dis) = &outcome.disable
                && ep.enabled
                && ep.failing_since.is_some_and(|f| f <= dis.if_failing_since)
            {
                ep.enabled = false;
                ep.disabled_reason = Some(dis.reason.clone());
                ep.updated_at = a.at;
                ep.version += 1;
                disabled = true;
            }
        }
        if disabled && let Some(dis) = &outcome.disable {
            write_event(&mut st, &dis.event);
        }
        Ok(())
    }
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        endpoint: Option<&str>,
        status: Option<DeliveryStatus>,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        let st = lock(&self.state);
        let mut all: Vec<&Delivery> = st
            .deliveries
            .values()
            .filter(|d| {
                &d.tenant_id == tenant
                    && endpoint.is_none_or(|e| d.endpoint_id == e)
                    && status.is_none_or(|s| d.status == s)
            })
            .collect();
        // Newest event first (ids are time-ordered), then endpoint.
        all.sort_by(|a, b| {
            (b.event_id.as_str(), a.endpoint_id.as_str())
                .cmp(&(a.event_id.as_str(), b.endpoint_id.as_str()))
        });
        let start = match after {
            Some((ev, ep)) => all
                .iter()
                .position(|d| d.event_id == ev && d.endpoint_id == ep)
                .map_or(all.len(), |i| i + 1),
            None => 0,
        };
        Ok(all
            .into_iter()
            .skip(start)
            .take(limit as usize)
            .cloned()
            .collect())
    }
    async fn list_attempts(
        &self,
        tenant: &TenantId,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        let st = lock(&self.state);
        let ours = st
            .events
            .get(event_id)
            .is_some_and(|(e, _)| &e.tenant_id == tenant);
        if !ours {
            return Ok(Vec::new());
        }
        Ok(st
            .attempts
            .iter()
            .filter(|a| a.event_id == event_id && endpoint.is_none_or(|e| a.endpoint_id == e))
            .cloned()
            .collect())
    }
    async fn purge_webhook_history(&self, before: Timestamp) -> Result<u64, StoreError> {
        let mut st = lock(&self.state);
        let gone: Vec<(String, String)> = st
            .deliveries
            .iter()
            .filter(|(_, d)| d.status != DeliveryStatus::Pending && d.updated_at < before)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            st.deliveries.remove(k);
            st.attempts
                .retain(|a| !(a.event_id == k.0 && a.endpoint_id == k.1));
        }
        let live: std::collections::BTreeSet<String> =
            st.deliveries.keys().map(|(e, _)| e.clone()).collect();
        st.events.retain(|id, _| live.contains(id));
        Ok(gone.len() as u64)
    }
    async fn requeue_deliveries(
        &self,
        tenant: &TenantId,
        endpoint: &str,
        event_id: Option<&str>,
        failed_since: Option<Timestamp>,
        now: Timestamp,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError> {
        let mut st = lock(&self.state);
        self.write_audit(&mut st, Some(audit))?;
        let mut n = 0;
        for d in st.deliveries.values_mut() {
            if &d.tenant_id != tenant || d.endpoint_id != endpoint {
                continue;
            }
            let hit = match event_id {
                Some(e) => d.event_id == e,
                None => {
                    d.status == DeliveryStatus::Failed
                        && failed_since.is_none_or(|s| d.created_at >= s)
                }
            };
            if hit {
                d.status = DeliveryStatus::Pending;
                d.next_attempt_at = Some(now);
                d.updated_at = now;
                n += 1;
            }
        }
        Ok(n)
    }
}
