//! Tenants, their upstream credential and their scope profiles.

use std::collections::BTreeMap;

use crate::app_id::validate_prefix;
use crate::error::{DomainError, UpstreamError};
use crate::ids::{ProfileName, TenantId, UpstreamUserId};
use crate::model::{
    Actor, AppDefaults, AutoKeyCheck, Page, ScopeProfile, Tenant, TenantStatus, UpstreamAccount,
    UpstreamRateLimit,
};
use crate::ports::TenantDeletion;
use crate::scope::ScopeSet;
use crate::secret::Pat;

use super::{Provisioner, check_limit, check_text, decode_cursor, encode_cursor, pat_aad};

/// Scopes the provisioning PAT needs (docs/upstream.md, "Scopes"), unless it holds `All`.
const PAT_NEEDS: &[&str] = &[
    "Apps:Add",
    "Apps:Get",
    "Apps:Delete",
    "Keys:Add",
    "Keys:Get",
    "Keys:Delete",
];

/// A scope profile's key-age policy (docs/api.md, "Key-age policies").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyAgePolicy {
    /// Keys older than this (seconds) are rotated by the service; `None`: never.
    pub max_key_age_secs: Option<i64>,
    /// How long a key replaced by the policy stays valid (seconds).
    pub rotation_grace_secs: i64,
}

/// Shortest `max_key_age` (an hour) and longest (ten years), in seconds.
pub const KEY_AGE_BOUNDS: (i64, i64) = (3_600, 315_360_000);

impl KeyAgePolicy {
    fn check(&self) -> Result<(), DomainError> {
        if let Some(age) = self.max_key_age_secs
            && !(KEY_AGE_BOUNDS.0..=KEY_AGE_BOUNDS.1).contains(&age)
        {
            return Err(DomainError::Validation(format!(
                "max_key_age_seconds must be {}-{}",
                KEY_AGE_BOUNDS.0, KEY_AGE_BOUNDS.1
            )));
        }
        let max_grace = i64::from(super::users::MAX_GRACE_SECONDS);
        if !(0..=max_grace).contains(&self.rotation_grace_secs) {
            return Err(DomainError::Validation(format!(
                "rotation_grace_seconds must be 0-{max_grace}"
            )));
        }
        if self
            .max_key_age_secs
            .is_some_and(|age| self.rotation_grace_secs >= age)
        {
            return Err(DomainError::Validation(
                "rotation_grace_seconds must be shorter than max_key_age_seconds".into(),
            ));
        }
        Ok(())
    }
}

/// A tenant to create.
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// Its id.
    pub id: TenantId,
    /// Human name.
    pub display_name: String,
    /// Clarifai base URL.
    pub base_url: String,
    /// Clarifai user owning the apps.
    pub upstream_user_id: UpstreamUserId,
    /// The PAT (verified upstream before anything is stored).
    pub pat: Pat,
    /// App defaults; derived from the tenant id when absent.
    pub app_defaults: Option<AppDefaults>,
    /// Upstream protection; 15 rps / 8 in flight when absent.
    pub rate_limit: Option<UpstreamRateLimit>,
    /// Scopes its keys may ever hold.
    pub allowed_scopes: ScopeSet,
    /// Profile used when a PUT names none.
    pub default_scope_profile: Option<ProfileName>,
    /// Initial profiles.
    pub scope_profiles: BTreeMap<ProfileName, ScopeSet>,
    /// Whether provisioning deletes keys the upstream mints with a new app; `always` when
    /// absent.
    pub auto_key_check: Option<AutoKeyCheck>,
}

/// Changes to a tenant; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// Suspend or reactivate.
    pub status: Option<TenantStatus>,
    /// New app defaults (affect users provisioned later; app ids of existing users never change).
    pub app_defaults: Option<AppDefaults>,
    /// New allowed scopes; every existing profile must stay within them.
    pub allowed_scopes: Option<ScopeSet>,
    /// New default profile (`Some(None)` clears it).
    pub default_scope_profile: Option<Option<ProfileName>>,
    /// New upstream protection.
    pub rate_limit: Option<UpstreamRateLimit>,
    /// New policy for keys the upstream mints with a new app.
    pub auto_key_check: Option<AutoKeyCheck>,
}

