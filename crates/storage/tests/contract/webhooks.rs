//! Webhooks: endpoints, the outbox (events and their deliveries written with the audit event of
//! any write), the delivery claim, attempts, listings and requeues.

use std::collections::BTreeSet;
use std::sync::Arc;

use provisioner_core::StoreError;
use provisioner_core::model::{AuditEvent, Step, Timestamp, UserStatus};
use provisioner_core::ports::{AuditStore, TenantDeletion, TenantStore, UserStore, WebhookStore};
use provisioner_core::webhooks::{
    AttemptOutcome, Delivery, DeliveryAttempt, DeliveryStatus, Disable, EndpointSecret, EventType,
    OutboxEvent, WebhookEndpoint,
};
use provisioner_storage::SqlStore;
use serde_json::json;

use crate::fixtures::*;
use crate::users::with_tenants;

/// An enabled endpoint `id` of `tenant` wanting `types` (empty: all), created at `at`.
fn endpoint(tenant: &str, id: &str, types: &[EventType], at: Timestamp) -> WebhookEndpoint {
    WebhookEndpoint {
        id: id.into(),
        tenant_id: tid(tenant),
        url: format!("https://hooks.example.com/{id}"),
        description: None,
        event_types: types.to_vec(),
        enabled: true,
        disabled_reason: None,
        secrets: vec![EndpointSecret {
            sealed: vec![0, 1, 2, 250, 255],
            created_at: at,
            expires_at: None,
        }],
        failing_since: None,
        created_at: at,
        updated_at: at,
        version: 1,
    }
}

/// An event `id` of `tenant` at `at`.
fn outbox(tenant: &str, id: &str, t: EventType, at: Timestamp) -> OutboxEvent {
    let mut e = OutboxEvent::new(
        &tid(tenant),
        t,
        at,
        json!({"external_id": "alice", "version": 3, "nested": {"b": [1, 2], "a": null}}),
    );
    e.id = id.into();
    e
}

/// An audit event of `tenant` carrying `events`.
fn carrying(tenant: &str, action: &str, events: Vec<OutboxEvent>) -> AuditEvent {
    let mut a = event(Some(tenant), action, "x");
    a.events = events;
    a
}

async fn add(store: &SqlStore, e: &WebhookEndpoint) {
    store
        .insert_endpoint(
            e,
            &event(Some(e.tenant_id.as_str()), "webhook_endpoint.create", &e.id),
        )
        .await
        .expect("insert endpoint");
}

/// Writes `events` through the outbox of an audit append.
async fn emit(store: &SqlStore, tenant: &str, events: Vec<OutboxEvent>) {
    store
        .append_audit(&carrying(tenant, "test.emit", events))
        .await
        .expect("append");
}

async fn deliveries(store: &SqlStore, tenant: &str) -> Vec<Delivery> {
    store
        .list_deliveries(&tid(tenant), None, None, None, 1000)
        .await
        .expect("list deliveries")
}

/// (event, endpoint) of each delivery of `tenant`, sorted.
async fn pairs(store: &SqlStore, tenant: &str) -> BTreeSet<(String, String)> {
    deliveries(store, tenant)
        .await
        .into_iter()
        .map(|d| (d.event_id, d.endpoint_id))
        .collect()
}

fn pair(ev: &str, ep: &str) -> (String, String) {
    (ev.to_owned(), ep.to_owned())
}

async fn get_delivery(store: &SqlStore, tenant: &str, ev: &str, ep: &str) -> Delivery {
    deliveries(store, tenant)
        .await
        .into_iter()
        .find(|d| d.event_id == ev && d.endpoint_id == ep)
        .expect("delivery")
}

async fn count(store: &SqlStore, table: &'static str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(provisioner_storage::testing::pool(store))
        .await
        .expect("count")
}

async fn actions(store: &SqlStore, tenant: &str) -> Vec<String> {
    store
        .list_audit(Some(&tid(tenant)), None, None, 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|(e, _)| e.action)
        .collect()
}

fn attempt(ev: &str, ep: &str, n: i64, at: Timestamp, code: Option<i64>) -> DeliveryAttempt {
    DeliveryAttempt {
        event_id: ev.into(),
        endpoint_id: ep.into(),
        attempt: n,
        at,
        status_code: code,
        error: code
            .is_none_or(|c| !(200..300).contains(&c))
            .then(|| "connection refused".to_owned()),
        duration_ms: 120 + n,
    }
}

fn delivered(a: DeliveryAttempt) -> AttemptOutcome {
    AttemptOutcome {
        attempt: a,
        status: DeliveryStatus::Delivered,
        next_attempt_at: None,
        failing_since: None,
        disable: None,
    }
}

fn retry(a: DeliveryAttempt, next: Timestamp, failing_since: Timestamp) -> AttemptOutcome {
    AttemptOutcome {
        attempt: a,
        status: DeliveryStatus::Pending,
        next_attempt_at: Some(next),
        failing_since: Some(failing_since),
        disable: None,
    }
}

fn failed(a: DeliveryAttempt, failing_since: Timestamp) -> AttemptOutcome {
    AttemptOutcome {
        attempt: a,
        status: DeliveryStatus::Failed,
        next_attempt_at: None,
        failing_since: Some(failing_since),
        disable: None,
    }
}

fn keys(ds: &[Delivery]) -> Vec<(&str, &str)> {
    ds.iter()
        .map(|d| (d.event_id.as_str(), d.endpoint_id.as_str()))
        .collect()
}

