//! End users: provision (idempotent PUT), read, list, reveal; key look-up and the audit log.
//! Rotation is in `rotation.rs`, deprovisioning in `deprovision.rs`.

use std::collections::BTreeMap;
use tokio::time::Instant;

use crate::app_id::{derive_app_id, derive_app_id_n};
use crate::error::{DomainError, StoreError};
use crate::ids::{ExternalId, ProfileName, TenantId};
use crate::model::{
    Actor, AuditEvent, Lease, Page, Step, Tenant, TenantStatus, Timestamp, User, UserStatus,
};
use crate::scope::ScopeSet;
use crate::secret::KeySecret;

use super::idempotency::IdempotencyTicket;
use super::steps::{Run, lease_lost, user_target};
use super::tenants::check_scopes;
use super::{
    KeySlot, Provisioner, check_limit, check_text, decode_cursor, decode_user_cursor, encode_cursor,
};

/// Which scopes a provisioned key gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRequest {
    /// The tenant's default profile.
    Default,
    /// A named profile of the tenant.
    Profile(ProfileName),
    /// Explicit scopes (within the tenant's allowed scopes).
    Scopes(ScopeSet),
}

/// A PUT on an end user.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    /// Scopes wanted.
    pub scopes: ScopeRequest,
    /// Optional human name (replaced when given).
    pub display_name: Option<String>,
    /// Optional string metadata (replaced when given).
    pub metadata: Option<BTreeMap<String, String>>,
}

/// The answer to a provisioning or rotation.
#[derive(Debug, Clone)]
pub struct Provisioned {
    /// The user as stored.
    pub user: User,
    /// The new key's secret: present only when this call created the key.
    pub secret: Option<KeySecret>,
    /// Whether this call created the user's app and key (201) or found them (200).
    pub created: bool,
}

/// Longest rotation grace period, in seconds (docs/api.md).
pub const MAX_GRACE_SECONDS: u32 = 86_400;

impl Provisioner {
    /// Provisions one end user: one app and one key with the resolved scopes. Idempotent: a
    /// repeat with the same scopes creates nothing and returns the user without a secret.
    pub async fn provision(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &ExternalId,
        req: ProvisionRequest,
    ) -> Result<Provisioned, DomainError> {
        self.provision_with(actor, tenant_id, external_id, req, None, true)
            .await
    }

    /// [`Provisioner::provision`], binding an `Idempotency-Key` (`keyed`) to the operation it
    /// starts or resumes (service::idempotency). `delivers`: whether the answer reaches a caller
    /// who receives the secret (a PUT); a bulk job's item does not, so a key it creates stays
    /// marked undelivered and a pending secret stays pending.
    pub(super) async fn provision_with(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &ExternalId,
        req: ProvisionRequest,
        keyed: Option<&IdempotencyTicket>,
        delivers: bool,
    ) -> Result<Provisioned, DomainError> {
        self.provision_as(actor, tenant_id, external_id, req, keyed, delivers, false)
            .await
    }