/// A tenant with its profiles.
#[derive(Debug, Clone)]
pub struct TenantView {
    /// The tenant.
    pub tenant: Tenant,
    /// Its profiles, by name.
    pub profiles: Vec<ScopeProfile>,
}

impl Provisioner {
    /// Creates a tenant after verifying its PAT upstream.
    pub async fn create_tenant(
        &self,
        actor: &Actor,
        new: NewTenant,
    ) -> Result<TenantView, DomainError> {
        check_text("display_name", &new.display_name, 200)?;
        check_base_url(&new.base_url)?;
        let app_defaults = match new.app_defaults {
            Some(d) => d,
            None => default_app_defaults(&new.id),
        };
        check_app_defaults(&app_defaults)?;
        let rate_limit = new.rate_limit.unwrap_or_default();
        check_rate_limit(&rate_limit)?;
        check_allowed(&new.allowed_scopes)?;
        for (name, scopes) in &new.scope_profiles {
            check_profile(name, scopes, &new.allowed_scopes)?;
        }
        if let Some(p) = &new.default_scope_profile
            && !new.scope_profiles.contains_key(p)
        {
            return Err(DomainError::Validation(format!(
                "default_scope_profile {p:?} is not one of scope_profiles"
            )));
        }
        if self.store.get_tenant(&new.id).await?.is_some() {
            return Err(DomainError::Conflict(format!(
                "tenant {} already exists",
                new.id
            )));
        }
        self.verify_pat(
            &new.id,
            &new.base_url,
            &new.upstream_user_id,
            &new.pat,
            rate_limit,
        )
        .await?;

        let now = self.clock.now();
        let tenant = Tenant {
            pat_sealed: self.sealer.seal(
                new.pat.expose(),
                &pat_aad(
                    &new.id,
                    new.base_url.trim_end_matches('/'),
                    &new.upstream_user_id,
                ),
            ),
            pat_fingerprint: new.pat.fingerprint(),
            id: new.id,
            display_name: new.display_name,
            status: TenantStatus::Active,
            base_url: new.base_url.trim_end_matches('/').to_owned(),
            upstream_user_id: new.upstream_user_id,
            app_defaults,
            rate_limit,
            allowed_scopes: new.allowed_scopes,
            default_scope_profile: new.default_scope_profile,
            auto_key_check: new.auto_key_check.unwrap_or_default(),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let profiles: Vec<ScopeProfile> = new
            .scope_profiles
            .into_iter()
            .map(|(name, scopes)| ScopeProfile {
                tenant_id: tenant.id.clone(),
                name,
                scopes,
                max_key_age_secs: None,
                rotation_grace_secs: 0,
                created_at: now,
                updated_at: now,
            })
            .collect();
        let audit = self.audit(
            actor,
            Some(&tenant.id),
            "tenant.create",
            format!("tenants/{}", tenant.id),
            "success",
        );
        self.store
            .insert_tenant(&tenant, &profiles, &audit)
            .await
            .map_err(|e| match e {
                crate::StoreError::AlreadyExists => {
                    DomainError::Conflict(format!("tenant {} already exists", tenant.id))
                }
                other => other.into(),
            })?;
        Ok(TenantView { tenant, profiles })
    }

    /// One tenant with its profiles.
    pub async fn get_tenant(&self, id: &TenantId) -> Result<TenantView, DomainError> {
        let tenant = self.tenant(id).await?;
        let profiles = self.store.list_profiles(id).await?;
        Ok(TenantView { tenant, profiles })
    }

    /// The Clarifai user id owning a tenant's apps (shown as each user's `app.user_id`).
    pub async fn tenant_upstream_user(&self, id: &TenantId) -> Result<UpstreamUserId, DomainError> {
        Ok(self.tenant(id).await?.upstream_user_id)
    }

    /// Tenants by id, `limit` per page.
    pub async fn list_tenants(
        &self,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Tenant>, DomainError> {
        let limit = check_limit(limit)?;
        let after = match cursor {
            Some(c) => Some(
                TenantId::parse(&decode_cursor(c)?)
                    .map_err(|_| DomainError::Invalid("invalid cursor".into()))?,
            ),
            None => None,
        };
        let items = self.store.list_tenants(after.as_ref(), limit).await?;
        let next_cursor = (items.len() == limit as usize)
            .then(|| items.last().map(|t| encode_cursor(t.id.as_str())))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// Changes a tenant's settings.
    pub async fn patch_tenant(
        &self,
        actor: &Actor,
        id: &TenantId,
        patch: TenantPatch,
    ) -> Result<TenantView, DomainError> {
        let mut tenant = self.tenant(id).await?;
        let read_version = tenant.version;
        let profiles = self.store.list_profiles(id).await?;
        if let Some(name) = patch.display_name {
            check_text("display_name", &name, 200)?;
            tenant.display_name = name;
        }
        if let Some(status) = patch.status {
            tenant.status = status;
        }
        if let Some(d) = patch.app_defaults {
            check_app_defaults(&d)?;
            tenant.app_defaults = d;
        }
        if let Some(r) = patch.rate_limit {
            check_rate_limit(&r)?;
            tenant.rate_limit = r;
        }
        if let Some(c) = patch.auto_key_check {
            tenant.auto_key_check = c;
        }
        if let Some(allowed) = patch.allowed_scopes {
            check_allowed(&allowed)?;
            for p in &profiles {
                let outside = p.scopes.not_in(&allowed);
                if !outside.is_empty() {
                    return Err(DomainError::Validation(format!(
                        "scope profile {:?} uses scopes outside the new allowed_scopes: {}",
                        p.name.as_str(),
                        ScopeSet::from_scopes(outside)
                    )));
                }
            }
            tenant.allowed_scopes = allowed;
        }
        if let Some(default) = patch.default_scope_profile {
            if let Some(p) = &default
                && !profiles.iter().any(|x| &x.name == p)
            {
                return Err(DomainError::Validation(format!(
                    "default_scope_profile {p:?} does not exist"
                )));
            }
            tenant.default_scope_profile = default;
        }
        tenant.updated_at = self.clock.now();
        let audit = self.audit(
            actor,
            Some(id),
            "tenant.update",
            format!("tenants/{id}"),
            "success",
        );
        self.store
            .update_tenant(&tenant, read_version, &audit)
            .await
            .map_err(|e| tenant_write_error(id, e))?;
        tenant.version = read_version + 1;
        Ok(TenantView { tenant, profiles })
    }

    /// Replaces the tenant's PAT after verifying the new one upstream.
    pub async fn set_credential(
        &self,
        actor: &Actor,
        id: &TenantId,
        pat: Pat,
    ) -> Result<TenantView, DomainError> {
        let mut tenant = self.tenant(id).await?;
        // The check upstream takes a while: the write below is conditioned on this version,
        // so a change made meanwhile (a suspension) is never overwritten.
        let read_version = tenant.version;
        self.verify_pat(
            id,
            &tenant.base_url,
            &tenant.upstream_user_id,
            &pat,
            tenant.rate_limit,
        )
        .await?;
        tenant.pat_sealed = self.sealer.seal(
            pat.expose(),
            &pat_aad(id, &tenant.base_url, &tenant.upstream_user_id),
        );
        tenant.pat_fingerprint = pat.fingerprint();
        tenant.updated_at = self.clock.now();
        let audit = self.audit(
            actor,
            Some(id),
            "tenant.credential.replace",
            format!("tenants/{id}"),
            "success",
        );
        self.store
            .update_tenant(&tenant, read_version, &audit)
            .await
            .map_err(|e| tenant_write_error(id, e))?;
        tenant.version = read_version + 1;
        let profiles = self.store.list_profiles(id).await?;
        Ok(TenantView { tenant, profiles })
    }

    /// Deletes a tenant that has no users left (every user `deleted`).
    pub async fn delete_tenant(&self, actor: &Actor, id: &TenantId) -> Result<(), DomainError> {
        let audit = self.audit(
            actor,
            Some(id),
            "tenant.delete",
            format!("tenants/{id}"),
            "success",
        );
        match self.store.delete_tenant(id, &audit).await? {
            TenantDeletion::Deleted => Ok(()),
            TenantDeletion::NotFound => {
                Err(DomainError::NotFound(format!("tenant {id} not found")))
            }
            TenantDeletion::HasLiveUsers => Err(DomainError::Conflict(format!(
                "tenant {id} still has users that are not deleted; deprovision them first"
            ))),
        }
    }

    /// Creates or replaces a scope profile with its key-age policy; returns it and whether it
    /// was created.
    pub async fn put_profile(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        name: ProfileName,
        scopes: ScopeSet,
        policy: KeyAgePolicy,
    ) -> Result<(ScopeProfile, bool), DomainError> {
        let tenant = self.tenant(tenant_id).await?;
        check_profile(&name, &scopes, &tenant.allowed_scopes)?;
        policy.check()?;
        let now = self.clock.now();
        let created_at = match self.store.get_profile(tenant_id, &name).await? {
            Some(p) => p.created_at,
            None => now,
        };
        let profile = ScopeProfile {
            tenant_id: tenant_id.clone(),
            name,
            scopes,
            max_key_age_secs: policy.max_key_age_secs,
            rotation_grace_secs: policy.rotation_grace_secs,
            created_at,
            updated_at: now,
        };
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "scope_profile.put",
            format!("tenants/{tenant_id}/scope-profiles/{}", profile.name),
            "success",
        );
        let created = self.store.put_profile(&profile, &audit).await?;
        Ok((profile, created))
    }

    /// One scope profile.
    pub async fn get_profile(
        &self,
        tenant_id: &TenantId,
        name: &ProfileName,
    ) -> Result<ScopeProfile, DomainError> {
        self.tenant(tenant_id).await?;
        self.store
            .get_profile(tenant_id, name)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("scope profile {name} not found")))
    }

