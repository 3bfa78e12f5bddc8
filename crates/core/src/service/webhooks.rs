//! A tenant's webhook endpoints: create, list, update, delete, rotate the secret; the messages
//! (deliveries) and their attempts; resend one, recover what failed (crate::webhooks). The
//! delivery itself is `delivery.rs`.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use crate::error::{DomainError, StoreError};
use crate::ids::TenantId;
use crate::model::{Actor, Page, Timestamp};
use crate::webhooks::{
    Delivery, DeliveryAttempt, DeliveryStatus, EndpointSecret, EventType, WebhookEndpoint,
};

use super::{Provisioner, bound, check_limit, check_text, decode_cursor, encode_cursor};

/// How long a replaced endpoint secret keeps signing.
pub const SECRET_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

/// How long ended deliveries (and their attempts and events) are kept for listing, resending
/// and recovering.
pub const WEBHOOK_RETENTION: chrono::Duration = chrono::Duration::days(30);

/// Most endpoints per tenant.
pub const MAX_ENDPOINTS: usize = 20;

/// An endpoint to create.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    /// Where to POST (`https://`; `http://` only when the service allows it).
    pub url: String,
    /// For humans.
    pub description: Option<String>,
    /// Event types to deliver; empty: all.
    pub event_types: Vec<EventType>,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct EndpointPatch {
    /// New URL.
    pub url: Option<String>,
    /// New description (`Some(None)` clears it).
    pub description: Option<Option<String>>,
    /// New filter (empty: all).
    pub event_types: Option<Vec<EventType>>,
    /// Enable (clears the reason and the failure clock) or disable.
    pub enabled: Option<bool>,
}

/// An endpoint with a secret just made: shown once.
pub struct IssuedEndpoint {
    /// The endpoint as stored.
    pub endpoint: WebhookEndpoint,
    /// The new `whsec_...` secret.
    pub secret: SecretString,
}

impl std::fmt::Debug for IssuedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedEndpoint")
            .field("endpoint", &self.endpoint)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Associated data binding an endpoint secret to its tenant and endpoint.
pub(super) fn secret_aad(tenant: &TenantId, endpoint: &str) -> String {
    bound("whsec", &[tenant.as_str(), endpoint])
}

/// A new `whsec_` secret: base64 of 32 bytes from the operating system's random source.
fn new_secret() -> SecretString {
    // Two v4 uuids (244 bits from the operating system), hashed into 32 uniform bytes so no
    // fixed uuid bits show in the secret.
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(uuid::Uuid::new_v4().as_bytes());
    h.update(uuid::Uuid::new_v4().as_bytes());
    SecretString::from(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(h.finalize())
    ))
}

/// Whether `host` (a URL's host: a name, an IPv4 literal, or a bracketed IPv6 literal) names a
/// loopback, private, link-local or unspecified address, or `localhost`. The sender checks
/// resolved addresses too; this refuses the obvious ones when the endpoint is created.
fn private_host(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    if h == "localhost" || h.ends_with(".localhost") {
        return true;
    }
    let literal = h.trim_start_matches('[').trim_end_matches(']');
    match literal.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1]))
        }
        Ok(std::net::IpAddr::V6(v6)) => {
            let seg = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || (seg & 0xfe00) == 0xfc00
                || (seg & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| {
                    v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
                })
        }
        Err(_) => false,
    }
}

impl Provisioner {
    /// Deletes delivered and failed messages older than [`WEBHOOK_RETENTION`] (run with each
    /// recovery pass; a failure is logged and tried again next pass).
    pub(super) async fn purge_webhook_history(&self) {
        if let Err(e) = self
            .store
            .purge_webhook_history(self.clock.now() - WEBHOOK_RETENTION)
            .await
        {
            tracing::warn!(error.message = %e, "could not delete old webhook messages");
        }
    }

