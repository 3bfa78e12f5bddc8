//! SCIM: a tenant's settings and tokens, and the SCIM user resources an identity provider
//! manages (crate::scim). A SCIM write stores the resource (its desired state) and returns at
//! once; [`Provisioner::run_scim_worker`] then brings each unsynced resource onto its
//! provisioning record through the ordinary use cases (`sync.rs`).

use std::time::Duration;

use base64::Engine as _;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::error::{DomainError, StoreError};
use crate::ids::{ExternalId, TenantId};
use crate::model::Actor;
use crate::scim::{ExternalIdSource, ScimAttributes, ScimConfig, ScimQuery, ScimToken, ScimUser};

use super::{Provisioner, check_text};

/// Longest overlap of a replaced SCIM token (30 days).
pub const MAX_TOKEN_OVERLAP_SECONDS: u32 = 2_592_000;

/// Prefix of every SCIM token secret (so a leaked one is recognisable, e.g. by secret scanners).
pub const SCIM_TOKEN_PREFIX: &str = "scim_";

/// Longest wait before a failed SCIM sync is tried again (a write waits for it too).
pub(super) const MAX_SYNC_BACKOFF: chrono::Duration = chrono::Duration::seconds(60);

/// Tries of a SCIM write that keeps meeting concurrent writes of the same resource.
const MAX_WRITE_TRIES: usize = 8;

/// A SCIM token just issued: its secret is shown once and stored only as a hash.
pub struct IssuedScimToken {
    /// The stored record.
    pub token: ScimToken,
    /// The bearer secret.
    pub secret: SecretString,
}

impl std::fmt::Debug for IssuedScimToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedScimToken")
            .field("token", &self.token)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

/// Why a SCIM modification failed: the caller's change did not apply, or the service refused.
#[derive(Debug)]
pub enum ScimApplyError<E> {
    /// The change itself (e.g. a PATCH operation) failed.
    Apply(E),
    /// The service refused or failed.
    Domain(DomainError),
}

impl<E> From<DomainError> for ScimApplyError<E> {
    fn from(e: DomainError) -> Self {
        ScimApplyError::Domain(e)
    }
}