pub async fn webhook_endpoints_round_trip_and_updates_are_conditioned_on_the_version(
    store: &SqlStore,
) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    let mut a = endpoint(
        "acme",
        "ep_a",
        &[
            EventType::UserProvisioned,
            EventType::WebhookEndpointDisabled,
        ],
        t0,
    );
    a.description = Some("the CRM".into());
    a.secrets.push(EndpointSecret {
        sealed: (0..=255).collect(),
        created_at: plus(t0, 1),
        expires_at: Some(plus(t0, 86_400)),
    });
    a.secrets.reverse();
    a.failing_since = Some(plus(t0, 2));
    add(store, &a).await;
    let b = endpoint("acme", "ep_b", &[], plus(t0, 5));
    add(store, &b).await;
    add(store, &endpoint("beta", "ep_c", &[], t0)).await;

    // Every field round-trips; another tenant sees none of it.
    let got = store.get_endpoint(&tid("acme"), "ep_a").await.expect("get");
    assert_eq!(got, Some(a.clone()));
    assert_eq!(
        store.get_endpoint(&tid("beta"), "ep_a").await.expect("get"),
        None
    );
    let listed = store.list_endpoints(&tid("acme")).await.expect("list");
    assert_eq!(listed, vec![a.clone(), b.clone()], "oldest first");

    // A taken id, a missing tenant.
    let dup = store
        .insert_endpoint(
            &endpoint("beta", "ep_a", &[], t0),
            &event(Some("beta"), "webhook_endpoint.create", "ep_a"),
        )
        .await;
    assert!(matches!(dup, Err(StoreError::AlreadyExists)), "{dup:?}");
    let ghost = store
        .insert_endpoint(
            &endpoint("ghost", "ep_g", &[], t0),
            &event(Some("ghost"), "webhook_endpoint.create", "ep_g"),
        )
        .await;
    assert!(matches!(ghost, Err(StoreError::NotFound)), "{ghost:?}");

    // An update writes every mutable field and bumps the version; created_at stays.
    let mut next = a.clone();
    next.url = "https://other.example.com/hook".into();
    next.description = None;
    next.event_types = vec![];
    next.enabled = false;
    next.disabled_reason = Some("operator".into());
    next.secrets.truncate(1);
    next.failing_since = None;
    next.updated_at = plus(t0, 10);
    next.created_at = plus(t0, 99);
    let audit = || event(Some("acme"), "webhook_endpoint.update", "ep_a");
    store
        .update_endpoint(&next, 1, &audit())
        .await
        .expect("update");
    let got = store
        .get_endpoint(&tid("acme"), "ep_a")
        .await
        .expect("get")
        .expect("there");
    next.created_at = a.created_at;
    next.version = 2;
    assert_eq!(got, next);

    // The old version is stale; another tenant's or a missing endpoint is not found.
    let stale = store.update_endpoint(&next, 1, &audit()).await;
    assert!(matches!(stale, Err(StoreError::Stale)), "{stale:?}");
    let mut theirs = next.clone();
    theirs.tenant_id = tid("beta");
    let other = store.update_endpoint(&theirs, 2, &audit()).await;
    assert!(matches!(other, Err(StoreError::NotFound)), "{other:?}");
    let mut gone = next.clone();
    gone.id = "ep_gone".into();
    let missing = store.update_endpoint(&gone, 2, &audit()).await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    assert_eq!(
        store.get_endpoint(&tid("acme"), "ep_a").await.expect("get"),
        Some(next)
    );

    // Deleted once; another tenant cannot delete it.
    let del = || event(Some("acme"), "webhook_endpoint.delete", "ep_b");
    assert!(
        !store
            .delete_endpoint(&tid("beta"), "ep_b", &del())
            .await
            .expect("delete")
    );
    assert!(
        store
            .delete_endpoint(&tid("acme"), "ep_b", &del())
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_endpoint(&tid("acme"), "ep_b", &del())
            .await
            .expect("delete")
    );
    assert_eq!(
        store.get_endpoint(&tid("acme"), "ep_b").await.expect("get"),
        None
    );
    assert_eq!(
        actions(store, "acme").await,
        [
            "tenant.create",
            "webhook_endpoint.create",
            "webhook_endpoint.create",
            "webhook_endpoint.update",
            "webhook_endpoint.delete",
        ]
    );
}

pub async fn an_audited_write_writes_its_webhook_events_and_one_delivery_per_wanting_endpoint(
    store: &SqlStore,
) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_all", &[], t0)).await;
    add(
        store,
        &endpoint("acme", "ep_prov", &[EventType::UserProvisioned], t0),
    )
    .await;
    add(
        store,
        &endpoint(
            "acme",
            "ep_jobs",
            &[EventType::JobCompleted, EventType::UserKeyRotated],
            t0,
        ),
    )
    .await;
    let mut off = endpoint("acme", "ep_off", &[], t0);
    off.enabled = false;
    add(store, &off).await;
    add(store, &endpoint("beta", "ep_beta", &[], t0)).await;

    // Act: an audit append carrying two events.
    let e1 = outbox("acme", "msg_001", EventType::UserProvisioned, plus(t0, 1));
    let e2 = outbox("acme", "msg_002", EventType::JobCompleted, plus(t0, 2));
    emit(store, "acme", vec![e1.clone(), e2.clone()]).await;

    // The events, with the exact body.
    for e in [&e1, &e2] {
        let (stored, body) = store.get_event(&e.id).await.expect("get").expect("event");
        assert_eq!(&stored, e);
        assert_eq!(body, e.body());
    }
    assert_eq!(store.get_event("msg_nope").await.expect("get"), None);
    // One delivery per enabled endpoint of the tenant that wants the type.
    assert_eq!(
        pairs(store, "acme").await,
        BTreeSet::from([
            pair("msg_001", "ep_all"),
            pair("msg_001", "ep_prov"),
            pair("msg_002", "ep_all"),
            pair("msg_002", "ep_jobs"),
        ])
    );
    assert!(deliveries(store, "beta").await.is_empty());
    // Pending, due at once, nothing attempted.
    let d = get_delivery(store, "acme", "msg_001", "ep_prov").await;
    assert_eq!(
        d,
        Delivery {
            event_id: "msg_001".into(),
            endpoint_id: "ep_prov".into(),
            tenant_id: tid("acme"),
            event_type: EventType::UserProvisioned,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: None,
            last_status: None,
            last_error: None,
            created_at: e1.at,
            updated_at: e1.at,
        }
    );

    // A user write's audit event carries its events the same way.
    let u = user("acme", "alice", "op-1");
    store.insert_user(&u, None).await.expect("insert");
    let mut next = u.clone();
    next.status = UserStatus::Active;
    next.step = Step::Idle;
    let e3 = outbox("acme", "msg_003", EventType::UserKeyRotated, plus(t0, 3));
    store
        .update_user(
            &next,
            "op-1",
            Some(&carrying("acme", "user.rotate", vec![e3.clone()])),
        )
        .await
        .expect("update");
    let (stored, body) = store
        .get_event("msg_003")
        .await
        .expect("get")
        .expect("event");
    assert_eq!((stored, body), (e3.clone(), e3.body()));
    let got = pairs(store, "acme").await;
    assert!(got.contains(&pair("msg_003", "ep_all")), "{got:?}");
    assert!(got.contains(&pair("msg_003", "ep_jobs")), "{got:?}");
    assert_eq!(got.len(), 6, "{got:?}");
    assert_eq!(count(store, "webhook_events").await, 3);
}

