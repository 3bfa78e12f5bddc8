//! Which webhook event an operation's end writes, and the thin payload of a user event
//! (crate::webhooks; the outbox writes them with the audit event of the change).

use crate::model::{User, UserStatus};
use crate::webhooks::{EventType, OutboxEvent};

use super::Provisioner;

/// The event of an operation that started as `started_as` and reached `now` (`None`: an
/// operation with no event of its own, e.g. a late sweep).
pub(super) fn operation_event(started_as: UserStatus, now: UserStatus) -> Option<EventType> {
    match (started_as, now) {
        (UserStatus::Provisioning, UserStatus::Active) => Some(EventType::UserProvisioned),
        (UserStatus::Rotating, UserStatus::Active) => Some(EventType::UserKeyRotated),
        (UserStatus::Reactivating, UserStatus::Active) => Some(EventType::UserReactivated),
        (UserStatus::Suspending, UserStatus::Suspended) => Some(EventType::UserKeyRevoked),
        (UserStatus::Deprovisioning, UserStatus::Deleted) => Some(EventType::UserDeprovisioned),
        _ => None,
    }
}

impl Provisioner {
    /// A thin user event: ids, state, and the row's version after the write that carries it
    /// (increasing with every write of the user, so receivers can drop stale events). Never a
    /// secret: the key appears by its short fingerprint only.
    pub(super) fn user_event(&self, kind: EventType, user: &User) -> OutboxEvent {
        OutboxEvent::new(
            &user.tenant_id,
            kind,
            self.clock.now(),
            serde_json::json!({
                "tenant_id": user.tenant_id.as_str(),
                "external_id": user.external_id.as_str(),
                "status": user.status.as_str(),
                "app_id": user.app_id.as_str(),
                "key_fingerprint": user.key.as_ref().and_then(|k| k.fingerprint.get(..8)),
                "generation": user.generation,
                "version": user.version + 1,
            }),
        )
    }
}
