//! The invariants (issue 7, DESIGN.md "The invariants"), checked during the run and at rest.
//!
//! During the run, after every tick:
//! - (b) a user whose row no operation holds (no lease at all) and that is `active` has at most
//!   one key upstream, plus one per *recorded* reason for another: a retired key in its grace
//!   period, or a pending `sweep_keys` (an ambiguous create that may land late: no correct
//!   code can stop the upstream from applying it, the design's remedy is the recorded sweep);
//!   never more than two unless a sweep is pending. Rows under a lease are skipped: an
//!   operation in progress legitimately has a new key it has not recorded yet.
//! - (e) no row holds the lease of an operation that has already answered (unless a store
//!   write of that operation failed: then it could not release it).
//!
//! At rest (after quiescence: no faults, time past every lease and grace, recovery idle):
//! - (a) the upstream holds exactly the recorded apps and keys: each `active` user's app
//!   exists with exactly its recorded key (with the recorded scopes, restricted to that app);
//!   no other app, no other key.
//! - (f) statuses are consistent: only `active`, `deleted` and `failed` remain; active users
//!   have a key; deleted and failed users have no app upstream.
//! - (c) every secret acknowledged to a caller (an Ok answer carrying a secret) is its user's
//!   current key, or a *later operation* removed it. A later operation is a client's
//!   `rotate_key` or `deprovision` on the same user that took the user's lease after the
//!   acknowledging operation's last commit on that user (its answer may be delayed after the
//!   commit); it, or recovery finishing it, may delete the key.
//!   A reconcile repair is not one: it may only delete unrecorded keys and re-create missing
//!   ones, so an acknowledged key it deletes or finds missing is a violation.
//! - (d) an audit event (matched by request id) for every Ok operation that changed a user
//!   row, and for every Ok reconcile repair.
//! - (e) as above, at rest.

use std::collections::{BTreeMap, BTreeSet};

use super::upstream::short;
use super::world::{OpKind, Outcome, Violation, World};
use super::lock;
use crate::model::{Step, User, UserStatus};

fn violation(invariant: &str, detail: String) -> Option<Violation> {
    Some(Violation {
        invariant: invariant.to_owned(),
        detail,
    })
}

/// Upstream keys per app: (secret, description).
fn keys_by_app(w: &World) -> BTreeMap<String, Vec<(String, String)>> {
    let st = lock(&w.upstream.state);
    let mut m: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (secret, k) in &st.keys {
        m.entry(k.app_id.clone())
            .or_default()
            .push((secret.clone(), k.description.clone()));
    }
    m
}