/// SHA-256 of a token secret, hex (what is stored and looked up).
pub fn scim_token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_token_secret() -> String {
    // Two v4 uuids: 244 bits from the operating system's random source.
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!(
        "{SCIM_TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

impl Provisioner {
    /// A tenant's SCIM settings (the defaults when never set).
    pub async fn scim_config(&self, tenant_id: &TenantId) -> Result<ScimConfig, DomainError> {
        self.tenant(tenant_id).await?;
        Ok(self
            .store
            .get_scim_config(tenant_id)
            .await?
            .unwrap_or_else(|| ScimConfig::default_for(tenant_id)))
    }

    /// Replaces a tenant's SCIM settings. The scope profile must exist; the profile
    /// attribute is a SCIM attribute name (1-200 characters).
    pub async fn put_scim_config(
        &self,
        actor: &Actor,
        mut config: ScimConfig,
    ) -> Result<ScimConfig, DomainError> {
        let tenant = self.tenant(&config.tenant_id).await?;
        if let Some(p) = &config.scope_profile
            && self.store.get_profile(&tenant.id, p).await?.is_none()
        {
            return Err(DomainError::Validation(format!(
                "unknown scope profile {:?}",
                p.as_str()
            )));
        }
        if let Some(a) = &config.profile_attribute {
            check_text("profile_attribute", a, 200)?;
            if a.chars().any(char::is_whitespace) {
                return Err(DomainError::Invalid(
                    "profile_attribute must be a SCIM attribute name without spaces".into(),
                ));
            }
        }
        config.updated_at = Some(self.clock.now());
        let audit = self.audit(
            actor,
            Some(&tenant.id),
            "scim.config.update",
            format!("tenants/{}/scim", tenant.id),
            "success",
        );
        self.store.put_scim_config(&config, &audit).await?;
        Ok(config)
    }

    /// Issues a SCIM token for the tenant; every earlier token stops working after
    /// `overlap_seconds` (at the latest), so an identity provider can be switched over.
    pub async fn issue_scim_token(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        overlap_seconds: u32,
    ) -> Result<IssuedScimToken, DomainError> {
        if overlap_seconds > MAX_TOKEN_OVERLAP_SECONDS {
            return Err(DomainError::Validation(format!(
                "overlap_seconds must be 0-{MAX_TOKEN_OVERLAP_SECONDS}"
            )));
        }
        self.tenant(tenant_id).await?;
        let now = self.clock.now();
        let secret = new_token_secret();
        let token = ScimToken {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant_id.clone(),
            hash: scim_token_hash(&secret),
            created_at: now,
            expires_at: None,
            created_by: actor.subject.clone(),
        };
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "scim.token.issue",
            format!("tenants/{tenant_id}/scim/tokens/{}", token.id),
            "success",
        );
        self.store
            .insert_scim_token(
                &token,
                now + chrono::Duration::seconds(i64::from(overlap_seconds)),
                &audit,
            )
            .await?;
        Ok(IssuedScimToken {
            token,
            secret: SecretString::from(secret),
        })
    }

    /// A tenant's SCIM tokens (without secrets), oldest first.
    pub async fn list_scim_tokens(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<ScimToken>, DomainError> {
        self.tenant(tenant_id).await?;
        Ok(self.store.list_scim_tokens(tenant_id).await?)
    }

    /// Revokes one SCIM token at once.
    pub async fn revoke_scim_token(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        token_id: &str,
    ) -> Result<(), DomainError> {
        self.tenant(tenant_id).await?;
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "scim.token.revoke",
            format!("tenants/{tenant_id}/scim/tokens/{token_id}"),
            "success",
        );
        if self
            .store
            .delete_scim_token(tenant_id, token_id, &audit)
            .await?
        {
            Ok(())
        } else {
            Err(DomainError::NotFound(format!(
                "SCIM token {token_id} not found"
            )))
        }
    }

    /// The tenant a SCIM bearer secret acts for; `None` when it is unknown or expired.
    pub async fn authenticate_scim(&self, secret: &str) -> Result<Option<TenantId>, DomainError> {
        if !secret.starts_with(SCIM_TOKEN_PREFIX) || secret.len() > 200 {
            return Ok(None);
        }
        let now = self.clock.now();
        Ok(self
            .store
            .find_scim_token(&scim_token_hash(secret))
            .await?
            .filter(|t| t.expires_at.is_none_or(|e| e > now))
            .map(|t| t.tenant_id))
    }

    /// Records a SCIM user and its desired state (one transaction, with the audit event) and
    /// wakes the sync worker; the app and key are created after the answer. `profile_hint`:
    /// the value of the tenant's `profile_attribute`, if the body had one.
    pub async fn scim_create_user(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        attrs: ScimAttributes,
        profile_hint: Option<String>,
    ) -> Result<ScimUser, DomainError> {
        let config = self.scim_config(tenant_id).await?;
        check_attrs(&attrs)?;
        let source = match config.external_id_from {
            ExternalIdSource::UserName => Some(attrs.user_name.as_str()),
            ExternalIdSource::ExternalId => attrs.external_id.as_deref(),
        };
        let Some(source) = source else {
            return Err(DomainError::Invalid(
                "externalId is required: this tenant takes provisioning ids from externalId".into(),
            ));
        };
        let external_id = ExternalId::parse(source).map_err(|e| {
            DomainError::Invalid(format!("the provisioning id taken from {source:?}: {e}"))
        })?;
        let mut profile = config.scope_profile.clone();
        if let Some(hint) = profile_hint
            && let Ok(name) = crate::ids::ProfileName::parse(&hint.trim().to_lowercase())
            && self.store.get_profile(tenant_id, &name).await?.is_some()
        {
            profile = Some(name);
        }
        let now = self.clock.now();
        let user = ScimUser {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant_id.clone(),
            external_id,
            attrs,
            profile,
            deleted: false,
            version: 1,
            synced_version: 0,
            sync_error: None,
            sync_attempts: 0,
            next_sync_at: None,
            created_at: now,
            updated_at: now,
        };
        let audit = self.scim_audit(actor, &user, "scim.user.create");
        match self.store.insert_scim_user(&user, &audit).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => {
                return Err(DomainError::Conflict(
                    "a SCIM user with this userName (or provisioning id) exists already".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.wake_scim_worker();
        Ok(user)
    }

    /// One SCIM user (deleted ones are not found).
    pub async fn scim_get_user(
        &self,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<ScimUser, DomainError> {
        // Ids are UUIDs: anything else (a control character, which PostgreSQL cannot even
        // compare) is not found without asking the store.
        if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) {
            return Err(DomainError::NotFound(format!("SCIM user {id:?} not found")));
        }
        self.store
            .get_scim_user(tenant_id, id)
            .await?
            .filter(|u| !u.deleted)
            .ok_or_else(|| DomainError::NotFound(format!("SCIM user {id} not found")))
    }

    /// A page of the tenant's SCIM users matching `query`: `count` from the 1-based
    /// `start_index`, and the number matching in all.
    pub async fn scim_list_users(
        &self,
        tenant_id: &TenantId,
        query: &ScimQuery,
        start_index: u64,
        count: u32,
    ) -> Result<(Vec<ScimUser>, u64), DomainError> {
        Ok(self
            .store
            .list_scim_users(tenant_id, query, start_index.max(1) - 1, count)
            .await?)
    }

    /// Changes a SCIM user's attributes with `apply` (a PUT's replacement or a PATCH), on the
    /// version read; a concurrent write makes it read and apply again. An unchanged result
    /// writes nothing.
    pub async fn scim_modify_user<E: Send>(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        id: &str,
        action: &'static str,
        apply: impl Fn(&ScimUser) -> Result<ScimAttributes, E> + Send + Sync,
    ) -> Result<ScimUser, ScimApplyError<E>> {
        for _ in 0..MAX_WRITE_TRIES {
            let current = self.scim_get_user(tenant_id, id).await?;
            let attrs = apply(&current).map_err(ScimApplyError::Apply)?;
            check_attrs(&attrs)?;
            // Unchanged: nothing to write, unless the last sync was refused (the identity
            // provider sending the same state again is how it asks for another try).
            if attrs == current.attrs && current.sync_error.is_none() {
                return Ok(current);
            }
            let mut next = current.clone();
            next.attrs = attrs;
            next.updated_at = self.clock.now();
            next.version = current.version + 1;
            next.sync_attempts = 0;
            next.next_sync_at = self.keep_claim(&current);
            if let Some(u) = self
                .write_scim(actor, &next, current.version, action)
                .await?
            {
                return Ok(u);
            }
        }
        Err(ScimApplyError::Domain(DomainError::UpstreamUnavailable(
            "the SCIM user kept changing concurrently; retry".into(),
        )))
    }

    /// Deletes a SCIM user: hidden at once, its provisioning deprovisioned by the sync worker.
    pub async fn scim_delete_user(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        id: &str,
    ) -> Result<(), DomainError> {
        for _ in 0..MAX_WRITE_TRIES {
            let current = self.scim_get_user(tenant_id, id).await?;
            let mut next = current.clone();
            next.deleted = true;
            next.updated_at = self.clock.now();
            next.version = current.version + 1;
            next.sync_attempts = 0;
            next.next_sync_at = self.keep_claim(&current);
            if self
                .write_scim(actor, &next, current.version, "scim.user.delete")
                .await?
                .is_some()
            {
                return Ok(());
            }
        }
        Err(DomainError::UpstreamUnavailable(
            "the SCIM user kept changing concurrently; retry".into(),
        ))
    }

    /// Writes `next` on `read_version`; `None` when the row changed meanwhile.
    async fn write_scim(
        &self,
        actor: &Actor,
        next: &ScimUser,
        read_version: i64,
        action: &str,
    ) -> Result<Option<ScimUser>, DomainError> {
        let audit = self.scim_audit(actor, next, action);
        match self
            .store
            .update_scim_user(next, read_version, &audit)
            .await
        {
            Ok(()) => {
                self.wake_scim_worker();
                Ok(Some(next.clone()))
            }
            Err(StoreError::Stale) => Ok(None),
            Err(StoreError::NotFound) => Err(DomainError::NotFound(format!(
                "SCIM user {} not found",
                next.id
            ))),
            Err(StoreError::AlreadyExists) => Err(DomainError::Conflict(
                "another SCIM user has this userName".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    fn scim_audit(&self, actor: &Actor, user: &ScimUser, action: &str) -> crate::model::AuditEvent {
        self.audit(
            actor,
            Some(&user.tenant_id),
            action,
            format!("scim/users/{} (users/{})", user.id, user.external_id),
            "success",
        )
    }

    /// The `next_sync_at` a write keeps: a sync of an earlier version may be running under a
    /// claim (or backing off, at most [`MAX_SYNC_BACKOFF`]); a write never clears it, so two
    /// workers never sync one SCIM user at once (an older sync finishing last would undo the
    /// newer one). The newer version is synced once that claim ends.
    fn keep_claim(&self, current: &ScimUser) -> Option<crate::model::Timestamp> {
        current.next_sync_at.filter(|t| *t > self.clock.now())
    }

    /// Tells this instance's SCIM worker there is work (other replicas poll).
    pub(super) fn wake_scim_worker(&self) {
        self.scim_wake.notify_one();
    }

    /// How long a claimed sync may run before another worker may take it again.
    pub(super) fn scim_claim_ttl(&self) -> chrono::Duration {
        // Each use case a sync runs gives up after `lease_wait` of waiting for another
        // operation on the user: twice that, and a minute more for the upstream calls.
        chrono::Duration::from_std(self.config.lease_wait * 2 + Duration::from_secs(60))
            .unwrap_or(chrono::Duration::seconds(120))
    }
}

/// What every stored SCIM resource satisfies.
fn check_attrs(a: &ScimAttributes) -> Result<(), DomainError> {
    let text = |field: &str, v: &str, max: usize| check_text(field, v, max);
    text("userName", &a.user_name, 256)?;
    for (field, v) in [
        ("externalId", &a.external_id),
        ("name.givenName", &a.given_name),
        ("name.familyName", &a.family_name),
        ("name.formatted", &a.formatted_name),
        ("displayName", &a.display_name),
    ] {
        if let Some(v) = v {
            text(field, v, 256)?;
        }
    }
    if a.emails.len() > 20 {
        return Err(DomainError::Invalid("at most 20 emails".into()));
    }
    for e in &a.emails {
        text("emails.value", &e.value, 256)?;
        if let Some(k) = &e.kind {
            text("emails.type", k, 64)?;
        }
    }
    Ok(())
}