    /// A tenant's scope profiles.
    pub async fn list_profiles(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<ScopeProfile>, DomainError> {
        self.tenant(tenant_id).await?;
        Ok(self.store.list_profiles(tenant_id).await?)
    }

    /// Deletes a profile that is neither the tenant's default nor its SCIM profile.
    pub async fn delete_profile(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        name: &ProfileName,
    ) -> Result<(), DomainError> {
        let tenant = self.tenant(tenant_id).await?;
        if tenant.default_scope_profile.as_ref() == Some(name) {
            return Err(DomainError::Conflict(format!(
                "scope profile {name} is the tenant's default_scope_profile; change the default first"
            )));
        }
        if self
            .store
            .get_scim_config(tenant_id)
            .await?
            .is_some_and(|c| c.scope_profile.as_ref() == Some(name))
        {
            return Err(DomainError::Conflict(format!(
                "scope profile {name} is the tenant's SCIM scope_profile; change the SCIM settings first"
            )));
        }
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "scope_profile.delete",
            format!("tenants/{tenant_id}/scope-profiles/{name}"),
            "success",
        );
        if self.store.delete_profile(tenant_id, name, &audit).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound(format!(
                "scope profile {name} not found"
            )))
        }
    }

    async fn verify_pat(
        &self,
        tenant: &TenantId,
        base_url: &str,
        user_id: &UpstreamUserId,
        pat: &Pat,
        rate_limit: UpstreamRateLimit,
    ) -> Result<(), DomainError> {
        let account = UpstreamAccount {
            base_url: base_url.trim_end_matches('/').to_owned(),
            user_id: user_id.clone(),
            pat: pat.clone(),
            tenant_id: tenant.clone(),
            rate_limit,
            lane: crate::budget::Lane::Interactive,
        };
        let scopes = self
            .upstream
            .verify_credential(&account)
            .await
            .map_err(|e| match e {
                UpstreamError::Unauthorized(m) => {
                    DomainError::Validation(format!("upstream credential rejected: {m}"))
                }
                UpstreamError::NotFound => DomainError::Validation(format!(
                    "upstream credential rejected: the PAT cannot act for user_id {user_id}"
                )),
                UpstreamError::Rejected(m) => {
                    DomainError::Validation(format!("upstream credential rejected: {m}"))
                }
                UpstreamError::AlreadyExists => {
                    DomainError::UpstreamRejected("unexpected answer verifying the PAT".into())
                }
                UpstreamError::Unavailable { message, .. } => {
                    DomainError::UpstreamUnavailable(message)
                }
                UpstreamError::Busy(message) => DomainError::UpstreamBusy(message),
            })?;
        if !scopes.iter().any(|s| s == "All") {
            let missing: Vec<&str> = PAT_NEEDS
                .iter()
                .copied()
                .filter(|n| !scopes.iter().any(|s| s == n))
                .collect();
            if !missing.is_empty() {
                return Err(DomainError::Validation(format!(
                    "upstream credential lacks scopes the service needs: {}",
                    missing.join(", ")
                )));
            }
        }
        Ok(())
    }
}

