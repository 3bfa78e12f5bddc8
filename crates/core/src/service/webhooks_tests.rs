//! Events through the outbox and their delivery, over in-memory ports and a scripted sender on
//! a virtual clock: which operations write which events, the retry schedule, disabling,
//! secret rotation, resend and recover, and at-least-once delivery across a crash.

use std::sync::Arc;
use std::time::Duration;

use super::tests::{actor, ext, put_default, tid, with_tenant};
use super::*;
use crate::error::UpstreamError;
use crate::ports::{UserStore, WebhookStore};
use crate::testing::{Call, FakeSender, Fault, TestService};
use crate::webhooks::{DeliveryStatus, EventType, SendResult};

fn deliverer(t: &TestService, sender: &Arc<FakeSender>) -> WebhookDeliverer {
    WebhookDeliverer::new(
        t.store.clone(),
        sender.clone(),
        t.sealer.clone(),
        t.clock.clone(),
        DeliveryConfig::default(),
    )
}

async fn endpoint(t: &TestService, types: &[EventType]) -> IssuedEndpoint {
    t.service
        .create_webhook_endpoint(
            &actor(),
            &tid(),
            NewEndpoint {
                url: "https://hooks.acme.example/provisioner".into(),
                description: None,
                event_types: types.to_vec(),
            },
        )
        .await
        .unwrap()
}