    /// Lets endpoints use `http://` URLs (tests and closed networks); off by default.
    pub fn allow_http_webhooks(mut self, allow: bool) -> Self {
        self.webhook_allow_http = allow;
        self
    }

    /// Lets endpoints name loopback and private addresses (tests and closed networks); off by
    /// default (the sender refuses them at delivery either way unless allowed there too).
    pub fn allow_private_webhook_targets(mut self, allow: bool) -> Self {
        self.webhook_allow_private = allow;
        self
    }

    fn check_url(&self, url: &str) -> Result<(), DomainError> {
        let lower = url.to_ascii_lowercase();
        let ok_scheme = lower.starts_with("https://")
            || (self.webhook_allow_http && lower.starts_with("http://"));
        if !ok_scheme {
            return Err(DomainError::Validation(if self.webhook_allow_http {
                "url must be an http:// or https:// URL".into()
            } else {
                "url must be an https:// URL".into()
            }));
        }
        let host_start = lower.find("://").map_or(0, |i| i + 3);
        if url.len() > 2048
            || url.chars().any(|c| c.is_control() || c.is_whitespace())
            || url.len() <= host_start
            || url[host_start..].starts_with('/')
        {
            return Err(DomainError::Validation(
                "url must be an absolute URL of at most 2048 characters, without spaces".into(),
            ));
        }
        let authority = url[host_start..]
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        if authority.contains('@') {
            return Err(DomainError::Validation(
                "url must not carry a user name or password (put a token in the path or query)"
                    .into(),
            ));
        }
        let host = if authority.starts_with('[') {
            authority.split_inclusive(']').next().unwrap_or(authority)
        } else {
            authority.split(':').next().unwrap_or(authority)
        };
        if host.is_empty() {
            return Err(DomainError::Validation("url must name a host".into()));
        }
        // A host whose last label is a number is an IPv4 address to URL parsers (`127.1`,
        // `2130706433`, `0x7f.1`): only the dotted-quad form is accepted, so the check below
        // sees what the sender will connect to.
        let last = host
            .trim_end_matches('.')
            .rsplit('.')
            .next()
            .unwrap_or_default();
        let numeric = !last.is_empty()
            && (last.chars().all(|c| c.is_ascii_digit())
                || last.to_ascii_lowercase().starts_with("0x"));
        if !host.starts_with('[') && numeric && host.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(DomainError::Validation(
                "url must name its host by name or as a dotted-quad IPv4 address".into(),
            ));
        }
        if !self.webhook_allow_private && private_host(host) {
            return Err(DomainError::Validation(
                "url must not name a loopback, private or link-local address".into(),
            ));
        }
        Ok(())
    }

    fn seal_secret(&self, tenant: &TenantId, endpoint: &str, secret: &SecretString) -> Vec<u8> {
        self.sealer
            .seal(secret.expose_secret(), &secret_aad(tenant, endpoint))
    }

    /// Creates an endpoint with a new secret (shown once).
    pub async fn create_webhook_endpoint(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        new: NewEndpoint,
    ) -> Result<IssuedEndpoint, DomainError> {
        self.tenant(tenant_id).await?;
        self.check_url(&new.url)?;
        if let Some(d) = &new.description {
            check_text("description", d, 500)?;
        }
        if self.store.list_endpoints(tenant_id).await?.len() >= MAX_ENDPOINTS {
            return Err(DomainError::Conflict(format!(
                "a tenant has at most {MAX_ENDPOINTS} webhook endpoints"
            )));
        }
        let now = self.clock.now();
        let id = format!("ep_{}", uuid::Uuid::now_v7().simple());
        let secret = new_secret();
        let mut event_types = new.event_types;
        event_types.sort_by_key(|t| t.as_str());
        event_types.dedup();
        let endpoint = WebhookEndpoint {
            secrets: vec![EndpointSecret {
                sealed: self.seal_secret(tenant_id, &id, &secret),
                created_at: now,
                expires_at: None,
            }],
            id,
            tenant_id: tenant_id.clone(),
            url: new.url,
            description: new.description,
            event_types,
            enabled: true,
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "webhook_endpoint.create",
            format!("webhook-endpoints/{}", endpoint.id),
            "success",
        );
        self.store.insert_endpoint(&endpoint, &audit).await?;
        Ok(IssuedEndpoint { endpoint, secret })
    }

    /// A tenant's endpoints.
    pub async fn list_webhook_endpoints(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<WebhookEndpoint>, DomainError> {
        self.tenant(tenant_id).await?;
        Ok(self.store.list_endpoints(tenant_id).await?)
    }

    /// One endpoint.
    pub async fn get_webhook_endpoint(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<WebhookEndpoint, DomainError> {
        if id.len() > 100 || id.chars().any(char::is_control) {
            return Err(DomainError::NotFound(format!(
                "webhook endpoint {id:?} not found"
            )));
        }
        self.store
            .get_endpoint(tenant_id, id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("webhook endpoint {id} not found")))
    }

    /// Changes an endpoint (on the version read; a concurrent change is retried).
    pub async fn update_webhook_endpoint(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        id: &str,
        patch: EndpointPatch,
    ) -> Result<WebhookEndpoint, DomainError> {
        if let Some(u) = &patch.url {
            self.check_url(u)?;
        }
        if let Some(Some(d)) = &patch.description {
            check_text("description", d, 500)?;
        }
        self.modify_endpoint(actor, tenant_id, id, "webhook_endpoint.update", |ep, _| {
            if let Some(u) = &patch.url {
                ep.url = u.clone();
            }
            if let Some(d) = &patch.description {
                ep.description = d.clone();
            }
            if let Some(t) = &patch.event_types {
                let mut t = t.clone();
                t.sort_by_key(|x| x.as_str());
                t.dedup();
                ep.event_types = t;
            }
            match patch.enabled {
                Some(true) => {
                    ep.enabled = true;
                    ep.disabled_reason = None;
                    ep.failing_since = None;
                }
                Some(false) => {
                    ep.enabled = false;
                    ep.disabled_reason = Some("disabled by an operator".into());
                }
                None => {}
            }
        })
        .await
    }

    /// Replaces an endpoint's secret; the previous one keeps signing for 24 h (both sign).
    pub async fn rotate_webhook_secret(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<IssuedEndpoint, DomainError> {
        let secret = new_secret();
        let endpoint = self
            .modify_endpoint(
                actor,
                tenant_id,
                id,
                "webhook_endpoint.rotate_secret",
                |ep, now| {
                    for s in &mut ep.secrets {
                        let until = now + SECRET_OVERLAP;
                        s.expires_at = Some(s.expires_at.map_or(until, |e| e.min(until)));
                    }
                    // Expired ones are gone; at most two earlier ones overlap the new one.
                    ep.secrets.retain(|s| s.expires_at.is_none_or(|e| e > now));
                    let keep = ep.secrets.len().saturating_sub(2);
                    ep.secrets.drain(..keep);
                    ep.secrets.push(EndpointSecret {
                        sealed: self.seal_secret(tenant_id, id, &secret),
                        created_at: now,
                        expires_at: None,
                    });
                },
            )
            .await?;
        Ok(IssuedEndpoint { endpoint, secret })
    }

    async fn modify_endpoint(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        id: &str,
        action: &str,
        change: impl Fn(&mut WebhookEndpoint, Timestamp),
    ) -> Result<WebhookEndpoint, DomainError> {
        for _ in 0..8 {
            let current = self.get_webhook_endpoint(tenant_id, id).await?;
            let mut next = current.clone();
            let now = self.clock.now();
            change(&mut next, now);
            next.updated_at = now;
            let audit = self.audit(
                actor,
                Some(tenant_id),
                action,
                format!("webhook-endpoints/{id}"),
                "success",
            );
            match self
                .store
                .update_endpoint(&next, current.version, &audit)
                .await
            {
                Ok(()) => {
                    next.version = current.version + 1;
                    return Ok(next);
                }
                Err(StoreError::Stale) => continue,
                Err(StoreError::NotFound) => {
                    return Err(DomainError::NotFound(format!(
                        "webhook endpoint {id} not found"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::UpstreamUnavailable(
            "the endpoint kept changing concurrently; retry".into(),
        ))
    }

    /// Deletes an endpoint with its deliveries.
    pub async fn delete_webhook_endpoint(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<(), DomainError> {
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "webhook_endpoint.delete",
            format!("webhook-endpoints/{id}"),
            "success",
        );
        if self.store.delete_endpoint(tenant_id, id, &audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound(format!(
                "webhook endpoint {id} not found"
            )))
        }
    }

    /// A page of a tenant's messages (one per event and endpoint), newest first.
    pub async fn list_webhook_messages(
        &self,
        tenant_id: &TenantId,
        endpoint: Option<&str>,
        status: Option<DeliveryStatus>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Delivery>, DomainError> {
        self.tenant(tenant_id).await?;
        let limit = check_limit(limit)?;
        let after = match cursor {
            Some(c) => {
                let raw = decode_cursor(c)?;
                let (ev, ep) = raw
                    .split_once(' ')
                    .ok_or_else(|| DomainError::Invalid("invalid cursor".into()))?;
                Some((ev.to_owned(), ep.to_owned()))
            }
            None => None,
        };
        let mut items = self
            .store
            .list_deliveries(
                tenant_id,
                endpoint,
                status,
                after.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                limit + 1,
            )
            .await?;
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items
                .last()
                .map(|d| encode_cursor(&format!("{} {}", d.event_id, d.endpoint_id)))
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// The attempts of one message (of one endpoint, if given).
    pub async fn list_webhook_attempts(
        &self,
        tenant_id: &TenantId,
        event_id: &str,
        endpoint: Option<&str>,
    ) -> Result<Vec<DeliveryAttempt>, DomainError> {
        self.tenant(tenant_id).await?;
        Ok(self
            .store
            .list_attempts(tenant_id, event_id, endpoint)
            .await?)
    }

    /// Sends one message to one endpoint again (same `webhook-id`), whatever its state.
    pub async fn resend_webhook_message(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        endpoint: &str,
        event_id: &str,
    ) -> Result<(), DomainError> {
        self.get_webhook_endpoint(tenant_id, endpoint).await?;
        let unknown = || {
            DomainError::NotFound(format!(
                "message {event_id} was never sent to endpoint {endpoint}"
            ))
        };
        if event_id.len() > 100 || event_id.chars().any(char::is_control) {
            return Err(unknown());
        }
        match self.store.get_event(event_id).await? {
            Some((e, _)) if &e.tenant_id == tenant_id => {}
            _ => return Err(unknown()),
        }
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "webhook_message.resend",
            format!("webhook-endpoints/{endpoint}/messages/{event_id}"),
            "success",
        );
        let n = self
            .store
            .requeue_deliveries(
                tenant_id,
                endpoint,
                Some(event_id),
                None,
                self.clock.now(),
                &audit,
            )
            .await?;
        if n == 0 {
            return Err(DomainError::NotFound(format!(
                "message {event_id} was never sent to endpoint {endpoint}"
            )));
        }
        Ok(())
    }

    /// Sends again every message to an endpoint that failed, of events since `since`; how many.
    pub async fn recover_webhook_endpoint(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        endpoint: &str,
        since: Timestamp,
    ) -> Result<u64, DomainError> {
        self.get_webhook_endpoint(tenant_id, endpoint).await?;
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "webhook_endpoint.recover",
            format!("webhook-endpoints/{endpoint}"),
            "success",
        );
        Ok(self
            .store
            .requeue_deliveries(
                tenant_id,
                endpoint,
                None,
                Some(since),
                self.clock.now(),
                &audit,
            )
            .await?)
    }
}