/// A conditioned tenant write that did not apply, as the caller sees it.
pub(crate) fn tenant_write_error(id: &TenantId, e: crate::StoreError) -> DomainError {
    match e {
        crate::StoreError::Stale => DomainError::Conflict(format!(
            "tenant {id} changed concurrently; read it again and retry"
        )),
        crate::StoreError::NotFound => DomainError::NotFound(format!("tenant {id} not found")),
        other => other.into(),
    }
}

/// The app defaults of a tenant that names none: prefix `<id>-` (the id cut to 15 characters),
/// workflow `Empty`, description `Provisioned for {external_id}`.
pub fn default_app_defaults(id: &TenantId) -> AppDefaults {
    let mut prefix: String = id.as_str().chars().take(15).collect();
    while prefix.ends_with('-') {
        prefix.pop();
    }
    prefix.push('-');
    AppDefaults {
        id_prefix: prefix,
        default_workflow: "Empty".into(),
        description: "Provisioned for {external_id}".into(),
    }
}

fn check_app_defaults(d: &AppDefaults) -> Result<(), DomainError> {
    validate_prefix(&d.id_prefix).map_err(|e| DomainError::Validation(e.to_string()))?;
    if !crate::ids::is_valid_app_id(&d.default_workflow) {
        return Err(DomainError::Validation(
            "default_workflow must be a workflow id of clarifai/main, e.g. \"Empty\"".into(),
        ));
    }
    if d.description.chars().count() > 500 || d.description.chars().any(char::is_control) {
        return Err(DomainError::Validation(
            "app description template must be at most 500 characters without control characters"
                .into(),
        ));
    }
    Ok(())
}

