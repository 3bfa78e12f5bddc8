//! Idempotency keys (docs/api.md, "Retries and `Idempotency-Key`"): a repeat of a request with the
//! same key replays its answer, or resumes the operation the first one started and answers with
//! its outcome; never a second operation.
//!
//! The protocol the API layer follows for a keyed request:
//! 1. [`Provisioner::idempotency_begin`]. A new key is recorded and claimed by this request. A
//!    key with an answer replays it (a secret it carried is opened from the record, and the
//!    replay is audited). A key whose first request is still running before its intent is
//!    waited for. A key sent with another request is refused (`IdempotencyKeyReused`).
//! 2. The keyed use case ([`Provisioner::provision_keyed`], [`Provisioner::rotate_key_keyed`]).
//!    The intent that starts an operation binds the record to (user, generation) in the same
//!    transaction, so a repeat knows which operation is its own even if the answer was lost. A
//!    repeat of a bound record decides from the user's row: still running, wait for it (like a
//!    second PUT); stalled, resume it; finished (by recovery or another request), answer with
//!    the key of that generation, opened from the row, and clear `secret_pending`; followed by
//!    a later operation, 409.
//! 3. [`Provisioner::idempotency_complete`] keeps a 2xx/4xx answer, its secret sealed and bound
//!    to the record (never in clear, never logged). After a 5xx nothing is kept and the claim
//!    is freed, so a repeat resumes at once.
//!
//! Records are keyed by the caller's `sub` and the key: another caller's identical key is
//! another record (it never sees this one's answer or secret). They expire after 24 h; the
//! recovery pass deletes expired ones.

use tokio::time::Instant;

use crate::error::{DomainError, StoreError};
use crate::idempotency::{
    IDEMPOTENCY_TTL_HOURS, IdempotencyBinding, IdempotencyClaim, IdempotencyKey, IdempotencyRecord,
    SavedResponse,
};
use crate::ids::TenantId;
use crate::model::{Actor, AuditEvent, Lease, Timestamp, User, UserStatus};
use crate::secret::KeySecret;

use super::steps::{lease_lost, user_target};
use super::users::{check_deadline, lease_live, lease_owner};
use super::{KeySlot, ProvisionRequest, Provisioned, Provisioner, bound};

/// The use cases that accept an `Idempotency-Key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdempotentOperation {
    /// `PUT .../users/{external_id}`.
    Provision,
    /// `POST .../rotate-key`.
    RotateKey,
    /// `POST /v1/tenants`.
    CreateTenant,
    /// `POST .../users:batch`.
    SubmitBatch,
}

impl IdempotentOperation {
    /// The stored name (also the audit action of the operation).
    pub fn as_str(self) -> &'static str {
        match self {
            IdempotentOperation::Provision => "user.provision",
            IdempotentOperation::RotateKey => "user.rotate_key",
            IdempotentOperation::CreateTenant => "tenant.create",
            IdempotentOperation::SubmitBatch => "job.create",
        }
    }
}

/// A keyed request, as the API layer describes it.
#[derive(Clone, Debug)]
pub struct IdempotentRequest {
    /// The header's value.
    pub key: IdempotencyKey,
    /// Which use case.
    pub operation: IdempotentOperation,
    /// The tenant concerned (for the audit of a replay).
    pub tenant_id: Option<TenantId>,
    /// On what, e.g. `acme/users/alice` (a key sent for another target is another request).
    pub target: String,
    /// SHA-256 (hex) of the request's canonical body.
    pub request_hash: String,
}

/// What a keyed request does next.
#[derive(Debug)]
pub enum IdempotencyStart {
    /// Answer this, as the first request was answered.
    Replay(ReplayedResponse),
    /// Run the keyed use case with this ticket, then complete (or abandon) it.
    Proceed(IdempotencyTicket),
}

/// A kept answer, replayed.
#[derive(Debug)]
pub struct ReplayedResponse {
    /// Its status.
    pub status: u16,
    /// Its body, without the secret.
    pub body: String,
    /// The secret it carried (redacted in `Debug`).
    pub secret: Option<KeySecret>,
}

/// A keyed request's hold on its record, from [`Provisioner::idempotency_begin`].
#[derive(Clone, Debug)]
pub struct IdempotencyTicket {
    /// The record and, when this request holds its claim, the owner token (empty otherwise).
    pub(crate) claim: IdempotencyClaim,
    pub(crate) created_at: Timestamp,
    /// The operation the record was bound to before this request: resume it, start nothing.
    pub(crate) binding: Option<IdempotencyBinding>,
}

impl IdempotencyTicket {
    /// Whether an earlier request with this key started an operation (this one resumes it).
    pub fn resumes(&self) -> bool {
        self.binding.is_some()
    }

    fn holds_claim(&self) -> bool {
        !self.claim.owner.is_empty()
    }
}

