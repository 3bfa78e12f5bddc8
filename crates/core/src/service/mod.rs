//! The use cases: what the API (and the background workers) ask of the domain.
//!
//! [`Provisioner`] owns the ports. Each public method is one use case; the provisioning state
//! machine (intent first, each upstream step safe to repeat, leases) lives in [`steps`].

mod delivery;
mod deprovision;
mod events;
mod fence;
mod idempotency;
mod jobs;
mod key_age;
mod purge;
mod reconcile;
mod recovery;
mod reseal;
mod rotation;
mod scim;
mod scim_sync;
mod steps;
mod suspension;
mod tenants;
mod users;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::budget::Lane;
use crate::error::DomainError;
use crate::ids::{ExternalId, TenantId};
use crate::model::{Actor, AuditEvent, Tenant, UpstreamAccount};
use crate::ports::{Clock, Store, Upstream};
use crate::secret::{Pat, Sealer};

pub use delivery::{DeliveryConfig, DeliveryReport, WebhookDeliverer};
pub use idempotency::{
    IdempotencyStart, IdempotencyTicket, IdempotentOperation, IdempotentRequest, ReplayedResponse,
};
pub use jobs::{BatchUser, JobPassReport, JobView, MAX_BATCH};
pub use key_age::KeyAgeReport;
pub use purge::LEARN_CLEAN_CHECKS;
pub use reconcile::{
    DriftCounts, OrphanApp, OrphanKey, ReconcileReport, ScopeDrift, UnmanagedApp, UnmarkedKey,
    UserRef,
};
pub use recovery::RecoveryReport;
pub use reseal::{ResealFailure, ResealReport, SEALING_UPGRADE};
pub use scim::{
    IssuedScimToken, MAX_TOKEN_OVERLAP_SECONDS, SCIM_TOKEN_PREFIX, ScimApplyError, scim_token_hash,
};
pub use scim_sync::ScimSyncReport;
pub use suspension::Transition;
pub use tenants::{
    KEY_AGE_BOUNDS, KeyAgePolicy, NewTenant, TenantPatch, TenantView, default_app_defaults,
};
pub use users::{ProvisionRequest, Provisioned, ScopeRequest};
pub use webhooks::{EndpointPatch, IssuedEndpoint, MAX_ENDPOINTS, NewEndpoint, SECRET_OVERLAP};

/// Timing policy of the state machine.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// How long an operation holds a user's row, from its last renewal, before others may take
    /// over and resume it. The holder renews it (compare-and-swap) before every upstream call
    /// and every `lease_ttl / 3` while a call is in flight, so it bounds how long a killed
    /// process's users wait, not how long one step may take.
    pub lease_ttl: Duration,
    /// The largest difference tolerated between replicas' clocks: a lease counts as expired
    /// only once it is this much in the past, while its holder stops at its own (monotonic)
    /// view of the expiry.
    pub max_clock_skew: Duration,
    /// How long a request waits for another request's lease on the same user.
    pub lease_wait: Duration,
    /// How often a waiting request looks again.
    pub poll_interval: Duration,
    /// First delay before recovery retries a failed step; doubles per attempt.
    pub retry_base: Duration,
    /// Longest delay between recovery attempts (retries never stop).
    pub retry_max: Duration,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(10),
            max_clock_skew: Duration::from_secs(1),
            lease_wait: Duration::from_secs(30),
            poll_interval: Duration::from_millis(25),
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(300),
        }
    }
}

/// The service: tenants, profiles, users, audit, recovery.
#[derive(Clone)]
pub struct Provisioner {
    store: Arc<dyn Store>,
    upstream: Arc<dyn Upstream>,
    clock: Arc<dyn Clock>,
    sealer: Arc<dyn Sealer>,
    config: ServiceConfig,
    /// Prefix of every lease owner token of this instance (one per process).
    instance: String,
    /// Wakes this instance's SCIM sync worker after a SCIM write.
    scim_wake: Arc<tokio::sync::Notify>,
    /// Whether webhook endpoints may use `http://` URLs.
    webhook_allow_http: bool,
    /// Whether webhook endpoints may name loopback and private addresses.
    webhook_allow_private: bool,
}

impl std::fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provisioner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Provisioner {
    /// Wires the service to its ports.
    pub fn new(
        store: Arc<dyn Store>,
        upstream: Arc<dyn Upstream>,
        clock: Arc<dyn Clock>,
        sealer: Arc<dyn Sealer>,
        config: ServiceConfig,
    ) -> Self {
        let instance = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        Self {
            store,
            upstream,
            clock,
            sealer,
            config,
            instance,
            scim_wake: Arc::new(tokio::sync::Notify::new()),
            webhook_allow_http: false,
            webhook_allow_private: false,
        }
    }

    /// A lease owner token unique to one operation of this instance.
    pub(crate) fn new_owner(&self) -> String {
        format!("{}-{}", self.instance, uuid::Uuid::new_v4().simple())
    }

    /// Releases the leases this instance still holds (operations cut off by a shutdown), so a
    /// restart or another replica resumes them at once instead of after the lease expires.
    /// Call it only once this instance has stopped working.
    pub async fn release_own_leases(&self) -> Result<u64, DomainError> {
        Ok(self
            .store
            .release_leases(&format!("{}-", self.instance))
            .await?)
    }

    /// Whether the store is reachable and migrated.
    pub async fn ready(&self) -> Result<(), DomainError> {
        self.store.ready().await.map_err(DomainError::from)
    }