fn check_rate_limit(r: &UpstreamRateLimit) -> Result<(), DomainError> {
    if !(1..=1000).contains(&r.requests_per_second) || !(1..=256).contains(&r.max_concurrency) {
        return Err(DomainError::Validation(
            "upstream_rate_limit: requests_per_second must be 1-1000 and max_concurrency 1-256"
                .into(),
        ));
    }
    Ok(())
}

fn check_base_url(u: &str) -> Result<(), DomainError> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        let host = r.split('/').next().unwrap_or("");
        !host.is_empty()
            && !r.contains(['?', '#', '@'])
            && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    });
    if ok && u.len() <= 2048 {
        Ok(())
    } else {
        Err(DomainError::Validation(
            "upstream.base_url must be an http(s) URL without credentials, query or fragment"
                .into(),
        ))
    }
}

fn check_allowed(allowed: &ScopeSet) -> Result<(), DomainError> {
    if allowed.is_empty() {
        return Err(DomainError::Validation(
            "allowed_scopes must not be empty".into(),
        ));
    }
    Ok(())
}

/// A profile (or an explicit scope list) must be non-empty, within the tenant's allowed scopes,
/// and carry the scopes the upstream requires alongside each one.
pub(crate) fn check_profile(
    name: &ProfileName,
    scopes: &ScopeSet,
    allowed: &ScopeSet,
) -> Result<(), DomainError> {
    check_scopes(scopes, allowed).map_err(|e| match e {
        DomainError::Validation(m) => {
            DomainError::Validation(format!("scope profile {:?}: {m}", name.as_str()))
        }
        other => other,
    })
}

/// See [`check_profile`].
pub(crate) fn check_scopes(scopes: &ScopeSet, allowed: &ScopeSet) -> Result<(), DomainError> {
    if scopes.is_empty() {
        return Err(DomainError::Validation("scopes must not be empty".into()));
    }
    let outside = scopes.not_in(allowed);
    if !outside.is_empty() {
        return Err(DomainError::Validation(format!(
            "scopes not allowed for this tenant: {}",
            ScopeSet::from_scopes(outside)
        )));
    }
    let missing = scopes.with_dependencies().not_in(scopes);
    if !missing.is_empty() {
        return Err(DomainError::Validation(format!(
            "the upstream also requires: {}",
            ScopeSet::from_scopes(missing)
        )));
    }
    Ok(())
}
