//! The invariants (issue 7, docs/design.md "The invariants"), checked during the run and at rest.
//!
//! A row is *held* when its lease belongs to an operation still running (not answered, not
//! dropped). Rows held are skipped during the run: an operation in progress legitimately has,
//! say, a new key it has not recorded yet. A row held by nobody, or by a dead holder, must be
//! in a state from which recovery finishes correctly.
//!
//! During the run, after every tick:
//! - (b) an `active` user not held has at most one key upstream (not counting a key the
//!   upstream minted, when the tenant's policy leaves it for the repair at rest), plus one per
//!   *recorded* reason
//!   for another: a retired key (grace), or a pending `sweep_keys` (an ambiguous create that
//!   may land late: no correct code can stop the upstream applying it; the design's remedy is
//!   the recorded sweep). Never more than two unless a sweep is pending.
//! - (f) an `active` or `rotating` user not held has its recorded current key live upstream.
//! - (g) a recovery pass never fails as a whole (one bad row must not stop the others).
//! - (h) status changes: `deleted` is left only by a PUT (to `provisioning`), `active` goes to
//!   `provisioning` only by a reconcile re-creating the app, `deprovisioning` only to `deleted`.
//! - (e) no row holds the lease of an operation that already answered (unless a store write of
//!   that operation failed by injection: it could not release it).
//! - (k) fencing: a create or delete on a user's app enters the upstream port only from the
//!   operation holding that user's row (owner of its lease, expired or not: a compare-and-swap
//!   renewal on the owner succeeds until someone else takes the lease).
//!
//! At rest (after quiescence: no faults, time past every lease and grace, recovery idle):
//! - (a) the upstream holds exactly the recorded apps and keys: each `active` user's app
//!   exists with exactly its recorded key (recorded scopes, restricted to that app); no other
//!   app (but the foreign ones), no other key — with the `mint` class on, the key the upstream
//!   minted with each app is gone (the tenant checks `always` or `learn`). (b) at rest is part
//!   of this. The apps the service does not own (prefix-sharing, unmarked) are all still there,
//!   with their keys.
//! - (f) only `active`, `deleted` and `failed` remain; active users have a key; deleted and
//!   failed users have no app upstream.
//! - (c) every secret acknowledged to a caller (an Ok answer carrying a secret) is its user's
//!   current key, or a *later operation* removed it. A later operation is a client's
//!   `rotate_key` or `deprovision` on the same user that took the user's lease after the
//!   acknowledging operation's last commit on that user (its answer may come after the
//!   commit); it, or recovery finishing it, may delete the key. A reconcile repair is not one:
//!   it may only delete unrecorded keys and re-create missing ones.
//! - (c) a key replaced by a rotation with grace G is not deleted before G has passed since
//!   that rotation's intent (less twice the largest skew), unless a DELETE, or a rotation
//!   with `revoke_previous`, took the user.
//! - (d) an audit event (matched by request id) for every Ok operation that changed a user
//!   row, and for every Ok reconcile repair; and for every client operation (answered,
//!   failed or crashed) that deleted a key or an app upstream.
//! - (j) the lost answer: if a PUT on a user that started after its current key was recorded
//!   by recovery or a repair (for no caller) answered Ok, that key's secret reached some caller.
//! - (e), (h) as above.

use std::collections::{BTreeMap, BTreeSet};

use super::lock;
use super::upstream::{MINTED, short};
use super::world::{
    FOREIGN_APPS, MAX_GRACE_SKEW_MS, OpKind, Outcome, Violation, World, foreign_key,
};
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

/// Whether a running operation holds the row (a lease whose owner has not answered and was
/// not dropped). A row held by nobody, or by a dead holder, must be in a state recovery can
/// finish from.
fn held(w: &World, u: &User, running: &BTreeSet<u32>) -> bool {
    u.lease.as_ref().is_some_and(|l| {
        lock(&w.ctx.owners)
            .get(&l.owner)
            .is_some_and(|op| running.contains(op))
    })
}

/// (h): the status changes a committed write may make, by the kind of operation making it.
fn check_transitions(w: &World) -> Option<Violation> {
    for c in lock(&w.ctx.commits).iter() {
        let Some(from) = c.from else { continue };
        let kind = w.ops.iter().find(|o| o.id == c.op).map(|o| o.kind);
        let legal = match (from, c.to) {
            (UserStatus::Deleted, UserStatus::Deleted) => true,
            (UserStatus::Deleted, UserStatus::Provisioning) => kind == Some(OpKind::Provision),
            (UserStatus::Deleted, _) => false,
            (UserStatus::Active, UserStatus::Provisioning) => kind == Some(OpKind::Reconcile),
            (UserStatus::Deprovisioning, to) => {
                matches!(to, UserStatus::Deprovisioning | UserStatus::Deleted)
            }
            _ => true,
        };
        if !legal {
            return violation(
                "(h) only a PUT brings a deleted user back; a DELETE always finishes",
                format!(
                    "op{} ({kind:?}) changed {} from {from} to {} (commit #{})",
                    c.op, c.user, c.to, c.seq
                ),
            );
        }
    }
    None
}