    fn audit(
        &self,
        actor: &Actor,
        tenant: Option<&TenantId>,
        action: &str,
        target: String,
        outcome: &str,
    ) -> AuditEvent {
        AuditEvent {
            id: uuid::Uuid::now_v7().to_string(),
            at: self.clock.now(),
            actor: actor.subject.clone(),
            tenant_id: tenant.cloned(),
            action: action.to_owned(),
            target,
            outcome: outcome.to_owned(),
            request_id: actor.request_id.clone(),
            events: Vec::new(),
        }
    }

    async fn tenant(&self, id: &TenantId) -> Result<Tenant, DomainError> {
        self.store
            .get_tenant(id)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("tenant {id} not found")))
    }

    fn account(&self, tenant: &Tenant, lane: Lane) -> Result<UpstreamAccount, DomainError> {
        let aad = pat_aad(&tenant.id, &tenant.base_url, &tenant.upstream_user_id);
        let pat = self.sealer.open(&tenant.pat_sealed, &aad).map_err(|_| {
            // Never falls back to the legacy binding: a PAT whose row was pointed at another
            // host or user must not be sent there.
            DomainError::Internal(format!(
                "tenant {}: the sealed PAT does not open for this base URL and upstream user \
                     (wrong master key, an altered row, or a value sealed before PATs were bound \
                     to them: run `provisioner reseal` once after upgrading)",
                tenant.id
            ))
        })?;
        let pat =
            Pat::parse(secrecy::ExposeSecret::expose_secret(&pat).to_owned()).map_err(|_| {
                DomainError::Internal(format!("tenant {}: stored PAT is malformed", tenant.id))
            })?;
        Ok(UpstreamAccount {
            base_url: tenant.base_url.clone(),
            user_id: tenant.upstream_user_id.clone(),
            pat,
            tenant_id: tenant.id.clone(),
            rate_limit: tenant.rate_limit,
            lane,
        })
    }
}

/// Which slot of a user's row a sealed key is stored in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeySlot {
    /// `key`: the key in use.
    Current,
    /// `retired_key`: the previous key, in its grace period.
    Retired,
}

impl KeySlot {
    fn as_str(self) -> &'static str {
        match self {
            KeySlot::Current => "current",
            KeySlot::Retired => "retired",
        }
    }
}

/// Associated data: a kind tag, then each field prefixed by its length in bytes, so no field
/// can be shifted into another (`a|bc` and `ab|c` encode differently).
pub(crate) fn bound(kind: &str, fields: &[&str]) -> String {
    let mut out = format!("{kind}/v2");
    for f in fields {
        out.push_str(&format!("|{}:{f}", f.len()));
    }
    out
}

/// Associated data binding a sealed PAT to its tenant and to where it is sent: the base URL
/// (as stored, without trailing slash) and the upstream user. A row pointed at another host
/// or user no longer opens.
pub(crate) fn pat_aad(
    tenant: &TenantId,
    base_url: &str,
    user_id: &crate::ids::UpstreamUserId,
) -> String {
    bound("pat", &[tenant.as_str(), base_url, user_id.as_str()])
}

/// Associated data binding a sealed key to its user's app and to the slot it is stored in, so
/// a retired key copied into the current slot (or the reverse) does not open.
pub(crate) fn key_aad(tenant: &TenantId, app_id: &crate::ids::AppId, slot: KeySlot) -> String {
    bound("key", &[tenant.as_str(), app_id.as_str(), slot.as_str()])
}

/// The associated data of a PAT before it was bound to its base URL and upstream user. Only
/// the re-seal opens values under it (to migrate them).
pub(crate) fn legacy_pat_aad(tenant: &TenantId) -> String {
    format!("pat:{tenant}")
}

/// The associated data of a key before it was bound to its slot. Only the re-seal opens
/// values under it (to migrate them).
pub(crate) fn legacy_key_aad(tenant: &TenantId, app_id: &crate::ids::AppId) -> String {
    format!("key:{tenant}:{app_id}")
}

/// Encodes a keyset cursor (opaque to clients).
pub(crate) fn encode_cursor(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last.as_bytes())
}

/// Decodes a keyset cursor; a malformed one is the caller's error.
pub(crate) fn decode_cursor(cursor: &str) -> Result<String, DomainError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| DomainError::Invalid("invalid cursor".into()))
}

/// Decodes a user-list cursor.
pub(crate) fn decode_user_cursor(cursor: &str) -> Result<ExternalId, DomainError> {
    ExternalId::parse(&decode_cursor(cursor)?)
        .map_err(|_| DomainError::Invalid("invalid cursor".into()))
}

/// Checks a page size.
pub(crate) fn check_limit(limit: u32) -> Result<u32, DomainError> {
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(DomainError::Invalid(
            "limit must be between 1 and 1000".into(),
        ))
    }
}

/// Checks free text (names): 1..=max characters, no control characters.
pub(crate) fn check_text(field: &str, s: &str, max: usize) -> Result<(), DomainError> {
    let n = s.chars().count();
    if n == 0 || n > max || s.chars().any(char::is_control) {
        return Err(DomainError::Invalid(format!(
            "{field} must be 1-{max} characters without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod auto_key_tests;
#[cfg(test)]
mod idempotency_tests;
#[cfg(test)]
mod interleavings_tests;
#[cfg(test)]
mod jobs_tests;
#[cfg(test)]
mod reconcile_tests;
#[cfg(test)]
mod reconcile_unmarked_tests;
#[cfg(test)]
mod reseal_tests;
#[cfg(test)]
mod scim_tests;
#[cfg(test)]
mod sealing_tests;
#[cfg(test)]
mod tenant_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhooks_tests;

/// When work that found the account's budget busy is tried again: soon, with jitter so
/// waiters do not return together.
pub(super) fn busy_retry() -> chrono::Duration {
    chrono::Duration::milliseconds(1000 + i64::from(fastrand::u16(..1000)))
}