pub async fn a_write_that_fails_writes_none_of_its_webhook_events(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_all", &[], t0)).await;
    let u = user("acme", "alice", "op-1");
    store.insert_user(&u, None).await.expect("insert");
    let mut next = u.clone();
    next.status = UserStatus::Active;
    next.step = Step::Idle;

    // A lease held by someone else: the write fails before its audit event.
    let e1 = outbox("acme", "msg_001", EventType::UserProvisioned, t0);
    let out = store
        .update_user(
            &next,
            "op-2",
            Some(&carrying("acme", "user.provision", vec![e1])),
        )
        .await;
    assert!(matches!(out, Err(StoreError::Stale)), "{out:?}");

    // The audit insert itself fails (a taken id), after the outbox was written: all of it
    // rolls back with the change.
    let first = store
        .list_audit(Some(&tid("acme")), None, None, 1)
        .await
        .expect("audit")
        .remove(0)
        .0;
    let mut dup = carrying(
        "acme",
        "user.provision",
        vec![outbox("acme", "msg_002", EventType::UserProvisioned, t0)],
    );
    dup.id = first.id.clone();
    let out = store.update_user(&next, "op-1", Some(&dup)).await;
    assert!(matches!(out, Err(StoreError::Backend(_))), "{out:?}");
    dup.events = vec![outbox("acme", "msg_003", EventType::UserProvisioned, t0)];
    let out = store.append_audit(&dup).await;
    assert!(matches!(out, Err(StoreError::AlreadyExists)), "{out:?}");

    // A taken event id fails the write too (as a backend failure, not "already exists").
    emit(
        store,
        "acme",
        vec![outbox("acme", "msg_004", EventType::UserProvisioned, t0)],
    )
    .await;
    let again = carrying(
        "acme",
        "user.provision",
        vec![outbox("acme", "msg_004", EventType::UserProvisioned, t0)],
    );
    let out = store.update_user(&next, "op-1", Some(&again)).await;
    assert!(matches!(out, Err(StoreError::Backend(_))), "{out:?}");

    for id in ["msg_001", "msg_002", "msg_003"] {
        assert_eq!(store.get_event(id).await.expect("get"), None, "{id}");
    }
    assert_eq!(
        pairs(store, "acme").await,
        BTreeSet::from([pair("msg_004", "ep_all")])
    );
    assert_eq!(
        store
            .get_user(&u.tenant_id, &u.external_id)
            .await
            .expect("get")
            .expect("user")
            .status,
        UserStatus::Provisioning,
        "the change rolled back with its events"
    );
}

pub async fn the_webhook_delivery_claim_takes_due_deliveries_of_enabled_endpoints_earliest_first(
    store: &SqlStore,
) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    add(store, &endpoint("acme", "ep_b", &[], t0)).await;
    add(store, &endpoint("beta", "ep_c", &[], t0)).await;
    let ev = |tenant, id, secs| outbox(tenant, id, EventType::UserProvisioned, plus(t0, secs));
    emit(
        store,
        "acme",
        vec![ev("acme", "msg_1", 3), ev("acme", "msg_2", 1)],
    )
    .await;
    emit(store, "beta", vec![ev("beta", "msg_3", 2)]).await;
    // ep_b is disabled after its deliveries were written: they wait, unclaimed.
    let mut b = store
        .get_endpoint(&tid("acme"), "ep_b")
        .await
        .expect("get")
        .expect("ep_b");
    b.enabled = false;
    store
        .update_endpoint(
            &b,
            1,
            &event(Some("acme"), "webhook_endpoint.update", "ep_b"),
        )
        .await
        .expect("disable");

    // Earliest due first (never attempted: due since created), across tenants.
    let now = plus(t0, 100);
    let until = plus(now, 60);
    let got = store.claim_deliveries(now, until, 1).await.expect("claim");
    assert_eq!(keys(&got), [("msg_2", "ep_a")]);
    assert_eq!(got[0].next_attempt_at, Some(until), "returned as stored");
    assert_eq!(got[0].status, DeliveryStatus::Pending);
    let got = store.claim_deliveries(now, until, 10).await.expect("claim");
    assert_eq!(keys(&got), [("msg_3", "ep_c"), ("msg_1", "ep_a")]);
    // Everything due is claimed: nothing more until a claim lapses.
    assert!(
        store
            .claim_deliveries(plus(now, 59), until, 10)
            .await
            .expect("claim")
            .is_empty()
    );

    // msg_2 is retried at now + 30 (due before the others' claims lapse); msg_3 delivered.
    store
        .record_attempt(
            &tid("acme"),
            &retry(
                attempt("msg_2", "ep_a", 1, plus(now, 1), Some(503)),
                plus(now, 30),
                plus(now, 1),
            ),
        )
        .await
        .expect("record");
    store
        .record_attempt(
            &tid("beta"),
            &delivered(attempt("msg_3", "ep_c", 1, plus(now, 1), Some(200))),
        )
        .await
        .expect("record");
    assert!(
        store
            .claim_deliveries(plus(now, 29), plus(now, 200), 10)
            .await
            .expect("claim")
            .is_empty(),
        "not due yet"
    );
    let got = store
        .claim_deliveries(plus(now, 30), plus(now, 200), 10)
        .await
        .expect("claim");
    assert_eq!(keys(&got), [("msg_2", "ep_a")]);
    // msg_1's claim lapsed at now + 60; msg_2's holds until now + 200.
    let got = store
        .claim_deliveries(plus(now, 60), plus(now, 300), 10)
        .await
        .expect("claim");
    assert_eq!(keys(&got), [("msg_1", "ep_a")]);

    // Enabled again, ep_b's waiting deliveries are claimed.
    let mut b = store
        .get_endpoint(&tid("acme"), "ep_b")
        .await
        .expect("get")
        .expect("ep_b");
    b.enabled = true;
    store
        .update_endpoint(
            &b,
            2,
            &event(Some("acme"), "webhook_endpoint.update", "ep_b"),
        )
        .await
        .expect("enable");
    let got = store
        .claim_deliveries(plus(now, 60), plus(now, 300), 10)
        .await
        .expect("claim");
    assert_eq!(keys(&got), [("msg_2", "ep_b"), ("msg_1", "ep_b")]);
    assert!(
        store
            .claim_deliveries(plus(now, 100), plus(now, 300), 0)
            .await
            .expect("claim")
            .is_empty(),
        "a limit of 0 claims nothing"
    );
}