/// Associated data of a secret kept in a record: bound to the caller, the key and the record's
/// creation, so it opens for no other record (nor a later record of the same key).
fn record_aad(subject: &str, key: &IdempotencyKey, created_at: Timestamp) -> String {
    bound(
        "idempotency",
        &[
            subject,
            key.as_str(),
            &created_at.timestamp_millis().to_string(),
        ],
    )
}

impl Provisioner {
    /// Step 1 of a keyed request (see the module documentation). Waits (at most `lease_wait`)
    /// while the key's first request is still running before its intent.
    pub async fn idempotency_begin(
        &self,
        actor: &Actor,
        req: &IdempotentRequest,
    ) -> Result<IdempotencyStart, DomainError> {
        let subject = actor.subject.as_str();
        let deadline = Instant::now() + self.config.lease_wait;
        loop {
            check_deadline(deadline)?;
            let now = self.clock.now();
            let found = self
                .store
                .get_idempotency(subject, &req.key)
                .await?
                .filter(|r| r.expires_at > now);
            let Some(rec) = found else {
                let owner = self.new_owner();
                let rec = IdempotencyRecord {
                    subject: subject.to_owned(),
                    key: req.key.clone(),
                    operation: req.operation.as_str().to_owned(),
                    target: req.target.clone(),
                    request_hash: req.request_hash.clone(),
                    binding: None,
                    claim: Some(Lease {
                        owner: owner.clone(),
                        expires_at: now + self.lease_ttl(),
                    }),
                    response: None,
                    created_at: now,
                    expires_at: now + chrono::Duration::hours(IDEMPOTENCY_TTL_HOURS),
                };
                if self.store.put_idempotency(&rec, now).await? {
                    return Ok(IdempotencyStart::Proceed(ticket(rec, owner)));
                }
                continue;
            };
            if rec.operation != req.operation.as_str()
                || rec.target != req.target
                || rec.request_hash != req.request_hash
            {
                return Err(DomainError::IdempotencyKeyReused(
                    "this Idempotency-Key was sent with another request within 24 h; \
                     send a new key for a new request"
                        .into(),
                ));
            }
            if let Some(saved) = &rec.response {
                return self
                    .replay(actor, req, &rec, saved)
                    .await
                    .map(IdempotencyStart::Replay);
            }
            if rec.binding.is_some() {
                // The operation is known: the use case resumes it from the user's row, whose
                // lease serialises the repeats.
                return Ok(IdempotencyStart::Proceed(ticket(rec, String::new())));
            }
            if rec
                .claim
                .as_ref()
                .is_some_and(|c| c.expires_at >= self.lease_horizon())
            {
                // The first request is still working towards its intent: wait for it.
                tokio::time::sleep(self.config.poll_interval).await;
                continue;
            }
            // Its request stopped before starting anything (or gave up): take the key over.
            let owner = self.new_owner();
            let claim = Lease {
                owner: owner.clone(),
                expires_at: now + self.lease_ttl(),
            };
            if let Some(rec) = self
                .store
                .claim_idempotency(subject, &req.key, &claim, self.lease_horizon())
                .await?
            {
                return Ok(IdempotencyStart::Proceed(ticket(rec, owner)));
            }
        }
    }

    /// Step 3: keeps a 2xx/4xx answer for repeats (the secret sealed, bound to the record);
    /// after a 5xx keeps nothing and frees the claim. The first answer kept wins.
    pub async fn idempotency_complete(
        &self,
        ticket: &IdempotencyTicket,
        status: u16,
        body: String,
        secret: Option<&KeySecret>,
    ) -> Result<(), DomainError> {
        if status >= 500 {
            return self.idempotency_abandon(ticket).await;
        }
        let c = &ticket.claim;
        let secret_sealed = secret.map(|s| {
            self.sealer.seal(
                s.expose(),
                &record_aad(&c.subject, &c.key, ticket.created_at),
            )
        });
        let response = SavedResponse {
            status,
            body,
            secret_sealed,
        };
        self.store
            .complete_idempotency(&c.subject, &c.key, ticket.created_at, &response)
            .await?;
        Ok(())
    }

    /// Frees the ticket's claim (a 5xx, or the request gave up): a repeat resumes at once.
    pub async fn idempotency_abandon(&self, ticket: &IdempotencyTicket) -> Result<(), DomainError> {
        if ticket.holds_claim() {
            self.store.release_idempotency(&ticket.claim).await?;
        }
        Ok(())
    }