/// Checks made after every tick of the run.
pub(crate) async fn during(w: &World) -> Option<Violation> {
    // The causal checks first: they name the operation at fault.
    if let Some(v) = check_transitions(w) {
        return Some(v);
    }
    if let Some((op, d)) = lock(&w.ctx.unfenced).clone() {
        let kind = w.ops.iter().find(|o| o.id == op).map(|o| o.kind);
        return violation(
            "(k) fencing: only the lease holder changes a user's upstream resources",
            format!("{d} ({kind:?})"),
        );
    }
    for op in &w.ops {
        if op.kind == OpKind::Recovery
            && let Some(Outcome::Err(e)) = &op.outcome
        {
            return violation(
                "(g) recovery isolates rows: a pass never fails because of one row",
                format!("recovery pass op{} failed: {e}", op.id),
            );
        }
    }
    let rows = w.rows().await;
    if let Some(v) = check_leases(w, &rows) {
        return Some(v);
    }
    let keys = keys_by_app(w);
    let running = w.running();
    for u in &rows {
        if held(w, u, &running) {
            continue;
        }
        let on_app = keys.get(u.app_id.as_str()).map_or(&[][..], Vec::as_slice);
        if matches!(u.status, UserStatus::Active | UserStatus::Rotating)
            && let Some(k) = &u.key
            && !on_app.iter().any(|(s, _)| fp(s) == k.fingerprint)
        {
            return violation(
                "(f) an active or rotating user's recorded key is live upstream",
                format!(
                    "{} ({}/{}) records key {} but its app holds [{}] and no running operation holds the row",
                    u.external_id,
                    u.status,
                    u.step,
                    w.ctx.key_name(&k.fingerprint),
                    names(on_app)
                ),
            );
        }
        if u.status != UserStatus::Active {
            continue;
        }
        // A key the upstream minted is left by design when the tenant's policy does not look
        // (`never`, or `learn` having stopped) until the repair at rest; under `always` it counts.
        let on_app: Vec<(String, String)> = on_app
            .iter()
            .filter(|(_, d)| !(w.repair_at_rest && d == MINTED))
            .cloned()
            .collect();
        let on_app = on_app.as_slice();
        let sweep = u.step == Step::SweepKeys;
        let allowed = 1 + usize::from(u.retired_key.is_some()) + usize::from(sweep);
        if on_app.len() > allowed || (on_app.len() > 2 && !sweep) {
            return violation(
                "(b) at most two keys, two only during a recorded grace",
                format!(
                    "{} ({}/{}, current={}, retired={}) has {} keys upstream while no running operation holds it: {}",
                    u.external_id,
                    u.status,
                    u.step,
                    u.key
                        .as_ref()
                        .map_or("-".into(), |k| w.ctx.key_name(&k.fingerprint)),
                    u.retired_key
                        .as_ref()
                        .map_or("-".into(), |k| w.ctx.key_name(&k.fingerprint)),
                    on_app.len(),
                    names(on_app)
                ),
            );
        }
    }
    None
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
        if !active_apps.contains(app.as_str()) && !FOREIGN_APPS.contains(&app.as_str()) {
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
            .filter(|c| c.op == op.id && c.user == ext.as_str() && c.seq < end)
            .map(|c| c.seq)
            .max()
            .unwrap_or(end);
        let row = rows.iter().find(|u| &u.external_id == ext);
        let f = s.fingerprint();
        if row
            .and_then(|u| u.key.as_ref())
            .is_some_and(|k| k.fingerprint == f)
        {
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
                Some(d) => {
                    let kind = w.ops.iter().find(|o| o.id == d.op).map(|o| o.kind);
                    format!("deleted upstream by op{} ({kind:?}) with {}", d.op, d.call)
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

    // (c) a replaced key lives out the grace its rotation asked for. The rotation that
    // retired it is the last `rotate_key` whose intent (status rotating) recorded it as the
    // current key before it was deleted; unless a DELETE took the user in between, the key must
    // not be deleted before that intent's time plus the grace (less twice the clock skew).
    for (secret, d) in &deleted_by {
        let f = fp(secret);
        // The rotation's own intent: the write that moved the user into `rotating` (a request
        // that finishes another's stalled rotation writes `rotating` again, with the grace
        // the first caller asked for).
        let Some(c) = commits.iter().rev().find(|c| {
            c.seq < d.seq
                && c.to == UserStatus::Rotating
                && c.from != Some(UserStatus::Rotating)
                && c.key.as_deref() == Some(f.as_str())
                && w.ops
                    .iter()
                    .any(|o| o.id == c.op && matches!(o.kind, OpKind::Rotate { .. }))
        }) else {
            continue;
        };
        let Some(OpKind::Rotate { grace, .. }) =
            w.ops.iter().find(|o| o.id == c.op).map(|o| o.kind)
        else {
            continue;
        };
        // A DELETE, or a rotation told to revoke the key in grace (`revoke_previous`), may
        // end the grace early: the client asked for it.
        let deprovisioned = w.ops.iter().any(|b| {
            matches!(
                b.kind,
                OpKind::Deprovision | OpKind::Rotate { revoke: true, .. }
            ) && acquisitions
                .iter()
                .any(|(o, e, seq)| *o == b.id && *e == c.user && *seq > c.seq && *seq < d.seq)
        });
        let earliest = c.world_ms + i64::from(grace) * 1000 - MAX_GRACE_SKEW_MS;
        if !deprovisioned && d.world_ms < earliest {
            let kind = w.ops.iter().find(|o| o.id == d.op).map(|o| o.kind);
            return violation(
                "(c) a replaced key lives out its grace period",
                format!(
                    "{}'s key {} was retired by op{} with grace {grace}s at t={}ms but deleted at t={}ms by op{} ({kind:?}) with {}",
                    c.user,
                    short(secret),
                    c.op,
                    c.world_ms,
                    d.world_ms,
                    d.op,
                    d.call
                ),
            );
        }
    }

    // (j) the lost answer: once a PUT on the user has answered Ok after the current key was
    // recorded, that key's secret has reached some caller (the fix 13: the first PUT
    // after a key finished without its caller carries the secret).
    for u in rows.iter().filter(|u| u.status == UserStatus::Active) {
        let Some(k) = &u.key else { continue };
        let Some(first) = commits
            .iter()
            .filter(|c| {
                c.user == u.external_id.as_str() && c.key.as_deref() == Some(&k.fingerprint)
            })
            .min_by_key(|c| c.seq)
        else {
            continue;
        };
        let recorded = first.seq;
        // A key recorded by the client request that made it was answered to that request; if
        // the answer was lost after that commit, only an Idempotency-Key replay can bring it
        // back (not modelled here). The promise checked is the issue's: a key finished by
        // recovery or by a repair, for no caller, is carried by the next PUT.
        let recorder = w.ops.iter().find(|o| o.id == first.op).map(|o| o.kind);
        if !matches!(recorder, Some(OpKind::Recovery | OpKind::Reconcile)) {
            continue;
        }
        let delivered = w.ops.iter().any(|o| {
            matches!(&o.outcome, Some(Outcome::Ok { secret: Some(s) }) if s.fingerprint() == k.fingerprint)
        });
        // A PUT that committed the hand-over (its write of the row while this key was current)
        // and then lost its answer: as above, only an Idempotency-Key replay can bring it back.
        let handed_over_then_lost = commits.iter().any(|c| {
            c.user == u.external_id.as_str()
                && c.key.as_deref() == Some(&k.fingerprint)
                && c.seq > recorded
                && w.ops.iter().any(|o| {
                    o.id == c.op
                        && o.kind == OpKind::Provision
                        && !matches!(o.outcome, Some(Outcome::Ok { .. }))
                })
        });
        if handed_over_then_lost {
            continue;
        }
        let put_after = w.ops.iter().find(|o| {
            o.kind == OpKind::Provision
                && o.user.is_some_and(|i| w.users[i] == u.external_id)
                && matches!(o.outcome, Some(Outcome::Ok { .. }))
                && o.start_seq > recorded
        });
        if let (false, Some(p)) = (delivered, put_after) {
            return violation(
                "(j) a key's secret reaches a caller (the lost answer)",
                format!(
                    "{}'s key {} never reached any caller, yet op{} (PUT) answered Ok after it was recorded",
                    u.external_id,
                    name(&k.fingerprint),
                    p.id
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
    // (d) an upstream deletion made for a client's request is in the audit log under that
    // request, whatever became of the request (issue 7, defect 8: "a DELETE that removed the
    // key and app upstream is never without a trace").
    let deleters = lock(&w.ctx.deleters).clone();
    for op in w.ops.iter().filter(|o| deleters.contains(&o.id)) {
        let tag = format!("op{}", op.id);
        if op.kind != OpKind::Recovery
            && !audit
                .iter()
                .any(|e| e.request_id.as_deref() == Some(tag.as_str()))
        {
            return violation(
                "(d) an upstream deletion is audited under the request that made it",
                format!(
                    "op{} ({:?}, answered {:?}) deleted a key or an app upstream, but no audit event carries its request id",
                    op.id, op.kind, op.outcome
                ),
            );
        }
    }
    // Checked last, so that it does not hide the other findings of a seed.
    for (i, id) in FOREIGN_APPS
        .iter()
        .enumerate()
        .filter(|_| w.ctx.faults.foreign)
    {
        if !apps.contains(*id) {
            return violation(
                "(a) apps the service does not own are never deleted",
                format!("{id} (no marker, shares the tenant's prefix) was deleted"),
            );
        }
        if !lock(&w.upstream.state).keys.contains_key(&foreign_key(i)) {
            return violation(
                "(a) apps the service does not own are never touched",
                format!("the key on {id} (no marker, shares the tenant's prefix) was deleted"),
            );
        }
    }
    check_transitions(w).or_else(|| check_leases(w, &rows))
}