    /// [`Provisioner::provision_with`]; `for_scim`: the SCIM sync bringing a SCIM user's
    /// active state over. Anyone else may not provision anew a user whose SCIM record says it
    /// is inactive (its identity provider deactivated it).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn provision_as(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &ExternalId,
        req: ProvisionRequest,
        keyed: Option<&IdempotencyTicket>,
        delivers: bool,
        for_scim: bool,
    ) -> Result<Provisioned, DomainError> {
        let tenant = self.tenant(tenant_id).await?;
        if tenant.status == TenantStatus::Suspended {
            return Err(DomainError::Conflict(format!(
                "tenant {tenant_id} is suspended"
            )));
        }
        let scopes = self.resolve_scopes(&tenant, &req.scopes).await?;
        check_user_fields(req.display_name.as_deref(), req.metadata.as_ref())?;
        let deadline = Instant::now() + self.config.lease_wait;
        // Another stored app id after a clash on the unique (tenant, app id) index.
        let mut salt = 0u32;
        loop {
            check_deadline(deadline)?;
            let now = self.clock.now();
            let Some(user) = self.store.get_user(tenant_id, external_id).await? else {
                let owner = self.new_owner();
                let mut user = self.new_user(&tenant, external_id, &scopes, &req, &owner, now);
                user.app_id =
                    derive_app_id_n(&tenant.app_defaults.id_prefix, tenant_id, external_id, salt);
                let intent = self.intent_event(actor, &user, "user.provision");
                match self.insert_intent(&user, &intent, keyed).await {
                    Ok(()) => {
                        return self
                            .run_provisioning(
                                actor,
                                &tenant,
                                user,
                                owner,
                                (false, false),
                                &scopes,
                                delivers,
                            )
                            .await;
                    }
                    Err(StoreError::AlreadyExists) => continue,
                    Err(StoreError::AppIdTaken) => {
                        salt = next_salt(salt)?;
                        continue;
                    }
                    Err(StoreError::Stale) => return Err(lease_lost()),
                    Err(e) => return Err(e.into()),
                }
            };
            if lease_live(&user, self.lease_horizon()) {
                self.wait_for_release(tenant_id, external_id, deadline)
                    .await?;
                continue;
            }
            match user.status {
                UserStatus::Active => {
                    if user.scopes != scopes {
                        return Err(DomainError::Conflict(format!(
                            "user is already provisioned with other scopes ({}); rotate or deprovision first",
                            user.scopes
                        )));
                    }
                    let hand_over = user.secret_pending && delivers;
                    if needs_update(&user, &req) || hand_over {
                        if hand_over {
                            self.bind_resumed(keyed, &user).await?;
                        }
                        let Some(u) = self.acquire(&user).await? else {
                            continue;
                        };
                        return self.settle_active(actor, &tenant, u, &req, delivers).await;
                    }
                    return Ok(Provisioned {
                        user,
                        secret: None,
                        created: false,
                    });
                }
                UserStatus::Deprovisioning => {
                    return Err(DomainError::Conflict(
                        "user is being deprovisioned; repeat the DELETE to finish it first".into(),
                    ));
                }
                UserStatus::Suspending | UserStatus::Suspended | UserStatus::Reactivating => {
                    return Err(DomainError::Conflict(format!(
                        "user is {} (deactivated through SCIM); its identity provider \
                         reactivates it, or DELETE deprovisions it",
                        user.status
                    )));
                }
                UserStatus::Rotating => {
                    // A rotation that stalled: finish it, then answer as for an active user
                    // (the next pass carries the new secret, which reached no one yet).
                    let Some(u) = self.acquire(&user).await? else {
                        continue;
                    };
                    let owner = lease_owner(&u);
                    let mut run = self.run(&tenant, actor, owner, true, "user.recover", false)?;
                    self.resume_intent(actor, &u, "user.recover", &run.owner)
                        .await?;
                    self.drive(&mut run, u).await?;
                }
                UserStatus::Provisioning => {
                    self.bind_resumed(keyed, &user).await?;
                    let Some(mut u) = self.acquire(&user).await? else {
                        continue;
                    };
                    if u.step == Step::CreateApp {
                        u.scopes = scopes.clone();
                    }
                    let owner = lease_owner(&u);
                    return self
                        .run_provisioning(actor, &tenant, u, owner, (true, true), &scopes, delivers)
                        .await;
                }
                UserStatus::Deleted | UserStatus::Failed => {
                    if !for_scim {
                        self.refuse_if_scim_inactive(tenant_id, external_id).await?;
                    }
                    let Some(mut u) = self.acquire(&user).await? else {
                        continue;
                    };
                    let mut acquired = u.clone();
                    // A failed provisioning, a cleanup still due, or a key create of an earlier
                    // generation that got no answer and lands late (even on the app this run
                    // re-creates under the same id) may leave keys this run must not keep: look
                    // first, which also schedules a late sweep for them.
                    let look_first = true;
                    if u.status == UserStatus::Deleted {
                        u.app_id = derive_app_id_n(
                            &tenant.app_defaults.id_prefix,
                            tenant_id,
                            external_id,
                            salt,
                        );
                        u.created_at = now;
                    }
                    u.status = UserStatus::Provisioning;
                    u.step = Step::CreateApp;
                    u.generation += 1;
                    u.scopes = scopes.clone();
                    u.profile = profile_name(&tenant, &req.scopes);
                    u.key = None;
                    u.retired_key = None;
                    u.rotation_grace_secs = 0;
                    u.secret_pending = false;
                    u.attempts = 0;
                    u.last_error = None;
                    u.next_attempt_at = None;
                    apply_fields(&mut u, &req);
                    let owner = lease_owner(&u);
                    let intent = self.intent_event(actor, &u, "user.provision");
                    match self
                        .try_save_intent(&owner, &mut u, Some(&intent), keyed)
                        .await
                    {
                        Ok(()) => {}
                        Err(StoreError::AppIdTaken) => {
                            // Another user holds the derived id: release the row unchanged and
                            // take the next id.
                            self.save(&owner, &mut acquired, false, None).await?;
                            salt = next_salt(salt)?;
                            continue;
                        }
                        Err(StoreError::Stale) => return Err(lease_lost()),
                        Err(e) => {
                            self.abandon(&owner).await;
                            return Err(e.into());
                        }
                    }
                    return self
                        .run_provisioning(
                            actor,
                            &tenant,
                            u,
                            owner,
                            (false, look_first),
                            &scopes,
                            delivers,
                        )
                        .await;
                }
            }
        }
    }

    /// `(resumed, look_first)`: whether this resumes another's provisioning, and whether an
    /// earlier attempt may have reached the upstream.
    async fn run_provisioning(
        &self,
        actor: &Actor,
        tenant: &Tenant,
        user: User,
        owner: String,
        (resumed, look_first): (bool, bool),
        wanted: &ScopeSet,
        delivers: bool,
    ) -> Result<Provisioned, DomainError> {
        let look_first = resumed || look_first;
        let mut run = self.run(tenant, actor, owner, look_first, "user.provision", delivers)?;
        if resumed {
            self.resume_intent(actor, &user, "user.provision", &run.owner)
                .await?;
        }
        let out = self.drive(&mut run, user).await?;
        if &out.user.scopes != wanted {
            return Err(DomainError::Conflict(format!(
                "user was being provisioned with other scopes ({}); rotate or deprovision first",
                out.user.scopes
            )));
        }
        let created = out.secret.is_some();
        Ok(Provisioned {
            user: out.user,
            secret: out.secret,
            created,
        })
    }

    /// One user.
    pub async fn get_user(
        &self,
        tenant_id: &TenantId,
        external_id: &ExternalId,
    ) -> Result<User, DomainError> {
        // One read on the hot path: a user row implies its tenant (foreign key); only a miss
        // looks at the tenant, to say which is missing.
        match self.store.get_user(tenant_id, external_id).await? {
            Some(user) => Ok(user),
            None => {
                self.tenant(tenant_id).await?;
                Err(DomainError::NotFound("user not found".into()))
            }
        }
    }

    /// A tenant's users by external id, optionally of one status.
    pub async fn list_users(
        &self,
        tenant_id: &TenantId,
        status: Option<UserStatus>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<User>, DomainError> {
        let limit = check_limit(limit)?;
        let after = cursor.map(decode_user_cursor).transpose()?;
        self.tenant(tenant_id).await?;
        let items = self
            .store
            .list_users(tenant_id, status, after.as_ref(), limit)
            .await?;
        let next_cursor = (items.len() == limit as usize)
            .then(|| items.last().map(|u| encode_cursor(u.external_id.as_str())))
            .flatten();
        Ok(Page { items, next_cursor })
    }

    /// The stored secret of a user's current key. Always audited; if the audit event cannot be
    /// written, nothing is revealed.
    pub async fn reveal_key(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &ExternalId,
    ) -> Result<KeySecret, DomainError> {
        let user = self.get_user(tenant_id, external_id).await?;
        let Some(key) = &user.key else {
            return Err(DomainError::Conflict(format!(
                "user is {} and has no key",
                user.status
            )));
        };
        let secret = self.open_key(&user, &key.sealed, super::KeySlot::Current)?;
        let audit = self.audit(
            actor,
            Some(tenant_id),
            "user.reveal_key",
            user_target(&user),
            "success",
        );
        self.store.append_audit(&audit).await?;
        Ok(secret)
    }

    /// How many users of a tenant are in each status (for metrics: users left `failed`,
    /// `provisioning` or `deprovisioning` are work recovery still owes).
    pub async fn user_counts(
        &self,
        tenant_id: &TenantId,
    ) -> Result<Vec<(UserStatus, u64)>, DomainError> {
        Ok(self.store.count_users_by_status(tenant_id).await?)
    }

    /// How many users each tenant has in each status, in one read (for metrics).
    pub async fn all_user_counts(&self) -> Result<Vec<(TenantId, UserStatus, u64)>, DomainError> {
        Ok(self.store.count_all_users_by_status().await?)
    }

    /// Which user a (leaked) key belongs to, by its fingerprint.
    pub async fn lookup_key(
        &self,
        secret: &KeySecret,
    ) -> Result<(TenantId, ExternalId), DomainError> {
        self.store
            .find_by_fingerprint(&secret.fingerprint())
            .await?
            .ok_or_else(|| DomainError::NotFound("no user holds this key".into()))
    }

    /// Audit events in commit order. `after` is a cursor from a previous page or an RFC 3339
    /// time.
    pub async fn list_audit(
        &self,
        tenant: Option<&TenantId>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<AuditEvent>, DomainError> {
        let limit = check_limit(limit)?;
        let (after_id, since) = match after {
            None => (None, None),
            Some(a) => match chrono::DateTime::parse_from_rfc3339(a) {
                Ok(t) => (None, Some(t.with_timezone(&chrono::Utc))),
                Err(_) => (Some(decode_cursor(a)?), None),
            },
        };
        let found = self
            .store
            .list_audit(tenant, after_id.as_deref(), since, limit)
            .await?;
        let next_cursor = (found.len() == limit as usize)
            .then(|| found.last().map(|(_, position)| encode_cursor(position)))
            .flatten();
        let items = found.into_iter().map(|(e, _)| e).collect();
        Ok(Page { items, next_cursor })
    }

    /// 409 when a SCIM user that is not deleted drives this record and is inactive.
    async fn refuse_if_scim_inactive(
        &self,
        tenant_id: &TenantId,
        external_id: &ExternalId,
    ) -> Result<(), DomainError> {
        let query = crate::scim::ScimQuery {
            provisioning_id: Some(external_id.as_str().to_owned()),
            ..Default::default()
        };
        let (found, _) = self.store.list_scim_users(tenant_id, &query, 0, 1).await?;
        if found.iter().any(|u| !u.attrs.active) {
            return Err(DomainError::Conflict(
                "the user's identity provider deactivated it (SCIM); it reactivates it".into(),
            ));
        }
        Ok(())
    }

    pub(super) async fn resolve_scopes(
        &self,
        tenant: &Tenant,
        req: &ScopeRequest,
    ) -> Result<ScopeSet, DomainError> {
        let scopes = match req {
            ScopeRequest::Scopes(s) => s.clone(),
            ScopeRequest::Profile(name) => self.profile_scopes(tenant, name).await?,
            ScopeRequest::Default => match &tenant.default_scope_profile {
                Some(name) => self.profile_scopes(tenant, name).await?,
                // A tenant without profiles: its default is all of its allowed scopes (as
                // they are now, so a PATCH of `allowed_scopes` is followed).
                None if self.store.list_profiles(&tenant.id).await?.is_empty() => {
                    tenant.allowed_scopes.clone()
                }
                None => {
                    return Err(DomainError::Validation(
                        "no scope_profile or scopes given, and the tenant has no default_scope_profile".into(),
                    ));
                }
            },
        };
        check_scopes(&scopes, &tenant.allowed_scopes)?;
        Ok(scopes)
    }

    async fn profile_scopes(
        &self,
        tenant: &Tenant,
        name: &ProfileName,
    ) -> Result<ScopeSet, DomainError> {
        self.store
            .get_profile(&tenant.id, name)
            .await?
            .map(|p| p.scopes)
            .ok_or_else(|| {
                DomainError::Validation(format!("unknown scope profile {:?}", name.as_str()))
            })
    }

    fn new_user(
        &self,
        tenant: &Tenant,
        external_id: &ExternalId,
        scopes: &ScopeSet,
        req: &ProvisionRequest,
        owner: &str,
        now: Timestamp,
    ) -> User {
        let mut user = User {
            tenant_id: tenant.id.clone(),
            external_id: external_id.clone(),
            app_id: derive_app_id(&tenant.app_defaults.id_prefix, &tenant.id, external_id),
            status: UserStatus::Provisioning,
            step: Step::CreateApp,
            generation: 1,
            scopes: scopes.clone(),
            profile: profile_name(tenant, &req.scopes),
            key: None,
            retired_key: None,
            display_name: None,
            metadata: BTreeMap::new(),
            lease: Some(Lease {
                owner: owner.to_owned(),
                expires_at: now + self.lease_ttl(),
            }),
            last_error: None,
            attempts: 0,
            next_attempt_at: None,
            rotation_grace_secs: 0,
            secret_pending: false,
            version: 0,
            created_at: now,
            updated_at: now,
        };
        apply_fields(&mut user, req);
        user
    }

    /// An active user with the same scopes, under its lease: applies changed fields and, when
    /// recovery finished its key for a request whose answer was lost, hands the secret over
    /// (once, audited).
    async fn settle_active(
        &self,
        actor: &Actor,
        tenant: &Tenant,
        mut user: User,
        req: &ProvisionRequest,
        delivers: bool,
    ) -> Result<Provisioned, DomainError> {
        let owner = lease_owner(&user);
        let secret = match (&user.key, user.secret_pending && delivers) {
            (Some(key), true) => Some(self.open_key(&user, &key.sealed, KeySlot::Current)?),
            _ => None,
        };
        let changed = needs_update(&user, req);
        apply_fields(&mut user, req);
        if secret.is_some() {
            user.secret_pending = false;
        }
        let (action, outcome) = match (changed, secret.is_some()) {
            (_, true) => ("user.secret_delivered", "success"),
            _ => ("user.update", "success"),
        };
        let audit = self.audit(actor, Some(&tenant.id), action, user_target(&user), outcome);
        if let Err(e) = self.save(&owner, &mut user, false, Some(&audit)).await {
            self.abandon(&owner).await;
            return Err(e);
        }
        Ok(Provisioned {
            user,
            secret,
            created: false,
        })
    }

    /// Records, before its first upstream call, that this request resumes an operation another
    /// began, so its upstream changes are on record under it too (audit fails closed: on
    /// failure the lease is given back and nothing is done).
    pub(super) async fn resume_intent(
        &self,
        actor: &Actor,
        user: &User,
        action: &str,
        owner: &str,
    ) -> Result<(), DomainError> {
        let intent = self.intent_event(actor, user, action);
        if let Err(e) = self.store.append_audit(&intent).await {
            self.abandon(owner).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// The audit event written with an operation's intent, before any upstream call, so an
    /// upstream change is never without a trace even if the final audit write fails.
    pub(super) fn intent_event(&self, actor: &Actor, user: &User, action: &str) -> AuditEvent {
        self.audit(
            actor,
            Some(&user.tenant_id),
            action,
            user_target(user),
            "started",
        )
    }

    /// Takes the lease of a row whose lease is free or expired; `None` if someone was faster.
    /// The lease is taken only if the row still has the version `user` was read at, so a
    /// decision made on that read is never applied to a row changed meanwhile.
    pub(super) async fn acquire(&self, user: &User) -> Result<Option<User>, DomainError> {
        let lease = Lease {
            owner: self.new_owner(),
            expires_at: self.clock.now() + self.lease_ttl(),
        };
        Ok(self
            .store
            .acquire_lease(
                &user.tenant_id,
                &user.external_id,
                &lease,
                self.lease_horizon(),
                Some(user.version),
            )
            .await?)
    }

    pub(super) fn run<'a>(
        &self,
        tenant: &'a Tenant,
        actor: &'a Actor,
        owner: String,
        look_first: bool,
        action: &'static str,
        delivers: bool,
    ) -> Result<Run<'a>, DomainError> {
        Ok(Run {
            tenant,
            account: self.account(tenant, actor.lane)?,
            owner,
            actor,
            look_first,
            app_proven: false,
            action,
            delivers,
        })
    }

    pub(super) async fn wait_for_release(
        &self,
        tenant_id: &TenantId,
        external_id: &ExternalId,
        deadline: Instant,
    ) -> Result<(), DomainError> {
        loop {
            if Instant::now() >= deadline {
                return Err(DomainError::UpstreamUnavailable(
                    "another request for this user is still in progress; retry".into(),
                ));
            }
            tokio::time::sleep(self.config.poll_interval).await;
            match self.store.get_user(tenant_id, external_id).await? {
                Some(u) if lease_live(&u, self.lease_horizon()) => {}
                _ => return Ok(()),
            }
        }
    }
}

/// The profile a scope request names (the tenant's default for none; `None` for explicit
/// scopes).
pub(super) fn profile_name(tenant: &Tenant, req: &ScopeRequest) -> Option<ProfileName> {
    match req {
        ScopeRequest::Profile(p) => Some(p.clone()),
        ScopeRequest::Default => tenant.default_scope_profile.clone(),
        ScopeRequest::Scopes(_) => None,
    }
}

pub(super) fn lease_owner(user: &User) -> String {
    user.lease
        .as_ref()
        .map(|l| l.owner.clone())
        .unwrap_or_default()
}

/// Whether someone holds the row's lease, as seen at `horizon` (now minus the skew allowed).
pub(super) fn lease_live(user: &User, horizon: Timestamp) -> bool {
    user.lease.as_ref().is_some_and(|l| l.expires_at >= horizon)
}

/// Every wait loop has an end: a request that cannot settle in `lease_wait` answers 503.
pub(super) fn check_deadline(deadline: Instant) -> Result<(), DomainError> {
    if Instant::now() >= deadline {
        return Err(DomainError::UpstreamUnavailable(
            "another request for this user is still in progress; retry".into(),
        ));
    }
    Ok(())
}

/// How many other app ids a provisioning tries after clashes on the stored ids.
const MAX_APP_ID_SALTS: u32 = 16;

fn next_salt(salt: u32) -> Result<u32, DomainError> {
    if salt + 1 >= MAX_APP_ID_SALTS {
        return Err(DomainError::Conflict(
            "no free upstream app id could be derived for this user; contact the operator".into(),
        ));
    }
    Ok(salt + 1)
}

fn needs_update(user: &User, req: &ProvisionRequest) -> bool {
    req.display_name
        .as_ref()
        .is_some_and(|d| user.display_name.as_ref() != Some(d))
        || req.metadata.as_ref().is_some_and(|m| &user.metadata != m)
}

fn apply_fields(user: &mut User, req: &ProvisionRequest) {
    if let Some(d) = &req.display_name {
        user.display_name = Some(d.clone());
    }
    if let Some(m) = &req.metadata {
        user.metadata = m.clone();
    }
}

pub(super) fn check_user_fields(
    display_name: Option<&str>,
    metadata: Option<&BTreeMap<String, String>>,
) -> Result<(), DomainError> {
    if let Some(d) = display_name {
        check_text("display_name", d, 200)?;
    }
    if let Some(m) = metadata {
        if m.len() > 64 {
            return Err(DomainError::Invalid(
                "metadata may hold at most 64 entries".into(),
            ));
        }
        for (k, v) in m {
            check_text("metadata key", k, 64)?;
            if v.chars().count() > 1024 || v.chars().any(char::is_control) {
                return Err(DomainError::Invalid(
                    "metadata values must be at most 1024 characters without control characters"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}