    /// [`Provisioner::provision`] under an `Idempotency-Key`: resumes the operation an earlier
    /// request with the key started, or runs the PUT, binding the key to what it starts.
    pub async fn provision_keyed(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &crate::ids::ExternalId,
        req: ProvisionRequest,
        ticket: &IdempotencyTicket,
    ) -> Result<Provisioned, DomainError> {
        match &ticket.binding {
            Some(b) => self.resume_keyed(actor, b, "user.provision").await,
            None => {
                self.provision_with(actor, tenant_id, external_id, req, Some(ticket), true)
                    .await
            }
        }
    }

    /// [`Provisioner::rotate_key`] under an `Idempotency-Key`: a repeat resumes (or answers
    /// with) the rotation the key started, never a second one.
    pub async fn rotate_key_keyed(
        &self,
        actor: &Actor,
        tenant_id: &TenantId,
        external_id: &crate::ids::ExternalId,
        grace_seconds: u32,
        revoke_previous: bool,
        ticket: &IdempotencyTicket,
    ) -> Result<Provisioned, DomainError> {
        match &ticket.binding {
            Some(b) => self.resume_keyed(actor, b, "user.rotate_key").await,
            None => {
                self.rotate_key_with(
                    actor,
                    tenant_id,
                    external_id,
                    grace_seconds,
                    revoke_previous,
                    Some(ticket),
                    super::rotation::Background::No,
                )
                .await
            }
        }
    }

    /// Deletes expired records (called by the recovery pass); failures are logged, not fatal.
    pub(super) async fn purge_idempotency_records(&self) {
        if let Err(e) = self.store.purge_idempotency(self.clock.now()).await {
            tracing::warn!(error.message = %e, "could not delete expired idempotency records");
        }
    }

    async fn replay(
        &self,
        actor: &Actor,
        req: &IdempotentRequest,
        rec: &IdempotencyRecord,
        saved: &SavedResponse,
    ) -> Result<ReplayedResponse, DomainError> {
        let secret = match &saved.secret_sealed {
            None => None,
            Some(sealed) => {
                let aad = record_aad(&rec.subject, &rec.key, rec.created_at);
                let s = self.sealer.open(sealed, &aad).map_err(|_| {
                    DomainError::Internal(
                        "a kept answer's secret does not open (wrong master key or an altered record)"
                            .into(),
                    )
                })?;
                Some(
                    KeySecret::parse(secrecy::ExposeSecret::expose_secret(&s).to_owned())
                        .map_err(|_| DomainError::Internal("kept secret is malformed".into()))?,
                )
            }
        };
        let outcome = if secret.is_some() {
            "success: answer and its secret replayed"
        } else {
            "success: answer replayed"
        };
        let audit = self.audit(
            actor,
            req.tenant_id.as_ref(),
            "idempotency.replay",
            rec.target.clone(),
            outcome,
        );
        // Audit fails closed: no audit, no replay.
        self.store.append_audit(&audit).await?;
        Ok(ReplayedResponse {
            status: saved.status,
            body: saved.body.clone(),
            secret,
        })
    }

    /// A repeat of a key bound to (user, generation): decides from the row what became of that
    /// operation, waiting for it, resuming it or answering with its outcome.
    async fn resume_keyed(
        &self,
        actor: &Actor,
        b: &IdempotencyBinding,
        action: &'static str,
    ) -> Result<Provisioned, DomainError> {
        let tenant = self.tenant(&b.tenant_id).await?;
        let deadline = Instant::now() + self.config.lease_wait;
        loop {
            check_deadline(deadline)?;
            let user = self
                .store
                .get_user(&b.tenant_id, &b.external_id)
                .await?
                .ok_or_else(|| DomainError::NotFound("user not found".into()))?;
            if lease_live(&user, self.lease_horizon()) {
                self.wait_for_release(&b.tenant_id, &b.external_id, deadline)
                    .await?;
                continue;
            }
            let ours = user.generation == b.generation;
            match user.status {
                UserStatus::Provisioning | UserStatus::Rotating if !ours => {
                    return Err(superseded());
                }
                UserStatus::Provisioning | UserStatus::Rotating => {
                    // Stalled (its holder died, or it failed transiently): resume it for us.
                    let Some(u) = self.acquire(&user).await? else {
                        continue;
                    };
                    let owner = lease_owner(&u);
                    let mut run = self.run(&tenant, actor, owner, true, action, true)?;
                    let out = self.drive(&mut run, u).await?;
                    let secret = match out.secret {
                        Some(s) => Some(s),
                        None => match &out.user.key {
                            Some(k) if k.generation == b.generation => {
                                Some(self.open_key(&out.user, &k.sealed, KeySlot::Current)?)
                            }
                            _ => return Err(failed(&out.user)),
                        },
                    };
                    return Ok(Provisioned {
                        user: out.user,
                        secret,
                        created: true,
                    });
                }
                UserStatus::Active => {
                    let Some(key) = user.key.as_ref().filter(|k| k.generation == b.generation)
                    else {
                        // Ours, yet another key: a rotation that failed for good went back to
                        // the previous key. Otherwise a later operation replaced its key.
                        return Err(if ours { failed(&user) } else { superseded() });
                    };
                    let sealed = key.sealed.clone();
                    // Finished by recovery or another request: its key is this key's outcome.
                    let Some(mut u) = self.acquire(&user).await? else {
                        continue;
                    };
                    let secret = self.open_key(&u, &sealed, KeySlot::Current)?;
                    u.secret_pending = false;
                    let owner = lease_owner(&u);
                    let audit = self.audit(
                        actor,
                        Some(&tenant.id),
                        "user.secret_delivered",
                        user_target(&u),
                        "success: to a retry with the Idempotency-Key that started it",
                    );
                    self.save(&owner, &mut u, false, Some(&audit)).await?;
                    return Ok(Provisioned {
                        user: u,
                        secret: Some(secret),
                        created: true,
                    });
                }
                UserStatus::Failed if ours => return Err(failed(&user)),
                UserStatus::Failed => return Err(superseded()),
                UserStatus::Deprovisioning
                | UserStatus::Deleted
                | UserStatus::Suspending
                | UserStatus::Suspended
                | UserStatus::Reactivating => return Err(superseded()),
            }
        }
    }