fn names(keys: &[(String, String)]) -> String {
    keys.iter()
        .map(|(s, d)| format!("{}({d})", short(s)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fp(secret: &str) -> String {
    crate::secret::KeySecret::parse(secret.to_owned())
        .map(|k| k.fingerprint())
        .unwrap_or_default()
}

fn check_leases(w: &World, rows: &[User]) -> Option<Violation> {
    let owners = lock(&w.ctx.owners);
    let failed = lock(&w.ctx.store_failed);
    for u in rows {
        let Some(l) = &u.lease else { continue };
        let Some(op) = owners.get(&l.owner) else {
            continue;
        };
        let Some(rec) = w.ops.iter().find(|o| o.id == *op) else {
            continue;
        };
        if rec.end_seq.is_some() && !failed.contains(op) {
            return violation(
                "(e) no row left leased",
                format!(
                    "{} is still leased by op{op} ({:?}), which already answered {:?}",
                    u.external_id, rec.kind, rec.outcome
                ),
            );
        }
    }
    None
}

/// Checks made after every tick of the run.
pub(crate) async fn during(w: &World) -> Option<Violation> {
    let rows = w.rows().await;
    let keys = keys_by_app(w);
    for u in &rows {
        if u.lease.is_some() || u.status != UserStatus::Active {
            continue;
        }
        let on_app = keys.get(u.app_id.as_str()).map_or(&[][..], Vec::as_slice);
        let sweep = u.step == Step::SweepKeys;
        let allowed = 1 + usize::from(u.retired_key.is_some()) + usize::from(sweep);
        if on_app.len() > allowed || (on_app.len() > 2 && !sweep) {
            return violation(
                "(b) at most two keys, two only during a recorded grace",
                format!(
                    "{} ({}/{}, current={}, retired={}) has {} keys upstream while no operation holds it: {}",
                    u.external_id,
                    u.status,
                    u.step,
                    u.key.as_ref().map_or("-".into(), |k| w.ctx.key_name(&k.fingerprint)),
                    u.retired_key
                        .as_ref()
                        .map_or("-".into(), |k| w.ctx.key_name(&k.fingerprint)),
                    on_app.len(),
                    names(on_app)
                ),
            );
        }
    }
    check_leases(w, &rows)
}

/// Checks made at rest, after quiescence.
pub(crate) async fn at_rest(w: &World) -> Option<Violation> {
    let rows = w.rows().await;
    let keys = keys_by_app(w);
    let apps: BTreeSet<String> = lock(&w.upstream.state).apps.keys().cloned().collect();
    let name = |f: &str| w.ctx.key_name(f);

    // (f) and (a), per user.
    for u in &rows {
        let on_app = keys.get(u.app_id.as_str()).map_or(&[][..], Vec::as_slice);
        let has_app = apps.contains(u.app_id.as_str());
        match u.status {
            UserStatus::Active => {
                let Some(k) = &u.key else {
                    return violation(
                        "(f) status consistent",
                        format!("{} is active without a recorded key", u.external_id),
                    );
                };
                if !has_app {
                    return violation(
                        "(a) upstream holds exactly the recorded apps and keys",
                        format!(
                            "{} is active but its app {} is gone upstream (recorded key {})",
                            u.external_id,
                            u.app_id,
                            name(&k.fingerprint)
                        ),
                    );
                }
                let recorded = on_app.iter().any(|(s, _)| fp(s) == k.fingerprint);
                if !recorded || on_app.len() != 1 {
                    return violation(
                        "(a) upstream holds exactly the recorded apps and keys",
                        format!(
                            "{} is active with recorded key {} but its app holds [{}]",
                            u.external_id,
                            name(&k.fingerprint),
                            names(on_app)
                        ),
                    );
                }
                let st = lock(&w.upstream.state);
                if let Some(sk) = on_app.first().and_then(|(s, _)| st.keys.get(s))
                    && (sk.scopes != u.scopes.names() || sk.app_id != u.app_id.as_str())
                {
                    return violation(
                        "(a) upstream holds exactly the recorded apps and keys",
                        format!(
                            "{}'s key has scopes {:?} on {} (recorded {:?} on {})",
                            u.external_id,
                            sk.scopes,
                            sk.app_id,
                            u.scopes.names(),
                            u.app_id
                        ),
                    );
                }
            }
            UserStatus::Deleted | UserStatus::Failed => {
                if has_app {
                    return violation(
                        "(f) status consistent",
                        format!(
                            "{} is {} but its app {} is still upstream with keys [{}]",
                            u.external_id,
                            u.status,
                            u.app_id,
                            names(on_app)
                        ),
                    );
                }
            }
            other => {
                return violation(
                    "(f) status consistent",
                    format!("{} is still {other} at rest", u.external_id),
                );
            }
        }
    }
    // (a): nothing upstream that no row records.
    let active_apps: BTreeSet<&str> = rows
        .iter()
        .filter(|u| u.status == UserStatus::Active)
        .map(|u| u.app_id.as_str())
        .collect();
    for app in &apps {
        if !active_apps.contains(app.as_str()) {
            return violation(
                "(a) upstream holds exactly the recorded apps and keys",
                format!(
                    "app {app} is upstream but no active user records it (keys [{}])",
                    names(keys.get(app).map_or(&[][..], Vec::as_slice))
                ),
            );
        }
    }

    // (c) acknowledged secrets.
    let acquisitions = lock(&w.ctx.acquisitions).clone();
    let commits = lock(&w.ctx.commits).clone();
    let deleted_by = lock(&w.upstream.state).deleted_by.clone();
    for op in &w.ops {
        let (Some(Outcome::Ok { secret: Some(s) }), Some(end), Some(user)) =
            (&op.outcome, op.end_seq, op.user)
        else {
            continue;
        };
        let ext = &w.users[user];
        // The acknowledging operation's last commit on the user (its answer may come later:
        // an operation linearised after that commit may legitimately replace the key).
        let end = commits
            .iter()
            .filter(|(o, e, seq)| *o == op.id && e == ext.as_str() && *seq < end)
            .map(|(_, _, seq)| *seq)
            .max()
            .unwrap_or(end);
        let row = rows.iter().find(|u| &u.external_id == ext);
        let f = s.fingerprint();
        if row.and_then(|u| u.key.as_ref()).is_some_and(|k| k.fingerprint == f) {
            continue;
        }
        let later = w.ops.iter().find(|b| {
            matches!(b.kind, OpKind::Rotate { .. } | OpKind::Deprovision)
                && b.user == Some(user)
                && acquisitions
                    .iter()
                    .any(|(o, e, seq)| *o == b.id && e == ext.as_str() && *seq > end)
        });
        if later.is_none() {
            let fate = match deleted_by.get(s.expose()) {
                Some((by, call)) => {
                    let kind = w.ops.iter().find(|o| o.id == *by).map(|o| o.kind);
                    format!("deleted upstream by op{by} ({kind:?}) with {call}")
                }
                None if lock(&w.upstream.state).keys.contains_key(s.expose()) => {
                    "still upstream, unrecorded".into()
                }
                None => "gone upstream".into(),
            };
            return violation(
                "(c) acknowledged secrets stay valid until a later operation",
                format!(
                    "op{} ({:?}) acknowledged {} for {ext}; it is not the current key ({}) and no later rotate/deprovision took the user: {fate}",
                    op.id,
                    op.kind,
                    short(s.expose()),
                    row.and_then(|u| u.key.as_ref())
                        .map_or("none".into(), |k| name(&k.fingerprint)),
                ),
            );
        }
    }

    // (d) audit for every acknowledged change.
    let audit = w.store.inner.audit_events();
    let writers = lock(&w.ctx.writers).clone();
    for op in &w.ops {
        if !matches!(op.outcome, Some(Outcome::Ok { .. })) {
            continue;
        }
        let needs = match op.kind {
            OpKind::Reconcile => true,
            OpKind::Recovery => false,
            _ => writers.contains(&op.id),
        };
        let tag = format!("op{}", op.id);
        if needs
            && !audit
                .iter()
                .any(|e| e.request_id.as_deref() == Some(tag.as_str()))
        {
            return violation(
                "(d) an audit event for every acknowledged operation",
                format!(
                    "op{} ({:?}) answered Ok after changing a row, but no audit event carries its request id",
                    op.id, op.kind
                ),
            );
        }
    }
    check_leases(w, &rows)
}
