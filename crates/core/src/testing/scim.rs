//! [`ScimStore`] for [`MemStore`]: the SQL stores' rules (case-folded `userName` and external
//! id unique among SCIM users that are not deleted, versions, claims).

use async_trait::async_trait;

use super::MemStore;
use super::lock;
use crate::error::StoreError;
use crate::ids::TenantId;
use crate::model::{AuditEvent, Timestamp};
use crate::ports::ScimStore;
use crate::scim::{ScimConfig, ScimQuery, ScimSyncOutcome, ScimToken, ScimUser};

fn clashes(a: &ScimUser, b: &ScimUser) -> bool {
    a.id != b.id
        && a.tenant_id == b.tenant_id
        && (a.external_id == b.external_id
            || (!a.deleted && !b.deleted && a.user_name_key() == b.user_name_key()))
}

fn matches(u: &ScimUser, q: &ScimQuery) -> bool {
    q.id.as_ref().is_none_or(|id| &u.id == id)
        && q.user_name_key
            .as_ref()
            .is_none_or(|k| &u.user_name_key() == k)
        && q.external_id
            .as_ref()
            .is_none_or(|e| u.attrs.external_id.as_ref() == Some(e))
        && q.provisioning_id
            .as_ref()
            .is_none_or(|e| u.external_id.as_str() == e)
        && q.email_needle
            .as_ref()
            .is_none_or(|n| u.email_key().contains(n.as_str()))
}

#[async_trait]
impl ScimStore for MemStore {
    async fn get_scim_config(&self, tenant: &TenantId) -> Result<Option<ScimConfig>, StoreError> {
        Ok(lock(&self.state).scim_configs.get(tenant).cloned())
    }
    async fn put_scim_config(
        &self,
        config: &ScimConfig,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if !st.tenants.contains_key(&config.tenant_id) {
            return Err(StoreError::NotFound);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.scim_configs
            .insert(config.tenant_id.clone(), config.clone());
        Ok(())
    }
    async fn insert_scim_token(
        &self,
        token: &ScimToken,
        others_expire_at: Timestamp,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if st.scim_tokens.contains_key(&token.id)
            || st.scim_tokens.values().any(|t| t.hash == token.hash)
        {
            return Err(StoreError::AlreadyExists);
        }
        self.write_audit(&mut st, Some(audit))?;
        for t in st.scim_tokens.values_mut() {
            if t.tenant_id == token.tenant_id {
                t.expires_at = Some(
                    t.expires_at
                        .map_or(others_expire_at, |e| e.min(others_expire_at)),
                );
            }
        }
        st.scim_tokens.insert(token.id.clone(), token.clone());
        Ok(())
    }
    async fn list_scim_tokens(&self, tenant: &TenantId) -> Result<Vec<ScimToken>, StoreError> {
        let mut out: Vec<ScimToken> = lock(&self.state)
            .scim_tokens
            .values()
            .filter(|t| &t.tenant_id == tenant)
            .cloned()
            .collect();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }
    async fn find_scim_token(&self, hash: &str) -> Result<Option<ScimToken>, StoreError> {
        Ok(lock(&self.state)
            .scim_tokens
            .values()
            .find(|t| t.hash == hash)
            .cloned())
    }
    async fn delete_scim_token(
        &self,
        tenant: &TenantId,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut st = lock(&self.state);
        if !st
            .scim_tokens
            .get(id)
            .is_some_and(|t| &t.tenant_id == tenant)
        {
            return Ok(false);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.scim_tokens.remove(id);
        Ok(true)
    }
    async fn insert_scim_user(
        &self,
        user: &ScimUser,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        if !st.tenants.contains_key(&user.tenant_id) {
            return Err(StoreError::NotFound);
        }
        if st.scim_users.contains_key(&user.id) || st.scim_users.values().any(|o| clashes(o, user))
        {
            return Err(StoreError::AlreadyExists);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.scim_users.insert(user.id.clone(), user.clone());
        Ok(())
    }
    async fn update_scim_user(
        &self,
        user: &ScimUser,
        read_version: i64,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let Some(stored) = st
            .scim_users
            .get(&user.id)
            .filter(|u| u.tenant_id == user.tenant_id)
            .cloned()
        else {
            return Err(StoreError::NotFound);
        };
        if stored.version != read_version {
            return Err(StoreError::Stale);
        }
        let mut next = stored.clone();
        next.attrs = user.attrs.clone();
        next.profile = user.profile.clone();
        next.deleted = user.deleted;
        next.updated_at = user.updated_at;
        next.sync_attempts = 0;
        next.version = read_version + 1;
        if st.scim_users.values().any(|o| clashes(o, &next)) {
            return Err(StoreError::AlreadyExists);
        }
        self.write_audit(&mut st, Some(audit))?;
        st.scim_users.insert(next.id.clone(), next);
        Ok(())
    }
    async fn get_scim_user(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<ScimUser>, StoreError> {
        Ok(lock(&self.state)
            .scim_users
            .get(id)
            .filter(|u| &u.tenant_id == tenant)
            .cloned())
    }
    async fn list_scim_users(
        &self,
        tenant: &TenantId,
        query: &ScimQuery,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<ScimUser>, u64), StoreError> {
        let st = lock(&self.state);
        let all: Vec<&ScimUser> = st
            .scim_users
            .values()
            .filter(|u| &u.tenant_id == tenant && !u.deleted && matches(u, query))
            .collect();
        let total = all.len() as u64;
        let page = all
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(count as usize)
            .cloned()
            .collect();
        Ok((page, total))
    }
    async fn claim_scim_sync(
        &self,
        now: Timestamp,
        claim_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ScimUser>, StoreError> {
        let mut st = lock(&self.state);
        let mut due: Vec<(Timestamp, String)> = st
            .scim_users
            .values()
            .filter(|u| u.version != u.synced_version && u.next_sync_at.is_none_or(|t| t <= now))
            .map(|u| (u.updated_at, u.id.clone()))
            .collect();
        due.sort();
        let mut out = Vec::new();
        for (_, id) in due.into_iter().take(limit as usize) {
            if let Some(u) = st.scim_users.get_mut(&id) {
                u.next_sync_at = Some(claim_until);
                out.push(u.clone());
            }
        }
        Ok(out)
    }
    async fn finish_scim_sync(
        &self,
        tenant: &TenantId,
        id: &str,
        outcome: &ScimSyncOutcome,
    ) -> Result<(), StoreError> {
        let mut st = lock(&self.state);
        let Some(u) = st.scim_users.get_mut(id).filter(|u| &u.tenant_id == tenant) else {
            return Ok(());
        };
        match outcome {
            ScimSyncOutcome::Synced { version, error } => {
                u.synced_version = u.synced_version.max(*version);
                u.sync_error = error.clone();
                u.sync_attempts = 0;
                u.next_sync_at = None;
                if u.deleted && u.synced_version >= u.version {
                    st.scim_users.remove(id);
                }
            }
            ScimSyncOutcome::Retry {
                error,
                next_sync_at,
            } => {
                u.sync_attempts += 1;
                u.sync_error = Some(error.clone());
                u.next_sync_at = Some(*next_sync_at);
            }
        }
        Ok(())
    }
}