fn types_sent(sender: &FakeSender) -> Vec<String> {
    sender
        .sent()
        .iter()
        .map(|s| {
            serde_json::from_str::<serde_json::Value>(&s.body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_operation_writes_its_event_and_it_is_delivered_signed_and_thin() {
    let t = with_tenant().await;
    let ep = endpoint(&t, &[]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    let e = ext("ann");
    let p = t
        .service
        .provision(&actor(), &tid(), &e, put_default())
        .await
        .unwrap();
    let secret = p.secret.unwrap();
    let r = t
        .service
        .rotate_key(&actor(), &tid(), &e, 0, false)
        .await
        .unwrap();
    let rotated = r.secret.unwrap();
    t.service.deprovision(&actor(), &tid(), &e).await.unwrap();
    let report = d.run_pass(10).await.unwrap();
    assert_eq!(report.delivered, 3);
    assert_eq!(
        types_sent(&sender),
        ["user.provisioned", "user.key_rotated", "user.deprovisioned"]
    );
    let mut versions = Vec::new();
    for s in sender.sent() {
        assert!(s.msg_id.starts_with("msg_") && !s.msg_id.contains('.'));
        assert_eq!(
            s.secrets,
            vec![secrecy::ExposeSecret::expose_secret(&ep.secret).to_owned()]
        );
        // Thin: never a secret.
        assert!(!s.body.contains(secret.expose()), "{}", s.body);
        assert!(!s.body.contains(rotated.expose()), "{}", s.body);
        let v: serde_json::Value = serde_json::from_str(&s.body).unwrap();
        assert_eq!(v["data"]["external_id"], "ann");
        assert_eq!(v["data"]["tenant_id"], "acme");
        versions.push(v["data"]["version"].as_i64().unwrap());
    }
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    // Nothing left to send.
    assert_eq!(d.run_pass(10).await.unwrap().claimed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_failures_and_credentials_and_drift_write_their_events() {
    let t = with_tenant().await;
    let _only_failures = endpoint(
        &t,
        &[
            EventType::UserProvisioningFailed,
            EventType::TenantUpstreamCredentialRejected,
            EventType::DriftDetected,
        ],
    )
    .await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    // Delivered to nobody: filtered out.
    t.service
        .provision(&actor(), &tid(), &ext("ok"), put_default())
        .await
        .unwrap();
    // A refused PAT: the provisioning fails for good, and the tenant's credential is flagged.
    t.upstream.fault_on(
        Call::CreateApp,
        Fault::Fail(UpstreamError::Unauthorized("bad PAT".into())),
        1,
    );
    let _ = t
        .service
        .provision(&actor(), &tid(), &ext("bad"), put_default())
        .await;
    // Drift: a key removed out of band.
    let u = t.store.get_user(&tid(), &ext("ok")).await.unwrap().unwrap();
    let key = t
        .upstream
        .keys()
        .into_iter()
        .find(|k| k.app_id == u.app_id.as_str())
        .unwrap();
    t.upstream.remove_key(&key.id);
    // A report by a caller changes nothing; the periodic check sends what it finds.
    t.service.reconcile(&actor(), &tid(), false).await.unwrap();
    assert!(
        !t.store
            .audit_events()
            .iter()
            .any(|a| a.action == "reconcile.drift_detected")
    );
    t.service.drift_counts(&tid()).await.unwrap();
    d.run_pass(10).await.unwrap();
    let mut got = types_sent(&sender);
    got.sort();
    assert_eq!(
        got,
        [
            "drift.detected",
            "tenant.upstream_credential_rejected",
            "user.provisioning_failed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_follow_the_schedule_then_fail_and_throttling_waits_longer() {
    let t = with_tenant().await;
    let ep = endpoint(&t, &[]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    let schedule = DeliveryConfig::default().schedule;
    sender.answer((0..=schedule.len()).map(|_| FakeSender::status(500)));
    t.service
        .provision(&actor(), &tid(), &ext("ann"), put_default())
        .await
        .unwrap();
    for (i, delay) in schedule.iter().enumerate() {
        let before = t.clock.now();
        let r = d.run_pass(10).await.unwrap();
        assert_eq!(r.retried, 1, "attempt {}", i + 1);
        let del = t
            .store
            .list_deliveries(&tid(), Some(&ep.endpoint.id), None, None, 10)
            .await
            .unwrap()
            .remove(0);
        let wait = (del.next_attempt_at.unwrap() - before).to_std().unwrap();
        assert!(
            wait >= delay.mul_f64(0.79) && wait <= delay.mul_f64(1.21),
            "attempt {}: waits {wait:?} for {delay:?}",
            i + 1
        );
        // Not due before its time.
        assert_eq!(d.run_pass(10).await.unwrap().claimed, 0);
        t.clock.advance(chrono::Duration::from_std(wait).unwrap());
    }
    let r = d.run_pass(10).await.unwrap();
    assert_eq!(r.failed, 1, "the last attempt fails the delivery");
    let sent = sender.sent();
    assert_eq!(sent.len(), schedule.len() + 1);
    assert!(
        sent.iter().all(|s| s.msg_id == sent[0].msg_id),
        "same id on every retry"
    );
    assert!(sent.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    let attempts = t
        .service
        .list_webhook_attempts(&tid(), &sent[0].msg_id, None)
        .await
        .unwrap();
    assert_eq!(attempts.len(), schedule.len() + 1);
    // Throttled: at least a minute, and a Retry-After within [delay, 2 x delay].
    sender.answer([
        SendResult::Status {
            code: 429,
            retry_after: None,
        },
        SendResult::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(3600)),
        },
    ]);
    t.service
        .provision(&actor(), &tid(), &ext("bob"), put_default())
        .await
        .unwrap();
    let before = t.clock.now();
    d.run_pass(10).await.unwrap();
    let next = |t: &TestService| {
        let t = t.store.clone();
        async move {
            t.list_deliveries(&tid(), None, Some(DeliveryStatus::Pending), None, 10)
                .await
                .unwrap()
                .remove(0)
                .next_attempt_at
                .unwrap()
        }
    };
    let wait = (next(&t).await - before).to_std().unwrap();
    assert!(wait >= Duration::from_secs(60), "429 waits {wait:?}");
    t.clock.advance(chrono::Duration::from_std(wait).unwrap());
    let before = t.clock.now();
    d.run_pass(10).await.unwrap();
    let wait = (next(&t).await - before).to_std().unwrap();
    // Second delay 300 s ± 20 %: Retry-After 3600 s is clamped to at most twice it.
    assert!(
        wait >= Duration::from_secs(240) && wait <= Duration::from_secs(720),
        "Retry-After gives {wait:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_at_once_and_five_days_of_failure_disable_too() {
    let t = with_tenant().await;
    let gone = endpoint(&t, &[EventType::UserProvisioned]).await;
    let watcher = endpoint(&t, &[EventType::WebhookEndpointDisabled]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    sender.answer([FakeSender::status(410)]);
    t.service
        .provision(&actor(), &tid(), &ext("ann"), put_default())
        .await
        .unwrap();
    d.run_pass(10).await.unwrap();
    let ep = t
        .service
        .get_webhook_endpoint(&tid(), &gone.endpoint.id)
        .await
        .unwrap();
    assert!(!ep.enabled);
    assert!(ep.disabled_reason.unwrap().contains("410"));
    // The operational event reaches the other endpoint.
    d.run_pass(10).await.unwrap();
    let last = sender.sent().pop().unwrap();
    assert!(
        last.body.contains("webhook_endpoint.disabled"),
        "{}",
        last.body
    );
    assert_eq!(
        last.secrets,
        vec![secrecy::ExposeSecret::expose_secret(&watcher.secret).to_owned()]
    );

    // Re-enabled; then nothing but failures for five days: disabled again.
    t.service
        .update_webhook_endpoint(
            &actor(),
            &tid(),
            &gone.endpoint.id,
            EndpointPatch {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    sender.otherwise(SendResult::NoResponse {
        error: "connection refused".into(),
        timed_out: false,
    });
    for i in 0..40 {
        t.service
            .provision(&actor(), &tid(), &ext(&format!("u{i}")), put_default())
            .await
            .unwrap();
        d.run_pass(50).await.unwrap();
        t.clock.advance(chrono::Duration::hours(4));
    }
    let ep = t
        .service
        .get_webhook_endpoint(&tid(), &gone.endpoint.id)
        .await
        .unwrap();
    assert!(!ep.enabled, "still enabled after days of failure: {ep:?}");
    assert!(ep.disabled_reason.unwrap().contains("5 days"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_new_one_for_a_day() {
    let t = with_tenant().await;
    let ep = endpoint(&t, &[]).await;
    let rotated = t
        .service
        .rotate_webhook_secret(&actor(), &tid(), &ep.endpoint.id)
        .await
        .unwrap();
    assert!(
        !format!("{rotated:?}").contains(secrecy::ExposeSecret::expose_secret(&rotated.secret))
    );
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    let old = secrecy::ExposeSecret::expose_secret(&ep.secret).to_owned();
    let new = secrecy::ExposeSecret::expose_secret(&rotated.secret).to_owned();
    t.service
        .provision(&actor(), &tid(), &ext("ann"), put_default())
        .await
        .unwrap();
    d.run_pass(10).await.unwrap();
    assert_eq!(sender.sent()[0].secrets, vec![old.clone(), new.clone()]);
    t.clock
        .advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
    t.service
        .provision(&actor(), &tid(), &ext("bob"), put_default())
        .await
        .unwrap();
    d.run_pass(10).await.unwrap();
    assert_eq!(sender.sent()[1].secrets, vec![new]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_send_and_record_sends_again_with_the_same_id() {
    let t = with_tenant().await;
    let ep = endpoint(&t, &[]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    t.service
        .provision(&actor(), &tid(), &ext("ann"), put_default())
        .await
        .unwrap();
    // The attempt's record fails (the process dies after sending): nothing is marked.
    t.store.fail_audit_if(|_| false);
    let claimed = t
        .store
        .claim_deliveries(
            t.clock.now(),
            t.clock.now() + chrono::Duration::seconds(60),
            10,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "claimed, then the worker dies");
    // Nothing else takes it while claimed; after the claim lapses it is sent (same id).
    assert_eq!(d.run_pass(10).await.unwrap().claimed, 0);
    t.clock.advance(chrono::Duration::seconds(61));
    assert_eq!(d.run_pass(10).await.unwrap().delivered, 1);
    let msg = &sender.sent()[0].msg_id;
    assert_eq!(&claimed[0].event_id, msg);
    // Resend (same id again), and recovery of what failed.
    t.service
        .resend_webhook_message(&actor(), &tid(), &ep.endpoint.id, msg)
        .await
        .unwrap();
    d.run_pass(10).await.unwrap();
    assert_eq!(sender.sent().len(), 2);
    assert_eq!(&sender.sent()[1].msg_id, msg);
    sender.answer([FakeSender::status(410)]);
    t.service
        .provision(&actor(), &tid(), &ext("bob"), put_default())
        .await
        .unwrap();
    d.run_pass(10).await.unwrap();
    t.service
        .update_webhook_endpoint(
            &actor(),
            &tid(),
            &ep.endpoint.id,
            EndpointPatch {
                enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let n = t
        .service
        .recover_webhook_endpoint(
            &actor(),
            &tid(),
            &ep.endpoint.id,
            t.clock.now() - chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(d.run_pass(10).await.unwrap().delivered, 1);
    let page = t
        .service
        .list_webhook_messages(&tid(), Some(&ep.endpoint.id), None, None, 10)
        .await
        .unwrap();
    assert!(
        page.items
            .iter()
            .all(|m| m.status == DeliveryStatus::Delivered)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_urls_must_be_https_unless_allowed() {
    let t = with_tenant().await;
    for bad in [
        "http://hooks.example/x",
        "ftp://x",
        "https://",
        "https://a b",
        "hooks.example",
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://[::1]/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest",
        "https://[::ffff:127.0.0.1]/x",
        "https://user:pass@hooks.example/x",
        "https://127.1/x",
        "https://2130706433/x",
        "https://0x7f.1/x",
    ] {
        let r = t
            .service
            .create_webhook_endpoint(
                &actor(),
                &tid(),
                NewEndpoint {
                    url: bad.into(),
                    description: None,
                    event_types: vec![],
                },
            )
            .await;
        assert!(matches!(r, Err(DomainError::Validation(_))), "{bad}: {r:?}");
    }
    let svc = t
        .service
        .clone()
        .allow_http_webhooks(true)
        .allow_private_webhook_targets(true);
    svc.create_webhook_endpoint(
        &actor(),
        &tid(),
        NewEndpoint {
            url: "http://127.0.0.1:9/hook".into(),
            description: None,
            event_types: vec![],
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_writes_job_completed_once() {
    let t = with_tenant().await;
    endpoint(&t, &[EventType::JobCompleted]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    let users = ["a", "b", "c"]
        .into_iter()
        .map(|u| BatchUser {
            external_id: ext(u),
            request: crate::jobs::ItemRequest::default(),
        })
        .collect();
    let job = t
        .service
        .submit_batch(&actor(), &tid(), users)
        .await
        .unwrap();
    for _ in 0..5 {
        t.service.run_job_pass(100).await.unwrap();
        t.clock.advance(chrono::Duration::seconds(60));
    }
    d.run_pass(10).await.unwrap();
    let sent = sender.sent();
    assert_eq!(sent.len(), 1, "one job.completed");
    let v: serde_json::Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(v["type"], "job.completed");
    assert_eq!(v["data"]["job_id"], job.id.as_str());
    assert_eq!(v["data"]["status"], "succeeded");
    assert_eq!(v["data"]["done"], 3);
}

/// "Our key export leaked": every active user's key is replaced by one job, each once even
/// when an item runs twice, with the grace asked for, and each rotation writes its event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_wide_rotation_replaces_every_active_key_once() {
    let t = with_tenant().await;
    endpoint(&t, &[EventType::UserKeyRotated, EventType::JobCompleted]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    let names = ["a", "b", "c", "d"];
    let mut before = std::collections::BTreeMap::new();
    for n in names {
        t.service
            .provision(&actor(), &tid(), &ext(n), put_default())
            .await
            .unwrap();
        let u = t.store.get_user(&tid(), &ext(n)).await.unwrap().unwrap();
        before.insert(n, u.key.unwrap().fingerprint);
    }
    t.service
        .deprovision(&actor(), &tid(), &ext("d"))
        .await
        .unwrap();
    t.clock.advance(chrono::Duration::seconds(1));
    let job = t
        .service
        .rotate_all_keys(&actor(), &tid(), 600)
        .await
        .unwrap();
    assert_eq!(job.total, 3, "active users only");
    // "b" is rotated by hand meanwhile: the job leaves its new key alone.
    t.service
        .rotate_key(&actor(), &tid(), &ext("b"), 0, false)
        .await
        .unwrap();
    let b_new = t
        .store
        .get_user(&tid(), &ext("b"))
        .await
        .unwrap()
        .unwrap()
        .key
        .unwrap()
        .fingerprint;
    for _ in 0..5 {
        t.service.run_job_pass(100).await.unwrap();
        t.clock.advance(chrono::Duration::seconds(30));
    }
    let view = t.service.get_job(&job.id).await.unwrap();
    assert_eq!(
        view.job.status,
        crate::jobs::JobStatus::Succeeded,
        "{view:?}"
    );
    for n in ["a", "c"] {
        let u = t.store.get_user(&tid(), &ext(n)).await.unwrap().unwrap();
        assert_ne!(
            u.key.as_ref().unwrap().fingerprint,
            before[n],
            "{n} not rotated"
        );
        let retired = u.retired_key.expect("the old key in its grace");
        assert_eq!(retired.fingerprint, before[n]);
    }
    let b = t.store.get_user(&tid(), &ext("b")).await.unwrap().unwrap();
    assert_eq!(b.key.unwrap().fingerprint, b_new, "rotated twice");
    // An item run again (a crash before its outcome was kept) rotates nothing twice.
    let a_key = t
        .store
        .get_user(&tid(), &ext("a"))
        .await
        .unwrap()
        .unwrap()
        .key
        .unwrap()
        .fingerprint;
    let item = crate::jobs::JobItem {
        job_id: job.id.clone(),
        idx: 0,
        tenant_id: tid(),
        external_id: ext("a"),
        request: crate::jobs::ItemRequest {
            rotate: Some(crate::jobs::RotateItem {
                grace_seconds: 600,
                keys_before: job.created_at,
            }),
            ..Default::default()
        },
        status: crate::jobs::ItemStatus::Pending,
        error_code: None,
        error_detail: None,
        attempts: 0,
        next_attempt_at: None,
    };
    let rot = item.request.rotate.clone().unwrap();
    t.service.rotate_item(&actor(), &item, &rot).await.unwrap();
    let a_after = t
        .store
        .get_user(&tid(), &ext("a"))
        .await
        .unwrap()
        .unwrap()
        .key
        .unwrap()
        .fingerprint;
    assert_eq!(a_after, a_key, "rotated twice");
    d.run_pass(50).await.unwrap();
    let rotated = types_sent(&sender)
        .iter()
        .filter(|t| *t == "user.key_rotated")
        .count();
    assert_eq!(rotated, 3, "a, c by the job and b by hand");
    assert!(types_sent(&sender).contains(&"job.completed".to_owned()));
    assert!(matches!(
        t.service.rotate_all_keys(&actor(), &tid(), 86_401).await,
        Err(DomainError::Validation(_))
    ));
}

/// Key-age policy on a virtual clock: keys past the profile's maximum age are rotated once
/// each, the replaced key kept for the profile's grace, the rest left alone until their turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_past_their_profiles_maximum_age_are_rotated_once_with_the_grace() {
    let t = with_tenant().await;
    endpoint(&t, &[EventType::UserKeyRotated]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    let day = chrono::Duration::days(1);
    let standard = crate::ids::ProfileName::parse("standard").unwrap();
    let scopes = crate::scope::ScopeSet::parse(["Predict", "Inputs:Get"]).unwrap();
    t.service
        .put_profile(
            &actor(),
            &tid(),
            standard.clone(),
            scopes,
            KeyAgePolicy {
                max_key_age_secs: Some(90 * 86_400),
                rotation_grace_secs: 3_600,
            },
        )
        .await
        .unwrap();
    let t0 = t.clock.now();
    for n in ["a", "b", "c"] {
        t.service
            .provision(&actor(), &tid(), &ext(n), put_default())
            .await
            .unwrap();
    }
    // Explicit scopes: no profile, no policy.
    t.service
        .provision(
            &actor(),
            &tid(),
            &ext("free"),
            ProvisionRequest {
                scopes: ScopeRequest::Scopes(crate::scope::ScopeSet::parse(["Predict"]).unwrap()),
                display_name: None,
                metadata: None,
            },
        )
        .await
        .unwrap();
    t.clock.advance(day * 30);
    t.service
        .provision(&actor(), &tid(), &ext("late"), put_default())
        .await
        .unwrap();
    let a = t.store.get_user(&tid(), &ext("a")).await.unwrap().unwrap();
    assert_eq!(
        t.service.key_rotation_due(&a).await.unwrap(),
        Some(t0 + day * 90),
        "GET shows when the key is due"
    );
    let fp = |n: &'static str| {
        let store = t.store.clone();
        async move {
            store
                .get_user(&tid(), &ext(n))
                .await
                .unwrap()
                .unwrap()
                .key
                .unwrap()
                .fingerprint
        }
    };
    let before: Vec<String> = vec![
        fp("a").await,
        fp("b").await,
        fp("c").await,
        fp("late").await,
    ];
    let free = fp("free").await;

    // Not yet due.
    t.clock.advance(day * 59);
    assert_eq!(t.service.run_key_age_pass(100).await.unwrap().due, 0);
    // Past 90 days: a, b, c (not "late", not "free").
    t.clock.advance(day + chrono::Duration::seconds(1));
    let r = t.service.run_key_age_pass(100).await.unwrap();
    assert_eq!((r.due, r.rotated, r.failed), (3, 3, 0), "{r:?}");
    for (i, n) in ["a", "b", "c"].into_iter().enumerate() {
        let u = t.store.get_user(&tid(), &ext(n)).await.unwrap().unwrap();
        assert_ne!(u.key.as_ref().unwrap().fingerprint, before[i]);
        let old = u.retired_key.expect("kept for the grace");
        assert_eq!(old.fingerprint, before[i]);
        assert_eq!(old.delete_after, t.clock.now() + chrono::Duration::hours(1));
        assert!(u.secret_pending, "the new secret reached no one yet");
    }
    assert_eq!(fp("late").await, before[3]);
    assert_eq!(fp("free").await, free);
    // Once each: nothing is due again.
    assert_eq!(t.service.run_key_age_pass(100).await.unwrap().due, 0);
    // The grace ends: recovery deletes the replaced keys upstream.
    t.clock
        .advance(chrono::Duration::hours(1) + chrono::Duration::seconds(1));
    t.service.run_recovery_pass(100).await.unwrap();
    for n in ["a", "b", "c"] {
        let u = t.store.get_user(&tid(), &ext(n)).await.unwrap().unwrap();
        assert!(u.retired_key.is_none());
        let keys = t
            .upstream
            .keys()
            .into_iter()
            .filter(|k| k.app_id == u.app_id.as_str())
            .count();
        assert_eq!(keys, 1, "{n}");
    }
    // "late" reaches its age 30 days later.
    t.clock.advance(day * 30);
    let r = t.service.run_key_age_pass(100).await.unwrap();
    assert_eq!((r.due, r.rotated), (1, 1));
    assert_ne!(fp("late").await, before[3]);
    d.run_pass(50).await.unwrap();
    assert_eq!(
        types_sent(&sender)
            .iter()
            .filter(|t| *t == "user.key_rotated")
            .count(),
        4
    );
    // Bounds of the policy.
    for (age, grace) in [(Some(60), 0), (Some(7_200), 7_200), (None, 90_000)] {
        let r = t
            .service
            .put_profile(
                &actor(),
                &tid(),
                standard.clone(),
                crate::scope::ScopeSet::parse(["Predict"]).unwrap(),
                KeyAgePolicy {
                    max_key_age_secs: age,
                    rotation_grace_secs: grace,
                },
            )
            .await;
        assert!(
            matches!(r, Err(DomainError::Validation(_))),
            "{age:?} {grace}: {r:?}"
        );
    }
}

/// Found in review: a rotation with no grace records the new key before deleting the old one;
/// that write commits the change, so it carries the event: a crash before the final write
/// loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_cut_off_after_recording_its_key_still_sends_its_event() {
    let t = with_tenant().await;
    endpoint(&t, &[EventType::UserKeyRotated]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    t.service
        .provision(&actor(), &tid(), &ext("ann"), put_default())
        .await
        .unwrap();
    t.store
        .fail_audit_if(|a| a.action == "user.rotate_key" && a.outcome == "success");
    assert!(
        t.service
            .rotate_key(&actor(), &tid(), &ext("ann"), 0, false)
            .await
            .is_err()
    );
    t.store.fail_audit_if(|_| false);
    t.clock.advance(chrono::Duration::seconds(30));
    t.service.run_recovery_pass(100).await.unwrap();
    d.run_pass(10).await.unwrap();
    assert_eq!(types_sent(&sender), ["user.key_rotated"]);
}

/// Found in review: a tenant-wide rotation whose first attempt at a user failed transiently
/// (the user left `rotating`) finishes that rotation and does not rotate again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_wide_rotation_retried_after_a_stall_rotates_once() {
    let t = with_tenant().await;
    endpoint(&t, &[EventType::UserKeyRotated]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    t.service
        .provision(&actor(), &tid(), &ext("ann"), put_default())
        .await
        .unwrap();
    let before = t
        .store
        .get_user(&tid(), &ext("ann"))
        .await
        .unwrap()
        .unwrap();
    t.clock.advance(chrono::Duration::seconds(1));
    let job = t
        .service
        .rotate_all_keys(&actor(), &tid(), 600)
        .await
        .unwrap();
    t.upstream.fault_on(
        Call::CreateKey,
        Fault::Fail(UpstreamError::Unavailable {
            message: "down".into(),
            ambiguous: false,
        }),
        1,
    );
    for _ in 0..6 {
        t.service.run_job_pass(100).await.unwrap();
        t.clock.advance(chrono::Duration::seconds(30));
    }
    assert!(
        t.service
            .get_job(&job.id)
            .await
            .unwrap()
            .job
            .finished_at
            .is_some()
    );
    let after = t
        .store
        .get_user(&tid(), &ext("ann"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.generation, before.generation + 1, "rotated once");
    assert_eq!(
        after.retired_key.map(|k| k.fingerprint),
        before.key.map(|k| k.fingerprint),
        "the original key kept for the grace"
    );
    d.run_pass(10).await.unwrap();
    assert_eq!(types_sent(&sender), ["user.key_rotated"]);
}

/// Found in review: a deletion refused again and again by a rejected PAT flags the tenant's
/// credential once, not on every retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_credential_is_flagged_once_per_operation() {
    let t = with_tenant().await;
    endpoint(&t, &[EventType::TenantUpstreamCredentialRejected]).await;
    let sender = Arc::new(FakeSender::default());
    let d = deliverer(&t, &sender);
    t.service
        .provision(&actor(), &tid(), &ext("ann"), put_default())
        .await
        .unwrap();
    t.upstream.fault_on(
        Call::DeleteKey,
        Fault::Fail(UpstreamError::Unauthorized("revoked".into())),
        100,
    );
    let _ = t.service.deprovision(&actor(), &tid(), &ext("ann")).await;
    for _ in 0..5 {
        t.clock.advance(chrono::Duration::minutes(6));
        t.service.run_recovery_pass(100).await.unwrap();
    }
    d.run_pass(10).await.unwrap();
    assert_eq!(types_sent(&sender), ["tenant.upstream_credential_rejected"]);
}