pub async fn concurrent_webhook_delivery_claimers_never_share_a_delivery(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    add(store, &endpoint("acme", "ep_b", &[], t0)).await;
    let mut off = endpoint("acme", "ep_off", &[], t0);
    add(store, &off).await;
    let events = (0..20)
        .map(|n| {
            outbox(
                "acme",
                &format!("msg_{n:03}"),
                EventType::UserProvisioned,
                plus(t0, n),
            )
        })
        .collect();
    emit(store, "acme", events).await;
    off.enabled = false;
    store
        .update_endpoint(
            &off,
            1,
            &event(Some("acme"), "webhook_endpoint.update", "x"),
        )
        .await
        .expect("disable");

    let store = Arc::new(store.clone());
    let at = plus(t0, 100);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s
                    .claim_deliveries(at, plus(at, 60), 3)
                    .await
                    .expect("claim");
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|d| (d.event_id, d.endpoint_id)));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let distinct: BTreeSet<&(String, String)> = all.iter().collect();
    assert_eq!(all.len(), 40, "each delivery claimed once: {all:?}");
    assert_eq!(distinct.len(), 40);
    assert!(all.iter().all(|(_, ep)| ep != "ep_off"), "{all:?}");
}

pub async fn recording_webhook_attempts_updates_the_delivery_and_the_endpoint(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    add(store, &endpoint("acme", "ep_b", &[], t0)).await;
    emit(
        store,
        "acme",
        vec![outbox("acme", "msg_1", EventType::UserProvisioned, t0)],
    )
    .await;

    // A failure, retried later: the endpoint is failing since then.
    let a1 = attempt("msg_1", "ep_a", 1, plus(t0, 1), None);
    store
        .record_attempt(&tid("acme"), &retry(a1.clone(), plus(t0, 31), plus(t0, 1)))
        .await
        .expect("record");
    let d = get_delivery(store, "acme", "msg_1", "ep_a").await;
    assert_eq!(
        (
            d.status,
            d.attempts,
            d.next_attempt_at,
            d.last_status,
            d.last_error.as_deref(),
            d.updated_at
        ),
        (
            DeliveryStatus::Pending,
            1,
            Some(plus(t0, 31)),
            None,
            Some("connection refused"),
            plus(t0, 1)
        )
    );
    let ep = |id: &'static str| async move {
        store
            .get_endpoint(&tid("acme"), id)
            .await
            .expect("get")
            .expect("endpoint")
    };
    let a = ep("ep_a").await;
    assert_eq!(a.failing_since, Some(plus(t0, 1)));
    assert_eq!((a.enabled, a.version), (true, 1));

    // A 500, then a 200: delivered, and the endpoint works again.
    let a2 = attempt("msg_1", "ep_a", 2, plus(t0, 31), Some(500));
    store
        .record_attempt(&tid("acme"), &retry(a2.clone(), plus(t0, 90), plus(t0, 1)))
        .await
        .expect("record");
    let a3 = attempt("msg_1", "ep_a", 3, plus(t0, 90), Some(204));
    store
        .record_attempt(&tid("acme"), &delivered(a3.clone()))
        .await
        .expect("record");
    let d = get_delivery(store, "acme", "msg_1", "ep_a").await;
    assert_eq!(
        (
            d.status,
            d.attempts,
            d.next_attempt_at,
            d.last_status,
            d.last_error
        ),
        (DeliveryStatus::Delivered, 3, None, Some(204), None)
    );
    assert_eq!(ep("ep_a").await.failing_since, None);

    // ep_b fails for good.
    let b1 = attempt("msg_1", "ep_b", 1, plus(t0, 2), Some(404));
    store
        .record_attempt(&tid("acme"), &failed(b1.clone(), plus(t0, 2)))
        .await
        .expect("record");
    let d = get_delivery(store, "acme", "msg_1", "ep_b").await;
    assert_eq!(
        (d.status, d.attempts, d.last_status),
        (DeliveryStatus::Failed, 1, Some(404))
    );

    // The attempts, in order; of one endpoint; none for another tenant.
    let all = store
        .list_attempts(&tid("acme"), "msg_1", None)
        .await
        .expect("attempts");
    assert_eq!(all, vec![a1.clone(), b1.clone(), a2.clone(), a3.clone()]);
    let of_a = store
        .list_attempts(&tid("acme"), "msg_1", Some("ep_a"))
        .await
        .expect("attempts");
    assert_eq!(of_a, vec![a1, a2, a3]);
    assert!(
        store
            .list_attempts(&tid("beta"), "msg_1", None)
            .await
            .expect("attempts")
            .is_empty()
    );

    // Another tenant's delivery, or a missing one: nothing is written.
    let theirs = store
        .record_attempt(
            &tid("beta"),
            &delivered(attempt("msg_1", "ep_b", 2, plus(t0, 3), Some(200))),
        )
        .await;
    assert!(matches!(theirs, Err(StoreError::NotFound)), "{theirs:?}");
    let missing = store
        .record_attempt(
            &tid("acme"),
            &delivered(attempt("msg_9", "ep_b", 1, plus(t0, 3), Some(200))),
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)), "{missing:?}");
    assert_eq!(
        ep("ep_b").await.failing_since,
        Some(plus(t0, 2)),
        "unchanged"
    );
    assert_eq!(count(store, "webhook_attempts").await, 4);

    // Two workers that sent the same delivery (a lapsed claim) both record: numbered in turn.
    let late = attempt("msg_1", "ep_b", 1, plus(t0, 4), Some(200));
    store
        .record_attempt(&tid("acme"), &delivered(late.clone()))
        .await
        .expect("record");
    let of_b = store
        .list_attempts(&tid("acme"), "msg_1", Some("ep_b"))
        .await
        .expect("attempts");
    assert_eq!(
        of_b.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2],
        "{of_b:?}"
    );
}