    /// Writes a new user row with its intent; under a key this request holds, binds the key's
    /// record to the row's generation in the same transaction.
    pub(super) async fn insert_intent(
        &self,
        user: &User,
        intent: &AuditEvent,
        keyed: Option<&IdempotencyTicket>,
    ) -> Result<(), StoreError> {
        match keyed.filter(|t| t.holds_claim()) {
            Some(t) => {
                self.store
                    .insert_user_bound(user, Some(intent), &t.claim)
                    .await
            }
            None => self.store.insert_user(user, Some(intent)).await,
        }
    }

    /// [`Provisioner::try_save`] of an operation's intent, keeping the lease; under a key this
    /// request holds, binds the key's record to the row's generation in the same transaction.
    pub(super) async fn try_save_intent(
        &self,
        owner: &str,
        user: &mut User,
        intent: Option<&AuditEvent>,
        keyed: Option<&IdempotencyTicket>,
    ) -> Result<(), StoreError> {
        let Some(t) = keyed.filter(|t| t.holds_claim()) else {
            return self.try_save(owner, user, true, intent).await;
        };
        let now = self.clock.now();
        user.updated_at = now;
        user.lease = Some(Lease {
            owner: owner.to_owned(),
            expires_at: now + self.lease_ttl(),
        });
        self.store
            .update_user_bound(user, owner, intent, &t.claim)
            .await?;
        user.version += 1;
        Ok(())
    }

    /// [`Provisioner::try_save_intent`] with the domain's error (a lost lease or claim: retry).
    pub(super) async fn save_intent(
        &self,
        owner: &str,
        user: &mut User,
        intent: Option<&AuditEvent>,
        keyed: Option<&IdempotencyTicket>,
    ) -> Result<(), DomainError> {
        self.try_save_intent(owner, user, intent, keyed)
            .await
            .map_err(|e| match e {
                StoreError::Stale => lease_lost(),
                other => other.into(),
            })
    }

    /// Before a keyed request resumes an operation it did not start, or hands over a secret
    /// that reached no one: binds its key to that operation, so a repeat after a lost answer
    /// gets the same outcome.
    pub(super) async fn bind_resumed(
        &self,
        keyed: Option<&IdempotencyTicket>,
        user: &User,
    ) -> Result<(), DomainError> {
        let Some(t) = keyed.filter(|t| t.holds_claim()) else {
            return Ok(());
        };
        let generation = match (&user.key, user.status) {
            (Some(k), UserStatus::Active) => k.generation,
            _ => user.generation,
        };
        let binding = IdempotencyBinding {
            tenant_id: user.tenant_id.clone(),
            external_id: user.external_id.clone(),
            generation,
        };
        if self.store.bind_idempotency(&t.claim, &binding).await? {
            Ok(())
        } else {
            Err(lease_lost())
        }
    }
}

fn ticket(rec: IdempotencyRecord, owner: String) -> IdempotencyTicket {
    IdempotencyTicket {
        claim: IdempotencyClaim {
            subject: rec.subject,
            key: rec.key,
            owner,
        },
        created_at: rec.created_at,
        binding: rec.binding,
    }
}

fn superseded() -> DomainError {
    DomainError::Conflict(
        "the operation this Idempotency-Key started was followed by another (a later rotation \
         or a deprovisioning); its answer can no longer be given"
            .into(),
    )
}

fn failed(user: &User) -> DomainError {
    DomainError::UpstreamRejected(format!(
        "the operation this Idempotency-Key started failed: {}",
        user.last_error
            .as_deref()
            .unwrap_or("no reason was recorded")
    ))
}