pub async fn disabling_a_webhook_endpoint_writes_its_event_to_the_other_endpoints(
    store: &SqlStore,
) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    add(store, &endpoint("acme", "ep_b", &[], t0)).await;
    add(
        store,
        &endpoint("acme", "ep_prov", &[EventType::UserProvisioned], t0),
    )
    .await;
    add(
        store,
        &endpoint("acme", "ep_dis", &[EventType::WebhookEndpointDisabled], t0),
    )
    .await;
    let mut off = endpoint("acme", "ep_off", &[], t0);
    off.enabled = false;
    add(store, &off).await;
    add(store, &endpoint("beta", "ep_beta", &[], t0)).await;
    emit(
        store,
        "acme",
        vec![outbox("acme", "msg_1", EventType::UserProvisioned, t0)],
    )
    .await;

    // ep_a answers 410: its delivery fails, it is disabled, and its event is written.
    let gone = outbox(
        "acme",
        "msg_gone",
        EventType::WebhookEndpointDisabled,
        plus(t0, 5),
    );
    let outcome = AttemptOutcome {
        disable: Some(Disable {
            reason: "the endpoint answered 410 Gone".into(),
            event: gone.clone(),
            if_failing_since: plus(t0, 5),
        }),
        ..failed(
            attempt("msg_1", "ep_a", 1, plus(t0, 5), Some(410)),
            plus(t0, 5),
        )
    };
    store
        .record_attempt(&tid("acme"), &outcome)
        .await
        .expect("record");
    let a = store
        .get_endpoint(&tid("acme"), "ep_a")
        .await
        .expect("get")
        .expect("ep_a");
    assert!(!a.enabled);
    assert_eq!(
        a.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
    assert_eq!((a.version, a.updated_at), (2, plus(t0, 5)));
    assert_eq!(
        get_delivery(store, "acme", "msg_1", "ep_a").await.status,
        DeliveryStatus::Failed
    );
    let (stored, body) = store
        .get_event("msg_gone")
        .await
        .expect("get")
        .expect("event");
    assert_eq!((stored, body), (gone.clone(), gone.body()));
    // To the tenant's other enabled endpoints that want it: not ep_a (disabled first), not
    // ep_prov (not its type), not ep_off, not another tenant's.
    let got: BTreeSet<(String, String)> = pairs(store, "acme")
        .await
        .into_iter()
        .filter(|(ev, _)| ev == "msg_gone")
        .collect();
    assert_eq!(
        got,
        BTreeSet::from([pair("msg_gone", "ep_b"), pair("msg_gone", "ep_dis")])
    );
    assert!(deliveries(store, "beta").await.is_empty());
    // A disabled endpoint's pending delivery is not claimed; the others are.
    let claimed = store
        .claim_deliveries(plus(t0, 10), plus(t0, 70), 10)
        .await
        .expect("claim");
    assert!(
        claimed.iter().all(|d| d.endpoint_id != "ep_a"),
        "{claimed:?}"
    );

    // ep_b fails for days and is disabled: its event goes to ep_dis only (ep_a and ep_b are
    // disabled by then).
    let again = AttemptOutcome {
        disable: Some(Disable {
            reason: "failing for 5 days".into(),
            event: outbox(
                "acme",
                "msg_gone2",
                EventType::WebhookEndpointDisabled,
                plus(t0, 6),
            ),
            if_failing_since: plus(t0, 6),
        }),
        ..failed(
            attempt("msg_gone", "ep_b", 1, plus(t0, 6), Some(500)),
            plus(t0, 6),
        )
    };
    store
        .record_attempt(&tid("acme"), &again)
        .await
        .expect("record");
    let b = store
        .get_endpoint(&tid("acme"), "ep_b")
        .await
        .expect("get")
        .expect("ep_b");
    assert!(!b.enabled);
    // Another worker disabling it late changes nothing and writes no second event.
    let again2 = AttemptOutcome {
        disable: Some(Disable {
            reason: "failing for 6 days".into(),
            event: outbox(
                "acme",
                "msg_gone3",
                EventType::WebhookEndpointDisabled,
                plus(t0, 7),
            ),
            if_failing_since: plus(t0, 7),
        }),
        ..failed(
            attempt("msg_1", "ep_b", 1, plus(t0, 7), Some(500)),
            plus(t0, 6),
        )
    };
    store
        .record_attempt(&tid("acme"), &again2)
        .await
        .expect("record");
    let b2 = store
        .get_endpoint(&tid("acme"), "ep_b")
        .await
        .expect("get")
        .expect("ep_b");
    assert_eq!(b2.disabled_reason.as_deref(), Some("failing for 5 days"));
    assert_eq!(b2.version, b.version, "not disabled twice");
    assert_eq!(store.get_event("msg_gone3").await.expect("get"), None);
    let got: BTreeSet<(String, String)> = pairs(store, "acme")
        .await
        .into_iter()
        .filter(|(ev, _)| ev == "msg_gone2")
        .collect();
    assert_eq!(got, BTreeSet::from([pair("msg_gone2", "ep_dis")]));
}

pub async fn webhook_deliveries_list_newest_event_first_with_filters_and_pages(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    add(store, &endpoint("acme", "ep_b", &[], t0)).await;
    add(store, &endpoint("beta", "ep_c", &[], t0)).await;
    for n in 1..=3 {
        emit(
            store,
            "acme",
            vec![outbox(
                "acme",
                &format!("msg_{n}"),
                EventType::UserProvisioned,
                plus(t0, n),
            )],
        )
        .await;
    }
    emit(
        store,
        "beta",
        vec![outbox("beta", "msg_9", EventType::UserProvisioned, t0)],
    )
    .await;
    store
        .record_attempt(
            &tid("acme"),
            &failed(attempt("msg_2", "ep_b", 1, t0, Some(500)), t0),
        )
        .await
        .expect("record");
    store
        .record_attempt(
            &tid("acme"),
            &delivered(attempt("msg_3", "ep_a", 1, t0, Some(200))),
        )
        .await
        .expect("record");

    let list = |endpoint: Option<&'static str>,
                status: Option<DeliveryStatus>,
                after: Option<(&'static str, &'static str)>,
                limit: u32| async move {
        store
            .list_deliveries(&tid("acme"), endpoint, status, after, limit)
            .await
            .expect("list")
    };
    let all = list(None, None, None, 100).await;
    assert_eq!(
        keys(&all),
        [
            ("msg_3", "ep_a"),
            ("msg_3", "ep_b"),
            ("msg_2", "ep_a"),
            ("msg_2", "ep_b"),
            ("msg_1", "ep_a"),
            ("msg_1", "ep_b"),
        ]
    );
    // Pages of 4 then the rest, resuming after the last delivery of a page.
    let first = list(None, None, None, 4).await;
    assert_eq!(keys(&first), keys(&all[..4]));
    let rest = list(None, None, Some(("msg_2", "ep_b")), 4).await;
    assert_eq!(keys(&rest), keys(&all[4..]));
    let mid = list(None, None, Some(("msg_3", "ep_a")), 2).await;
    assert_eq!(keys(&mid), [("msg_3", "ep_b"), ("msg_2", "ep_a")]);
    // One endpoint, one status, both.
    assert_eq!(
        keys(&list(Some("ep_b"), None, None, 100).await),
        [("msg_3", "ep_b"), ("msg_2", "ep_b"), ("msg_1", "ep_b")]
    );
    assert_eq!(
        keys(&list(None, Some(DeliveryStatus::Pending), None, 100).await),
        [
            ("msg_3", "ep_b"),
            ("msg_2", "ep_a"),
            ("msg_1", "ep_a"),
            ("msg_1", "ep_b"),
        ]
    );
    assert_eq!(
        keys(&list(Some("ep_b"), Some(DeliveryStatus::Failed), None, 100).await),
        [("msg_2", "ep_b")]
    );
    assert_eq!(
        keys(
            &list(
                Some("ep_a"),
                Some(DeliveryStatus::Pending),
                Some(("msg_2", "ep_a")),
                100
            )
            .await
        ),
        [("msg_1", "ep_a")]
    );
    assert!(list(Some("ep_c"), None, None, 100).await.is_empty());
    assert_eq!(keys(&deliveries(store, "beta").await), [("msg_9", "ep_c")]);
}

pub async fn webhook_requeue_resends_one_delivery_or_recovers_failed_ones(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    add(store, &endpoint("acme", "ep_b", &[], t0)).await;
    for n in 1..=4 {
        emit(
            store,
            "acme",
            vec![outbox(
                "acme",
                &format!("msg_{n}"),
                EventType::UserProvisioned,
                plus(t0, n * 10),
            )],
        )
        .await;
    }
    // On ep_a: msg_1 delivered, msg_2..msg_4 failed. On ep_b: msg_1 failed.
    let at = plus(t0, 100);
    store
        .record_attempt(
            &tid("acme"),
            &delivered(attempt("msg_1", "ep_a", 1, at, Some(200))),
        )
        .await
        .expect("record");
    for ev in ["msg_2", "msg_3", "msg_4"] {
        store
            .record_attempt(
                &tid("acme"),
                &failed(attempt(ev, "ep_a", 1, at, Some(500)), at),
            )
            .await
            .expect("record");
    }
    store
        .record_attempt(
            &tid("acme"),
            &failed(attempt("msg_1", "ep_b", 1, at, Some(500)), at),
        )
        .await
        .expect("record");
    let audit = || event(Some("acme"), "webhook_endpoint.requeue", "ep_a");
    let now = plus(t0, 200);

    // A resend: the one delivery, whatever its status (here delivered).
    let n = store
        .requeue_deliveries(&tid("acme"), "ep_a", Some("msg_1"), None, now, &audit())
        .await
        .expect("resend");
    assert_eq!(n, 1);
    let d = get_delivery(store, "acme", "msg_1", "ep_a").await;
    assert_eq!(
        (d.status, d.next_attempt_at, d.updated_at, d.attempts),
        (DeliveryStatus::Pending, Some(now), now, 1)
    );
    // A recovery of the failed ones whose event is not older than msg_3's.
    let n = store
        .requeue_deliveries(
            &tid("acme"),
            "ep_a",
            None,
            Some(plus(t0, 30)),
            now,
            &audit(),
        )
        .await
        .expect("recover");
    assert_eq!(n, 2);
    let pending: Vec<(String, String)> = store
        .list_deliveries(&tid("acme"), None, Some(DeliveryStatus::Pending), None, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|d| (d.event_id, d.endpoint_id))
        .collect();
    assert_eq!(
        pending,
        [
            pair("msg_4", "ep_a"),
            pair("msg_4", "ep_b"),
            pair("msg_3", "ep_a"),
            pair("msg_3", "ep_b"),
            pair("msg_2", "ep_b"),
            pair("msg_1", "ep_a"),
        ]
    );
    assert_eq!(
        get_delivery(store, "acme", "msg_2", "ep_a").await.status,
        DeliveryStatus::Failed
    );
    // Every failed one (no bound); only the endpoint named; never another tenant's.
    let n = store
        .requeue_deliveries(
            &tid("beta"),
            "ep_a",
            None,
            None,
            now,
            &event(Some("beta"), "webhook_endpoint.requeue", "ep_a"),
        )
        .await
        .expect("recover");
    assert_eq!(n, 0);
    let n = store
        .requeue_deliveries(&tid("acme"), "ep_a", None, None, now, &audit())
        .await
        .expect("recover");
    assert_eq!(n, 1);
    assert_eq!(
        get_delivery(store, "acme", "msg_1", "ep_b").await.status,
        DeliveryStatus::Failed
    );
    // Requeued deliveries are due at `now`, and claimed.
    let claimed = store
        .claim_deliveries(now, plus(now, 60), 100)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 7, "{claimed:?}");
    // A resent delivery's attempts keep counting.
    store
        .record_attempt(
            &tid("acme"),
            &delivered(attempt("msg_1", "ep_a", 2, plus(now, 1), Some(200))),
        )
        .await
        .expect("record");
    let attempts = store
        .list_attempts(&tid("acme"), "msg_1", Some("ep_a"))
        .await
        .expect("attempts");
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        actions(store, "acme")
            .await
            .iter()
            .filter(|a| a.as_str() == "webhook_endpoint.requeue")
            .count(),
        3
    );
}

pub async fn deleting_an_endpoint_or_tenant_takes_its_webhook_records(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    add(store, &endpoint("acme", "ep_b", &[], t0)).await;
    add(store, &endpoint("beta", "ep_c", &[], t0)).await;
    emit(
        store,
        "acme",
        vec![outbox("acme", "msg_1", EventType::UserProvisioned, t0)],
    )
    .await;
    emit(
        store,
        "beta",
        vec![outbox("beta", "msg_2", EventType::UserProvisioned, t0)],
    )
    .await;
    for (tenant, ev, ep) in [
        ("acme", "msg_1", "ep_a"),
        ("acme", "msg_1", "ep_b"),
        ("beta", "msg_2", "ep_c"),
    ] {
        store
            .record_attempt(&tid(tenant), &failed(attempt(ev, ep, 1, t0, Some(500)), t0))
            .await
            .expect("record");
    }

    assert!(
        store
            .delete_endpoint(
                &tid("acme"),
                "ep_a",
                &event(Some("acme"), "webhook_endpoint.delete", "ep_a")
            )
            .await
            .expect("delete")
    );
    assert_eq!(
        pairs(store, "acme").await,
        BTreeSet::from([pair("msg_1", "ep_b")])
    );
    assert_eq!(count(store, "webhook_attempts").await, 2);
    assert!(store.get_event("msg_1").await.expect("get").is_some());

    let out = store
        .delete_tenant(&tid("acme"), &event(Some("acme"), "tenant.delete", "acme"))
        .await
        .expect("delete");
    assert_eq!(out, TenantDeletion::Deleted);
    assert_eq!(store.get_event("msg_1").await.expect("get"), None);
    assert!(
        store
            .list_endpoints(&tid("acme"))
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(count(store, "webhook_endpoints").await, 1);
    assert_eq!(count(store, "webhook_deliveries").await, 1);
    assert_eq!(count(store, "webhook_attempts").await, 1);
    assert_eq!(count(store, "webhook_events").await, 1);
}

pub async fn a_webhook_endpoint_deleted_during_a_write_gets_no_delivery(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    add(store, &endpoint("acme", "ep_b", &[], t0)).await;

    // ep_b is being deleted (not committed yet) when a write's events are written: the write
    // waits for the deletion, then skips ep_b (it does not fail on ep_b's foreign key).
    let mut tx = provisioner_storage::testing::pool(store)
        .begin()
        .await
        .expect("begin");
    sqlx::query("DELETE FROM webhook_endpoints WHERE id = 'ep_b'")
        .execute(&mut *tx)
        .await
        .expect("delete");
    let s = Arc::new(store.clone());
    let write = tokio::spawn(async move {
        emit(
            &s,
            "acme",
            vec![outbox("acme", "msg_1", EventType::UserProvisioned, t0)],
        )
        .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!write.is_finished(), "the write waits for the deletion");
    tx.commit().await.expect("commit");
    write.await.expect("join");
    assert_eq!(
        pairs(store, "acme").await,
        BTreeSet::from([pair("msg_1", "ep_a")])
    );
}

/// Found in review: a late failure never undoes a delivery; the failure clock is the
/// database's (a stale read cannot restart or keep it); a disable asked on a stale read of the
/// clock does nothing after a success; an event no endpoint wants is not kept.
pub async fn late_attempts_and_stale_failure_clocks_change_nothing(store: &SqlStore) {
    with_tenants(store, &["acme", "beta"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    emit(
        store,
        "acme",
        vec![outbox("acme", "msg_1", EventType::UserProvisioned, t0)],
    )
    .await;
    // A failure starts the clock at t0+1; a later failure (its read older) keeps t0+1.
    store
        .record_attempt(
            &tid("acme"),
            &retry(
                attempt("msg_1", "ep_a", 1, plus(t0, 1), Some(500)),
                plus(t0, 60),
                plus(t0, 1),
            ),
        )
        .await
        .expect("record");
    store
        .record_attempt(
            &tid("acme"),
            &retry(
                attempt("msg_1", "ep_a", 2, plus(t0, 2), Some(500)),
                plus(t0, 60),
                plus(t0, 2),
            ),
        )
        .await
        .expect("record");
    let ep = store
        .get_endpoint(&tid("acme"), "ep_a")
        .await
        .expect("get")
        .expect("ep");
    assert_eq!(ep.failing_since, Some(plus(t0, 1)));
    // Delivered: the clock stops; then a late failure (a resend racing the send) changes
    // nothing, and a disable asked on a stale read does nothing either.
    store
        .record_attempt(
            &tid("acme"),
            &delivered(attempt("msg_1", "ep_a", 3, plus(t0, 3), Some(200))),
        )
        .await
        .expect("record");
    let mut late = failed(
        attempt("msg_1", "ep_a", 4, plus(t0, 4), Some(500)),
        plus(t0, 1),
    );
    late.disable = Some(Disable {
        reason: "failing for 5 days".into(),
        event: outbox(
            "acme",
            "msg_dis",
            EventType::WebhookEndpointDisabled,
            plus(t0, 4),
        ),
        if_failing_since: plus(t0, 1),
    });
    store
        .record_attempt(&tid("acme"), &late)
        .await
        .expect("record");
    assert_eq!(
        get_delivery(store, "acme", "msg_1", "ep_a").await.status,
        DeliveryStatus::Delivered
    );
    let ep = store
        .get_endpoint(&tid("acme"), "ep_a")
        .await
        .expect("get")
        .expect("ep");
    assert!(ep.enabled, "disabled on a stale clock");
    assert_eq!(ep.failing_since, None);
    // A failure on another delivery now restarts the clock; a disable asking for a clock
    // older than it does nothing.
    emit(
        store,
        "acme",
        vec![outbox(
            "acme",
            "msg_2",
            EventType::UserProvisioned,
            plus(t0, 5),
        )],
    )
    .await;
    let mut stale = failed(
        attempt("msg_2", "ep_a", 1, plus(t0, 6), Some(500)),
        plus(t0, 6),
    );
    stale.disable = Some(Disable {
        reason: "failing for 5 days".into(),
        event: outbox(
            "acme",
            "msg_dis2",
            EventType::WebhookEndpointDisabled,
            plus(t0, 6),
        ),
        if_failing_since: plus(t0, 1),
    });
    store
        .record_attempt(&tid("acme"), &stale)
        .await
        .expect("record");
    let ep = store
        .get_endpoint(&tid("acme"), "ep_a")
        .await
        .expect("get")
        .expect("ep");
    assert!(ep.enabled);
    assert!(store.get_event("msg_dis2").await.expect("get").is_none());
    // beta has no endpoint: its events are not kept.
    emit(
        store,
        "beta",
        vec![outbox("beta", "msg_nobody", EventType::UserProvisioned, t0)],
    )
    .await;
    assert!(store.get_event("msg_nobody").await.expect("get").is_none());
}

/// Ended deliveries older than the retention go with their attempts, and events left without a
/// delivery with them; pending ones and recent ones stay.
pub async fn old_ended_webhook_messages_are_purged(store: &SqlStore) {
    with_tenants(store, &["acme"]).await;
    let t0 = now();
    add(store, &endpoint("acme", "ep_a", &[], t0)).await;
    emit(
        store,
        "acme",
        vec![
            outbox("acme", "msg_old_ok", EventType::UserProvisioned, t0),
            outbox("acme", "msg_old_failed", EventType::UserProvisioned, t0),
            outbox("acme", "msg_old_pending", EventType::UserProvisioned, t0),
            outbox("acme", "msg_new_ok", EventType::UserProvisioned, t0),
        ],
    )
    .await;
    let rec = |o: AttemptOutcome| async move {
        store
            .record_attempt(&tid("acme"), &o)
            .await
            .expect("record")
    };
    rec(delivered(attempt(
        "msg_old_ok",
        "ep_a",
        1,
        plus(t0, 1),
        Some(200),
    )))
    .await;
    rec(failed(
        attempt("msg_old_failed", "ep_a", 1, plus(t0, 1), Some(500)),
        plus(t0, 1),
    ))
    .await;
    rec(delivered(attempt(
        "msg_new_ok",
        "ep_a",
        1,
        plus(t0, 100),
        Some(200),
    )))
    .await;
    let n = store
        .purge_webhook_history(plus(t0, 50))
        .await
        .expect("purge");
    assert_eq!(n, 2);
    let left: BTreeSet<(String, String)> = pairs(store, "acme").await;
    assert_eq!(
        left,
        BTreeSet::from([pair("msg_new_ok", "ep_a"), pair("msg_old_pending", "ep_a")])
    );
    assert!(store.get_event("msg_old_ok").await.expect("get").is_none());
    assert!(
        store
            .get_event("msg_old_pending")
            .await
            .expect("get")
            .is_some()
    );
    assert!(
        store
            .list_attempts(&tid("acme"), "msg_old_failed", None)
            .await
            .expect("attempts")
            .is_empty()
    );
}
